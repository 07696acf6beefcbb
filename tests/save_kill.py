"""Killing a checkpoint save at each of its steps, in a forked child that dies without any cleanup.

A *step* is one file-system operation of :func:`rlcore.checkpoint.save_checkpoint`: creating a folder,
writing the state file or ``meta.json`` (killed half-way through the write), an fsync, a rename, a removal.
``run_killed(save, k)`` runs ``save()`` in a child that calls ``os._exit`` instead of its ``k``-th step, which is
what SIGKILL or a power cut at that moment leaves on disk (minus lost page cache, which the fsyncs cover).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

import pytest
import safetensors.torch

import rlcore.checkpoint as ck

KILLED = 77
posix_only = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


def run_killed(save: Callable[[], object], step: int) -> bool:
    """Runs ``save()`` in a forked child killed at its ``step``-th file-system operation (1-based).

    Returns:
        True if the save finished before reaching that step (so no later step exists), False if it was killed.
    """
    pid = os.fork()
    if pid == 0:  # the child: count operations, die at the chosen one
        code = 1
        try:
            _install_gates(step)
            save()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, KILLED), f"the save in the child failed (exit code {code}) instead of being killed"
    return code == 0


def _install_gates(step: int) -> None:
    count = [0]

    def reached() -> bool:
        count[0] += 1
        return count[0] == step

    def gate(function: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            if reached():
                os._exit(KILLED)
            return function(*args, **kwargs)

        return wrapper

    real_save_file, real_write = safetensors.torch.save_file, ck._write_bytes_fsync

    def save_file(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        if reached():  # killed half-way through writing the state file
            data = safetensors.torch.save(tensors, metadata=metadata)
            with open(filename, "wb") as handle:
                handle.write(data[: len(data) // 2])
            os._exit(KILLED)
        real_save_file(tensors, filename, metadata=metadata)

    def write_bytes_fsync(file: object, data: bytes) -> None:
        if reached():  # killed half-way through writing meta.json
            with open(file, "wb") as handle:  # type: ignore[call-overload]
                handle.write(data[: len(data) // 2])
            os._exit(KILLED)
        real_write(file, data)

    for name in ("mkdir", "rename", "replace", "fsync", "unlink", "rmdir"):
        setattr(os, name, gate(getattr(os, name)))
    shutil.rmtree = gate(shutil.rmtree)  # type: ignore[assignment]
    safetensors.torch.save_file = save_file  # type: ignore[assignment]
    ck._write_bytes_fsync = write_bytes_fsync  # type: ignore[assignment]


def each_kill(save: Callable[[], object], before_each: Callable[[], None], after_each: Callable[[int], None],
              max_steps: int = 100) -> int:
    """Kills ``save`` at step 1, 2, ... until it finishes; ``before_each()`` prepares, ``after_each(step)`` checks.

    Returns:
        The number of steps the save has.
    """
    for step in range(1, max_steps + 1):
        before_each()
        if run_killed(save, step):
            return step - 1
        after_each(step)
    raise AssertionError(f"the save did not finish within {max_steps} steps")
