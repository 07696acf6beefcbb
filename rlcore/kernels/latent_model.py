"""MuZero's model step inside the search, in numpy: the call a latent search makes once per simulation.

Reproduces: :meth:`rlcore.algos.muzero.MuZero.reference_model_step`, i.e. :meth:`MuZeroNetwork.recurrent_inference
<rlcore.nets.muzero.MuZeroNetwork.recurrent_inference>` on ``(latent states [n, H], actions [n])`` followed by
:func:`~rlcore.nets.muzero.support_to_scalar` of the reward and value logits, for a stock
:class:`~rlcore.nets.muzero.MuZeroNetwork` whose dynamics and heads are plain MLPs, on the CPU.
``tests/test_muzero.py`` holds it to the reference.

Why: a search of ``n`` simulations makes ``n`` such calls on a batch of ``num_envs`` (8) rows, each ~25 tiny torch
ops (four MLPs, the latent normalisation, two softmax expectations and the inverse value scaling) that cost ~5 us
of dispatch each, far more than their arithmetic. Here each MLP is :meth:`MLPKernel.predict
<rlcore.kernels.mlp.MLPKernel.predict>` (numpy, ~1.5 us a product) and the rest a few numpy vector ops.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numba
import numpy as np

from rlcore.kernels.mlp import MLPKernel, plain_mlp_layers
from rlcore.kernels.selection import first_edited
from rlcore.nets.muzero import SCALE_EPS, MuZeroNetwork, normalize_latent, support_to_scalar, unscale_value

MODULES = ("dynamics", "reward_head", "policy_head", "value_head")
"""The MLPs of a :class:`MuZeroNetwork` that the model step runs."""


class LatentModelKernel:
    """The search's model step over numpy views of ``net``'s parameters (updated in place by the optimizer, so the
    kernel always sees the current weights).

    Args:
        net: A stock :class:`MuZeroNetwork` on the CPU whose :data:`MODULES` are plain MLPs (see :meth:`refusal`).
    """

    REPRODUCES: ClassVar[tuple[str, ...]] = ("reference_model_step",)
    """The methods of :class:`~rlcore.algos.muzero.MuZero` whose work :meth:`step` does instead: a subclass that
    overrides one of them gets the reference (:func:`~rlcore.kernels.selection.override_gates`)."""

    def __init__(self, net: MuZeroNetwork) -> None:
        self.mlps = {}
        for name in MODULES:
            layers, activation = plain_mlp_layers(getattr(net, name))  # type: ignore[misc]
            self.mlps[name] = MLPKernel(layers, activation, grads=False)
        self.num_actions = net.num_actions
        self.one_hot = np.eye(net.num_actions, dtype=np.float32)
        self.atoms = np.arange(-net.support_size, net.support_size + 1, dtype=np.float32)

    def __repr__(self) -> str:
        return "LatentModelKernel: the search's model step in numpy, CPU float32"

    @staticmethod
    def refusal(net: Any, references: tuple[Any, ...]) -> str | None:
        """Why the kernel does not reproduce ``net``'s model step; None when it does.

        Args:
            references: The algorithm's code the kernel reproduces, whose fingerprints must still be the checked ones.
        """
        if type(net) is not MuZeroNetwork:
            return f"the network is a {type(net).__name__}, not the stock MuZeroNetwork"
        device = next(net.parameters()).device
        if device.type != "cpu":
            return f"the parameters live on {device} (the kernels run on the CPU)"
        for name in MODULES:
            layers = plain_mlp_layers(getattr(net, name))
            if layers is None:
                return f"MuZeroNetwork.{name} is not a plain Linear/ReLU|Tanh MLP"
            if not MLPKernel.applies(layers[0], grads=False):
                return f"MuZeroNetwork.{name}'s parameters are not contiguous float32 CPU tensors"
        return first_edited((MuZeroNetwork.recurrent_inference, MuZeroNetwork.dynamics_step, MuZeroNetwork.predict,
                             normalize_latent, support_to_scalar, unscale_value, *references))

    def step(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(latent states float32 [n, H], actions int64 [n])`` -> ``(next latent states [n, H], rewards [n],
        policy logits [n, A], values [n])``, all float32."""
        mlps = self.mlps
        raw = mlps["dynamics"].predict(np.concatenate([states, self.one_hot[actions]], axis=1))
        rewards = self.scalar(mlps["reward_head"].predict(raw))
        low = raw.min(axis=1, keepdims=True)
        spread = np.maximum(raw.max(axis=1, keepdims=True) - low, np.float32(1e-5))
        next_states = (raw - low) / spread
        logits = mlps["policy_head"].predict(next_states)
        values = self.scalar(mlps["value_head"].predict(next_states))
        return next_states, rewards, logits, values

    def scalar(self, logits: np.ndarray) -> np.ndarray:
        """:func:`support_to_scalar` of ``logits [n, 2S + 1]`` -> ``[n]`` (one compiled call)."""
        return categorical_scalars(logits, self.atoms, SCALE_EPS)


@numba.njit(cache=True)
def categorical_scalars(logits: np.ndarray, atoms: np.ndarray, eps: float) -> np.ndarray:
    """``phi^-1(sum_i softmax(logits)_i atoms_i)`` per row: ``[n, C]`` float32 -> ``[n]`` float32."""
    out = np.empty(logits.shape[0], np.float32)
    for row in range(logits.shape[0]):
        largest = logits[row].max()
        total, mean = 0.0, 0.0
        for i in range(logits.shape[1]):
            weight = math.exp(logits[row, i] - largest)
            total += weight
            mean += weight * atoms[i]
        y = mean / total
        root = (math.sqrt(1.0 + 4.0 * eps * (abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
        out[row] = math.copysign(root * root - 1.0, y) if y != 0.0 else 0.0
    return out


__all__ = ["MODULES", "LatentModelKernel"]
