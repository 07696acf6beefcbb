"""Tabular Q-learning (Watkins, 1989) and SARSA (Rummery & Niranjan, 1994).

Both keep a table ``Q[state, action]`` (float64) for envs whose observation and action
spaces are :class:`~gymnasium.spaces.Discrete`, and learn from every vector step
(``data_kind = "transitions"``). ``Discrete(n, start=k)`` spaces are handled: the table
row of observation ``o`` is ``o - k`` and the action of column ``c`` is ``c + k``.

Batched updates over the ``N`` envs of one vector step (both algorithms):

- Every target is computed from the table as it was *before* the vector step (a
  synchronous backup; with ``num_envs=1`` this is the textbook one-at-a-time update).
- Transitions that hit the same ``(s, a)`` pair in one vector step are applied as
  sequential updates in env-index order, each towards its own target:
  ``Q <- Q + alpha * (target_i - Q)`` for ``i`` in order. Two hits with targets ``t1``,
  ``t2`` give ``(1 - alpha)**2 * Q + alpha * (1 - alpha) * t1 + alpha * t2``, never the
  overshoot of summing both increments.
- Termination stops bootstrapping (``target = r``); truncation (time limits) does not:
  the target bootstraps from the true final observation, which the collector passes as
  ``next_obs``.

Acting:

- ``deterministic=True`` (evaluation, ``predict``) is greedy; ties go to the lowest
  action index, so a policy's greedy actions depend only on its table.
- ``deterministic=False`` (the behaviour policy) is epsilon-greedy: with probability
  epsilon a uniformly random action, else a greedy one with ties broken uniformly at
  random. Random tie-breaking matters early on, when most of the table still holds
  ``initial_q``. All randomness comes from ``self.generator``, so runs are reproducible.

Speed: the table lives in a torch tensor (what checkpoints save) and the maths runs on a
numpy view of the same memory, since per-step batches are tiny (``N`` rows) and numpy's
per-call overhead is a fraction of torch's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlcore.algos.base import Example, TransitionAlgorithm, register_algo
from rlcore.settings import check_range, linear_schedule

__all__ = ["QLearning", "Sarsa", "TabularConfig"]


def _as_float(name: str, value: Any) -> float:
    """``value`` as a float; a ValueError naming ``name`` when it is not a number (YAML gives '1e-3' as str)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        # A ValueError like every other invalid config value, so callers handle one exception type.
        raise ValueError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")  # noqa: TRY004
    return float(value)


@dataclass(frozen=True)
class TabularConfig:
    """Hyperparameters of :class:`QLearning` and :class:`Sarsa`. Presets hold per-env values."""

    learning_rate: float = 0.1
    """Step size alpha of ``Q <- Q + alpha * (target - Q)``, in ``(0, 1]``."""
    final_learning_rate: float | None = None
    """When set, alpha decays linearly from ``learning_rate`` to this value; ``None`` keeps it constant."""
    learning_rate_fraction: float = 1.0
    """Fraction of training over which alpha decays to ``final_learning_rate`` (then stays)."""
    gamma: float = 0.99
    """Discount factor."""
    exploration_fraction: float = 0.5
    """Fraction of training over which epsilon falls from its initial to its final value."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.05
    """Epsilon after ``exploration_fraction`` of training."""
    initial_q: float = 0.0
    """Value every table entry starts at; above the true values it drives exploration (optimism)."""

    def __post_init__(self) -> None:
        for name in (
            "learning_rate",
            "learning_rate_fraction",
            "gamma",
            "exploration_fraction",
            "exploration_initial_eps",
            "exploration_final_eps",
            "initial_q",
        ):
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        check_range("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        if self.final_learning_rate is not None:
            object.__setattr__(self, "final_learning_rate", _as_float("final_learning_rate", self.final_learning_rate))
            check_range("final_learning_rate", self.final_learning_rate, 0.0, 1.0)
        check_range("learning_rate_fraction", self.learning_rate_fraction, 0.0, 1.0)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_range("exploration_initial_eps", self.exploration_initial_eps, 0.0, 1.0)
        check_range("exploration_final_eps", self.exploration_final_eps, 0.0, 1.0)
        if not math.isfinite(self.initial_q):
            raise ValueError(f"initial_q must be finite, got {self.initial_q!r}")


class _TabularAlgorithm(TransitionAlgorithm[TabularConfig]):
    """What Q-learning and SARSA share: the table, acting, schedules, the batched update, persistence.

    Subclasses implement :meth:`_next_values` (the bootstrap value of each ``next_obs``).

    Attributes:
        q_table: ``[n_states, n_actions]`` float64 tensor (CPU).
        exploration_rate: Current epsilon of the behaviour policy.
        learning_rate: Current alpha.
        updates: Transitions learned from so far.
    """

    config_class: ClassVar[type] = TabularConfig
    example: ClassVar[Example | None] = Example("FrozenLake-v1", {"total_env_steps": 400})
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    flat_box_only: ClassVar[bool] = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: TabularConfig,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        self.num_states = int(observation_space.n)  # type: ignore[attr-defined]
        self.obs_start = int(observation_space.start)  # type: ignore[attr-defined]
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        self.q_table = torch.full((self.num_states, self.num_actions), config.initial_q, dtype=torch.float64)
        # shares memory with q_table (none on the meta device, where loading checks a checkpoint's sizes)
        self._q = self.q_table.numpy() if not self.q_table.is_meta else np.empty((0, 0))
        self._q_flat = self._q.reshape(-1)  # a view too
        self.exploration_rate = config.exploration_initial_eps
        self.learning_rate = config.learning_rate
        self.updates = 0

    # --- indexing -----------------------------------------------------------------------------
    def _rows(self, obs: Any, what: str = "observation") -> np.ndarray:
        """Table rows of a batch of observations: ``[N]`` int64, range-checked."""
        if isinstance(obs, Tensor):
            obs = obs.cpu().numpy()
        rows = np.asarray(obs).astype(np.int64, copy=False).reshape(-1) - self.obs_start
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_states):
            raise ValueError(
                f"{self.name}: {what} outside the observation space {self.observation_space}: "
                f"{(rows + self.obs_start).tolist()}"
            )
        return rows

    def _columns(self, action: Any) -> np.ndarray:
        """Table columns of a batch of actions: ``[N]`` int64, range-checked."""
        if isinstance(action, Tensor):
            action = action.cpu().numpy()
        columns = np.asarray(action).astype(np.int64, copy=False).reshape(-1) - self.action_start
        if columns.size and (columns.min() < 0 or columns.max() >= self.num_actions):
            raise ValueError(
                f"{self.name}: action outside the action space {self.action_space}: "
                f"{(columns + self.action_start).tolist()}"
            )
        return columns

    # --- acting -------------------------------------------------------------------------------
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy (lowest index on ties) or epsilon-greedy (random ties) actions: ``[N] -> [N]`` int64."""
        rows = self._rows(obs)
        if deterministic:
            columns = self._q[rows].argmax(axis=1)
        else:
            columns = self._behaviour_columns(rows)
        return torch.from_numpy(columns + self.action_start)

    def _behaviour_columns(self, rows: np.ndarray) -> np.ndarray:
        """Epsilon-greedy columns for table ``rows``, from one draw of ``[N, 1 + A]`` uniforms.

        Column 0 of the draw decides exploration; the other ``A`` pick an action: the argmax of
        iid uniforms over all actions (exploring) or over the tied-greedy ones (greedy).
        """
        count = rows.shape[0]
        uniforms = torch.rand((count, self.num_actions + 1), generator=self.generator, dtype=torch.float64).numpy()
        q_rows = self._q[rows]
        candidates = q_rows == q_rows.max(axis=1, keepdims=True)
        if self.exploration_rate > 0.0:
            candidates |= (uniforms[:, 0] < self.exploration_rate)[:, None]
        return np.where(candidates, uniforms[:, 1:], -1.0).argmax(axis=1)

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Updates epsilon and alpha from the fraction of training done."""
        super().set_progress(env_steps, total_env_steps)
        config = self.config
        progress = env_steps / self.total_env_steps
        self.exploration_rate = linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, config.exploration_fraction, progress
        )
        if config.final_learning_rate is not None:
            self.learning_rate = linear_schedule(
                config.learning_rate, config.final_learning_rate, config.learning_rate_fraction, progress
            )

    # --- learning -----------------------------------------------------------------------------
    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """One batched TD update from a vector step (see the module docstring for the semantics).

        Args:
            transition: ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``,
                ``truncated``, each with leading dim ``N``.

        Returns:
            ``train/td_error_abs_mean``, ``rollout/exploration_rate``, ``train/learning_rate``.
        """
        rows = self._rows(transition["obs"])
        columns = self._columns(transition["action"])
        next_rows = self._rows(transition["next_obs"], "next_obs")
        reward = np.asarray(transition["reward"], dtype=np.float64).reshape(-1)
        terminated = np.asarray(transition["terminated"], dtype=bool).reshape(-1)
        truncated = np.asarray(transition["truncated"], dtype=bool).reshape(-1)
        if not rows.shape == columns.shape == next_rows.shape == reward.shape == terminated.shape:
            raise ValueError(
                f"transition fields disagree on the batch size: obs {rows.shape}, action {columns.shape}, "
                f"next_obs {next_rows.shape}, reward {reward.shape}, terminated {terminated.shape}"
            )
        next_values = self._next_values(next_rows, terminated, truncated)
        targets = reward + self.config.gamma * np.where(terminated, 0.0, next_values)
        td_error = self._apply(rows * self.num_actions + columns, targets)
        self.updates += rows.shape[0]
        return {
            "train/td_error_abs_mean": float(np.abs(td_error).mean()),
            "rollout/exploration_rate": self.exploration_rate,
            "train/learning_rate": self.learning_rate,
        }

    def _next_values(self, next_rows: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        """Bootstrap value of each next state, ``[N]`` (ignored where ``terminated``)."""
        raise NotImplementedError

    def _apply(self, keys: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Moves ``Q.flat[keys]`` towards ``targets``; returns the TD errors against the pre-step table."""
        flat, alpha = self._q_flat, self.learning_rate
        current = flat[keys]
        td_error = targets - current
        key_list = keys.tolist()
        if len(set(key_list)) == len(key_list):
            flat[keys] = current + alpha * td_error
        else:  # repeated (s, a): sequential updates in env order, each towards its own target
            for key, target in zip(key_list, targets.tolist()):
                flat[key] += alpha * (target - flat[key])
        return td_error

    # --- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "q_table": self.q_table.clone(),
            "updates": self.updates,
            "exploration_rate": self.exploration_rate,
            "learning_rate": self.learning_rate,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        table = torch.as_tensor(state["q_table"])
        if tuple(table.shape) != tuple(self.q_table.shape):
            raise ValueError(
                f"{self.name}: the saved Q table has shape {tuple(table.shape)}, "
                f"this env needs {tuple(self.q_table.shape)}"
            )
        self._load_base_state(state)
        self.q_table.copy_(table)  # in place: the numpy views stay valid
        self.updates = int(state["updates"])
        self.exploration_rate = float(state["exploration_rate"])
        self.learning_rate = float(state["learning_rate"])


@register_algo("q_learning")
class QLearning(_TabularAlgorithm):
    """Tabular Q-learning: off-policy, ``target = r + gamma * (1 - terminated) * max_a Q(s', a)``.

    Learns the greedy policy's values whatever the behaviour policy does, so on CliffWalking
    its greedy path is the optimal one along the cliff edge.
    """

    def _next_values(self, next_rows: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        return self._q[next_rows].max(axis=1)


@register_algo("sarsa")
class Sarsa(_TabularAlgorithm):
    """Tabular SARSA: on-policy, ``target = r + gamma * (1 - terminated) * Q(s', a')``.

    ``a'`` must be the action the behaviour policy will *actually* take in ``s'``. So
    :meth:`observe` draws ``a'`` for each env's ``next_obs`` with the epsilon-greedy
    behaviour policy (from the table before this step's update), uses it in the target and
    caches it; the next :meth:`act` call with ``deterministic=False`` returns the cached
    ``a'`` for every env whose observation equals the cached next state and whose episode
    did not end. Envs whose episode ended act on the reset observation, not ``next_obs``, so
    they get a freshly drawn action (the ``a'`` of a truncated episode is still drawn, to
    bootstrap its target, but never executed). The cache is used once, then cleared;
    greedy calls (evaluation) neither use nor clear it. It is saved in :meth:`state_dict`,
    so a resumed run takes the same actions.

    Learns the values of the epsilon-greedy policy it follows, so with epsilon kept around
    0.1 its greedy path on CliffWalking keeps away from the cliff.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: TabularConfig,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        self._cached_rows: np.ndarray | None = None
        self._cached_columns: np.ndarray | None = None
        self._cached_valid: np.ndarray | None = None

    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy actions, or the behaviour policy's (the cached ``a'`` where it applies, see the class)."""
        cached_rows, cached_columns, valid = self._cached_rows, self._cached_columns, self._cached_valid
        if deterministic or cached_rows is None or cached_columns is None or valid is None:
            return super().act(obs, deterministic=deterministic)
        rows = self._rows(obs)
        self._clear_cache()
        if rows.shape != cached_rows.shape:
            return torch.from_numpy(self._behaviour_columns(rows) + self.action_start)
        use_cached = valid & (rows == cached_rows)
        columns = cached_columns.copy()
        fresh = ~use_cached
        if fresh.any():
            columns[fresh] = self._behaviour_columns(rows[fresh])
        return torch.from_numpy(columns + self.action_start)

    def _clear_cache(self) -> None:
        self._cached_rows = self._cached_columns = self._cached_valid = None

    def _next_values(self, next_rows: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        next_columns = self._behaviour_columns(next_rows)
        self._cached_rows = next_rows
        self._cached_columns = next_columns
        self._cached_valid = ~(terminated | truncated)
        return self._q[next_rows, next_columns]

    @property
    def cached_actions(self) -> Tensor | None:
        """The ``a'`` drawn by the last :meth:`observe` (env actions, ``[N]``), or None once used."""
        if self._cached_columns is None:
            return None
        return torch.from_numpy(self._cached_columns + self.action_start)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        rows, columns, valid = self._cached_rows, self._cached_columns, self._cached_valid
        if rows is None or columns is None or valid is None:
            state["cache"] = None
        else:
            state["cache"] = {
                "rows": torch.from_numpy(rows.copy()),
                "columns": torch.from_numpy(columns.copy()),
                "valid": torch.from_numpy(valid.copy()),
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        cache = state.get("cache")
        if cache is None:
            self._clear_cache()
        else:
            self._cached_rows = torch.as_tensor(cache["rows"]).numpy().astype(np.int64)
            self._cached_columns = torch.as_tensor(cache["columns"]).numpy().astype(np.int64)
            self._cached_valid = torch.as_tensor(cache["valid"]).numpy().astype(bool)
