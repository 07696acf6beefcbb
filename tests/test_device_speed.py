"""benchmarks/device_speed.py (issue 19's GPU-against-CPU table) runs on the CPU here, so that it is ready for a
session lent a GPU: every row trains through ``rlcore.train`` and reports the env steps it took."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import device_speed  # noqa: E402


def test_each_row_trains_and_reports_its_env_steps_per_second() -> None:
    results = device_speed.measure(list(device_speed.ROWS), ["cpu1"], scale=0.01, seed=0, warm_up=False)
    assert set(results) == set(device_speed.ROWS)
    for name, result in results.items():
        assert result["env_steps"] >= 1_024, name  # whole rollouts, at least the asked steps
        assert result["env_steps_per_s"]["cpu1"] > 0 and result["best_cpu"] == "cpu1", name
        assert "cuda_vs_best_cpu" not in result, name


def test_cuda_only_settings_are_skipped_for_off_policy_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, dict]] = []
    monkeypatch.setattr(device_speed, "train_rate", lambda row, config, steps, seed: (
        runs.append((row["algo"], config)) or (1_000.0 if config["device"] == "cuda" else 250.0, steps)))
    results = device_speed.measure(["dqn_cartpole", "cnn_ppo_preset"], ["cuda", "cuda_bf16", "cpu1"], 1.0, 0)
    assert ("dqn", device_speed.CONFIGS["cuda_bf16"]) not in runs and ("ppo", device_speed.CONFIGS["cuda_bf16"]) in runs
    assert results["dqn_cartpole"]["cuda_vs_best_cpu"] == 4.0 and set(results["dqn_cartpole"]["env_steps_per_s"]) == {
        "cuda", "cpu1"}
