"""Which spaces an algorithm accepts, the errors that say what to do instead, and spaces as JSON.

Composite observation spaces (``Dict``, ``Tuple``, nested) are handled leaf by leaf: :func:`leaf_spaces` names each
Box or Discrete leaf by its path (``"image"``, ``"inner/0"``), and rlcore's batches of such observations are flat
dicts ``{path: [N, *leaf_shape]}`` (see :mod:`rlcore.observations`).
"""

from __future__ import annotations

from collections.abc import Iterable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces


def describe_space(space: gym.Space) -> str:
    """A short, one-line description such as ``Box(-inf, inf, (4,), float32)`` or ``Discrete(2)`` (numpy's multi-line
    arrays, e.g. a 2-D MultiDiscrete's ``nvec``, on one line)."""
    return " ".join(repr(space).split())


COMPOSITE_SPACES: tuple[type[gym.Space], ...] = (spaces.Dict, spaces.Tuple)
"""Observation spaces made of other spaces; rlcore handles those whose leaves are Box or Discrete."""
LEAF_SPACES: tuple[type[gym.Space], ...] = (spaces.Box, spaces.Discrete)
"""The spaces a composite observation's leaves may be."""
PATH_SEPARATOR = "/"
"""Joins the keys of nested spaces into a leaf's path (``"inner/0"``)."""


def space_fits(space: gym.Space, accepted: Iterable[type[gym.Space]], *, flat_box: bool = False) -> bool:
    """Whether ``space`` is one of the ``accepted`` types (a 1-D Box when ``flat_box``); a ``Dict`` or ``Tuple``
    fits when its type is accepted and each of its leaves is an accepted Box or Discrete."""
    accepted = tuple(accepted)
    if not isinstance(space, accepted):
        return False
    if isinstance(space, COMPOSITE_SPACES):
        leaf_types = tuple(kind for kind in accepted if kind in LEAF_SPACES)
        try:
            leaves = leaf_spaces(space)
        except (TypeError, ValueError):
            return False
        return all(space_fits(leaf, leaf_types, flat_box=flat_box) for leaf in leaves.values())
    return not (flat_box and isinstance(space, spaces.Box) and len(space.shape) != 1)


def is_composite(space: gym.Space) -> bool:
    """Whether ``space`` is a ``Dict`` or ``Tuple`` (its observations are dicts or tuples of arrays)."""
    return isinstance(space, COMPOSITE_SPACES)


def leaf_spaces(space: gym.Space, prefix: str = "") -> dict[str, gym.Space]:
    """The Box and Discrete leaves of a ``Dict`` or ``Tuple`` space (nested to any depth), by path, in the space's
    order: ``Dict(image=Box, flag=Discrete)`` -> ``{"image": Box, "flag": Discrete}``; a Tuple's items are named by
    their index (``"0"``, ``"1"``), nested keys are joined by ``/`` (``"inner/0"``).

    Raises:
        TypeError: A leaf of another kind (Text, Graph, MultiBinary, ...).
        ValueError: An empty composite, or a Dict key that is not a non-empty string without ``/``.
    """
    if isinstance(space, spaces.Dict):
        items = list(space.spaces.items())
    elif isinstance(space, spaces.Tuple):
        items = [(str(index), sub) for index, sub in enumerate(space.spaces)]
    else:
        raise TypeError(f"{describe_space(space)} is not a Dict or Tuple space")
    if not items:
        raise ValueError(f"the observation space {describe_space(space)} has no sub-spaces")
    leaves: dict[str, gym.Space] = {}
    for key, sub in items:
        if not isinstance(key, str) or not key or PATH_SEPARATOR in key:
            raise ValueError(f"Dict observation keys must be non-empty strings without {PATH_SEPARATOR!r}, got "
                             f"{key!r}; rename the key")
        path = f"{prefix}{key}"
        if isinstance(sub, COMPOSITE_SPACES):
            leaves.update(leaf_spaces(sub, path + PATH_SEPARATOR))
        elif isinstance(sub, LEAF_SPACES):
            leaves[path] = sub
        else:
            raise TypeError(f"the observation's {path!r} is {describe_space(sub)}; rlcore handles Dict and Tuple "
                            "observations whose leaves are Box or Discrete (wrap the env to convert it)")
    return leaves


def flat_obs_dim(space: gym.Space) -> int:
    """Input width of an MLP for ``space``: ``n`` for Discrete (one-hot), the size of a Box."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise TypeError(f"no flat encoding for observation space {describe_space(space)}")


def observation_shapes(space: gym.Space) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    """One observation's shape, or each leaf's of a Dict or Tuple space (a Discrete's is ``()``)."""
    if is_composite(space):
        return {path: tuple(leaf.shape or ()) for path, leaf in leaf_spaces(space).items()}
    return tuple(space.shape or ())


def observation_dtypes(space: gym.Space) -> torch.dtype | dict[str, torch.dtype]:
    """The torch dtype of one raw observation, or each leaf's of a Dict or Tuple space (as :func:`observation_shapes`
    gives their shapes)."""
    if is_composite(space):
        return {path: torch.as_tensor(leaf.sample()).dtype for path, leaf in leaf_spaces(space).items()}
    return torch.as_tensor(space.sample()).dtype


def space_difference(given: tuple[gym.Space, gym.Space],
                     expected: tuple[gym.Space, gym.Space]) -> tuple[str, gym.Space, gym.Space] | None:
    """``(which, given space, expected space)`` for the first of the observation and action spaces (in that order)
    where ``given`` is not ``expected`` (compared as their JSON descriptions); None when both match."""
    for which, space, wanted in zip(("observation", "action"), given, expected, strict=True):
        if space_to_json(space) != space_to_json(wanted):
            return which, space, wanted
    return None


def out_of_range(numbers: np.ndarray, low: int, high: int) -> str | None:
    """The first of ``numbers`` that is not a whole number in ``[low, high]``, as text (integers without a decimal
    point); None when all are."""
    wrong = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < low) | (numbers > high)
    if not wrong.any():
        return None
    first = float(numbers[wrong][0])
    return str(int(first)) if first.is_integer() else repr(first)


def space_to_json(space: gym.Space) -> dict:
    """A JSON description of a Box, Discrete, MultiDiscrete or MultiBinary space, or of a Dict or Tuple of those
    (``{"type": "Dict", "spaces": [[key, description], ...]}`` in the space's order, ``{"type": "Tuple",
    "spaces": [description, ...]}``), for checkpoints."""
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
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": space.n if isinstance(space.n, int) else list(space.n)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[key, space_to_json(sub)] for key, sub in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(sub) for sub in space.spaces]}
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
        return spaces.MultiDiscrete(description["nvec"], start=description.get("start"))
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    if kind == "Dict":
        return spaces.Dict({key: space_from_json(sub) for key, sub in description["spaces"]})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(sub) for sub in description["spaces"]])
    raise ValueError(f"unknown space description {description!r}")


def _bounds_to_json(bounds: np.ndarray) -> list:
    """Flat bounds with infinities as the strings ``"inf"``/``"-inf"`` (JSON has no infinity)."""
    return [float(value) if np.isfinite(value) else str(float(value)) for value in bounds.reshape(-1)]


def _bounds_from_json(values: list, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.array([float(value) for value in values], dtype=np.float64).reshape(shape).astype(dtype)
