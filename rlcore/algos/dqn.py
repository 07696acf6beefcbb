"""DQN (Mnih et al., 2015) with double, dueling, n-step and prioritized replay as options.

One file: the config, the targets, the loss and the update. Collection, the replay
buffer's storage and the loop live elsewhere and are shared by every algorithm.

Speed: the target network is frozen during :meth:`DQN.train` (it is synced between
collection steps, like SB3's ``target_update_interval``), so with uniform replay all of a
phase's minibatches are sampled at once and their target values come from one batched
forward pass. Only the online network's forward/backward runs per gradient step.

On the CPU with a plain-MLP Q-network, the update runs on :class:`_HostMLP` (numpy views of the
parameters, each product in whichever of numpy and torch is cheaper, no allocation per step) and
acting on :class:`~rlcore.nets.fused_mlp.NumpyMLP`; the autograd path and the torch fast path
remain for GPUs, dueling heads and custom extractors, and the tests hold them to the same results.

Memory (``memory="lstm"`` or ``"transformer"``, R2D2-style): the Q-network is a
:class:`~rlcore.nets.recurrent_q.RecurrentQNetwork`, the behaviour policy carries each training env's
state across steps (reset where an episode starts; the replay buffer, an
:class:`~rlcore.buffers.sequence.EpisodeEndReplay`, says where episodes ended), and the learner trains on
windows of ``burn_in + sequence_length`` consecutive steps of one env that never cross an episode end.
Both networks are unrolled from a zero state at each window's first step (no state is stored in replay);
the first ``burn_in`` steps only warm the state up, without gradients or loss, and the TD loss (double and
n-step as options, bootstrapping inside the window) covers the last ``sequence_length`` steps.

Replay storage lives on the host by default (``replay_device``); with a CUDA training device, sampled
batches reach it through pinned staging buffers (``pin_memory``, see :mod:`rlcore.buffers.transfer`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.algos.base import Example, ReplayAlgorithm, register_algo
from rlcore.buffers.replay import Placement, Replay, ReplaySettings, build_replay
from rlcore.buffers.sequence import EpisodeEndReplay, gather_windows, window_starts
from rlcore.buffers.storage import transition_fields
from rlcore.buffers.transfer import BatchTransfer, check_replay_device, replay_storage_device
from rlcore.nets.base import FlattenExtractor
from rlcore.nets.extractors import make_extractor
from rlcore.nets.fused_mlp import (
    LinearParams,
    NumpyMLP,
    backward_into_grads,
    fast_forward,
    forward_with_cache,
    plain_mlp_layers,
)
from rlcore.nets.recurrent_q import MEMORY_KINDS, RecurrentQNetwork
from rlcore.optim import FlatAdam
from rlcore.policy import QNetwork
from rlcore.settings import check_range, linear_schedule


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of :class:`DQN`. Defaults follow SB3's DQN; presets hold rl-zoo's per-env values."""

    learning_rate: float = 1e-4
    """Adam step size."""
    buffer_size: int = 1_000_000
    """Transitions kept in replay (over all envs)."""
    learning_starts: int = 100
    """Env steps collected before the first update."""
    batch_size: int = 32
    """Transitions per gradient step."""
    tau: float = 1.0
    """Target update coefficient: 1 copies the online network, < 1 is a Polyak average."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 4
    """Vector-env steps between update phases."""
    gradient_steps: int = 1
    """Gradient steps per update phase."""
    target_update_interval: int = 10_000
    """Env steps between target updates."""
    exploration_fraction: float = 0.1
    """Fraction of training over which epsilon falls from its initial to its final value."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.05
    """Epsilon after ``exploration_fraction`` of training."""
    max_grad_norm: float | None = 10.0
    """Global gradient-norm clip; ``None`` disables it."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the Q-network."""
    activation: str = "relu"
    """Hidden activation: relu, tanh, elu or gelu."""
    loss: str = "huber"
    """TD loss: ``huber`` (smooth L1, as SB3) or ``mse``."""
    double: bool = False
    """Double DQN: the online network picks the next action, the target network values it."""
    dueling: bool = False
    """Dueling head: ``Q = V + A - mean(A)``."""
    n_step: int = 1
    """Length of the bootstrapped return; episode terminations end it early."""
    prioritized: bool = False
    """Prioritized replay (proportional, Schaul et al. 2016)."""
    per_alpha: float = 0.6
    """How strongly priorities shape sampling (0 is uniform)."""
    per_beta_start: float = 0.4
    """Initial importance-weight exponent, annealed linearly to 1 over training."""
    per_eps: float = 1e-6
    """Added to ``|TD error|`` so no transition gets zero priority."""
    fast_path: bool = True
    """Use the hand-written MLP backward when the Q-network is a plain MLP (same maths as autograd, ~2x faster)."""
    features_extractor: str = "auto"
    """Observation encoder: ``auto`` (a CNN for images, flatten/one-hot otherwise) or a registered name
    (``flatten``, ``nature_cnn``, ``impala_cnn``, ``small_cnn``, ...; see :mod:`rlcore.nets.extractors`)."""
    features_kwargs: dict[str, Any] | None = None
    """Keyword arguments of the extractor, e.g. ``{"features_dim": 256}``."""
    memory: str | None = None
    """``"lstm"`` or ``"transformer"``: a recurrent Q-network trained on replay windows (R2D2-style, for
    partially observable tasks); ``net_arch`` is then the head after the memory core."""
    memory_size: int = 64
    """LSTM state width, or the Transformer's width."""
    context_length: int = 16
    """Observations the Transformer attends to (the current one included)."""
    sequence_length: int = 16
    """Steps of each replay window that get a TD loss (memory only)."""
    burn_in: int = 8
    """Steps before them that only warm up the memory from a zero state (memory only). A window of
    ``burn_in + sequence_length`` steps must fit inside an episode."""
    replay_device: str = "cpu"
    """Where replay storage lives: ``"cpu"`` (host memory) or ``"auto"``/``"device"`` (the training device)."""
    pin_memory: bool = True
    """With host storage and a CUDA training device, move batches through pinned memory (non-blocking)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("buffer_size", self.buffer_size, 1)
        check_range("learning_starts", self.learning_starts, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("tau", self.tau, 0.0, 1.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("train_freq", self.train_freq, 1)
        check_range("gradient_steps", self.gradient_steps, 1)
        check_range("target_update_interval", self.target_update_interval, 1)
        check_range("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_range("exploration_initial_eps", self.exploration_initial_eps, 0.0, 1.0)
        check_range("exploration_final_eps", self.exploration_final_eps, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        check_range("n_step", self.n_step, 1)
        check_range("per_alpha", self.per_alpha, 0.0)
        check_range("per_beta_start", self.per_beta_start, 0.0, 1.0)
        check_range("per_eps", self.per_eps, 0.0, low_open=True)
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch widths must be >= 1, got {list(self.net_arch)}")
        self._check_memory()
        check_replay_device(self.replay_device)
        if not isinstance(self.pin_memory, bool):
            raise ValueError(f"pin_memory must be true or false, got {self.pin_memory!r}")

    def _check_memory(self) -> None:
        if self.memory not in (None, *MEMORY_KINDS):
            raise ValueError(f"memory must be one of {[None, *MEMORY_KINDS]}, got {self.memory!r}")
        check_range("memory_size", self.memory_size, 1)
        check_range("context_length", self.context_length, 1)
        check_range("sequence_length", self.sequence_length, 1)
        check_range("burn_in", self.burn_in, 0)
        if self.memory is not None and self.prioritized:
            raise ValueError("prioritized replay is not supported with memory; set prioritized=false")


def td_targets(reward: Tensor, discount: Tensor, next_q_target: Tensor, next_q_online: Tensor | None) -> Tensor:
    """Bootstrapped targets ``r + discount * Q_target(s', a*)``.

    ``a*`` is ``argmax Q_target(s', .)`` (DQN) or ``argmax Q_online(s', .)`` when
    ``next_q_online`` is given (double DQN). ``discount`` already holds ``gamma**k``
    and is zero after a termination.

    Shapes: ``reward``, ``discount`` ``[B]``; ``next_q_*`` ``[B, A]`` -> ``[B]``.
    """
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return reward + discount * next_value


def window_td_targets(
    reward: Tensor, terminated: Tensor, truncated: Tensor, next_value: Tensor, gamma: float, n_step: int = 1,
    burn_in: int = 0,
) -> tuple[Tensor, Tensor]:
    """TD targets and loss mask for the last ``L = W - burn_in`` steps of replay windows of ``W`` steps.

    Step ``t`` (of the last ``L``) bootstraps from ``next_value[t + m - 1]`` after ``m = min(n_step,
    L - t, steps to the episode's end)`` rewards: ``sum_k gamma**k r[t + k] + gamma**m * V``, with ``V``
    zeroed when the episode terminated at step ``t + m - 1`` (a truncation still bootstraps). ``next_value[j]``
    is the bootstrap value of the state after loss step ``j`` (``max_a Q_target``, or the double-DQN value).
    Windows from :func:`~rlcore.buffers.sequence.sample_windows` end an episode at most at their last step;
    steps after an episode end inside a window (burn-in included) are masked out all the same.

    Shapes: ``reward``, ``terminated``, ``truncated`` ``[B, W]``; ``next_value`` ``[B, L]`` ->
    ``(targets [B, L], mask [B, L])`` (mask float, 1 where the step counts).
    """
    ended = terminated | truncated
    ended_before = torch.cumsum(ended.int(), dim=1) - ended.int()
    mask = (ended_before == 0)[:, burn_in:].float()
    reward, terminated, ended = reward[:, burn_in:].float(), terminated[:, burn_in:], ended[:, burn_in:]
    length = reward.shape[1]
    positions = torch.arange(length, device=reward.device)
    total = torch.zeros_like(reward)
    steps = torch.zeros(reward.shape, dtype=torch.long, device=reward.device)
    boot_terminal = torch.zeros_like(ended)
    alive = torch.ones_like(ended)
    for k in range(n_step):
        index = positions + k
        inside = index < length
        index = index.clamp(max=length - 1)
        alive = alive & inside
        total = total + torch.where(alive, reward[:, index] * gamma**k, 0.0)
        steps = steps + alive.long()
        boot_terminal = boot_terminal | (alive & terminated[:, index])
        alive = alive & ~ended[:, index]
    last = positions + steps - 1  # >= positions: step k = 0 always counts
    discount = torch.pow(torch.tensor(gamma, device=reward.device), steps.float()) * (~boot_terminal).float()
    return total + discount * next_value.gather(1, last), mask


class _HostMLP:
    """A plain MLP's forward and hand-written backward on the CPU, over numpy views of its float32 parameters.

    The maths of :func:`forward_with_cache` and :func:`backward_into_grads`, with each operation put where it
    is cheapest at DQN's batch sizes (measured on this project's 2-core x86 machines, one thread):

    - the backward's products (``grad^T @ input`` and ``grad @ W``) in numpy (OpenBLAS): never slower than
      torch's MKL ``mm`` and 4-15x faster when a dimension is small (2-6 us against 10-95 us for the 4-input
      first layer or the 2-action last layer at 64-256 rows);
    - the forward products in torch's ``addmm`` when both of the layer's dimensions are >= 64 (numpy's product
      with a transposed weight runs 1.3-2x slower there), in numpy otherwise;
    - ReLU and its backward in torch (1.6 and 4.5 us on ``[64, 256]``; numpy's ``maximum`` takes 6.7);
    - every intermediate in a buffer allocated once per batch size, so no call allocates.

    Parameters are read in place, so they may be updated in place (FlatAdam, ``load_state_dict``) but not
    replaced. With ``grads`` the layers' ``.grad`` tensors are written in place too.

    Shapes: ``forward``: ``[B, in]`` float32 array -> ``[B, out]`` array (a reused buffer).
    """

    MIN_TORCH_DIM = 64
    """Forward products with both layer dimensions at least this big go through torch's ``addmm``."""
    MAX_BUFFER_SETS = 16
    """Buffer sets kept (one per purpose and batch size in use)."""

    def __init__(self, layers: list[LinearParams], activation: type[nn.Module], *, grads: bool) -> None:
        self.weights_t = [layer.weight.detach() for layer in layers]
        self.biases_t = [layer.bias.detach() for layer in layers]
        self.weights = [weight.numpy() for weight in self.weights_t]  # [out, in] views
        self.weights_in_out = [weight.T for weight in self.weights]  # [in, out] views
        self.biases = [bias.numpy() for bias in self.biases_t]
        self.torch_forward = [min(weight.shape) >= self.MIN_TORCH_DIM for weight in self.weights]
        self.relu = activation is nn.ReLU
        self.weight_grads = [layer.weight.grad.numpy() for layer in layers] if grads else []
        self.bias_grads = [layer.bias.grad.numpy() for layer in layers] if grads else []
        self._buffers: dict[tuple[str, int], list[tuple[np.ndarray, Tensor]]] = {}

    @staticmethod
    def applies(layers: list[LinearParams], *, grads: bool) -> bool:
        """Whether every parameter (and, with ``grads``, every ``.grad``) is a float32 CPU tensor."""
        tensors = [p for layer in layers for p in layer]
        if grads:
            if any(p.grad is None for p in tensors):
                return False
            tensors += [p.grad for p in tensors]
        return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)

    def _buffer_set(self, purpose: str, rows: int) -> list[tuple[np.ndarray, Tensor]]:
        """``(array, tensor)`` twins sharing memory: each layer's output, then the backward's input gradients.

        Allocated by torch (64-byte aligned, as every other tensor MKL sees), once per purpose and batch size.
        """
        key = (purpose, rows)
        buffers = self._buffers.get(key)
        if buffers is None:
            if len(self._buffers) >= self.MAX_BUFFER_SETS:  # callers with ever-new batch sizes
                self._buffers.clear()
            widths = [w.shape[0] for w in self.weights] + [w.shape[1] for w in self.weights[1:]]
            tensors = [torch.empty(rows, width) for width in widths]
            buffers = self._buffers[key] = [(t.numpy(), t) for t in tensors]
        return buffers

    def forward(self, x: np.ndarray, purpose: str = "eval") -> tuple[np.ndarray, list[tuple[np.ndarray, Tensor]]]:
        """The output ``[B, out]`` and each layer's input (for :meth:`backward`), all in ``purpose``'s buffers."""
        buffers = self._buffer_set(purpose, x.shape[0])
        inputs: list[tuple[np.ndarray, Tensor]] = []
        hidden = (x, None)
        last = len(self.weights) - 1
        for index in range(last + 1):
            inputs.append(hidden)
            out, out_t = buffers[index]
            if self.torch_forward[index]:
                x_t = hidden[1] if hidden[1] is not None else torch.from_numpy(hidden[0])
                torch.addmm(self.biases_t[index], x_t, self.weights_t[index].t(), out=out_t)
            else:
                np.matmul(hidden[0], self.weights_in_out[index], out=out)
                out += self.biases[index]
            if index < last:
                if self.relu:
                    out_t.relu_()
                else:
                    np.tanh(out, out=out)
            hidden = (out, out_t)
        return hidden[0], inputs

    def backward(self, inputs: list[tuple[np.ndarray, Tensor]], grad_output: np.ndarray, purpose: str) -> None:
        """Back-propagates ``dLoss/dOutput`` ``[B, out]``; *overwrites* every weight's and bias's ``.grad``."""
        buffers = self._buffer_set(purpose, grad_output.shape[0])
        grad = grad_output
        for index in range(len(self.weights) - 1, -1, -1):
            layer_input = inputs[index][0]
            np.matmul(grad.T, layer_input, out=self.weight_grads[index])
            np.add.reduce(grad, axis=0, out=self.bias_grads[index])
            if index == 0:
                break
            below, below_t = buffers[len(self.weights) + index - 1]
            np.matmul(grad, self.weights[index], out=below)
            activated_t = inputs[index][1]  # the previous layer's output, after its activation
            if self.relu:
                torch.ops.aten.threshold_backward.grad_input(below_t, activated_t, 0.0, grad_input=below_t)
            else:
                torch.ops.aten.tanh_backward.grad_input(below_t, activated_t, grad_input=below_t)
            grad = below


@register_algo("dqn")
class DQN(ReplayAlgorithm[DQNConfig]):
    """Deep Q-learning from replay with a target network and epsilon-greedy exploration."""

    config_class: ClassVar[type] = DQNConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {
        "total_env_steps": 800, "net_arch": [16], "learning_starts": 100, "train_freq": 4, "gradient_steps": 1,
        "batch_size": 16, "buffer_size": 2000, "target_update_interval": 100})
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    flat_box_only: ClassVar[bool] = False
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: DQNConfig,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        torch.manual_seed(seed)  # network initialisation
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        features = make_extractor(observation_space, config.features_extractor, **(config.features_kwargs or {}))
        self.q_net: QNetwork | RecurrentQNetwork
        if config.memory is None:
            self.q_net = QNetwork(
                observation_space, self.num_actions, config.net_arch, dueling=config.dueling,
                activation=config.activation, features=features,
            ).to(self.device)
        else:
            self.q_net = RecurrentQNetwork(
                observation_space, self.num_actions, features, config.memory, config.memory_size,
                config.context_length, config.net_arch, dueling=config.dueling, activation=config.activation,
            ).to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net.parameters(), lr=config.learning_rate, max_grad_norm=config.max_grad_norm)
        self._fast_mlp = self._fast_path_layers(self.q_net)
        self._fast_target = self._fast_path_layers(self.target_net)
        self._target_flat = self._flatten_target()
        self._host, self._host_target = self._host_nets()
        self._act_net = self._numpy_acting_net()
        self._row_starts_cache: dict[int, np.ndarray] = {}
        self._grad_output_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        storage_device = replay_storage_device(config.replay_device, self.device)
        self._transfer = (BatchTransfer(self.device, config.pin_memory)
                          if storage_device.type == "cpu" and self.device.type != "cpu" else None)
        """Moves host-stored batches to the training device (None when the storage is already there)."""
        self.replay: Replay
        if config.memory is None:
            self.replay = build_replay(self.replay_settings(), Placement(envs_per_shard=num_envs,
                                                                         device=storage_device))
        else:  # n-step returns are computed inside the windows
            self.replay = EpisodeEndReplay(config.buffer_size, num_envs, device=storage_device, gamma=config.gamma,
                                           on_episode_end=self._episodes_ended)
        self.exploration_rate = config.exploration_initial_eps
        self.updates = 0
        self._next_target_sync = config.target_update_interval
        self._memory_state = self._initial_memory_state(num_envs)
        """The training envs' memory (LSTM state or observation window) between steps; None without memory."""
        self._episode_start = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        """Which training envs start an episode at their next step (set from the replay buffer's writes)."""

    def replay_settings(self) -> ReplaySettings:
        """What DQN asks of its replay; the caller places it (this process, or a shard per worker)."""
        config, fields = self.config, transition_fields(self.observation_space, self.action_space)
        return ReplaySettings(config.buffer_size, tuple(fields.items()), config.n_step, config.gamma,
                              config.prioritized, config.per_alpha, config.per_beta_start)

    def _fast_path_layers(self, network: QNetwork | RecurrentQNetwork) -> tuple[list, type] | None:
        """The network's layers when the hand-written MLP kernels apply (plain MLP head, flat input)."""
        if not self.config.fast_path or self.config.dueling or self.config.memory is not None:
            return None
        if type(network.features) is not FlattenExtractor:
            return None
        return plain_mlp_layers(network.body)

    def _flatten_target(self) -> Tensor | None:
        """Moves the target network's parameters into one buffer laid out like FlatAdam's ``flat_params``.

        A target sync is then one copy (or one lerp) of ``[P]`` floats instead of one per tensor: with
        ``target_update_interval=10`` syncs run every 10 env steps. Each target tensor takes the place of
        its online twin in the optimizer's order (which groups parameters by learning rate). Returns None
        when the optimizer does not hold every online parameter (some are frozen).
        """
        online = list(self.q_net.parameters())
        twin = {id(param): target for param, target in zip(online, self.target_net.parameters())}
        if len(self.optimizer.params) != len(online) or any(id(p) not in twin for p in self.optimizer.params):
            return None
        flat = torch.empty_like(self.optimizer.flat_params)
        offset = 0
        with torch.no_grad():
            for param in self.optimizer.params:
                target = twin[id(param)]
                count = target.numel()
                flat[offset : offset + count].copy_(target.reshape(-1))
                target.data = flat[offset : offset + count].view_as(target)
                offset += count
        if offset != flat.numel():
            raise AssertionError(f"target layout covers {offset} of {flat.numel()} parameters")
        return flat

    def _host_nets(self) -> tuple[_HostMLP | None, _HostMLP | None]:
        """The online and target networks' numpy kernels (CPU float32 fast path), else ``(None, None)``."""
        if self._fast_mlp is None or self._fast_target is None:
            return None, None
        (layers, activation), (target_layers, _) = self._fast_mlp, self._fast_target
        if not (_HostMLP.applies(layers, grads=True) and _HostMLP.applies(target_layers, grads=False)):
            return None, None
        return _HostMLP(layers, activation, grads=True), _HostMLP(target_layers, activation, grads=False)

    def _numpy_acting_net(self) -> NumpyMLP | None:
        """The online network in numpy for acting on Box observations on the CPU, else None."""
        if self._host is None or not isinstance(self.observation_space, spaces.Box):
            return None
        return NumpyMLP(*self._fast_mlp)  # type: ignore[misc]

    def _initial_memory_state(self, num_envs: int) -> dict[str, Tensor] | None:
        """A zero memory for ``num_envs`` envs (None without memory)."""
        if not isinstance(self.q_net, RecurrentQNetwork):
            return None
        obs_dtype = torch.as_tensor(self.observation_space.sample()).dtype
        return self.q_net.initial_state(num_envs, self.device, obs_dtype)

    def _episodes_ended(self, done: np.ndarray) -> None:
        """The replay buffer's report after each write: envs whose episode ended (``[N]`` bool) start anew."""
        self._episode_start = torch.from_numpy(np.array(done, dtype=bool)).to(self.device)

    # --- acting ---------------------------------------------------------------------------
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy actions, or epsilon-greedy ones when not ``deterministic``. ``[N, *obs] -> [N]``.

        With memory, ``act`` is the training envs' behaviour policy (``N = num_envs``): it steps their
        state, which the replay buffer's writes reset where episodes end. Greedy acting with memory
        (evaluation, ``predict``) goes through :meth:`actor`, which keeps a state of its own.

        Exploration draws ``[N, 2]`` uniforms from :attr:`generator` (float64, one call): env ``i`` explores
        when ``u[i, 0] < epsilon`` and then takes action ``floor(u[i, 1] * A)``. When every env explores, the
        network is not run at all (all of ``learning_starts`` and most of the early decay). On the CPU the
        greedy action comes from :class:`NumpyMLP` (Box observations, plain MLP): ~15 us for one observation
        against ~35 us through torch.
        """
        if self.config.memory is not None:
            return self._memory_act(obs, deterministic)
        net = self._act_net
        if net is None or obs.device.type != "cpu":
            return self._act_torch(obs, deterministic)
        epsilon = 0.0 if deterministic else self.exploration_rate
        count = obs.shape[0]
        if epsilon > 0.0:
            draws = torch.rand(count, 2, generator=self.generator, dtype=torch.float64).numpy()
            explore = draws[:, 0] < epsilon
            if not explore.any():
                actions = self._greedy_numpy(net, obs)
            else:
                random_actions = (draws[:, 1] * self.num_actions).astype(np.int64)  # u < 1 - 2**-53: u * A < A
                if explore.all():
                    actions = random_actions
                else:
                    actions = np.where(explore, random_actions, self._greedy_numpy(net, obs))
        else:
            actions = self._greedy_numpy(net, obs)
        if self.action_start:
            actions = actions + self.action_start
        return torch.from_numpy(actions)

    @staticmethod
    def _greedy_numpy(net: NumpyMLP, obs: Tensor) -> np.ndarray:
        features = obs.reshape(obs.shape[0], -1)
        if features.dtype != torch.float32:
            features = features.float()
        return net(features.numpy()).argmax(axis=1)

    @torch.no_grad()
    def _act_torch(self, obs: Tensor, deterministic: bool) -> Tensor:
        """:meth:`act` through torch (GPU, dueling or custom networks): the same random draws."""
        greedy = self.q_values(obs.to(self.device)).argmax(dim=1).cpu()
        return self._epsilon_greedy(greedy, 0.0 if deterministic else self.exploration_rate)

    def _epsilon_greedy(self, greedy: Tensor, epsilon: float) -> Tensor:
        """Env actions from greedy indices ``[N]`` (CPU): each replaced by a uniform one with probability
        ``epsilon``, drawn as :meth:`act` documents; the action space's start added."""
        if epsilon <= 0.0:
            return greedy + self.action_start if self.action_start else greedy
        draws = torch.rand(greedy.shape[0], 2, generator=self.generator, dtype=torch.float64)
        explore = draws[:, 0] < epsilon
        random_actions = (draws[:, 1] * self.num_actions).long()
        actions = torch.where(explore, random_actions, greedy)
        return actions + self.action_start if self.action_start else actions

    @torch.no_grad()
    def _memory_act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """:meth:`act` with memory: one step of the training envs' state, then (epsilon-)greedy actions."""
        if deterministic:
            raise TypeError(f"{self.name} with memory={self.config.memory!r} acts greedily with a per-env state: "
                            "use algo.actor() (a callable that keeps it), or Agent.evaluate")
        if obs.shape[0] != self.num_envs:
            raise ValueError(f"act() with memory steps the {self.num_envs} training envs' state; got a batch of "
                             f"{obs.shape[0]} observations (use algo.actor() for other envs)")
        q, self._memory_state = self.q_net.step(  # type: ignore[union-attr]
            obs.to(self.device), self._memory_state, self._episode_start)  # type: ignore[arg-type]
        self._episode_start = torch.zeros_like(self._episode_start)
        return self._epsilon_greedy(q.argmax(dim=1).cpu(), self.exploration_rate)

    def actor(self, deterministic: bool = True) -> Callable[[Tensor], Tensor]:
        """A fresh acting function ``obs [N, *obs_shape] -> actions [N]`` for whole episodes; with memory it
        keeps its own per-env state, starting new episodes on its first call (the training state is untouched)."""
        if self.config.memory is None:
            return super().actor(deterministic)
        net: RecurrentQNetwork = self.q_net  # type: ignore[assignment]
        state: dict[str, Tensor] | None = None
        episode_start: Tensor | None = None

        @torch.no_grad()
        def act(obs: Tensor) -> Tensor:
            nonlocal state, episode_start
            obs = obs.to(self.device)
            if state is None or episode_start is None:
                state = self._initial_memory_state(obs.shape[0])
                episode_start = torch.ones(obs.shape[0], dtype=torch.bool, device=self.device)
            q, state = net.step(obs, state, episode_start)  # type: ignore[arg-type]
            episode_start = torch.zeros_like(episode_start)
            return self._epsilon_greedy(q.argmax(dim=1).cpu(), 0.0 if deterministic else self.exploration_rate)

        return act

    @torch.no_grad()
    def q_values(self, obs: Tensor) -> Tensor:
        """``Q(s, .)`` of the online network: ``[B, *obs_shape] -> [B, A]`` (memoryless networks only)."""
        if self.config.memory is not None:
            raise TypeError("with memory, Q-values depend on the episode so far: use q_net.step or q_net.unroll")
        if self._fast_mlp is None:
            return self.q_net(obs)
        return fast_forward(*self._fast_mlp, self.q_net.features(obs))

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Updates epsilon and PER's beta, and syncs the target network when it is due."""
        super().set_progress(env_steps, total_env_steps)
        config = self.config
        progress = env_steps / self.total_env_steps
        self.exploration_rate = linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, config.exploration_fraction, progress
        )
        if config.prioritized:
            self.replay.sampler.beta = linear_schedule(config.per_beta_start, 1.0, 1.0, progress)  # type: ignore
        while env_steps >= self._next_target_sync:
            self._sync_target()
            self._next_target_sync += config.target_update_interval

    @torch.no_grad()
    def _sync_target(self) -> None:
        if self._target_flat is not None:
            if self.config.tau == 1.0:
                self._target_flat.copy_(self.optimizer.flat_params)
            else:
                self._target_flat.lerp_(self.optimizer.flat_params, self.config.tau)
        elif self.config.tau == 1.0:
            for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                target.copy_(online)
        else:
            target_params = list(self.target_net.parameters())
            torch._foreach_lerp_(target_params, list(self.q_net.parameters()), self.config.tau)

    # --- learning -------------------------------------------------------------------------
    def train(self, gradient_steps: int) -> dict[str, float]:
        """Takes ``gradient_steps`` TD updates on minibatches from replay.

        Returns:
            ``train/loss`` (mean over the steps), ``train/n_updates``, ``train/learning_rate``,
            ``rollout/exploration_rate``.
        """
        if self.config.memory is not None:
            return self._sequence_train(gradient_steps)
        if self.config.prioritized:
            losses = [self._prioritized_step() for _ in range(gradient_steps)]
        elif self._host is not None:
            losses = self._host_uniform_steps(gradient_steps)
        else:
            losses = self._uniform_steps(gradient_steps)
        self.updates += gradient_steps
        if len(losses) and isinstance(losses[0], Tensor):
            mean_loss = torch.stack(losses).mean().item()  # type: ignore[arg-type]
        else:
            mean_loss = float(np.mean(np.asarray(losses, dtype=np.float32)))
        return {
            "train/loss": mean_loss,
            "train/n_updates": float(self.updates),
            "train/learning_rate": self.config.learning_rate,
            "rollout/exploration_rate": self.exploration_rate,
        }

    def _uniform_steps(self, gradient_steps: int) -> list[Tensor]:
        """All minibatches of the phase are drawn at once; their targets come from one target-net pass."""
        batch_size = self.config.batch_size
        batch = self._sample(gradient_steps * batch_size)
        columns = self._action_column(batch["action"])
        with torch.no_grad():
            next_q_target_all = self._target_q(batch["next_obs"])
            if not self.config.double:
                targets_all = td_targets(batch["reward"], batch["discount"], next_q_target_all, None)
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            if self.config.double:
                targets = self._double_targets(batch, rows, next_q_target_all[rows])
            else:
                targets = targets_all[rows]
            loss, _ = self._td_step(batch["obs"][rows], columns[rows], targets, None)
            losses.append(loss)
        return losses

    def _host_uniform_steps(self, gradient_steps: int) -> np.ndarray:
        """:meth:`_uniform_steps` on the numpy kernels (CPU); returns the float32 losses ``[steps]``."""
        batch_size = self.config.batch_size
        batch = self.replay.sample(gradient_steps * batch_size, self.generator)
        obs, next_obs = self._host_features(batch["obs"]), self._host_features(batch["next_obs"])
        actions = self._action_indices(batch["action"])
        reward, discount = batch["reward"].numpy(), batch["discount"].numpy()
        next_q_target = self._host_target_q(next_obs)
        if not self.config.double:
            targets_all = reward + discount * next_q_target.max(axis=1)
        losses = np.empty(gradient_steps, dtype=np.float32)
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            if self.config.double:
                targets = self._host_double_targets(next_obs[rows], reward[rows], discount[rows], next_q_target[rows])
            else:
                targets = targets_all[rows]
            losses[step], _ = self._host_td_step(obs[rows], actions[rows], targets, None)
        return losses

    def _sample(self, batch_size: int) -> dict[str, Tensor]:
        """``replay.sample`` on the training device (through :attr:`_transfer` when the storage is on the host)."""
        batch = self.replay.sample(batch_size, self.generator)
        return batch if self._transfer is None else self._transfer(batch)

    def _prioritized_step(self) -> Tensor | np.floating:
        batch = self._sample(self.config.batch_size)
        if self._host is not None:
            obs, next_obs = self._host_features(batch["obs"]), self._host_features(batch["next_obs"])
            reward, discount = batch["reward"].numpy(), batch["discount"].numpy()
            next_q_target = self._host_target.forward(next_obs)[0]  # type: ignore[union-attr]
            if self.config.double:
                targets_np = self._host_double_targets(next_obs, reward, discount, next_q_target)
            else:
                targets_np = reward + discount * next_q_target.max(axis=1)
            loss_np, td_np = self._host_td_step(obs, self._action_indices(batch["action"]), targets_np,
                                                batch["weight"].numpy())
            self.replay.update_priorities(batch["index"], torch.from_numpy(np.abs(td_np) + self.config.per_eps))
            return loss_np
        rows = slice(None)
        with torch.no_grad():
            next_q_target = self._target_q(batch["next_obs"])
            if self.config.double:
                targets = self._double_targets(batch, rows, next_q_target)
            else:
                targets = td_targets(batch["reward"], batch["discount"], next_q_target, None)
        column = self._action_column(batch["action"])
        loss, td_error = self._td_step(batch["obs"], column, targets, batch["weight"])
        self.replay.update_priorities(batch["index"], td_error.abs() + self.config.per_eps)
        return loss

    # --- memory: TD on replay windows ----------------------------------------------------------
    WINDOW_KEYS: ClassVar[tuple[str, ...]] = ("obs", "action", "reward", "terminated", "truncated")
    """The columns a window needs at every step (``next_obs`` only at its last one)."""

    def _sequence_train(self, gradient_steps: int) -> dict[str, float]:
        """:meth:`train` with memory: ``gradient_steps`` TD steps on ``batch_size`` windows each.

        All the phase's windows are drawn at once (uniformly among the valid starts) and the frozen target
        network is unrolled over them in one pass; the online network runs per step.
        """
        config = self.config
        if not isinstance(self.replay, EpisodeEndReplay):
            raise ValueError(f"dqn with memory={config.memory!r} needs its own replay buffer, which tells the "
                             "behaviour policy where episodes end; num_workers > 0 replaces it: use num_workers=0")
        window = config.burn_in + config.sequence_length
        starts = window_starts(self.replay, window)
        metrics = {"train/n_updates": float(self.updates), "train/learning_rate": config.learning_rate,
                   "rollout/exploration_rate": self.exploration_rate}
        if starts.size == 0:
            if self.replay.steps_stored < 2 * window:
                return metrics  # too early: no window can fit yet
            raise ValueError(
                f"no window of burn_in + sequence_length = {window} steps fits inside an episode in the replay "
                f"buffer ({self.replay.steps_stored} steps stored per env): the episodes are shorter; lower "
                "burn_in or sequence_length")
        batch_size = config.batch_size
        draw = torch.randint(starts.size, (gradient_steps * batch_size,), generator=self.generator)
        batch = gather_windows(self.replay, torch.from_numpy(starts)[draw], window, self.WINDOW_KEYS, ("next_obs",))
        if self._transfer is not None:
            batch = self._transfer(batch)
        inputs = torch.cat([batch["obs"], batch["next_obs"].unsqueeze(1).to(batch["obs"].dtype)], dim=1)
        with torch.no_grad():
            q_target = self.target_net.unroll(inputs, config.burn_in)  # type: ignore[operator]  # [G*B, L+1, A]
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            losses.append(self._sequence_step({key: batch[key][rows] for key in self.WINDOW_KEYS}, inputs[rows],
                                              q_target[rows]))
        self.updates += gradient_steps
        metrics["train/n_updates"] = float(self.updates)
        return {"train/loss": torch.stack(losses).mean().item(), **metrics}

    def _sequence_step(self, window: dict[str, Tensor], inputs: Tensor, q_target: Tensor) -> Tensor:
        """One gradient step on the masked TD loss of windows' last ``L`` steps.

        Shapes: ``window`` columns ``[B, W, ...]``; ``inputs [B, W + 1, *obs_shape]`` (the window's
        observations, then its last ``next_obs``); ``q_target [B, L + 1, A]`` (the target network's values
        from step ``burn_in`` on). Returns the loss (detached).
        """
        config = self.config
        burn_in = config.burn_in
        q_online = self.q_net.unroll(inputs, burn_in)  # type: ignore[operator]  # [B, L+1, A]
        actions = (window["action"][:, burn_in:].long() - self.action_start).unsqueeze(2)  # [B, L, 1]
        q_taken = q_online[:, :-1].gather(2, actions).squeeze(2)  # [B, L]
        with torch.no_grad():
            if config.double:
                best = q_online[:, 1:].argmax(dim=2, keepdim=True)
                next_value = q_target[:, 1:].gather(2, best).squeeze(2)
            else:
                next_value = q_target[:, 1:].max(dim=2).values
            targets, mask = window_td_targets(window["reward"], window["terminated"], window["truncated"],
                                              next_value, config.gamma, config.n_step, burn_in)
        if config.loss == "huber":
            per_step = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_step = (q_taken - targets).pow(2)
        loss = (per_step * mask).sum() / mask.sum().clamp(min=1.0)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    # --- the numpy kernels (CPU, plain MLP) --------------------------------------------------
    def _host_features(self, obs: Tensor) -> np.ndarray:
        """What the network sees (flattened floats, or one-hot), as a C-contiguous float32 array ``[B, in]``."""
        return np.ascontiguousarray(self.q_net.features(obs).numpy())

    def _action_indices(self, action: Tensor) -> np.ndarray:
        """Action indices (``action - start``) as int64 ``[B]``."""
        indices = action.reshape(-1).numpy().astype(np.int64)
        return indices - self.action_start if self.action_start else indices

    def _host_target_q(self, next_obs: np.ndarray, chunk: int = 512) -> np.ndarray:
        """``Q_target(s', .)`` ``[B, A]`` (a new array), in chunks of ``chunk`` rows (MKL's product slows by up
        to 2x on this project's machines from ~1k rows of 256 units, as the layer outgrows the L2 cache)."""
        host = self._host_target
        out = np.empty((next_obs.shape[0], self.num_actions), dtype=np.float32)
        for start in range(0, next_obs.shape[0], chunk):
            out[start : start + chunk] = host.forward(next_obs[start : start + chunk])[0]  # type: ignore[union-attr]
        return out

    def _host_double_targets(
        self, next_obs: np.ndarray, reward: np.ndarray, discount: np.ndarray, next_q_target: np.ndarray
    ) -> np.ndarray:
        """Double-DQN targets: the online network (as it is now) picks ``a*``, the target network values it."""
        best = self._host.forward(next_obs)[0].argmax(axis=1)  # type: ignore[union-attr]
        return reward + discount * np.take_along_axis(next_q_target, best[:, None], axis=1)[:, 0]

    def _host_td_step(
        self, obs: np.ndarray, actions: np.ndarray, targets: np.ndarray, weight: np.ndarray | None
    ) -> tuple[np.floating, np.ndarray]:
        """:meth:`_fast_td_step` on the numpy kernels: ``obs [B, in]`` float32 features, ``actions [B]`` int64
        indices, ``targets [B]``, ``weight [B]`` or None -> ``(loss, TD errors [B])``."""
        host = self._host
        q_all, inputs = host.forward(obs, "train")  # type: ignore[union-attr]
        rows, num_actions = q_all.shape
        taken = self._row_starts(rows) + actions  # flat ids of Q(s_i, a_i) in q_all
        td_error = q_all.take(taken)
        td_error -= targets
        # dLoss/dq_taken for loss = mean(weight * l(td)): l' = clamp(td, -1, 1) (Huber) or 2 td (MSE)
        if self.config.loss == "huber":
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
        host.backward(inputs, grad_output, "train")  # type: ignore[union-attr]
        self.optimizer.step()
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

    @torch.no_grad()
    def _target_q(self, next_obs: Tensor) -> Tensor:
        """``Q_target(s', .)``: ``[B, *obs_shape] -> [B, A]``."""
        if self._host_target is not None:
            return torch.from_numpy(self._host_target_q(self._host_features(next_obs)))
        if self._fast_target is None:
            return self.target_net(next_obs)
        return fast_forward(*self._fast_target, self.target_net.features(next_obs))

    @torch.no_grad()
    def _double_targets(self, batch: dict[str, Tensor], rows: slice, next_q_target: Tensor) -> Tensor:
        """Double-DQN targets: the online network (as it is now) picks ``a*``, the target network values it."""
        next_q_online = self.q_net(batch["next_obs"][rows])
        return td_targets(batch["reward"][rows], batch["discount"][rows], next_q_target, next_q_online)

    def _action_column(self, action: Tensor) -> Tensor:
        return (action.long() - self.action_start).reshape(-1, 1)

    def _td_step(self, obs: Tensor, column: Tensor, targets: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
        """One gradient step on the (importance-weighted) TD loss of ``Q(obs, a)`` against ``targets``.

        Shapes: ``obs [B, *obs_shape]``, ``column [B, 1]`` (action indices), ``targets [B]``,
        ``weight [B]`` or None.

        Returns:
            ``(loss, TD errors [B])``, detached.
        """
        if self._host is not None:
            loss, td_error = self._host_td_step(
                self._host_features(obs), column.reshape(-1).numpy(), targets.numpy(),
                None if weight is None else weight.numpy(),
            )
            return torch.tensor(loss), torch.from_numpy(td_error)
        if self._fast_mlp is not None:
            return self._fast_td_step(obs, column, targets, weight)
        q_taken = self.q_net(obs).gather(1, column).squeeze(1)
        td_error = q_taken - targets
        if self.config.loss == "huber":
            per_sample = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_sample = td_error.pow(2)
        loss = per_sample.mean() if weight is None else (per_sample * weight).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), td_error.detach()

    @torch.no_grad()
    def _fast_td_step(
        self, obs: Tensor, column: Tensor, targets: Tensor, weight: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`_td_step` with the hand-written MLP backward (same maths; tested against autograd)."""
        layers, activation = self._fast_mlp  # type: ignore[misc]
        q_all, cache = forward_with_cache(layers, activation, self.q_net.features(obs))
        td_error = q_all.gather(1, column).squeeze(1).sub_(targets)
        # dLoss/dq_taken for loss = mean(weight * l(td)): l' = clamp(td, -1, 1) (Huber) or 2 td (MSE)
        if self.config.loss == "huber":
            grad_q_taken = td_error.clamp(-1.0, 1.0)
            per_sample = grad_q_taken * (td_error - 0.5 * grad_q_taken)  # = Huber(td) with delta 1
        else:
            grad_q_taken = 2.0 * td_error
            per_sample = td_error * td_error
        if weight is not None:
            per_sample = per_sample * weight
            grad_q_taken.mul_(weight)
        grad_q_taken.div_(td_error.shape[0])
        grad_output = torch.zeros_like(q_all).scatter_(1, column, grad_q_taken.unsqueeze(1))
        backward_into_grads(layers, activation, cache, grad_output)
        self.optimizer.step()
        return per_sample.mean(), td_error

    # --- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "next_target_sync": self._next_target_sync,
            "exploration_rate": self.exploration_rate,
            **({"memory_state": self._memory_state, "episode_start": self._episode_start}
               if self._memory_state is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self._memory_state is None) != (state.get("memory_state") is None):
            raise ValueError(f"the checkpoint's memory does not match this config's memory={self.config.memory!r} "
                             "(a recurrent Q-network's state is saved with it)")
        self._load_base_state(state)
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self._next_target_sync = int(state["next_target_sync"])
        self.exploration_rate = float(state["exploration_rate"])
        if self._memory_state is not None:
            self._memory_state = {key: value.to(self.device) for key, value in state["memory_state"].items()}
            self._episode_start = state["episode_start"].to(self.device, torch.bool)

    # --- workers ------------------------------------------------------------------------------
    def check_workers(self) -> None:
        if self.config.memory is not None:
            raise ValueError(f"num_workers > 0 does not support memory={self.config.memory!r} DQN yet (its windows "
                             "need one replay per env column); use num_workers=0")

    def acting_state(self) -> dict[str, Tensor]:
        """``params``: the flat parameter buffer ``[P]`` (every Q-network parameter is a view of it)."""
        return {"params": self.optimizer.flat_params}

    @torch.no_grad()
    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        self.optimizer.flat_params.copy_(tensors["params"])

    def set_worker_exploration(self, rate: float) -> None:
        self.exploration_rate = rate
