"""``rlcore eval --video``: episodes recorded from render_mode="rgb_array" frames into a playable mp4 or gif."""

import json
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from rlcore import cli
from rlcore.agent import load
from rlcore.evaluation import record_video
from rlcore.trainer import TrainConfig, Trainer

CARTPOLE_FRAME = (400, 600, 3)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(total_env_steps=1000, eval_freq=500, eval_episodes=3, log_dir=None, progress_bar=False,
                         seed=1, device="cpu")
    run_dir = tmp_path_factory.mktemp("video") / "run"
    trainer = Trainer("dqn", "CartPole-v1", config, {"net_arch": [32, 32], "learning_starts": 200, "train_freq": 4,
                                                     "gradient_steps": 2}, run_dir=run_dir)
    trainer.run()
    return run_dir


def read_frames(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return [np.asarray(frame) for frame in reader]


def test_cli_eval_writes_a_playable_mp4(cartpole_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "videos" / "cartpole.mp4"
    assert cli.main(["eval", str(cartpole_run), "--episodes", "2", "--video", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["algo"] == "dqn" and result["video"] == str(out) and result["mean_reward"] > 0
    # one frame after each reset and one after each step
    assert result["frames"] == round(2 * result["mean_ep_length"]) + 2
    frames = read_frames(out)
    assert len(frames) == result["frames"]
    assert frames[0].shape == CARTPOLE_FRAME and frames[0].dtype == np.uint8
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 3  # a picture of the cart, not one flat colour


def test_gif_works_with_imageio_alone(cartpole_run: Path, tmp_path: Path) -> None:
    agent = load(cartpole_run)
    out = tmp_path / "cartpole.gif"
    metrics = record_video(agent.predict, "CartPole-v1", out, 1, seed=3, fps=25)
    frames = read_frames(out)
    # identical consecutive frames may be merged by the GIF encoder, never added
    assert 0 < len(frames) <= metrics["video/frames"] == metrics["eval/mean_ep_length"] + 1
    assert frames[0].shape[:2] == CARTPOLE_FRAME[:2]


def test_video_errors_name_the_bad_value(cartpole_run: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["eval", str(cartpole_run), "--video", str(tmp_path / "out.avi")]) == 2
    assert "out.avi" in capsys.readouterr().err
    with pytest.raises(ValueError, match="n_episodes"):
        record_video(lambda obs: 0, "CartPole-v1", tmp_path / "x.gif", 0)


def test_a_planner_records_its_search_on_the_recorded_env(tmp_path: Path) -> None:
    """MCTS acts from the env's state, not from observations: the video plans on the env it records, and scores
    what its evaluation scores."""
    import rlcore

    agent = rlcore.train("mcts", "CartPole-v1", total_env_steps=20, num_simulations=30, rollout_depth=30,
                         log_dir=None, progress_bar=False, eval_freq=0)
    metrics = record_video(agent.predict, "CartPole-v1", tmp_path / "mcts.gif", 1, seed=3)
    assert metrics["eval/mean_reward"] == agent.evaluate(1, seed=3)["mean_reward"] > 100
    assert metrics["video/frames"] == metrics["eval/mean_ep_length"] + 1


def test_a_failed_recording_leaves_no_file(tmp_path: Path) -> None:
    steps = []

    def failing(obs: np.ndarray) -> int:
        steps.append(obs)
        if len(steps) > 3:
            raise RuntimeError("policy failed")
        return 0

    for name in ("broken.gif", "broken.mp4"):
        steps.clear()
        with pytest.raises(RuntimeError, match="policy failed"):
            record_video(failing, "CartPole-v1", tmp_path / name, 1)
        assert list(tmp_path.iterdir()) == [], name  # neither the video nor its partial file


def test_a_game_without_frames_is_refused_by_name(tmp_path: Path) -> None:
    """One error, without gymnasium's warning about the same render mode before it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="'rlcore/TicTacToe-v0' does not accept render_mode='rgb_array'"):
            record_video(lambda obs: 0, "rlcore/TicTacToe-v0", tmp_path / "game.gif", 1)
    assert [str(warning.message) for warning in caught] == []
    assert list(tmp_path.iterdir()) == []


class _Unrendered(gymnasium.Env):
    """Takes render_mode but has no render()."""

    observation_space = gymnasium.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(3, np.float32), 1.0, True, False, {}


class _NoArguments(gymnasium.Env):
    """No __init__ of its own: ``object``'s takes no arguments."""

    observation_space, action_space = _Unrendered.observation_space, _Unrendered.action_space
    reset, step = _Unrendered.reset, _Unrendered.step


def test_an_env_without_render_or_render_mode_is_named_with_the_fix(tmp_path: Path) -> None:
    """An empty NotImplementedError (gymnasium's default render()) and a bare 'takes no arguments' before."""
    with pytest.raises(NotImplementedError, match=r"_Unrendered has no render\(\) .*recording a video needs an env "
                                                  r"whose render\(\) returns rgb_array frames"):
        record_video(lambda obs: 0, _Unrendered, tmp_path / "a.gif", 1)
    with pytest.raises(TypeError, match=r"does not accept render_mode='rgb_array' \(.*takes no arguments\)"):
        record_video(lambda obs: 0, _NoArguments, tmp_path / "b.gif", 1)
    assert list(tmp_path.iterdir()) == []


MEMORY_AGENTS = {
    "ppo-lstm": ("ppo", {"memory": "lstm", "n_steps": 16, "sequence_length": 4, "memory_size": 8, "net_arch": [8]}),
    "ppo-transformer": ("ppo", {"memory": "transformer", "n_steps": 16, "sequence_length": 4, "net_arch": [8]}),
    "dqn-lstm": ("dqn", {"memory": "lstm", "sequence_length": 4, "burn_in": 2, "memory_size": 8, "net_arch": [8],
                         "learning_starts": 32, "train_freq": 4, "batch_size": 8, "buffer_size": 500}),
}


@pytest.mark.parametrize("name", sorted(MEMORY_AGENTS))
def test_a_memory_agent_records_with_a_fresh_state_per_episode(name: str, tmp_path: Path) -> None:
    """Memory policies act with a state: the recording acts through algo.actor(), one episode at a time, each from a
    fresh state, and scores what Agent.evaluate scores on the same seeds."""
    import rlcore

    algo, settings = MEMORY_AGENTS[name]
    agent = rlcore.train(algo, "rlcore/CartPoleNoVelocity-v0", total_env_steps=64, log_dir=None,
                         progress_bar=False, eval_freq=0, seed=2, **settings)
    metrics = record_video(agent.predict, "rlcore/CartPoleNoVelocity-v0", tmp_path / "memory.gif", 2, seed=5)
    evaluation = agent.evaluate(2, seed=5)
    assert metrics["eval/mean_reward"] == evaluation["mean_reward"]
    assert metrics["eval/mean_ep_length"] == evaluation["mean_ep_length"]
    assert metrics["video/frames"] == 2 * metrics["eval/mean_ep_length"] + 2
    assert read_frames(tmp_path / "memory.gif")


def test_cli_eval_records_a_memory_agent(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "ppo", "rlcore/CartPoleNoVelocity-v0", "--steps", "64", "--set", "memory=lstm",
                     "--set", "n_steps=16", "--set", "sequence_length=4", "--run-dir", str(run),
                     "--no-progress"]) == 0
    out = tmp_path / "memory.gif"
    assert cli.main(["eval", str(run), "--episodes", "1", "--video", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == result["mean_ep_length"] + 1 and out.stat().st_size > 1000


def test_wrappers_apply_to_the_recorded_env(tmp_path: Path) -> None:
    """The run's wrappers= (here an observation and a reward wrapper) wrap the recorded env as they wrap
    evaluation's; an env with other spaces than the agent's is refused by name before any frame."""
    import gymnasium as gym

    import rlcore

    stacked = [lambda env: gym.wrappers.FrameStackObservation(env, 2),
               lambda env: gym.wrappers.TransformReward(env, lambda reward: 100.0 * reward)]
    agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=64, learning_starts=32, net_arch=[8],
                         log_dir=None, progress_bar=False, eval_freq=0, wrappers=stacked)
    metrics = record_video(agent.predict, "CartPole-v1", tmp_path / "stacked.gif", 1, seed=4, wrappers=stacked)
    assert metrics["eval/mean_reward"] == 100 * metrics["eval/mean_ep_length"]
    assert metrics["eval/mean_reward"] == agent.evaluate(1, seed=4)["mean_reward"]
    with pytest.raises(ValueError, match="observation space"):
        record_video(agent.predict, "CartPole-v1", tmp_path / "plain.gif", 1)
    assert not (tmp_path / "plain.gif").exists()


def test_an_env_instance_or_a_vector_env_is_recorded_from_a_copy(cartpole_run: Path, tmp_path: Path) -> None:
    import gymnasium as gym

    agent = load(cartpole_run)
    instance = gym.make("CartPole-v1", render_mode="rgb_array")
    vector = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync", render_mode="rgb_array")
    expected = record_video(agent, "CartPole-v1", tmp_path / "id.gif", 1, seed=7)
    for name, env in (("instance", instance), ("vector", vector)):
        metrics = record_video(agent, env, tmp_path / f"{name}.gif", 1, seed=7)
        assert metrics == expected, name
    assert instance.unwrapped.state is None  # a copy was played, not the instance
    with pytest.raises(TypeError, match="render_mode=None.*rgb_array"):
        record_video(agent, gym.make("CartPole-v1"), tmp_path / "blind.gif", 1)
    with pytest.raises(TypeError, match="render_mode=None.*rgb_array"):
        record_video(agent, gym.make_vec("CartPole-v1", 2, vectorization_mode="sync"), tmp_path / "blind.gif", 1)
    assert not (tmp_path / "blind.gif").exists()


@pytest.mark.timeout(120)
def test_a_recording_process_stops_on_sigterm(tmp_path: Path) -> None:
    """SDL's own SIGTERM handler kept a recording going after a kill (pygame draws classic-control frames)."""
    import signal
    import subprocess
    import sys
    import time

    script = ("from rlcore.evaluation import record_video\n"
              f"record_video(lambda obs: 0, 'CartPole-v1', {str(tmp_path / 'long.gif')!r}, 10_000)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(6)  # imports, then recording
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=15) == -signal.SIGTERM
    finally:
        process.kill()
