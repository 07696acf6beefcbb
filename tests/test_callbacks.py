"""Callbacks: every hook is called at its point of the loop, a callback can stop training and log its own scalars,
with worker processes and on resumed runs; the built-in callbacks do what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runs import run_until_killed

import rlcore
from rlcore.callbacks import Callback, RecordVideo, StopOnNoImprovement
from rlcore.resume import RunFinishedError
from rlcore.trainer import TrainConfig, Trainer

SMALL_DQN = {"net_arch": [16], "learning_starts": 100, "train_freq": 4, "gradient_steps": 1, "batch_size": 16,
             "target_update_interval": 100, "buffer_size": 2000}


def config(tmp_path: Path, **overrides) -> TrainConfig:
    settings = {"total_env_steps": 1200, "seed": 1, "eval_freq": 400, "eval_episodes": 2, "checkpoint_freq": 300,
                "log_dir": str(tmp_path), "progress_bar": False, "log_interval": 200, "device": "cpu"}
    return TrainConfig(**{**settings, **overrides})


class Recorder(Callback):
    """Records every call, and logs a custom scalar (the iteration count) after each iteration."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.checkpoints: list[Path] = []
        self.iterations = 0

    def on_training_start(self, trainer: Trainer) -> None:
        self.calls.append(("start", trainer.env_steps))

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.iterations += 1
        self.calls.append(("iteration", trainer.env_steps))
        trainer.log_scalars({"custom/iterations": float(self.iterations)})

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        assert "eval/mean_reward" in metrics
        self.calls.append(("evaluation", trainer.env_steps))

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        assert (path / "meta.json").exists()
        self.checkpoints.append(path)
        self.calls.append(("checkpoint", trainer.env_steps))

    def on_training_end(self, trainer: Trainer) -> None:
        self.calls.append(("end", trainer.env_steps))

    def kinds(self, kind: str) -> list[int]:
        return [steps for name, steps in self.calls if name == kind]


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_every_hook_is_called_at_its_point_and_custom_scalars_reach_tensorboard(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = Trainer("dqn", "CartPole-v1", config(tmp_path), SMALL_DQN, callbacks=[recorder])
    trainer.run()
    assert recorder.calls[0] == ("start", 0) and recorder.calls[-1] == ("end", 1200)
    assert recorder.kinds("start") == [0] and recorder.kinds("end") == [1200]
    assert recorder.kinds("iteration") == list(range(4, 1201, 4))  # one per train_freq vector steps
    assert recorder.kinds("evaluation") == [h["env_steps"] for h in trainer.history] == [400, 800, 1200]
    assert recorder.kinds("checkpoint") == [300, 600, 900, 1200, 1200]  # every 300, then the final one
    logged = scalars(trainer.run_dir, "custom/iterations")
    assert logged[-1] == (1200, 300.0) and len(logged) == 300


class StopAtSecondEvaluation(Callback):
    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        return len(trainer.history) < 2


def test_a_callback_stops_training_and_the_run_finishes_normally(tmp_path: Path) -> None:
    trainer = Trainer("dqn", "CartPole-v1", config(tmp_path, total_env_steps=4000), SMALL_DQN,
                      callbacks=[StopAtSecondEvaluation()])
    trainer.run()
    assert trainer.env_steps == 800 and len(trainer.history) == 2
    assert (trainer.run_dir / "final" / "meta.json").exists()


class StopAfterIterations(Callback):
    def __init__(self, iterations: int) -> None:
        self.left = iterations

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        self.left -= 1
        return self.left > 0


def test_on_iteration_returning_false_stops_training(tmp_path: Path) -> None:
    agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=50_000, n_steps=32, num_envs=2, eval_freq=0,
                         log_dir=str(tmp_path), progress_bar=False, callbacks=[StopAfterIterations(3)])
    assert agent.algo.updates > 0
    assert len(list(tmp_path.rglob("final"))) == 1
    single = rlcore.train("ppo", "CartPole-v1", total_env_steps=50_000, n_steps=32, num_envs=2, eval_freq=0,
                          log_dir=None, progress_bar=False, callbacks=StopAfterIterations(3))  # one, not a list
    assert single.algo.env_steps == 3 * 64
    with pytest.raises(TypeError, match="callbacks must be rlcore.callbacks.Callback instances, got 3"):
        rlcore.train("ppo", "CartPole-v1", total_env_steps=64, log_dir=None, callbacks=[3])


class StopByStatistics(Callback):
    """Answers with a numpy bool computed from statistics, as stop rules often do."""

    def on_iteration(self, trainer: rlcore.Trainer, metrics: dict[str, float]) -> object:
        return np.mean([trainer.env_steps]) < 128


def test_a_numpy_false_from_a_callback_stops_training() -> None:
    """`np.False_ is not False`: the stop request was ignored and the run trained to its end."""
    agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=4_096, n_steps=32, num_envs=2, eval_freq=0,
                         log_dir=None, progress_bar=False, callbacks=[StopByStatistics()])
    assert agent.algo.env_steps == 128


def test_callbacks_run_with_worker_processes(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = Trainer("dqn", "CartPole-v1", config(tmp_path, num_workers=2, eval_freq=600, checkpoint_freq=0),
                      SMALL_DQN, callbacks=[recorder, StopAtSecondEvaluation()])
    trainer.run()
    assert recorder.kinds("start") == [0] and len(recorder.kinds("end")) == 1
    assert len(recorder.kinds("evaluation")) == 2 and trainer.env_steps < 1200 + 2 * 50
    assert recorder.iterations > 0
    assert scalars(trainer.run_dir, "custom/iterations")[-1][1] == float(recorder.iterations)


def first_stop(rewards: list[float], patience: int, first_checked: int) -> int | None:
    """The index of the first evaluation from ``first_checked`` on after which more than ``patience`` evaluations in
    a row brought no new best (counting from the start of the run)."""
    for index in range(first_checked, len(rewards)):
        best_at = max(range(index + 1), key=lambda i: (rewards[i], -i))  # the first time the best was reached
        if index - best_at > patience:
            return index
    return None


def test_callbacks_run_on_a_resumed_run_and_stop_on_no_improvement_counts_across_the_resume(tmp_path: Path) -> None:
    first = Trainer("dqn", "CartPole-v1", config(tmp_path, total_env_steps=2400, eval_freq=300), SMALL_DQN)
    run_until_killed(first, 900)
    assert len(first.history) == 3
    recorder = Recorder()
    patience = 1
    resumed = Trainer.resume(first.run_dir, callbacks=[recorder, StopOnNoImprovement(patience)])
    resumed.run()
    rewards = [h["eval/mean_reward"] for h in resumed.history]
    assert recorder.kinds("start") == [900]
    stop = first_stop(rewards, patience, first_checked=3)  # the evaluations before the resume count too
    if stop is None:
        assert resumed.env_steps == 2400
    else:
        assert len(rewards) == stop + 1 and resumed.env_steps == 300 * (stop + 1)
    assert recorder.kinds("evaluation") == [h["env_steps"] for h in resumed.history[3:]]
    assert scalars(resumed.run_dir, "custom/iterations")[0][0] > 900  # logged by the resumed session


@pytest.mark.parametrize("rewards, patience, stops", [
    ([1, 2, 3], 0, False),
    ([1, 2, 2], 0, True),
    ([1, 2, 2, 2], 1, True),
    ([1, 2, 2, 3], 1, False),
    ([5, 1, 1, 1, 1], 3, True),
    ([5, 1, 1, 1], 3, False),
])
def test_stop_on_no_improvement_rule(rewards: list[float], patience: int, stops: bool) -> None:
    rule = StopOnNoImprovement(patience)
    assert (rule.evaluations_without_improvement(rewards) > patience) is stops


def test_record_video_writes_a_video_every_k_env_steps_and_at_the_end(tmp_path: Path) -> None:
    pytest.importorskip("imageio")
    recorder = RecordVideo(every_env_steps=300, video_format="gif")
    trainer = Trainer("dqn", "CartPole-v1", config(tmp_path, total_env_steps=600, eval_freq=0, checkpoint_freq=0),
                      SMALL_DQN, callbacks=[recorder])
    trainer.run()
    names = [path.name for path in recorder.written]
    assert names == ["step300.gif", "step600.gif"]  # the end of training was just recorded
    assert all(path.stat().st_size > 1000 for path in recorder.written)
    assert scalars(trainer.run_dir, "video/mean_reward")


def test_callbacks_must_be_callback_instances() -> None:
    with pytest.raises(TypeError, match="Callback instances"):
        Trainer("dqn", "CartPole-v1", TrainConfig(log_dir=None), SMALL_DQN, callbacks=[lambda trainer: None])


def test_record_video_uses_the_runs_wrappers(tmp_path: Path) -> None:
    """The video plays the env evaluation plays: with the run's reward and observation wrappers (a frame stack
    made predict() refuse the unstacked observation)."""
    import gymnasium as gym

    pytest.importorskip("imageio")
    wrappers = [lambda env: gym.wrappers.FrameStackObservation(env, 2),
                lambda env: gym.wrappers.TransformReward(env, lambda reward: 1000.0)]
    recorder = RecordVideo(every_env_steps=10_000, video_format="gif")
    trainer = Trainer("dqn", "CartPole-v1", config(tmp_path, total_env_steps=300, eval_freq=300, checkpoint_freq=0),
                      SMALL_DQN, callbacks=[recorder], wrappers=wrappers)
    trainer.run()
    assert [path.name for path in recorder.written] == ["step300.gif"]
    (_, video), = scalars(trainer.run_dir, "video/mean_reward")
    (_, evaluation), = scalars(trainer.run_dir, "eval/mean_reward")
    assert video >= 8000 and evaluation >= 8000  # every step pays 1000 in both


@pytest.mark.parametrize("kind", ["instance", "vector"])
def test_record_video_of_a_run_on_an_env_instance_or_a_vector_env(kind: str, tmp_path: Path) -> None:
    import gymnasium as gym

    pytest.importorskip("imageio")
    env = (gym.make("CartPole-v1", render_mode="rgb_array") if kind == "instance" else
           gym.make_vec("CartPole-v1", 2, vectorization_mode="sync", render_mode="rgb_array"))
    recorder = RecordVideo(every_env_steps=10_000, video_format="gif")
    trainer = Trainer("dqn", env, config(tmp_path, total_env_steps=300, eval_freq=0, checkpoint_freq=0), SMALL_DQN,
                      callbacks=[recorder])
    trainer.run()
    assert [path.name for path in recorder.written] == [f"step{trainer.env_steps}.gif"]
    assert recorder.written[0].stat().st_size > 1000


def test_a_failed_recording_warns_once_and_the_run_finishes(tmp_path: Path, caplog) -> None:
    """An env instance made without rgb_array frames gives no video: one warning naming why, and the run ends
    normally with its agent (the end-of-training recording came after final/ was written)."""
    import gymnasium as gym

    pytest.importorskip("imageio")
    recorder = RecordVideo(every_env_steps=100, video_format="gif")
    with caplog.at_level("WARNING", logger="rlcore.callbacks"):
        agent = rlcore.train("dqn", gym.make("CartPole-v1"), total_env_steps=300, log_dir=str(tmp_path),
                             progress_bar=False, eval_freq=0, callbacks=[recorder], seed=1, **SMALL_DQN)
    assert agent.algo.env_steps == 300 and recorder.written == []
    warned = [record.getMessage() for record in caplog.records if "RecordVideo" in record.getMessage()]
    assert len(warned) == 1 and "render_mode=None" in warned[0] and "training goes on" in warned[0]


def test_record_video_of_a_memory_policy(tmp_path: Path) -> None:
    pytest.importorskip("imageio")
    recorder = RecordVideo(every_env_steps=10_000, video_format="gif")
    trainer = Trainer("ppo", "rlcore/CartPoleNoVelocity-v0",
                      config(tmp_path, total_env_steps=64, eval_freq=0, checkpoint_freq=0),
                      {"memory": "lstm", "n_steps": 16, "sequence_length": 4, "memory_size": 8, "net_arch": [8]},
                      callbacks=[recorder])
    trainer.run()
    assert [path.name for path in recorder.written] == ["step64.gif"]
    assert scalars(trainer.run_dir, "video/mean_reward")


def test_record_video_without_a_folder_warns_at_the_start(tmp_path: Path, caplog) -> None:
    pytest.importorskip("imageio")
    silent = RecordVideo(every_env_steps=100, video_format="gif")
    with caplog.at_level("WARNING", logger="rlcore.callbacks"):
        Trainer("dqn", "CartPole-v1", config(tmp_path, log_dir=None, total_env_steps=300, eval_freq=0), SMALL_DQN,
                callbacks=[silent]).run()
    warned = [record.getMessage() for record in caplog.records if "RecordVideo" in record.getMessage()]
    assert len(warned) == 1 and "folder=" in warned[0] and silent.written == []
    given = RecordVideo(every_env_steps=10_000, video_format="gif", folder=tmp_path / "videos")
    Trainer("dqn", "CartPole-v1", config(tmp_path, log_dir=None, total_env_steps=300, eval_freq=0), SMALL_DQN,
            callbacks=[given]).run()
    assert [path.name for path in given.written] == ["step300.gif"] and given.written[0].parent == tmp_path / "videos"


def test_record_video_refuses_a_bad_format_or_folder_at_once(tmp_path: Path) -> None:
    pytest.importorskip("imageio")
    with pytest.raises(ValueError, match="video_format"):
        RecordVideo(100, video_format="avi")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        RecordVideo(100, video_format="gif", folder=tmp_path / "file")


def test_a_run_a_callback_stopped_resumes_only_when_its_total_is_named_again(tmp_path: Path) -> None:
    class StopAtFirstEvaluation(Callback):
        def on_evaluation(self, trainer, metrics):  # noqa: ANN001, ANN201
            return False

    first = Trainer("dqn", "CartPole-v1", config(tmp_path, total_env_steps=2400, eval_freq=300), SMALL_DQN,
                    callbacks=[StopAtFirstEvaluation()])
    first.run()
    assert first.env_steps == 300
    with pytest.raises(RunFinishedError, match=r"a callback stopped it .* before total_env_steps=2400. To train it "
                                               r"on anyway, resume it naming the total"):
        Trainer.resume(first.run_dir)
    resumed = Trainer.resume(first.run_dir, total_env_steps=600)
    resumed.run()
    assert resumed.env_steps == 600 and len(resumed.history) == 2
