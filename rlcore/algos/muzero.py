"""MuZero (Schrittwieser et al., 2020): search with a learned model, for single-agent envs without a simulator.

The agent learns a model of the env in a latent space (:class:`~rlcore.nets.muzero.MuZeroNetwork`: representation,
dynamics, prediction) and acts by searching it. It needs no env state, only observations, so it acts through
:meth:`MuZero.act` like any replay algorithm (in-process, or in worker processes that write replay shards).

**Acting.** Each vector step, the ``N`` observations are encoded into latent roots; :class:`~rlcore.search.latent.
LatentSearch` runs ``num_simulations`` simulations in all ``N`` trees in lockstep, one batched dynamics-and-prediction
call per simulation. Two searches:

- ``search="puct"`` (MuZero): PUCT with ``Q`` min-max normalised within each tree, Dirichlet noise at the root; the
  move is sampled from the visit counts with a temperature that decays over training (``temperature_*``; greedy
  when evaluating), the policy target is the visit distribution;
- ``search="gumbel"`` (Gumbel MuZero, Danihelka et al. 2022): sequential halving over Gumbel-sampled root actions;
  the move is the halving's winner, the policy target the improved policy, which improves on the prior even with
  very few simulations.

The search policy joins the transition (``act`` returns it as an extra), so the replay holds ``obs``, ``action``,
``reward``, ``next_obs``, ``terminated``, ``truncated`` and ``policy`` per step.

**Learning.** Each gradient step draws ``batch_size`` start rows and unrolls the model ``unroll_steps`` (``K``) steps
along the actions taken (:func:`rlcore.buffers.unroll.sample_unrolls`). At every position ``k = 0 .. K`` the value
head learns the ``td_steps``-step return bootstrapped from a target network's value of the observation reached
(MuZero Reanalyze's fresher value; the target network follows the online one every ``target_update_interval``
gradient steps), the reward head the reward observed, the policy head the search policy; past a termination the
targets are the absorbing state's (zero value and reward). Values and rewards are categorical over ``2S + 1`` atoms
of ``phi``-scaled scalars (cross-entropy on two-hot targets, :mod:`rlcore.nets.muzero`). As in the paper, the losses
of the unrolled steps are scaled by ``1 / K``, the gradient entering each dynamics step is halved, and the latent
states are min-max normalised. AdamW's decoupled weight decay on the flat Adam (:class:`rlcore.optim.FlatAdam`).
With ``consistency_weight > 0`` (EfficientZero, Ye et al. 2021), each unrolled state is also pulled toward the
representation of the observation its step actually reached: a projector and a predictor (SimSiam) on the unrolled
state against the projector alone on the real observation's latent state, gradients stopped there, negative cosine
similarity.

References:
    Schrittwieser et al., 2020. Mastering Atari, Go, chess and shogi by planning with a learned model. Nature 588.
    Danihelka, Guez, Schrittwieser & Silver, 2022. Policy improvement by planning with Gumbel. ICLR.
    Ye, Liu, Kurutach, Abbeel & Gao, 2021. Mastering Atari games with limited data. NeurIPS.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.algos.base import Example, ReplayAlgorithm, flat_acting_state, load_flat_acting_state, register_algo
from rlcore.buffers.replay import Placement, ReplaySettings, build_replay
from rlcore.buffers.storage import FieldSpec, transition_fields
from rlcore.buffers.unroll import sample_unrolls
from rlcore.fields import with_absolute_paths
from rlcore.kernels.latent_model import LatentModelKernel
from rlcore.kernels.selection import choose_kernel, override_gates, reproduced
from rlcore.nets.extractors import make_extractor
from rlcore.nets.muzero import (
    ConsistencyHeads,
    MuZeroNetwork,
    consistency_loss,
    scalar_to_support,
    support_to_scalar,
)
from rlcore.optim import FlatAdam
from rlcore.search.latent import LatentSearch
from rlcore.search.mcts import MCTSConfig
from rlcore.settings import check_range, linear_schedule


@dataclass(frozen=True)
class MuZeroConfig:
    """Hyperparameters of :class:`MuZero`; defaults follow the paper (Atari) where they fit small envs."""

    ABSENT_IN_CHECKPOINT: ClassVar[dict[str, Any]] = {"use_action_masks": False}
    """What a checkpoint written before a field existed meant: searches over every action."""

    num_simulations: int = 50
    """Simulations per search (one batched network call each)."""
    search: Literal["puct", "gumbel"] = "puct"
    """``puct`` (MuZero) or ``gumbel`` (sequential halving at the root, improved-policy targets)."""
    c_puct: float = 1.25
    """PUCT exploration constant (the paper's ``c1``; its ``c2`` term is ~0 at these visit counts)."""
    unvisited_value: Literal["zero", "mean"] = "zero"
    """PUCT: normalised value of unvisited children: ``zero`` (the paper's) or ``mean``, the node's value averaged
    with its visited children's returns (EfficientZero's)."""
    q_spread_floor: float = 0.0
    """Smallest min-max spread the search's ``Q`` normalisation divides by (EfficientZero's 0.01; 0: the paper's)."""
    dirichlet_alpha: float = 0.25
    """PUCT: root noise concentration while training; 0 turns the noise off."""
    dirichlet_fraction: float = 0.25
    """PUCT: weight of the root noise."""
    temperature_initial: float = 1.0
    """PUCT: moves are sampled with probability ``n(a)^(1/T)`` while training; ``T`` starts here..."""
    temperature_final: float = 0.25
    """...and reaches this after ``temperature_fraction`` of training (0: the most visited move)."""
    temperature_fraction: float = 0.75
    """Fraction of training over which the temperature decays linearly."""
    gumbel_considered: int = 16
    """Gumbel: root actions sampled without replacement (Gumbel top-k) for sequential halving."""
    gumbel_value_scale: float = 0.1
    """Gumbel: ``c_scale`` of ``sigma(q) = (c_visit + max n) * c_scale * q``."""
    gumbel_visit_offset: float = 50.0
    """Gumbel: ``c_visit`` of ``sigma(q)``."""
    latent_size: int = 64
    """Width of the latent state."""
    net_arch: tuple[int, ...] = (64,)
    """Hidden widths of each MLP (representation, dynamics, and the reward, value and policy heads)."""
    activation: str = "relu"
    """Hidden activation: relu, tanh, elu or gelu."""
    support_size: int = 10
    """``S``: values and rewards are distributions over ``-S .. S`` in ``phi``-scaled units (``phi(x) ~ sqrt(x)``;
    ``S = 10`` covers returns up to ~120, 300 the paper's Atari range)."""
    features_extractor: str = "auto"
    """Observation encoder before the representation MLP: ``auto`` (a CNN for images, flatten/one-hot otherwise)
    or a registered name (``flatten``, ``small_cnn``, ``nature_cnn``, ...)."""
    features_kwargs: dict[str, Any] | None = None
    """Keyword arguments of the extractor, e.g. ``{"features_dim": 256}``."""
    unroll_steps: int = 5
    """``K``: model steps unrolled per training sample."""
    td_steps: int = 10
    """``n`` of the n-step value targets."""
    gamma: float = 0.997
    """Discount factor (of the search's backups too)."""
    value_loss_weight: float = 0.25
    """Weight of the value loss (the paper's 0.25 with reanalysed values)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    weight_decay: float = 1e-4
    """Decoupled (AdamW) weight decay."""
    max_grad_norm: float | None = 5.0
    """Global gradient-norm clip; ``None`` disables it."""
    batch_size: int = 256
    """Unrolls per gradient step."""
    buffer_size: int = 100_000
    """Transitions kept in replay (over all envs)."""
    learning_starts: int = 1_000
    """Env steps collected before the first update."""
    train_freq: int = 1
    """Vector-env steps between update phases."""
    gradient_steps: int = 1
    """Gradient steps per update phase."""
    target_update_interval: int = 100
    """Gradient steps between copies of the online network into the target network (value bootstraps)."""
    consistency_weight: float = 0.0
    """Weight of EfficientZero's self-supervised consistency loss (the unrolled latent states, projected, against the
    projections of the observations actually reached; EfficientZero's 2); 0: MuZero's losses only."""
    projection_size: int = 128
    """Width of the consistency loss's projections."""
    prioritized: bool = False
    """Prioritized replay of start rows by ``|v - z|`` (the paper's), with importance weights."""
    per_alpha: float = 1.0
    """How strongly priorities shape sampling (0 is uniform; the paper's 1)."""
    per_beta: float = 1.0
    """Importance-weight exponent (the paper's 1)."""
    eval_simulations: int | None = None
    """Simulations per search when acting deterministically (evaluation, ``predict``); None: ``num_simulations``."""
    fast_path: bool = True
    """Let the CPU kernel run the search's model calls (numpy, same maths; ~3x faster on small MLPs); False: torch."""
    use_action_masks: bool = True
    """When the env gives action masks (an ``action_masks()`` method, or ``info["action_mask"]``), each search's
    root expands only the legal actions (as MuZero's board games: below the root the model knows no rules), so
    moves and policy targets are legal; False searches every action."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        object.__setattr__(self, "features_kwargs", with_absolute_paths(self.features_kwargs))
        for name in ("num_simulations", "latent_size", "support_size", "td_steps", "batch_size", "buffer_size",
                     "train_freq", "gradient_steps", "target_update_interval", "gumbel_considered", "projection_size"):
            check_range(name, getattr(self, name), 1)
        check_range("num_simulations", self.num_simulations, 1, 510)
        for name in ("unroll_steps", "learning_starts", "dirichlet_alpha", "temperature_initial", "temperature_final",
                     "weight_decay", "per_alpha", "gumbel_visit_offset"):
            check_range(name, getattr(self, name), 0)
        check_range("c_puct", self.c_puct, 0.0, low_open=True)
        check_range("dirichlet_fraction", self.dirichlet_fraction, 0.0, 1.0)
        check_range("temperature_fraction", self.temperature_fraction, 0.0, 1.0)
        check_range("gumbel_value_scale", self.gumbel_value_scale, 0.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("value_loss_weight", self.value_loss_weight, 0.0)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("per_beta", self.per_beta, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, allow_inf=True)
        if self.eval_simulations is not None:
            check_range("eval_simulations", self.eval_simulations, 1, 510)
        check_range("q_spread_floor", self.q_spread_floor, 0.0)
        check_range("consistency_weight", self.consistency_weight, 0.0)
        if self.unvisited_value not in ("zero", "mean"):
            raise ValueError(f"unvisited_value must be 'zero' or 'mean', got {self.unvisited_value!r}")
        if self.search not in ("puct", "gumbel"):
            raise ValueError(f"search must be 'puct' or 'gumbel', got {self.search!r}")
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch widths must be >= 1, got {list(self.net_arch)}")

    def search_config(self, *, training: bool) -> MCTSConfig:
        """The search while training (root noise) or when acting deterministically (none)."""
        if self.search == "gumbel":
            return MCTSConfig(num_simulations=self._simulations(training), rule="gumbel", gamma=self.gamma,
                              gumbel_considered=self.gumbel_considered, gumbel_scale=1.0 if training else 0.0,
                              gumbel_value_scale=self.gumbel_value_scale, gumbel_visit_offset=self.gumbel_visit_offset)
        return MCTSConfig(num_simulations=self._simulations(training), rule="puct", c=self.c_puct,
                          fpu=0.0 if self.unvisited_value == "zero" else float("nan"),
                          q_spread_floor=self.q_spread_floor, gamma=self.gamma,
                          dirichlet_alpha=self.dirichlet_alpha if training else 0.0,
                          dirichlet_fraction=self.dirichlet_fraction)

    def _simulations(self, training: bool) -> int:
        return self.num_simulations if training or self.eval_simulations is None else self.eval_simulations


def scale_gradient(tensor: Tensor, scale: float) -> Tensor:
    """``tensor`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    return tensor * scale + tensor.detach() * (1.0 - scale)


def soft_cross_entropy(target: Tensor, logits: Tensor) -> Tensor:
    """``-sum_i target_i log softmax(logits)_i`` over the last axis: ``[..., C]`` -> ``[...]``."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


@register_algo("muzero")
class MuZero(ReplayAlgorithm[MuZeroConfig]):
    """Tree search over a learned latent model (representation, dynamics, prediction), trained on K-step unrolls of
    replay; for single-agent envs without a simulator.

    See the module docstring for acting, learning and the options (PUCT or Gumbel search, prioritized replay).
    """

    config_class: ClassVar[type] = MuZeroConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {
        "total_env_steps": 400, "num_envs": 2, "num_simulations": 4, "latent_size": 8, "net_arch": [8],
        "support_size": 3, "unroll_steps": 3, "td_steps": 3, "batch_size": 16, "buffer_size": 1000,
        "learning_starts": 100, "train_freq": 2, "gradient_steps": 1, "target_update_interval": 10})
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    flat_box_only: ClassVar[bool] = False

    def check_envs(self, envs: VectorEnv) -> None:
        """A two-player game (an rlcore board game's self-play env: its reward goes to whoever moved) has no single
        agent's return to learn: refused with the algorithms and envs that fit."""
        for env in getattr(envs.unwrapped, "envs", ()):
            simulator = getattr(env.unwrapped, "simulator", None)
            if simulator is not None and getattr(simulator, "num_players", 1) == 2:
                name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
                raise ValueError(f"muzero learns a single agent's return, but {name} is a two-player game (its reward "
                                 "goes to whoever moved); train alphazero or mcts on it, or muzero on a game against "
                                 "a fixed opponent (e.g. rlcore/TicTacToeVsRandom-v0)")

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: MuZeroConfig, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_envs: int = 1) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        torch.manual_seed(seed)  # network initialisation
        self.seed = seed
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        features = make_extractor(observation_space, config.features_extractor, **(config.features_kwargs or {}))
        self.net = MuZeroNetwork(features, self.num_actions, latent_size=config.latent_size,
                                 net_arch=config.net_arch, support_size=config.support_size,
                                 activation=config.activation).to(self.device)
        self.target_net = copy.deepcopy(self.net).requires_grad_(False)
        self.consistency = (ConsistencyHeads(config.latent_size, config.projection_size).to(self.device)
                            if config.consistency_weight > 0 else None)
        """EfficientZero's projector and predictor (``consistency_weight > 0``), trained with the network."""
        trained = [*self.net.parameters(), *(self.consistency.parameters() if self.consistency is not None else ())]
        self.optimizer = FlatAdam(trained, lr=config.learning_rate, max_grad_norm=config.max_grad_norm)
        self._kernel = self._select_kernel()
        """The search's model step in numpy (:class:`~rlcore.kernels.latent_model.LatentModelKernel`), or None."""
        self.replay = build_replay(self.replay_settings(), Placement(envs_per_shard=num_envs))
        self.updates = 0
        self.temperature = config.temperature_initial
        self._searches: dict[tuple[bool, int], LatentSearch] = {}
        """The training search (root noise; its generators are checkpointed) and deterministic searches (reseeded
        before every use), by ``(training, batch size)``."""
        self._saved_search: dict[str, Any] | None = None
        self._search_metrics: dict[str, float] = {}
        self.timings = {"search_s": 0.0, "network_s": 0.0, "searches": 0}
        """Seconds searching while training, of network calls inside those searches, and searches (this process;
        not in checkpoints): ``search/simulations_per_s`` and ``search/network_share``."""

    # --- acting -----------------------------------------------------------------------------------
    @property
    def accepts_action_masks(self) -> bool:
        """With ``use_action_masks`` (the default): the roots of the searches expand the legal actions only."""
        return self.config.use_action_masks

    def act(self, obs: Tensor, *, deterministic: bool = False, action_mask: Tensor | None = None) -> Any:
        """Searches from each observation, ``[N, *obs_shape]``, among the legal actions of ``action_mask``
        (bool ``[N, A]``) when given.

        Returns:
            ``deterministic``: the best actions ``[N]`` (a search without noise, greedy). Otherwise the behaviour
            policy's ``(actions [N], {"policy": float32 [N, A]})``: the search policy joins the transition, for
            the replay.
        """
        search = self._search(len(obs), training=not deterministic)
        legal = None if action_mask is None else action_mask.detach().cpu().numpy().astype(bool)
        actions, _ = self._plan(obs, search, sample=not deterministic, legal=legal)
        if deterministic:
            return torch.from_numpy(actions + self.action_start)
        return torch.from_numpy(actions + self.action_start), {"policy": search.target_policies()}

    def actor(self, deterministic: bool = True) -> Any:
        if deterministic:
            return lambda obs, **masks: self.act(obs, deterministic=True, **masks)
        return lambda obs, **masks: self.act(obs, deterministic=False, **masks)[0]

    def _search(self, batch: int, *, training: bool) -> LatentSearch:
        key = (training, batch)
        search = self._searches.get(key)
        if search is None:
            search = LatentSearch(self.num_actions, self.config.latent_size,
                                  self.config.search_config(training=training), num_trees=batch, seed=self.seed)
            self._searches[key] = search
            if training and self._saved_search is not None and batch == self.num_envs:
                search.load_state_dict(self._saved_search)  # resuming: the generators of the checkpoint
                self._saved_search = None
        if not training:
            search.reseed()  # a deterministic search acts the same on the same observations
        return search

    @torch.no_grad()
    def _plan(self, obs: Tensor, search: LatentSearch, *, sample: bool, legal: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Searches from ``obs [N, ...]`` (among the ``legal`` actions, bool ``[N, A]``, when given); returns the
        actions (indices ``int64 [N]``) and the roots' values."""
        start = time.perf_counter()
        network_before = self.timings["network_s"]
        state, policy_logits, value_logits = self.net.initial_inference(obs.to(self.device))
        value = support_to_scalar(value_logits, self.config.support_size)
        search.search(state.cpu().numpy(), policy_logits.float().cpu().numpy(), value.float().cpu().numpy(),
                      self._model_step, legal)
        if not sample or self.config.search == "gumbel" or self.temperature == 0.0:
            actions = search.best_actions()
        else:
            counts = torch.from_numpy(search.visit_counts()).double()
            weights = counts ** (1.0 / self.temperature)
            actions = torch.multinomial(weights / weights.sum(dim=1, keepdim=True), 1,
                                        generator=self.generator).squeeze(1).numpy()
        root_values = search.root_values()
        if sample:
            seconds = time.perf_counter() - start
            timings = self.timings
            timings["search_s"] += seconds
            timings["searches"] += 1
            self._search_metrics = {
                "search/root_value": float(root_values.mean()),
                "search/simulations_per_s": len(actions) * search.config.num_simulations / max(seconds, 1e-9),
                "search/network_share": timings["network_s"] / max(timings["search_s"], 1e-9),
                "rollout/temperature": self.temperature,
            }
        else:
            self.timings["network_s"] = network_before  # deterministic searches are not part of the training figures
        return actions, root_values

    def _select_kernel(self) -> LatentModelKernel | None:
        """The one place that decides whether the search's model calls run in numpy; logs the choice (INFO)."""
        gates = [(not self.config.fast_path, "fast_path=False"),
                 *override_gates(self, MuZero, LatentModelKernel.REPRODUCES)]
        return choose_kernel(self.name, gates, lambda: LatentModelKernel.refusal(self.net, self.kernel_references()),
                             lambda: LatentModelKernel(self.net))  # type: ignore[arg-type]

    @staticmethod
    def kernel_references() -> tuple[Any, ...]:
        """MuZero's code that :class:`~rlcore.kernels.latent_model.LatentModelKernel` reproduces."""
        return reproduced(MuZero, LatentModelKernel.REPRODUCES)

    def _model_step(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """The search's model call (the kernel's, or :meth:`reference_model_step`), timed."""
        start = time.perf_counter()
        if self._kernel is not None:
            result = self._kernel.step(states, actions)
        else:
            result = self.reference_model_step(states, actions)
        self.timings["network_s"] += time.perf_counter() - start
        return result

    @torch.no_grad()
    def reference_model_step(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(latent states float32 [n, H], actions int64 [n])`` -> ``(next latent states [n, H], rewards [n], policy
        logits [n, A], values [n])`` (numpy): the dynamics and the prediction, rewards and values as scalars."""
        device, support = self.device, self.config.support_size
        next_state, reward_logits, policy_logits, value_logits = self.net.recurrent_inference(
            torch.from_numpy(states).to(device), torch.from_numpy(actions).to(device))
        return (next_state.cpu().numpy(), support_to_scalar(reward_logits, support).cpu().numpy(),
                policy_logits.cpu().numpy(), support_to_scalar(value_logits, support).cpu().numpy())

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Moves the temperature of sampled moves along its schedule."""
        super().set_progress(env_steps, total_env_steps)
        config = self.config
        self.temperature = linear_schedule(config.temperature_initial, config.temperature_final,
                                           config.temperature_fraction, env_steps / self.total_env_steps)

    # --- learning ---------------------------------------------------------------------------------
    def train(self, gradient_steps: int) -> dict[str, float]:
        """Takes ``gradient_steps`` steps on unrolls from :attr:`replay`.

        Returns:
            ``train/value_loss``, ``train/reward_loss``, ``train/policy_loss`` (means over the steps, per unroll
            position), ``train/consistency_loss`` (with ``consistency_weight``), ``train/loss``,
            ``train/n_updates``, ``train/learning_rate``, and the latest search's ``search/...`` figures.
        """
        totals = torch.zeros(4)
        for _ in range(gradient_steps):
            totals += self._gradient_step()
            self.updates += 1
            if self.updates % self.config.target_update_interval == 0:
                self._sync_target()
        value_loss, reward_loss, policy_loss, consistency = (totals / gradient_steps).tolist()
        weight = self.config.consistency_weight
        extra = {"train/consistency_loss": consistency} if self.consistency is not None else {}
        return {"train/value_loss": value_loss, "train/reward_loss": reward_loss, "train/policy_loss": policy_loss,
                **extra, "train/loss": self.config.value_loss_weight * value_loss + reward_loss + policy_loss
                + weight * consistency,
                "train/n_updates": float(self.updates), "train/learning_rate": self.config.learning_rate,
                **self._search_metrics}

    @torch.no_grad()
    def value_targets(self, batch: dict[str, Tensor]) -> Tensor:
        """``z = value_reward + value_discount * v_target(bootstrap_obs)`` ``[B, K + 1]``: the target network values
        only the observations that are bootstrapped from."""
        z = batch["value_reward"].clone()
        bootstrap = batch["value_discount"] > 0
        if bootstrap.any():
            obs = batch["bootstrap_obs"][bootstrap].to(self.device)
            _, _, value_logits = self.target_net.initial_inference(obs)
            values = support_to_scalar(value_logits, self.config.support_size).cpu()
            z[bootstrap] += batch["value_discount"][bootstrap] * values
        return z

    def unroll_losses(self, batch: dict[str, Tensor], value_target: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Unrolls the model ``K`` steps from ``batch["obs"]`` along ``batch["action"]`` and scores its predictions.

        Returns:
            The value, reward and policy cross-entropies ``[B]`` each (summed over positions, unrolled ones scaled
            by ``1 / K``, masked), the predicted value at the start rows ``[B]`` (for priorities), and the unrolled
            states ``[B, K, H]`` (None when ``K = 0``; :meth:`consistency_losses` scores them).
        """
        config, device = self.config, self.device
        support, steps = config.support_size, config.unroll_steps
        state, policy_logits, value_logits = self.net.initial_inference(batch["obs"].to(device))
        policies, values, rewards, unrolled = [policy_logits], [value_logits], [], []
        # the env's actions as indices; steps past the newest row are padded with 0 (masked out of the losses), which
        # with a Discrete start is no index: kept in range
        actions = (batch["action"].to(device).long() - self.action_start).clamp(0, self.num_actions - 1)
        for k in range(steps):
            state = scale_gradient(state, 0.5)
            state, reward_logits, policy_logits, value_logits = self.net.recurrent_inference(state, actions[:, k])
            unrolled.append(state)
            policies.append(policy_logits)
            values.append(value_logits)
            rewards.append(reward_logits)
        scale = torch.full((steps + 1,), 1.0 / max(steps, 1), device=device)
        scale[0] = 1.0
        value_loss = soft_cross_entropy(scalar_to_support(value_target.to(device), support), torch.stack(values, 1))
        policy_loss = soft_cross_entropy(batch["policy"].to(device), torch.stack(policies, 1))
        value_loss = (value_loss * batch["value_mask"].to(device) * scale).sum(dim=1)
        policy_loss = (policy_loss * batch["policy_mask"].to(device) * scale).sum(dim=1)
        if steps:
            reward_loss = soft_cross_entropy(scalar_to_support(batch["reward"].to(device), support),
                                             torch.stack(rewards, 1))
            reward_loss = (reward_loss * batch["reward_mask"].to(device) * scale[1:]).sum(dim=1)
        else:
            reward_loss = torch.zeros_like(value_loss)
        return (value_loss, reward_loss, policy_loss, support_to_scalar(values[0].detach(), support),
                torch.stack(unrolled, 1) if unrolled else None)

    def consistency_losses(self, batch: dict[str, Tensor], unrolled: Tensor) -> Tensor:
        """EfficientZero's consistency loss ``[B]``: the negative cosine similarity of each unrolled state's
        predicted projection with the projection of the observation that step reached (``future_obs``, encoded by
        the online network without gradient), summed over the ``K`` steps (scaled by ``1 / K``, masked past the
        episode's end). ``unrolled [B, K, H]``: the states :meth:`unroll_losses` reached on the same batch."""
        heads = self.consistency
        assert heads is not None
        future = batch["future_obs"].to(self.device)
        with torch.no_grad():
            reached = self.net.represent(future.reshape(-1, *future.shape[2:])).reshape(unrolled.shape)
        losses = consistency_loss(heads.online(unrolled), heads.target(reached))  # [B, K]
        return (losses * batch["future_mask"].to(self.device)).sum(dim=1) / unrolled.shape[1]

    def _gradient_step(self) -> Tensor:
        """One step of the unrolled loss on a sampled batch; returns the (value, reward, policy, consistency) losses
        ``[4]`` (consistency 0 without it)."""
        config = self.config
        with_consistency = self.consistency is not None and config.unroll_steps > 0
        batch = sample_unrolls(self.replay, config.batch_size, config.unroll_steps, config.td_steps, config.gamma,
                               self.generator, future_obs=with_consistency)
        value_target = self.value_targets(batch)
        value_loss, reward_loss, policy_loss, predicted, unrolled = self.unroll_losses(batch, value_target)
        weight = batch["weight"].to(self.device)
        total = config.value_loss_weight * value_loss + reward_loss + policy_loss
        consistency = torch.zeros_like(total)
        if with_consistency:
            consistency = self.consistency_losses(batch, unrolled)  # type: ignore[arg-type]
            total = total + config.consistency_weight * consistency
        loss = (total * weight).mean()
        self.optimizer.zero_grad()
        loss.backward()
        if config.weight_decay:
            with torch.no_grad():
                self.optimizer.flat_params.mul_(1.0 - self.optimizer.lr * config.weight_decay)
        self.optimizer.step()
        if config.prioritized:
            self.replay.update_priorities(batch["index"], (predicted.cpu() - value_target[:, 0]).abs())
        losses = [value_loss.mean(), reward_loss.mean(), policy_loss.mean(), consistency.mean()]
        return torch.stack(losses).detach().cpu()

    @torch.no_grad()
    def _sync_target(self) -> None:
        for target, online in zip(self.target_net.parameters(), self.net.parameters()):
            target.copy_(online)

    # --- replay and workers -----------------------------------------------------------------------
    def replay_settings(self) -> ReplaySettings:
        """The transitions' fields plus the search ``policy [A]`` (float32), ``buffer_size`` rows; prioritized start
        rows when ``prioritized``."""
        config = self.config
        fields = {**transition_fields(self.observation_space, self.action_space),
                  "policy": FieldSpec((self.num_actions,), torch.float32)}
        return ReplaySettings(config.buffer_size, tuple(fields.items()), 1, config.gamma, config.prioritized,
                              config.per_alpha, config.per_beta)

    def acting_state(self) -> dict[str, Tensor]:
        """``params``: the flat parameter buffer ``[P]`` (every network parameter is a view of it)."""
        return flat_acting_state(self.optimizer, {})

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        load_flat_acting_state(self.optimizer, {}, tensors)

    # --- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        training = self._searches.get((True, self.num_envs))
        heads = {"consistency": self.consistency.state_dict()} if self.consistency is not None else {}
        return {**self._base_state(), **heads, "net": self.net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates, "temperature": self.temperature,
                "search": training.state_dict() if training is not None else self._saved_search}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self.net.load_state_dict(state["net"])
        self.target_net.load_state_dict(state["target_net"])
        if self.consistency is not None:
            self.consistency.load_state_dict(state["consistency"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.temperature = float(state["temperature"])
        self._searches.pop((True, self.num_envs), None)
        self._saved_search = state["search"]
