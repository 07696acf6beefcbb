"""Batches of observations of any supported space: one array (Box, Discrete), or a flat dict of them (Dict, Tuple).

A vector env hands out a ``Dict`` observation as a (nested) dict of arrays and a ``Tuple`` one as a tuple of them;
rlcore flattens both once, where they come in (the collector, evaluation, ``predict``), into a flat dict
``{path: [N, *leaf_shape]}`` keyed by :func:`rlcore.spaces.leaf_spaces`'s paths, so everything downstream (networks,
normalization, buffers, workers) handles exactly two cases: a tensor, or a dict of tensors. Buffers store such a
field as one column per leaf, ``<field>/<path>`` (``obs/image``, ``next_obs/image``: :func:`flatten_fields`), and
hand it back nested (:func:`nest_fields`).

Every function here costs nothing more than before for plain (non-dict) observations: one ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from rlcore.spaces import PATH_SEPARATOR

Observation = Any
"""``Tensor | np.ndarray`` ``[N, *shape]``, or ``dict[str, Tensor | np.ndarray]`` ``{path: [N, *leaf_shape]}``."""

T = TypeVar("T")


def flatten_tree(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict / tuple / list of leaves as a flat dict by path: ``{"a": {"b": x}, "t": (y, z)}`` ->
    ``{"a/b": x, "t/0": y, "t/1": z}``."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    flat: dict[str, Any] = {}
    for key, item in items:
        path = f"{prefix}{key}"
        if isinstance(item, dict | tuple | list):
            flat.update(flatten_tree(item, path + PATH_SEPARATOR))
        else:
            flat[path] = item
    return flat


def flat_observation(obs: Any) -> Any:
    """An observation (single or batched) as rlcore handles it: arrays pass through, a (nested) dict or tuple of
    arrays becomes the flat dict of its leaves (:func:`flatten_tree`)."""
    if isinstance(obs, dict | tuple):
        return flatten_tree(obs)
    return obs


def map_observation(function: Callable[[Any], T], obs: Any) -> Any:
    """``function`` applied to an observation's array, or to each leaf of a flat dict."""
    if isinstance(obs, dict):
        return {key: function(value) for key, value in obs.items()}
    return function(obs)


def to_tensor(obs: Any, device: torch.device | str | None = None) -> Any:
    """numpy arrays (or a flat dict of them) as tensors, on ``device`` when given (shares memory on the CPU)."""
    if isinstance(obs, dict):
        return {key: _tensor(value, device) for key, value in obs.items()}
    return _tensor(obs, device)


def _tensor(value: Any, device: torch.device | str | None) -> Tensor:
    tensor = torch.from_numpy(value) if isinstance(value, np.ndarray) else torch.as_tensor(value)
    return tensor if device is None else tensor.to(device)


def to_numpy(obs: Any) -> Any:
    """Tensors (or a flat dict of them) as numpy arrays (CPU)."""
    return map_observation(lambda value: value.cpu().numpy() if isinstance(value, Tensor) else np.asarray(value), obs)


def take_rows(obs: Any, rows: Any) -> Any:
    """``obs[rows]`` of an array or tensor, or of each leaf of a flat dict."""
    if isinstance(obs, dict):
        return {key: value[rows] for key, value in obs.items()}
    return obs[rows]


def batch_size(obs: Any) -> int:
    """``N``, the leading dim of an observation batch."""
    if isinstance(obs, dict):
        return int(next(iter(obs.values())).shape[0])
    return int(obs.shape[0])


def concatenate(parts: Iterable[Any], dim: int = 0) -> Any:
    """Observation batches joined along ``dim`` (numpy arrays or tensors, or flat dicts of them)."""
    parts = list(parts)
    join = (lambda values: torch.cat(values, dim=dim)) if _is_tensor(parts[0]) else (
        lambda values: np.concatenate(values, axis=dim))
    if isinstance(parts[0], dict):
        return {key: join([part[key] for part in parts]) for key in parts[0]}
    return join(parts)


def stack(observations: Iterable[Any]) -> Any:
    """Single observations (arrays, or nested dicts/tuples of them) stacked into a batch ``[N, ...]``."""
    flat = [flat_observation(obs) for obs in observations]
    if isinstance(flat[0], dict):
        return {key: np.stack([np.asarray(obs[key]) for obs in flat]) for key in flat[0]}
    return np.stack([np.asarray(obs) for obs in flat])


def _is_tensor(obs: Any) -> bool:
    value = next(iter(obs.values())) if isinstance(obs, dict) else obs
    return isinstance(value, Tensor)


def flatten_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A row of named fields with dict values split into one field per leaf: ``{"obs": {"image": x}, "reward": r}``
    -> ``{"obs/image": x, "reward": r}`` (what buffers store); the row itself when no value is a dict."""
    if not any(isinstance(value, dict) for value in fields.values()):
        return fields
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            flat.update({f"{key}{PATH_SEPARATOR}{path}": leaf for path, leaf in value.items()})
        else:
            flat[key] = value
    return flat


def nest_fields(fields: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The inverse of :func:`flatten_fields` for the fields ``names``: their ``<name>/<path>`` leaves become one dict
    value ``{path: leaf}`` under ``<name>`` (a field stored whole stays as it is)."""
    nested = dict(fields)
    for name in names:
        prefix = name + PATH_SEPARATOR
        leaves = {key[len(prefix):]: value for key, value in fields.items() if key.startswith(prefix)}
        if leaves:
            for key in leaves:
                del nested[prefix + key]
            nested[name] = leaves
    return nested


def tree_field_names(keys: Iterable[str], names: Iterable[str]) -> tuple[str, ...]:
    """Which of ``names`` are stored as leaves among ``keys`` (``"obs"`` when ``"obs/image"`` is a key)."""
    keys = list(keys)
    return tuple(name for name in names if any(key.startswith(name + PATH_SEPARATOR) for key in keys))


__all__ = ["Observation", "batch_size", "concatenate", "flat_observation", "flatten_fields", "flatten_tree",
           "map_observation", "nest_fields", "stack", "take_rows", "to_numpy", "to_tensor", "tree_field_names"]
