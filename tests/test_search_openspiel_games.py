"""OpenSpiel games as simulators and envs (``pip install -e '.[games]'``): the adapter follows OpenSpiel's rules,
refuses games search cannot plan on, builds envs from ``openspiel/<game>`` ids, and MCTS, AlphaZero, ``rlcore play``
and the match harness work on games rlcore does not ship."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

pyspiel = pytest.importorskip("pyspiel")

import rlcore  # noqa: E402
from rlcore.env import env_name, make_env  # noqa: E402
from rlcore.search import MCTS, MCTSConfig  # noqa: E402
from rlcore.search.games.openspiel import OpenSpielEnv, OpenSpielSimulator, load_game  # noqa: E402
from rlcore.search.openspiel import ChooserBot, RandomBot, RlcoreBot, play_match  # noqa: E402

GAMES = ["hex(board_size=5)", "clobber(rows=4,columns=4)", "breakthrough(rows=5,columns=5)", "oware",
         "dots_and_boxes(num_rows=2,num_cols=2)", "nim"]


@pytest.mark.parametrize("game", GAMES)
def test_simulator_follows_openspiel_and_never_changes_a_state(game: str) -> None:
    simulator, reference = OpenSpielSimulator(game), pyspiel.load_game(game)
    rng = np.random.default_rng(0)
    for _ in range(5):
        state, mirror = simulator.initial_state(), reference.new_initial_state()
        while not mirror.is_terminal():
            legal = simulator.legal_actions(state)
            assert legal.dtype == np.int64 and list(legal) == mirror.legal_actions()
            assert simulator.to_play(state) == mirror.current_player()
            assert list(np.flatnonzero(simulator.action_mask(state))) == mirror.legal_actions()
            obs = simulator.observation(state)
            assert obs.shape == simulator.obs_shape and obs.dtype == np.float32
            action, before = int(rng.choice(legal)), state.history()
            mover = mirror.current_player()
            state, reward, done = simulator.step(state, action)
            mirror.apply_action(action)
            assert done == mirror.is_terminal() and reward == mirror.rewards()[mover]
        assert before != state.history()  # the step made a new state ...
        assert simulator.is_terminal(state) and not simulator.action_mask(state).any()


def test_step_leaves_its_input_alone() -> None:
    simulator = OpenSpielSimulator("hex(board_size=5)")
    state = simulator.initial_state()
    child, _, _ = simulator.step(state, 12)
    assert state.history() == [] and child.history() == [12]
    assert simulator.same_state(child, simulator.step(state, 12)[0]) and not simulator.same_state(state, child)


def test_to_play_plane_tells_whose_turn_it_is() -> None:
    simulator = OpenSpielSimulator("hex(board_size=5)")
    first = simulator.initial_state()
    second, _, _ = simulator.step(first, 0)
    assert simulator.obs_shape == (10, 5, 5)
    assert not simulator.observation(first)[-1].any() and simulator.observation(second)[-1].all()
    flat = OpenSpielSimulator("nim")
    assert flat.obs_shape == (40,) and flat.observation(flat.step(flat.initial_state(), 0)[0])[-1] == 1.0


@pytest.mark.parametrize(("game", "problem"), [
    ("backgammon", "chance nodes"), ("kuhn_poker", "hidden information"), ("goofspiel", "simultaneous moves"),
    ("oh_hell", "players"),
])
def test_games_search_cannot_plan_on_are_refused_by_name(game: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as error:
        load_game(game)
    assert repr(pyspiel.load_game(game).get_type().short_name) in str(error.value)


def test_unknown_game_names_the_game_and_the_fix() -> None:
    with pytest.raises(ValueError, match="'hexx\\(board_size=5\\)'.*registered game name"):
        make_env("openspiel/hexx(board_size=5)")


@pytest.mark.filterwarnings("ignore:.*infinity")
def test_openspiel_ids_build_the_env_and_stay_data() -> None:
    env = make_env("openspiel/hex(board_size=5)")
    assert isinstance(env, OpenSpielEnv) and env.observation_space.shape == (10, 5, 5) and env.action_space.n == 25
    assert env_name("openspiel/hex(board_size=5)") == "openspiel-hex-board_size-5"
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert info["to_play"] == 0 and info["action_mask"].sum() == 25
    env.step(3)
    obs, reward, terminated, _, info = env.step(3)  # taken: an illegal move loses at once
    assert reward == -1.0 and terminated and info["illegal_action"]


def test_rollouts_score_the_player_to_move() -> None:
    simulator = OpenSpielSimulator("tic_tac_toe")
    state = simulator.initial_state()
    for action in (0, 3, 1, 4):  # x to move with two in a row, o too
        state, _, _ = simulator.step(state, action)
    rng = np.random.default_rng(0)
    values = [simulator.rollout(state, 100, 1.0, rng) for _ in range(400)]
    assert set(values) <= {-1.0, 0.0, 1.0} and np.mean(values) > 0.1
    finished, _, _ = simulator.step(state, 2)
    assert simulator.rollout(finished, 100, 1.0, rng) == 0.0


def winning_position() -> tuple[OpenSpielSimulator, Any]:
    """Tic-tac-toe with x to move and 2 winning (o threatens 5)."""
    simulator = OpenSpielSimulator("tic_tac_toe")
    state = simulator.initial_state()
    for action in (0, 3, 1, 4):
        state, _, _ = simulator.step(state, action)
    return simulator, state


@pytest.mark.parametrize("leaves_per_round", [1, 8])
def test_mcts_finds_the_win_through_the_adapter(leaves_per_round: int) -> None:
    simulator, state = winning_position()
    mcts = MCTS(simulator, MCTSConfig(num_simulations=400, leaves_per_round=leaves_per_round), seed=1)
    assert mcts.choose(state) == 2 and mcts.visit_counts().sum() == 400


class VectorisedHex(OpenSpielSimulator):
    """The adapter plus a ``rollout_many`` that records how many states each call got."""

    def __init__(self) -> None:
        super().__init__("hex(board_size=4)")
        self.batch_sizes: list[int] = []

    def rollout_many(self, states: list[Any], depth: int, gamma: float, rng: np.random.Generator) -> np.ndarray:
        self.batch_sizes.append(len(states))
        return np.array([self.rollout(state, depth, gamma, rng) for state in states])


def test_virtual_loss_hands_a_vectorised_simulator_several_leaves_at_once() -> None:
    simulator = VectorisedHex()
    mcts = MCTS(simulator, MCTSConfig(num_simulations=200, leaves_per_round=8), seed=0)
    mcts.choose(simulator.initial_state())
    assert max(simulator.batch_sizes) == 8 and np.mean(simulator.batch_sizes) > 6
    assert (mcts.arrays.visits[0, : mcts.arrays.size[0]] >= 0).all()  # every virtual visit was given back
    assert mcts.visit_counts().sum() == mcts.arrays.visits[0, 0] - 1 == 200


def test_uct_through_the_adapter_beats_random_play_at_hex() -> None:
    config = MCTSConfig(num_simulations=300)
    result = play_match("hex(board_size=4)", 10, lambda i: RlcoreBot("hex(board_size=4)", config, seed=i),
                        RandomBot)
    assert result.wins >= 9, result


def test_mcts_agent_plans_on_an_openspiel_game_through_the_trainer() -> None:
    agent = rlcore.train("mcts", "openspiel/clobber(rows=3,columns=4)", total_env_steps=30, log_dir=None,
                         progress_bar=False, num_simulations=50, solver=True)
    assert agent.algo.env_steps == 30


def test_play_an_openspiel_game_by_move_names() -> None:
    from rlcore.play import agent_chooser, play_game

    choose, _ = agent_chooser("mcts", 300)
    shown: list[str] = []
    moves = iter(["zz", "a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"])

    def read(prompt: str) -> str:
        return next(move for move in moves if move in prompt or move == "zz")

    winner = play_game("openspiel/hex(board_size=3)", choose, human_first=True, read=read, write=shown.append)
    assert winner in (0, 1)  # hex has no draws
    assert any("not a legal move" in line for line in shown) and any("computer plays" in line for line in shown)


TINY_AZ = {"num_simulations": 8, "channels": 8, "num_blocks": 1, "batch_size": 32, "buffer_size": 2000,
           "learning_starts": 64, "train_every": 64, "gradient_steps": 2, "temperature_moves": 3,
           "eval_simulations": 8, "eval_mcts_simulations": 20}


@pytest.mark.parametrize("game", ["hex(board_size=3)", "dots_and_boxes(num_rows=2,num_cols=2)", "nim"])
def test_alphazero_self_play_on_openspiel_games_saves_and_loads(game: str, tmp_path: Path) -> None:
    env_id = f"openspiel/{game}"
    agent = rlcore.train("alphazero", env_id, total_env_steps=240, num_envs=8, eval_freq=240, eval_episodes=2,
                         log_dir=str(tmp_path), progress_bar=False, seed=0, **TINY_AZ)
    assert agent.algo.games_played > 0 and agent.algo.updates > 0
    loaded = rlcore.load(agent.run_dir / "final")
    assert loaded.env == env_id
    simulator = OpenSpielSimulator(game)
    state = simulator.initial_state()
    assert loaded.algo.choose_move(simulator, state) in simulator.legal_actions(state)
    assert 0.0 <= loaded.evaluate(2)["mean_reward"] <= 1.0


def test_alphazero_refuses_a_single_agent_env() -> None:
    with pytest.raises(TypeError, match="two-player"):
        rlcore.train("alphazero", "openspiel/cliff_walking", total_env_steps=8, log_dir=None, progress_bar=False,
                     **TINY_AZ)


LEARNING_AZ = {"num_simulations": 16, "channels": 16, "num_blocks": 1, "batch_size": 128, "buffer_size": 20000,
               "learning_starts": 256, "train_every": 256, "gradient_steps": 16, "temperature_moves": 4,
               "eval_simulations": 16}


def score_against_random(agent: Any, game: str, simulations: int, games: int = 100) -> float:
    simulator = OpenSpielSimulator(game)
    choose = lambda sim, state: agent.algo.choose_move(sim, state, simulations)  # noqa: E731
    return play_match(game, games, lambda i: ChooserBot(game, choose, simulator=simulator), RandomBot).score


@pytest.mark.slow
@pytest.mark.parametrize(("game", "moves", "simulations", "threshold"), [
    pytest.param("hex(board_size=4)", 6000, 1, 0.9, marks=pytest.mark.ci_slow),
    ("dots_and_boxes(num_rows=2,num_cols=2)", 4000, 1, 0.65),
    ("nim", 6000, 16, 0.95),
])
def test_alphazero_learns_openspiel_games(game: str, moves: int, simulations: int, threshold: float) -> None:
    """Self-play for a few thousand moves (~20 s each on one core) makes the agent beat random players far more
    often than its untrained network does with the same search (1 simulation: the network's own choice)."""
    untrained, trained = (rlcore.train("alphazero", f"openspiel/{game}", total_env_steps=steps, num_envs=16,
                                       eval_freq=0, log_dir=None, progress_bar=False, seed=0, **LEARNING_AZ)
                          for steps in (16, moves))
    before, after = (score_against_random(agent, game, simulations) for agent in (untrained, trained))
    assert after >= threshold and after >= before + 0.15, (before, after)


def test_gumbel_alphazero_on_an_openspiel_game_resumes_exactly(tmp_path: Path) -> None:
    from runs import run_until_killed

    from rlcore.trainer import TrainConfig, Trainer

    settings = {"total_env_steps": 320, "num_envs": 8, "seed": 2, "eval_freq": 0, "checkpoint_freq": 160,
                "progress_bar": False, "log_interval": 80, "device": "cpu"}
    algo = {**TINY_AZ, "search": "gumbel"}
    env_id = "openspiel/tic_tac_toe"
    reference = Trainer("alphazero", env_id, TrainConfig(log_dir=str(tmp_path / "a"), **settings), algo)
    reference.run()
    first = Trainer("alphazero", env_id, TrainConfig(log_dir=str(tmp_path / "b"), **settings), algo)
    run_until_killed(first, 160)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(first.run_dir)
    resumed.run()
    assert reference.algo.updates > 0 and reference.algo.games_played == resumed.algo.games_played
    for a, b in zip(reference.algo.net.parameters(), resumed.algo.net.parameters()):
        assert torch.equal(a, b)
