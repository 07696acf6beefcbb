"""Reading a checkpoint folder's two files as untrusted data: no symlink followed, every size bounded.

:mod:`rlcore.checkpoint` uses this module to read ``meta.json`` and ``state.safetensors``. Everything here
treats the folder as written by a stranger:

* A folder is opened once (``O_DIRECTORY | O_NOFOLLOW``) and its files relative to that descriptor
  (``O_NOFOLLOW | O_NONBLOCK``), so a symlink, a FIFO or a device in place of a file is refused, and a
  rename of the folder while it is read cannot mix two versions.
* ``meta.json`` is read only up to :data:`MAX_META_BYTES`, and its JSON may not contain ``NaN`` or
  ``Infinity`` literals.
* The safetensors file is parsed here, not by the safetensors library: its header (at most
  :data:`MAX_HEADER_BYTES`, at most :data:`MAX_TENSORS` entries) is validated (known dtypes, shapes whose
  byte size equals their data range, ranges that tile the data exactly) *before* any tensor is allocated,
  so the tensors never exceed the file's size. The data is then memory-mapped, hashed in one pass, and
  each tensor is a copy-on-write view of the mapping (no second copy of a large replay buffer in memory).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import mmap
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_META_BYTES: int = 32 * 2**20
"""Largest ``meta.json`` rlcore reads (32 MiB); larger files are refused unread."""
MAX_META_VALUES: int = 2**20
"""Most JSON values in ``meta.json`` (counted, before parsing, as its commas and opening brackets); with
:data:`MAX_META_OBJECTS` this bounds what parsing it allocates to about 100 MB."""
MAX_META_OBJECTS: int = 2**17
"""Most JSON objects in ``meta.json`` (counted as its opening braces); a checkpoint's skeleton has one per tensor."""
MAX_HEADER_BYTES: int = 8 * 2**20
"""Largest safetensors header (the JSON table of tensor names, dtypes, shapes and offsets), 8 MiB."""
MAX_TENSORS: int = 65_536
"""Most tensors one state file may hold (a training checkpoint of rlcore holds a few hundred)."""
MAX_DIMS: int = 32
"""Most dimensions of one tensor."""

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}
"""The safetensors dtypes rlcore writes and reads (every safetensors release knows them)."""
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FD = os.open in os.supports_dir_fd and bool(_NOFOLLOW)
"""Whether files can be opened relative to a folder's descriptor (POSIX); else checked by path (Windows)."""
_READ_CHUNK = 1 << 22


class UnreadableFile(ValueError):
    """A file of a checkpoint folder is missing, a symlink, not a regular file, too large or malformed.

    :mod:`rlcore.checkpoint` turns it into a :class:`~rlcore.checkpoint.CheckpointError` (and may then try
    an older version of the checkpoint)."""


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor of a safetensors header: its name, dtype, shape and byte range in the data section."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


# --------------------------------------------------------------------------------------------------
# folders and files, without following symlinks
# --------------------------------------------------------------------------------------------------


class Folder:
    """An open checkpoint folder; files are opened relative to it and never through a symlink.

    Use as a context manager (``with open_folder(path) as folder: ...``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        if _DIR_FD:
            try:
                self._fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
            except OSError as err:
                raise UnreadableFile(_open_error(path, err, "folder")) from err
        elif not stat.S_ISDIR(_lstat(path, "folder").st_mode):
            raise UnreadableFile(f"{path} is not a folder")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def open(self, name: str, what: str) -> Iterator[tuple[Any, int]]:
        """Yields ``(unbuffered binary file, size)`` of the regular file ``name`` in this folder.

        Raises:
            UnreadableFile: It is missing, a symlink, or not a regular file (a FIFO, a folder, ...).
        """
        path = self.path / name
        if self._fd is not None:
            try:
                entry = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
            except OSError as err:
                raise UnreadableFile(_open_error(path, err, what)) from err
            _require_regular(path, entry, what)
            try:
                fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=self._fd)
            except OSError as err:
                raise UnreadableFile(_open_error(path, err, what)) from err
        else:
            _require_regular(path, _lstat(path, what), what)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        handle = os.fdopen(fd, "rb", buffering=0)
        try:
            opened = os.fstat(handle.fileno())
            _require_regular(path, opened, what)  # what was opened, not only what was looked at
            yield handle, opened.st_size
        finally:
            handle.close()


def open_folder(path: Path) -> Folder:
    """Opens ``path`` as a checkpoint folder (refusing a symlink at ``path`` itself)."""
    return Folder(path)


def is_symlink(path: Path) -> bool:
    """Whether ``path`` is a symlink (without following it)."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _lstat(path: Path, what: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as err:
        raise UnreadableFile(_open_error(path, err, what)) from err


def _require_regular(path: Path, entry: os.stat_result, what: str) -> None:
    if stat.S_ISLNK(entry.st_mode):
        raise UnreadableFile(f"{path} is a symlink; rlcore never follows symlinks inside a checkpoint folder: "
                             f"replace it by the {what} itself")
    if not stat.S_ISREG(entry.st_mode):
        raise UnreadableFile(f"{path} is not a regular file; the checkpoint's {what} must be one")


def _open_error(path: Path, err: OSError, what: str) -> str:
    if err.errno == errno.ENOENT:
        return f"{path} is missing"
    if err.errno in (errno.ELOOP, errno.EMLINK) or is_symlink(path):
        return (f"{path} is a symlink; rlcore never follows symlinks to or inside a checkpoint folder: pass the "
                f"{what} it points to, or copy it in place of the link")
    if err.errno == errno.ENOTDIR:
        return f"{path} is not a folder"
    return f"{path} cannot be opened ({err.strerror})"


# --------------------------------------------------------------------------------------------------
# meta.json
# --------------------------------------------------------------------------------------------------


def read_json(folder: Folder, name: str, max_bytes: int = MAX_META_BYTES) -> Any:
    """The JSON document in ``folder/name``, refusing files over ``max_bytes`` and NaN/Infinity literals.

    Raises:
        UnreadableFile: Missing, a symlink, not a regular file, too large, not UTF-8 or not JSON.
    """
    with folder.open(name, "metadata file") as (handle, size):
        if size > max_bytes:
            raise UnreadableFile(f"{folder.path / name} is {size} bytes, more than the {max_bytes} bytes rlcore "
                                 "reads (MAX_META_BYTES)")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnreadableFile(f"{folder.path / name} grew past {max_bytes} bytes while being read")
    problem = json_size_problem(data)
    if problem:
        raise UnreadableFile(f"{folder.path / name} {problem}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UnreadableFile(f"{folder.path / name} is not valid JSON ({err})") from err


def json_size_problem(data: bytes) -> str | None:
    """What makes a JSON text too costly to parse (see :data:`MAX_META_VALUES`), or None."""
    objects = data.count(b"{")
    values = data.count(b",") + data.count(b"[") + objects
    if objects > MAX_META_OBJECTS:
        return f"holds {objects} JSON objects, more than the {MAX_META_OBJECTS} rlcore parses (MAX_META_OBJECTS)"
    if values > MAX_META_VALUES:
        return f"holds about {values} JSON values, more than the {MAX_META_VALUES} rlcore parses (MAX_META_VALUES)"
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (rlcore writes no NaN or Infinity literals)")


# --------------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------------


class StateFile:
    """An open safetensors file whose header has been validated; :meth:`read_tensors` allocates and reads.

    Args:
        handle: The file, positioned at its start.
        size: Its size in bytes.
        path: For messages.
    """

    def __init__(self, handle: Any, size: int, path: Path) -> None:
        self.handle = handle
        self.size = size
        self.path = path
        self.digest = hashlib.sha256()
        self.entries = self._read_header()

    def _read_header(self) -> dict[str, HeaderEntry]:
        prefix = self._read_bytes(8)
        length = int.from_bytes(prefix, "little")
        if length > MAX_HEADER_BYTES:
            raise UnreadableFile(f"{self.path}: header unparsable: it claims {length} bytes, more than the "
                                 f"{MAX_HEADER_BYTES} rlcore reads (MAX_HEADER_BYTES)")
        if 8 + length > self.size:
            raise UnreadableFile(f"{self.path}: header unparsable: it claims {length} bytes, but the file has "
                                 f"{self.size}")
        text = self._read_bytes(length)
        self.header_bytes = length
        self.digest.update(prefix)
        self.digest.update(text)
        table = _parse_header_json(text, self.path)
        return _header_entries(table, self.size - 8 - length, self.path)

    def _read_bytes(self, count: int) -> bytes:
        data = bytearray(count)
        self._read_into(memoryview(data))
        return bytes(data)

    def _read_into(self, view: memoryview) -> None:
        filled = 0
        while filled < len(view):
            count = self.handle.readinto(view[filled:])
            if not count:
                raise UnreadableFile(f"{self.path} ended early: it was truncated while being read")
            filled += count

    def read_tensors(self) -> tuple[dict[str, torch.Tensor], str]:
        """The file's sha256 hex digest (the header included) and its tensors.

        The data section is memory-mapped copy-on-write, hashed in one pass, and each tensor is a view of the
        mapping (a copy when its offset is not a multiple of its element size), so loading a multi-gigabyte
        replay buffer needs no second copy of it in memory; the tensors hold exactly the header's dtypes and
        shapes, which tile the file (validated before this is called). As with any memory-mapped file, another
        process truncating the file while its tensors are in use makes the process crash (SIGBUS).

        Raises:
            UnreadableFile: The file changed size, or a bool tensor holds bytes other than 0 and 1.
        """
        start = 8 + self.header_bytes
        if os.fstat(self.handle.fileno()).st_size != self.size:
            raise UnreadableFile(f"{self.path} changed size while being read")
        mapping = mmap.mmap(self.handle.fileno(), self.size, access=mmap.ACCESS_COPY) if self.size > start else b""
        view = memoryview(mapping)
        for offset in range(start, self.size, _READ_CHUNK):
            self.digest.update(view[offset : min(offset + _READ_CHUNK, self.size)])
        tensors = {key: self._tensor(entry, mapping, view, start) for key, entry in self.entries.items()}
        return tensors, self.digest.hexdigest()

    def _tensor(self, entry: HeaderEntry, mapping: Any, view: memoryview, start: int) -> torch.Tensor:
        if entry.end == entry.begin:
            return torch.empty(entry.shape, dtype=entry.dtype, device="cpu")  # even inside a meta-device build
        offset, itemsize = start + entry.begin, torch.empty((), dtype=entry.dtype).element_size()
        source = mapping if offset % itemsize == 0 else bytearray(view[offset : start + entry.end])
        flat = torch.frombuffer(source, dtype=entry.dtype, count=(entry.end - entry.begin) // itemsize,
                                offset=offset if source is mapping else 0)
        if entry.dtype == torch.bool and int(flat.view(torch.uint8).max()) > 1:
            raise UnreadableFile(f"{self.path}: bool tensor {entry.key!r} holds bytes other than 0 and 1")
        return flat.reshape(entry.shape)


def _parse_header_json(text: bytes, path: Path) -> dict[str, Any]:
    objects = 0

    def count_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal objects
        objects += 1
        if objects > MAX_TENSORS + 2:  # one object per entry, plus the table and __metadata__
            raise ValueError(f"more than {MAX_TENSORS} tensors (MAX_TENSORS)")
        table = dict(pairs)
        if len(table) != len(pairs):
            raise ValueError("a name appears twice")
        return table

    try:
        table = json.loads(text.decode("utf-8"), object_pairs_hook=count_object, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UnreadableFile(f"{path}: header unparsable: {err}") from err
    if not isinstance(table, dict):
        raise UnreadableFile(f"{path}: header unparsable: not a JSON object")
    return table


def _header_entries(table: dict[str, Any], data_size: int, path: Path) -> dict[str, HeaderEntry]:
    """Validates every entry and that the byte ranges tile ``[0, data_size)`` exactly."""
    metadata = table.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UnreadableFile(f"{path}: header unparsable: __metadata__ must map names to strings")
    if len(table) > MAX_TENSORS:
        raise UnreadableFile(f"{path}: header unparsable: {len(table)} tensors, more than {MAX_TENSORS} "
                             "(MAX_TENSORS)")
    entries = {key: _header_entry(key, value, path) for key, value in table.items()}
    position = 0
    for entry in sorted(entries.values(), key=lambda item: (item.begin, item.end)):
        if entry.begin != position:
            raise UnreadableFile(f"{path}: header unparsable: tensor {entry.key!r} starts at byte {entry.begin}, "
                                 f"expected {position} (tensors must tile the data without gaps or overlaps)")
        position = entry.end
    if position != data_size:
        raise UnreadableFile(f"{path}: header unparsable: the tensors cover {position} bytes, the data section "
                             f"has {data_size}")
    return entries


def _header_entry(key: str, value: Any, path: Path) -> HeaderEntry:
    def bad(problem: str) -> UnreadableFile:
        return UnreadableFile(f"{path}: header unparsable: tensor {key[:80]!r} {problem}")

    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise bad("must be an object with exactly dtype, shape and data_offsets")
    dtype = SAFETENSORS_DTYPES.get(value["dtype"]) if isinstance(value["dtype"], str) else None
    if dtype is None:
        raise bad(f"has dtype {str(value['dtype'])[:20]!r}; rlcore reads {sorted(SAFETENSORS_DTYPES)}")
    shape, offsets = value["shape"], value["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_count(size) for size in shape)):
        raise bad(f"has a bad shape (a list of at most {MAX_DIMS} non-negative ints)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(offset) for offset in offsets)):
        raise bad("has bad data_offsets (two non-negative ints)")
    begin, end = offsets
    itemsize = torch.empty((), dtype=dtype).element_size()
    if end < begin or end - begin != math.prod(shape) * itemsize:
        raise bad(f"of shape {shape} and dtype {value['dtype']} spans bytes [{begin}, {end})")
    return HeaderEntry(key, dtype, tuple(shape), begin, end)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def meta_tensors(entries: dict[str, HeaderEntry]) -> dict[str, torch.Tensor]:
    """A tensor on the ``meta`` device (no memory) of each entry's dtype and shape: the state's layout."""
    return {key: torch.empty(entry.shape, dtype=entry.dtype, device="meta") for key, entry in entries.items()}


def zero_strided(dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only array of ``dtype`` and ``shape`` that allocates one element (the stand-in for a saved
    array in a layout, see :func:`meta_tensors`)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


__all__ = [
    "DTYPE_NAMES",
    "MAX_DIMS",
    "MAX_HEADER_BYTES",
    "MAX_META_BYTES",
    "MAX_META_OBJECTS",
    "MAX_META_VALUES",
    "MAX_TENSORS",
    "SAFETENSORS_DTYPES",
    "Folder",
    "HeaderEntry",
    "StateFile",
    "UnreadableFile",
    "is_symlink",
    "json_size_problem",
    "meta_tensors",
    "open_folder",
    "read_json",
    "zero_strided",
]
