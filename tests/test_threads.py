"""threads="auto": rlcore picks torch's and numpy's CPU threads from the work, unless the user chose."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from threadpoolctl import threadpool_info, threadpool_limits

import rlcore
import rlcore.threads as threads
from rlcore.agent import build_algorithm
from rlcore.threads import (
    PARALLEL_PRODUCT_MACS,
    PARALLEL_WORK_MACS,
    algorithm_work,
    apply_threads,
    choose_threads,
    largest_torch_product,
)
from rlcore.trainer import TrainConfig, Trainer


@pytest.fixture(autouse=True)
def one_thread_afterwards(monkeypatch: pytest.MonkeyPatch):
    """Each test starts without thread variables (the suite sets OMP_NUM_THREADS) and ends on one thread."""
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    threads._last_logged.clear()
    yield
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> set[int]:
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_small_networks_get_one_thread_and_large_cnn_batches_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    small = choose_threads("auto", PARALLEL_WORK_MACS - 1)
    assert (small.threads, small.blas_threads) == (1, 1) and "more threads pay from 100M, or from an 8M" in small.reason
    large = choose_threads("auto", PARALLEL_WORK_MACS)
    assert (large.threads, large.blas_threads) == (4, 1)
    assert choose_threads("auto", 1, product_macs=PARALLEL_PRODUCT_MACS - 1).threads == 1
    assert choose_threads("auto", 1, product_macs=PARALLEL_PRODUCT_MACS).threads == 4
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    assert choose_threads("auto", 10 * PARALLEL_WORK_MACS).threads == 1
    assert choose_threads("auto", 1, product_macs=10 * PARALLEL_PRODUCT_MACS).threads == 1


def test_the_work_is_counted_from_the_networks() -> None:
    envs_space, actions = spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(2)
    dqn = build_algorithm("dqn", envs_space, actions, {"net_arch": [256, 256], "batch_size": 64})
    # online and target network: 4x256 + 256x256 + 256x2 multiply-adds per observation, 64 rows
    assert algorithm_work(dqn) == 2 * (4 * 256 + 256 * 256 + 256 * 2) * 64
    atari = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    ppo = build_algorithm("ppo", atari, spaces.Discrete(4), {"net_arch": [], "batch_size": 32})
    # NatureCNN: 8x8/4 -> 20x20, 4x4/2 -> 9x9, 3x3/1 -> 7x7, then 3136 -> 512; heads 512 -> 4 and 512 -> 1
    convolutions = 32 * 4 * 64 * 400 + 64 * 32 * 16 * 81 + 64 * 64 * 9 * 49
    assert algorithm_work(ppo) == (convolutions + 3136 * 512 + 512 * 4 + 512) * 32
    assert choose_threads("auto", algorithm_work(dqn)).threads == 1


@pytest.mark.parametrize("amp", ["auto", None])
def test_the_largest_torch_product_counts_the_layers_a_kernel_hands_to_torch(
        monkeypatch: pytest.MonkeyPatch, amp: str | None) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    box, discrete = spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(2)
    dqn = build_algorithm("dqn", box, discrete, {"net_arch": [256, 256], "batch_size": 128, "amp": amp})
    assert dqn._kernel is not None and largest_torch_product(dqn) == 128 * 256 * 256  # the 256x256 layer in torch
    assert choose_threads("auto", algorithm_work(dqn), product_macs=largest_torch_product(dqn)).threads == 2
    preset = build_algorithm("dqn", box, discrete, {"net_arch": [256, 256], "batch_size": 64, "amp": amp})
    assert largest_torch_product(preset) == 64 * 256 * 256
    assert choose_threads("auto", algorithm_work(preset), product_macs=largest_torch_product(preset)).threads == 1
    td3 = build_algorithm("td3", box, spaces.Box(-1, 1, (1,), np.float32), {"net_arch": [400, 300], "amp": amp})
    assert largest_torch_product(td3) == 256 * 400 * 300
    ppo = build_algorithm("ppo", box, discrete, {"net_arch": [256, 256]})
    assert ppo._kernel is not None and largest_torch_product(ppo) == 0  # PPO's kernel multiplies in numpy
    autograd = build_algorithm("dqn", box, discrete, {"net_arch": [256, 256], "dueling": True})
    assert autograd._kernel is None and largest_torch_product(autograd) == 0


def test_apply_sets_torch_and_blas_and_logs_the_choice_once(caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(2)
    threadpool_limits(limits=2, user_api="blas")
    with caplog.at_level(logging.INFO, logger="rlcore.threads"):
        first = apply_threads("auto", algo=None)
        apply_threads("auto", algo=None)
    assert first.threads == 1 and torch.get_num_threads() == 1 and blas_threads() == {1}
    assert [record.getMessage() for record in caplog.records].count(
        "threads: 1 (0.0M multiply-adds per minibatch forward; more threads pay from 100M, or from an 8M product); "
        "threads=N or OMP_NUM_THREADS=N sets another count") == 1
    assert apply_threads(2).threads == 2 and torch.get_num_threads() == 2 and blas_threads() == {1}


def test_user_thread_variables_and_none_leave_the_process_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(2)
    threadpool_limits(limits=2, user_api="blas")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    choice = apply_threads("auto", algo=None)
    assert choice.blas_threads is None and "OMP_NUM_THREADS=2 is set" in choice.reason
    assert torch.get_num_threads() == 2 and blas_threads() == {2}
    assert apply_threads(1).threads == 1 and torch.get_num_threads() == 1  # a number given by the user wins
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(2)
    assert apply_threads(None).blas_threads is None and torch.get_num_threads() == 2


def test_trainer_and_load_apply_the_setting(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    config = TrainConfig(total_env_steps=200, eval_freq=0, progress_bar=False, log_dir=str(tmp_path))
    trainer = Trainer("dqn", "CartPole-v1", config, {"learning_starts": 50, "net_arch": [16]})
    assert trainer.threads.threads == 1 and torch.get_num_threads() == 1
    agent = trainer.run()
    agent.save(tmp_path / "agent")
    torch.set_num_threads(2)
    rlcore.load(tmp_path / "agent", threads=None)
    assert torch.get_num_threads() == 2
    rlcore.load(tmp_path / "agent")
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match=r"threads must be 'auto', a number of threads >= 1 or None.*got 'many'"):
        TrainConfig(threads="many")
    with pytest.raises(ValueError, match="threads must be"):
        rlcore.load(tmp_path / "agent", threads=0)


def test_the_first_command_without_thread_variables_trains_on_one_thread(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in threads.THREAD_VARIABLES}
    result = subprocess.run([sys.executable, "-m", "rlcore.cli", "train", "dqn", "CartPole-v1", "--steps", "300",
                             "--no-progress", "--set", "eval_freq=0", "--log-dir", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "threads: 1 (8.6M multiply-adds per minibatch forward" in result.stderr


def test_the_thread_benchmarks_run_and_print_their_json_line(tmp_path: Path) -> None:
    """Smoke runs of benchmarks/first_run.py and benchmarks/threads_rule.py (the figures are not asserted)."""
    import json

    root = Path(__file__).resolve().parent.parent
    env = {key: value for key, value in os.environ.items() if key not in threads.THREAD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    first = subprocess.run([sys.executable, str(root / "benchmarks" / "first_run.py"), "--steps", "300",
                            "--variants", "rlcore,rlcore_omp1"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    line = json.loads(first.stdout.strip().splitlines()[-1])
    assert line["command"] == "rlcore train dqn CartPole-v1 --steps 300" and set(line["wall_seconds"]) == {
        "rlcore", "rlcore_omp1"} and line["vs_omp1"] > 0
    rule = subprocess.run([sys.executable, str(root / "benchmarks" / "threads_rule.py"), "--quick", "--only",
                           "ppo_cartpole_mlp"], env=env, capture_output=True, text=True, timeout=300)
    assert rule.returncode == 0, rule.stderr
    workload = json.loads(rule.stdout.strip().splitlines()[-1])["workloads"]["ppo_cartpole_mlp"]
    assert workload["auto_picks"] == "one" and workload["forward_macs_per_minibatch"] == (4 * 64 + 64 * 64) * 2 * 64 + (
        64 * 2 + 64) * 64
