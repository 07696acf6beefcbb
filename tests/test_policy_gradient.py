"""REINFORCE, A2C and PPO: the losses, the fast path against autograd, action spaces, normalization, resume."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from runs import run_until_killed

import rlcore
from rlcore.agent import build_algorithm
from rlcore.algos.base import UnsupportedSpaceError
from rlcore.algos.onpolicy import ActorCriticLoss
from rlcore.algos.ppo import PPOConfig, PPOLoss
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
    grad_log_prob, *_ = head_loss.grads(log_prob.detach().numpy(), np.zeros(4, np.float32), np.zeros(4, np.float32),
                                        True)
    assert grad_log_prob.tolist() == pytest.approx([0.0, 0.375, -0.125, 0.225])


@pytest.mark.parametrize("clip_range_vf", [None, 0.3])
def test_ppo_closed_form_gradients_match_autograd(clip_range_vf) -> None:
    generator = torch.Generator().manual_seed(0)
    count = 64
    advantages, returns, old_values = (torch.randn(count, generator=generator) for _ in range(3))
    old_log_prob = torch.randn(count, generator=generator) * 0.1 - 1.0
    log_prob = (old_log_prob + 0.3 * torch.randn(count, generator=generator)).requires_grad_(True)
    entropy = torch.rand(count, generator=generator).requires_grad_(True)
    value = (old_values + 0.5 * torch.randn(count, generator=generator)).requires_grad_(True)
    head_loss = PPOLoss(advantages, old_log_prob, returns, old_values, 0.2, clip_range_vf, 0.01, 0.5)
    loss, _ = head_loss.loss(log_prob, entropy, value)
    loss.backward()
    grad_lp, grad_ent, grad_v, stats = head_loss.grads(log_prob.detach().numpy(), entropy.detach().numpy(),
                                                       value.detach().numpy().copy(), True)
    assert float(stats["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for name, value_ in head_loss.loss(log_prob, entropy, value)[1].items():
        assert stats[name] == pytest.approx(float(value_), rel=1e-5, abs=1e-7), name
    assert np.allclose(grad_lp, log_prob.grad.numpy(), atol=1e-6)
    assert np.allclose(grad_ent, entropy.grad.numpy(), atol=1e-7)
    assert np.allclose(grad_v, value.grad.numpy(), atol=1e-6)
    assert grad_lp.dtype == grad_v.dtype == np.float32


def test_actor_critic_loss_closed_form_gradients_match_autograd() -> None:
    generator = torch.Generator().manual_seed(1)
    advantages, returns = torch.randn(16, generator=generator), torch.randn(16, generator=generator)
    log_prob, entropy, value = (torch.randn(16, generator=generator).requires_grad_(True) for _ in range(3))
    head_loss = ActorCriticLoss(advantages, returns, 0.05, 0.5)
    loss, _ = head_loss.loss(log_prob, entropy, value)
    loss.backward()
    grads = head_loss.grads(log_prob.detach().numpy(), entropy.detach().numpy(), value.detach().numpy().copy(), True)
    assert float(grads[3]["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for closed, autograd in zip(grads[:3], (log_prob.grad, entropy.grad, value.grad)):
        assert np.allclose(closed, autograd.numpy(), atol=1e-6)


# ---------------------------------------------------------------- fast path vs autograd
@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.ReLU])
@pytest.mark.parametrize("widths", [(4, 64, 64, 2), (3, 16, 1), (5, 32, 32, 32, 1)])
def test_host_mlp_matches_autograd(activation, widths: tuple[int, ...]) -> None:
    from rlcore.nets.fused_mlp import HostMLP, ensure_grads, plain_mlp_layers

    torch.manual_seed(0)
    modules: list[torch.nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        modules += [torch.nn.Linear(width_in, width_out)] + ([activation()] if index < len(widths) - 2 else [])
    net = torch.nn.Sequential(*modules)
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    host_net = HostMLP(layers, act)
    for rows in (37, 256, 37):  # buffers per batch size, reused
        x, grad_output = torch.randn(rows, widths[0]), torch.randn(rows, widths[-1])
        net.zero_grad(set_to_none=False)
        net(x).backward(grad_output)
        expected = [p.grad.clone() for p in net.parameters()]
        out, inputs = host_net.forward(x.numpy())
        assert np.allclose(out, net(x).detach().numpy(), atol=1e-5)
        host_net.backward(inputs, grad_output.numpy())  # overwrites the grads autograd left
        for got, want in zip((p.grad for p in net.parameters()), expected):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("widths", [(8, 6), (8, 1), (8, 16, 1)])
def test_host_mlp_input_gradient_matches_autograd(widths: tuple[int, ...]) -> None:
    from rlcore.nets.base import mlp
    from rlcore.nets.fused_mlp import HostMLP, ensure_grads, plain_mlp_layers

    torch.manual_seed(0)
    net = mlp(widths[0], widths[1:-1], widths[-1], "relu")
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    x, grad_output = torch.randn(33, widths[0], requires_grad=True), torch.randn(33, widths[-1])
    net(x).backward(grad_output)
    host_net = HostMLP(layers, act)
    out, inputs = host_net.forward(x.detach().numpy())
    got = host_net.backward(inputs, grad_output.numpy(), input_grad=True)
    assert got.shape == (33, widths[0]) and np.allclose(got, x.grad.numpy(), atol=1e-5)
    assert host_net.backward(inputs, grad_output.numpy()) is None


def fake_rollout(algo, rows: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    space = algo.observation_space
    obs = (torch.randint(int(space.n), (rows,), generator=generator) if isinstance(space, gym.spaces.Discrete)
           else torch.randn(rows, *space.shape, generator=generator))
    with torch.no_grad():
        params, value = algo.policy(obs)
        action = algo.distribution.sample(params, generator)
        log_prob = algo.distribution.log_prob(params, action)
    return {"obs": obs, "action": action, "log_prob": log_prob, "value": value,
            "advantage": torch.randn(rows, generator=generator), "return": torch.randn(rows, generator=generator)}


@pytest.mark.parametrize("algo_name", PG_ALGOS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "FrozenLake-v1"])
def test_fast_path_updates_match_autograd(algo_name: str, env_id: str) -> None:
    env = gym.make(env_id)
    settings = {"net_arch": [32, 32], "ent_coef": 0.01, "n_steps": 16}
    if algo_name == "ppo":
        settings.update(batch_size=16, n_epochs=3, clip_range_vf=0.2)
    results = []
    for fast_path in (True, False):
        algo = build_algorithm(algo_name, env.observation_space, env.action_space, {**settings, "fast_path": fast_path},
                               seed=7, num_envs=2)
        assert (algo._fast is not None) == fast_path
        batch = fake_rollout(algo, 32, torch.Generator().manual_seed(11))
        metrics = algo.optimize(batch)
        results.append(([p.detach().clone() for p in algo.policy.parameters()], metrics))
    (fast_params, fast_metrics), (slow_params, slow_metrics) = results
    for fast, slow in zip(fast_params, slow_params):
        assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-4)


@pytest.mark.parametrize("algo_name", PG_ALGOS)
@pytest.mark.parametrize("space", [gym.spaces.Box(0, 1, (10, 10, 4), bool),
                                   gym.spaces.Box(0, 255, (2, 9, 9), np.uint8)], ids=["minatar", "uint8-chw"])
def test_cnn_fast_path_updates_and_acting_match_autograd(algo_name: str, space: gym.spaces.Box) -> None:
    settings = {"features_extractor": "small_cnn", "net_arch": [16], "ent_coef": 0.01, "n_steps": 32,
                "activation": "relu"}
    if algo_name == "ppo":
        settings.update(batch_size=16, n_epochs=2, clip_range_vf=0.2)
    space.seed(0)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(64)]))
    results = []
    for fast_path in (True, False):
        algo = build_algorithm(algo_name, space, gym.spaces.Discrete(5), {**settings, "fast_path": fast_path},
                               seed=7, num_envs=2)
        assert (algo._host_encoder is not None) == fast_path
        generator = torch.Generator().manual_seed(11)
        with torch.no_grad():
            params, value = algo.policy(obs)
            action = algo.distribution.sample(params, generator)
        _, extras = algo.explore(obs[:8])  # on the fast path through the numpy forward: the module's log-probs
        if fast_path:
            expected = algo.distribution.log_prob(params[:8], extras["action"])
            assert torch.allclose(extras["log_prob"], expected, atol=1e-5)
            assert torch.allclose(extras["value"], value[:8], atol=1e-5)
        batch = {"obs": obs, "action": action, "log_prob": algo.distribution.log_prob(params, action),
                 "value": value, "advantage": torch.randn(64, generator=generator),
                 "return": torch.randn(64, generator=generator)}
        metrics = algo.optimize(batch)
        results.append(([p.detach().clone() for p in algo.policy.parameters()], metrics))
    (fast_params, fast_metrics), (slow_params, slow_metrics) = results
    for fast, slow in zip(fast_params, slow_params):
        assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-4)


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
    with pytest.raises(UnsupportedSpaceError, match=r"dqn cannot handle the action space Box.*'a2c'.*'ppo'"):
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
    for tag in ("rollout/ep_rew_mean", "train/loss", "train/value_loss", "train/policy_gradient_loss",
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
