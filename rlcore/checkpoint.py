"""Checkpoints as folders that load without running code, written atomically.

A checkpoint is a folder with two files:

* ``state.safetensors`` holds every tensor and array, keyed by its path in the saved structure
  (``"algo/optimizer/state/0/exp_avg"``).
* ``meta.json`` holds the caller's metadata (algo name, config, counters, ...), the format version,
  the rlcore/torch/numpy versions, the sha256 and byte size of ``state.safetensors``, and the
  *skeleton*: the rest of the saved structure as JSON, with references to the tensors.

Loading reads JSON and safetensors only: rlcore never unpickles and never calls ``torch.load``, so a
checkpoint from an untrusted source cannot run code. A file whose size or sha256 differs from
``meta.json`` is refused before it is parsed.

Crash safety of :func:`save_checkpoint` for a checkpoint at ``PATH``:

1. Everything is written into the sibling folder ``PATH.tmp-<pid>``; files and folder are fsynced.
2. An existing ``PATH`` is renamed to ``PATH.old``, then ``PATH.tmp-<pid>`` is renamed to ``PATH``,
   then ``PATH.old`` is deleted. Each rename is followed by an fsync of the parent folder.
3. A crash before step 2 leaves the old ``PATH`` untouched (plus a stale temp folder, which the next
   save to ``PATH`` deletes once the process that wrote it is gone). A crash between the two renames
   leaves no ``PATH`` but a complete ``PATH.old``: :func:`load_checkpoint` then loads ``PATH.old``
   (the *old* checkpoint) with a warning, and the next save puts a new ``PATH`` in place before
   deleting ``PATH.old``. A crash after the second rename leaves the new ``PATH`` complete.

An exception inside :func:`save_checkpoint` (rather than a crash) removes the temp folder and, if it
happens between the renames, moves the old checkpoint back. Two processes saving to the same
``PATH`` at the same time are not supported.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "capture_rng_state",
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
_RESERVED_META_KEYS = ("format", "format_version", "versions", "state_file", "skeleton")

# Skeleton encoding: JSON null/bool/str/list and ints within +-(2**53 - 1) and finite floats stand for
# themselves; a JSON object without the tag key is a dict with str keys; everything else is a JSON
# object {"$t": <kind>, ...}.
_TAG = "$t"
_SAFE_INT = 2**53 - 1  # larger ints are written as decimal strings so any JSON reader keeps them exact

# Tensors with these dtypes go into safetensors as they are (every safetensors release reads them);
# any other dtype is stored as its raw bytes (uint8) plus dtype and shape in the skeleton.
_NATIVE_TORCH_DTYPES = frozenset(
    {
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    }
)
_NATIVE_NUMPY_DTYPES = frozenset(
    np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
)
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
        array = tensor.numpy().view(dtype).reshape(shape)
    else:
        array = tensor.numpy()
        if array.dtype != dtype:
            raise CheckpointError(
                f"array at {_show(path)} was saved as {dtype} but the state file holds {array.dtype}"
            )
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
        FileExistsError: ``path`` is a file or a folder that is not a checkpoint.
        OSError: Writing failed; the previous checkpoint at ``path`` is still in place.
    """
    target = Path(path)
    tensors, skeleton = pack_state(state)
    document = _meta_document(meta, skeleton)
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target)
    _remove_stale_temps(target)

    temp = _temp_path(target)
    if temp.exists() or temp.is_symlink():
        _remove(temp)
    temp.mkdir()
    try:
        state_path = temp / STATE_FILE
        safetensors.torch.save_file(tensors, str(state_path), metadata={"format": "pt"})
        size, digest = _hash_and_fsync(state_path)
        document["state_file"] = {"name": STATE_FILE, "bytes": size, "sha256": digest}
        document["skeleton"] = document.pop("skeleton")  # keep the bulky part last in the file
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
        _write_bytes_fsync(temp / META_FILE, text.encode("utf-8"))
        _fsync_dir(temp)
        _swap_into_place(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
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
    return target.with_name(f"{target.name}.tmp-{os.getpid()}")


def _old_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.old")


def _check_replaceable(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(
            f"{target} exists and is not a folder; save_checkpoint writes a folder and will not replace "
            "a file: save to another path or remove the file first"
        )
    if target.is_dir() and not (target / META_FILE).is_file() and any(target.iterdir()):
        raise FileExistsError(
            f"{target} is a non-empty folder without {META_FILE}, so it is not an rlcore checkpoint; "
            "save_checkpoint will not replace it: save to another path or empty the folder first"
        )


def _remove_stale_temps(target: Path) -> None:
    """Deletes ``PATH.tmp-<pid>`` folders left by crashed saves (this process or a dead one)."""
    prefix = f"{target.name}.tmp-"
    for candidate in target.parent.glob(glob.escape(prefix) + "*"):
        suffix = candidate.name[len(prefix) :]
        if not suffix.isdigit():
            continue
        pid = int(suffix)
        if pid != os.getpid() and _pid_alive(pid):
            logger.info("leaving %s alone: process %d, which may be saving to it, is running", candidate, pid)
            continue
        logger.warning("removing %s, left by an interrupted save", candidate)
        _remove_quietly(candidate)


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
        # target is complete (only ever created by the rename below), so a leftover .old is stale.
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
    if old.exists() or old.is_symlink():
        _remove_quietly(old)


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


def load_checkpoint(path: str | os.PathLike, expected_algo: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Loads a checkpoint folder written by :func:`save_checkpoint`, without running any code from it.

    If ``path`` is missing but ``path.old`` (left by a save that crashed between its two renames) is a
    complete checkpoint, that one is loaded and a warning is logged.

    Args:
        path: The checkpoint folder.
        expected_algo: If given, ``meta["algo"]`` must equal it.

    Returns:
        ``(state, meta)``: the saved structure (tensors on CPU) and the metadata from ``meta.json``
        (the caller's keys plus ``format``, ``format_version``, ``versions`` and ``state_file``; the
        skeleton is left out).

    Raises:
        CheckpointError: ``path`` is missing or a file (such as a pickle, which rlcore never loads),
            ``meta.json`` is missing, not JSON, of another format version or lacks keys, the state file
            is missing, truncated, corrupted or unparsable, or the checkpoint is of another algo.
    """
    target = Path(path)
    if target.is_dir():
        return _load_folder(target, expected_algo)
    if target.exists():
        raise CheckpointError(_not_a_folder_message(target))
    old = _old_path(target)
    if old.is_dir():
        try:
            result = _load_folder(old, expected_algo)
        except CheckpointError as err:
            raise CheckpointError(
                f"checkpoint {target} does not exist, and {old}, left by an interrupted save, cannot be "
                f"loaded either: {err}"
            ) from err
        logger.warning(
            "checkpoint %s is missing: a save was interrupted while replacing it; loading the previous "
            "checkpoint from %s (the next save to %s cleans this up)",
            target,
            old,
            target,
        )
        return result
    message = f"checkpoint {target} does not exist; check the path (save_checkpoint writes a folder there)"
    leftovers = sorted(entry.name for entry in target.parent.glob(glob.escape(target.name) + ".tmp-*"))
    if leftovers:
        message += f"; {', '.join(leftovers)} are incomplete folders from interrupted saves, not checkpoints"
    raise CheckpointError(message)


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


def _load_folder(folder: Path, expected_algo: str | None) -> tuple[Any, dict[str, Any]]:
    meta = _read_meta(folder)
    if expected_algo is not None and meta.get("algo") != expected_algo:
        if "algo" not in meta:
            raise CheckpointError(
                f"checkpoint {folder} records no algo, but {expected_algo!r} was expected; "
                f"pass a checkpoint saved by {expected_algo}"
            )
        raise CheckpointError(
            f"checkpoint {folder} was saved by algo {meta['algo']!r}, not {expected_algo!r}; load it with "
            f"{meta['algo']!r} or pass a checkpoint saved by {expected_algo!r}"
        )
    tensors = _read_state(folder, meta["state_file"])
    try:
        state = unpack_state(tensors, meta["skeleton"])
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {folder} is inconsistent: {err}; re-save it") from err
    except (RecursionError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {folder} has a malformed skeleton ({err}); re-save it") from err
    return state, {key: value for key, value in meta.items() if key != "skeleton"}


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        hint = (
            f"it has {STATE_FILE} but no {META_FILE}: it was copied incompletely or damaged"
            if (folder / STATE_FILE).exists()
            else "it is not an rlcore checkpoint folder"
        )
        raise CheckpointError(
            f"{meta_path} is missing; {hint}. Pass a folder written by rlcore.checkpoint.save_checkpoint"
        )
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(
            f"{meta_path} is not valid JSON ({err}); the checkpoint is corrupted: restore it from a backup "
            "or use an earlier checkpoint"
        ) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f'{meta_path} does not describe an rlcore checkpoint (no "format": "{FORMAT_NAME}"); pass a '
            "folder written by rlcore.checkpoint.save_checkpoint"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        fix = "upgrade rlcore to load it" if newer else "re-save it with a matching rlcore version"
        raise CheckpointError(
            f"{meta_path} has checkpoint format version {version!r}, but this rlcore reads version "
            f"{FORMAT_VERSION}; {fix}"
        )
    missing = [key for key in ("state_file", "skeleton") if key not in meta]
    state_file = meta.get("state_file")
    if isinstance(state_file, dict):
        if not isinstance(state_file.get("sha256"), str):
            missing.append("state_file.sha256")
        size = state_file.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool):
            missing.append("state_file.bytes")
    elif "state_file" not in missing:
        missing.append("state_file (as an object)")
    if missing:
        raise CheckpointError(
            f"{meta_path} lacks {', '.join(missing)}; the checkpoint is corrupted or was edited by hand: "
            "restore it from a backup or use an earlier checkpoint"
        )
    return meta


def _read_state(folder: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    state_path = folder / STATE_FILE  # fixed name: never a path taken from the file
    fix = "restore it from a backup or use an earlier checkpoint"
    if not state_path.is_file():
        raise CheckpointError(f"{state_path} is missing; the checkpoint is incomplete: {fix}")
    expected_size, expected_digest = record["bytes"], record["sha256"]
    size = state_path.stat().st_size
    if size != expected_size:
        problem = "truncated" if size < expected_size else "corrupted (longer than written)"
        raise CheckpointError(
            f"{state_path} is {problem}: {size} bytes, but {expected_size} were written; {fix}"
        )
    digest = hashlib.sha256()
    with open(state_path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected_digest:
        raise CheckpointError(
            f"{state_path} is corrupted: its sha256 is {digest.hexdigest()}, but {expected_digest} was "
            f"recorded in {META_FILE}; {fix}"
        )
    try:
        return safetensors.torch.load_file(str(state_path), device="cpu")
    except Exception as err:  # safetensors raises SafetensorError, OSError, ValueError, ...
        raise CheckpointError(
            f"{state_path} could not be parsed as safetensors (header unparsable: {err}); the file is "
            f"corrupted or was not written by rlcore: {fix}"
        ) from err


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
