"""Networks that map observations to what an algorithm acts on: Q-values, or action distributions and values."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlcore.distributions import DiagGaussian, Distribution, StateDependentGaussian
from rlcore.nets.base import FeatureExtractor, FlattenExtractor, add_q_head, init_orthogonal, mlp, q_head
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


class QNetwork(nn.Module):
    """Action values ``Q(s, .)`` for a discrete action space, optionally dueling.

    The dueling head (Wang et al., 2016) splits the last hidden layer into a state value
    ``V(s)`` and advantages ``A(s, a)`` and combines them as ``V + A - mean_a A``, which
    keeps ``V`` and ``A`` identifiable.

    Args:
        observation_space: The single-env observation space.
        num_actions: Number of discrete actions ``A``.
        net_arch: Hidden layer widths after the feature extractor.
        dueling: Use the dueling head; otherwise one linear layer outputs ``Q``.
        features: A custom :class:`FeatureExtractor`; flattening/one-hot by default.

    Shapes:
        ``forward``: ``[B, *obs_shape] -> [B, A]``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        num_actions: int,
        net_arch: Sequence[int] = (64, 64),
        *,
        dueling: bool = False,
        activation: str = "relu",
        features: FeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        self.features = features if features is not None else FlattenExtractor(observation_space)
        add_q_head(self, self.features.out_dim, num_actions, net_arch, activation, dueling)

    def forward(self, obs: Tensor) -> Tensor:
        return q_head(self, self.features(obs))


def add_policy_heads(
    module: nn.Module,
    in_dim: int,
    distribution: Distribution,
    pi_arch: Sequence[int],
    vf_arch: Sequence[int],
    activation: str,
    ortho_init: bool,
    log_std_init: float,
) -> None:
    """Gives ``module`` its ``actor`` and ``critic`` MLPs on ``in_dim`` features and, for a Gaussian, ``log_std``.

    Orthogonal initialisation (when asked), as SB3's ``ActorCriticPolicy`` and CleanRL: gain sqrt(2) for the
    layers of the feature extractor ``module.features`` (its
    :meth:`~rlcore.nets.base.FeatureExtractor.init_orthogonal`: rlcore's CNNs, alone or in a Dict encoder; a user's
    registered extractor or a pretrained backbone keeps its weights, where SB3 would overwrite them) and of the
    hidden layers, 0.01 for the policy output, 1 for the value output. Memory cores keep torch's initialisation
    (as sb3-contrib's RecurrentPPO).
    """
    module.distribution = distribution
    module.critic = mlp(in_dim, vf_arch, 1, activation)
    module.log_std = None
    if isinstance(distribution, StateDependentGaussian):  # gSDE: the actor also outputs its latent features
        module.actor = LatentActor(*mlp(in_dim, pi_arch, distribution.action_dim, activation))
        distribution.set_latent_dim(pi_arch[-1] if pi_arch else in_dim)
        module.log_std = nn.Parameter(torch.full((distribution.latent_dim, distribution.action_dim),
                                                 float(log_std_init)))
        distribution.log_std = module.log_std
    else:
        module.actor = mlp(in_dim, pi_arch, distribution.param_dim, activation)
    if isinstance(distribution, DiagGaussian):
        module.log_std = nn.Parameter(torch.full((distribution.param_dim,), float(log_std_init)))
        distribution.log_std = module.log_std
    if ortho_init:
        init_features = getattr(module.features, "init_orthogonal", None)  # None: a bare nn.Module
        if init_features is not None:
            init_features()
        init_orthogonal(module.actor)
        init_orthogonal(module.critic)
        init_orthogonal(module.actor[-1], gain=0.01)
        init_orthogonal(module.critic[-1], gain=1.0)


class LatentActor(nn.Sequential):
    """An actor MLP that outputs its means and, detached, the latent features its output layer reads, as
    :class:`~rlcore.distributions.StateDependentGaussian` (gSDE) takes them: ``[B, F] -> [B, d + L]``. The layers
    are the plain MLP's (``actor[-1]`` is the output layer)."""

    def forward(self, features: Tensor) -> Tensor:
        latent = features
        for layer in list(self)[:-1]:
            latent = layer(latent)
        return torch.cat([self[-1](latent), latent.detach()], dim=-1)


class ActorCritic(nn.Module):
    """A policy head and a value head on one feature extractor, as separate MLPs (SB3's MLP default).

    The actor outputs the parameters of ``distribution`` (logits or Gaussian means); for a
    Gaussian, a state-independent ``log_std`` parameter holds the spread. The feature extractor's and the
    heads' Linear and Conv2d layers get orthogonal initialisation (gain sqrt(2), 0.01 for the policy output,
    1 for the value output), as in SB3 and CleanRL (:func:`add_policy_heads`).

    Args:
        observation_space: The single-env observation space.
        distribution: The action distribution (see :func:`rlcore.distributions.make_distribution`).
        pi_arch: Hidden widths of the actor.
        vf_arch: Hidden widths of the critic.
        activation: Hidden activation name.
        ortho_init: Use the orthogonal initialisation above (else torch's default).
        log_std_init: Initial ``log_std`` of a Gaussian policy.
        features: A custom :class:`FeatureExtractor`; flattening/one-hot by default.

    Shapes:
        ``forward``: ``[B, *obs_shape] -> (params [B, P], value [B])``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        distribution: Distribution,
        pi_arch: Sequence[int] = (64, 64),
        vf_arch: Sequence[int] = (64, 64),
        *,
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        features: FeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        self.features = features if features is not None else FlattenExtractor(observation_space)
        add_policy_heads(self, self.features.out_dim, distribution, pi_arch, vf_arch, activation, ortho_init,
                         log_std_init)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(obs)
        return self.actor(features), self.critic(features).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        """``V(s)``: ``[B, *obs_shape] -> [B]``."""
        return self.critic(self.features(obs)).squeeze(-1)


class MemoryActorCritic(nn.Module):
    """An actor-critic with memory: encoder -> LSTM or causal Transformer core(s) -> actor and critic heads.

    The critic reads the actor's core (``critic_memory="shared"``: both losses train one core) or has a core of its
    own (``"separate"``, as sb3-contrib's RecurrentPPO). Acting goes one env step at a time with a per-env state
    (:meth:`initial_state`, :meth:`step`); training evaluates stored inputs (:meth:`forward`):

    - ``lstm``: sequences ``{"obs": [B, L, *obs_shape], "episode_start": [B, L], "h": [B, H], "c": [B, H]}``
      (the state before each sequence's first step; with a separate critic core also ``critic_h``, ``critic_c``)
      -> outputs for all ``B * L`` steps;
    - ``transformer``: windows ``{"window": [B, K, *obs_shape], "valid": [B, K]}`` -> ``B`` outputs (a separate
      critic core reads the same window).

    Args:
        observation_space: The single-env observation space.
        distribution: The action distribution.
        encoder: The per-observation feature extractor (shared by the cores).
        kind: ``"lstm"`` or ``"transformer"``.
        memory_size: LSTM state width, or the Transformer's width.
        context: The Transformer's window ``K``.
        pi_arch, vf_arch, activation, ortho_init, log_std_init: As :class:`ActorCritic`.
        critic_memory: ``"separate"`` or ``"shared"``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        distribution: Distribution,
        encoder: FeatureExtractor,
        kind: str,
        memory_size: int = 64,
        context: int = 16,
        pi_arch: Sequence[int] = (64,),
        vf_arch: Sequence[int] = (64,),
        *,
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        critic_memory: str = "shared",
    ) -> None:
        super().__init__()
        if kind not in ("lstm", "transformer"):
            raise ValueError(f"memory must be 'lstm' or 'transformer', got {kind!r}")
        if critic_memory not in CRITIC_MEMORY:
            raise ValueError(f"critic_memory must be one of {list(CRITIC_MEMORY)}, got {critic_memory!r}")
        self.kind = kind
        self.features = encoder
        self.obs_shape = observation_shapes(observation_space)
        self.core: LSTMCore | TransformerCore = make_memory_core(kind, encoder.out_dim, memory_size, context)
        self.critic_core: LSTMCore | TransformerCore | None = (
            make_memory_core(kind, encoder.out_dim, memory_size, context) if critic_memory == "separate" else None)
        add_policy_heads(self, self.core.out_dim, distribution, pi_arch, vf_arch, activation, ortho_init,
                         log_std_init)

    def _encode(self, obs: Tensor) -> Tensor:
        """``[B, L, *obs_shape] -> [B, L, D]`` through the per-observation encoder."""
        return encode_steps(self.features, obs)

    def initial_state(self, num_envs: int, device: torch.device | str, obs_dtype: torch.dtype) -> State:
        """The state of ``num_envs`` envs before their first step."""
        state = initial_memory_state(self.core, self.obs_shape, num_envs, device, obs_dtype)
        if self.kind == "lstm" and self.critic_core is not None:
            state.update({CRITIC_PREFIX + key: value.clone() for key, value in state.items()})
        return state

    def step(self, obs: Tensor, state: State, episode_start: Tensor) -> tuple[Tensor, Tensor, State, State]:
        """One env step for ``N`` envs: ``obs [N, *obs_shape]``, the state before it, ``episode_start [N]``.

        Returns:
            ``(params [N, P], value [N], new_state, inputs)``; ``inputs`` are what :meth:`forward` needs
            to recompute this step in training (per env: the state before it and the flag, or the window).
        """
        if self.kind == "lstm":
            features = self.features(obs)
            actor_state, critic_state = split_critic_state(state)
            hidden, new_state = self.core.step(features, actor_state, episode_start)  # type: ignore[union-attr]
            critic_hidden = hidden
            if self.critic_core is not None:
                critic_hidden, new_critic_state = self.critic_core.step(  # type: ignore[union-attr]
                    features, critic_state, episode_start)
                new_state = {**new_state, **{CRITIC_PREFIX + key: value for key, value in new_critic_state.items()}}
            inputs = {"obs": obs, "episode_start": episode_start, **state}
        else:
            new_state = push_window(state, obs, episode_start)
            inputs = new_state
            hidden, critic_hidden = self._attend(self._encode(new_state["window"]), new_state["valid"])
        return self.actor(hidden), self.critic(critic_hidden).squeeze(-1), new_state, inputs

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Stored inputs (see the class docstring) -> ``(params [R, P], value [R])`` for their ``R`` steps."""
        if self.kind == "lstm":
            encoded = self._encode(inputs["obs"])
            actor_state, critic_state = split_critic_state(inputs)
            hidden = self.core.sequence(encoded, actor_state, inputs["episode_start"])  # type: ignore[union-attr]
            critic_hidden = hidden
            if self.critic_core is not None:
                critic_hidden = self.critic_core.sequence(  # type: ignore[union-attr]
                    encoded, critic_state, inputs["episode_start"])
            hidden = hidden.reshape(-1, hidden.shape[-1])
            critic_hidden = critic_hidden.reshape(-1, critic_hidden.shape[-1])
        else:
            hidden, critic_hidden = self._attend(self._encode(inputs["window"]), inputs["valid"])
        return self.actor(hidden), self.critic(critic_hidden).squeeze(-1)

    def _attend(self, window: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """The Transformer core(s) over encoded windows ``[B, K, D]``: the actor's and the critic's ``[B, W]``."""
        hidden = self.core(window, valid)  # type: ignore[operator]
        return hidden, (self.critic_core(window, valid) if self.critic_core is not None  # type: ignore[operator]
                        else hidden)


CRITIC_MEMORY = ("separate", "shared")
"""``critic_memory`` choices: the critic's own memory core, or the actor's."""
CRITIC_PREFIX = "critic_"
"""A separate critic LSTM's state is ``critic_h``, ``critic_c`` beside the actor's ``h``, ``c``."""


def split_critic_state(state: dict[str, Tensor]) -> tuple[State, State]:
    """``(actor's {"h", "c"}, critic's {"h", "c"})`` of an LSTM state (the critic's empty without its own core)."""
    actor = {"h": state["h"], "c": state["c"]}
    critic = {key[len(CRITIC_PREFIX):]: state[key] for key in (CRITIC_PREFIX + "h", CRITIC_PREFIX + "c")
              if key in state}
    return actor, critic
