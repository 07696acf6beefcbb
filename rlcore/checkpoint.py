"""Checkpoints as folders that load without running code, written atomically.

A checkpoint is a folder with two files:

* ``state.safetensors`` holds every tensor and array, keyed by its path in the saved structure
  (``"algo/optimizer/state/0/exp_avg"``).
* ``meta.json`` holds the caller's metadata (algo name, config, counters, ...), the format version,
  the rlcore/torch/numpy versions, the sha256 and byte size of ``state.safetensors``, the dtype of every
  tensor (``dtypes``), the save's time (``saved_at_ns``) and the *skeleton*: the rest of the saved
  structure as JSON, with references to the tensors.

Loading treats a checkpoint as data from a stranger (see ``docs/security.md``): rlcore never unpickles,
never calls ``torch.load`` and never follows a symlink inside the folder; ``meta.json`` and the state
file's header are read within fixed limits (:mod:`rlcore.checkpoint_reader`) and validated before any
tensor is allocated; a caller's ``inspect`` callback sees the metadata and the state's *layout* (every
tensor's dtype and shape, on the ``meta`` device) before the tensors are read, so it can refuse a
checkpoint whose metadata would build something larger than, or of other dtypes than, what the state
file holds. A state file whose size or sha256 differs from ``meta.json`` is refused.

Crash safety of :func:`save_checkpoint` for a checkpoint at ``PATH``:

1. Everything is written into the sibling folder ``PATH.tmp-<pid>-<random>``; files and folder are
   fsynced, ``meta.json`` last.
2. An existing ``PATH`` is renamed to ``PATH.old``, then the temp folder is renamed to ``PATH``; each
   rename is followed by an fsync of the parent folder.
3. Only then are ``PATH.old`` and temp folders left by dead processes deleted.

So whenever a save is killed, the newest complete checkpoint is still on disk: ``PATH`` (killed before
its temp folder was complete, or after the swap), or the complete temp folder (killed between finishing
it and the second rename; ``PATH.old`` then holds the previous one). :func:`load_checkpoint` loads the
newest complete *version* among ``PATH``, ``PATH.tmp-*`` and ``PATH.old`` (newest by ``saved_at_ns``,
verified by size and sha256) and logs a warning when that is not ``PATH`` itself; the next save puts
things in order. An exception inside :func:`save_checkpoint` (rather than a crash) removes the temp
folder and, if it happens between the renames, moves the old checkpoint back. Two processes saving to
the same ``PATH`` at the same time are not supported.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from rlcore.checkpoint_reader import (
    DTYPE_NAMES,
    MAX_META_BYTES,
    MAX_TENSORS,
    SAFETENSORS_DTYPES,
    Folder,
    StateFile,
    UnreadableFile,
    is_symlink,
    json_size_problem,
    meta_tensors,
    open_folder,
    read_json,
    zero_strided,
)
from rlcore.fields import absolute_user_path, user_path

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "Inspector",
    "capture_rng_state",
    "checkpoint_versions",
    "load_checkpoint",
    "pack_state",
    "restore_rng_state",
    "save_checkpoint",
    "unpack_state",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION: int = 1
"""Version of the folder layout and skeleton encoding; bumped on incompatible changes."""

FORMAT_NAME = "rlcore-checkpoint"
META_FILE = "meta.json"
STATE_FILE = "state.safetensors"
FORMAT_KEYS = ("format", "format_version", "versions", "state_file", "dtypes", "saved_at_ns")
"""Keys of ``meta.json`` that :func:`save_checkpoint` writes itself (besides ``skeleton``)."""
_RESERVED_META_KEYS = (*FORMAT_KEYS, "skeleton")

# Skeleton encoding: JSON null/bool/str/list and ints within +-(2**53 - 1) and finite floats stand for
# themselves; a JSON object without the tag key is a dict with str keys; everything else is a JSON
# object {"$t": <kind>, ...}.
_TAG = "$t"
_SAFE_INT = 2**53 - 1  # larger ints are written as decimal strings so any JSON reader keeps them exact

# Tensors with these dtypes go into safetensors as they are (every safetensors release reads them);
# any other dtype is stored as its raw bytes (uint8) plus dtype and shape in the skeleton.
_NATIVE_TORCH_DTYPES = frozenset(SAFETENSORS_DTYPES.values())
_NATIVE_NUMPY_DTYPES = frozenset(
    np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
)
_NUMPY_OF_TORCH = {dtype: torch.empty(0, dtype=dtype).numpy().dtype for dtype in _NATIVE_TORCH_DTYPES
                   if dtype != torch.bfloat16}
# bool, signed/unsigned int, float, complex, timedelta, datetime, bytes, unicode: fixed-size plain data.
_NUMPY_KINDS = "biufcmMSU"

_HASH_CHUNK = 1 << 22


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, truncated, of another algorithm, or not an rlcore checkpoint."""


# --------------------------------------------------------------------------------------------------
# pack / unpack
# --------------------------------------------------------------------------------------------------


def pack_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Splits a nested structure into flat tensors and a JSON-serialisable skeleton.

    Accepted leaves and containers: dicts whose keys are str or int (int keys come back as ints),
    lists, tuples, ``None``, bool, int (any size), float (including nan/inf), str, ``torch.Tensor``,
    ``np.ndarray`` and numpy scalars (``np.generic``). Dict and tuple subclasses (``OrderedDict``,
    named tuples) come back as plain dicts and tuples.

    Args:
        state: The structure to split.

    Returns:
        ``(tensors, skeleton)``: ``tensors`` maps a path such as ``"algo/optimizer/state/0/exp_avg"``
        to a contiguous CPU copy of each tensor (arrays become tensors too); ``skeleton`` is plain
        JSON data (``json.dumps(skeleton, allow_nan=False)`` works) that refers to them by key.

    Raises:
        TypeError: A value of another type, naming its path and type.
        ValueError: The structure contains itself.
    """
    packer = _Packer()
    skeleton = packer.encode(state, "")
    return packer.tensors, skeleton


def unpack_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of :func:`pack_state`.

    Tensors come back as the objects in ``tensors`` (or views of them), arrays as ``np.ndarray`` with
    their saved dtype and shape, numpy scalars as ``np.generic``.

    Raises:
        CheckpointError: The skeleton is malformed or refers to a tensor that is missing or does not
            fit its recorded dtype and shape.
    """
    return _decode(skeleton, tensors, "")


class _Packer:
    """Walks a structure once, collecting tensors under unique keys."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._open: set[int] = set()  # ids of the containers being walked, to catch cycles

    def encode(self, obj: Any, path: str) -> Any:
        if obj is None:
            return None
        # numpy scalars first: np.float64 is a float and np.str_ a str, but they must stay numpy.
        if isinstance(obj, np.generic):
            return self._array(np.asarray(obj), path, "npscalar")
        if isinstance(obj, bool):
            return obj
        if isinstance(obj, int):
            integer = int(obj)
            return integer if abs(integer) <= _SAFE_INT else {_TAG: "int", "value": str(integer)}
        if isinstance(obj, float):
            value = float(obj)
            return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
        if isinstance(obj, str):
            return str(obj)
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj, path)
        if isinstance(obj, np.ndarray):
            if isinstance(obj, np.ma.MaskedArray):
                raise TypeError(
                    f"pack_state: masked array at {_show(path)} is not supported; store .data and .mask"
                )
            return self._array(np.asarray(obj), path, "ndarray")
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._open:
                raise ValueError(f"pack_state: the structure contains itself at {_show(path)}")
            self._open.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self._open.discard(id(obj))
        raise TypeError(
            f"pack_state: cannot store {type(obj).__module__}.{type(obj).__qualname__} at {_show(path)}; "
            "supported are dict (str or int keys), list, tuple, None, bool, int, float, str, "
            "torch.Tensor, np.ndarray and numpy scalars"
        )

    def _container(self, obj: dict | list | tuple, path: str) -> Any:
        if isinstance(obj, list):
            return [self.encode(item, _join(path, index)) for index, item in enumerate(obj)]
        if isinstance(obj, tuple):
            return {_TAG: "tuple", "items": [self.encode(item, _join(path, i)) for i, item in enumerate(obj)]}
        keys = list(obj.keys())
        for key in keys:
            if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
                raise TypeError(
                    f"pack_state: dict at {_show(path)} has a key {key!r} of type {type(key).__qualname__}; "
                    "only str and int keys are supported"
                )
        if all(type(key) is str or isinstance(key, str) for key in keys) and _TAG not in obj:
            return {str(key): self.encode(value, _join(path, key)) for key, value in obj.items()}
        items = []
        for key, value in obj.items():
            encoded_key = str(key) if isinstance(key, str) else self.encode(int(key), path)
            items.append([encoded_key, self.encode(value, _join(path, key))])
        return {_TAG: "dict", "items": items}

    def _tensor(self, tensor: torch.Tensor, path: str) -> dict[str, Any]:
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
            raise TypeError(
                f"pack_state: tensor at {_show(path)} has layout {tensor.layout}, device {tensor.device}"
                f"{' (quantized)' if tensor.is_quantized else ''}; only dense tensors with data can be saved"
            )
        tensor = tensor.detach().resolve_conj().resolve_neg()
        copy = tensor.to("cpu", copy=True, memory_format=torch.contiguous_format)
        if copy.dtype in _NATIVE_TORCH_DTYPES:
            return {_TAG: "tensor", "key": self._store(copy, path)}
        raw = copy.reshape(-1).view(torch.uint8)
        node: dict[str, Any] = {_TAG: "tensor", "key": self._store(raw, path)}
        node.update(dtype=str(copy.dtype).removeprefix("torch."), shape=list(copy.shape))
        return node

    def _array(self, array: np.ndarray, path: str, tag: str) -> dict[str, Any]:
        dtype = array.dtype
        if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise TypeError(
                f"pack_state: numpy {'scalar' if tag == 'npscalar' else 'array'} at {_show(path)} has dtype "
                f"{dtype.name!r}; supported are bool/int/uint/float/complex/datetime/timedelta/bytes/str"
            )
        if dtype.itemsize == 0:
            raise TypeError(f"pack_state: numpy array at {_show(path)} has zero-size dtype {dtype.str!r}")
        copy = np.array(array, order="C", copy=True)
        node: dict[str, Any] = {_TAG: tag, "dtype": dtype.str}
        if dtype in _NATIVE_NUMPY_DTYPES and dtype.isnative:
            node["key"] = self._store(torch.from_numpy(copy), path)
        else:
            node["key"] = self._store(torch.from_numpy(copy.reshape(-1).view(np.uint8)), path)
            node.update(shape=list(copy.shape), raw=True)
        return node

    def _store(self, tensor: torch.Tensor, path: str) -> str:
        # Keys must be unique; "a/b" can come from {"a/b": x} and {"a": {"b": y}}, and safetensors
        # reserves "__metadata__" for its own header entry.
        base = path or "_root"
        key, suffix = base, 1
        while key in self.tensors or key == "__metadata__":
            key, suffix = f"{base}~{suffix}", suffix + 1
        self.tensors[key] = tensor
        return key


def _join(path: str, part: Any) -> str:
    return f"{path}/{part}" if path else str(part)


def _show(path: str) -> str:
    return repr(path) if path else "the top level"


def _decode(node: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(item, tensors, _join(path, index)) for index, item in enumerate(node)]
    if not isinstance(node, dict):
        raise CheckpointError(f"malformed skeleton at {_show(path)}: unexpected {type(node).__qualname__}")
    tag = node.get(_TAG)
    if tag is None:
        return {key: _decode(value, tensors, _join(path, key)) for key, value in node.items()}
    if tag == "tuple":
        items = _field(node, "items", list, path)
        return tuple(_decode(item, tensors, _join(path, index)) for index, item in enumerate(items))
    if tag == "dict":
        result: dict[Any, Any] = {}
        for item in _field(node, "items", list, path):
            if not (isinstance(item, list) and len(item) == 2):
                raise CheckpointError(f"malformed skeleton at {_show(path)}: dict items must be [key, value]")
            key = item[0] if isinstance(item[0], str) else _decode(item[0], tensors, path)
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise CheckpointError(f"malformed skeleton at {_show(path)}: dict key {item[0]!r}")
            result[key] = _decode(item[1], tensors, _join(path, key))
        return result
    if tag == "int":
        text = _field(node, "value", str, path)
        try:
            return int(text)
        except ValueError:
            raise CheckpointError(f"malformed skeleton at {_show(path)}: {text[:40]!r} is no int") from None
    if tag == "float":
        text = _field(node, "value", str, path)
        if text not in ("nan", "inf", "-inf"):
            raise CheckpointError(f"malformed skeleton at {_show(path)}: {text[:40]!r} is not nan/inf/-inf")
        return float(text)
    if tag == "tensor":
        return _decode_tensor(node, tensors, path)
    if tag in ("ndarray", "npscalar"):
        return _decode_array(node, tensors, path, tag)
    raise CheckpointError(f"malformed skeleton at {_show(path)}: unknown kind {tag!r}")


def _field(node: dict[str, Any], name: str, kind: type, path: str) -> Any:
    value = node.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"malformed skeleton at {_show(path)}: {name!r} must be a {kind.__name__}")
    return value


def _lookup(node: dict[str, Any], tensors: dict[str, torch.Tensor], path: str) -> torch.Tensor:
    key = _field(node, "key", str, path)
    base = path or "_root"
    if key != base and not (key.startswith(f"{base}~") and key[len(base) + 1:].isdigit()):
        # the key is the node's own path (pack_state writes it so): a skeleton pointing one entry at another
        # tensor of the same shape and dtype would otherwise load it in the wrong place
        raise CheckpointError(f"malformed skeleton at {_show(path)}: it refers to tensor {key[:80]!r}, not its own")
    tensor = tensors.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"the state file has no tensor {key!r}, which {_show(path)} refers to")
    return tensor


def _shape(node: dict[str, Any], path: str) -> tuple[int, ...]:
    shape = _field(node, "shape", list, path)
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape):
        raise CheckpointError(f"malformed skeleton at {_show(path)}: bad shape {shape!r}")
    return tuple(shape)


def _check_raw(raw: torch.Tensor, shape: tuple[int, ...], itemsize: int, path: str) -> None:
    expected = math.prod(shape) * itemsize
    if raw.dtype != torch.uint8 or raw.dim() != 1 or raw.numel() != expected:
        raise CheckpointError(
            f"tensor for {_show(path)} holds {raw.numel()} {raw.dtype} values, expected {expected} bytes"
        )


def _decode_tensor(node: dict[str, Any], tensors: dict[str, torch.Tensor], path: str) -> torch.Tensor:
    tensor = _lookup(node, tensors, path)
    if "dtype" not in node:
        return tensor
    name = _field(node, "dtype", str, path)
    dtype = getattr(torch, name, None) if name.isidentifier() else None
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"malformed skeleton at {_show(path)}: unknown torch dtype {name!r}")
    shape = _shape(node, path)
    _check_raw(tensor, shape, torch.empty(0, dtype=dtype).element_size(), path)
    return tensor.view(dtype).reshape(shape)


def _decode_array(node: dict[str, Any], tensors: dict[str, torch.Tensor], path: str, tag: str) -> Any:
    tensor = _lookup(node, tensors, path)
    text = _field(node, "dtype", str, path)
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise CheckpointError(f"malformed skeleton at {_show(path)}: unknown numpy dtype {text!r}") from None
    if dtype.kind not in _NUMPY_KINDS or dtype.fields is not None or dtype.itemsize == 0:
        raise CheckpointError(f"malformed skeleton at {_show(path)}: unsupported numpy dtype {text!r}")
    if node.get("raw"):
        shape = _shape(node, path)
        _check_raw(tensor, shape, dtype.itemsize, path)
        array = zero_strided(dtype, shape) if tensor.is_meta else tensor.numpy().view(dtype).reshape(shape)
    else:
        held = _NUMPY_OF_TORCH.get(tensor.dtype)
        if held != dtype:
            raise CheckpointError(
                f"array at {_show(path)} was saved as {dtype} but the state file holds {held or tensor.dtype}"
            )
        array = zero_strided(dtype, tuple(tensor.shape)) if tensor.is_meta else tensor.numpy()
    if tag == "npscalar":
        if array.ndim != 0:
            raise CheckpointError(f"numpy scalar at {_show(path)} has shape {array.shape}")
        return array[()]
    return array


# --------------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, state: Any, meta: dict[str, Any]) -> Path:
    """Writes ``state`` and ``meta`` as a checkpoint folder at ``path``, atomically.

    See the module docstring for what a crash at any point leaves behind.

    Args:
        path: The checkpoint folder. Its parent is created if needed. An existing checkpoint there is
            replaced once the new one is complete; a file or a non-empty folder without ``meta.json``
            is never replaced.
        state: Anything :func:`pack_state` accepts.
        meta: JSON-serialisable metadata with str keys and no nan/inf (algo name, config, counters).
            ``format``, ``format_version``, ``state_file`` and ``skeleton`` are set here; ``versions``
            gets rlcore/torch/numpy/safetensors/python versions (other entries given in ``meta`` stay).

    Returns:
        ``Path(path)``.

    Raises:
        TypeError: ``state`` holds an unsupported type, or ``meta`` is not JSON-serialisable.
        ValueError: The checkpoint would exceed what :func:`load_checkpoint` reads (more than
            ``MAX_TENSORS`` tensors or a ``meta.json`` over ``MAX_META_BYTES``).
        FileExistsError: ``path`` is a file, a symlink or a folder that is not a checkpoint.
        OSError: Writing failed; the previous checkpoint at ``path`` is still in place.
    """
    target = user_path(path)
    tensors, skeleton = pack_state(state)
    if len(tensors) > MAX_TENSORS:
        raise ValueError(f"save_checkpoint: {len(tensors)} tensors, more than the {MAX_TENSORS} that "
                         "load_checkpoint reads (MAX_TENSORS); store fewer, larger tensors")
    document = _meta_document(meta, skeleton)
    document["dtypes"] = {key: DTYPE_NAMES[tensor.dtype] for key, tensor in tensors.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target)

    temp = _temp_path(target)
    temp.mkdir()
    try:
        state_path = temp / STATE_FILE
        safetensors.torch.save_file(tensors, str(state_path), metadata={"format": "pt"})
        size, digest = _hash_and_fsync(state_path)
        document["state_file"] = {"name": STATE_FILE, "bytes": size, "sha256": digest}
        document["saved_at_ns"] = time.time_ns()
        document["skeleton"] = document.pop("skeleton")  # keep the bulky part last in the file
        text = (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8")
        problem = (f"is {len(text)} bytes, more than {MAX_META_BYTES} (MAX_META_BYTES)"
                   if len(text) > MAX_META_BYTES else json_size_problem(text))
        if problem:
            raise ValueError(f"save_checkpoint: meta.json {problem}, which load_checkpoint would refuse; keep "
                             "large values in tensors or numpy arrays, not in lists")
        _write_bytes_fsync(temp / META_FILE, text)
        _fsync_dir(temp)
        _swap_into_place(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
    _remove_leftovers(target)
    logger.debug("saved checkpoint %s (%d tensors, %d bytes)", target, len(tensors), size)
    return target


def _meta_document(meta: dict[str, Any], skeleton: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise TypeError(f"save_checkpoint: meta must be a dict, got {type(meta).__qualname__}")
    try:
        plain = json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: meta must be JSON-serialisable without nan/inf: {err}") from err
    versions = plain.get("versions")
    versions = dict(versions) if isinstance(versions, dict) else {}
    versions.update(_versions())
    document: dict[str, Any] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    document.update((key, value) for key, value in plain.items() if key not in _RESERVED_META_KEYS)
    document["versions"] = versions
    document["skeleton"] = skeleton
    return document


def _versions() -> dict[str, str]:
    try:
        rlcore_version = importlib.metadata.version("rlcore")
    except importlib.metadata.PackageNotFoundError:
        rlcore_version = "0+unknown"
    return {
        "rlcore": rlcore_version,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "safetensors": getattr(safetensors, "__version__", "unknown"),
        "python": platform.python_version(),
    }


def _temp_path(target: Path) -> Path:
    return target.with_name(f"{target.name}{_TEMP_INFIX}{os.getpid()}-{secrets.token_hex(4)}")


_TEMP_INFIX = ".tmp-"


def _old_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.old")


def _temp_writer(target: Path, candidate: str) -> int | None:
    """The pid in ``<target>.tmp-<pid>[-<random>]``, or None when ``candidate`` is not such a name."""
    prefix = target.name + _TEMP_INFIX
    if not candidate.startswith(prefix):
        return None
    pid, _, suffix = candidate[len(prefix) :].partition("-")
    if not pid.isdigit() or not (suffix == "" or suffix.isalnum()):
        return None
    return int(pid)


def _check_replaceable(target: Path) -> None:
    if is_symlink(target) or (target.exists() and not target.is_dir()):
        raise FileExistsError(
            f"{target} exists and is not a folder (or is a symlink); save_checkpoint writes a folder and will "
            "not replace a file or write through a link: save to another path or remove it first"
        )
    if target.is_dir() and not _is_regular(target / META_FILE) and any(target.iterdir()):
        raise FileExistsError(
            f"{target} is a non-empty folder without {META_FILE}, so it is not an rlcore checkpoint; "
            "save_checkpoint will not replace it: save to another path or empty the folder first"
        )


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_leftovers(target: Path) -> None:
    """After a save: deletes ``PATH.old`` and the ``PATH.tmp-*`` folders of dead processes (interrupted saves)."""
    _remove_quietly(_old_path(target))
    for candidate in _sibling_names(target):
        pid = _temp_writer(target, candidate)
        if pid is None:
            continue
        if pid != os.getpid() and _pid_alive(pid):
            logger.info("leaving %s alone: process %d, which may be saving to it, is running", candidate, pid)
            continue
        logger.info("removing %s, left by an interrupted save", candidate)
        _remove_quietly(target.with_name(candidate))


def _sibling_names(target: Path) -> list[str]:
    """Names in ``target``'s parent folder that start with ``target``'s name."""
    try:
        with os.scandir(target.parent) as entries:
            return sorted(entry.name for entry in entries if entry.name.startswith(target.name))
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill would terminate the process there; assume it is alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(temp: Path, target: Path) -> None:
    """Renames the complete ``temp`` folder to ``target``, keeping the old one as ``target.old`` meanwhile."""
    old = _old_path(target)
    if target.exists():
        # target is complete (only ever created by the rename below), so a leftover .old is older.
        if old.exists() or old.is_symlink():
            _remove(old)
        os.rename(target, old)
        _fsync_dir(target.parent)
        try:
            os.rename(temp, target)
        except BaseException:
            try:
                os.rename(old, target)
            except OSError:
                logger.exception("could not move %s back to %s; loading falls back to it", old, target)
            raise
    else:
        # A missing target with a complete .old (crash between the renames) keeps .old until now.
        os.rename(temp, target)
    _fsync_dir(target.parent)


def _hash_and_fsync(file: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(file, "r+b") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(handle.fileno())
    return size, digest.hexdigest()


def _write_bytes_fsync(file: Path, data: bytes) -> None:
    with open(file, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Makes renames and new entries in ``folder`` durable (a no-op where folders cannot be fsynced)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
        logger.debug("fsync of folder %s not supported: %s", folder, err)
    finally:
        os.close(fd)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _remove_quietly(entry: Path) -> None:
    try:
        if entry.exists() or entry.is_symlink():
            _remove(entry)
    except OSError as err:
        logger.warning("could not remove %s: %s", entry, err)


# --------------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------------


Inspector = Callable[[dict[str, Any], Any], None]
"""``inspect(meta, layout)``, called by :func:`load_checkpoint` before any tensor is allocated.

``meta`` is what :func:`load_checkpoint` returns as metadata; ``layout`` is the saved structure with every
tensor replaced by a tensor on the ``meta`` device (its dtype and shape, no memory) and every array by a
one-element read-only stand-in of its dtype and shape. It raises :class:`CheckpointError` to refuse the
checkpoint (rlcore's agents check the metadata's schema and that the networks it describes fit the
saved tensors, see :mod:`rlcore.checkpoint_schema`)."""


@dataclass
class _Version:
    """One complete-looking version of a checkpoint: an open folder whose ``meta.json`` parsed."""

    folder: Folder
    meta: dict[str, Any]
    rank: int
    """0 for a temp folder, 1 for ``PATH``, 2 for ``PATH.old``: the order of a save, when times tie."""

    @property
    def saved_at(self) -> int:
        value = self.meta.get("saved_at_ns")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


def checkpoint_versions(path: str | os.PathLike) -> list[Path]:
    """The folders that may hold a version of the checkpoint at ``path``: ``path`` itself, the temp folders of
    interrupted (or running) saves and ``path.old`` (see the module docstring); none is opened or followed."""
    target = absolute_user_path(path)  # "." and "x/.." have no name of their own
    names = set(_sibling_names(target))
    found = [target] if target.name in names else []
    found += [target.with_name(name) for name in sorted(names) if _temp_writer(target, name) is not None]
    if _old_path(target).name in names:
        found.append(_old_path(target))
    return found


def load_checkpoint(
    path: str | os.PathLike, expected_algo: str | None = None, *, inspect: Inspector | None = None
) -> tuple[Any, dict[str, Any]]:
    """Loads the newest complete version of the checkpoint at ``path``, without running any code from it.

    The versions are ``path`` and what an interrupted save leaves next to it (``path.tmp-*``, ``path.old``,
    see the module docstring); the newest one whose files are complete and whose sha256 matches is loaded,
    with a warning when it is not ``path`` itself.

    Args:
        path: The checkpoint folder (not a symlink).
        expected_algo: If given, ``meta["algo"]`` must equal it.
        inspect: See :data:`Inspector`: checks run before any tensor is allocated.

    Returns:
        ``(state, meta)``: the saved structure (tensors on CPU) and the metadata from ``meta.json``
        (the caller's keys plus ``format``, ``format_version``, ``versions``, ``state_file``, ``dtypes``
        and ``saved_at_ns``; the skeleton is left out).

    Raises:
        CheckpointError: No complete version (``path`` missing, a file such as a pickle, which rlcore
            never loads, or a symlink; ``meta.json`` or the state file missing, too large, truncated,
            corrupted or unparsable; another format version), a checkpoint of another algo, an
            inconsistent skeleton, or what ``inspect`` raises.
    """
    target = absolute_user_path(path)
    if target.exists() and not target.is_dir() and not is_symlink(target):
        raise CheckpointError(_not_a_folder_message(target))
    versions, problems = _open_versions(target)
    try:
        for version in versions:
            try:
                state, meta = _load_version(version, expected_algo, inspect)
            except UnreadableFile as err:
                problems.append(str(err))
                continue
            if version.folder.path != target or problems:
                logger.warning("loading %s, the newest complete version of checkpoint %s (a save was interrupted "
                               "or is in progress%s)", version.folder.path, target,
                               "; skipped: " + "; ".join(problems) if problems else "")
            return state, meta
    finally:
        for version in versions:
            version.folder.close()
    raise CheckpointError(_no_version_message(target, problems))


def _open_versions(target: Path) -> tuple[list[_Version], list[str]]:
    """The versions whose ``meta.json`` parses, newest first, and what is wrong with the others."""
    versions: list[_Version] = []
    problems: list[str] = []
    for candidate in checkpoint_versions(target):
        rank = 1 if candidate == target else 2 if candidate == _old_path(target) else 0
        try:
            folder = open_folder(candidate)
        except UnreadableFile as err:
            problems.append(str(err))
            continue
        try:
            meta = _read_meta(folder)
        except UnreadableFile as err:
            folder.close()
            problems.append(str(err))
            continue
        versions.append(_Version(folder, meta, rank))
    versions.sort(key=lambda version: (-version.saved_at, version.rank))
    return versions, problems


def _no_version_message(target: Path, problems: list[str]) -> str:
    if target.name in _sibling_names(target):  # it exists: what is wrong with it (and with the others)
        if len(problems) == 1:
            return problems[0]
        return f"no complete version of checkpoint {target}: " + "; ".join(problems)
    if problems:
        return (f"checkpoint {target} does not exist, and what interrupted saves left next to it cannot be loaded "
                "either: " + "; ".join(problems))
    return f"checkpoint {target} does not exist; check the path (save_checkpoint writes a folder there)"


def _not_a_folder_message(target: Path) -> str:
    try:
        with open(target, "rb") as handle:
            head = handle.read(8)
    except OSError:
        head = b""
    if head.startswith(b"PK\x03\x04"):
        kind = "a zip archive (torch.save writes pickles inside zip archives)"
    elif head[:1] == b"\x80" or target.suffix.lower() in (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"):
        kind = "most likely a pickle (torch.save / pickle.dump)"
    elif target.suffix.lower() == ".safetensors":
        kind = "a bare safetensors file"
    else:
        kind = "a file"
    return (
        f"{target} is {kind}, not an rlcore checkpoint folder. rlcore never unpickles (loading a pickle "
        f"can run arbitrary code) and expects a folder holding {META_FILE} and {STATE_FILE}, as written by "
        "rlcore.checkpoint.save_checkpoint; pass such a folder, or, if you trust this file, load it "
        "yourself and re-save it with save_checkpoint"
    )


def _load_version(
    version: _Version, expected_algo: str | None, inspect: Inspector | None
) -> tuple[Any, dict[str, Any]]:
    meta, folder = version.meta, version.folder
    _check_algo(meta, expected_algo, folder.path)
    record = meta["state_file"]
    state_path = folder.path / STATE_FILE  # fixed name: never a path taken from the file
    fix = "restore it from a backup or use an earlier checkpoint"
    with folder.open(STATE_FILE, "state file") as (handle, size):
        if size != record["bytes"]:
            problem = "truncated" if size < record["bytes"] else "corrupted (longer than written)"
            raise UnreadableFile(f"{state_path} is {problem}: {size} bytes, but {record['bytes']} were written; "
                                 f"{fix}")
        state_file = StateFile(handle, size, state_path)
        _check_dtype_table(meta, state_file, state_path)
        public = {key: value for key, value in meta.items() if key != "skeleton"}
        if inspect is not None:
            inspect(public, _unpack(meta["skeleton"], meta_tensors(state_file.entries), folder.path))
        tensors, digest = state_file.read_tensors()
    if digest != record["sha256"]:
        raise UnreadableFile(f"{state_path} is corrupted: its sha256 is {digest}, but {record['sha256']} was "
                             f"recorded in {META_FILE}; {fix}")
    return _unpack(meta["skeleton"], tensors, folder.path), public


def _unpack(skeleton: Any, tensors: dict[str, torch.Tensor], folder: Path) -> Any:
    try:
        return unpack_state(tensors, skeleton)
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {folder} is inconsistent: {err}; re-save it") from err
    except (RecursionError, TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"checkpoint {folder} has a malformed skeleton ({err}); re-save it") from err


def _check_algo(meta: dict[str, Any], expected_algo: str | None, folder: Path) -> None:
    if expected_algo is None or meta.get("algo") == expected_algo:
        return
    if "algo" not in meta:
        raise CheckpointError(
            f"checkpoint {folder} records no algo, but {expected_algo!r} was expected; "
            f"pass a checkpoint saved by {expected_algo}"
        )
    raise CheckpointError(
        f"checkpoint {folder} was saved by algo {str(meta['algo'])[:80]!r}, not {expected_algo!r}; load it with "
        f"{str(meta['algo'])[:80]!r} or pass a checkpoint saved by {expected_algo!r}"
    )


def _check_dtype_table(meta: dict[str, Any], state_file: StateFile, state_path: Path) -> None:
    """``meta.json``'s ``dtypes`` (written since it was added; taken from the header when absent) must
    name the header's tensors and their dtypes."""
    table = meta.get("dtypes")
    if table is None:
        return
    header = {key: DTYPE_NAMES[entry.dtype] for key, entry in state_file.entries.items()}
    if table == header:
        return
    names = sorted(set(table) ^ set(header))
    if names:
        problem = f"tensor {names[0][:80]!r} is in only one of them"
    else:
        key = next(key for key in sorted(header) if table[key] != header[key])
        problem = f"tensor {key[:80]!r} is {str(table[key])[:20]} in {META_FILE} but {header[key]} in the state file"
    raise UnreadableFile(f"{state_path} does not match {META_FILE}'s dtypes ({problem}); the checkpoint is "
                         "corrupted or was edited: restore it from a backup or use an earlier checkpoint")


def _read_meta(folder: Folder) -> dict[str, Any]:
    """``meta.json`` with its format keys validated; UnreadableFile says what is wrong."""
    meta_path = folder.path / META_FILE
    try:
        meta = read_json(folder, META_FILE)
    except UnreadableFile as err:
        if not str(err).endswith("is missing"):
            raise UnreadableFile(f"{err}; the checkpoint is corrupted: restore it from a backup or use an earlier "
                                 "checkpoint") from err
        hint = (f"it has {STATE_FILE} but no {META_FILE}: it was copied incompletely or damaged"
                if (folder.path / STATE_FILE).exists() else "it is not an rlcore checkpoint folder")
        raise UnreadableFile(f"{meta_path} is missing; {hint}. Pass a folder written by "
                             "rlcore.checkpoint.save_checkpoint") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise UnreadableFile(f'{meta_path} does not describe an rlcore checkpoint (no "format": "{FORMAT_NAME}"); '
                             "pass a folder written by rlcore.checkpoint.save_checkpoint")
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        fix = "upgrade rlcore to load it" if newer else "re-save it with a matching rlcore version"
        raise UnreadableFile(f"{meta_path} has checkpoint format version {str(version)[:20]!r}, but this rlcore "
                             f"reads version {FORMAT_VERSION}; {fix}")
    missing = _format_problems(meta)
    if missing:
        raise UnreadableFile(f"{meta_path} lacks {', '.join(missing)}; the checkpoint is corrupted or was edited by "
                             "hand: restore it from a backup or use an earlier checkpoint")
    return meta


def _format_problems(meta: dict[str, Any]) -> list[str]:
    """What is missing or mistyped among the keys :func:`save_checkpoint` writes itself."""
    missing = [key for key in ("state_file", "skeleton") if key not in meta]
    record = meta.get("state_file")
    if isinstance(record, dict):
        digest = record.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            missing.append("state_file.sha256 (64 hex digits)")
        if not _is_size(record.get("bytes")):
            missing.append("state_file.bytes")
    elif "state_file" not in missing:
        missing.append("state_file (as an object)")
    dtypes = meta.get("dtypes")
    if dtypes is not None and not (isinstance(dtypes, dict) and all(isinstance(v, str) for v in dtypes.values())):
        missing.append("dtypes (an object of dtype names)")
    versions = meta.get("versions")
    if versions is not None and not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        missing.append("versions (an object of strings)")
    if "saved_at_ns" in meta and not _is_size(meta["saved_at_ns"]):
        missing.append("saved_at_ns (an int)")
    return missing


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of Python's ``random``, numpy's global RNG, torch's CPU RNG, CUDA RNGs and ``generators``.

    CUDA states are included when CUDA is available and already initialised (capturing never
    initialises CUDA).

    Args:
        generators: Named ``torch.Generator`` objects (e.g. a replay buffer's sampling generator).

    Returns:
        A structure :func:`pack_state` accepts, for :func:`restore_rng_state`.
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "internal": np.asarray(internal, dtype=np.uint32),
            "gauss_next": gauss_next,
        },
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
        "generators": {name: generator.get_state() for name, generator in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Restores :func:`capture_rng_state` output (after a :func:`pack_state` round trip or not).

    Args:
        state: What :func:`capture_rng_state` returned.
        generators: Generators to restore, by the names they were captured under.

    Raises:
        KeyError: A generator in ``generators`` has no saved state.
    """
    generators = generators or {}
    missing = sorted(set(generators) - set(state.get("generators", {})))
    if missing:
        raise KeyError(
            f"no saved RNG state for generator(s) {missing}; saved are {sorted(state.get('generators', {}))}"
        )
    python = state["python"]
    internal = tuple(int(word) for word in np.asarray(python["internal"]).tolist())
    random.setstate((int(python["version"]), internal, python["gauss_next"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(_byte_state(state["torch"]))
    for name, generator in generators.items():
        generator.set_state(_byte_state(state["generators"][name]))
    unused = sorted(set(state.get("generators", {})) - set(generators))
    if unused:
        logger.debug("saved RNG state for generator(s) %s not restored (not passed)", unused)
    cuda_states = state.get("cuda")
    if cuda_states:
        if not torch.cuda.is_available():
            logger.warning("saved CUDA RNG states are not restored: CUDA is not available")
            return
        count = torch.cuda.device_count()
        if count != len(cuda_states):
            logger.warning(
                "saved CUDA RNG states are for %d devices, but %d are visible; restoring the first %d",
                len(cuda_states),
                count,
                min(count, len(cuda_states)),
            )
        for device, device_state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(_byte_state(device_state), device)


def _byte_state(value: Any) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    return tensor.to(device="cpu", dtype=torch.uint8).contiguous()
