"""The one step that decides whether a kernel runs, and says which path runs and why.

An algorithm that has a kernel calls :func:`choose_kernel` once, when it is built, with everything that can rule
the kernel out: its own switches (``fast_path``, ``amp``, ...) as ``gates``, then the kernel's own check of the
network, the device and the loss (its ``refusal``). The first reason found wins and the readable autograd
reference runs; with none, the kernel is built. Either way one INFO line of the ``rlcore.kernels`` logger names
the path and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

logger = logging.getLogger("rlcore.kernels")

K = TypeVar("K")


def first_refusal(gates: Iterable[tuple[bool, str]]) -> str | None:
    """The reason of the first gate that is shut (``(True, reason)``), else None."""
    return next((reason for shut, reason in gates if shut), None)


def choose_kernel(
    owner: str, gates: Iterable[tuple[bool, str]], refusal: Callable[[], str | None], build: Callable[[], K]
) -> K | None:
    """The kernel ``build()`` returns when no gate is shut and ``refusal()`` finds nothing, else None.

    Args:
        owner: Who asks (the algorithm's name), for the log line.
        gates: ``(shut, reason)`` pairs, checked in order before ``refusal``.
        refusal: The kernel's own check; returns why it does not apply, or None.
        build: Builds the kernel (called only when it applies).
    """
    reason = first_refusal(gates) or refusal()
    if reason is not None:
        log_reference_path(owner, reason)
        return None
    kernel = build()
    logger.info("%s: kernel path, %s", owner, kernel)
    return kernel


def log_reference_path(owner: str, reason: str) -> None:
    """The INFO line of an algorithm that trains through autograd, and why (for those without a kernel too)."""
    logger.info("%s: autograd reference path, because %s", owner, reason)
