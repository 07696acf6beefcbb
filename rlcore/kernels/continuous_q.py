"""SAC's and TD3's (and DDPG's) gradient steps and acting for the stock networks on the CPU, in numpy.

Reproduces: :meth:`rlcore.algos.sac.SAC.gradient_step` and :meth:`rlcore.algos.td3.TD3.gradient_step` (DDPG is TD3
with one critic) through autograd, for a :class:`~rlcore.nets.continuous.SquashedGaussianActor` (or SAC's gSDE
actor, :class:`~rlcore.nets.continuous.StateDependentSquashedActor`: :class:`GSDEActorKernel`) or
:class:`~rlcore.nets.continuous.DeterministicActor` and a :class:`~rlcore.nets.continuous.QCritics` whose networks
are plain MLPs on flattened (or one-hot) observations: the same random draws from the algorithm's generator, the
same targets and losses, the gradients autograd writes into every ``.grad`` (the squashed Gaussian's and the
critics' differentiated by hand), the optimizers' steps and the Polyak updates; and the policy's action for acting
(:func:`rlcore.nets.continuous.squashed_gaussian`). ``tests/test_kernels.py`` trains with and without it and
compares the parameters.

Where the time goes (Pendulum-v1, rl-zoo's settings: one gradient step of 256x256 networks on 256 rows per env
step): the 256x256 layers' products (16 per SAC step: 8 forward, 4 in the critics' backward, 2 for the actor
loss's gradient through the critics w.r.t. the action, 2 in the actor's backward) are the floor. Autograd's step
took ~2.5x their time on this project's 2-core machines: new tensors for every intermediate each step (page faults
and cold caches), the graph's bookkeeping and per-op dispatch. Here every intermediate has a buffer reused each step
(:class:`~rlcore.kernels.mlp.MLPKernel`), the critics' weight gradients of the actor loss are never computed (as
autograd with ``backward(inputs=actor parameters)``), and the elementwise work on ``[B, A]`` runs in numpy.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rlcore.distributions import state_dependent_std as reference_state_dependent_std
from rlcore.kernels.distributions import state_dependent_std
from rlcore.kernels.mlp import MLPKernel, plain_mlp_layers
from rlcore.kernels.mlp_bf16 import BF16MLPKernel
from rlcore.kernels.selection import first_edited
from rlcore.kernels.stacked_bf16 import StackedBF16MLPs, stackable
from rlcore.kernels.td import ADDMM_MIN_DIM
from rlcore.nets.base import FlattenExtractor
from rlcore.nets.continuous import (
    HALF_LOG_TWO_PI,
    LOG_STD_MAX,
    LOG_STD_MIN,
    LOG_TWO,
    DeterministicActor,
    QCritics,
    SquashedGaussianActor,
    StateDependentSquashedActor,
    squashed_gaussian,
    state_dependent_squashed,
)
from rlcore.optim import polyak_update


def refusal(actor: Any, critic: Any, critic_target: Any, references: tuple[Any, ...],
            actor_target: Any = None) -> str | None:
    """Why the kernel does not reproduce these networks (the stock classes with plain-MLP bodies on flattened or
    one-hot observations, float32 on the CPU); None when it does.

    Args:
        references: The algorithm's code the kernel reproduces (its gradient step), whose fingerprints must still be
            the checked ones.
    """
    actor_class = DeterministicActor if actor_target is not None else SquashedGaussianActor
    gsde = actor_target is None and type(actor) is StateDependentSquashedActor
    if (type(actor) is not actor_class and not gsde) or (actor_target is not None
                                                         and type(actor_target) is not actor_class):
        return f"the actor is a {type(actor).__name__}, not the stock {actor_class.__name__}"
    if type(critic) is not QCritics or type(critic_target) is not QCritics:
        return f"the critic is a {type(critic).__name__}, not the stock QCritics"
    device = next(actor.parameters()).device
    if device.type != "cpu":
        return f"the parameters live on {device} (the kernels run on the CPU)"
    networks = [actor, critic, critic_target] + ([actor_target] if actor_target is not None else [])
    for network in networks:
        if type(network.features) is not FlattenExtractor:
            return f"the encoder {type(network.features).__name__} has no kernel (flatten and one-hot have)"
    actor_body = nn.Sequential(*actor.body, actor.mu) if gsde else actor.body  # gSDE: body and mean layer, plain
    bodies = [actor_body, *critic.q_nets] + ([actor_target.body] if actor_target is not None else [])
    targets = list(critic_target.q_nets)
    if any(plain_mlp_layers(body) is None for body in bodies + targets):
        return "a network is not a plain Linear/ReLU|Tanh MLP"
    if not all(MLPKernel.applies(plain_mlp_layers(body)[0]) for body in [actor_body, *critic.q_nets]):  # type: ignore[index]
        return "the parameters are not contiguous float32 tensors with gradients"
    if not all(MLPKernel.applies(plain_mlp_layers(body)[0], grads=False) for body in bodies + targets):  # type: ignore[index]
        return "the parameters are not contiguous float32 tensors"
    if gsde and (actor.log_std.grad is None or not MLPKernel.applies([(actor.log_std,)])):  # type: ignore[list-item]
        return "gSDE's log_std is not a contiguous float32 tensor with a gradient"
    shared = (QCritics.forward, QCritics.first, FlattenExtractor.forward, polyak_update)
    own = ((StateDependentSquashedActor.forward, state_dependent_squashed, reference_state_dependent_std) if gsde
           else (SquashedGaussianActor.forward, squashed_gaussian) if actor_target is None
           else (DeterministicActor.forward,))
    return first_edited((*shared, *own, *references))


def mlp_kernel(module: Any, *, grads: bool = True, bf16: bool = False) -> MLPKernel:
    """An :class:`MLPKernel` over a plain MLP (checked by :func:`refusal`); with ``bf16``, its products in bfloat16
    as autocast computes them (:class:`~rlcore.kernels.mlp_bf16.BF16MLPKernel`)."""
    layers, activation = plain_mlp_layers(module)  # type: ignore[misc]
    if bf16:
        return BF16MLPKernel(layers, activation, grads=grads)
    return MLPKernel(layers, activation, grads=grads, addmm_min_dim=ADDMM_MIN_DIM)


def flat_features(extractor: Any, obs: Tensor) -> np.ndarray:
    """What the networks see (flattened floats, or one-hot), a C-contiguous float32 array ``[B, F]``."""
    if getattr(extractor, "one_hot", False):
        return np.ascontiguousarray(extractor(obs).numpy())
    features = obs.reshape(obs.shape[0], -1)
    return np.ascontiguousarray((features if features.dtype == torch.float32 else features.float()).numpy())


class CriticsKernel:
    """The Q-networks of a :class:`QCritics` and of its target on rows ``[features, action]``.

    Args:
        critic, critic_target: The online critics (parameters with a ``.grad``) and their targets.
        bf16: Products in bfloat16 (``amp="bf16"``).
    """

    def __init__(self, critic: QCritics, critic_target: QCritics, bf16: bool = False) -> None:
        self.online = [mlp_kernel(q_net, bf16=bf16) for q_net in critic.q_nets]
        self.target = [mlp_kernel(q_net, grads=False, bf16=bf16) for q_net in critic_target.q_nets]
        self.stacked_online = StackedBF16MLPs(self.online) if stackable(self.online) else None  # type: ignore[arg-type]
        """The online critics with their wide products batched (:mod:`.stacked_bf16`), when they stack; else None
        and they run one by one."""
        self.stacked_target = StackedBF16MLPs(self.target) if stackable(self.target) else None  # type: ignore[arg-type]
        self.features_dim = int(critic.features.out_dim)
        self._rows: dict[tuple[str, int], np.ndarray] = {}
        self._grads: dict[int, list[np.ndarray]] = {}

    def inputs(self, purpose: str, features: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``[features, action]`` ``[B, F + A]`` in a buffer of ``purpose`` (valid until its next use)."""
        key = (purpose, features.shape[0])
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = np.empty((features.shape[0], self.features_dim + action.shape[1]), np.float32)
        rows[:, : self.features_dim] = features
        rows[:, self.features_dim :] = action
        return rows

    def target_min(self, features: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``min_i Q'_i(s, a)`` ``[B]`` of the target critics."""
        rows = self.inputs("target", features, action)
        if self.stacked_target is not None:
            return self.stacked_target.forward(rows, "eval")[:, :, 0].min(axis=0)
        values = [q_net.forward(rows, "eval")[0][:, 0] for q_net in self.target]
        return values[0].copy() if len(values) == 1 else np.minimum.reduce(values)

    def regression_step(self, features: np.ndarray, action: np.ndarray, target: np.ndarray, scale: float) -> float:
        """Writes the gradient of ``scale * sum_i mean (Q_i(s, a) - target)^2`` into every critic's ``.grad``;
        returns that loss."""
        rows = self.inputs("train", features, action)
        count = rows.shape[0]
        if self.stacked_online is not None:
            errors = self.stacked_online.forward(rows, "train") - target[None, :, None]  # [K, B, 1]
            loss = scale * float(np.vdot(errors, errors)) / count
            errors *= np.float32(2.0 * scale / count)
            self.stacked_online.backward(rows, errors, "train")
            return loss
        loss = 0.0
        for q_net in self.online:
            values, cache = q_net.forward(rows, "train")
            error = values - target[:, None]
            loss += scale * float(np.dot(error[:, 0], error[:, 0])) / count
            error *= np.float32(2.0 * scale / count)
            q_net.backward(cache, error, "train")
        return loss

    def value_and_action_grad(self, features: np.ndarray, action: np.ndarray, critics: int) -> tuple[np.ndarray,
                                                                                                      np.ndarray]:
        """``q = min_i Q_i(s, a)`` over the first ``critics`` critics ``[B]`` and ``d mean(q) / d a`` ``[B, A]``
        (no parameter gradient is written)."""
        rows = self.inputs("pi", features, action)
        count = rows.shape[0]
        if self.stacked_online is not None and critics == len(self.online):
            return self._stacked_value_and_action_grad(rows)
        runs = [q_net.forward(rows, "pi") for q_net in self.online[:critics]]
        values = np.stack([out[:, 0] for out, _ in runs])
        lowest = values.argmin(axis=0) if critics > 1 else None
        action_grad = np.zeros_like(action)
        for index, (q_net, (_, cache)) in enumerate(zip(self.online, runs)):
            grad = self._output_grad(count, index)
            grad.fill(np.float32(1.0 / count))
            if lowest is not None:
                grad[lowest != index] = 0.0
            input_grad = q_net.backward(cache, grad, "pi", input_grad=True, param_grads=False)
            action_grad += input_grad[:, self.features_dim :]  # type: ignore[index]
        return values.min(axis=0), action_grad

    def _stacked_value_and_action_grad(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`value_and_action_grad` over every critic, their products batched."""
        assert self.stacked_online is not None
        values = self.stacked_online.forward(rows, "pi")[:, :, 0]  # [K, B]
        lowest = values.argmin(axis=0)
        grad = np.zeros((len(self.online), rows.shape[0], 1), np.float32)
        grad[lowest, np.arange(rows.shape[0]), 0] = np.float32(1.0 / rows.shape[0])  # d mean(min_i Q_i) / d Q_k
        input_grads = self.stacked_online.backward(rows, grad, "pi", input_grad=True, param_grads=False)
        assert input_grads is not None
        return values.min(axis=0), input_grads[:, :, self.features_dim :].sum(axis=0)

    def _output_grad(self, rows: int, index: int) -> np.ndarray:
        grads = self._grads.setdefault(rows, [])
        while len(grads) <= index:
            grads.append(np.zeros((rows, 1), np.float32))
        return grads[index]


class SquashedSample(NamedTuple):
    """A squashed-Gaussian draw and what its gradient needs (``[B, A]`` arrays; ``log_prob`` ``[B]``)."""

    action: np.ndarray
    log_prob: np.ndarray
    std_noise: np.ndarray
    """``std * eps``: ``d u / d log_std``."""
    log_std_inside: np.ndarray
    """Where the raw ``log_std`` lies within its bounds (where the clamp passes the gradient)."""


def squash(body_output: np.ndarray, noise: np.ndarray) -> SquashedSample:
    """:func:`rlcore.nets.continuous.squashed_gaussian` of the actor body's ``[mean, log_std]`` ``[B, 2A]``."""
    mean, raw_log_std = np.split(body_output, 2, axis=1)
    log_std = np.clip(raw_log_std, LOG_STD_MIN, LOG_STD_MAX)
    std_noise = np.exp(log_std) * noise
    pre_squash = mean + std_noise
    correction = LOG_TWO - pre_squash - np.logaddexp(np.float32(0.0), -2.0 * pre_squash)
    log_prob = (-0.5 * noise * noise - log_std - HALF_LOG_TWO_PI - 2.0 * correction).sum(axis=1)
    inside = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)
    return SquashedSample(np.tanh(pre_squash), log_prob.astype(np.float32), std_noise, inside)


class ContinuousQKernel:
    """What the SAC and TD3 kernels share: the actor's and the critics' kernels over the algorithm's networks.

    Args:
        algo: The algorithm whose stock networks, optimizers and generator the kernel works with.
    """

    def __init__(self, algo: Any) -> None:
        self.algo = algo
        self.bf16 = algo.amp == "bf16"
        self.gsde = (GSDEActorKernel(algo.actor_net, self.bf16) if type(algo.actor_net) is StateDependentSquashedActor
                     else None)
        """SAC with gSDE: the actor's kernels (``actor`` is then its mean layer's)."""
        self.actor = self.gsde.mean if self.gsde is not None else mlp_kernel(algo.actor_net.body, bf16=self.bf16)
        self.critics = CriticsKernel(algo.critic, algo.critic_target, self.bf16)
        self.extractor = algo.actor_net.features
        products = "bfloat16 products, float32 weights" if self.bf16 else "float32"
        actor = (f"gSDE {'x'.join(str(w.shape[0]) for w in self.gsde.body.weights) if self.gsde.body else 'linear'}"
                 if self.gsde is not None else f"plain {widths(self.actor)}")
        self._description = (f"{type(self).__name__}: CPU {products}, {actor} actor, "
                             f"{len(self.critics.online)} critic(s) of {widths(self.critics.online[0])}")

    def __str__(self) -> str:
        return self._description

    def refresh(self, kernels: list[MLPKernel]) -> None:
        """Has the bfloat16 kernels copy their networks' current weights (float32 kernels read them in place)."""
        if self.bf16:
            for kernel in kernels:
                kernel.refresh_weights()  # type: ignore[attr-defined]

    def kernels(self) -> list[MLPKernel]:
        """Every network's kernel (refreshed at the start of a gradient step: anything may have changed them)."""
        actor = self.gsde.kernels() if self.gsde is not None else [self.actor]
        return [*actor, *self.critics.online, *self.critics.target]

    def features(self, batch: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """The batch's ``obs`` and ``next_obs`` as the networks see them, ``[B, F]`` each."""
        return flat_features(self.extractor, batch["obs"]), flat_features(self.extractor, batch["next_obs"])


def widths(kernel: MLPKernel) -> str:
    """The hidden widths of an MLP kernel, e.g. ``256x256``."""
    return "x".join(str(weight.shape[0]) for weight in kernel.weights[:-1])


class GSDESample(NamedTuple):
    """A gSDE draw (:func:`rlcore.nets.continuous.state_dependent_squashed`) and what its gradient needs."""

    action: np.ndarray
    """``tanh(u)``, ``u = mean + latent W``: ``[B, A]``."""
    log_prob: np.ndarray
    """``[B]``."""
    latent: np.ndarray
    """The body's last hidden features ``[B, L]``."""
    z: np.ndarray
    """``(latent W) / std`` ``[B, A]``."""
    std: np.ndarray
    """:func:`~rlcore.distributions.state_dependent_std` ``[B, A]``."""
    mean_inside: np.ndarray
    """Where the mean layer's output lies strictly inside the hardtanh's ``[-2, 2]`` (where it passes gradient)."""


class GSDEActorKernel:
    """SAC's gSDE actor (:class:`~rlcore.nets.continuous.StateDependentSquashedActor`) as two MLP kernels: its
    body up to the last hidden layer's pre-activation, then its mean layer, so that the gradient the noise sends to
    the latent features joins the mean layer's there; ``log_std`` ``[L, A]`` is read and its ``.grad`` written in
    place.

    Args:
        bf16: The two networks' wide products in bfloat16 (``amp="bf16"``, whose reference runs the actor under
            autocast and the distribution's arithmetic in float32, as this kernel does in numpy).
    """

    def __init__(self, actor: StateDependentSquashedActor, bf16: bool = False) -> None:
        layers = list(actor.body)
        self.body = mlp_kernel(nn.Sequential(*layers[:-1]), bf16=bf16) if layers else None
        """Linear, activation, ..., Linear (None without hidden layers: the latent is the features)."""
        self.tanh = bool(layers) and isinstance(layers[-1], nn.Tanh)
        self.mean = mlp_kernel(nn.Sequential(actor.mu), bf16=bf16)
        self.log_std = actor.log_std.detach().numpy()
        self.log_std_grad = actor.log_std.grad.numpy()  # type: ignore[union-attr]

    def kernels(self) -> list[MLPKernel]:
        return [self.mean] if self.body is None else [self.body, self.mean]

    def _latent(self, pre: np.ndarray) -> np.ndarray:
        return np.tanh(pre) if self.tanh else np.maximum(pre, np.float32(0.0))

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean layer's output (before the hardtanh) ``[B, A]`` and the latent features ``[B, L]``."""
        latent = features if self.body is None else self._latent(self.body.predict(features))
        return self.mean.predict(latent), latent

    def sample(self, features: np.ndarray, weights: np.ndarray, purpose: str) -> tuple[GSDESample, tuple]:
        """:func:`~rlcore.nets.continuous.state_dependent_squashed` with ``weights`` ``[L, A]``, and the caches of
        :meth:`backward`."""
        body_cache = None
        if self.body is None:
            latent = features
        else:
            pre, body_cache = self.body.forward(features, purpose)
            latent = self._latent(pre)
        raw_mean, mean_cache = self.mean.forward(latent, purpose)
        clip = np.float32(StateDependentSquashedActor.CLIP_MEAN)
        mean = np.clip(raw_mean, -clip, clip)
        noise = latent @ weights
        std, variance, weight_variance = state_dependent_std(latent, self.log_std)
        pre_squash = mean + noise
        z = noise / std
        correction = LOG_TWO - pre_squash - np.logaddexp(np.float32(0.0), -2.0 * pre_squash)
        log_prob = (-0.5 * z * z - np.log(std) - HALF_LOG_TWO_PI - 2.0 * correction).sum(axis=1)
        inside = (raw_mean > -clip) & (raw_mean < clip)
        sample = GSDESample(np.tanh(pre_squash), log_prob.astype(np.float32), latent, z, std, inside)
        return sample, (body_cache, mean_cache, variance, weight_variance)

    def backward(self, sample: GSDESample, caches: tuple, weights: np.ndarray, grad_pre_squash: np.ndarray,
                 scale: np.float32, purpose: str) -> None:
        """Writes the actor loss's gradient into the actor's ``.grad`` and ``log_std``'s, given its gradient w.r.t.
        ``u`` through ``tanh`` (``grad_pre_squash`` ``[B, A]``) and ``scale`` (``alpha / B``, the weight of each
        row's log-probability in the loss).

        With ``n = latent W``, ``v = latent^2 exp(2 log_std) + eps``, ``std = sqrt(v)``, ``z = n / std``: the
        log-probability's own terms ``-z^2 / 2 - log std`` add ``-scale z / std`` to ``d/dn`` (``u = mean + n``
        gives the rest) and ``scale (z^2 - 1) / (2 v)`` to ``d/dv``; ``W = exp(log_std) eps`` and ``v`` carry them
        to ``log_std``, ``n`` and ``v`` to the latent features (not detached, as SB3's SAC)."""
        body_cache, mean_cache, variance, weight_variance = caches
        latent = sample.latent
        grad_noise = grad_pre_squash - scale * sample.z / sample.std
        grad_variance = scale * (sample.z * sample.z - 1.0) / (2.0 * variance)
        self.log_std_grad[...] = (latent.T @ grad_noise) * weights + 2.0 * weight_variance * (
            (latent * latent).T @ grad_variance)
        grad_mean = (grad_pre_squash * sample.mean_inside).astype(np.float32)
        grad_latent = self.mean.backward(mean_cache, grad_mean, purpose, input_grad=self.body is not None)
        if self.body is None:
            return
        grad_latent = grad_latent + grad_noise @ weights.T + 2.0 * latent * (grad_variance @ weight_variance.T)
        grad_latent *= (1.0 - latent * latent) if self.tanh else (latent > 0.0)
        self.body.backward(body_cache, grad_latent.astype(np.float32, copy=False), purpose)


class SACKernel(ContinuousQKernel):
    """SAC's gradient step and acting over numpy views of the algorithm's networks (see the module docstring)."""

    REPRODUCES: ClassVar[tuple[str, ...]] = ("gradient_step", "policy_action", "policy_draws", "policy_sample",
                                             "ent_coef", "amp_forward")
    """The methods of :class:`~rlcore.algos.sac.SAC` whose work this kernel does instead (it reads ``log_ent_coef``
    and the fixed alpha itself, for ``ent_coef``): a subclass that overrides one of them gets the reference
    (:func:`~rlcore.kernels.selection.override_gates`)."""

    @staticmethod
    def refusal(algo: Any, references: tuple[Any, ...]) -> str | None:
        return refusal(algo.actor_net, algo.critic, algo.critic_target, references)

    def policy_action(self, obs: Tensor, deterministic: bool) -> Tensor:
        """``tanh(mean)`` or a squashed-Gaussian sample ``[N, A]`` (the noise drawn as the reference draws it; gSDE:
        with the envs' weights, as the reference's ``_weights_for`` picks them)."""
        if self.gsde is not None:
            raw_mean, latent = self.gsde.predict(flat_features(self.extractor, obs))
            clip = np.float32(StateDependentSquashedActor.CLIP_MEAN)
            mean = np.clip(raw_mean, -clip, clip)
            if deterministic:
                return torch.from_numpy(np.tanh(mean))
            weights = self.algo._weights_for(mean.shape[0]).numpy()
            noise = latent @ weights if weights.ndim == 2 else np.einsum("bl,bla->ba", latent, weights)
            return torch.from_numpy(np.tanh(mean + noise))
        output = self.actor.predict(flat_features(self.extractor, obs))
        if deterministic:
            return torch.from_numpy(np.tanh(output[:, : output.shape[1] // 2]))
        noise = self.algo.standard_normal(output.shape[0], output.shape[1] // 2).numpy()
        return torch.from_numpy(squash(output, noise).action)

    def gradient_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """:meth:`SAC.gradient_step` on a minibatch of CPU tensors; returns the same metrics (floats)."""
        algo, critics = self.algo, self.critics
        self.refresh(self.kernels())
        obs, next_obs = self.features(batch)
        rows = obs.shape[0]
        if self.gsde is not None:  # SAC.policy_draws: one weight matrix; .policy_sample: gSDE's squashed Gaussian
            weights = np.exp(self.gsde.log_std) * algo.standard_normal(*self.gsde.log_std.shape).numpy()
            pi, cache = self.gsde.sample(obs, weights, "train")
        else:
            noise = algo.standard_normal(2 * rows, algo.action_dim).numpy()
            output, cache = self.actor.forward(obs, "train")
            pi = squash(output, noise[:rows])
        log_ent_coef = algo.log_ent_coef
        if log_ent_coef is not None:
            log_alpha = log_ent_coef.detach().numpy().copy()  # before the step below changes it
            alpha = np.exp(log_alpha)[0]
            entropy_gap = float(np.mean(pi.log_prob + np.float32(algo.target_entropy)))
            log_ent_coef.grad.fill_(-entropy_gap)  # d ent_coef_loss / d log_alpha
            algo.ent_coef_optimizer.step()
            metrics = {"ent_coef": float(alpha), "ent_coef_loss": -float(log_alpha[0]) * entropy_gap}
        else:
            alpha = np.float32(algo._fixed_ent_coef.item())
            metrics = {"ent_coef": float(alpha)}

        if self.gsde is not None:
            next_pi = self.gsde.sample(next_obs, weights, "next")[0]
        else:
            next_pi = squash(self.actor.forward(next_obs, "next")[0], noise[rows:])
        next_q = critics.target_min(next_obs, next_pi.action) - alpha * next_pi.log_prob
        target = batch["reward"].numpy() + batch["discount"].numpy() * next_q
        metrics["critic_loss"] = critics.regression_step(obs, batch["action"].numpy(), target, 0.5)
        algo.critic_optimizer.step()
        self.refresh(critics.online)

        q_pi, value_grad = critics.value_and_action_grad(obs, pi.action, len(critics.online))
        metrics["actor_loss"] = float(np.mean(alpha * pi.log_prob - q_pi))
        # actor_loss = mean(alpha log pi - q): d/du = (-dq/da) (1 - a^2) + (alpha / B) 2a, d/dlog_std = d/du std eps
        # - alpha / B (where the clamp passes it)
        scale = np.float32(alpha / rows)
        grad_pre_squash = 2.0 * scale * pi.action - value_grad * (1.0 - pi.action * pi.action)
        if self.gsde is not None:
            self.gsde.backward(pi, cache, weights, grad_pre_squash, scale, "train")  # type: ignore[arg-type]
        else:
            grad_log_std = (grad_pre_squash * pi.std_noise - scale) * pi.log_std_inside  # type: ignore[union-attr]
            self.actor.backward(cache, np.concatenate((grad_pre_squash, grad_log_std), axis=1).astype(np.float32))
        algo.actor_optimizer.step()

        algo.updates += 1
        if algo.updates % algo.config.target_update_interval == 0:
            polyak_update(algo.critic_target, algo._critic_target_flat, algo.critic, algo.critic_optimizer.flat_params,
                          algo.config.tau)
        return metrics


class TD3Kernel(ContinuousQKernel):
    """TD3's (and DDPG's) gradient step and acting over numpy views of the algorithm's networks."""

    REPRODUCES: ClassVar[tuple[str, ...]] = ("gradient_step", "policy_action", "amp_forward")
    """The methods of :class:`~rlcore.algos.td3.TD3` whose work this kernel does instead: a subclass that overrides
    one of them gets the reference (:func:`~rlcore.kernels.selection.override_gates`). ``tricks`` is not one: the
    kernel reads its result (``algo.twin``), so DDPG's runs."""

    def __init__(self, algo: Any) -> None:
        super().__init__(algo)
        self.actor_target = mlp_kernel(algo.actor_target.body, grads=False, bf16=self.bf16)

    def kernels(self) -> list[MLPKernel]:
        return [*super().kernels(), self.actor_target]

    @staticmethod
    def refusal(algo: Any, references: tuple[Any, ...]) -> str | None:
        return refusal(algo.actor_net, algo.critic, algo.critic_target, references, actor_target=algo.actor_target)

    def policy_action(self, obs: Tensor, deterministic: bool) -> Tensor:
        """``mu(s)`` ``[N, A]``."""
        return torch.from_numpy(np.tanh(self.actor.predict(flat_features(self.extractor, obs))))

    def gradient_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """:meth:`TD3.gradient_step` on a minibatch of CPU tensors; returns the same metrics (floats)."""
        algo, critics, twin = self.algo, self.critics, self.algo.twin
        self.refresh(self.kernels())
        obs, next_obs = self.features(batch)
        algo.updates += 1
        next_action = np.tanh(self.actor_target.forward(next_obs, "eval")[0])
        if twin.target_policy_noise > 0.0:
            smoothing = algo.standard_normal(*next_action.shape).mul_(twin.target_policy_noise).numpy()
            np.clip(smoothing, -twin.target_noise_clip, twin.target_noise_clip, out=smoothing)
            next_action = np.clip(next_action + smoothing, -1.0, 1.0)
        target = batch["reward"].numpy() + batch["discount"].numpy() * critics.target_min(next_obs, next_action)
        metrics = {"critic_loss": critics.regression_step(obs, batch["action"].numpy(), target, 1.0)}
        algo.critic_optimizer.step()

        if algo.updates % twin.policy_delay == 0:
            self.refresh(critics.online[:1])
            output, cache = self.actor.forward(obs, "train")
            action = np.tanh(output)
            q_value, value_grad = critics.value_and_action_grad(obs, action, 1)
            metrics["actor_loss"] = -float(np.mean(q_value))
            grad_output = value_grad * (action * action - 1.0)  # d(-mean q)/d pre-tanh
            self.actor.backward(cache, grad_output.astype(np.float32, copy=False))
            algo.actor_optimizer.step()
            tau = algo.config.tau
            polyak_update(algo.critic_target, algo._critic_target_flat, algo.critic, algo.critic_optimizer.flat_params,
                          tau)
            polyak_update(algo.actor_target, algo._actor_target_flat, algo.actor_net, algo.actor_optimizer.flat_params,
                          tau)
        return metrics
