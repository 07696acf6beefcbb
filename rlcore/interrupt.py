"""Ctrl-C during training: the first one stops the run where its state is whole and keeps it; a second stops at once.

A ``KeyboardInterrupt`` raised in the middle of an update or a replay write would leave nothing consistent to
save, so :class:`InterruptAtIterationEnd` turns the first SIGINT into a request that the training loop reads
between iterations (the trainer then writes a checkpoint and raises ``KeyboardInterrupt`` itself). Python's own
handler is back in place as soon as the first one arrives, so a second Ctrl-C interrupts immediately.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class InterruptAtIterationEnd:
    """Within ``with``: the first SIGINT sets :attr:`requested` and logs ``message`` instead of raising.

    Installed only where it can be and where nobody else chose a handler: in the main thread (signal handlers
    cannot be set elsewhere, e.g. in a Ray Tune trial's thread) over Python's default SIGINT handler (a program
    with a handler of its own keeps it, and with it its own Ctrl-C behaviour). Otherwise :attr:`requested` stays
    False and Ctrl-C raises ``KeyboardInterrupt`` as usual. The previous handler is restored on exit.
    """

    def __init__(self, message: str, enabled: bool = True) -> None:
        self.message = message
        self.enabled = enabled
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> InterruptAtIterationEnd:
        self.requested = False
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # a second Ctrl-C raises KeyboardInterrupt at once
        logger.warning(self.message)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_interrupt:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None


@contextlib.contextmanager
def signal_handlers_kept(*signals: int) -> Iterator[None]:
    """Restores the handlers of ``signals`` after the block: for libraries that install their own and leave them,
    as Ray Tune does with SIGINT and SIGUSR1 (its stale handler then swallowed the process's next Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.getsignal(number) for number in signals}
    try:
        yield
    finally:
        for number, handler in kept.items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(number, handler)


__all__ = ["InterruptAtIterationEnd", "signal_handlers_kept"]
