"""Q-values with memory (R2D2-style recurrent DQN): encoder -> LSTM or causal Transformer core -> Q head.

Acting steps the network one env step at a time with a per-env state (:meth:`RecurrentQNetwork.step`),
reset where an episode starts. Training unrolls it over replay windows of one env's consecutive steps
(:meth:`RecurrentQNetwork.unroll`) from a zero state at each window's first step, reset again where an episode
starts inside the window: the first ``burn_in`` steps only warm the state up (they get no loss; gradients flow
through them).

- ``lstm``: the state is ``{"h", "c"}``, ``[N, memory_size]`` each.
- ``transformer``: the state is ``{"window": [N, K, *obs_shape], "valid": [N, K]}``, the last ``K``
  raw observations of the episode (:func:`rlcore.nets.sequence.push_window`); in training, step ``t`` of a
  window attends to the window's steps ``t - K + 1 .. t`` of its own episode, so ``burn_in >= K - 1`` gives
  every loss step its full context.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor, add_q_head, q_head
from rlcore.nets.sequence import (
    LSTMCore,
    State,
    TransformerCore,
    encode_steps,
    initial_memory_state,
    make_memory_core,
    push_window,
)
from rlcore.spaces import observation_shapes

MEMORY_KINDS = ("lstm", "transformer")


class RecurrentQNetwork(nn.Module):
    """Action values ``Q(h_t, .)`` of a memory state ``h_t`` that summarizes the episode so far.

    Args:
        observation_space: The single-env observation space.
        num_actions: Number of discrete actions ``A``.
        encoder: The per-observation feature extractor (``[B, *obs_shape] -> [B, D]``).
        kind: ``"lstm"`` or ``"transformer"``.
        memory_size: LSTM state width, or the Transformer's width.
        context: The Transformer's window ``K``.
        net_arch: Hidden widths of the head after the core.
        dueling: A dueling head (``V + A - mean A``) instead of one linear output.
        activation: Hidden activation of the head.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        num_actions: int,
        encoder: FeatureExtractor,
        kind: str,
        memory_size: int = 64,
        context: int = 16,
        net_arch: Sequence[int] = (64,),
        *,
        dueling: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if kind not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {list(MEMORY_KINDS)}, got {kind!r}")
        self.kind = kind
        self.features = encoder
        self.obs_shape = observation_shapes(observation_space)
        self.core: LSTMCore | TransformerCore = make_memory_core(kind, encoder.out_dim, memory_size, context)
        add_q_head(self, self.core.out_dim, num_actions, net_arch, activation, dueling)

    # --- pieces -----------------------------------------------------------------------------
    def head(self, hidden: Tensor) -> Tensor:
        """Core outputs ``[..., H]`` -> Q-values ``[..., A]``."""
        return q_head(self, hidden)

    def encode(self, obs: Tensor) -> Tensor:
        """``[B, T, *obs_shape] -> [B, T, D]`` through the per-observation encoder."""
        return encode_steps(self.features, obs)

    def initial_state(self, num_envs: int, device: torch.device | str, obs_dtype: torch.dtype) -> State:
        """The state of ``num_envs`` envs before their first step (zeros; an empty window)."""
        return initial_memory_state(self.core, self.obs_shape, num_envs, device, obs_dtype)

    def step(self, obs: Tensor, state: State, episode_start: Tensor) -> tuple[Tensor, State]:
        """One env step of ``N`` envs: ``obs [N, *obs_shape]``, the state before it, ``episode_start [N]``
        (those envs forget their state first) -> ``(Q [N, A], the state after it)``."""
        if self.kind == "lstm":
            hidden, new_state = self.core.step(self.features(obs), state, episode_start)  # type: ignore[union-attr]
        else:
            new_state = push_window(state, obs, episode_start)
            hidden = self.core(self.encode(new_state["window"]), new_state["valid"])  # type: ignore[operator]
        return self.head(hidden), new_state

    # --- training ---------------------------------------------------------------------------
    def unroll(self, obs: Tensor, burn_in: int = 0, episode_start: Tensor | None = None) -> Tensor:
        """Q-values along windows of one env's consecutive steps, from a zero state at the first step.

        The first ``burn_in`` steps get no output (so no loss): they only warm up the memory (the LSTM state; the
        Transformer's context). Gradients flow through them, so a loss step's memory of something seen during the
        burn-in (a cue) is learned too. Where ``episode_start`` is true the memory starts afresh before the step,
        as :meth:`step` does (none: the window is one episode's steps).

        Shapes: ``obs [B, T, *obs_shape]``, ``episode_start [B, T]`` bool -> ``[B, T - burn_in, A]``.
        """
        batch, length = obs.shape[:2]
        if not 0 <= burn_in < length:
            raise ValueError(f"burn_in must be in [0, {length - 1}] for windows of {length} steps, got {burn_in}")
        if episode_start is None:
            episode_start = torch.zeros(batch, length, dtype=torch.bool, device=obs.device)
        encoded = self.encode(obs)
        if self.kind == "lstm":
            core: LSTMCore = self.core  # type: ignore[assignment]
            hidden = core.sequence(encoded, core.initial_state(batch, obs.device), episode_start)[:, burn_in:]
        else:
            hidden = self.core.sliding(encoded, burn_in, episode_start)  # type: ignore[union-attr]
        return self.head(hidden)
