"""Starting TensorBoard over the runs folder, bound to 127.0.0.1 only, as a child process.

``rlcore board`` is ``tensorboard --logdir runs --host 127.0.0.1`` plus: a free port when the
requested one is taken, a wait until the server answers, and its URL and process id on the console.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rlcore.fields import user_path

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
"""The only address rlcore binds TensorBoard to."""
DEFAULT_PORT = 6006
"""TensorBoard's usual port; the next free one is used when it is taken."""
PR_SET_PDEATHSIG = 1
"""Linux's ``prctl`` option: the signal a process gets when its parent dies."""


class BoardError(RuntimeError):
    """TensorBoard exited, or did not answer in time."""


@dataclass
class Board:
    """A running TensorBoard.

    Attributes:
        url: Where it answers, ``http://127.0.0.1:<port>/``.
        pid: Its process id (stop it with ``kill <pid>`` or :meth:`stop`).
        log_path: Where its console output goes (a private file in the temp folder; a foreground board removes
            it when the server ends normally, a background one leaves it with the server).
    """

    url: str
    port: int
    pid: int
    logdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout`` seconds) and waits for it."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        logger.info("stopped TensorBoard (pid %d)", self.pid)

    def remove_log(self) -> None:
        """Deletes :attr:`log_path` (once the server has ended and nothing more is to be read from it)."""
        self.log_path.unlink(missing_ok=True)


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = DEFAULT_PORT, host: str = HOST) -> int:
    """``preferred`` if it is free, else a port the OS reports free."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start_board(
    logdir: str | Path = "runs",
    *,
    port: int | None = None,
    timeout: float = 60.0,
    background: bool = False,
) -> Board:
    """Starts TensorBoard over ``logdir`` on 127.0.0.1 and returns once it answers HTTP requests.

    Args:
        logdir: The runs folder (it may not exist yet; TensorBoard then shows runs as they appear).
        port: The port; a taken one is an error. Default: 6006, or a free one if 6006 is taken.
        timeout: Seconds to wait for the server to answer.
        background: Start it in its own session so that it outlives the caller (stop it by its pid).

    Raises:
        ValueError: ``port`` is taken.
        BoardError: TensorBoard exited or did not answer within ``timeout``; the message holds the
            end of its output.
    """
    logdir = user_path(logdir)
    if port is not None and not port_is_free(port):
        raise ValueError(f"port {port} on {HOST} is taken; pick another with --port, or omit it to get a free one")
    chosen = port if port is not None else free_port()
    # A fresh private file (O_EXCL, mode 0600), never a fixed name in the shared temp folder: a symlink planted
    # there under a predictable name would otherwise be followed and the file it points to overwritten.
    fd, name = tempfile.mkstemp(prefix=f"rlcore-tensorboard-{chosen}-", suffix=".log")
    log_path = Path(name)
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", HOST,
               "--port", str(chosen)]
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=background, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   preexec_fn=None if background else _end_with_parent)
    board = Board(url=f"http://{HOST}:{chosen}/", port=chosen, pid=process.pid, logdir=logdir, log_path=log_path,
                  process=process)
    try:
        _wait_until_answers(board, timeout)
    except BaseException:  # Ctrl-C while waiting, too: never leave a half-started server behind
        board.stop()
        raise
    logger.info("TensorBoard at %s (pid %d) over %s; its output goes to %s", board.url, board.pid, logdir, log_path)
    return board


def _end_with_parent() -> None:
    """In the TensorBoard child of a foreground ``rlcore board`` (Linux): SIGTERM when its parent dies, so a
    ``kill -9`` of the command leaves no server behind (elsewhere, a stop of the command's own still ends it)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_answers(board: Board, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(board.url + "data/logdir"):
        if board.process.poll() is not None:
            raise BoardError(f"TensorBoard exited with code {board.process.returncode} before answering; "
                             f"its output ({board.log_path}):\n{_tail(board.log_path)}")
        if time.monotonic() > deadline:
            raise BoardError(f"TensorBoard did not answer on {board.url} within {timeout:.0f} s; "
                             f"its output ({board.log_path}):\n{_tail(board.log_path)}")
        time.sleep(0.2)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
