"""The search algorithms end to end: the MCTS planner through the Trainer, AlphaZero self-play with
logs, checkpoints and exact resume, and `rlcore play`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from runs import run_until_killed
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rlcore
from rlcore.trainer import TrainConfig, Trainer

TINY_AZ = {"num_simulations": 8, "channels": 8, "num_blocks": 1, "batch_size": 32, "buffer_size": 2000,
           "learning_starts": 64, "train_every": 64, "gradient_steps": 2, "temperature_moves": 3,
           "eval_simulations": 8, "eval_mcts_simulations": 50}


def config(tmp_path: Path, **overrides: object) -> TrainConfig:
    settings = {"total_env_steps": 320, "num_envs": 8, "seed": 2, "eval_freq": 160, "eval_episodes": 4,
                "checkpoint_freq": 160, "log_dir": str(tmp_path), "progress_bar": False, "log_interval": 80,
                "device": "cpu"}
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def scalar_tags(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return set(events.Tags()["scalars"])


def test_mcts_planner_trains_on_cartpole_through_the_trainer(tmp_path: Path) -> None:
    trainer = Trainer("mcts", "CartPole-v1", config(tmp_path, total_env_steps=120, num_envs=1, eval_freq=0,
                                                     checkpoint_freq=0, log_interval=40),
                      {"num_simulations": 30, "rollout_depth": 30})
    agent = trainer.run()
    assert trainer.source.stats.episodes == 0, "the pole fell within 120 planned steps"
    assert {"search/root_value", "search/simulations_per_s"} <= scalar_tags(trainer.run_dir)
    assert rlcore.load(trainer.run_dir / "final").name == "mcts"
    with pytest.raises(TypeError, match="plans from the env's state"):
        agent.predict(np.zeros(4, np.float32))


@pytest.mark.parametrize("autoreset", ["NEXT_STEP", "SAME_STEP"])
def test_planners_take_a_users_own_sync_vector_env(autoreset: str) -> None:
    """rlcore wraps a user's vector env (resetting ended sub-envs within the step); the planner reads the sub-envs
    under it, so after each reset it plans from the new episode's start: every episode of the deterministic lake
    reaches the goal."""
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("FrozenLake-v1", is_slippery=False)] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode[autoreset])
    trainer = Trainer("mcts", envs, config(Path("."), total_env_steps=120, num_envs=2, eval_freq=0, checkpoint_freq=0,
                                           log_dir=None), {"num_simulations": 100, "rollout_depth": 20, "gamma": 0.9})
    trainer.run()
    stats = trainer.source.stats
    assert stats.episodes >= 6, "too few episodes ended to test the resets"
    assert list(stats.finished_returns) == [1.0] * len(stats.finished_returns)
    async_envs = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    try:
        with pytest.raises(TypeError, match="need a gymnasium SyncVectorEnv .* got AsyncVectorEnv"):
            Trainer("mcts", async_envs, config(Path("."), total_env_steps=20, num_envs=2, eval_freq=0,
                                               checkpoint_freq=0, log_dir=None), {"num_simulations": 4}).run()
    finally:
        async_envs.close()
    with pytest.raises(TypeError, match="need a gymnasium SyncVectorEnv"):  # before a false warning about masks
        Trainer("alphazero", "rlcore/TicTacToe-v0", config(Path("."), total_env_steps=20, num_envs=2, eval_freq=0,
                                                          checkpoint_freq=0, log_dir=None, vectorization="async"),
                TINY_AZ)


@pytest.mark.parametrize("algo", ["mcts", "alphazero"])
def test_searching_a_games_simulator_is_not_warned_about_its_action_masks(algo: str, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A game's simulator expands only the legal moves, which is what the env's masks say: no warning."""
    import logging

    settings = TINY_AZ if algo == "alphazero" else {"num_simulations": 8}
    with caplog.at_level(logging.WARNING, logger="rlcore.trainer"):
        Trainer(algo, "rlcore/TicTacToe-v0", config(tmp_path, total_env_steps=16, num_envs=2, eval_freq=0,
                                                    checkpoint_freq=0, log_dir=None), settings)
    assert not [record for record in caplog.records if "action masks" in record.getMessage()]


def test_mcts_takes_any_observation_space_since_it_searches_the_envs_state() -> None:
    """Blackjack's observations are a Tuple; the search never reads them (its simulator snapshots the env)."""
    agent = rlcore.train("mcts", "Blackjack-v1", total_env_steps=40, num_simulations=20, rollout_depth=5,
                         log_dir=None, progress_bar=False, eval_freq=0)
    assert agent.evaluate(10)["mean_ep_length"] >= 1


def test_mcts_agent_evaluates_by_planning() -> None:
    agent = rlcore.train("mcts", "FrozenLake-v1", total_env_steps=20, log_dir=None, progress_bar=False,
                         env_kwargs={"is_slippery": False}, num_simulations=100, rollout_depth=20)
    metrics = agent.evaluate(2)
    assert metrics["mean_reward"] == 1.0


@pytest.mark.slow
def test_mcts_planner_holds_cartpole_for_500_steps() -> None:
    """The acceptance check: 100 simulations per step (the preset)."""
    trainer = Trainer("mcts", "CartPole-v1", TrainConfig(total_env_steps=500, eval_freq=0, checkpoint_freq=0,
                                                         log_dir=None, progress_bar=False),
                      {"num_simulations": 100, "rollout_depth": 100, "c": 1.0})
    trainer.run()
    assert list(trainer.source.stats.finished_lengths) == [500]  # truncated by the time limit, not fallen


def test_alphazero_self_play_logs_checkpoints_and_loads(tmp_path: Path) -> None:
    trainer = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path), TINY_AZ)
    agent = trainer.run()
    tags = scalar_tags(trainer.run_dir)
    for tag in ("search/root_value", "search/simulations_per_s", "search/eval_vs_mcts", "search/eval_vs_previous",
                "search/games", "train/policy_loss", "train/value_loss", "eval/mean_reward"):
        assert tag in tags, tag
    assert agent.algo.games_played > 0 and agent.algo.updates > 0
    # the self-play rate leaves out the first lockstep move (it compiles the search) and evaluation's moves
    assert agent.algo.timings["self_play_moves"] == trainer.env_steps - trainer.config.num_envs
    loaded = rlcore.load(trainer.run_dir / "final")
    simulator = trainer.envs.envs[0].unwrapped.simulator
    state = simulator.initial_state()
    move = loaded.algo.choose_move(simulator, state)
    assert move in simulator.legal_actions(state)
    scores = loaded.evaluate(2)
    assert 0.0 <= scores["mean_reward"] <= 1.0  # like every agent's: the std and the game length (moves) too
    assert 0.0 <= scores["std_reward"] <= 0.5 and 5 <= scores["mean_ep_length"] <= 9, scores
    baseline = [weight.clone() for weight in loaded.algo.previous_net.parameters()]
    with torch.no_grad():  # a network other than the baseline, as after more training
        next(loaded.algo.net.parameters()).add_(0.5)
    loaded.evaluate(2)  # a user's evaluation leaves the training loop's baseline (the previous network) alone
    assert all(torch.equal(a, b) for a, b in zip(baseline, loaded.algo.previous_net.parameters(), strict=True))
    for evaluated in (loaded, agent):  # another game: refused by its spaces (a crash in the network, or the agent's
        with pytest.raises(ValueError, match=r"the evaluation env's observation space .* differs from the agent's"):
            evaluated.evaluate(1, env="rlcore/ConnectFour-v0")  # own game scored silently)
    from rlcore.play import agent_chooser

    with pytest.raises(ValueError, match=r"plays rlcore/TicTacToe-v0, whose board differs from rlcore/ConnectFour-v0's"
                                         r".*or play rlcore/ConnectFour-v0 against 'mcts'"):
        agent_chooser(str(trainer.run_dir / "final"), 8, "rlcore/ConnectFour-v0")


def test_a_learner_counts_each_self_play_workers_position_once_when_mirroring() -> None:
    """Workers write each position and its mirror image: the learner counted both, training twice as often."""
    trainer = Trainer("alphazero", "rlcore/TicTacToe-v0", TrainConfig(total_env_steps=16, eval_freq=0, log_dir=None,
                                                                      progress_bar=False), TINY_AZ)
    algo = trainer.algo
    assert algo._mirror  # settled from the game at set-up, before any self-play in this process
    before = algo.new_positions
    algo.record_remote_games(18, 1)
    assert algo.new_positions - before == 9 and algo.games_played == 1


@pytest.mark.parametrize("value_target_mix", [0.0, 0.5])  # 0.5: unfinished games' search values in the checkpoint
def test_alphazero_resume_matches_an_uninterrupted_run(tmp_path: Path, value_target_mix: float) -> None:
    settings = {**TINY_AZ, "value_target_mix": value_target_mix}
    reference = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path / "a"), settings)
    reference.run()
    first = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path / "b"), settings)
    run_until_killed(first, 160)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(first.run_dir)
    assert resumed.env_steps == 160
    resumed.run()
    for a, b in zip(reference.algo.net.parameters(), resumed.algo.net.parameters()):
        assert torch.equal(a, b)
    assert reference.algo.games_played == resumed.algo.games_played


def test_play_against_mcts_in_the_terminal() -> None:
    from rlcore.play import agent_chooser, play_game

    choose, _ = agent_chooser("mcts", 500)
    shown: list[str] = []
    moves = iter(["9", "x", "0", "1", "2", "3", "5", "6", "7", "8"])  # bad input first; then the first free cells
    free = lambda prompt: next(move for move in moves if move in prompt or not move.isdigit() or move == "9")  # noqa: E731
    winner = play_game("rlcore/TicTacToe-v0", choose, human_first=True, read=free, write=shown.append)
    assert winner in (None, 1)  # the computer never loses
    assert any("not a legal move" in line for line in shown) and any("computer plays" in line for line in shown)


def test_play_cli_rejects_a_non_game_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlcore.cli import main

    assert main(["play", "mcts"]) == 2
    assert "--env" in capsys.readouterr().err


def test_play_cli_ends_quietly_when_the_player_leaves(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from rlcore.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("5\n"))  # one move, then the end of input (Ctrl-D)
    assert main(["play", "mcts", "--env", "rlcore/TicTacToe-v0", "--simulations", "8"]) == 0
    assert "error" not in capsys.readouterr().err


def test_gumbel_self_play_searches_without_noise_after_gumbel_noise_moves(tmp_path: Path) -> None:
    settings = {**TINY_AZ, "search": "gumbel", "gumbel_noise_moves": 2, "learning_starts": 10_000}
    trainer = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path, eval_freq=0, total_env_steps=64),
                      settings)
    algo, envs = trainer.algo, trainer.envs
    envs.reset(seed=0)
    noise_per_move = []
    for _ in range(4):
        algo.plan(envs)
        noise_per_move.append(np.abs(algo._search(envs).gumbel_noise).sum(axis=1))
    assert (noise_per_move[0] > 0).all() and (noise_per_move[1] > 0).all()  # moves 1 and 2: sampled
    assert (noise_per_move[2] == 0).all() and (noise_per_move[3] == 0).all()  # then the best move, no noise


@pytest.mark.parametrize("sampling_moves", [0, 2])
def test_gumbel_self_play_samples_its_first_moves_from_the_visits(tmp_path: Path, sampling_moves: int) -> None:
    settings = {**TINY_AZ, "search": "gumbel", "gumbel_visit_sampling_moves": sampling_moves,
                "learning_starts": 10_000}
    trainer = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path, eval_freq=0, total_env_steps=64),
                      settings)
    algo, envs = trainer.algo, trainer.envs
    envs.reset(seed=0)
    sampled_from = []
    algo._sample = lambda counts: sampled_from.append(counts.copy()) or int(np.argmax(counts))
    calls_per_move = []
    for _ in range(4):
        before = len(sampled_from)
        algo.plan(envs)
        calls_per_move.append(len(sampled_from) - before)
    expected = [envs.num_envs if move < sampling_moves else 0 for move in range(4)]
    assert calls_per_move == expected
    assert all(counts.sum() == TINY_AZ["num_simulations"] for counts in sampled_from)  # the root's visit counts



@pytest.mark.parametrize("search", ["puct", "gumbel"])
def test_self_play_records_the_search_value_under_its_policy_target(tmp_path: Path, search: str) -> None:
    settings = {**TINY_AZ, "search": search, "learning_starts": 10_000}
    trainer = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path, eval_freq=0, total_env_steps=64), settings)
    algo, envs = trainer.algo, trainer.envs
    envs.reset(seed=0)
    mcts = algo._search(envs)
    recorded = []
    mcts.advance = lambda action, b: recorded.append((mcts.root_value(b), mcts.arrays.visits[b].copy()))
    algo.plan(envs)
    for b in range(envs.num_envs):
        _, target, _, search_value = algo._games[b][-1]
        t, children = mcts.arrays, mcts._children(b)
        visits = t.visits[b, children]
        q = np.full(9, recorded[b][0])
        q[t.action[b, children]] = np.where(visits > 0, t.value_sum[b, children] / np.maximum(visits, 1),
                                            recorded[b][0])
        assert search_value == pytest.approx(float(target @ q) / target.sum())
        if search == "puct":  # under the visit distribution: the root's mean return
            assert search_value == pytest.approx(recorded[b][0])


def test_value_target_mix_averages_the_outcome_with_the_search_values(tmp_path: Path) -> None:
    mix = 0.25
    settings = {**TINY_AZ, "value_target_mix": mix, "learning_starts": 10_000}
    algo = Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path, eval_freq=0, total_env_steps=64),
                   settings).algo
    algo._games[0] = [(np.zeros(algo.observation_space.shape, np.float32), np.full(9, 1 / 9), move % 2, 0.1 * move)
                      for move in range(5)]
    algo._finish_game(0, 1.0)  # player 0 made the fifth move and won
    outcome = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    assert np.allclose(algo.replay.value[:5], (1 - mix) * outcome + mix * 0.1 * np.arange(5), atol=1e-6)
    with pytest.raises(ValueError, match="value_target_mix"):
        Trainer("alphazero", "rlcore/TicTacToe-v0", config(tmp_path, eval_freq=0), {"value_target_mix": 1.5})


def test_a_matchs_score_spread_is_that_of_its_per_game_scores() -> None:
    from rlcore.search.selfplay import MatchResult

    result = MatchResult(wins=2, draws=1, losses=1, moves=[5, 7, 9, 9])
    assert result.score == pytest.approx(0.625)
    assert result.score_std == pytest.approx(np.std([1.0, 1.0, 0.5, 0.0]))
