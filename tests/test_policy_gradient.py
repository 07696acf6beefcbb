"""REINFORCE, A2C and PPO: the losses, a user's loss, action spaces, normalization, resume (the kernel against
autograd: tests/test_kernels.py)."""

import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from runs import run_until_killed

import rlcore
from rlcore.agent import build_algorithm
from rlcore.algos.base import UnsupportedSpaceError
from rlcore.algos.ppo import PPO, PPOConfig, PPOLoss
from rlcore.checkpoint import load_checkpoint
from rlcore.presets import preset_envs
from rlcore.trainer import TrainConfig, Trainer

PG_ALGOS = ["reinforce", "a2c", "ppo"]
SMALL = {"reinforce": {"n_steps": 32, "net_arch": [16]}, "a2c": {"n_steps": 8, "net_arch": [16]},
         "ppo": {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "net_arch": [16]}}


def quick_config(tmp_path: Path | None, **overrides) -> TrainConfig:
    settings = {"total_env_steps": 512, "seed": 3, "num_envs": 2, "eval_freq": 0, "checkpoint_freq": 0,
                "log_dir": str(tmp_path) if tmp_path else None, "progress_bar": False, "log_interval": 64,
                "device": "cpu"}
    settings.update(overrides)
    return TrainConfig(**settings)


# ----------------------------------------------------------------------------- the losses
def test_reward_normalizer_tracks_the_discounted_return_and_clips_like_np_clip() -> None:
    """The running statistics of each env's discounted return (reset at episode ends), merged as float64 batches
    (Chan's formula against the plain mean and variance of every return seen), and rewards scaled then clipped."""
    from rlcore.normalize import RewardNormalizer

    generator = np.random.default_rng(0)
    normalizer, returns, seen = RewardNormalizer(4, gamma=0.9, clip=2.0), np.zeros(4), []
    for _ in range(50):
        reward = generator.normal(size=4).astype(np.float32) * 5.0
        ended = generator.random(4) < 0.1
        scaled = normalizer.update_and_normalize(torch.from_numpy(reward), torch.from_numpy(ended))
        returns = returns * 0.9 + reward
        seen.append(returns.copy())
        returns[ended] = 0.0
        expected = np.clip(reward * np.float32(1.0 / np.sqrt(np.var(np.concatenate(seen)) + 1e-8)), -2.0, 2.0)
        assert np.allclose(scaled.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert float(normalizer.stats.mean) == pytest.approx(np.concatenate(seen).mean(), rel=1e-6)
    extreme = normalizer.normalize(torch.tensor([np.nan, 1e9, -1e9, 0.0], dtype=torch.float32)).numpy()
    assert np.isnan(extreme[0]) and extreme[1:].tolist() == [2.0, -2.0, 0.0]


def test_explained_variance_on_the_host_matches_torchs_formula() -> None:
    """CPU tensors are reduced in numpy (float64): the same value as the formula in torch, NaN when Var is 0."""
    from rlcore.algos.statistics import explained_variance, mean_stats

    generator = torch.Generator().manual_seed(0)
    for rows in (2, 40, 80, 512):
        target = torch.randn(rows, generator=generator) * 3.0 + 1.0
        predicted = target + 0.5 * torch.randn(rows, generator=generator)
        expected = float(1.0 - (target.double() - predicted.double()).var() / target.double().var())
        assert explained_variance(predicted, target) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(explained_variance(torch.ones(4), torch.ones(4)))
    assert mean_stats([{"loss": 2.5, "value_loss": torch.tensor(1.0)}]) == {"train/loss": 2.5, "train/value_loss": 1.0}
    assert mean_stats([{"loss": 1.0}, {"loss": 2.0}]) == {"train/loss": 1.5}


def test_ppo_clipped_loss_on_a_hand_made_batch() -> None:
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.9])
    log_prob = ratios.log().requires_grad_(True)
    head_loss = PPOLoss(advantages, torch.zeros(4), torch.zeros(4), torch.zeros(4), 0.2, None, 0.0, 0.0)
    loss, stats = head_loss.loss(log_prob, torch.zeros(4), torch.zeros(4))
    # min(rA, clip(r)A) = [1.2, -1.5, 0.5, -0.9]; the loss is minus their mean
    assert float(stats["policy_gradient_loss"]) == pytest.approx(0.175)
    assert float(stats["clip_fraction"]) == pytest.approx(0.75)
    loss.backward()
    # gradient flows only through unclipped terms: d(-rA/4)/dlog r = -rA/4
    assert log_prob.grad.tolist() == pytest.approx([0.0, 0.375, -0.125, 0.225])


# ------------------------------------------------------------------------------ a user's loss
class KLPenaltyLoss(PPOLoss):
    """PPO's loss plus a penalty on the sampled KL(old || new): the only thing this user changes."""

    calls = 0

    def loss(self, log_prob, entropy, value):
        total, stats = super().loss(log_prob, entropy, value)
        KLPenaltyLoss.calls += 1
        kl = (self.old_log_prob - log_prob).mean()
        return total + 5.0 * kl, {**stats, "kl_penalty": kl.detach()}


class KLPenaltyPPO(PPO):
    loss_class = KLPenaltyLoss


def test_a_subclass_of_ppos_loss_is_what_trains_on_the_cpu_default_path(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    settings = {"total_env_steps": 256, "num_envs": 4, "n_steps": 32, "batch_size": 64, "n_epochs": 2, "seed": 5,
                "eval_freq": 0, "log_dir": None, "progress_bar": False, "device": "cpu"}  # the default fast_path=True
    KLPenaltyLoss.calls = 0
    trainer = Trainer(KLPenaltyPPO, "CartPole-v1", TrainConfig(**{key: settings[key] for key in (
        "total_env_steps", "num_envs", "seed", "eval_freq", "log_dir", "progress_bar", "device")}),
        {"n_steps": 32, "batch_size": 64, "n_epochs": 2})
    trainer.run()
    algo = trainer.algo
    assert type(algo) is KLPenaltyPPO and algo.name == "ppo" and algo._kernel is None
    assert KLPenaltyLoss.calls == algo.updates == 2 * 2 * 2  # every gradient step ran the user's loss
    assert "train/kl_penalty" in trainer._train_metrics
    assert any("autograd reference path, because the loss is KLPenaltyLoss" in record.getMessage()
               for record in caplog.records)
    # the stock loss from the same seed trains elsewhere (its kernel and its autograd path alike)
    stock, stock_autograd = (rlcore.train("ppo", "CartPole-v1", fast_path=fast_path, **settings)
                             for fast_path in (True, False))
    assert stock.algo._kernel is not None and stock_autograd.algo._kernel is None
    penalized, plain, plain_autograd = (torch.cat([p.detach().flatten() for p in a.policy.parameters()])
                                        for a in (algo, stock.algo, stock_autograd.algo))
    assert torch.allclose(plain, plain_autograd, atol=1e-5)
    assert (penalized - plain).abs().max() > 1e-3
    # rlcore.train takes the class too, with the presets of the name it inherits
    KLPenaltyLoss.calls = 0
    agent = rlcore.train(KLPenaltyPPO, "CartPole-v1", total_env_steps=256, log_dir=str(tmp_path), progress_bar=False,
                         eval_freq=0)
    assert type(agent.algo) is KLPenaltyPPO and KLPenaltyLoss.calls == agent.algo.updates > 0
    assert agent.algo.config.n_epochs == 20  # ppo.yaml's CartPole-v1 preset


def test_a_subclass_run_is_recorded_resumed_only_with_its_class_and_compared_apart(tmp_path: Path) -> None:
    """Nothing recorded the class: a resume without algo= went on with stock PPO's loss, silently (the shell's always),
    and rlcore compare pooled the subclass's runs with stock PPO's."""
    from rlcore.checkpoint import CheckpointError

    settings = {"total_env_steps": 128, "num_envs": 2, "n_steps": 32, "batch_size": 64, "n_epochs": 1,
                "eval_freq": 64, "eval_episodes": 1, "log_dir": str(tmp_path), "progress_bar": False}
    subclass_run = rlcore.train(KLPenaltyPPO, "CartPole-v1", seed=0, **settings).run_dir
    rlcore.train("ppo", "CartPole-v1", seed=1, **settings)
    qualified = f"{__name__}.KLPenaltyPPO"
    assert json.loads((subclass_run / "hparams.json").read_text())["algo_class"] == qualified
    assert len(rlcore.compare([tmp_path], metric="eval/mean_reward").rows) == 2
    with pytest.raises(CheckpointError, match=r"trained .*KLPenaltyPPO \(a subclass of ppo.*algo=KLPenaltyPPO\)"):
        Trainer.resume(subclass_run, total_env_steps=256)
    with pytest.raises(CheckpointError, match=r"algo=KLPenaltyPPO\), not PlainSubclass"):
        Trainer.resume(subclass_run, algo=type("PlainSubclass", (PPO,), {}), total_env_steps=256)
    resumed = Trainer.resume(subclass_run, algo=KLPenaltyPPO, total_env_steps=256)
    resumed.run()
    assert type(resumed.algo) is KLPenaltyPPO and resumed.env_steps == 256


# ----------------------------------------------------------------------- action spaces
class MultiActionEnv(gym.Env):
    """Reward 1 for each action component equal to the observation's sign pattern (a tiny contextual bandit)."""

    def __init__(self, kind: str = "multidiscrete") -> None:
        self.observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2, 2, 2]) if kind == "multidiscrete" else \
            gym.spaces.MultiBinary(3)
        self._obs = np.zeros(3, np.float32)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return self._obs, {}

    def step(self, action):
        reward = float(np.sum(np.asarray(action) == (self._obs > 0)))
        self._t += 1
        self._obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return self._obs, reward, False, self._t >= 20, {}


@pytest.mark.parametrize("kind", ["multidiscrete", "multibinary"])
def test_ppo_learns_multi_discrete_and_multi_binary_actions(kind: str) -> None:
    agent = rlcore.train("ppo", lambda: MultiActionEnv(kind), total_env_steps=6144, num_envs=4, seed=0, log_dir=None,
                         progress_bar=False, eval_freq=0, n_steps=64, batch_size=64, n_epochs=4, learning_rate=3e-3)
    score = agent.evaluate(5, env=lambda: MultiActionEnv(kind))["mean_reward"]
    assert score >= 50, score  # random play scores 30 of 60
    assert agent.predict(np.zeros(3, np.float32)).shape == (3,)


class OffsetMultiDiscreteEnv(MultiActionEnv):
    """MultiActionEnv whose action components start at -1, 0 and 5 (MultiDiscrete's ``start``)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.MultiDiscrete([2, 2, 2], start=[-1, 0, 5])

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.int64)), action
        return super().step(np.asarray(action) - self.action_space.start)


def test_multi_discrete_starts_survive_save_and_load(tmp_path: Path) -> None:
    """A saved agent's MultiDiscrete actions keep their offsets (they were dropped: loaded agents sent actions
    outside the space)."""
    agent = rlcore.train("ppo", OffsetMultiDiscreteEnv, total_env_steps=64, n_steps=32, log_dir=None,
                         progress_bar=False, eval_freq=0)
    loaded = rlcore.load(agent.save(tmp_path / "agent"), env=OffsetMultiDiscreteEnv)
    assert np.array_equal(loaded.algo.action_space.start, [-1, 0, 5])
    observations = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    assert np.array_equal(loaded.predict(observations), agent.predict(observations))
    assert all(loaded.algo.action_space.contains(action) for action in loaded.predict(observations))
    assert loaded.evaluate(1)["mean_ep_length"] == 20


def test_box_actions_are_clipped_for_the_env_but_stored_unclipped() -> None:
    env = gym.make("Pendulum-v1")
    algo = build_algorithm("ppo", env.observation_space, env.action_space, {"log_std_init": 2.0}, seed=0)
    obs = torch.randn(256, 3)
    env_action, extras = algo.explore(obs)
    assert float(env_action.abs().max()) <= 2.0
    assert float(extras["action"].abs().max()) > 2.0  # e^2 ~ 7.4 std: many samples fall outside [-2, 2]
    assert torch.equal(env_action, extras["action"].clamp(-2.0, 2.0))
    expected_log_prob = algo.distribution.log_prob(algo._actor_params(algo.prepare_obs(obs)), extras["action"])
    assert torch.allclose(extras["log_prob"], expected_log_prob)  # the log-prob of the unclipped sample
    deterministic = algo.act(torch.randn(8, 3), deterministic=True)
    assert deterministic.shape == (8, 1) and float(deterministic.abs().max()) <= 2.0


def test_unsupported_action_space_names_the_space_and_fitting_algorithms() -> None:
    class TupleActionEnv(MultiActionEnv):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = gym.spaces.Tuple([gym.spaces.Discrete(2)])

    with pytest.raises(UnsupportedSpaceError, match=r"ppo cannot handle the action space Tuple"):
        rlcore.train("ppo", TupleActionEnv, total_env_steps=64, log_dir=None, progress_bar=False)
    with pytest.raises(UnsupportedSpaceError, match=r"dqn cannot handle the action space Box.*a2c.*ppo"):
        rlcore.train("dqn", "Pendulum-v1", total_env_steps=64, log_dir=None, progress_bar=False)


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="clip_range must be in"):
        PPOConfig(clip_range=0.0)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        PPOConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="n_epochs"):
        PPOConfig(n_epochs=0)
    with pytest.raises(ValueError, match="unknown setting 'clip'"):
        rlcore.train("ppo", "CartPole-v1", clip=0.1)


# -------------------------------------------------------------------------- normalization
def test_normalization_statistics_survive_save_and_load_and_are_frozen_at_evaluation(tmp_path: Path) -> None:
    agent = rlcore.train("ppo", "Pendulum-v1", total_env_steps=1024, num_envs=2, seed=0, log_dir=str(tmp_path),
                         progress_bar=False, eval_freq=0, n_steps=64, batch_size=64, n_epochs=1,
                         normalize_obs=True, normalize_reward=True)
    normalizer = agent.algo.obs_normalizer
    assert normalizer is not None and agent.algo.reward_normalizer is not None
    assert normalizer.stats.count > 1000
    assert not torch.allclose(normalizer.stats.mean, torch.zeros(3, dtype=torch.float64))
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    for name in ("mean", "var"):
        assert torch.equal(getattr(loaded.algo.obs_normalizer.stats, name), getattr(normalizer.stats, name))
    assert loaded.algo.reward_normalizer.stats.var == pytest.approx(float(agent.algo.reward_normalizer.stats.var))
    observations = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
    assert np.array_equal(agent.predict(observations), loaded.predict(observations))
    before = normalizer.stats.count
    agent.evaluate(2)
    assert normalizer.stats.count == before  # frozen at evaluation


def test_normalize_as_next_folds_the_batch_in_for_its_answer_only() -> None:
    from rlcore.normalize import KeyedObservationNormalizer, ObservationNormalizer

    rng = np.random.default_rng(0)
    seen, batch = rng.normal(2.0, 3.0, (5, 3)), rng.normal(-1.0, 0.5, (2, 3))
    normalizer, folded = ObservationNormalizer((3,)), ObservationNormalizer((3,))
    normalizer.update(torch.from_numpy(seen))
    folded.update(torch.from_numpy(seen))
    folded.update(torch.from_numpy(batch))
    probe = torch.from_numpy(rng.normal(0.0, 1.0, (4, 3)).astype(np.float32))
    before = (normalizer.stats.mean.clone(), normalizer.stats.var.clone(), normalizer.stats.count,
              normalizer.normalize(probe))

    assert torch.equal(normalizer.normalize_as_next(torch.from_numpy(batch)), folded.normalize(torch.from_numpy(batch)))
    assert torch.equal(normalizer.stats.mean, before[0]) and torch.equal(normalizer.stats.var, before[1])
    assert normalizer.stats.count == before[2]
    assert torch.equal(normalizer.normalize(probe), before[3])  # the cached float32 statistics too
    keyed = KeyedObservationNormalizer({"x": (3,)})
    keyed.update({"x": torch.from_numpy(seen)})
    out = keyed.normalize_as_next({"x": torch.from_numpy(batch), "image": probe})
    assert torch.equal(out["x"], folded.normalize(torch.from_numpy(batch))) and out["image"] is probe


@pytest.mark.parametrize("algo_name", PG_ALGOS)
def test_the_bootstrap_value_reads_the_last_observations_as_the_next_rollout_will(
    algo_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SB3's VecNormalize folds an observation into the statistics when the env returns it, so its V(s_T) sees s_T
    # counted; rlcore folds it in at the next collecting step, and normalizes s_T for the bootstrap as that step will
    import copy

    trainer = Trainer(algo_name, "Pendulum-v1", quick_config(None, total_env_steps=96),
                      {**SMALL[algo_name], "n_steps": 8, "normalize_obs": True,
                       **({"batch_size": 16} if algo_name == "ppo" else {})})
    algo, checked = trainer.algo, []
    update, compute_targets = algo.update, algo.compute_targets

    def checked_update(last_obs: np.ndarray) -> dict[str, float]:
        stats = copy.deepcopy(algo.obs_normalizer.stats)
        stats.update(torch.as_tensor(last_obs))
        normalized = ((torch.as_tensor(last_obs, dtype=torch.float64) - stats.mean) / torch.sqrt(stats.var + 1e-8))
        with torch.no_grad():
            checked.append([algo._values(normalized.float().clamp(-10.0, 10.0))])
        count = algo.obs_normalizer.stats.count
        metrics = update(last_obs)
        assert algo.obs_normalizer.stats.count == count  # folded in by the next collecting step only
        return metrics

    def recorded_targets(last_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        checked[-1].append(last_value.clone())
        return compute_targets(last_value)

    monkeypatch.setattr(algo, "update", checked_update)
    monkeypatch.setattr(algo, "compute_targets", recorded_targets)
    trainer.run()
    assert len(checked) == 6
    for expected, last_value in checked:
        assert torch.allclose(last_value, expected, atol=1e-5, rtol=0.0)


@pytest.mark.parametrize("algo_name, memory", [("a2c", None), ("ppo", None), ("ppo", "lstm")])
def test_a_truncated_episodes_bootstrap_reads_its_final_observation_as_sb3s_vecnormalize_does(
    algo_name: str, memory: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # VecNormalize folds the step's returned observations (the reset ones where episodes ended) into its statistics,
    # then normalizes a truncated episode's final observation: V(final_obs) must read it so, whether the truncation
    # falls inside a rollout (valued at the next collecting step) or at its last step (valued by update)
    import copy

    def short_pendulum() -> gym.Env:
        return gym.make("Pendulum-v1", max_episode_steps=10)  # truncations at rollout steps 1 and 3 of 4

    settings = {**SMALL[algo_name], "n_steps": 4, "normalize_obs": True, "memory": memory,
                **({"batch_size": 8} if algo_name == "ppo" else {})}
    trainer = Trainer(algo_name, short_pendulum, quick_config(None, total_env_steps=64), settings)
    algo = trainer.algo
    pending: list[tuple[int, np.ndarray, np.ndarray, Any]] = []
    expected: dict[tuple[int, int], float] = {}
    checked: list[int] = []
    explore, store, update, compute_targets = algo.explore, algo.store, algo.update, algo.compute_targets

    def value_pending(returned_obs: Any) -> None:
        for step, rows, final_obs, values in pending:
            stats = copy.deepcopy(algo.obs_normalizer.stats)
            stats.update(torch.as_tensor(returned_obs))
            normalized = (torch.as_tensor(final_obs, dtype=torch.float64) - stats.mean) / torch.sqrt(stats.var + 1e-8)
            with torch.no_grad():
                value = values(normalized.float().clamp(-10.0, 10.0))
            expected.update({(step, int(row)): float(v) for row, v in zip(rows, value)})
        pending.clear()

    def recording_store(transition: dict[str, Any]) -> None:
        rows = np.flatnonzero(transition["truncated"])
        if len(rows):
            values = algo._values if memory is None else algo.memory.values_after(torch.from_numpy(rows))
            pending.append((algo.rollout.pos, rows, transition["next_obs"][rows].copy(), values))
        store(transition)

    def checking_explore(obs: Any, *args: Any, **kwargs: Any) -> Any:
        value_pending(obs)
        return explore(obs, *args, **kwargs)

    def checking_update(last_obs: Any) -> dict[str, float]:
        value_pending(last_obs)
        return update(last_obs)

    def checking_targets(last_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        column = algo.rollout["truncated_value"]
        for (step, row), value in expected.items():
            assert float(column[step, row]) == pytest.approx(value, abs=1e-5), (step, row)
            checked.append(step)
        expected.clear()
        return compute_targets(last_value)

    for name, function in (("explore", checking_explore), ("store", recording_store), ("update", checking_update),
                           ("compute_targets", checking_targets)):
        monkeypatch.setattr(algo, name, function)
    trainer.run()
    assert sorted(set(checked)) == [1, 3]  # inside a rollout and at its last step, on both envs
    assert len(checked) == 6  # 32 steps of 2 envs: truncated at their 10th, 20th and 30th


def test_normalize_obs_needs_box_observations() -> None:
    with pytest.raises(ValueError, match="normalize_obs=True needs vector Box observations"):
        rlcore.train("ppo", "FrozenLake-v1", normalize_obs=True, total_env_steps=64, log_dir=None, progress_bar=False)


# ----------------------------------------------------------------- loop, save/load, resume
@pytest.mark.parametrize("algo_name", PG_ALGOS)
def test_each_algorithm_trains_logs_and_saves(algo_name: str, tmp_path: Path) -> None:
    trainer = Trainer(algo_name, "CartPole-v1", quick_config(tmp_path, eval_freq=256, eval_episodes=2),
                      SMALL[algo_name])
    agent = trainer.run()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trainer.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    policy_loss = "train/policy_gradient_loss" if algo_name == "ppo" else "train/policy_loss"  # SB3's names
    for tag in ("rollout/ep_rew_mean", "train/loss", "train/value_loss", policy_loss,
                "train/entropy_loss", "train/explained_variance", "eval/mean_reward", "time/fps"):
        assert tag in tags, tag
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent", algo=algo_name)
    observations = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    assert np.array_equal(agent.predict(observations), loaded.predict(observations))


@pytest.mark.parametrize("algo_name", PG_ALGOS)
def test_resume_matches_an_uninterrupted_run(algo_name: str, tmp_path: Path) -> None:
    settings = {**SMALL[algo_name], "normalize_obs": True, "normalize_reward": True}
    reference = Trainer(algo_name, "CartPole-v1", quick_config(tmp_path / "a", checkpoint_freq=256), settings)
    reference.run()
    partial = Trainer(algo_name, "CartPole-v1", quick_config(tmp_path / "b", checkpoint_freq=256), settings)
    run_until_killed(partial, 256)  # stops right after the checkpoint there, as if killed
    _, meta = load_checkpoint(partial.run_dir / "checkpoint")
    assert 256 <= meta["env_steps"] < 512
    resumed = Trainer.resume(partial.run_dir)
    resumed.run()
    for a, b in zip(reference.algo.policy.parameters(), resumed.algo.policy.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(reference.algo.obs_normalizer.stats.mean, resumed.algo.obs_normalizer.stats.mean)


def test_stop_at_reward_ends_training_at_the_first_evaluation_that_reaches_it() -> None:
    trainer = Trainer("ppo", "CartPole-v1", quick_config(None, total_env_steps=60_000, num_envs=8, eval_freq=2048,
                                                          eval_episodes=5, stop_at_reward=150.0),
                      {"n_steps": 32, "batch_size": 256, "n_epochs": 10, "learning_rate": 1e-3})
    trainer.run()
    scores = [entry["eval/mean_reward"] for entry in trainer.history]
    assert scores[-1] >= 150 and all(score < 150 for score in scores[:-1]), scores
    assert trainer.env_steps == trainer.history[-1]["env_steps"] < 60_000
    assert trainer.history[-1]["wall_time"] > trainer.history[0]["wall_time"] > 0


PRESETS = [(algo, env_id) for algo in PG_ALGOS for env_id in preset_envs(algo)]


@pytest.mark.parametrize(("algo_name", "env_id"), PRESETS, ids=[f"{a}-{e}" for a, e in PRESETS])
def test_every_preset_builds_and_trains_briefly(algo_name: str, env_id: str) -> None:
    from rlcore.api import split_settings
    from rlcore.presets import load_preset

    preset = load_preset(algo_name, env_id)
    train, settings = split_settings(algo_name, env_id, {"n_steps": 4, "log_dir": None, "progress_bar": False,
                                                         "eval_freq": 0, "checkpoint_freq": 0})
    train["total_env_steps"] = 4 * train.get("num_envs", 1)
    trainer = Trainer(algo_name, env_id, TrainConfig(**train), settings)
    trainer.run()
    for key, value in preset["algo"].items():
        if key != "n_steps":
            expected = tuple(value) if isinstance(value, list) else value
            assert getattr(trainer.algo.config, key) == expected, key
    assert trainer.env_steps == train["total_env_steps"]


def test_linear_learning_rate_decays_over_its_own_horizon_when_given() -> None:
    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    default = build_algorithm("ppo", space, gym.spaces.Discrete(2), {"learning_rate": 3e-4, "lr_schedule": "linear"})
    longer = build_algorithm("ppo", space, gym.spaces.Discrete(2), {"learning_rate": 3e-4, "lr_schedule": "linear",
                                                                   "lr_schedule_steps": 3_000})
    for algo in (default, longer):
        algo.set_progress(1_000, 1_000)
    assert default.learning_rate == 0.0  # decays to 0 at the end of the run
    assert longer.learning_rate == pytest.approx(2e-4)  # 1k of a 3k-step horizon: 2/3 of the start
    with pytest.raises(ValueError, match="lr_schedule_steps"):
        PPOConfig(lr_schedule_steps=0)


class _BoxActionEnv(gym.Env):
    """One-step episodes with a one-dimensional Box action in ``[low, high]``."""

    def __init__(self, low: float = 0.0, high: float = 100.0) -> None:
        self.observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.action_space = gym.spaces.Box(np.float32(low), np.float32(high), (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, np.float32), 0.0, True, False, {}


@pytest.mark.parametrize(("low", "high", "log_std_init", "warned"), [
    (0.0, 100.0, 0.0, "covers a sliver"), (-0.01, 0.01, 0.0, "sends most actions to the bounds"),
    (-2.0, 2.0, 0.0, None), (0.0, 100.0, float(np.log(20.0)), None), (0.5, 0.5, 0.0, None),
])
def test_a_box_action_range_far_from_the_first_standard_deviation_is_warned_with_the_fix(
        caplog, low: float, high: float, log_std_init: float, warned: str | None) -> None:
    caplog.set_level(logging.WARNING, logger="rlcore.algos.onpolicy")
    rlcore.train("ppo", _BoxActionEnv, env_kwargs={"low": low, "high": high}, total_env_steps=32, n_steps=16,
                 batch_size=16, log_std_init=log_std_init, log_dir=None, progress_bar=False)
    messages = [record.getMessage() for record in caplog.records if record.name == "rlcore.algos.onpolicy"]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1 and warned in messages[0] and "RescaleAction" in messages[0], messages


def test_a_presets_own_log_std_init_is_not_warned_about(caplog) -> None:
    """A2C's Pendulum preset (rl-zoo's log_std_init=-2) was told to set log_std_init."""
    caplog.set_level(logging.WARNING, logger="rlcore.algos.onpolicy")
    rlcore.train("a2c", "Pendulum-v1", total_env_steps=64, log_dir=None, progress_bar=False, eval_freq=0)
    assert [record for record in caplog.records if record.name == "rlcore.algos.onpolicy"] == []


@pytest.mark.parametrize("fast_path", [True, False])
def test_ppo_stopped_early_by_target_kl_still_reports_its_losses(fast_path: bool) -> None:
    trainer = Trainer("ppo", "CartPole-v1", TrainConfig(total_env_steps=256, num_envs=2, log_dir=None,
                                                         progress_bar=False),
                      {"n_steps": 64, "batch_size": 32, "n_epochs": 4, "target_kl": 1e-7, "fast_path": fast_path})
    trainer.run()
    metrics = trainer._train_metrics
    assert metrics["train/stopped_early"] == 1.0  # in the first epoch: its first minibatch steps, the second stops
    assert {"train/loss", "train/value_loss", "train/approx_kl", "train/clip_fraction"} <= set(metrics), metrics


@pytest.mark.parametrize(("space", "why"), [(gym.spaces.Box(0, 5, (2,), np.int64), "an integer Box"),
                                             (gym.spaces.MultiDiscrete([[2, 3], [3, 2]]), "needs flattening")])
def test_action_spaces_the_distributions_cannot_take_are_refused_by_name(space: gym.Space, why: str) -> None:
    """They were said to fit (and listed for dqn's refusal), then failed with a bare TypeError in the distribution."""
    from rlcore.algos.base import UnsupportedSpaceError, algos_fitting

    observations = gym.spaces.Box(-1, 1, (3,), np.float32)
    assert not {"ppo", "a2c", "reinforce"} & set(algos_fitting(observations, space))
    for algo in ("ppo", "a2c", "reinforce"):
        with pytest.raises(UnsupportedSpaceError, match=rf"{algo} cannot handle the action space .*{why}"):
            build_algorithm(algo, observations, space, {}, seed=0)
