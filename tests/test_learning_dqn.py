"""DQN learns CartPole-v1 with its preset (slow; CI runs seed 0)."""

import pytest

import rlcore
from rlcore.checkpoint import load_checkpoint

SEEDS = [pytest.param(0, marks=[pytest.mark.slow, pytest.mark.ci_slow]),
         pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]


@pytest.mark.parametrize("seed", SEEDS)
def test_dqn_cartpole_reaches_475_within_50k_steps_and_keeps_the_best_agent(seed: int, tmp_path) -> None:
    agent = rlcore.train("dqn", "CartPole-v1", seed=seed, progress_bar=False, log_dir=str(tmp_path))
    state, meta = load_checkpoint(agent.run_dir / "checkpoint")
    assert meta["env_steps"] <= 50_000 + 256
    history = state["trainer"]["history"]
    best = max(history, key=lambda entry: entry["eval/mean_reward"])
    assert best["eval/mean_reward"] >= 475, [round(entry["eval/mean_reward"]) for entry in history]
    # the kept best agent is that evaluated agent: re-evaluated on the same episodes, it scores the same
    best_agent = rlcore.load(agent.run_dir / "best")
    rescored = best_agent.evaluate(10, seed=int(best["eval_seed"]))["mean_reward"]
    assert rescored == pytest.approx(best["eval/mean_reward"])


WORKER_SEEDS = [pytest.param((0, 1), marks=[pytest.mark.slow, pytest.mark.ci_slow]),
                pytest.param((2, 3), marks=pytest.mark.slow), pytest.param((4, 5), marks=pytest.mark.slow)]
WORKER_SETTINGS = {"num_workers": 2, "progress_bar": False, "total_env_steps": 100_000, "stop_at_reward": 475,
                   "exploration_fraction": 0.08}
"""Twice the preset's 50k steps, stopping at 475, with the preset's 8k steps of exploration (0.16 of 50k)."""


@pytest.mark.parametrize("seeds", WORKER_SEEDS)
def test_dqn_with_two_worker_processes_reaches_475_on_cartpole(seeds: tuple[int, int], tmp_path) -> None:
    """Two local workers write into a shared replay while the learner trains at the preset's replay ratio.

    The workers collect asynchronously, so no two runs of one seed interleave alike and a seed's outcome is a draw:
    here 16 of 16 runs of seeds 0-7 reached 475 within 65k steps (after 32k on average with the preset's
    exploration, 40k with it stretched over 100k), but on CI machines one run stayed under 210 for 50k and one under
    370 for 100k. The first seed runs, the second only if the first did not reach 475: the test fails when both
    draws do (a run that learns stops at 475 and costs no more)."""
    for attempt, seed in enumerate(seeds):
        agent = rlcore.train("dqn", "CartPole-v1", seed=seed, log_dir=str(tmp_path / str(seed)), **WORKER_SETTINGS)
        state, meta = load_checkpoint(agent.run_dir / "checkpoint")
        history = state["trainer"]["history"]
        rewards = [round(entry["eval/mean_reward"]) for entry in history]
        # the ratio held: one phase of 128 updates per 256 env steps after the first 1,000
        assert state["algo"]["updates"] >= 0.9 * (meta["env_steps"] - 1_000) * 128 / 256, meta["env_steps"]
        if max(entry["eval/mean_reward"] for entry in history) >= 475:
            return
        assert attempt + 1 < len(seeds), f"neither seed {seeds} reached 475 within 100k steps; the last: {rewards}"
