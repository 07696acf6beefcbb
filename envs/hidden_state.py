"""Classic-control envs with part of their observation hidden (partially observable control tasks)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


class ObservesPart:
    """Mixin before a gymnasium env class: observations keep only the indices ``visible`` (a class attribute).

    Call :meth:`hide_observation` at the end of ``__init__`` to narrow the observation space the same way.
    """

    visible: np.ndarray

    def hide_observation(self) -> None:
        full = self.observation_space  # type: ignore[has-type]
        self.observation_space = spaces.Box(full.low[self.visible], full.high[self.visible], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        return obs[self.visible], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        return obs[self.visible], reward, terminated, truncated, info
