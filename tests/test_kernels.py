"""The kernels' contract: every kernel in rlcore/kernels/ against the reference it reproduces, and the one step that
chooses between them (what it refuses, what it logs)."""

import contextlib
import importlib
import logging
import math
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

import rlcore
from rlcore.agent import build_algorithm
from rlcore.algos.a2c import A2C, ActorCriticLoss
from rlcore.algos.ddpg import DDPG
from rlcore.algos.dqn import DQN, DQNConfig
from rlcore.algos.muzero import MuZero, MuZeroConfig
from rlcore.algos.off_policy import resolve_amp
from rlcore.algos.onpolicy import OnPolicyAlgorithm
from rlcore.algos.ppo import PPO, PPOConfig, PPOLoss
from rlcore.algos.sac import SAC, SACConfig
from rlcore.algos.td3 import TD3, TD3Config
from rlcore.distributions import Categorical, DiagGaussian, StateDependentGaussian
from rlcore.kernels import thin_layers_bf16 as thin
from rlcore.kernels.actor_critic import ActorCriticKernel
from rlcore.kernels.cnn import SmallCNNKernel
from rlcore.kernels.continuous_q import SACKernel, TD3Kernel
from rlcore.kernels.distributions import (
    CategoricalKernel,
    GaussianKernel,
    categorical_sample,
    distribution_kernel,
    gaussian_sample,
)
from rlcore.kernels.latent_model import LatentModelKernel
from rlcore.kernels.mlp import MLPKernel, ensure_grads, plain_mlp_layers
from rlcore.kernels.mlp_bf16 import BF16_MIN_DIM, BF16MLPKernel
from rlcore.kernels.optim import host_clip_grad_norm_
from rlcore.kernels.pg_losses import actor_critic_loss_gradients, loss_gradients, ppo_loss_gradients
from rlcore.kernels.selection import CHECKED_AGAINST, choose_kernel, fingerprint, override_gates, reference_name
from rlcore.kernels.td import TDKernel
from rlcore.nets.base import mlp
from rlcore.nets.cnn import NatureCNN, SmallCNN
from rlcore.optim import FlatAdam

BOX = spaces.Box(-np.inf, np.inf, (3,), np.float32)
MINATAR = spaces.Box(0, 1, (10, 10, 4), bool)


def batch_of(space: gym.Space, size: int, seed: int = 0) -> torch.Tensor:
    space.seed(seed)
    return torch.as_tensor(np.stack([space.sample() for _ in range(size)]))


# ----------------------------------------------------------------------------------- MLP (kernels/mlp.py)
def sequential(widths: tuple[int, ...], activation: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(0)
    modules: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        modules += [nn.Linear(width_in, width_out)] + ([activation()] if index < len(widths) - 2 else [])
    return nn.Sequential(*modules)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("options", [{}, {"addmm_min_dim": 64, "bias_grad": "sum"},
                                     {"addmm_min_dim": 64, "threads": 2}], ids=["ppo", "dqn", "dqn-two-threads"])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("widths", [(4, 64, 64, 2), (3, 16, 1), (5, 32, 32, 32, 1), (4, 256, 256, 2), (64, 96, 2)])
def test_mlp_kernel_matches_the_module_and_autograd(options: dict, activation, widths: tuple[int, ...]) -> None:
    """Every layer in numpy (PPO's actor and critic), or the layers at least 64 wide in torch (DQN's, SAC's and
    TD3's networks: the forward's addmm, the backward's products; one wide first layer, whose input the caller
    gave), on one torch thread and on two."""
    options = dict(options)
    with torch_threads(options.pop("threads", 1)):
        check_mlp_kernel_against_autograd(options, activation, widths)


def check_mlp_kernel_against_autograd(options: dict, activation, widths: tuple[int, ...]) -> None:
    net = sequential(widths, activation)
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    kernel = MLPKernel(layers, act, **options)
    for rows in (37, 256, 37):  # buffers per batch size, reused
        x, grad_output = torch.randn(rows, widths[0]), torch.randn(rows, widths[-1])
        net.zero_grad(set_to_none=False)
        expected_out = net(x)
        expected_out.backward(grad_output)
        expected = [p.grad.clone() for p in net.parameters()]
        out, inputs = kernel.forward(x.numpy())
        assert np.allclose(out, expected_out.detach().numpy(), atol=1e-5)
        assert np.allclose(kernel.predict(x.numpy()), out, atol=1e-5)
        kernel.backward(inputs, grad_output.numpy())  # overwrites the grads autograd left
        for got, want in zip((p.grad for p in net.parameters()), expected):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("widths", [(8, 6), (8, 1), (8, 16, 1)])
def test_mlp_kernel_input_gradient_matches_autograd(widths: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = mlp(widths[0], widths[1:-1], widths[-1], "relu")
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    x, grad_output = torch.randn(33, widths[0], requires_grad=True), torch.randn(33, widths[-1])
    net(x).backward(grad_output)
    kernel = MLPKernel(layers, act)
    _, inputs = kernel.forward(x.detach().numpy())
    got = kernel.backward(inputs, grad_output.numpy(), input_grad=True)
    assert got.shape == (33, widths[0]) and np.allclose(got, x.grad.numpy(), atol=1e-5)
    assert kernel.backward(inputs, grad_output.numpy()) is None


def test_plain_mlp_detection_takes_exact_types_only() -> None:
    class MyLinear(nn.Linear):  # may compute something else in forward
        pass

    assert plain_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))) is not None
    assert plain_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1))) is None
    assert plain_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU())) is None
    assert plain_mlp_layers(nn.Sequential(MyLinear(2, 3), nn.ReLU(), nn.Linear(3, 1))) is None
    assert plain_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1, bias=False))) is None
    layers, act = plain_mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
    assert act is nn.Tanh and not MLPKernel.applies(layers)  # no .grad yet
    assert MLPKernel.applies(layers, grads=False)


# ------------------------------------------------------------------------------ SmallCNN (kernels/cnn.py)
@pytest.mark.parametrize("space", [MINATAR, spaces.Box(0, 255, (3, 9, 11), np.uint8),
                                   spaces.Box(0, 1, (7, 8, 2), np.float32)], ids=["bool-hwc", "uint8-chw", "float-hwc"])
def test_small_cnn_kernel_matches_the_module_and_autograd(space) -> None:
    torch.manual_seed(0)
    net = SmallCNN(space, features_dim=32, channels=8)
    assert not SmallCNNKernel.applies(net)  # no .grad yet
    for param in net.parameters():
        param.grad = torch.zeros_like(param)
    kernel = SmallCNNKernel(net)
    for rows in (5, 64, 5):  # buffers per batch size, reused
        images = batch_of(space, rows, seed=rows)
        grad_output = torch.randn(rows, 32)
        net.zero_grad(set_to_none=False)
        expected_features = net(images)
        expected_features.backward(grad_output)
        expected = [p.grad.clone() for p in net.parameters()]
        features, cache = kernel.forward(images)
        assert np.allclose(features, expected_features.detach().numpy(), atol=1e-5)
        kernel.backward(cache, grad_output.numpy().copy())  # overwrites the grads autograd left
        for got, want in zip((p.grad for p in net.parameters()), expected):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_small_cnn_kernel_refuses_other_encoders() -> None:
    class Subclass(SmallCNN):  # may compute something else in forward
        pass

    padded = SmallCNN(MINATAR)
    padded.convs[0].padding = (1, 1)
    for net, applies in ((SmallCNN(MINATAR), True), (Subclass(MINATAR), False), (padded, False),
                         (NatureCNN(spaces.Box(0, 255, (4, 84, 84), np.uint8)), False)):
        for param in net.parameters():
            param.grad = torch.zeros_like(param)
        assert SmallCNNKernel.applies(net) == applies, type(net).__name__


# --------------------------------------------------------------- distributions (kernels/distributions.py)
@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_kernel_matches_the_formulas_and_autograd(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(7, 4, generator=generator, requires_grad=True)
    actions = torch.randint(4, (7,), generator=generator)
    grad_lp, grad_ent = torch.randn(7, generator=generator), torch.randn(7, generator=generator)
    dist = Categorical(4)
    kernel = CategoricalKernel(dist)
    (grad_lp * dist.log_prob(logits, actions) + grad_ent * dist.entropy(logits)).sum().backward()
    log_prob, entropy, cache = kernel.forward(logits.detach().numpy(), actions.numpy())
    assert np.allclose(log_prob, dist.log_prob(logits, actions).detach().numpy(), atol=1e-6)
    assert np.allclose(entropy, dist.entropy(logits).detach().numpy(), atol=1e-6)
    assert np.allclose(kernel.backward(cache, grad_lp.numpy(), grad_ent.numpy()), logits.grad.numpy(), atol=1e-5)
    without_entropy = kernel.backward(kernel.forward(logits.detach().numpy(), actions.numpy(), False)[2],
                                      grad_lp.numpy(), None)
    logits.grad = None
    (grad_lp * dist.log_prob(logits, actions)).sum().backward()
    assert np.allclose(without_entropy, logits.grad.numpy(), atol=1e-5)


def test_gaussian_kernel_matches_the_formulas_and_autograd() -> None:
    generator = torch.Generator().manual_seed(4)
    means = torch.randn(6, 2, generator=generator, requires_grad=True)
    log_std = torch.tensor([0.3, -0.8], requires_grad=True)
    actions = torch.randn(6, 2, generator=generator)
    grad_lp, grad_ent = torch.randn(6, generator=generator), torch.randn(6, generator=generator)
    dist = DiagGaussian(2, (2,))
    dist.log_std = log_std
    kernel = GaussianKernel(dist)
    (grad_lp * dist.log_prob(means, actions) + grad_ent * dist.entropy(means)).sum().backward()
    log_prob, entropy, cache = kernel.forward(means.detach().numpy(), actions.numpy())
    assert np.allclose(log_prob, dist.log_prob(means, actions).detach().numpy(), atol=1e-5)
    assert np.allclose(entropy, dist.entropy(means).detach().numpy(), atol=1e-5)
    grad_means, grad_log_std = kernel.backward(cache, grad_lp.numpy(), grad_ent.numpy())
    assert np.allclose(grad_means, means.grad.numpy(), atol=1e-5)
    assert np.allclose(grad_log_std, log_std.grad.numpy(), atol=1e-5)


def test_gsde_kernel_matches_the_formulas_and_autograd() -> None:
    generator = torch.Generator().manual_seed(4)
    means = torch.randn(6, 2, generator=generator, requires_grad=True)
    latent = torch.randn(6, 3, generator=generator)
    log_std = torch.randn(3, 2, generator=generator).requires_grad_()
    actions = torch.randn(6, 2, generator=generator)
    grad_lp, grad_ent = torch.randn(6, generator=generator), torch.randn(6, generator=generator)
    dist = StateDependentGaussian(2, (2,))
    dist.set_latent_dim(3)
    dist.log_std = log_std
    kernel = distribution_kernel(dist)
    params = torch.cat([means, latent], dim=1)
    (grad_lp * dist.log_prob(params, actions) + grad_ent * dist.entropy(params)).sum().backward()
    log_prob, entropy, cache = kernel.forward(means.detach().numpy(), actions.numpy(), latent=latent.numpy())
    assert np.allclose(log_prob, dist.log_prob(params, actions).detach().numpy(), atol=1e-5)
    assert np.allclose(entropy, dist.entropy(params).detach().numpy(), atol=1e-5)
    grad_means, grad_log_std = kernel.backward(cache, grad_lp.numpy(), grad_ent.numpy())
    assert np.allclose(grad_means, means.grad.numpy(), atol=1e-5)
    assert np.allclose(grad_log_std, log_std.grad.numpy(), atol=1e-5)
    log_std.grad = None
    (grad_lp * dist.log_prob(params, actions)).sum().backward()
    assert np.allclose(kernel.backward(cache, grad_lp.numpy(), None)[1], log_std.grad.numpy(), atol=1e-5)


def test_numpy_categorical_sampling_matches_the_reference() -> None:
    logits = torch.randn(500, 3, generator=torch.Generator().manual_seed(5))
    expected_actions, expected_log_probs = Categorical(3).sample_with_log_prob(logits, torch.Generator().manual_seed(6))
    uniform = torch.rand(500, 1, generator=torch.Generator().manual_seed(6))  # the draws the reference made
    actions, log_probs = categorical_sample(logits.numpy(), uniform.numpy())
    assert np.array_equal(actions, expected_actions.numpy())
    assert np.allclose(log_probs, expected_log_probs.numpy(), atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 4, 17])
def test_numpy_gaussian_sampling_matches_the_reference(dim: int) -> None:
    means = torch.randn(64, dim, generator=torch.Generator().manual_seed(7))
    dist = DiagGaussian(dim, (dim,))
    dist.log_std = torch.linspace(-2.0, 0.5, dim).requires_grad_(True)
    expected_sample, expected_log_prob = dist.sample_with_log_prob(means, torch.Generator().manual_seed(8))
    noise = torch.randn(64, dim, generator=torch.Generator().manual_seed(8))  # the draws the reference made
    sample, log_prob = gaussian_sample(means.numpy(), noise.numpy(), dist.log_std)
    assert np.array_equal(sample, expected_sample.detach().numpy())
    assert np.allclose(log_prob, expected_log_prob.detach().numpy(), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------- policy-gradient losses (kernels/pg_losses.py)
def test_ppo_closed_form_on_a_hand_made_batch() -> None:
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    log_prob = torch.tensor([1.5, 1.5, 0.5, 0.9]).log()
    head_loss = PPOLoss(advantages, torch.zeros(4), torch.zeros(4), torch.zeros(4), 0.2, None, 0.0, 0.0)
    grad_log_prob, *_ = ppo_loss_gradients(head_loss, log_prob.numpy(), np.zeros(4, np.float32),
                                           np.zeros(4, np.float32), True)
    # gradient flows only through unclipped terms: d(-rA/4)/dlog r = -rA/4
    assert grad_log_prob.tolist() == pytest.approx([0.0, 0.375, -0.125, 0.225])


@pytest.mark.parametrize("clip_range_vf", [None, 0.3])
def test_ppo_closed_form_matches_autograd(clip_range_vf) -> None:
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
    grad_lp, grad_ent, grad_v, stats = ppo_loss_gradients(head_loss, log_prob.detach().numpy(),
                                                          entropy.detach().numpy(), value.detach().numpy().copy(), True)
    assert float(stats["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for name, value_ in head_loss.loss(log_prob, entropy, value)[1].items():
        assert stats[name] == pytest.approx(float(value_), rel=1e-5, abs=1e-7), name
    assert np.allclose(grad_lp, log_prob.grad.numpy(), atol=1e-6)
    assert np.allclose(grad_ent, entropy.grad.numpy(), atol=1e-7)
    assert np.allclose(grad_v, value.grad.numpy(), atol=1e-6)
    assert grad_lp.dtype == grad_v.dtype == np.float32


def test_actor_critic_loss_closed_form_matches_autograd() -> None:
    generator = torch.Generator().manual_seed(1)
    advantages, returns = torch.randn(16, generator=generator), torch.randn(16, generator=generator)
    log_prob, entropy, value = (torch.randn(16, generator=generator).requires_grad_(True) for _ in range(3))
    head_loss = ActorCriticLoss(advantages, returns, 0.05, 0.5)
    loss, stats_autograd = head_loss.loss(log_prob, entropy, value)
    loss.backward()
    grads = actor_critic_loss_gradients(head_loss, log_prob.detach().numpy(), entropy.detach().numpy(),
                                        value.detach().numpy().copy(), True)
    assert float(grads[3]["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    for name, value_ in stats_autograd.items():
        assert grads[3][name] == pytest.approx(float(value_), rel=1e-5), name
    for closed, autograd in zip(grads[:3], (log_prob.grad, entropy.grad, value.grad)):
        assert np.allclose(closed, autograd.numpy(), atol=1e-6)


def test_closed_forms_exist_for_the_stock_losses_only() -> None:
    class Edited(PPOLoss):
        pass

    assert loss_gradients(PPOLoss) is ppo_loss_gradients
    assert loss_gradients(ActorCriticLoss) is actor_critic_loss_gradients
    assert loss_gradients(Edited) is None


# --------------------------------------------------------- the policy-gradient kernel (kernels/actor_critic.py)
PG_ALGOS = ["reinforce", "a2c", "ppo"]


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
@pytest.mark.parametrize(("env_id", "extra"), [("CartPole-v1", {}), ("Pendulum-v1", {}), ("FrozenLake-v1", {}),
                                               ("Pendulum-v1", {"use_sde": True, "log_std_init": -1.0}),
                                               ("Pendulum-v1", {"use_sde": True, "net_arch": []})],
                         ids=["CartPole", "Pendulum", "FrozenLake", "Pendulum-gSDE", "Pendulum-gSDE-linear"])
def test_actor_critic_kernel_updates_and_acts_like_autograd(algo_name: str, env_id: str, extra: dict) -> None:
    env = gym.make(env_id)
    settings = {"net_arch": [32, 32], "ent_coef": 0.01, "n_steps": 16, **extra}
    if algo_name == "ppo":
        settings.update(batch_size=16, n_epochs=3, clip_range_vf=0.2, target_kl=1.0)
    results = []
    for fast_path in (True, False):
        algo = build_algorithm(algo_name, env.observation_space, env.action_space, {**settings, "fast_path": fast_path},
                               seed=7, num_envs=2)
        assert (algo._kernel is not None) == fast_path
        batch = fake_rollout(algo, 32, torch.Generator().manual_seed(11))
        metrics = algo.optimize(batch)
        with torch.no_grad():
            acting = (algo._actor_params(batch["obs"]), algo._values(batch["obs"]))
        results.append(([p.detach().clone() for p in algo.policy.parameters()], metrics, acting))
    (fast_params, fast_metrics, fast_acting), (slow_params, slow_metrics, slow_acting) = results
    for fast, slow in zip(fast_params, slow_params):
        assert torch.allclose(fast, slow, atol=1e-5), (fast - slow).abs().max()
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-4)
    for fast, slow in zip(fast_acting, slow_acting):
        assert torch.allclose(fast, slow, atol=1e-4)


@pytest.mark.parametrize("algo_name", PG_ALGOS)
@pytest.mark.parametrize("space", [gym.spaces.Box(0, 1, (10, 10, 4), bool),
                                   gym.spaces.Box(0, 255, (2, 9, 9), np.uint8)], ids=["minatar", "uint8-chw"])
def test_actor_critic_kernel_with_small_cnn_updates_and_acts_like_autograd(algo_name: str, space) -> None:
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
        assert (algo._kernel is not None and algo._kernel.encoder is not None) == fast_path
        generator = torch.Generator().manual_seed(11)
        with torch.no_grad():
            params, value = algo.policy(obs)
            action = algo.distribution.sample(params, generator)
        _, extras = algo.explore(obs[:8])  # on the kernel path through the numpy forward: the module's log-probs
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


# ------------------------------------------------------------------------------ the DQN kernel (kernels/td.py)
def filled_dqn(seed: int, observation_space: gym.Space = BOX, device: str = "cpu", **options) -> DQN:
    config = DQNConfig(**{"batch_size": 16, "buffer_size": 1000, "net_arch": (32, 32), "amp": None, **options})
    algo = DQN(observation_space, spaces.Discrete(3, start=-1), config, seed=seed, device=device)
    rng = np.random.default_rng(0)
    for t in range(200):
        obs, next_obs = (rng.normal(size=(1, 3)).astype(np.float32) if observation_space is BOX
                         else rng.integers(5, size=1) for _ in range(2))
        algo.replay.add({"obs": obs, "action": rng.integers(3, size=1) - 1,
                         "reward": rng.normal(size=1).astype(np.float32), "next_obs": next_obs,
                         "terminated": np.array([t % 17 == 0]), "truncated": np.array([t % 23 == 0])})
    return algo


@pytest.mark.parametrize("options", [{}, {"double": True}, {"loss": "mse"}, {"prioritized": True},
                                     {"n_step": 3, "double": True}, {"observation_space": spaces.Discrete(5)}])
def test_td_kernel_trains_and_acts_like_autograd(options: dict) -> None:
    fast, slow = filled_dqn(0, **options), filled_dqn(0, fast_path=False, **options)
    assert fast._kernel is not None and slow._kernel is None
    fast_metrics, slow_metrics = fast.train(5), slow.train(5)
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-4)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    obs = filled_dqn(1, **options).replay.sample(64, torch.Generator().manual_seed(0))["obs"]
    assert torch.equal(fast.act(obs, deterministic=True), slow.act(obs, deterministic=True))
    assert fast.act(obs, deterministic=True).min() >= -1  # the action space's start is added



@pytest.mark.parametrize("net_arch, batch_size, gradient_steps", [((256, 256), 128, 8), ((256, 256), 64, 128)])
def test_td_kernel_covers_the_zoo_shapes_like_autograd(net_arch: tuple, batch_size: int, gradient_steps: int) -> None:
    """rl-zoo's DQN shapes (MountainCar: batch 128, 8 steps; CartPole: batch 64, 128 steps; 256x256 MLPs) run the
    kernel and match autograd."""
    fast, slow = (filled_dqn(0, fast_path=fast_path, net_arch=net_arch, batch_size=batch_size)
                  for fast_path in (True, False))
    assert fast._kernel is not None and slow._kernel is None
    fast_metrics, slow_metrics = fast.train(gradient_steps), slow.train(gradient_steps)
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-3)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters()):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("options", [{}, {"double": True}, {"prioritized": True}, {"net_arch": (256, 256)}])
def test_td_kernel_with_bf16_products_steps_like_the_autocast_reference(options: dict, monkeypatch) -> None:
    """``amp="bf16"``: the kernel's TD steps (online and target products in bfloat16, refreshed after each optimizer
    step and each target sync) follow autograd under autocast: the same losses within bf16 rounding, gradients
    within it, parameters close after several phases with a target sync between them; acting stays float32.
    bfloat16 products compute the same without AMX or AVX512-BF16 (only slower), so the test pretends the hardware."""
    from rlcore import precision

    monkeypatch.setattr(precision, "fast_bf16_matmul", lambda: True)
    options = {"net_arch": (96, 64), "amp": "bf16", "target_update_interval": 1, **options}
    fast, slow = filled_dqn(0, **options), filled_dqn(0, fast_path=False, **options)
    assert fast.amp == slow.amp == "bf16" and fast._kernel is not None and fast._kernel.bf16 and slow._kernel is None
    other = filled_dqn(5, **options).state_dict()
    for algo in (fast, slow):
        algo.load_state_dict(other)  # the kernel must pick the loaded weights up
    fast_metrics, slow_metrics = fast.train(1), slow.train(1)
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=2e-2)
    grads = [torch.cat([p.grad.reshape(-1) for p in algo.q_net.parameters()]) for algo in (fast, slow)]
    assert relative_error(grads[0], grads[1]) < 0.1, relative_error(grads[0], grads[1])
    for _ in range(3):
        for algo in (fast, slow):
            algo.train(2)
            algo.target_net.load_state_dict(algo.q_net.state_dict())  # a target sync between phases
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters()):
        assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()
    obs = filled_dqn(1).replay.sample(64, torch.Generator().manual_seed(0))["obs"]
    assert torch.equal(fast.act(obs, deterministic=True), fast.q_values(obs).argmax(dim=1) - 1)
    assert all(param.dtype == torch.float32 for param in fast.q_net.parameters())


def test_amp_auto_gives_dqn_bf16_only_for_wide_q_networks_on_bf16_cpus(monkeypatch) -> None:
    from rlcore import precision

    for hardware, widths, expected in [(True, (256, 256), "bf16"), (True, (64, 64), None), (False, (256, 256), None)]:
        monkeypatch.setattr(precision, "fast_bf16_matmul", lambda hardware=hardware: hardware)
        algo = filled_dqn(0, net_arch=widths, amp="auto")
        assert algo.amp == expected and algo._kernel.bf16 == (expected == "bf16")
    with pytest.raises(ValueError, match=r"amp must be one of \['auto', 'bf16', None\], got 'fp16'"):
        DQNConfig(amp="fp16")


def test_flush_denormals_flushes_inside_and_restores_the_mode() -> None:
    from rlcore.kernels.denormals import denormals_flushed, flush_denormals

    subnormal = np.array([1e-39], dtype=np.float32)
    assert not denormals_flushed() and (subnormal * np.float32(1.0))[0] != 0  # this thread's default
    with flush_denormals():
        assert denormals_flushed() and (subnormal * np.float32(1.0))[0] == 0  # numpy's arithmetic too
    assert not denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            pass
        assert denormals_flushed()  # a mode the user set stays
    finally:
        torch.set_flush_denormal(False)
    filled_dqn(0).train(2)  # the TD kernel's phase runs flushed and puts the mode back
    assert not denormals_flushed()

def filled_masked_dqn(seed: int, **options) -> DQN:
    """A DQN whose replay holds random transitions with random next-state action masks (some rows all illegal)."""
    config = DQNConfig(batch_size=16, buffer_size=1000, net_arch=(32, 32), **options)
    algo = DQN(BOX, spaces.Discrete(3, start=-1), config, seed=seed)
    algo.enable_action_masks()
    rng = np.random.default_rng(0)
    for t in range(200):
        algo.replay.add({"obs": rng.normal(size=(1, 3)).astype(np.float32), "action": rng.integers(3, size=1) - 1,
                         "reward": rng.normal(size=1).astype(np.float32),
                         "next_obs": rng.normal(size=(1, 3)).astype(np.float32),
                         "terminated": np.array([t % 17 == 0]), "truncated": np.array([t % 23 == 0]),
                         "next_action_mask": rng.random((1, 3)) < 0.5})
    return algo


@pytest.mark.parametrize("options", [{}, {"double": True}, {"prioritized": True}])
def test_td_kernel_with_action_masks_trains_and_acts_like_autograd(options: dict) -> None:
    fast, slow = filled_masked_dqn(0, **options), filled_masked_dqn(0, fast_path=False, **options)
    assert fast._kernel is not None and slow._kernel is None
    unmasked = filled_dqn(0, **options)  # the same transitions without masks: other targets
    fast_metrics, slow_metrics = fast.train(5), slow.train(5)
    assert fast_metrics["train/loss"] == pytest.approx(slow_metrics["train/loss"], rel=1e-4)
    assert fast_metrics["train/loss"] != pytest.approx(unmasked.train(5)["train/loss"], rel=1e-4)
    for a, b in zip(fast.q_net.parameters(), slow.q_net.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(64, 3, generator=torch.Generator().manual_seed(1)) < 0.5
    mask[0] = False  # no legal action: every action counts
    actions = fast.act(obs, deterministic=True, action_mask=mask)
    assert torch.equal(actions, slow.act(obs, deterministic=True, action_mask=mask))
    some_legal = mask.any(dim=1)
    assert mask[some_legal, actions[some_legal] + 1].all() and some_legal.sum() > 40


# ---------------------------------------------------------------------------- optimizers (kernels/optim.py)
@pytest.mark.parametrize("fused", [True, False])
def test_flat_adam_kernel_and_reference_match_torch_adam_with_clipping(fused: bool) -> None:
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    flat = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    flat.load_state_dict(reference.state_dict())
    torch_adam = torch.optim.Adam(reference.parameters(), lr=1e-2)
    flat_adam = FlatAdam(flat.parameters(), lr=1e-2, max_grad_norm=0.5)
    assert flat_adam.fused  # torch has the kernel, and the parameters are on the CPU
    flat_adam.fused = fused
    for _ in range(20):
        x = torch.randn(32, 4)
        for net, opt in ((reference, torch_adam), (flat, flat_adam)):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            if opt is torch_adam:
                torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            opt.step()
    for a, b in zip(reference.parameters(), flat.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    state = flat_adam.state_dict()
    other = FlatAdam(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)).parameters(), lr=1e-2)
    other.load_state_dict(state)
    assert other.steps == 20 and torch.equal(other.exp_avg, flat_adam.exp_avg)


@pytest.mark.parametrize("max_norm", [None, 0.5, 1e6])
def test_numpy_clip_matches_torch_clip(max_norm) -> None:
    grads = torch.randn(1000, generator=torch.Generator().manual_seed(2))
    param = torch.nn.Parameter(torch.zeros(1000))
    param.grad = grads.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_([param], max_norm if max_norm is not None else float("inf"))
    norm = host_clip_grad_norm_(grads, max_norm)
    assert norm == pytest.approx(float(expected_norm), rel=1e-5)
    assert torch.allclose(grads, param.grad, atol=1e-6)


# ------------------------------------------------------ MuZero's model step in the search (kernels/latent_model.py)
def small_muzero(**overrides) -> MuZero:
    settings = {"num_simulations": 6, "latent_size": 16, "net_arch": (24, 12), "support_size": 6, **overrides}
    return MuZero(BOX, spaces.Discrete(3), MuZeroConfig(**settings), num_envs=3)


def randomise(net: nn.Module) -> None:
    """Heads that are not zero (they start at zero), so that every output says something."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0.0, 0.5)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_latent_model_kernel_reproduces_the_reference_model_step(activation: str) -> None:
    algo = small_muzero(activation=activation)
    assert isinstance(algo._kernel, LatentModelKernel)
    randomise(algo.net)
    rng = np.random.default_rng(0)
    states = rng.random((9, 16)).astype(np.float32)
    actions = rng.integers(0, 3, 9)
    kernel, reference = algo._kernel.step(states, actions), algo.reference_model_step(states, actions)
    for got, expected in zip(kernel, reference):
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(reference[1]).max() > 0.1 and np.abs(reference[3]).max() > 0.1


def test_muzero_searches_the_same_through_the_kernel_and_the_reference() -> None:
    """Same seed, same weights: the kernel's searches pick the same moves and targets as the torch reference's."""
    fast, reference = small_muzero(), small_muzero(fast_path=False)
    assert fast._kernel is not None and reference._kernel is None
    randomise(fast.net)
    reference.net.load_state_dict(fast.net.state_dict())
    obs = batch_of(BOX, 3)
    for _ in range(3):
        (fast_actions, fast_extras), (ref_actions, ref_extras) = fast.act(obs), reference.act(obs)
        assert torch.equal(fast_actions, ref_actions)
        assert np.allclose(fast_extras["policy"], ref_extras["policy"])


# ------------------------------------------------------------------------ the choice (kernels/selection.py)
def test_choose_kernel_builds_only_without_a_reason_and_logs_the_path(caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    assert choose_kernel("algo", [(False, "gate"), (True, "shut gate")], lambda: None, lambda: 1 / 0) is None
    assert choose_kernel("algo", [(False, "gate")], lambda: "refused", lambda: 1 / 0) is None
    assert choose_kernel("algo", [], lambda: None, lambda: "the kernel") == "the kernel"
    assert [record.getMessage() for record in caplog.records] == [
        "algo: autograd reference path, because shut gate", "algo: autograd reference path, because refused",
        "algo: kernel path, the kernel"]


class EditedPPOLoss(PPOLoss):
    pass


class OwnModelStep(MuZero):
    def reference_model_step(self, states, actions):
        return super().reference_model_step(states, actions)


class EditedPPO(PPO):
    loss_class = EditedPPOLoss


class OwnTDLoss(DQN):
    def td_loss(self, q_taken, targets, weight):
        return super().td_loss(q_taken, targets, weight)


@pytest.mark.parametrize(("build", "reason"), [
    (lambda: PPO(BOX, spaces.Discrete(2), PPOConfig()), None),
    (lambda: PPO(BOX, spaces.Discrete(2), PPOConfig(fast_path=False)), "fast_path=False"),
    (lambda: EditedPPO(BOX, spaces.Discrete(2), PPOConfig()), "the loss is EditedPPOLoss, not a stock loss"),
    (lambda: PPO(BOX, spaces.MultiDiscrete([2, 3]), PPOConfig()), "the MultiCategorical distribution has no kernel"),
    (lambda: PPO(BOX, spaces.Discrete(2), PPOConfig(activation="gelu")), "the actor is not a plain"),
    (lambda: PPO(BOX, spaces.Discrete(2), PPOConfig(memory="lstm", n_steps=16)), "memory='lstm'"),
    (lambda: DQN(BOX, spaces.Discrete(2), DQNConfig()), None),
    (lambda: DQN(BOX, spaces.Discrete(2), DQNConfig(dueling=True)), "the Q-network has a dueling head"),
    (lambda: OwnTDLoss(BOX, spaces.Discrete(2), DQNConfig()), "OwnTDLoss overrides td_loss"),
    (lambda: DQN(MINATAR, spaces.Discrete(2), DQNConfig()), "the encoder SmallCNN has no kernel"),
    (lambda: MuZero(BOX, spaces.Discrete(2), MuZeroConfig()), None),
    (lambda: MuZero(MINATAR, spaces.Discrete(2), MuZeroConfig()), None),  # the encoder runs outside the search
    (lambda: MuZero(BOX, spaces.Discrete(2), MuZeroConfig(fast_path=False)), "fast_path=False"),
    (lambda: OwnModelStep(BOX, spaces.Discrete(2), MuZeroConfig()), "OwnModelStep overrides reference_model_step"),
    (lambda: MuZero(BOX, spaces.Discrete(2), MuZeroConfig(activation="gelu")), "MuZeroNetwork.dynamics is not a"),
])
def test_the_kernel_runs_only_for_stock_pieces_and_the_log_says_why(build, reason: str | None, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    algo = build()
    assert (algo._kernel is None) == (reason is not None)
    lines = [record.getMessage() for record in caplog.records if record.name == "rlcore.kernels"
             and not record.getMessage().startswith("FlatAdam")]
    assert len(lines) == 1, lines
    if reason is None:
        assert lines[0].startswith(f"{algo.name}: kernel path, ")
    else:
        assert lines[0].startswith(f"{algo.name}: autograd reference path, because ") and reason in lines[0]


def resolve(name: str):
    """``module.qualname`` -> the object (the longest importable prefix is the module)."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(name)


@pytest.mark.parametrize("name", sorted(CHECKED_AGAINST))
def test_every_reference_is_the_code_its_kernel_was_checked_against(name: str) -> None:
    got = fingerprint(resolve(name))
    assert got == CHECKED_AGAINST[name], (
        f"{name} changed since its kernel was checked against it, so the kernel now steps aside (autograd runs). "
        f"Make the kernel reproduce it again (this file's tests must pass with the kernel on), then record "
        f"{got!r} for it in rlcore/kernels/selection.py CHECKED_AGAINST")


def test_fingerprints_ignore_docstrings_comments_and_layout_but_not_code() -> None:
    def documented():
        def loss(x):
            """A docstring."""
            return x + 1  # a comment
        return loss

    def spaced():
        def loss(x):

            return x + 1
        return loss

    def edited():
        def loss(x):
            return x + 2
        return loss

    assert fingerprint(documented()) == fingerprint(spaced()) != fingerprint(edited())


def test_an_edited_or_replaced_reference_makes_its_kernel_step_aside(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    monkeypatch.setitem(CHECKED_AGAINST, "rlcore.algos.ppo.PPOLoss.loss", "0" * 16)  # as if the source were edited
    assert PPO(BOX, spaces.Discrete(2), PPOConfig())._kernel is None
    assert "rlcore.algos.ppo.PPOLoss.loss is not the code its kernel was checked against" in caplog.text
    monkeypatch.undo()

    def td_loss(self, q_taken, targets, weight):  # a replacement patched into the stock class
        return (q_taken - targets).abs().mean(), q_taken - targets

    monkeypatch.setattr(DQN, "td_loss", td_loss)
    assert DQN(BOX, spaces.Discrete(2), DQNConfig())._kernel is None
    monkeypatch.undo()
    assert DQN(BOX, spaces.Discrete(2), DQNConfig())._kernel is not None


# ------------------------------------------------------------------- on a GPU the references run, and agree
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("options", [{}, {"double": True, "loss": "mse"}, {"prioritized": True}])
def test_on_cuda_dqn_trains_through_autograd_like_the_cpu_kernel(options: dict, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    cpu, cuda = filled_dqn(0, **options), filled_dqn(0, device="cuda", **options)
    assert cpu._kernel is not None and cuda._kernel is None
    assert "dqn: autograd reference path, because the parameters live on cuda" in caplog.text
    cpu_metrics, cuda_metrics = cpu.train(5), cuda.train(5)
    assert cuda_metrics["train/loss"] == pytest.approx(cpu_metrics["train/loss"], rel=1e-4)
    for a, b in zip(cpu.q_net.parameters(), cuda.q_net.parameters()):
        assert torch.allclose(a, b.cpu(), atol=1e-5)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("algo_name", PG_ALGOS)
def test_on_cuda_the_policy_gradient_reference_matches_the_cpu_kernel(algo_name: str) -> None:
    env = gym.make("CartPole-v1")
    settings = {"net_arch": [32, 32], "ent_coef": 0.01, "n_steps": 16}
    if algo_name == "ppo":
        settings.update(batch_size=16, n_epochs=3, clip_range_vf=0.2)
    algos = {device: build_algorithm(algo_name, env.observation_space, env.action_space, settings, seed=7,
                                     num_envs=2, device=device) for device in ("cpu", "cuda")}
    assert algos["cpu"]._kernel is not None and algos["cuda"]._kernel is None
    batch = fake_rollout(algos["cpu"], 32, torch.Generator().manual_seed(11))
    for device, algo in algos.items():
        algo.optimize({key: value.to(device) for key, value in batch.items()})
    for on_cpu, on_cuda in zip(algos["cpu"].policy.parameters(), algos["cuda"].policy.parameters()):
        assert torch.allclose(on_cpu, on_cuda.cpu(), atol=1e-5), (on_cpu - on_cuda.cpu()).abs().max()


# ------------------------------------------------- SAC, TD3 and DDPG (kernels/continuous_q.py)
PENDULUM_LIKE = spaces.Box(-np.inf, np.inf, (3,), np.float32)
WIDE_ACTIONS = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 5.0], np.float32))


def filled_continuous(name: str, seed: int, observation_space: gym.Space = PENDULUM_LIKE, **options):
    settings = {"batch_size": 16, "buffer_size": 1000, "net_arch": [32, 32], "learning_starts": 0, **options}
    algo = build_algorithm(name, observation_space, WIDE_ACTIONS, settings, seed=seed)
    rng = np.random.default_rng(0)
    for t in range(200):
        obs, next_obs = (rng.normal(size=(1, 3)).astype(np.float32) if observation_space is PENDULUM_LIKE
                         else rng.integers(5, size=1) for _ in range(2))
        action = (WIDE_ACTIONS.low + rng.random((1, 2)) * (WIDE_ACTIONS.high - WIDE_ACTIONS.low)).astype(np.float32)
        algo.replay.add({"obs": obs, "action": action, "reward": rng.normal(size=1).astype(np.float32),
                         "next_obs": next_obs, "terminated": np.array([t % 17 == 0]),
                         "truncated": np.array([t % 23 == 0])})
    return algo


@pytest.mark.parametrize(("name", "options"), [
    ("sac", {}), ("sac", {"ent_coef": 0.2, "n_critics": 3}), ("sac", {"target_update_interval": 2, "n_step": 3}),
    ("sac", {"observation_space": spaces.Discrete(5)}), ("sac", {"activation": "tanh", "critic_arch": [16]}),
    ("sac", {"use_sde": True, "log_std_init": -1.0}), ("sac", {"use_sde": True, "activation": "tanh", "ent_coef": 0.3}),
    ("sac", {"use_sde": True, "net_arch": [], "log_std_init": -0.5}),
    ("td3", {}), ("td3", {"policy_delay": 3, "target_policy_noise": 0.5, "target_noise_clip": 0.3}),
    ("ddpg", {}), ("ddpg", {"n_step": 2}),
])
def test_continuous_q_kernels_train_and_act_like_autograd(name: str, options: dict) -> None:
    fast, slow = filled_continuous(name, 0, **options), filled_continuous(name, 0, fast_path=False, **options)
    assert fast._kernel is not None and slow._kernel is None
    for _ in range(3):
        fast_metrics, slow_metrics = fast.train(3), slow.train(3)
    assert fast_metrics.keys() == slow_metrics.keys()
    for key, value in slow_metrics.items():
        assert fast_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for label, network in slow.networks().items():
        for a, b in zip(fast.networks()[label].parameters(), network.parameters()):
            assert torch.allclose(a, b, atol=1e-5), (label, (a - b).abs().max())
    for label, optimizer in slow.optimizers().items():
        assert torch.allclose(fast.optimizers()[label].flat_params, optimizer.flat_params, atol=1e-5), label
    obs = filled_continuous(name, 1, **options).replay.sample(64, torch.Generator().manual_seed(0))["obs"]
    for deterministic in (True, False):
        fast.generator.manual_seed(3)
        slow.generator.manual_seed(3)
        got, expected = fast.act(obs, deterministic=deterministic), slow.act(obs, deterministic=deterministic)
        assert torch.allclose(got, expected, atol=1e-5)
        low, high = torch.as_tensor(WIDE_ACTIONS.low), torch.as_tensor(WIDE_ACTIONS.high)
        assert bool((got >= low).all() and (got <= high).all())


class OwnSACStep(SAC):
    def gradient_step(self, batch):
        return super().gradient_step(batch)


@pytest.mark.parametrize(("build", "reason"), [
    (lambda: SAC(BOX, WIDE_ACTIONS, SACConfig()), None),
    (lambda: TD3(BOX, WIDE_ACTIONS, TD3Config()), None),
    (lambda: SAC(BOX, WIDE_ACTIONS, SACConfig(fast_path=False)), "fast_path=False"),
    (lambda: OwnSACStep(BOX, WIDE_ACTIONS, SACConfig()), "OwnSACStep overrides gradient_step"),
    (lambda: TD3(BOX, WIDE_ACTIONS, TD3Config(activation="gelu")), "not a plain"),
    (lambda: SAC(MINATAR, WIDE_ACTIONS, SACConfig()), "the encoder SmallCNN has no kernel"),
])
def test_the_continuous_q_kernel_runs_only_for_stock_pieces(build, reason: str | None, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    algo = build()
    assert (algo._kernel is None) == (reason is not None)
    lines = [record.getMessage() for record in caplog.records if record.name == "rlcore.kernels"
             and not record.getMessage().startswith("FlatAdam")]
    assert len(lines) == 1 and (reason is None or reason in lines[0]), lines


# ------------------------------------- a subclass overriding what a kernel reproduces trains through its own code
REPRODUCED = {  # kernel: (the class whose code it reproduces, every method of it whose work the kernel does)
    SACKernel: (SAC, {"gradient_step", "policy_action", "policy_draws", "policy_sample", "ent_coef", "amp_forward"}),
    TD3Kernel: (TD3, {"gradient_step", "policy_action", "amp_forward"}),
    TDKernel: (DQN, {"td_loss", "targets", "_td_step", "amp_forward", "q_values"}),
    ActorCriticKernel: (OnPolicyAlgorithm, {"_sample", "_masked", "autocast"}),
    LatentModelKernel: (MuZero, {"reference_model_step"}),
}


@pytest.mark.parametrize("kernel", list(REPRODUCED), ids=lambda kernel: kernel.__name__)
def test_each_kernel_lists_the_methods_it_reproduces_and_their_code_is_checked(kernel: type) -> None:
    reference, methods = REPRODUCED[kernel]
    assert set(kernel.REPRODUCES) == methods
    for name in kernel.REPRODUCES:
        assert reference_name(getattr(reference, name)) in CHECKED_AGAINST, name


def test_override_gates_shut_for_overridden_methods_only() -> None:
    class Own(SAC):
        def ent_coef(self):
            return super().ent_coef()

    class Further(Own):  # inherits the override
        pass

    assert override_gates(object.__new__(SAC), SAC, ("ent_coef", "gradient_step")) == [
        (False, "SAC overrides ent_coef"), (False, "SAC overrides gradient_step")]
    assert override_gates(object.__new__(Further), SAC, ("gradient_step", "ent_coef")) == [
        (False, "Further overrides gradient_step"), (True, "Further overrides ent_coef")]


def counting_subclass(base: type, name: str, calls: list[str]) -> type:
    """A subclass of ``base`` whose ``name`` notes each call in ``calls`` and does what ``base``'s does."""
    stock = getattr(base, name)

    def override(self, *args, **kwargs):
        calls.append(name)
        return stock(self, *args, **kwargs)

    return type(f"Own{base.__name__}", (base,), {name: override})


SHORT_RUNS = {  # a few hundred env steps, the kernel on for the stock class
    SAC: ("Pendulum-v1", {"total_env_steps": 200, "learning_starts": 100}),
    TD3: ("Pendulum-v1", {"total_env_steps": 200, "learning_starts": 100}),
    DDPG: ("Pendulum-v1", {"total_env_steps": 200, "learning_starts": 100}),
    DQN: ("CartPole-v1", {"total_env_steps": 300, "learning_starts": 100, "exploration_fraction": 0.2}),
    PPO: ("CartPole-v1", {"total_env_steps": 128, "num_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}),
    A2C: ("CartPole-v1", {"total_env_steps": 64, "num_envs": 2, "n_steps": 8}),
}


@pytest.mark.parametrize(("base", "name"), [
    *((SAC, name) for name in sorted(REPRODUCED[SACKernel][1])),
    *((TD3, name) for name in sorted(REPRODUCED[TD3Kernel][1])),
    (DDPG, "gradient_step"), (DDPG, "amp_forward"),
    *((DQN, name) for name in sorted(REPRODUCED[TDKernel][1])),
    *((PPO, name) for name in sorted(REPRODUCED[ActorCriticKernel][1])),
    (A2C, "_masked"),
], ids=lambda value: value if isinstance(value, str) else value.__name__)
def test_a_subclass_overriding_a_reproduced_method_trains_through_its_override(base: type, name: str,
                                                                               caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlcore.kernels")
    env_id, settings = SHORT_RUNS[base]
    calls: list[str] = []
    own = counting_subclass(base, name, calls)
    agent = rlcore.train(own, env_id, **{"net_arch": [16], **settings}, seed=0, eval_freq=0, device="cpu",
                         log_dir=None, progress_bar=False)
    assert agent.algo._kernel is None
    lines = [record.getMessage() for record in caplog.records if record.name == "rlcore.kernels"
             and not record.getMessage().startswith("FlatAdam")]
    assert f"{base.name}: autograd reference path, because {own.__name__} overrides {name}" in lines, lines
    assert calls, f"{own.__name__}.{name} was never called"


@pytest.mark.parametrize("base", list(SHORT_RUNS), ids=lambda base: base.__name__)
def test_the_short_runs_of_the_stock_classes_take_the_kernel(base: type) -> None:
    env_id, settings = SHORT_RUNS[base]
    agent = rlcore.train(base, env_id, **{"net_arch": [16], **settings, "total_env_steps": 8}, seed=0, eval_freq=0,
                         device="cpu", log_dir=None, progress_bar=False)
    assert agent.algo._kernel is not None  # so the runs above leave the kernel for their override only


# ------------------------------------------------- bfloat16 products (kernels/mlp_bf16.py, amp="bf16")
def autocast_reference(net: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What ``amp="bf16"``'s reference computes: the output under bf16 autocast cast to float32, then the input's
    and every parameter's gradient for ``grad_output``."""
    x = x.clone().requires_grad_(True)
    for param in net.parameters():
        param.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = net(x)
    output = output.float()
    output.backward(grad_output)
    return (output.detach(), x.grad, *(param.grad.clone() for param in net.parameters()))


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize(("widths", "activation", "tolerance"), [
    ((64, [96, 80], 72), "relu", 1e-2),  # every layer wide: autocast's arithmetic, bias sums aside
    ((64, [96, 80], 72), "tanh", 1e-2),
    ((5, [256, 256], 2), "relu", 0.1),  # thin first and last layers in float32 (fused): bf16 rounding apart
    ((6, [128, 96, 80], 1), "relu", 0.1),  # fused thin edges around two wide layers
    ((4, [128, 96], 1), "tanh", 0.1),
])
def test_the_bf16_mlp_kernel_reproduces_autocast(widths: tuple, activation: str, tolerance: float) -> None:
    torch.manual_seed(0)
    net = mlp(*widths, activation)
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    kernel = BF16MLPKernel(layers, act)
    assert kernel.wide == [min(layer.weight.shape) >= BF16_MIN_DIM for layer in layers]
    x, grad_output = torch.randn(48, widths[0]), torch.randn(48, widths[2])
    output, cache = kernel.forward(x.numpy())
    output = torch.from_numpy(output.copy())
    input_grad = torch.from_numpy(kernel.backward(cache, grad_output.numpy(), input_grad=True).copy())
    got = (output, input_grad, *(param.grad.clone() for param in net.parameters()))
    expected = autocast_reference(net, x, grad_output)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert relative_error(a, b) < tolerance, (index, relative_error(a, b))
    assert relative_error(output, net(x).detach()) > 1e-4  # the products did run in bfloat16


@pytest.mark.parametrize("inputs", [5, 28])
def test_the_fused_thin_layer_passes_match_numpy(inputs: int) -> None:
    """Each pass of kernels/thin_layers_bf16.py against the same arithmetic in numpy/torch (an observation of a few
    inputs through the numba loops, and BipedalWalker's 24 + 4 through numpy's BLAS)."""
    assert 5 < thin.BLAS_MIN_INPUTS <= 28
    rng = np.random.default_rng(0)
    rows, width, outputs = 37, 96, 2
    x, weight0 = rng.normal(size=(rows, inputs)).astype(np.float32), rng.normal(size=(width, inputs)).astype(np.float32)
    bias0, weight1 = rng.normal(size=width).astype(np.float32), rng.normal(size=(outputs, width)).astype(np.float32)
    bias1, grad = rng.normal(size=outputs).astype(np.float32), rng.normal(size=(rows, outputs)).astype(np.float32)
    hidden = torch.empty(rows, width, dtype=torch.bfloat16)
    thin.first_layer_forward(x, np.ascontiguousarray(weight0.T), bias0, np.empty((rows, width), np.float32),
                             thin.bits(hidden))
    expected = torch.relu(torch.from_numpy(x @ weight0.T + bias0)).bfloat16()
    assert (hidden == expected).float().mean() > 0.999  # round to nearest even as torch (sums may differ in order)
    z = torch.from_numpy(rng.normal(size=(rows, width)).astype(np.float32)).bfloat16()  # a wide layer's output
    out = np.empty((rows, outputs), np.float32)
    thin.last_layer_forward(thin.bits(z), weight1, bias1, out)
    relu_z = torch.relu(z).float().numpy()
    assert np.allclose(out, relu_z @ weight1.T + bias1, atol=1e-4)
    weight_grad, bias_grad, below_bias = np.empty_like(weight1), np.empty_like(bias1), np.empty(width, np.float32)
    below = torch.empty_like(z)
    thin.last_layer_backward(grad, thin.bits(z), weight1, weight_grad, bias_grad, True, thin.bits(below), below_bias)
    below_expected = (grad @ weight1) * (relu_z > 0)
    assert torch.equal(below, torch.from_numpy(below_expected).bfloat16())
    assert np.allclose(weight_grad, grad.T @ relu_z, atol=1e-4) and np.allclose(bias_grad, grad.sum(0), atol=1e-5)
    assert np.allclose(below_bias, below_expected.sum(0), atol=1e-4)
    weight_grad0, bias_grad0, x_grad = np.empty_like(weight0), np.empty_like(bias0), np.empty_like(x)
    thin.first_layer_backward(x, thin.bits(hidden), thin.bits(below), np.ascontiguousarray(weight0.T),
                              np.empty((rows, width), np.float32), weight_grad0,
                              bias_grad0, True, True, x_grad)
    masked = below.float().numpy() * (hidden.float().numpy() > 0)
    assert np.allclose(weight_grad0, masked.T @ x, atol=1e-4) and np.allclose(bias_grad0, masked.sum(0), atol=1e-4)
    assert np.allclose(x_grad, masked @ weight0, atol=1e-4)
    # the input's gradient alone (an actor's loss through a critic): the parameters' gradients are not written
    no_grad, no_bias, x_grad_alone = np.empty((0, 0), np.float32), np.empty(0, np.float32), np.zeros_like(x)
    thin.first_layer_backward(x, thin.bits(hidden), thin.bits(below), np.ascontiguousarray(weight0.T),
                              np.empty((rows, width), np.float32), no_grad, no_bias, False, True, x_grad_alone)
    assert np.allclose(x_grad_alone, x_grad, atol=1e-6)


def test_the_bf16_mlp_kernel_uses_the_weights_of_its_last_refresh() -> None:
    torch.manual_seed(0)
    net = mlp(8, [64, 64], 3)
    layers, act = plain_mlp_layers(net)
    ensure_grads(layers)
    kernel = BF16MLPKernel(layers, act)
    x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    before = kernel.forward(x)[0].copy()
    with torch.no_grad():
        layers[1].weight.mul_(2.0)  # in place, as an optimizer step
    assert np.array_equal(kernel.forward(x)[0], before)
    kernel.refresh_weights()
    assert not np.allclose(kernel.forward(x)[0], before, atol=1e-2)
    assert torch.equal(kernel.weights16[1], layers[1].weight.detach().bfloat16())


@pytest.mark.parametrize(("name", "extra"), [
    ("sac", {}), ("td3", {}), ("ddpg", {}),
    ("sac", {"use_sde": True, "log_std_init": -1.0}), ("sac", {"use_sde": True, "activation": "tanh"}),
])
def test_continuous_q_bf16_kernels_step_like_the_autocast_reference(name: str, extra: dict, monkeypatch) -> None:
    """One gradient step from a loaded state (the kernel must pick the new weights up): the same losses, and
    gradients within bf16 rounding (the kernel keeps thin layers in float32, where autocast rounds them); SAC's
    gSDE actor too (its networks under autocast, the distribution in float32).

    bfloat16 products compute the same on a CPU without AMX (only slower), where ``amp="bf16"`` would fall back to
    float32: the test pretends AMX so that it checks the bf16 kernel on every machine."""
    from rlcore import precision
    from rlcore.kernels.mlp_bf16 import BF16MLPKernel

    monkeypatch.setattr(precision, "fast_bf16_matmul", lambda: True)
    options = {"net_arch": [96, 64], "amp": "bf16", **extra}
    fast, slow = filled_continuous(name, 0, **options), filled_continuous(name, 0, fast_path=False, **options)
    assert fast.amp == slow.amp == "bf16" and fast._kernel is not None and fast._kernel.bf16 and slow._kernel is None
    assert all(isinstance(kernel, BF16MLPKernel) for kernel in fast._kernel.kernels())
    assert (fast._kernel.gsde is not None) == bool(extra.get("use_sde"))
    other = filled_continuous(name, 5, **options).state_dict()
    for algo in (fast, slow):
        algo.load_state_dict(other)
        algo.updates = 1  # TD3's and DDPG's next step updates the actor
    fast_metrics, slow_metrics = fast.train(1), slow.train(1)
    assert fast_metrics.keys() == slow_metrics.keys() and "train/actor_loss" in slow_metrics
    for key, value in slow_metrics.items():
        assert fast_metrics[key] == pytest.approx(value, rel=5e-3, abs=1e-5), key
    for label in ("actor", "critic"):
        got, expected = (getattr(algo, f"{label}_optimizer").flat_grads for algo in (fast, slow))
        assert relative_error(got, expected) < 0.1, (label, relative_error(got, expected))
    for _ in range(3):  # and a few more steps stay close (Adam's first steps magnify bf16 rounding to ~lr)
        fast.train(2), slow.train(2)
    for a, b in zip(fast.critic.parameters(), slow.critic.parameters()):
        assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()
    assert all(param.dtype == torch.float32 for param in fast.critic.parameters())


@pytest.mark.parametrize(("name", "options"), [
    ("sac", {"net_arch": [96, 64]}), ("sac", {"net_arch": [96, 80, 64], "n_critics": 3}),
    ("td3", {"net_arch": [96, 64]}), ("td3", {"net_arch": [96, 80, 64], "policy_delay": 1}),
])
def test_stacked_bf16_critics_step_like_the_critics_one_by_one(name: str, options: dict, monkeypatch) -> None:
    """kernels/stacked_bf16.py batches the twin critics' wide products; the critics run one by one are its
    reference: the same target values, losses and gradients (the same bfloat16 arithmetic, up to the batched
    products' order of summation), step after step; also with two wide layers and three critics."""
    from rlcore import precision
    from rlcore.kernels.stacked_bf16 import StackedBF16MLPs

    monkeypatch.setattr(precision, "fast_bf16_matmul", lambda: True)
    stacked, single = (filled_continuous(name, 0, amp="bf16", **options) for _ in range(2))
    critics = single._kernel.critics
    assert isinstance(stacked._kernel.critics.stacked_online, StackedBF16MLPs)
    assert isinstance(critics.stacked_target, StackedBF16MLPs)
    critics.stacked_online = critics.stacked_target = None  # the reference path
    for algo in (stacked, single):
        algo.updates = 1  # TD3's next step updates the actor (SAC's every step does)
    for step in range(4):
        metrics, reference = stacked.train(1), single.train(1)
        assert metrics.keys() == reference.keys() and "train/actor_loss" in reference
        for key, value in reference.items():
            assert metrics[key] == pytest.approx(value, rel=1e-3, abs=1e-6), (step, key)
        for label in ("actor", "critic"):
            got, expected = (getattr(algo, f"{label}_optimizer").flat_grads for algo in (stacked, single))
            assert relative_error(got, expected) < 1e-3, (step, label, relative_error(got, expected))


@pytest.mark.parametrize(("amp", "widths", "amx", "expected"), [
    ("auto", (256, 256), True, "bf16"), ("auto", (400, 300), True, "bf16"), ("auto", (256, 64), True, None),
    ("auto", (256, 256), False, None), ("bf16", (16,), True, "bf16"), ("bf16", (256,), False, None),
    (None, (256, 256), True, None),
])
def test_amp_resolves_to_bf16_only_on_amx_cpus(amp, widths, amx: bool, expected, monkeypatch, caplog) -> None:
    from rlcore import precision

    monkeypatch.setattr(precision, "fast_bf16_matmul", lambda: amx)
    caplog.set_level(logging.INFO, logger="rlcore.algos.off_policy")
    algo = SAC(PENDULUM_LIKE, WIDE_ACTIONS, SACConfig(amp=amp, net_arch=widths))
    assert algo.amp == expected and (algo._kernel.bf16 if algo._kernel is not None else None) == (expected == "bf16")
    lines = [record for record in caplog.records if record.name == "rlcore.algos.off_policy"]
    assert len(lines) == 1 and f"amp={amp!r}" in lines[0].getMessage()
    assert (lines[0].levelno == logging.WARNING) == (amp == "bf16" and not amx)
    assert resolve_amp(amp, torch.device("cuda"), widths)[0] == ("bf16" if amp == "bf16" else None)


def test_amp_must_be_a_known_value() -> None:
    with pytest.raises(ValueError, match=r"amp must be one of \['auto', 'bf16', None\], got 'fp16'"):
        SACConfig(amp="fp16")


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, False, True), (False, True, True), (False, False, False), (None, None, False)])
def test_bf16_hardware_is_amx_or_avx512_bf16(amx, avx512_bf16, expected, monkeypatch) -> None:
    """Either instruction set makes bfloat16 products faster than float32; a check that raises counts as absent."""
    from rlcore.kernels import mlp_bf16

    def answer(value):
        def check() -> bool:
            if value is None:
                raise RuntimeError("no cpuinfo")
            return value
        return check

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", answer(amx), raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", answer(avx512_bf16), raising=False)
    assert mlp_bf16.bf16_hardware() is expected


@pytest.mark.parametrize(("hardware", "speedup", "expected"), [
    (True, 2.0, True), (True, 4.1, True), (True, 0.6, False), (True, 1.2, False), (False, 2.0, False)])
def test_bf16_products_are_taken_only_where_they_ran_faster(hardware, speedup, expected, monkeypatch) -> None:
    """The instructions are not enough (a Xeon VM reporting AVX512-BF16 ran bfloat16 products at ~0.6x float32's
    speed): ``fast_bf16_matmul`` also needs the timed product at least ``BF16_MIN_SPEEDUP`` faster, and says why
    not; without the instructions nothing is timed."""
    from rlcore import precision
    from rlcore.kernels import mlp_bf16

    def timed() -> float:
        assert hardware, "timed without bfloat16 instructions"
        return speedup

    monkeypatch.setattr(mlp_bf16, "bf16_hardware", lambda: hardware)
    monkeypatch.setattr(mlp_bf16, "bf16_speedup", timed)
    assert mlp_bf16.fast_bf16_matmul.__wrapped__() is expected
    if not expected:
        reason = mlp_bf16.slow_bf16_reason()
        assert (f"ran {speedup:.2f}x float32's speed" in reason) if hardware else ("no AMX tiles" in reason)
        monkeypatch.setattr(precision, "fast_bf16_matmul", mlp_bf16.fast_bf16_matmul.__wrapped__)
        assert resolve_amp("auto", torch.device("cpu"), (256, 256)) == (None, f"amp='auto': float32 gradient steps "
                                                                          f"({reason})")


def test_the_bf16_speedup_is_a_timed_ratio() -> None:
    from rlcore.kernels import mlp_bf16

    speedup = mlp_bf16.bf16_speedup.__wrapped__(size=64, repeats=2)
    assert math.isfinite(speedup) and speedup > 0.0
