"""The policy-gradient kernel: acting and the gradient step of a stock actor-critic on the CPU, without autograd.

Reproduces: :meth:`rlcore.algos.onpolicy.OnPolicyAlgorithm.gradient_step`'s autograd path for a stock
:class:`~rlcore.policy.ActorCritic` (plain MLP actor and critic on a flatten/one-hot or SmallCNN encoder), a
Categorical, Gaussian or gSDE policy and a stock loss (PPO's, or REINFORCE's and A2C's): the same ``.grad`` in every
parameter and the same statistics; and the policy's forward for acting. It chains the kernels of the pieces:
:mod:`~rlcore.kernels.cnn` (the encoder), :mod:`~rlcore.kernels.mlp` (actor and critic),
:mod:`~rlcore.kernels.distributions` and :mod:`~rlcore.kernels.pg_losses` (the loss in closed form).
``tests/test_kernels.py`` trains with and without it and compares the parameters.

Profile of PPO's CartPole step (a ``[256, 64]`` minibatch, 64x64 actor and critic): ~330 us per gradient step
here against ~560 us through autograd, the difference being torch's per-op dispatch and autograd's graph.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from rlcore.distributions import MASKED_LOGIT, Categorical, DiagGaussian, Distribution, StateDependentGaussian
from rlcore.kernels import acting
from rlcore.kernels.cnn import SmallCNNKernel
from rlcore.kernels.distributions import categorical_sample, distribution_kernel, gaussian_sample
from rlcore.kernels.mlp import MLPKernel, plain_mlp_layers
from rlcore.kernels.pg_losses import loss_gradients, loss_references
from rlcore.kernels.selection import first_edited
from rlcore.nets.base import FlattenExtractor
from rlcore.normalize import ObservationNormalizer, RewardNormalizer, RunningMeanStd
from rlcore.policy import ActorCritic, LatentActor


def actor_mlp_layers(actor: nn.Module) -> tuple[list, type[nn.Module]] | None:
    """:func:`~rlcore.kernels.mlp.plain_mlp_layers` of the actor; gSDE's :class:`~rlcore.policy.LatentActor` is
    such an MLP whose output layer's input is also an output (:meth:`ActorCriticKernel._actor_output`)."""
    return plain_mlp_layers(nn.Sequential(*actor) if type(actor) is LatentActor else actor)


class ActorCriticKernel:
    """Acting and the gradient step of ``policy`` with ``loss_class``'s closed form; see the module docstring.

    Build it only where :meth:`refusal` finds nothing (after the optimizer gave every parameter its ``.grad``).
    """

    REPRODUCES: ClassVar[tuple[str, ...]] = ("_sample", "_masked", "autocast")
    """The methods of :class:`~rlcore.algos.onpolicy.OnPolicyAlgorithm` whose work this kernel does instead (the
    sampling while collecting, the masking and autocast of the gradient step): a subclass that overrides one of them
    gets the reference (:func:`~rlcore.kernels.selection.override_gates`). The methods that call the kernel
    (``explore``, ``gradient_step``, ...) run a subclass's override anyway."""

    def __init__(self, policy: ActorCritic, distribution: Distribution, loss_class: type) -> None:
        (actor_layers, actor_act), (critic_layers, critic_act) = (
            actor_mlp_layers(policy.actor), plain_mlp_layers(policy.critic))  # type: ignore[misc]
        self.gsde = type(distribution) is StateDependentGaussian
        """gSDE: the actor's last hidden features are part of the distribution's parameters."""
        self.actor = MLPKernel(actor_layers, actor_act)
        self.critic = MLPKernel(critic_layers, critic_act)
        self.extractor = policy.features
        self.encoder = None if type(policy.features) is FlattenExtractor else SmallCNNKernel(policy.features)
        self.one_hot = bool(getattr(policy.features, "one_hot", True))
        self.distribution = distribution
        self.distribution_kernel = distribution_kernel(distribution)
        self.log_std_grad = None if policy.log_std is None else policy.log_std.grad.numpy()  # type: ignore[union-attr]
        self.loss_class = loss_class
        self.loss_gradients = loss_gradients(loss_class)
        widths = "x".join(str(w.shape[0]) for w in self.actor.weights[:-1])
        self._description = (f"ActorCriticKernel: CPU float32, {type(policy.features).__name__} encoder, plain "
                             f"{widths} {actor_act.__name__} actor and critic, {type(distribution).__name__}, "
                             f"{loss_class.__name__} in closed form")

    def __str__(self) -> str:
        return self._description

    @staticmethod
    def refusal(policy: Any, distribution: Distribution, loss_class: type,
                algorithm_references: tuple[Any, ...] = ()) -> str | None:
        """Why the kernel does not reproduce this policy, distribution and loss; None when it does.

        Args:
            algorithm_references: The algorithm's methods the kernel reproduces (:attr:`REPRODUCES`), whose
                fingerprints must still be the checked ones.
        """
        if type(policy) is not ActorCritic:
            return f"the policy is a {type(policy).__name__}, not the stock ActorCritic"
        device = next(policy.parameters()).device
        if device.type != "cpu":
            return f"the parameters live on {device} (the kernels run on the CPU)"
        features = policy.features
        if type(features) is not FlattenExtractor and not SmallCNNKernel.applies(features):
            return f"the encoder {type(features).__name__} has no kernel (flatten, one-hot and SmallCNN have)"
        if distribution_kernel(distribution) is None:
            return (f"the {type(distribution).__name__} distribution has no kernel (Categorical, DiagGaussian and "
                    "StateDependentGaussian have)")
        if loss_gradients(loss_class) is None:
            return (f"the loss is {loss_class.__qualname__}, not a stock loss the kernel reproduces "
                    "(PPOLoss, ActorCriticLoss)")
        if (type(policy.actor) is LatentActor) != (type(distribution) is StateDependentGaussian):
            return "the actor and the distribution are not a stock pair (LatentActor goes with gSDE's distribution)"
        for name, layers in (("actor", actor_mlp_layers(policy.actor)), ("critic", plain_mlp_layers(policy.critic))):
            if layers is None:
                return f"the {name} is not a plain Linear/ReLU|Tanh MLP"
            if not MLPKernel.applies(layers[0]):
                return f"the {name}'s parameters are not contiguous float32 tensors with gradients"
        if policy.log_std is not None and policy.log_std.grad is None:
            return "log_std has no gradient buffer"
        return first_edited((*ActorCriticKernel.references(policy, distribution, loss_class), *algorithm_references))

    @staticmethod
    def references(policy: ActorCritic, distribution: Distribution, loss_class: type) -> tuple[Any, ...]:
        """The code this kernel reproduces for these (stock) pieces."""
        encoder = ((FlattenExtractor.forward,) if type(policy.features) is FlattenExtractor
                   else SmallCNNKernel.REFERENCES)
        actor = (LatentActor.forward,) if type(policy.actor) is LatentActor else ()
        return ((ActorCritic.forward, ActorCritic.value) + encoder + actor
                + distribution_kernel(distribution).REFERENCES + loss_references(loss_class))  # type: ignore

    # --- acting -----------------------------------------------------------------------------
    def features(self, obs: Tensor) -> np.ndarray:
        """What the heads see, as a numpy array: ``[B, *obs_shape] -> [B, F]`` (flattened, one-hot, or the CNN's
        features; the latter a buffer reused per batch size). Float32 vectors skip the extractor's module call."""
        if self.encoder is not None:
            return self.encoder.forward(obs)[0]
        if obs.dtype == torch.float32 and not self.one_hot:
            return obs.reshape(obs.shape[0], -1).numpy()
        return self.extractor(obs).numpy()

    def actor_params(self, obs: Tensor) -> Tensor:
        """The distribution's parameters ``[B, P]`` of prepared observations."""
        return torch.from_numpy(self._actor_output(self.features(obs)))

    def _actor_output(self, features: np.ndarray) -> np.ndarray:
        """The actor's output ``[B, P]``: the logits or means, and with gSDE its latent features after them."""
        if not self.gsde:
            return self.actor.predict(features)
        return np.concatenate(self.actor.predict_with_last_input(features), axis=1)

    def values(self, obs: Tensor) -> Tensor:
        """``V(obs)`` ``[B]`` of prepared observations."""
        return torch.from_numpy(self.critic.predict(self.features(obs))[:, 0])

    def explore(self, obs: Tensor, generator: torch.Generator,
                action_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(sample, log_prob, value)`` of prepared observations, drawn from ``generator`` as the distribution's
        ``sample_with_log_prob`` does (categorical sampling in numpy: ~6 us instead of ~17 us); with an
        ``action_mask`` ``[B, n]`` over the legal actions only, as the distribution's ``mask`` and ``first_legal``
        make the reference do; Gaussian samples in numpy from the same normal draws."""
        features = self.features(obs)
        params, value = self._actor_output(features), torch.from_numpy(self.critic.predict(features)[:, 0])
        if type(self.distribution) is Categorical:
            uniform = torch.rand(params.shape[0], 1, generator=generator).numpy()
            if action_mask is None:
                sample, log_prob = (torch.from_numpy(array) for array in categorical_sample(params, uniform))
                return sample, log_prob, value
            legal = action_mask.numpy()
            masked = np.where(legal, params, np.float32(MASKED_LOGIT))
            actions, log_probs = categorical_sample(masked, uniform)
            rows = np.arange(actions.shape[0])
            if not legal[rows, actions].all():  # a uniform of exactly 0 on a leading illegal action
                actions = np.where(legal[rows, actions], actions, legal.argmax(axis=1))
                shifted = masked - masked.max(axis=1, keepdims=True)
                log_probs = (shifted[rows, actions] - np.log(np.exp(shifted).sum(axis=1))).astype(np.float32)
            return torch.from_numpy(actions), torch.from_numpy(log_probs), value
        if type(self.distribution) is DiagGaussian:
            noise = torch.randn(params.shape, generator=generator).numpy()
            sample, log_prob = gaussian_sample(params, noise, self.distribution.log_std)  # type: ignore[arg-type]
            return (torch.from_numpy(sample).reshape(params.shape[0], *self.distribution.action_shape),
                    torch.from_numpy(log_prob), value)
        sample, log_prob = self.distribution.sample_with_log_prob(torch.from_numpy(params), generator)  # gSDE
        return sample, log_prob, value

    # --- the compiled collecting step ----------------------------------------------------------
    def fused_refusal(self, normalizer: Any) -> str | None:
        """Why the compiled collecting step (:meth:`explore_fused`, and the reward normalizer's compiled update)
        does not reproduce this kernel's :meth:`explore` behind ``normalizer`` (the algorithm's observation
        normalizer or None) and the stock reward normalizer; None when it does."""
        if self.encoder is not None or self.one_hot:
            return "the observations are not a vector Box (the compiled step takes float vectors)"
        if normalizer is not None and type(normalizer) is not ObservationNormalizer:
            return f"the observation normalizer is a {type(normalizer).__name__}, not the stock ObservationNormalizer"
        return first_edited((RunningMeanStd.update, ObservationNormalizer.update, ObservationNormalizer.normalize,
                             RewardNormalizer.update_and_normalize, RewardNormalizer.normalize))

    def prepare_fused(self, flat_params: Tensor) -> str | None:
        """Locates the heads' parameters in ``flat_params`` (the optimizer's float32 buffer they are views of, updated
        in place) for :meth:`explore_fused`; returns why it cannot (a parameter outside it), else None."""
        flat = flat_params.detach().numpy()
        base, size = flat.ctypes.data, flat.size

        def offset(array: np.ndarray) -> int:
            start = (array.ctypes.data - base) // 4
            if not (array.flags.c_contiguous and start >= 0 and start + array.size <= size):
                raise LookupError
            return start

        try:
            layers = [(offset(w), w.shape[0], w.shape[1], offset(b)) for head in (self.actor, self.critic)
                      for w, b in zip(head.weights, head.biases, strict=True)]
        except LookupError:
            return "the heads' parameters are not views of the optimizer's flat buffer"
        self._fused_flat, self._fused_layers = flat, np.array(layers, np.int64)
        self._fused_actor_layers = len(self.actor.weights)
        self._fused_tanh = not self.actor.relu
        self._fused_width = max(w.shape[0] for w in self.actor.weights + self.critic.weights)
        self._fused_scratch: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        gaussian = type(self.distribution) is DiagGaussian
        self._fused_kind = acting.GSDE if self.gsde else acting.GAUSSIAN if gaussian else acting.CATEGORICAL
        log_std = self.distribution.log_std if gaussian else None  # type: ignore[attr-defined]
        self._fused_log_std = log_std.detach().numpy() if log_std is not None else np.zeros(1, np.float32)
        sde_log_std = self.distribution.log_std if self.gsde else None  # type: ignore[attr-defined]
        self._fused_sde_log_std = (sde_log_std.detach().numpy() if sde_log_std is not None  # a view: follows updates
                                   else np.zeros((1, 1), np.float32))
        return None

    def _fused_matrices(self, rows: int) -> np.ndarray:
        """gSDE: each row's noise matrix ``[rows, L, d]`` as the reference's ``noise`` picks them (the per-env ones
        for as many rows as envs, else the single one); an empty array otherwise."""
        if not self.gsde:
            return np.zeros((0, 0, 0), np.float32)
        distribution: StateDependentGaussian = self.distribution  # type: ignore[assignment]
        per_env, single = distribution.exploration_matrices, distribution.exploration_matrix
        if per_env is None or single is None:
            raise RuntimeError("the gSDE noise matrices were never drawn: call reset_noise(count, generator) first")
        if rows != 1 and rows == per_env.shape[0]:
            return per_env.numpy()
        return np.ascontiguousarray(np.broadcast_to(single.numpy(), (rows, *single.shape)))

    def explore_fused(self, obs: np.ndarray, normalizer: ObservationNormalizer | None, generator: torch.Generator
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`explore` of raw observations ``[B, D]`` (a float numpy array), with the normalizer's update and
        normalization first, in one compiled call (:mod:`rlcore.kernels.acting`); the same draws from
        ``generator``. Returns ``(prepared obs [B, D], sample, log_prob [B], value [B])``; without a normalizer the
        prepared observations are ``obs`` itself, as the reference stores them."""
        rows = obs.shape[0]
        scratch = self._fused_scratch.get(rows)
        if scratch is None:
            scratch = self._fused_scratch[rows] = (np.empty(rows * self._fused_width, np.float32),
                                                   np.empty(rows * self._fused_width, np.float32))
        if self._fused_kind == acting.CATEGORICAL:
            draws = torch.rand(rows, 1, generator=generator).numpy()
        elif self._fused_kind == acting.GAUSSIAN:
            draws = torch.randn((rows, self.actor.weights[-1].shape[0]), generator=generator).numpy()
        else:  # gSDE draws nothing per step
            draws = np.zeros((rows, 0), np.float32)
        if normalizer is not None:
            stats = normalizer.stats
            mean, var, count, clip, epsilon = stats.mean.numpy(), stats.var.numpy(), stats.count, normalizer.clip, \
                normalizer.epsilon
        else:
            mean = var = np.zeros(obs.shape[1])
            count, clip, epsilon = 0.0, 0.0, 0.0
        prepared, actions, samples, log_prob, value, mean, var, count, mean32, inv_std32 = acting.explore_step(
            obs, normalizer is not None, mean, var, count, clip, epsilon, self._fused_flat, self._fused_layers,
            self._fused_actor_layers, self._fused_tanh, self._fused_kind, draws, self._fused_log_std,
            self._fused_sde_log_std, self._fused_matrices(rows), *scratch)
        if normalizer is not None:
            stats.mean, stats.var, stats.count = torch.from_numpy(mean), torch.from_numpy(var), count
            normalizer.adopt(mean32, inv_std32)
        if self._fused_kind == acting.CATEGORICAL:
            sample = torch.from_numpy(actions)
        else:
            sample = torch.from_numpy(samples).reshape(rows, *self.distribution.action_shape)  # type: ignore
        stored = torch.from_numpy(prepared if normalizer is not None else obs)  # the reference keeps raw obs as given
        return stored, sample, torch.from_numpy(log_prob), torch.from_numpy(value)

    # --- learning ---------------------------------------------------------------------------
    @torch.no_grad()
    def backward(self, obs: Tensor, action: Tensor, head_loss: Any, with_stats: bool,
                 action_mask: Tensor | None = None) -> dict[str, float]:
        """Writes the gradient of ``head_loss`` (of :attr:`loss_class`) into every ``.grad``; returns its statistics
        (``loss`` included) when ``with_stats``. Shapes: ``obs [B, *obs_shape]`` (prepared), ``action [B, ...]``,
        ``action_mask [B, n]`` (bool, Categorical only: the logits of illegal actions are :data:`MASKED_LOGIT`, whose
        probability and so gradient are exactly 0)."""
        actor, critic, encoder = self.actor, self.critic, self.encoder
        features, encoder_cache = (self.features(obs), None) if encoder is None else encoder.forward(obs)
        params, actor_inputs = actor.forward(features)
        if action_mask is not None:
            params = np.where(action_mask.numpy(), params, np.float32(MASKED_LOGIT))
        value, critic_inputs = critic.forward(features)
        need_entropy = with_stats or head_loss.ent_coef > 0.0
        latent = {"latent": actor_inputs[-1][0]} if self.gsde else {}  # what the actor's output layer read
        log_prob, entropy, dist_cache = self.distribution_kernel.forward(  # type: ignore[union-attr]
            params, action.numpy(), need_entropy, **latent)
        grad_log_prob, grad_entropy, grad_value, stats = self.loss_gradients(  # type: ignore[misc]
            head_loss, log_prob, entropy, value[:, 0], with_stats)
        grad_params = self.distribution_kernel.backward(dist_cache, grad_log_prob, grad_entropy)  # type: ignore
        if isinstance(grad_params, tuple):  # Gaussian: (means, log_std)
            grad_params, grad_log_std = grad_params
            self.log_std_grad[:] = grad_log_std  # type: ignore[index]
        if encoder is None:
            actor.backward(actor_inputs, grad_params)
            critic.backward(critic_inputs, grad_value.reshape(-1, 1))
            return stats
        # the encoder is shared: its output gradient is the sum of what the two heads send back
        grad_features = actor.backward(actor_inputs, grad_params, input_grad=True)
        grad_features += critic.backward(critic_inputs, grad_value.reshape(-1, 1), input_grad=True)  # type: ignore
        encoder.backward(encoder_cache, grad_features)  # type: ignore[arg-type]
        return stats
