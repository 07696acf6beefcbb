"""``rlcore board``: TensorBoard on 127.0.0.1 over the runs folder, answering with the runs' tags."""

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rlcore.board import free_port
from rlcore.logger import Logger

RUN = "CartPole-v1/dqn/seed0-20250101-000000-000000"
TAGS = {"eval/mean_reward", "rollout/ep_rew_mean"}


@pytest.fixture()
def logdir(tmp_path: Path) -> Path:
    """A runs folder with one run written by rlcore's Logger (scalars and hyperparameters)."""
    logger = Logger(tmp_path / "runs" / RUN)
    logger.log_hparams({"algo": "dqn", "env": "CartPole-v1", "train": {"seed": 0}, "algo_config": {"gamma": 0.99}})
    for step in (100, 200):
        logger.log_scalars({"eval/mean_reward": step / 10, "rollout/ep_rew_mean": step / 20}, step)
    logger.close()
    return tmp_path / "runs"


def fetch(url: str, body: dict | None = None) -> object | None:
    """JSON from ``url`` (POST when ``body`` is given); None while the server does not answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def poll_tags(port: int, deadline: float) -> dict:
    while time.monotonic() < deadline:
        tags = fetch(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        if isinstance(tags, dict) and set(tags.get(RUN, {})) >= TAGS:
            return tags
        time.sleep(0.25)
    raise AssertionError(f"TensorBoard on port {port} did not answer with the run's tags in time")


def read_line_with(process: subprocess.Popen, pattern: str, deadline: float) -> re.Match:
    """The first stdout line of ``process`` matching ``pattern`` (without blocking past ``deadline``)."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.25)
        if ready:
            line = process.stdout.readline()
            match = re.search(pattern, line)
            if match:
                return match
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"rlcore board printed no line matching {pattern!r}; stderr: {process.stderr.read()}")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` (SIGKILL after ``timeout``); returns once it has exited (a zombie counts as exited)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not exits_within(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def exits_within(pid: int, timeout: float) -> bool:
    """Whether ``pid`` exits (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):  # gone between the open and the read, or before
            return True
        time.sleep(0.1)
    return False


def board_command(logdir: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlcore.cli", "board", "--log-dir", str(logdir), "--port", str(port), *extra]


def start_foreground_board(logdir: Path) -> tuple[int, float, subprocess.Popen]:
    """``(port, deadline, process)`` of ``rlcore board`` started in the foreground on a free port."""
    port = free_port(None)
    cli = subprocess.Popen(board_command(logdir, port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    return port, time.monotonic() + 90, cli


@pytest.mark.timeout(120)
def test_board_answers_on_localhost_with_the_runs_tags(logdir: Path) -> None:
    port, deadline, cli = start_foreground_board(logdir)
    board_pid = None
    try:
        match = read_line_with(cli, r"TensorBoard at (http://127\.0\.0\.1:(\d+)/) \(pid (\d+), logdir .*, "
                                    r"output in (.+)\)$", deadline)
        assert int(match.group(2)) == port
        board_pid = int(match.group(3))
        output = Path(match.group(4))
        assert output.is_file()
        tags = poll_tags(port, deadline)
        assert set(tags[RUN]) >= TAGS
        # the hyperparameters reach TensorBoard's HParams view
        experiment = fetch(f"http://127.0.0.1:{port}/data/plugin/hparams/experiment", {"experimentName": ""})
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"algo", "train.seed", "algo_config.gamma", "version.torch"} <= names
        # stopping TensorBoard by its pid ends the foreground `rlcore board` too
        stop_pid(board_pid)
        board_pid = None
        assert cli.wait(timeout=15) == 0
        assert not output.exists()  # a board that ended normally leaves no log file in the temp folder
    finally:
        if board_pid is not None:
            stop_pid(board_pid)
        if cli.poll() is None:
            cli.kill()
        cli.wait()


@pytest.mark.timeout(120)
def test_board_in_the_background_returns_and_stops_by_its_pid(logdir: Path) -> None:
    port = free_port(None)
    result = subprocess.run(board_command(logdir, port, "--background"), capture_output=True, text=True,
                            timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    match = re.search(r"\(pid (\d+)", result.stdout)
    pid = int(match.group(1)) if match else None
    try:
        assert result.returncode == 0 and pid is not None, result.stdout + result.stderr
        assert f"kill {pid}" in result.stdout
        assert fetch(f"http://127.0.0.1:{port}/data/logdir") is not None  # still running after the CLI returned
    finally:
        if pid is not None:
            stop_pid(pid)


def test_board_refuses_a_taken_port(logdir: Path) -> None:
    import socket

    from rlcore import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["board", "--log-dir", str(logdir), "--port", str(port)]) == 2


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_foreground_board_leaves_no_tensorboard(logdir: Path) -> None:
    """kill -9 of `rlcore board` (no chance to stop its child) orphaned TensorBoard on its port."""
    _, deadline, cli = start_foreground_board(logdir)
    board_pid = None
    try:
        board_pid = int(read_line_with(cli, r"TensorBoard at http://\S+ \(pid (\d+)", deadline).group(1))
        cli.kill()
        cli.wait()
        assert exits_within(board_pid, 15)
        board_pid = None
    finally:
        if board_pid is not None:
            stop_pid(board_pid)
        if cli.poll() is None:
            cli.kill()

