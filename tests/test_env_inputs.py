"""Whatever env a user brings (issue 17): Dict and Tuple observations, env instances, user vector envs, wrappers=,
action masks. Short runs; the learning checks are in tests/test_learning_env_inputs.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from runs import run_until_killed
from test_registry import assert_same_state

import rlcore
from envs.dict_grid import DictGridEnv
from envs.tictactoe_masked import TicTacToeVsRandomEnv
from rlcore.algos.base import UnsupportedSpaceError
from rlcore.report import summarize_run
from rlcore.trainer import TrainConfig, Trainer

SHORT = {
    "ppo": ({"num_envs": 2}, {"n_steps": 32, "batch_size": 32, "n_epochs": 2}),
    "a2c": ({"num_envs": 2}, {"n_steps": 8}),
    "reinforce": ({"num_envs": 2}, {"n_steps": 32}),
    "dqn": ({"num_envs": 1}, {"learning_starts": 64, "batch_size": 16, "buffer_size": 1_000,
                              "target_update_interval": 50, "train_freq": 4}),
}
"""Small settings per algorithm (TrainConfig fields, algorithm fields)."""


def short_trainer(algo: str, env: Any, steps: int = 256, run_dir: Path | None = None, wrappers: list | None = None,
                  **overrides: Any) -> Trainer:
    train, settings = SHORT[algo]
    loop = {"total_env_steps": steps, "seed": 3, "device": "cpu", "eval_freq": 0, "checkpoint_freq": 0,
            "progress_bar": False, "log_dir": None, **train}
    algo_overrides = {key: value for key, value in overrides.items() if key not in TrainConfig.__dataclass_fields__}
    loop.update({key: value for key, value in overrides.items() if key in TrainConfig.__dataclass_fields__})
    return Trainer(algo, env, TrainConfig(**loop), {**settings, **algo_overrides}, run_dir=run_dir,
                   wrappers=wrappers)


def dict_grid_observations(count: int, seed: int = 5) -> list[dict[str, Any]]:
    env = gym.make("rlcore/DictGrid-v0")
    observations = []
    obs, _ = env.reset(seed=seed)
    for step in range(count):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(step % 4)
        if terminated or truncated:
            obs, _ = env.reset()
    return observations


def batch_of(observations: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}


# ------------------------------------------------------------------------------- Dict and Tuple observations
@pytest.mark.parametrize("algo", ["dqn", "reinforce", "a2c", "ppo"])
def test_dict_observations_train_save_load_and_predict_single_or_batched(algo: str, tmp_path: Path) -> None:
    trainer = short_trainer(algo, "rlcore/DictGrid-v0")
    agent = trainer.run()
    observations = dict_grid_observations(12)
    batch = batch_of(observations)
    batched = agent.predict(batch)
    assert batched.shape == (12,)
    assert [int(agent.predict(obs)) for obs in observations] == batched.tolist()
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    assert loaded.algo.observation_space == DictGridEnv().observation_space
    assert_same_state(agent.algo, loaded.algo)
    assert np.array_equal(loaded.predict(batch), batched)


def dict_grid_with_time_limit() -> gym.Env:
    return gym.wrappers.TimeLimit(DictGridEnv(), 20)


def test_the_id_the_class_with_wrappers_and_a_factory_train_a_dict_env_alike() -> None:
    settings = {"total_env_steps": 256, "num_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "seed": 3,
                "log_dir": None, "progress_bar": False, "eval_freq": 0}
    by_id = rlcore.train("ppo", "rlcore/DictGrid-v0", **settings)
    by_class = rlcore.train("ppo", DictGridEnv, wrappers=[lambda env: gym.wrappers.TimeLimit(env, 20)], **settings)
    by_factory = rlcore.train("ppo", dict_grid_with_time_limit, **settings)
    assert_same_state(by_id.algo, by_class.algo)
    assert_same_state(by_id.algo, by_factory.algo)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_a_killed_run_with_dict_observations_resumes_exactly(algo: str, tmp_path: Path) -> None:
    settings = {"total_env_steps": 512, "checkpoint_freq": 256, "eval_freq": 256, "eval_episodes": 2}
    reference = short_trainer(algo, "rlcore/DictGrid-v0", run_dir=tmp_path / "a", **settings)
    reference.run()
    killed = short_trainer(algo, "rlcore/DictGrid-v0", run_dir=tmp_path / "b", **settings)
    run_until_killed(killed, 256)
    assert killed.env_steps < 512
    resumed = Trainer.resume(killed.run_dir)
    resumed.run()
    assert resumed.env_steps == reference.env_steps
    assert_same_state(reference.algo, resumed.algo)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]


def test_dict_images_stay_uint8_in_replay() -> None:
    trainer = short_trainer("dqn", "rlcore/DictGrid-v0", steps=128)
    trainer.run()
    batch = trainer.algo.replay.sample(4, torch.Generator())
    assert batch["obs"]["image"].dtype == torch.uint8 and batch["next_obs"]["image"].dtype == torch.uint8
    assert batch["obs"]["image"].shape == (4, 3, 5, 5) and batch["obs"]["flag"].shape == (4,)


def test_observation_normalization_is_per_vector_box_leaf() -> None:
    ppo = short_trainer("ppo", TupleEnv, steps=64, normalize_obs=True)
    ppo.run()
    assert list(ppo.algo.obs_normalizer.state_dict()) == ["0"]  # the Box leaf, not the Discrete one
    with pytest.raises(ValueError, match=r"normalize_obs=True needs vector Box observations .* normalize_obs=False"):
        short_trainer("ppo", "rlcore/DictGrid-v0", normalize_obs=True)  # only an image and a flag


def test_ppo_with_memory_takes_dict_observations(tmp_path: Path) -> None:
    agent = short_trainer("ppo", "rlcore/DictGrid-v0", memory="lstm", memory_size=16, sequence_length=8).run()
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    assert_same_state(agent.algo, loaded.algo)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_worker_processes_take_dict_observations(algo: str) -> None:
    trainer = short_trainer(algo, "rlcore/DictGrid-v0", num_workers=2)
    trainer.run()
    assert trainer.env_steps >= 256 and trainer.algo.updates > 0


class TupleEnv(gym.Env):
    """Observes ``Tuple(Box(2), Dict(k: Discrete(3)))``; the reward is 1 when the action equals the Discrete part."""

    def __init__(self) -> None:
        self.observation_space = spaces.Tuple((spaces.Box(-1, 1, (2,), np.float32),
                                               spaces.Dict({"k": spaces.Discrete(3)})))
        self.action_space = spaces.Discrete(3)
        self._k, self._t = 0, 0

    def _obs(self) -> tuple:
        return (self.np_random.uniform(-1, 1, 2).astype(np.float32), {"k": np.int64(self._k)})

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[tuple, dict]:
        super().reset(seed=seed)
        self._k, self._t = int(self.np_random.integers(3)), 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[tuple, float, bool, bool, dict]:
        reward = float(int(action) == self._k)
        self._k, self._t = int(self.np_random.integers(3)), self._t + 1
        return self._obs(), reward, False, self._t >= 10, {}


@pytest.mark.parametrize("settings", [{"memory": "lstm"}, {"memory": "transformer"}])
def test_recurrent_dqn_refuses_dict_observations_naming_what_fits(settings: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"observation space Dict\(.*it accepts Box, Discrete\. Algorithms "
                                                    r"that fit this env: .*ppo.*FlattenObservation"):
        short_trainer("dqn", "rlcore/DictGrid-v0", **settings)


def test_empty_boxes_are_refused_and_planners_suggested_with_their_condition() -> None:
    """A Box without elements failed in a reshape inside the network; a planner suggested for an env's spaces
    alone then failed on a user's env it cannot snapshot."""
    from rlcore.algos.base import build_algorithm

    for space in (gym.spaces.Box(0, 1, (0,), np.float32), gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (3, 0))})):
        with pytest.raises(UnsupportedSpaceError, match=r"observation space .* holds a Box with no elements \(shape "
                                                        r"\((0,|3, 0)\)\); give it at least one"):
            build_algorithm("ppo", space, gym.spaces.Discrete(2), {})
    with pytest.raises(UnsupportedSpaceError, match=r"Algorithms that fit this env: mcts \(a planner: only on envs "
                                                    r"it can snapshot"):
        build_algorithm("ppo", gym.spaces.MultiBinary(3), gym.spaces.Discrete(2), {})


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_nested_tuple_observations_train_and_predict(algo: str, tmp_path: Path) -> None:
    agent = short_trainer(algo, TupleEnv).run()
    obs = (np.zeros(2, np.float32), {"k": np.int64(1)})
    assert agent.predict(obs).shape == ()
    agent.save(tmp_path / "agent")
    assert rlcore.load(tmp_path / "agent").algo.observation_space == TupleEnv().observation_space


class DictPendulum(gym.ObservationWrapper):
    """Pendulum observed as ``Dict(angle: Box(2) (cos, sin), velocity: Box(1), image: uint8 [1, 3, 3])``, the image
    a 3x3 map lit at the tip's cell (a continuous-action env with a Dict observation, an image leaf included)."""

    def __init__(self) -> None:
        super().__init__(gym.make("Pendulum-v1", max_episode_steps=50))
        self.observation_space = spaces.Dict({
            "angle": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "velocity": spaces.Box(-8.0, 8.0, (1,), np.float32),
            "image": spaces.Box(0, 255, (1, 3, 3), np.uint8),
        })

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        image = np.zeros((1, 3, 3), dtype=np.uint8)
        row, column = np.clip(np.rint(1 - observation[0]), 0, 2), np.clip(np.rint(1 + observation[1]), 0, 2)
        image[0, int(row), int(column)] = 255
        return {"angle": observation[:2].copy(), "velocity": observation[2:].copy(), "image": image}


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_actor_critics_take_dict_observations(algo: str, tmp_path: Path) -> None:
    config = TrainConfig(total_env_steps=300, num_envs=2, seed=3, device="cpu", eval_freq=0, checkpoint_freq=0,
                         progress_bar=False, log_dir=None)
    trainer = Trainer(algo, DictPendulum, config, {"learning_starts": 100, "batch_size": 32, "net_arch": [32],
                                                   "train_freq": 2, "gradient_steps": 2})  # a phase's batch split
    agent = trainer.run()
    assert trainer.env_steps == 300 and agent.algo.updates == 2 * (300 - 100) // 4
    batch = agent.algo.replay.sample(4, torch.Generator())
    assert batch["obs"]["image"].dtype == torch.uint8 and batch["next_obs"]["velocity"].shape == (4, 1)
    env = DictPendulum()
    observations = [env.reset(seed=seed)[0] for seed in range(5)]
    batched = agent.predict(batch_of(observations))
    assert batched.shape == (5, 1) and np.all(np.abs(batched) <= 2.0)
    assert np.allclose(np.concatenate([agent.predict(obs) for obs in observations]), batched.reshape(-1), atol=1e-6)
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    assert loaded.algo.observation_space == env.observation_space
    assert_same_state(agent.algo, loaded.algo)
    assert np.array_equal(loaded.predict(batch_of(observations)), batched)


# ------------------------------------------------------------------------ env instances, vector envs, wrappers=
@pytest.mark.parametrize(("mode", "autoreset"), [("sync", AutoresetMode.NEXT_STEP), ("sync", AutoresetMode.SAME_STEP),
                                                 ("sync", AutoresetMode.DISABLED), ("async", AutoresetMode.NEXT_STEP),
                                                 ("async", AutoresetMode.SAME_STEP)])
def test_a_users_vector_env_trains_exactly_like_the_registered_id(mode: str, autoreset: AutoresetMode) -> None:
    reference = short_trainer("ppo", "CartPole-v1", steps=512)
    reference.run()
    envs = gym.make_vec("CartPole-v1", 2, vectorization_mode=mode, vector_kwargs={"autoreset_mode": autoreset})
    trainer = short_trainer("ppo", envs, steps=512)
    trainer.run()
    assert_same_state(reference.algo, trainer.algo)


@pytest.mark.parametrize("vector_env", [SyncVectorEnv, AsyncVectorEnv])
def test_a_users_vector_env_that_does_not_copy_its_observations_trains_like_one_that_does(vector_env: type) -> None:
    """With copy=False the vector env's next step overwrote the observations rlcore had stored as ``obs``."""
    runs = []
    for copy in (True, False):
        trainer = short_trainer("ppo", vector_env([lambda: gym.make("CartPole-v1")] * 2, copy=copy), steps=256)
        trainer.run()
        runs.append(trainer)
    assert_same_state(runs[0].algo, runs[1].algo)


def test_runs_of_factories_and_vector_envs_are_filed_under_the_task_they_build(tmp_path: Path) -> None:
    """Runs of lambdas, partials and spec-less vector envs were all filed as `lambda`, `partial`, `SyncVectorEnv`:
    `rlcore compare` averaged CartPole and Acrobot runs into one row."""
    import functools

    cases = {"CartPole-v1": lambda: gym.make("CartPole-v1"), "Acrobot-v1": functools.partial(gym.make, "Acrobot-v1"),
             "MountainCar-v0": SyncVectorEnv([lambda: gym.make("MountainCar-v0")] * 2),
             "Pendulum-v1": AsyncVectorEnv([lambda: gym.make("Pendulum-v1")] * 2), "DictGridEnv": DictGridEnv}
    for task, env in cases.items():
        trainer = short_trainer("ppo", env, steps=64, log_dir=str(tmp_path))
        trainer.run()
        assert trainer.run_dir.relative_to(tmp_path).parts[0] == task
        assert json.loads((trainer.run_dir / "hparams.json").read_text())["env"] == task


def test_a_vector_env_sets_num_envs_and_refuses_another_count() -> None:
    envs = gym.make_vec("CartPole-v1", 3, vectorization_mode="sync")
    trainer = Trainer("ppo", envs, TrainConfig(total_env_steps=96, log_dir=None, progress_bar=False, eval_freq=0),
                      {"n_steps": 32, "batch_size": 32})
    assert trainer.config.num_envs == 3
    trainer.run()
    assert trainer.env_steps == 96
    with pytest.raises(ValueError, match=r"vectorization='async' cannot change how a vector env that is already "):
        Trainer("ppo", gym.make_vec("CartPole-v1", 3, vectorization_mode="sync"),
                TrainConfig(vectorization="async", log_dir=None), {})
    with pytest.raises(ValueError, match=r"num_envs=2, but the vector env passed has 3 sub-envs; leave num_envs"):
        Trainer("ppo", gym.make_vec("CartPole-v1", 3, vectorization_mode="sync"), TrainConfig(num_envs=2, log_dir=None),
                {})


def test_a_next_step_vector_env_that_resets_every_sub_env_is_refused() -> None:
    """gym.make_vec's own CartPoleVectorEnv ignores reset_mask: each episode end reset the other sub-envs too, whose
    transitions then led into a fresh episode unmarked (bootstrapped across the cut) and whose returns ran on."""
    with pytest.raises(ValueError, match=r"CartPoleVectorEnv.*NextStep autoreset\) ignores reset\(options="
                                         r".*vectorization_mode='sync' or 'async'\), or pass the env id"):
        Trainer("dqn", gym.make_vec("CartPole-v1", 3), TrainConfig(log_dir=None), {})


def test_an_env_instance_trains_like_its_id_and_evaluates_on_copies() -> None:
    reference = short_trainer("ppo", "CartPole-v1", num_envs=1, eval_freq=128, eval_episodes=2)
    reference.run()
    instance = gym.make("CartPole-v1")
    trainer = short_trainer("ppo", instance, num_envs=1, eval_freq=128, eval_episodes=2)
    trainer.run()
    assert_same_state(reference.algo, trainer.algo)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in trainer.history]


def test_an_env_instance_with_several_envs_asks_for_a_factory() -> None:
    with pytest.raises(ValueError, match=r"num_envs=4 .* CartPoleEnv was passed as an instance.*pass its class"):
        rlcore.train("ppo", gym.make("CartPole-v1"), num_envs=4, log_dir=None)


class CountSteps(gym.Wrapper):
    """Adds 1 to every reward (so an evaluation's mean return shows the wrapper was there)."""

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) + 1.0, terminated, truncated, info


def test_wrappers_apply_to_each_sub_env_in_training_and_evaluation() -> None:
    def short_episodes(env: gym.Env) -> gym.Env:
        return gym.wrappers.TimeLimit(env, 5)

    trainer = short_trainer("ppo", CartPoleClass(), steps=128, num_envs=1, eval_freq=64, eval_episodes=3,
                            wrappers=[short_episodes, CountSteps])
    trainer.run()
    # each evaluation episode: cut at 5 steps (CartPole lasts longer) of reward 1 + 1
    assert len(trainer.history) == 2 and all(h["eval/mean_reward"] == 10.0 for h in trainer.history)
    assert trainer.envs.envs[0].get_wrapper_attr("_max_episode_steps") == 5


def test_a_run_on_an_env_factory_resumes_only_with_env_given(tmp_path: Path) -> None:
    short_trainer("ppo", CartPoleClass, steps=64, num_envs=1, run_dir=tmp_path / "run", checkpoint_freq=32).run()
    with pytest.raises(ValueError, match=r"trained on an env class, factory or instance, which checkpoints do not "
                                         r"record \(code\); pass it: Trainer.resume\(path, env=...\)"):
        Trainer.resume(tmp_path / "run", total_env_steps=128)
    resumed = Trainer.resume(tmp_path / "run", env=CartPoleClass, total_env_steps=128)
    assert resumed.env_steps == 64
    resumed.source.close()


def test_a_run_with_wrappers_resumes_only_with_them_named(tmp_path: Path, caplog) -> None:
    """Checkpoints record the wrappers' names (never their code): a resume without wrappers= is refused (it used to
    go on without them silently, its evaluations on another scale), wrappers=[] goes on without them on purpose, and
    other wrappers than the recorded ones are logged."""
    def short_episodes(env: gym.Env) -> gym.Env:
        return gym.wrappers.TimeLimit(env, 5)

    short_trainer("ppo", CartPoleClass, steps=128, num_envs=1, run_dir=tmp_path / "run", checkpoint_freq=64,
                  wrappers=[short_episodes, CountSteps]).run()
    with pytest.raises(ValueError, match=r"trained with the wrappers \['test_a_run_with_wrappers_resumes_only_with_"
                                         r"them_named.<locals>.short_episodes', 'CountSteps'\]; checkpoints hold no "
                                         r"code, so pass them again"):
        Trainer.resume(tmp_path / "run", env=CartPoleClass, total_env_steps=256)
    resumed = Trainer.resume(tmp_path / "run", env=CartPoleClass, total_env_steps=256,
                             wrappers=[short_episodes, CountSteps])
    assert resumed.envs.envs[0].get_wrapper_attr("_max_episode_steps") == 5
    resumed.source.close()
    Trainer.resume(tmp_path / "run", env=CartPoleClass, total_env_steps=256, wrappers=[]).source.close()
    assert "resuming" in caplog.text and "with the wrappers []; it trained with" in caplog.text


def test_a_saved_agent_names_its_wrappers_and_evaluates_with_them_when_given(tmp_path: Path, caplog) -> None:
    """best/ and final/ record the wrappers' names: evaluating without them warns (their scores are of another
    task), rlcore.load(..., wrappers=) evaluates as training did."""
    def short_episodes(env: gym.Env) -> gym.Env:
        return gym.wrappers.TimeLimit(env, 5)

    trainer = short_trainer("ppo", "CartPole-v1", steps=128, num_envs=1, run_dir=tmp_path / "run", eval_freq=64,
                            eval_episodes=3, wrappers=[short_episodes])
    trainer.run()
    assert trainer.history[-1]["eval/mean_reward"] == 5.0
    assert any("wrappers=[...]).evaluate(10) with the run's wrappers" in line for line in summarize_run(trainer))
    caplog.set_level("WARNING", logger="rlcore.agent")
    with_them = rlcore.load(tmp_path / "run" / "final", wrappers=[short_episodes])
    assert with_them.evaluate(3)["mean_reward"] == 5.0 and "trained with the wrappers" not in caplog.text
    without = rlcore.load(tmp_path / "run" / "final")
    assert without.wrapper_names == with_them.wrapper_names == (
        "test_a_saved_agent_names_its_wrappers_and_evaluates_with_them_when_given.<locals>.short_episodes",)
    assert without.evaluate(3)["mean_reward"] > 5.0
    assert "this agent trained with the wrappers ['test_a_saved_agent" in caplog.text
    assert "rlcore.load(path, wrappers=[...])" in caplog.text


def CartPoleClass() -> gym.Env:  # noqa: N802  (an env instance of the unwrapped class, no TimeLimit)
    return gym.make("CartPole-v1").unwrapped


# ---------------------------------------------------------------------------------------------- action masks
ILLEGAL_MOVES: list[int] = []


class CountIllegal(gym.Wrapper):
    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        ILLEGAL_MOVES.append(int(bool(result[4].get("illegal"))))
        return result


class TicTacToeMaskInInfo(TicTacToeVsRandomEnv):
    """The same game giving its mask only as ``info["action_mask"]``."""

    def __getattribute__(self, name: str) -> Any:
        if name == "action_masks":
            raise AttributeError(name)
        return super().__getattribute__(name)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "action_mask": self._board == 0}

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "action_mask": self._board == 0}


@pytest.mark.parametrize("env", ["rlcore/TicTacToeVsRandom-v0", TicTacToeMaskInInfo], ids=["method", "info"])
@pytest.mark.parametrize("algo", ["ppo", "a2c", "reinforce", "dqn"])
def test_masked_algorithms_never_play_an_illegal_move_while_training(algo: str, env: Any) -> None:
    ILLEGAL_MOVES.clear()
    exploring = {"exploration_fraction": 1.0} if algo == "dqn" else {}  # DQN explores (mostly at random) throughout
    trainer = short_trainer(algo, env, steps=400, wrappers=[CountIllegal], **exploring)
    trainer.run()
    assert trainer.algo.action_masks
    assert len(ILLEGAL_MOVES) >= 400 and sum(ILLEGAL_MOVES) == 0


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_without_masks_the_same_runs_play_illegal_moves(algo: str) -> None:
    ILLEGAL_MOVES.clear()
    trainer = short_trainer(algo, "rlcore/TicTacToeVsRandom-v0", steps=400, wrappers=[CountIllegal],
                            use_action_masks=False)
    trainer.run()
    assert not trainer.algo.action_masks
    assert sum(ILLEGAL_MOVES) > 0


def test_ignored_action_masks_warn_unless_the_user_opted_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rlcore.trainer"):
        short_trainer("dqn", "rlcore/TicTacToeVsRandom-v0", memory="lstm", sequence_length=4, burn_in=2)
        short_trainer("dqn", "rlcore/TicTacToeVsRandom-v0", use_action_masks=False)
    ignored = [(record.levelname, record.getMessage()) for record in caplog.records if "ignores" in record.message]
    assert ignored == [("WARNING", "dqn ignores the env's action masks: it acts on every action (it does not support "
                                   "masks)"),
                       ("INFO", "dqn ignores the env's action masks: it acts on every action (use_action_masks=False)")]


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_predict_takes_action_masks_single_and_batched(algo: str, tmp_path: Path) -> None:
    agent = short_trainer(algo, "rlcore/TicTacToeVsRandom-v0", steps=128).run()
    rng = np.random.default_rng(0)
    masks = rng.random((64, 9)) < 0.3
    masks[np.arange(64), rng.integers(9, size=64)] = True
    obs = np.zeros((64, 27), np.float32)
    for deterministic in (True, False):
        actions = agent.predict(obs, deterministic=deterministic, action_masks=masks)
        assert masks[np.arange(64), actions].all()
        single = [int(agent.predict(obs[i], deterministic=deterministic, action_masks=masks[i])) for i in range(64)]
        assert all(masks[i, action] for i, action in enumerate(single))
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    assert np.array_equal(loaded.predict(obs, action_masks=masks), agent.predict(obs, action_masks=masks))


class ByteImage(gym.Env):
    """A uint8 8x8x3 image observation (what pixels are) and two actions."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return self.np_random.integers(0, 256, (8, 8, 3), dtype=np.uint8), {}

    def step(self, action: Any) -> Any:
        return self.np_random.integers(0, 256, (8, 8, 3), dtype=np.uint8), 1.0, False, True, {}


def test_predict_refuses_integer_box_values_a_cast_would_change_and_reset_tuples() -> None:
    """A float image scaled to [0, 1] became all zeros and 300 wrapped to 44 in the uint8 cast; env.reset()'s
    (observation, info) tuple gave numpy's inhomogeneous-shape error."""
    agent = short_trainer("ppo", ByteImage, steps=64, n_steps=32, batch_size=32).run()
    image = np.full((8, 8, 3), 200, np.uint8)
    for bad, shown in ((image / 255.0, "0.78"), (image.astype(np.int64) + 100, "300")):
        with pytest.raises(ValueError, match=rf"predict\(\) got {shown}\d* in the observation; the observation "
                                             r"space holds whole numbers in \[0, 255\] \(uint8\)"):
            agent.predict(bad)
    assert agent.predict(image.astype(np.float32)) == agent.predict(image)  # whole numbers in range: the same
    with pytest.raises(ValueError, match=r"got a tuple \(observation, info\), as env.reset\(\) returns it; pass "
                                         r"the observation"):
        agent.predict(ByteImage().reset(seed=0))


def test_masked_ppo_evaluation_on_a_users_vector_env_never_plays_illegal_moves() -> None:
    ILLEGAL_MOVES.clear()
    envs = gym.vector.SyncVectorEnv([lambda: CountIllegal(TicTacToeVsRandomEnv())] * 2)
    trainer = short_trainer("ppo", envs, steps=256, eval_freq=128, eval_episodes=4)
    trainer.run()
    assert trainer.history and len(ILLEGAL_MOVES) > 256 and sum(ILLEGAL_MOVES) == 0


def test_predict_refuses_discrete_observations_out_of_range_and_empty_batches() -> None:
    """A cast would truncate 2.7 to 2, and an index out of range failed in the network's one-hot with torch's error."""
    agent = short_trainer("dqn", "FrozenLake-v1").run()
    for bad, shown in ((16, "16"), (-1, "-1"), (2.7, "2.7"), ([1, 2, 20], "20"), (float("nan"), "nan")):
        with pytest.raises(ValueError, match=rf"predict\(\) got {shown} in the observation; a Discrete\(16\) "
                                             r"observation is a whole number in \[0, 15\]"):
            agent.predict(bad)
    assert agent.predict(np.int64(3)) in range(4) and agent.predict([1, 2]).shape == (2,)
    with pytest.raises(ValueError, match="empty batch"):
        agent.predict(np.zeros(0, np.int64))
    grid = short_trainer("ppo", "rlcore/DictGrid-v0").run()
    observation = dict_grid_observations(1)[0]
    with pytest.raises(ValueError, match=r"predict\(\) got 5 in the leaf 'flag'; a Discrete\(2\) observation"):
        grid.predict({**observation, "flag": 5})


class GoesWrongAfter(gym.Env):
    """Steps correctly for its first ``after`` steps, then returns a reward array or a Discrete(5) observation 7."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, mode: str = "reward array", after: int = 60) -> None:
        self.mode, self.after, self.steps = mode, after, 0
        self.observation_space = {
            "discrete": gym.spaces.Discrete(5),
            "dict": gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (4,)), "k": gym.spaces.Discrete(5)}),
        }.get(mode, gym.spaces.Box(-1, 1, (4,)))

    def observation(self, wrong: bool) -> Any:
        if self.mode == "discrete":
            return 7 if wrong else 1
        if self.mode == "dict":
            return {"x": np.zeros(4, np.float32), "k": 7 if wrong else 1}
        return np.zeros(4, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return self.observation(False), {}

    def step(self, action: Any) -> Any:
        self.steps += 1
        wrong = self.steps >= self.after
        reward = np.array([1.0]) if wrong and self.mode == "reward array" else 1.0
        return self.observation(wrong), reward, False, self.steps % 20 == 0, {}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
@pytest.mark.parametrize(("mode", "message"), [
    ("reward array", r"returned rewards of shape \(1,\) at env step \d+; a reward is one number: return float"),
    ("discrete", r"returned the (final )?observation 7 at env step \d+, outside its Discrete space"),
    ("dict", r"returned the (final )?observation \(key 'k'\) 7 at env step \d+, outside its Discrete space \[0, 4\]"),
])
def test_env_outputs_that_go_wrong_mid_run_are_named(algo: str, mode: str, message: str) -> None:
    """The env checker steps an env once; later a reward array failed in numpy's broadcasting, and an index out of a
    Discrete space in the network's one-hot."""
    with pytest.raises(ValueError, match=message):
        short_trainer(algo, GoesWrongAfter, steps=400, env_kwargs={"mode": mode}, check_env=False).run()


def test_predict_with_masks_on_an_agent_without_them_says_why() -> None:
    """It said "needs ... use_action_masks=True" also to algorithms that have no such setting."""
    from rlcore.agent import Agent, build_algorithm

    box = spaces.Box(-1, 1, (3,), np.float32)
    cases = [("sac", spaces.Box(-1, 1, (2,), np.float32), {}, "it acts without masks"),
             ("dqn", spaces.Discrete(3), {"use_action_masks": False}, "it was built with use_action_masks=False")]
    for algo, actions, config, why in cases:
        agent = Agent(build_algorithm(algo, box, actions, config, seed=0))
        with pytest.raises(ValueError, match=rf"does not take action masks here \({why}\)"):
            agent.predict(np.zeros(3, np.float32), action_masks=np.ones(3, dtype=bool))
