"""The Ray backend and ``rlcore sweep`` on a local, loopback-only Ray (2 CPUs, small object store, no dashboard).

One Ray is started for the module (``init_ray`` sets the loopback environment) and shut down at its end; the
runs join it, so they leave it running. Each run is short: what is checked is the plumbing (both actors'
transitions reach the learner, weights versions advance and the actors act with them, a killed actor is
replaced, trials land in the usual run folders), not learning.
"""

from __future__ import annotations

import signal
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from rlcore.distributed import ray_backend  # noqa: E402
from rlcore.distributed.ray_backend import CollectorWorker, check_worker_resources, init_ray  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

pytestmark = pytest.mark.timeout(300)


SIGTERM_SEEN: list[int] = []


def _users_sigterm_handler(number: int, frame: object) -> None:
    SIGTERM_SEEN.append(number)


@pytest.fixture(scope="module")
def local_ray():
    users = signal.signal(signal.SIGTERM, _users_sigterm_handler)
    try:
        started = init_ray()
        # ray.init installs its own for good: a handler of the user's is put back
        assert signal.getsignal(signal.SIGTERM) is _users_sigterm_handler or not started
    finally:
        signal.signal(signal.SIGTERM, users)
    yield
    if started:
        ray.shutdown()


def last_scalars(run_dir: Path) -> dict[str, float]:
    """The last value of every scalar tag in the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def ray_trainer(algo: str, tmp_path: Path, algo_config: dict, callbacks: list | None = None,
                **train: object) -> Trainer:
    config = TrainConfig(**{"num_workers": 2, "num_envs": 2, "backend": "ray", "log_dir": str(tmp_path),
                            "progress_bar": False, "eval_episodes": 2, "log_interval": 200, **train})
    return Trainer(algo, "CartPole-v1", config, algo_config, callbacks=callbacks)


def assert_actors_acted_with_published_weights(trainer: Trainer) -> None:
    """Every actor's chunks reached the learner (none left in flight when the run ended: calls are sized so that
    the run's steps include theirs) and came from published weights, some from the learner's updates (an actor that
    started late, on a loaded machine, may have sent only one chunk, acted with the first weights)."""
    accounting = trainer.source.accounting
    acting = accounting["actors_acting_version"]
    assert accounting["actors_in_flight"] == [0] * len(acting) and accounting["consistent"], accounting
    assert min(accounting["actors_received"]) > 0 and min(acting) >= 0 and max(acting) >= 1, (accounting, acting)


DQN_FAST = {"learning_starts": 200, "train_freq": 16, "gradient_steps": 4, "batch_size": 32, "net_arch": [32, 32],
            "target_update_interval": 100, "buffer_size": 10_000}


def test_collector_worker_in_process():
    """The actor class is plain Python: a chunk holds [k, E] transitions and the weights version it used."""
    trainer = Trainer("dqn", "CartPole-v1", TrainConfig(num_workers=2, num_envs=2, backend="ray", log_dir=None),
                      DQN_FAST)
    worker = CollectorWorker(trainer.worker_spec(1))
    chunk = worker.collect(None, 0, 0, 5)
    assert chunk.index == 1 and chunk.version == -1 and chunk.env_steps == 10
    assert chunk.transitions["obs"].shape == (5, 2, 4) and chunk.transitions["terminated"].shape == (5, 2)


def test_init_ray_joins_a_running_ray(local_ray):
    assert ray.is_initialized()
    assert init_ray() is False  # already initialized here: not ours to shut down


def test_dqn_on_ray(local_ray, tmp_path):
    trainer = ray_trainer("dqn", tmp_path, DQN_FAST, total_env_steps=3000, eval_freq=1500, weight_pull_interval=20)
    agent = trainer.run()
    assert trainer.env_steps == 3000
    replay = agent.algo.replay
    committed = replay.committed()
    assert len(replay) == 3000 and (committed > 0).all()  # both actors' transitions reached the learner
    scalars = last_scalars(trainer.run_dir)
    assert "rollout/ep_rew_mean" in scalars and "train/loss" in scalars and "eval/mean_reward" in scalars
    assert scalars["distributed/worker_env_steps_min"] > 0
    assert scalars["distributed/weights_version"] >= 2  # the learner published new weights...
    assert_actors_acted_with_published_weights(trainer)  # ...and the actors acted with them
    assert (trainer.run_dir / "final").is_dir() and (trainer.run_dir / "checkpoint").is_dir()


def test_ppo_on_ray(local_ray, tmp_path):
    trainer = ray_trainer("ppo", tmp_path, {"n_steps": 32, "batch_size": 64, "n_epochs": 2, "normalize_obs": True},
                          total_env_steps=1024, eval_freq=512)
    agent = trainer.run()
    assert trainer.env_steps == 1024  # 8 updates of 2 actors x 2 envs x 32 steps
    scalars = last_scalars(trainer.run_dir)
    assert "rollout/ep_rew_mean" in scalars and "train/approx_kl" in scalars
    assert scalars["distributed/weights_version"] == 8  # the initial weights and one version after each update
    assert scalars["distributed/acting_version_min"] == 7  # synchronous: every rollout used the latest weights
    assert scalars["distributed/worker_env_steps_min"] == 512
    # the actors' observation statistics were merged into the learner's: every collected observation counted
    assert agent.algo.obs_normalizer.stats.count == pytest.approx(1024, abs=1)


def test_dict_observations_on_ray(local_ray, tmp_path):
    """Dict observations (an image and a flag) travel from the Ray actors to the learner per key, images as bytes."""
    config = TrainConfig(num_workers=2, num_envs=2, backend="ray", log_dir=str(tmp_path), progress_bar=False,
                         eval_episodes=2, log_interval=200, total_env_steps=512, eval_freq=256)
    trainer = Trainer("ppo", "rlcore/DictGrid-v0", config, {"n_steps": 32, "batch_size": 64, "n_epochs": 2})
    chunk = CollectorWorker(trainer.worker_spec(1)).collect(None, 0, 0, 5)  # what an actor sends: [k, E] per key
    assert chunk.transitions["obs/image"].shape == (5, 2, 3, 5, 5) and chunk.transitions["obs/image"].dtype == np.uint8
    assert chunk.transitions["obs/flag"].shape == (5, 2)
    agent = trainer.run()
    assert trainer.env_steps == 512  # 4 updates of 2 actors x 2 envs x 32 steps
    scalars = last_scalars(trainer.run_dir)
    assert "eval/mean_reward" in scalars and scalars["distributed/weights_version"] == 4
    assert scalars["distributed/acting_version_min"] == 3 and scalars["distributed/worker_env_steps_min"] == 256
    env = gym.make("rlcore/DictGrid-v0")
    obs, _ = env.reset(seed=1)
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    assert env.action_space.contains(int(agent.predict(obs)))
    assert agent.predict(batch).shape == (2,)


def test_sac_on_ray(local_ray, tmp_path):
    """An off-policy actor-critic for Box actions: the actors act with the actor's weights and the statistics."""
    config = TrainConfig(num_workers=2, num_envs=2, backend="ray", log_dir=str(tmp_path), progress_bar=False,
                         eval_episodes=1, log_interval=200, total_env_steps=1200, eval_freq=600)
    trainer = Trainer("sac", "Pendulum-v1", config, {"learning_starts": 200, "train_freq": 8, "gradient_steps": 2,
                                                     "batch_size": 32, "net_arch": [32], "normalize_obs": True})
    agent = trainer.run()
    # every step the actors sent is stored; how they split between the two actors depends on start-up order (on a
    # loaded machine one actor can send all 1,200 before the other's first chunk)
    assert trainer.env_steps == 1200 and len(agent.algo.replay) == 1200
    scalars = last_scalars(trainer.run_dir)
    assert {"train/critic_loss", "train/actor_loss", "train/ent_coef", "eval/mean_reward"} <= set(scalars)
    assert scalars["distributed/weights_version"] >= 2
    assert_actors_acted_with_published_weights(trainer)
    assert agent.algo.obs_normalizer.stats.count > 1000  # the actors' observations reached the statistics


def test_killed_actor_is_replaced(local_ray, tmp_path):
    """The run's only collector actor is killed mid-run: a replacement starts under a new name and collects the rest
    (with one actor the run cannot end without it, however slowly the replacement starts)."""
    from rlcore.callbacks import Callback

    class KillCollector(Callback):
        """Kills the collector actor from the learner's loop once 2,000 env steps arrived."""

        def __init__(self) -> None:
            self.killed: list[tuple[str, int]] = []

        def on_iteration(self, trainer, metrics):  # noqa: ANN001, ANN201
            if not self.killed and trainer.env_steps >= 2_000:
                workers = trainer.source.workers
                self.killed.append((workers.actor_name(0), trainer.env_steps))
                ray.kill(workers.actors[0])

    killer = KillCollector()
    trainer = ray_trainer("dqn", tmp_path, {**DQN_FAST, "gradient_steps": 1}, num_workers=1, total_env_steps=20_000,
                          eval_freq=0, checkpoint_freq=0, weight_pull_interval=50, callbacks=[killer])
    trainer.run()
    assert [name.endswith("-collector0-r0") for name, _ in killer.killed] == [True]
    assert killer.killed[0][1] < 20_000
    assert trainer.env_steps == 20_000
    scalars = last_scalars(trainer.run_dir)
    assert scalars["distributed/restarts"] >= 1
    accounting = trainer.source.accounting
    assert accounting["actors_received"][0] > 0  # from the replacement actor
    assert accounting["consistent"] and accounting["received_env_steps"] == 20_000


def test_sweep_cli_two_trials(local_ray, tmp_path, capsys):
    from rlcore.cli import main

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "algos: [ppo]\nenvs: [CartPole-v1]\nseeds: 1\ngrid:\n  learning_rate: [1e-3, 3.0e-4]\n"
        "total_env_steps: 512\neval_freq: 256\neval_episodes: 2\ncheckpoint_freq: 0\nnum_envs: 2\n"
    )
    log_dir = tmp_path / "sweep"
    handler = signal.getsignal(signal.SIGINT)
    assert main(["sweep", str(sweep_file), "--log-dir", str(log_dir)]) == 0
    assert signal.getsignal(signal.SIGINT) is handler  # Tune's own, left behind, swallowed the next Ctrl-C
    output = capsys.readouterr().out
    assert "learning_rate=0.001" in output and "learning_rate=0.0003" in output
    runs = sorted((log_dir / "CartPole-v1" / "ppo").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert list(run.glob("events.out.tfevents.*")) and (run / "final").is_dir()
        assert "eval/mean_reward" in last_scalars(run)
    assert (log_dir / "tune").is_dir()
    assert not list((log_dir / "tune").rglob("events.out.tfevents.*"))  # only rlcore's runs hold event files


# ------------------------------------------------------------------------------------------ placement settings
def test_worker_resources_are_checked():
    with pytest.raises(ValueError, match="worker_resources=.*places Ray actors: set backend='ray'"):
        TrainConfig(num_workers=2, worker_resources={"collector": 1})
    assert check_worker_resources(None) == {} and check_worker_resources({"collector": 2}) == {"collector": 2.0}
    for bad, message in [({"CPU": 1}, "'CPU' is not a custom resource name"), ({"collector": -1}, r"\['collector'\]"),
                         ({"collector": 1.5}, "a fraction up to 1 or a whole number, got 1.5"),
                         (["collector"], "must map custom resource names to amounts")]:
        with pytest.raises(ValueError, match=message):
            check_worker_resources(bad)


def test_sweep_trials_reserve_their_actors_resources():
    """A trial with Ray collector actors reserves one bundle per actor with its CPU and ``worker_resources`` (the
    actors run inside the trial's placement group)."""
    from rlcore.sweep import SweepSpec, _trial_resources

    spec = SweepSpec.from_dict({"algos": ["dqn"], "envs": ["CartPole-v1"], "num_workers": 2, "backend": "ray",
                                "worker_resources": {"collector": 1}})
    assert _trial_resources(spec).bundles == [{"CPU": 1.0}, {"CPU": 1.0, "collector": 1.0},
                                              {"CPU": 1.0, "collector": 1.0}]


def test_actors_that_no_node_can_host_stop_the_run_with_a_clear_error(local_ray, tmp_path, monkeypatch):
    """A resource no node has (a typo here) is waited for PLACEMENT_TIMEOUT_S, then named in the error."""
    monkeypatch.setattr(ray_backend, "PLACEMENT_TIMEOUT_S", 0.5)
    trainer = ray_trainer("dqn", tmp_path, DQN_FAST, total_env_steps=1000, worker_resources={"colector": 1})
    with pytest.raises(RuntimeError, match=r"no alive Ray node can host a collector actor: each asks for "
                                           r"\{'colector': 1\.0\}.*change worker_resources"):
        trainer.run()


def test_an_actor_that_fails_before_it_starts_or_too_often_stops_the_run() -> None:
    """A collector whose envs could not be built was replaced forever (the run hung); local workers stop at once."""
    from rlcore.distributed.roles import MAX_RESTARTS

    workers = object.__new__(ray_backend._WorkerSet)
    workers.ready, workers.restarts = [False], [0]
    with pytest.raises(RuntimeError, match=r"Ray collector 0 failed before it started .*cannot build the env"):
        workers.replace(0, ValueError("cannot build the env"))
    workers.ready, workers.restarts = [True], [MAX_RESTARTS]
    with pytest.raises(RuntimeError, match=rf"Ray collector 0 died {MAX_RESTARTS + 1} times; last error: gone"):
        workers.replace(0, ValueError("gone"))
