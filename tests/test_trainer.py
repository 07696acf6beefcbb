"""The training loop end to end: logs, checkpoints, exact resume after SIGKILL, save/load, the public API."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from runs import run_until_killed

import rlcore
from rlcore import cli
from rlcore.checkpoint import CheckpointError, load_checkpoint
from rlcore.collector import EpisodeStats, NonFiniteError
from rlcore.resume import RunFinishedError
from rlcore.trainer import TrainConfig, Trainer

SMALL_DQN = {"net_arch": [32, 32], "learning_starts": 200, "train_freq": 4, "gradient_steps": 2,
             "target_update_interval": 250, "buffer_size": 5000, "batch_size": 32}


def small_config(tmp_path: Path, **overrides) -> TrainConfig:
    settings = {"total_env_steps": 2000, "seed": 3, "eval_freq": 1000, "eval_episodes": 3, "checkpoint_freq": 500,
                "log_dir": str(tmp_path), "progress_bar": False, "log_interval": 250, "device": "cpu"}
    settings.update(overrides)
    return TrainConfig(**settings)


def params_of(trainer_or_agent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer_or_agent.algo.q_net.parameters()]


def test_episode_statistics_follow_every_finished_episode() -> None:
    """The window's means (read after every step, kept between episode ends) change with each way episodes end."""
    stats = EpisodeStats(2)
    assert stats.metrics() == {}
    stats.record(np.array([1.0, 2.0]), np.array([False, True]))
    assert stats.metrics() == {"rollout/ep_rew_mean": 2.0, "rollout/ep_len_mean": 1.0}
    stats.record(np.array([1.0, 5.0]), np.array([True, False]))
    assert stats.metrics() == {"rollout/ep_rew_mean": 2.0, "rollout/ep_len_mean": 1.5}
    stats.add_finished([8.0], [4])  # from a worker process
    assert stats.metrics() == {"rollout/ep_rew_mean": 4.0, "rollout/ep_len_mean": 7 / 3} and stats.episodes == 3
    state = stats.state_dict()
    fresh = EpisodeStats(2)
    fresh.metrics()
    fresh.load_state_dict(state)
    assert fresh.metrics() == stats.metrics()
    stats.metrics()["rollout/ep_rew_mean"] = 0.0  # a caller's copy
    assert stats.metrics()["rollout/ep_rew_mean"] == 4.0


def test_run_writes_tensorboard_tags_and_checkpoints(tmp_path: Path) -> None:
    trainer = Trainer("dqn", "CartPole-v1", small_config(tmp_path), SMALL_DQN)
    agent = trainer.run()
    run_dir = trainer.run_dir
    assert run_dir.parent.parent.name == "CartPole-v1" and run_dir.name.startswith("seed3-")
    for sub in ("checkpoint", "best", "final"):
        assert (run_dir / sub / "meta.json").exists(), sub
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "train/loss", "eval/mean_reward", "time/fps",
                "rollout/exploration_rate"):
        assert tag in tags, tag
    steps = [event.step for event in events.Scalars("eval/mean_reward")]
    assert steps == [1000, 2000]  # x axis = env steps
    assert json.loads((run_dir / "hparams.json").read_text())["algo_config"]["net_arch"] == [32, 32]
    assert agent.evaluate(2)["mean_reward"] > 0


def test_save_load_gives_identical_greedy_actions(tmp_path: Path) -> None:
    agent = Trainer("dqn", "CartPole-v1", small_config(tmp_path, eval_freq=0), SMALL_DQN).run()
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    observations = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    assert np.array_equal(agent.predict(observations), loaded.predict(observations))
    assert loaded.predict(observations[0]).shape == ()
    with pytest.raises(ValueError, match="shape"):
        loaded.predict(np.zeros(3, np.float32))
    with pytest.raises(CheckpointError, match="dqn"):
        rlcore.load(tmp_path / "agent", algo="q_learning")
    assert rlcore.load(tmp_path / "agent", algo="DQN").name == "dqn"  # algorithm names are case-insensitive
    with pytest.raises(ValueError, match=r"the evaluation env's observation space Box\(.*\(6,\), float32\) differs "
                                         r"from the agent's Box\(.*\(4,\), float32\); evaluate on the env it trained"):
        loaded.evaluate(2, env="Acrobot-v1")
    assert loaded.evaluate(2)["mean_ep_length"] > 0  # its own env


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    config = small_config(tmp_path / "a", total_env_steps=1600, checkpoint_freq=800, eval_freq=400)
    reference = Trainer("dqn", "CartPole-v1", config, SMALL_DQN)
    reference.run()

    first_half = Trainer("dqn", "CartPole-v1", small_config(tmp_path / "b", total_env_steps=1600,
                                                             checkpoint_freq=800, eval_freq=400), SMALL_DQN)
    # run only until the first checkpoint, as if killed right after it
    run_until_killed(first_half, 800)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(first_half.run_dir)
    assert resumed.env_steps == 800
    resumed.run()
    for a, b in zip(params_of(reference), params_of(resumed)):
        assert torch.equal(a, b)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]


def test_time_between_a_kill_and_its_resume_is_not_counted_as_training(tmp_path: Path) -> None:
    """The run's training seconds (time/elapsed_s) continue across a resume, and compare's wall time reads them,
    not the event files' clock, which runs on while the run is down."""
    from rlcore.compare import load_run

    idle = 3.0
    config = small_config(tmp_path, total_env_steps=1600, checkpoint_freq=800, eval_freq=400)
    first_half = run_until_killed(Trainer("dqn", "CartPole-v1", config, SMALL_DQN), 800)
    time.sleep(idle)
    Trainer.resume(first_half.run_dir).run()
    curve = load_run(first_half.run_dir, "eval/mean_reward")
    assert curve.steps.tolist() == [400, 800, 1200, 1600]
    assert np.all(np.diff(curve.wall_times) > 0)
    assert curve.wall_times[2] - curve.wall_times[1] < idle  # 400 env steps of a small DQN: well under a second
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(first_half.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    clock = {event.step: event.wall_time for event in events.Scalars("eval/mean_reward")}
    assert clock[1200] - clock[800] > idle  # what the event files' clock says: the gap is there to be left out


@pytest.mark.timeout(180)
def test_sigkilled_run_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    """A CLI run killed with SIGKILL, resumed with --resume, ends where an uninterrupted run ends."""
    settings = ["--steps", "6000", "--seed", "5", "--no-progress", "--set", "checkpoint_freq=500",
                "--set", "eval_freq=0"] + [arg for key, value in SMALL_DQN.items()
                                          for arg in ("--set", f"{key}={json.dumps(value)}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rlcore.cli", "train", "dqn", "CartPole-v1"]
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    process = subprocess.Popen(command + ["--run-dir", str(killed_dir)] + settings, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed_dir / "checkpoint" / "meta.json").exists():
        assert time.monotonic() < deadline and process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, meta = load_checkpoint(killed_dir / "checkpoint")
    assert meta["env_steps"] < 6000, "the run finished before it was killed; nothing was tested"
    subprocess.run(command[:3] + ["train", "--resume", str(killed_dir), "--no-progress"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(command + ["--run-dir", str(full_dir)] + settings, env=env, check=True, stdout=subprocess.DEVNULL)
    resumed_state, resumed_meta = load_checkpoint(killed_dir / "checkpoint")
    full_state, full_meta = load_checkpoint(full_dir / "checkpoint")
    assert resumed_meta["env_steps"] == full_meta["env_steps"] >= 6000
    for name, tensor in full_state["algo"]["q_net"].items():
        assert torch.equal(tensor, resumed_state["algo"]["q_net"][name]), name


@pytest.fixture
def python_sigint() -> Any:
    """Python's own SIGINT handler for the test, whatever the process inherited (a shell starts background jobs with
    SIGINT ignored) or a library left (Ray Tune does)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def sigint_as_in_a_terminal() -> None:
    """preexec_fn of a child that must take SIGINT as a terminal's Ctrl-C (it may inherit SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class CtrlC(rlcore.Callback):
    """Sends this process SIGINT (``presses`` times) at the first iteration that reaches ``env_steps``."""

    def __init__(self, env_steps: int, presses: int = 1) -> None:
        self.env_steps, self.presses, self.sent_at = env_steps, presses, None

    def on_iteration(self, trainer, metrics):
        if self.sent_at is None and trainer.env_steps >= self.env_steps:
            self.sent_at = trainer.env_steps
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
        return True


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint_that_resumes_exactly(tmp_path: Path, caplog,
                                                                                 python_sigint) -> None:
    """The first Ctrl-C lets the iteration end, checkpoints it (between the periodic checkpoints, none of which came
    due) and raises KeyboardInterrupt; the run resumes from there to an uninterrupted run's parameters."""
    settings = {"total_env_steps": 1600, "checkpoint_freq": 5000, "eval_freq": 400}
    reference = Trainer("dqn", "CartPole-v1", small_config(tmp_path / "a", **settings), SMALL_DQN)
    reference.run()
    ctrl_c = CtrlC(700)
    interrupted = Trainer("dqn", "CartPole-v1", small_config(tmp_path / "b", **settings), SMALL_DQN,
                          callbacks=[ctrl_c])
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler it found is back
    assert ctrl_c.sent_at is not None and 700 <= ctrl_c.sent_at < 1600
    _, meta = load_checkpoint(interrupted.run_dir / "checkpoint")
    assert meta["env_steps"] == ctrl_c.sent_at
    assert f"interrupted at {ctrl_c.sent_at} env steps" in caplog.text and "--resume" in caplog.text
    assert not (interrupted.run_dir / "final").exists()
    resumed = Trainer.resume(interrupted.run_dir)
    assert resumed.env_steps == ctrl_c.sent_at
    resumed.run()
    for a, b in zip(params_of(reference), params_of(resumed)):
        assert torch.equal(a, b)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]


@pytest.mark.parametrize("case", ["second press", "no run folder"])
def test_ctrl_c_interrupts_at_once_on_a_second_press_or_without_a_run_folder(tmp_path: Path, case: str,
                                                                             python_sigint) -> None:
    """A second Ctrl-C raises in the middle of the iteration (no checkpoint); a run that writes nothing has nothing
    to save, so its first Ctrl-C raises at once."""
    ctrl_c = CtrlC(300, presses=2 if case == "second press" else 1)
    config = small_config(tmp_path, total_env_steps=1600, checkpoint_freq=5000, eval_freq=0,
                          **({"log_dir": None} if case == "no run folder" else {}))
    trainer = Trainer("dqn", "CartPole-v1", config, SMALL_DQN, callbacks=[ctrl_c])
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert ctrl_c.sent_at is not None and trainer.env_steps == ctrl_c.sent_at
    assert not list(tmp_path.rglob("checkpoint"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_the_last_iteration_lets_the_run_finish(tmp_path: Path, python_sigint) -> None:
    """Nothing is left to resume after the last iteration: the run finishes (final/, no KeyboardInterrupt); it used to
    stop with a checkpoint that resume then refused as finished."""
    ctrl_c = CtrlC(1600)
    trainer = Trainer("dqn", "CartPole-v1", small_config(tmp_path, total_env_steps=1600, checkpoint_freq=5000,
                                                         eval_freq=0), SMALL_DQN, callbacks=[ctrl_c])
    trainer.run()
    assert ctrl_c.sent_at is not None and (trainer.run_dir / "final").is_dir()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_ctrl_c_of_the_cli_saves_a_checkpoint_and_exits_130(tmp_path: Path, vectorization: str) -> None:
    """`rlcore train` interrupted by SIGINT to its process group (Ctrl-C in a terminal reaches async sub-env
    processes too, which used to die, so the run crashed without its checkpoint) leaves a checkpoint, names how to
    resume it and exits with 130."""
    run_dir = tmp_path / "run"
    settings = ["--steps", "200000", "--seed", "5", "--no-progress", "--set", "eval_freq=0", "--num-envs", "2",
                "--set", f"vectorization={vectorization}"] + [
        arg for key, value in SMALL_DQN.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    process = subprocess.Popen([sys.executable, "-m", "rlcore.cli", "train", "dqn", "CartPole-v1", "--run-dir",
                                str(run_dir)] + settings, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_as_in_a_terminal, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("events.out.tfevents.*")):  # written once the loop runs
        assert time.monotonic() < deadline and process.poll() is None, "the run ended before it was interrupted"
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    _, meta = load_checkpoint(run_dir / "checkpoint")
    assert 0 < meta["env_steps"] < 200_000
    assert f"interrupted at {meta['env_steps']} env steps" in stderr and f"--resume {run_dir}" in stderr


def test_train_api_uses_the_preset_and_overrides(tmp_path: Path) -> None:
    agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=600, eval_freq=0, progress_bar=False,
                         log_dir=str(tmp_path), learning_starts=100, gradient_steps=4, train_freq=64, seed=1)
    config = agent.algo.config
    assert config.net_arch == (256, 256) and config.learning_rate == pytest.approx(2.3e-3)  # preset
    assert config.gradient_steps == 4 and config.train_freq == 64  # overrides
    with pytest.raises(ValueError, match="unknown setting 'learning_rat'"):
        rlcore.train("dqn", "CartPole-v1", learning_rat=1e-3)


def test_train_accepts_env_classes_and_factories(tmp_path: Path) -> None:
    from envs.corridor import CorridorEnv

    for env in (CorridorEnv, lambda: CorridorEnv(length=4)):
        agent = rlcore.train("dqn", env, total_env_steps=300, eval_freq=0, progress_bar=False,
                             log_dir=str(tmp_path), learning_starts=50, net_arch=[16])
        assert agent.predict(0) in (0, 1)


def test_env_kwargs_in_the_config_reach_every_env_and_explicit_ones_win(tmp_path: Path) -> None:
    from envs.corridor import CorridorEnv

    config = TrainConfig(total_env_steps=200, eval_freq=100, eval_episodes=2, progress_bar=False, log_dir=None,
                         env_kwargs={"length": 4})
    trainer = Trainer("dqn", CorridorEnv, config, {"learning_starts": 50, "net_arch": [16]})
    assert trainer.env_kwargs == {"length": 4}
    assert trainer.envs.envs[0].unwrapped.length == 4
    agent = trainer.run()
    assert agent.env_kwargs == {"length": 4}  # evaluation and the saved agent build the same env
    explicit = Trainer("dqn", CorridorEnv, config, {"learning_starts": 50, "net_arch": [16]}, env_kwargs={"length": 6})
    assert explicit.env_kwargs == {"length": 6} and explicit.envs.envs[0].unwrapped.length == 6
    with pytest.raises(ValueError, match="env_kwargs must be a dict"):
        TrainConfig(env_kwargs=[("length", 4)])


class NaNRewardEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), float("nan") if self.t == 3 else 0.0, False, False, {}


def test_nan_reward_names_the_step() -> None:
    with pytest.raises(NonFiniteError, match="non-finite reward at env step 3"):
        rlcore.train("dqn", NaNRewardEnv, total_env_steps=100, log_dir=None, progress_bar=False, eval_freq=0)


def test_unsupported_env_names_the_space_and_fitting_algorithms() -> None:
    with pytest.raises(TypeError, match=r"dqn cannot handle the action space Box.*fit this env"):
        rlcore.train("dqn", "Pendulum-v1", total_env_steps=100, log_dir=None, progress_bar=False)


def test_invalid_train_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        TrainConfig(num_envs=0)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")


def test_cli_train_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "rlcore.cli", "train", "dqn", "CartPole-v1", "--steps", "600",
                    "--run-dir", str(run_dir), "--set", "learning_starts=100", "--set", "eval_freq=300",
                    "--set", "gradient_steps=2"], env=env, check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "rlcore.cli", "eval", str(run_dir), "--episodes", "2"],
                            env=env, check=True, capture_output=True, text=True)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["algo"] == "dqn" and metrics["mean_reward"] > 0
    bad = subprocess.run([sys.executable, "-m", "rlcore.cli", "train", "dqn", "CartPole-v1", "--set", "gamma=2"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "gamma must be in [0, 1]" in bad.stderr
    for args, message in ((["--resume", str(run_dir), "--seed", "5"], "continues .*run with its own seed"),
                          (["ppo", "--resume", str(run_dir), "--steps", "1200"],
                           "continues a dqn run, not ppo; drop the algorithm")):
        assert cli.main(["train", *args]) == 2
        assert re.search(message, capsys.readouterr().err)


def test_async_vectorization_trains_and_resumes_exactly(tmp_path: Path) -> None:
    config = small_config(tmp_path, total_env_steps=800, num_envs=2, vectorization="async", checkpoint_freq=400,
                          eval_freq=0)
    reference = Trainer("dqn", "CartPole-v1", config, SMALL_DQN)
    reference.run()
    partial = Trainer("dqn", "CartPole-v1", small_config(tmp_path / "b", total_env_steps=800, num_envs=2,
                                                         vectorization="async", checkpoint_freq=400, eval_freq=0),
                      SMALL_DQN)
    run_until_killed(partial, 400)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(partial.run_dir)
    resumed.run()
    for a, b in zip(params_of(reference), params_of(resumed)):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dqn_trains_on_cuda_with_storage_on_the_device(tmp_path: Path) -> None:
    trainer = Trainer("dqn", "CartPole-v1", small_config(tmp_path, device="cuda", eval_freq=0),
                      {**SMALL_DQN, "replay_device": "device"})
    agent = trainer.run()
    assert trainer.algo.replay.storage["obs"].device.type == "cuda"
    assert next(agent.algo.q_net.parameters()).device.type == "cuda"


def test_numpy_values_in_settings_are_taken_as_the_numbers_they_hold(tmp_path: Path) -> None:
    """A seed from np.arange, a float32 learning rate, an array net_arch and numpy env_kwargs train and are recorded
    as plain JSON numbers (a float32 env kwarg used to fail the first checkpoint, at the end of the run); log_dir
    may be a Path."""
    agent = rlcore.train("ppo", "Pendulum-v1", seed=np.arange(3)[2], learning_rate=np.float32(1e-3),
                         net_arch=np.array([16, 16]), env_kwargs={"g": np.float32(9.5)}, total_env_steps=64,
                         n_steps=32, batch_size=32, eval_freq=0, progress_bar=False, log_dir=tmp_path)
    config = agent.algo.config
    assert config.net_arch == (16, 16) and config.learning_rate == pytest.approx(1e-3)
    assert agent.run_dir.parent.parent.parent == tmp_path  # log_dir given as a Path
    _, meta = load_checkpoint(agent.run_dir / "checkpoint")
    assert meta["train_config"]["seed"] == 2 and meta["env_kwargs"] == {"g": pytest.approx(9.5)}


def test_env_kwargs_that_json_cannot_record_are_refused_before_the_run(tmp_path: Path) -> None:
    def factory(goal=None):
        return gym.make("CartPole-v1")

    with pytest.raises(TypeError, match=r"env_kwargs\['goal'\] = <object .*> cannot be recorded in the run's "
                                        r"checkpoints .*log_dir=None for a run that writes nothing"):
        rlcore.train("dqn", factory, env_kwargs={"goal": object()}, total_env_steps=100, progress_bar=False,
                     log_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # refused before the run folder was made
    agent = rlcore.train("dqn", factory, env_kwargs={"goal": object()}, total_env_steps=100, learning_starts=50,
                         progress_bar=False, eval_freq=0, log_dir=None)
    assert agent.predict(np.zeros(4, np.float32)) in (0, 1)


def test_trainer_resume_checks_and_converts_its_settings_as_the_cli_does(tmp_path: Path) -> None:
    rlcore.train("ppo", "CartPole-v1", total_env_steps=512, n_steps=32, eval_freq=0, progress_bar=False,
                 run_dir=tmp_path / "run")
    for settings, message in (({"learning_rate": 1e-4}, "resuming takes only training-loop settings .*'learning_rate' "
                                                        "is not one"),
                              ({"total_env_step": 4096}, "did you mean 'total_env_steps'"),
                              ({"seed": 5}, "seed=5: resuming continues the run with its own seed"),
                              ({"env_kwargs": {"sutton_barto_reward": True}}, "env_kwargs=.*: resuming keeps the "
                                                                              "run's own"),
                              ({"preset": "gpu"}, "preset='gpu': resuming keeps the run's own"),
                              ({"num_envs": 2}, "num_envs=2: the run in .* collects with num_envs=8")):
        with pytest.raises(ValueError, match=message):
            Trainer.resume(tmp_path / "run", **settings)
    assert Trainer.resume(tmp_path / "run", total_env_steps="1024", num_envs=8).config.total_env_steps == 1024


def test_vector_wrappers_that_evaluation_would_leave_out_are_refused_by_name() -> None:
    """Evaluation's fresh envs come from the vector env's sub-env factory: a reward wrapper above it used to be left
    out silently (the best agent chosen on another scale); RecordEpisodeStatistics only adds to info and passes."""
    def scaled():
        return gym.wrappers.vector.TransformReward(gym.make_vec("CartPole-v1", 2, vectorization_mode="sync"),
                                                   lambda reward: 100 * reward)

    settings = {"total_env_steps": 128, "n_steps": 32, "batch_size": 32, "progress_bar": False, "log_dir": None}
    with pytest.raises(ValueError, match=r"without its vector wrappers \['TransformReward'\], so it would score "
                                         r"another task; .*or pass eval_freq=0"):
        rlcore.train("ppo", scaled(), eval_freq=64, **settings)
    agent = rlcore.train("ppo", scaled(), eval_freq=0, **settings)
    assert agent.algo.updates > 0
    counted = gym.wrappers.vector.RecordEpisodeStatistics(gym.make_vec("CartPole-v1", 2, vectorization_mode="sync"))
    assert rlcore.train("ppo", counted, eval_freq=64, eval_episodes=2, **settings).evaluate(2)["mean_reward"] > 0


class Continuing(gym.Env):
    """A task without episode ends (no terminal state, no time limit) and wide Box actions."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (64,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), float(-np.square(action).mean()), False, False, {}


def test_a_task_without_episode_ends_checkpoints_in_bounded_metadata_and_resumes(tmp_path: Path, monkeypatch,
                                                                                 caplog) -> None:
    """The current episode's actions are kept among the tensors, not in meta.json (whose size limit a continuing
    task reached: the run failed at its last checkpoint and lost its final agent); past MAX_REPLAY_STEPS an episode
    is no longer replayed: the resumed run starts it anew and says so."""
    from rlcore.env import ReplayableEnv

    settings = {"total_env_steps": 1024, "n_steps": 256, "batch_size": 64, "n_epochs": 1, "checkpoint_freq": 512,
                "eval_freq": 0, "progress_bar": False}
    monkeypatch.setattr(ReplayableEnv, "MAX_REPLAY_STEPS", 10**6)
    agent = rlcore.train("ppo", Continuing, run_dir=tmp_path / "kept", **settings)
    meta_size = (agent.run_dir / "checkpoint" / "meta.json").stat().st_size
    assert meta_size < 40_000, meta_size  # 1024 steps of 64 floats were ~650 KB of JSON
    state, _ = load_checkpoint(agent.run_dir / "checkpoint")
    assert np.asarray(state["collector"]["envs"][0]["actions"]).shape == (1024, 64)
    resumed = Trainer.resume(agent.run_dir, env=Continuing, total_env_steps=1280)
    assert resumed.run().algo.updates > agent.algo.updates
    monkeypatch.setattr(ReplayableEnv, "MAX_REPLAY_STEPS", 300)
    cut = rlcore.train("ppo", Continuing, run_dir=tmp_path / "cut", **settings)
    Trainer.resume(cut.run_dir, env=Continuing, total_env_steps=1280).run()
    assert "longer than 300 steps when the checkpoint was written" in caplog.text


def test_diverged_training_stops_naming_the_loss_or_the_actions_and_keeps_a_finite_checkpoint(tmp_path: Path) -> None:
    """A NaN loss went unnoticed (NaN weights saved as final/), and a diverged policy's NaN actions were blamed on
    the env ("the environment returned a non-finite reward")."""
    from rlcore.collector import DivergedError

    with np.errstate(all="ignore"), pytest.raises(DivergedError, match=r"dqn's train/loss is nan at env step \d+: "
                                                                     r"training diverged; lower learning_rate.* \(the "
                                                                     r"last checkpoint in .* precedes it\)"):
        rlcore.train("dqn", "CartPole-v1", total_env_steps=3000, learning_rate=1e20, max_grad_norm=None,
                     learning_starts=300, checkpoint_freq=200, log_interval=10**6, eval_freq=0, progress_bar=False,
                     run_dir=tmp_path / "dqn")
    state, meta = load_checkpoint(tmp_path / "dqn" / "checkpoint")  # from before the first update; none after
    assert meta["env_steps"] < 400 and all(torch.isfinite(tensor).all() for tensor in state["algo"]["q_net"].values())
    assert not (tmp_path / "dqn" / "final").exists()
    trainer = Trainer("dqn", "CartPole-v1", small_config(tmp_path / "nan"), SMALL_DQN)  # one update can break the
    with torch.no_grad():  # weights while the loss it reported was finite
        next(trainer.algo.q_net.parameters()).fill_(float("nan"))
    with pytest.raises(DivergedError, match=r"dqn's q_net weights are not finite \(NaN or inf\) at env step 0"):
        trainer._save_checkpoint()
    trainer.source.close()
    with np.errstate(all="ignore"), pytest.raises(DivergedError, match=r"the policy gave non-finite actions \(NaN or "
                                                                     r"inf\) at env step \d+: its weights diverged"):
        rlcore.train("sac", "Pendulum-v1", total_env_steps=600, learning_starts=100, learning_rate=1e6, log_dir=None,
                     progress_bar=False, eval_freq=0)


def test_a_short_run_that_saves_nothing_still_refuses_to_return_diverged_weights() -> None:
    """Losses were checked at log intervals and weights before saves only: a run without a folder and shorter than
    log_interval returned an agent of NaN weights whose evaluation still gave numbers."""
    from rlcore.collector import DivergedError

    class BreakWeights(rlcore.Callback):
        def on_iteration(self, trainer, metrics):  # noqa: ANN001, ANN201  (as if an update had broken them)
            with torch.no_grad():
                next(trainer.algo.q_net.parameters()).fill_(float("nan"))

    with pytest.raises(DivergedError, match=r"dqn's q_net weights are not finite"):
        rlcore.train("dqn", "CartPole-v1", total_env_steps=200, log_dir=None, progress_bar=False, eval_freq=0,
                     log_interval=10**6, callbacks=[BreakWeights()])


@pytest.mark.parametrize(("settings", "message"), [
    ({"learning_rate": float("inf")}, r"learning_rate must be in \(0, inf\), got inf"),
    ({"log_std_init": float("inf")}, r"log_std_init must be a finite number, got inf"),
    ({"stop_at_reward": float("nan")}, r"stop_at_reward must be a finite number, got nan"),
    ({"stop_at_reward": 100.0, "eval_freq": 0}, r"stop_at_reward=100 stops at an evaluation's mean reward, and "
                                                r"eval_freq=0 runs none: set eval_freq > 0"),
    ({"seed": 2**64}, r"seed must be in \[0, 9223372036854775807\], got 18446744073709551616"),
])
def test_infinite_nan_or_unusable_settings_are_refused_by_name(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rlcore.train("ppo", "CartPole-v1", total_env_steps=64, log_dir=None, progress_bar=False, **settings)
    assert rlcore.train("ppo", "CartPole-v1", total_env_steps=64, num_envs=1, n_steps=32, batch_size=32,
                        max_grad_norm=float("inf"), log_dir=None, progress_bar=False).algo.updates > 0  # no clipping


class FailsAfter(gym.Env):
    """Steps fine, then (from its ``after``-th step) raises an error with a % in it or returns a list as info."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, mode: str = "raise", after: int = 150) -> None:
        self.mode, self.after, self.steps = mode, after, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.steps += 1
        if self.steps >= self.after and self.mode == "raise":
            raise RuntimeError("battery at 5% charge")
        info = [1, 2] if self.steps >= self.after else {}
        return np.zeros(4, np.float32), 1.0, False, self.steps % 20 == 0, info


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("mode", "error", "message"), [("raise", RuntimeError, "battery at 5% charge"),
                                                        ("list info", AttributeError, "'list' object")])
def test_an_async_sub_envs_error_surfaces_as_itself_without_hanging(mode: str, error: type, message: str) -> None:
    """gymnasium's async vector env lost an error with a % in its text (a TypeError from its own logging, then an
    EOFError from closing over dead pipes), and hung closing after a step whose info was not a dict."""
    with pytest.raises(error, match=re.escape(message)):
        rlcore.train("ppo", FailsAfter, env_kwargs={"mode": mode}, num_envs=2, vectorization="async", n_steps=64,
                     batch_size=64, total_env_steps=2000, eval_freq=0, log_dir=None, progress_bar=False,
                     check_env=False)


@pytest.mark.parametrize("settings", [{}, {"memory": "lstm", "n_steps": 16, "sequence_length": 8, "memory_size": 16}])
def test_a_run_starts_from_a_saved_agent_with_init_from(tmp_path: Path, settings: dict, caplog) -> None:
    """SB3's load-then-learn: the new run starts with the agent's networks (and its algorithm settings as the base),
    with its own number of envs (a memory policy's per-env state is the run's); another algorithm, env or network
    size is refused by name."""
    caplog.set_level("INFO")
    small = {"net_arch": [16], "n_steps": 32, "batch_size": 32, **settings}
    agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=128, num_envs=2, log_dir=None, progress_bar=False,
                         eval_freq=0, **small)
    saved = str(agent.save(tmp_path / "agent"))
    observations = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    class FirstActions(rlcore.Callback):
        def on_training_start(self, trainer):
            self.actions = trainer.agent().predict(observations)
            self.weights = [weight.detach().clone() for weight in trainer.algo.policy.parameters()]
            self.updates = trainer.algo.updates

    first = FirstActions()
    started = rlcore.train("ppo", "CartPole-v1", init_from=saved, total_env_steps=48, num_envs=3, n_steps=16,
                           batch_size=48, log_dir=None, progress_bar=False, eval_freq=0, callbacks=first)
    assert started.algo.config.net_arch == (16,)  # the agent's settings, not the preset's [64, 64]
    assert f"settings: ppo's from the agent in {saved}, the loop's from rlcore/presets/ppo.yaml" in caplog.text
    assert "live on meta" not in caplog.text  # the checkpoint's layout check builds on the meta device, unlogged
    assert all(torch.equal(a, b) for a, b in zip(agent.algo.policy.parameters(), first.weights, strict=True))
    assert agent.algo.updates > 0 and first.updates == 0  # the run's own counters (and optimizer, generator)
    before, after = agent.predict(observations), first.actions
    if settings:
        before, after = before[0], after[0]
    assert np.array_equal(before, after)
    for algo, env, extra, message in (("a2c", "CartPole-v1", {}, "saved by algo 'ppo', not 'a2c'"),
                                      ("ppo", "Acrobot-v1", {}, "init_from .*: the agent's observation space Box"),
                                      ("ppo", "CartPole-v1", {"net_arch": [8]}, "networks do not fit this run's")):
        with pytest.raises((ValueError, CheckpointError), match=message):
            rlcore.train(algo, env, init_from=saved, total_env_steps=64, log_dir=None, progress_bar=False,
                         eval_freq=0, **extra)


@pytest.mark.parametrize("algo", ["q_learning", "sarsa"])
def test_a_tabular_run_starts_from_a_saved_agents_q_table(tmp_path: Path, algo: str) -> None:
    agent = rlcore.train(algo, "FrozenLake-v1", total_env_steps=2_000, log_dir=None, progress_bar=False,
                         eval_freq=0)
    saved = str(agent.save(tmp_path / "agent"))
    assert agent.algo.q_table.abs().sum() > 0
    started = Trainer(algo, "FrozenLake-v1", TrainConfig(init_from=saved, total_env_steps=100, log_dir=None,
                                                         progress_bar=False, eval_freq=0))
    assert torch.equal(started.algo.q_table, agent.algo.q_table) and started.algo.updates == 0
    with pytest.raises(ValueError, match="mcts has no networks to start from"):
        mcts = rlcore.train("mcts", "FrozenLake-v1", total_env_steps=10, log_dir=None, progress_bar=False,
                            eval_freq=0, num_simulations=4)
        Trainer("mcts", "FrozenLake-v1", TrainConfig(init_from=str(mcts.save(tmp_path / "mcts")), log_dir=None,
                                                     progress_bar=False))


def test_paths_starting_with_a_tilde_are_in_the_users_home_folder(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=64, num_envs=1, n_steps=32, batch_size=32,
                         log_dir="~/runs", progress_bar=False, checkpoint_freq=32)
    run_dir = next((home / "runs").glob("CartPole-v1/ppo/seed0-*"))
    assert (run_dir / "final").is_dir() and not (tmp_path / "~").exists()
    agent.save("~/agent")
    assert (home / "agent").is_dir()
    loaded = rlcore.load("~/agent")
    obs = np.zeros((1, 4), np.float32)
    assert np.array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    continued = rlcore.train("ppo", "CartPole-v1", total_env_steps=128, init_from="~/agent", log_dir=None,
                             progress_bar=False, num_envs=1, n_steps=32, batch_size=32)
    assert continued.algo.env_steps == 128
    with pytest.raises(RunFinishedError):
        Trainer.resume("~/" + str(run_dir.relative_to(home)))
    assert not (tmp_path / "~").exists()


def test_a_runs_evaluation_envs_are_closed_when_it_ends() -> None:
    seen: list[Any] = []

    class KeepEvalEnvs(rlcore.Callback):
        def on_evaluation(self, trainer, metrics):  # noqa: ANN001, ANN201
            seen.append(trainer._eval_envs)

    rlcore.train("ppo", "CartPole-v1", total_env_steps=128, num_envs=1, n_steps=32, batch_size=32, eval_freq=64,
                 eval_episodes=2, log_dir=None, progress_bar=False, callbacks=[KeepEvalEnvs()])
    assert seen and all(envs.closed for envs in seen)


@pytest.mark.timeout(120)
def test_a_setting_refused_late_leaves_no_async_env_processes_running() -> None:
    import multiprocessing

    before = {child.pid for child in multiprocessing.active_children()}
    with pytest.raises(ValueError, match="worker_epsilon='apex'") as refused:
        Trainer("dqn", "CartPole-v1", TrainConfig(num_envs=2, vectorization="async", worker_epsilon="apex",
                                                  log_dir=None, progress_bar=False))
    # while the error (and its traceback, as a notebook keeps it) lives
    assert refused.value is not None and {child.pid for child in multiprocessing.active_children()} - before == set()


class _LongEpisodes(gym.Env):
    """Episodes that end only by a time limit."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), 1.0, False, False, {}


def test_evaluation_plays_episodes_to_a_time_limit_longer_than_its_own_cap(caplog) -> None:
    """Evaluation cut every episode at 10,000 steps, saying the env had no time limit, though its spec had one."""
    from rlcore.evaluation import evaluate_policy

    gym.register("rlcore-test/LongEpisodes-v0", entry_point=_LongEpisodes, max_episode_steps=12_000)
    try:
        caplog.set_level("WARNING")
        metrics = evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.int64), "rlcore-test/LongEpisodes-v0",
                                  1)
        assert metrics["eval/mean_ep_length"] == 12_000 and "evaluation cut" not in caplog.text
        metrics = evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.int64), _LongEpisodes, 1,
                                  max_episode_steps=500)
        assert metrics["eval/mean_ep_length"] == 500
        assert "evaluation cut 1 of 1 episodes at 500 steps, the most it runs" in caplog.text
    finally:
        gym.registry.pop("rlcore-test/LongEpisodes-v0")


def test_a_run_whose_saved_settings_a_later_version_refuses_resumes_with_yours_mending_them(tmp_path: Path) -> None:
    """The checkpoint's train_config was validated before your settings applied: stop_at_reward with eval_freq=0
    (refused since) made the run impossible to resume, whatever you passed."""
    trainer = Trainer("dqn", "CartPole-v1", small_config(tmp_path, total_env_steps=400, checkpoint_freq=200,
                                                         eval_freq=0), SMALL_DQN)
    run_until_killed(trainer, 200)
    meta_path = trainer.run_dir / "checkpoint" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["train_config"]["stop_at_reward"] = 100.0  # as an older version wrote it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"train_config, with your settings, is invalid: stop_at_reward=100"):
        Trainer.resume(trainer.run_dir)
    resumed = Trainer.resume(trainer.run_dir, stop_at_reward=None)
    assert resumed.env_steps == 200 and resumed.config.stop_at_reward is None
    resumed.source.close()
