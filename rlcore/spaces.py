"""Which spaces an algorithm accepts, and the errors that say what to do instead."""

from __future__ import annotations

from collections.abc import Iterable

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def describe_space(space: gym.Space) -> str:
    """A short description such as ``Box(-inf, inf, (4,), float32)`` or ``Discrete(2)``."""
    return repr(space)


def space_fits(space: gym.Space, accepted: Iterable[type[gym.Space]], *, flat_box: bool = False) -> bool:
    """Whether ``space`` is one of the ``accepted`` types (a 1-D Box when ``flat_box``)."""
    if not isinstance(space, tuple(accepted)):
        return False
    return not (flat_box and isinstance(space, spaces.Box) and len(space.shape) != 1)


def flat_obs_dim(space: gym.Space) -> int:
    """Input width of an MLP for ``space``: ``n`` for Discrete (one-hot), the size of a Box."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise TypeError(f"no flat encoding for observation space {describe_space(space)}")


def space_to_json(space: gym.Space) -> dict:
    """A JSON description of a Box, Discrete, MultiDiscrete or MultiBinary space, for checkpoints."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": _bounds_to_json(space.low),
            "high": _bounds_to_json(space.high),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": space.n if isinstance(space.n, int) else list(space.n)}
    raise TypeError(f"cannot describe {describe_space(space)} in a checkpoint")


def space_from_json(description: dict) -> gym.Space:
    """Inverse of :func:`space_to_json`."""
    kind = description.get("type")
    if kind == "Discrete":
        return spaces.Discrete(description["n"], start=description.get("start", 0))
    if kind == "Box":
        dtype = np.dtype(description["dtype"])
        shape = tuple(description["shape"])
        low = _bounds_from_json(description["low"], shape, dtype)
        high = _bounds_from_json(description["high"], shape, dtype)
        return spaces.Box(low, high, shape=shape, dtype=dtype)
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(description["nvec"])
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    raise ValueError(f"unknown space description {description!r}")


def _bounds_to_json(bounds: np.ndarray) -> list:
    """Flat bounds with infinities as the strings ``"inf"``/``"-inf"`` (JSON has no infinity)."""
    return [float(value) if np.isfinite(value) else str(float(value)) for value in bounds.reshape(-1)]


def _bounds_from_json(values: list, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.array([float(value) for value in values], dtype=np.float64).reshape(shape).astype(dtype)
