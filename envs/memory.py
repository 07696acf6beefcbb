"""Memory: remember a cue shown only in the first observation, and name it after a delay.

A memoryless policy (an MLP on the current observation) cannot do better than chance here;
a policy with memory (an LSTM, or a Transformer over a window of at least ``delay + 1``
observations) can answer correctly every time.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MemoryEnv(gym.Env[np.ndarray, np.int64]):
    """Shows one of ``n_cues`` cues at the start, then ``delay`` blank steps; the last action must name the cue.

    Observations are float32 vectors ``[n_cues + 2]``:

    - ``obs[:n_cues]``: the cue, one-hot, in the first observation only (all zeros afterwards);
    - ``obs[n_cues]``: progress ``t / delay`` (0 at the start, 1 at the query; 1 throughout if ``delay=0``),
      so the task is well defined for any policy: it always knows where it is in the episode;
    - ``obs[n_cues + 1]``: 1 at the query step (the step whose action is scored), else 0.

    Actions are ``Discrete(n_cues)``. An episode has exactly ``delay + 1`` steps: the first ``delay``
    actions are ignored (reward 0), the action at the query step pays 1 if it names the cue and 0
    otherwise, and the episode terminates. The final step's ``info["success"]`` says whether it did.

    With ``delay=0`` the cue and the query are in the same observation and any policy can solve it
    (a sanity check of the reward); with ``delay >= 1`` the query observation is the same for every
    cue, so a memoryless policy succeeds with probability ``1 / n_cues`` at best.

    The cue is drawn from ``self.np_random`` at each reset (nothing else is random).

    Args:
        delay: Blank steps between the cue and the query (``>= 0``).
        n_cues: Number of distinct cues and actions (``>= 2``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, delay: int = 10, n_cues: int = 2) -> None:
        if not isinstance(delay, int | np.integer) or delay < 0:
            raise ValueError(f"delay must be an integer >= 0, got {delay!r}")
        if not isinstance(n_cues, int | np.integer) or n_cues < 2:
            raise ValueError(f"n_cues must be an integer >= 2, got {n_cues!r}")
        self.delay = int(delay)
        self.n_cues = int(n_cues)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_cues + 2,), np.float32)
        self.action_space = spaces.Discrete(self.n_cues)
        self._cue = 0
        self._t = 0

    def _observation(self) -> np.ndarray:
        """The observation at step ``self._t``: ``[n_cues + 2]`` float32."""
        obs = np.zeros(self.n_cues + 2, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        obs[self.n_cues] = self._t / self.delay if self.delay else 1.0
        obs[self.n_cues + 1] = float(self._t == self.delay)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.n_cues}), got {action!r}")
        if self._t > self.delay:
            raise RuntimeError("the episode has ended; call reset() before step()")
        if self._t < self.delay:
            self._t += 1
            return self._observation(), 0.0, False, False, {}
        success = int(action) == self._cue
        self._t += 1
        obs = np.zeros(self.n_cues + 2, dtype=np.float32)  # after the end: nothing left to see
        obs[self.n_cues] = 1.0
        return obs, float(success), True, False, {"success": success}
