"""``rlcore eval --video``: episodes recorded from render_mode="rgb_array" frames into a playable mp4 or gif."""

import json
from pathlib import Path

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
