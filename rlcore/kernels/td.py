"""The DQN kernel: greedy acting, TD targets and TD gradient steps of a stock Q-network on the CPU, in numpy.

Reproduces: :class:`rlcore.algos.dqn.DQN`'s autograd path for a stock :class:`~rlcore.policy.QNetwork` (a plain
MLP on flattened or one-hot observations, no dueling head): the targets of :func:`rlcore.algos.dqn.td_targets`
(double DQN included), the loss of :meth:`rlcore.algos.dqn.DQN.td_loss` (Huber or squared TD error,
importance-weighted) and the gradient autograd writes into every ``.grad``, and the greedy action of the
online network. ``tests/test_kernels.py`` trains with and without it and compares the parameters.

Where the time goes (SB3's DQN spends ~960 us per gradient step of a 256x256 MLP on CartPole's rl-zoo settings,
a third of it in matrix products): here a step is its products (:class:`~rlcore.kernels.mlp.MLPKernel`), the
loss gradient written by hand into a reused ``[B, A]`` buffer, and the optimizer's fused step; the target
network runs once per update phase over all of its minibatches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from rlcore.kernels.denormals import flush_denormals
from rlcore.kernels.mlp import MLPKernel, plain_mlp_layers
from rlcore.kernels.mlp_bf16 import BF16MLPKernel
from rlcore.kernels.selection import first_edited
from rlcore.nets.base import FlattenExtractor
from rlcore.policy import QNetwork, q_head

ADDMM_MIN_DIM = 64
"""Forward products of layers at least this wide in both dimensions go through torch's ``addmm`` (see
:class:`~rlcore.kernels.mlp.MLPKernel`; measured at DQN's batch sizes of 32-256 rows)."""


class TDKernel:
    """DQN's acting and learning over numpy views of ``q_net``'s and ``target_net``'s parameters.

    Args:
        q_net, target_net: The online and target networks (stock, plain MLP, float32 on the CPU; the online one's
            parameters with a ``.grad``).
        optimizer: Stepped after each gradient (its ``step()``), e.g. :class:`~rlcore.optim.FlatAdam`.
        loss: ``"huber"`` or ``"mse"``.
        double: Double-DQN targets.
        action_start: The action space's first action (stored actions minus it are the Q-value columns).
        bf16: The TD steps' products in bfloat16 (``amp="bf16"``; :class:`~rlcore.kernels.mlp_bf16.BF16MLPKernel`),
            as the reference computes them under autocast; acting stays float32.
    """

    REPRODUCES: ClassVar[tuple[str, ...]] = ("td_loss", "targets", "_td_step", "amp_forward", "q_values")
    """The methods of :class:`~rlcore.algos.dqn.DQN` whose work this kernel does instead (its steps, and
    :meth:`greedy` for ``q_values``): a subclass that overrides one of them gets the reference
    (:func:`~rlcore.kernels.selection.override_gates`)."""

    def __init__(
        self, q_net: QNetwork, target_net: QNetwork, optimizer: Any, loss: str, double: bool, action_start: int = 0,
        bf16: bool = False,
    ) -> None:
        (layers, activation), (target_layers, _) = plain_mlp_layers(q_net.body), plain_mlp_layers(target_net.body)  # type: ignore[misc]
        self.bf16 = bf16
        if bf16:
            self.online: MLPKernel = BF16MLPKernel(layers, activation)
            self.target: MLPKernel = BF16MLPKernel(target_layers, activation, grads=False)
        else:
            self.online = MLPKernel(layers, activation, addmm_min_dim=ADDMM_MIN_DIM, bias_grad="sum")
            self.target = MLPKernel(target_layers, activation, grads=False, addmm_min_dim=ADDMM_MIN_DIM)
        self.extractor = q_net.features
        self.one_hot = bool(getattr(q_net.features, "one_hot", False))
        self.num_actions = int(q_net.num_actions)
        self.optimizer = optimizer
        self.huber = loss == "huber"
        self.double = double
        self.action_start = action_start
        self._row_starts_cache: dict[int, np.ndarray] = {}
        self._grad_output_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        widths = "x".join(str(w.shape[0]) for w in self.online.weights[:-1])
        precision = "bfloat16 products, float32 weights" if bf16 else "float32"
        self._description = (f"TDKernel: CPU {precision}, plain {widths} {activation.__name__} Q-network, {loss} TD "
                             f"loss{', double targets' if double else ''}")

    def __str__(self) -> str:
        return self._description

    def kernels(self) -> list[MLPKernel]:
        """The online and the target network's kernels."""
        return [self.online, self.target]

    @staticmethod
    def refusal(q_net: Any, target_net: Any, references: tuple[Any, ...]) -> str | None:
        """Why the kernel does not reproduce these networks; None when it does.

        Args:
            references: The code the kernel reproduces besides the network's (the algorithm's targets, loss and
                step), whose fingerprints must still be the checked ones.
        """
        if type(q_net) is not QNetwork or type(target_net) is not QNetwork:
            return f"the Q-network is a {type(q_net).__name__}, not the stock QNetwork"
        device = next(q_net.parameters()).device
        if device.type != "cpu":
            return f"the parameters live on {device} (the kernels run on the CPU)"
        if q_net.dueling:
            return "the Q-network has a dueling head"
        if type(q_net.features) is not FlattenExtractor:
            return f"the encoder {type(q_net.features).__name__} has no kernel (flatten and one-hot have)"
        layers, target_layers = plain_mlp_layers(q_net.body), plain_mlp_layers(target_net.body)
        if layers is None or target_layers is None:
            return "the Q-network is not a plain Linear/ReLU|Tanh MLP"
        if not (MLPKernel.applies(layers[0]) and MLPKernel.applies(target_layers[0], grads=False)):
            return "the Q-network's parameters are not contiguous float32 tensors with gradients"
        return first_edited((QNetwork.forward, q_head, FlattenExtractor.forward, *references))

    # --- acting -----------------------------------------------------------------------------
    def greedy(self, obs: Tensor, action_mask: Tensor | None = None) -> np.ndarray:
        """``argmax_a Q(obs, a)`` of the online network, over the legal actions of ``action_mask`` ``[N, A]`` when
        given: ``[N, *obs_shape] -> [N]`` int64 (~15 us for one observation against ~35 us through torch)."""
        if self.one_hot:
            features = self.extractor(obs).numpy()
        else:
            features = obs.reshape(obs.shape[0], -1)
            features = (features if features.dtype == torch.float32 else features.float()).numpy()
        return legal_only(self.online.predict(features), action_mask).argmax(axis=1)

    # --- learning ---------------------------------------------------------------------------
    def features(self, obs: Tensor) -> np.ndarray:
        """What the network sees (flattened floats, or one-hot) as a C-contiguous float32 array ``[B, in]``."""
        return np.ascontiguousarray(self.extractor(obs).numpy())

    def target_q(self, next_obs: np.ndarray, chunk: int = 512) -> np.ndarray:
        """``Q_target(s', .)`` ``[B, A]``, in chunks of ``chunk`` rows (MKL's product slows by up to 2x on this
        project's machines from ~1k rows of 256 units, as the layer outgrows the L2 cache). Up to ``chunk`` rows it is
        the target kernel's ``"eval"`` buffer (valid until its next call with as many rows), else a new array."""
        if next_obs.shape[0] <= chunk:
            return self.target.forward(next_obs, "eval")[0]
        out = np.empty((next_obs.shape[0], self.num_actions), dtype=np.float32)
        for start in range(0, next_obs.shape[0], chunk):
            out[start : start + chunk] = self.target.forward(next_obs[start : start + chunk], "eval")[0]
        return out

    def targets(
        self, next_obs: np.ndarray, reward: np.ndarray, discount: np.ndarray, next_q_target: np.ndarray,
        next_mask: Tensor | None = None,
    ) -> np.ndarray:
        """``r + discount * Q_target(s', a*)`` ``[B]``; with double targets the online network (as it is now)
        picks ``a*``, else ``a* = argmax Q_target(s', .)``; only among the legal actions of ``next_mask`` ``[B, A]``
        when given."""
        next_q_target = legal_only(next_q_target, next_mask)
        if not self.double:
            return reward + discount * next_q_target.max(axis=1)
        best = legal_only(self.online.forward(next_obs, "eval")[0], next_mask).argmax(axis=1)
        return reward + discount * np.take_along_axis(next_q_target, best[:, None], axis=1)[:, 0]

    def uniform_phase(self, batch: dict[str, Tensor], gradient_steps: int, batch_size: int) -> np.ndarray:
        """``gradient_steps`` steps on consecutive ``batch_size`` rows of ``batch``; the target network runs once
        over all of them, with subnormal floats flushed (:mod:`~rlcore.kernels.denormals`). Returns the float32
        losses ``[gradient_steps]``."""
        self._refresh_bf16_weights()
        with flush_denormals():
            return self._uniform_phase(batch, gradient_steps, batch_size)

    def _refresh_bf16_weights(self) -> None:
        """With bfloat16 products, copies both networks' float32 weights into their bfloat16 buffers (the target may
        have been synced, the online network loaded, since the last step)."""
        if self.bf16:
            self.online.refresh_weights()  # type: ignore[attr-defined]
            self.target.refresh_weights()  # type: ignore[attr-defined]

    def _uniform_phase(self, batch: dict[str, Tensor], gradient_steps: int, batch_size: int) -> np.ndarray:
        obs, next_obs = self.features(batch["obs"]), self.features(batch["next_obs"])
        actions = self.action_indices(batch["action"])
        reward, discount = batch["reward"].numpy(), batch["discount"].numpy()
        next_q_target = self.target_q(next_obs)
        next_mask = batch.get("next_action_mask")
        if not self.double:
            targets_all = self.targets(next_obs, reward, discount, next_q_target, next_mask)
        losses = np.empty(gradient_steps, dtype=np.float32)
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            targets = (self.targets(next_obs[rows], reward[rows], discount[rows], next_q_target[rows],
                                    None if next_mask is None else next_mask[rows])
                       if self.double else targets_all[rows])
            losses[step], _ = self.step(obs[rows], actions[rows], targets, None)
        return losses

    def batch_step(self, batch: dict[str, Tensor]) -> tuple[np.floating, np.ndarray]:
        """One step on a whole (prioritized) batch with its importance ``weight``: ``(loss, TD errors [B])``."""
        self._refresh_bf16_weights()
        with flush_denormals():
            obs, next_obs = self.features(batch["obs"]), self.features(batch["next_obs"])
            next_q_target = self.target_q(next_obs)
            targets = self.targets(next_obs, batch["reward"].numpy(), batch["discount"].numpy(), next_q_target,
                                   batch.get("next_action_mask"))
            return self.step(obs, self.action_indices(batch["action"]), targets, batch["weight"].numpy())

    def action_indices(self, action: Tensor) -> np.ndarray:
        """Stored actions ``[B]`` or ``[B, 1]`` as Q-value columns (``action - start``), int64 ``[B]``."""
        indices = action.reshape(-1).numpy().astype(np.int64)
        return indices - self.action_start if self.action_start else indices

    def step(
        self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray, weight: np.ndarray | None
    ) -> tuple[np.floating, np.ndarray]:
        """One gradient step: ``obs [B, in]`` features, ``actions [B]`` indices, ``targets [B]``, ``weight [B]`` or
        None -> ``(loss, TD errors [B])``; the optimizer has stepped."""
        q_all, inputs = self.online.forward(obs, "train")
        rows = q_all.shape[0]
        taken = self._row_starts(rows) + actions  # flat ids of Q(s_i, a_i) in q_all
        td_error = q_all.take(taken)
        td_error -= targets
        # dLoss/dq_taken for loss = mean(weight * l(td)): l' = clamp(td, -1, 1) (Huber) or 2 td (MSE)
        if self.huber:
            grad_q_taken = np.minimum(np.maximum(td_error, -1.0), 1.0)
            per_sample = grad_q_taken * (td_error - 0.5 * grad_q_taken)  # = Huber(td) with delta 1
        else:
            grad_q_taken = 2.0 * td_error
            per_sample = td_error * td_error
        if weight is not None:
            per_sample *= weight
            grad_q_taken *= weight
        grad_q_taken /= rows
        grad_output, grad_output_flat = self._grad_output(rows)
        grad_output.fill(0.0)
        grad_output_flat[taken] = grad_q_taken
        self.online.backward(inputs, grad_output, "train")
        self.optimizer.step()
        if self.bf16:
            self.online.refresh_weights()  # type: ignore[attr-defined]
        return np.add.reduce(per_sample) / np.float32(rows), td_error  # = mean(); ndarray.mean runs Python code

    def _row_starts(self, rows: int) -> np.ndarray:
        """``arange(rows) * A``: where each row of a C-contiguous ``[rows, A]`` array starts."""
        starts = self._row_starts_cache.get(rows)
        if starts is None:
            starts = self._row_starts_cache[rows] = np.arange(rows, dtype=np.int64) * self.num_actions
        return starts

    def _grad_output(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """A reused ``[rows, A]`` float32 buffer for ``dLoss/dQ``, and its flat view."""
        buffers = self._grad_output_cache.get(rows)
        if buffers is None:
            buffer = torch.zeros(rows, self.num_actions).numpy()
            buffers = self._grad_output_cache[rows] = (buffer, buffer.reshape(-1))
        return buffers


def legal_only(q_values: np.ndarray, action_mask: Tensor | None) -> np.ndarray:
    """``q_values [B, A]`` with illegal actions at ``-inf`` (rows with no legal action keep all), as
    :func:`rlcore.algos.deep_q.masked_q_values`; ``q_values`` itself without a mask."""
    if action_mask is None:
        return q_values
    legal = action_mask.numpy().astype(bool, copy=False)
    legal = legal | ~legal.any(axis=1, keepdims=True)
    return np.where(legal, q_values, np.float32(-np.inf))
