"""AlphaZero (Silver et al., 2018): self-play with PUCT search guided by a residual policy-value net.

Self-play runs on the Trainer's vector env: ``num_envs`` = ``B`` games in lockstep. Each vector
step, :meth:`AlphaZero.plan` searches all ``B`` positions at once (one batched network call per
simulation, :meth:`rlcore.search.MCTS.search_batch`), records ``(obs, search policy, player)`` per
game and plays a move. Two searches:

- ``search="puct"`` (AlphaZero): Dirichlet noise at the root; the policy target is the visit
  distribution; moves are sampled from the visits for the first ``temperature_moves`` moves of a
  game, the most visited after;
- ``search="gumbel"`` (Gumbel AlphaZero, Danihelka et al. 2022): Gumbel top-k sampling of
  ``gumbel_considered`` root actions and sequential halving; the move is the halving's winner (a
  sample of the improved policy, through the Gumbel noise), and the policy target is the improved
  policy ``softmax(logits + sigma(completed Q))``, which improves on the network's policy even with
  very few simulations (e.g. 16), where visit counts carry little information.

When a game ends,
:meth:`AlphaZero.observe` labels its positions with the outcome ``z`` for the player to move and
stores them in a :class:`PositionBuffer`; every ``train_every`` new positions it takes
``gradient_steps`` steps on ``CE(pi, p) + (z - v)^2`` (weight decay in AdamW).

Evaluation (:meth:`AlphaZero.evaluate`) plays against pure MCTS with random rollouts and against the
network of the previous evaluation; ``eval/mean_reward`` is the score against pure MCTS.

Needs a two-player zero-sum game whose simulator gives the network input, ``observation(state)``:
rlcore's native games (``rlcore/TicTacToe-v0``, ``rlcore/ConnectFour-v0``: search in numba) or any
OpenSpiel game by name (``openspiel/hex(board_size=5)``: search through the Python simulator
path). Board observations ``[C, H, W]`` get the residual tower, flat ones ``[N]`` an MLP.

References:
    Silver et al., 2018. A general reinforcement learning algorithm that masters chess, shogi,
    and Go through self-play. Science 362.
    Danihelka et al., 2022. Policy improvement by planning with Gumbel. ICLR.
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

from rlcore.algos.base import Example, SelfPlayAlgorithm, register_algo, sub_envs
from rlcore.buffers.replay import ReplaySettings
from rlcore.buffers.storage import FieldSpec
from rlcore.env import EnvSpec, make_env
from rlcore.search import MCTS, MCTSConfig, Simulator, make_simulator
from rlcore.search.network import make_policy_value_net
from rlcore.search.selfplay import NetworkPlayer, RolloutPlayer, play_games
from rlcore.search.simulator import current_state
from rlcore.settings import check_range


@dataclass(frozen=True)
class AlphaZeroConfig:
    """Hyperparameters of :class:`AlphaZero`; presets hold per-game values."""

    num_simulations: int = 100
    """Simulations per self-play move."""
    search: Literal["puct", "gumbel"] = "puct"
    """``puct`` (AlphaZero) or ``gumbel`` (Gumbel AlphaZero: sequential halving, improved-policy targets)."""
    c_puct: float = 1.5
    """PUCT exploration constant."""
    dirichlet_alpha: float = 1.0
    """PUCT: root noise concentration (about 10 / typical number of legal moves); 0 turns the noise off."""
    dirichlet_fraction: float = 0.25
    """PUCT: weight of the root noise."""
    temperature_moves: int = 8
    """PUCT: moves per game sampled in proportion to visits; later moves take the most visited."""
    reuse_tree: bool = True
    """PUCT: start each move's search from the subtree of the moves played, keeping its visits (a search then holds
    more than ``num_simulations`` visits); False: a fresh tree each move, exactly ``num_simulations`` (as Gumbel,
    which never reuses: sequential halving needs a root without visits)."""
    gumbel_considered: int = 16
    """Gumbel: root actions sampled without replacement (Gumbel top-k) for sequential halving."""
    gumbel_value_scale: float = 0.1
    """Gumbel: ``c_scale`` of ``sigma(q) = (c_visit + max n) * c_scale * q`` (q rescaled to [0, 1])."""
    gumbel_visit_offset: float = 50.0
    """Gumbel: ``c_visit`` of ``sigma(q)``."""
    gumbel_noise_moves: int | None = None
    """Gumbel: self-play moves per game searched with Gumbel noise (a sampled move, as PUCT's
    ``temperature_moves``); later moves search without it and play the best. None: every move (the paper's)."""
    gumbel_visit_sampling_moves: int = 0
    """Gumbel: self-play moves per game played in proportion to the root's visit counts instead of the halving's
    winner, for more varied openings (PUCT's ``temperature_moves``); 0: none (the paper's)."""
    channels: int = 64
    """Width of the residual tower."""
    num_blocks: int = 4
    """Residual blocks."""
    learning_rate: float = 1e-3
    """AdamW step size."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch_size: int = 256
    """Positions per gradient step."""
    buffer_size: int = 50_000
    """Positions kept for training."""
    learning_starts: int = 1_000
    """Positions collected before the first update."""
    train_every: int = 500
    """New positions between update phases."""
    gradient_steps: int = 50
    """Gradient steps per update phase."""
    value_target_mix: float = 0.0
    """Weight ``w`` of the search's value in the value target ``(1 - w) z + w v``: ``z`` the game's outcome, ``v`` the
    root children's mean return under the search's policy target (the visits' for ``puct``, the improved policy's for
    ``gumbel``), both for the player to move. 0: the outcome alone (AlphaZero's). The search's value is less noisy
    than one game's outcome; on Connect Four at 16 simulations per move 0.5 trained stronger agents with either search
    (docs/performance.md)."""
    mirror: bool | None = None
    """Also train on the left-right mirror of each position; None: when the game says it is symmetric
    (tic-tac-toe and Connect Four are; OpenSpiel games are not assumed to be)."""
    eval_simulations: int = 100
    """Simulations per move when evaluating."""
    eval_mcts_simulations: int = 1_000
    """Simulations of the pure-MCTS (UCT, random rollouts) opponent in evaluations."""

    def __post_init__(self) -> None:
        for name in ("num_simulations", "channels", "batch_size", "buffer_size", "train_every", "gradient_steps",
                     "eval_simulations", "eval_mcts_simulations"):
            check_range(name, getattr(self, name), 1)
        for name in ("num_blocks", "temperature_moves", "learning_starts", "gumbel_visit_sampling_moves"):
            check_range(name, getattr(self, name), 0)
        check_range("c_puct", self.c_puct, 0.0, low_open=True)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 0.0)
        check_range("dirichlet_fraction", self.dirichlet_fraction, 0.0, 1.0)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("gumbel_considered", self.gumbel_considered, 1)
        check_range("gumbel_value_scale", self.gumbel_value_scale, 0.0, low_open=True)
        check_range("gumbel_visit_offset", self.gumbel_visit_offset, 0.0)
        check_range("value_target_mix", self.value_target_mix, 0.0, 1.0)
        if self.gumbel_noise_moves is not None:
            check_range("gumbel_noise_moves", self.gumbel_noise_moves, 0)
        if self.search not in ("puct", "gumbel"):
            raise ValueError(f"search must be 'puct' or 'gumbel', got {self.search!r}")

    def search_config(self, *, noise: bool, simulations: int | None = None) -> MCTSConfig:
        """The search of self-play (``noise``: Dirichlet or Gumbel noise at the root) or of evaluation."""
        simulations = simulations or self.num_simulations
        if self.search == "gumbel":
            return MCTSConfig(num_simulations=simulations, rule="gumbel", gumbel_considered=self.gumbel_considered,
                              gumbel_scale=1.0 if noise else 0.0, gumbel_value_scale=self.gumbel_value_scale,
                              gumbel_visit_offset=self.gumbel_visit_offset, reuse_tree=False)
        return MCTSConfig(num_simulations=simulations, rule="puct", c=self.c_puct,
                          dirichlet_alpha=self.dirichlet_alpha if noise else 0.0,
                          dirichlet_fraction=self.dirichlet_fraction, reuse_tree=self.reuse_tree)


class PositionBuffer:
    """A ring of training positions: ``obs [N, C, H, W]``, ``policy [N, A]``, ``value [N]``."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], num_actions: int) -> None:
        self.obs = np.zeros((capacity, *obs_shape), np.float32)
        self.policy = np.zeros((capacity, num_actions), np.float32)
        self.value = np.zeros(capacity, np.float32)
        self.head, self.size = 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, policy: np.ndarray, value: np.ndarray) -> None:
        """Appends ``k`` positions (leading dim ``k`` on each argument)."""
        rows = (self.head + np.arange(len(value))) % len(self.value)
        self.obs[rows], self.policy[rows], self.value[rows] = obs, policy, value
        self.head = int((self.head + len(value)) % len(self.value))
        self.size = min(self.size + len(value), len(self.value))

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        rows = torch.randint(self.size, (batch_size,), generator=generator).numpy()
        return {"obs": torch.from_numpy(self.obs[rows]), "policy": torch.from_numpy(self.policy[rows]),
                "value": torch.from_numpy(self.value[rows])}

    def state_dict(self) -> dict[str, Any]:
        return {"obs": self.obs[: self.size].copy(), "policy": self.policy[: self.size].copy(),
                "value": self.value[: self.size].copy(), "head": self.head, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        self.obs[:size], self.policy[:size], self.value[:size] = state["obs"], state["policy"], state["value"]
        self.head, self.size = int(state["head"]), size


def mirror(obs: np.ndarray, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-right mirror of positions ``[k, C, H, W]`` and policies ``[k, A]`` (column actions
    ``A == W``, or cell actions ``A == H * W``)."""
    height, width = obs.shape[-2:]
    flipped = policy[:, ::-1] if policy.shape[1] == width else policy.reshape(-1, height, width)[:, :, ::-1]
    return obs[..., ::-1].copy(), flipped.reshape(len(policy), -1).copy()


@register_algo("alphazero")
class AlphaZero(SelfPlayAlgorithm[AlphaZeroConfig]):
    """Self-play, replay and training of a policy-value net; see the module docstring."""

    config_class: ClassVar[type] = AlphaZeroConfig
    example: ClassVar[Example | None] = Example("rlcore/TicTacToe-v0", {
        "total_env_steps": 320, "num_envs": 8, "num_simulations": 8, "channels": 8, "num_blocks": 1, "batch_size": 32,
        "buffer_size": 2000, "learning_starts": 64, "train_every": 64, "gradient_steps": 2, "temperature_moves": 3,
        "eval_simulations": 8, "eval_mcts_simulations": 50})
    has_own_evaluation: ClassVar[bool] = True
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box,)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    flat_box_only: ClassVar[bool] = False

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: AlphaZeroConfig, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_envs: int = 1) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        if len(observation_space.shape) not in (1, 3):
            raise ValueError(f"alphazero needs board planes [C, H, W] or flat observations [N]; got observations "
                             f"of shape {observation_space.shape}")
        torch.manual_seed(seed)
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.net = make_policy_value_net(observation_space.shape, self.num_actions, config.channels,
                                         config.num_blocks).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.replay = PositionBuffer(config.buffer_size, observation_space.shape, self.num_actions)
        self.previous_net = copy.deepcopy(self.net)
        self.seed = seed
        self.mcts: MCTS | None = None
        self._saved_search: dict[str, Any] | None = None
        self._fixed_searches: dict[int, MCTS] = {}
        self._games: list[list[tuple[np.ndarray, np.ndarray, int, float]]] = [[] for _ in range(num_envs)]
        """Each unfinished self-play game's positions: observation, policy target, player to move, search value."""
        self.new_positions = self.updates = self.games_played = 0
        self._metrics: dict[str, float] = {}
        self._mirror = bool(config.mirror)
        self._sampled_moves = (config.temperature_moves if config.search == "puct"
                               else config.gumbel_visit_sampling_moves)
        """Self-play moves per game played in proportion to the root's visit counts."""
        self.timings: dict[str, float] = {"self_play_s": 0.0, "network_s": 0.0, "train_s": 0.0,
                                          "self_play_moves": 0}
        """Seconds of self-play search, of network forward passes inside it, and of training, and self-play
        moves, in this process (not saved in checkpoints; the first lockstep move, which compiles the search,
        is left out): ``time/self_play_moves_per_s``, ``search/network_share`` and ``time/train_share`` in the
        logs."""
        self._timed_first_move = False

    # --- the network as the search's evaluator -----------------------------------------------
    @torch.no_grad()
    def evaluator(self, net: torch.nn.Module | None = None, *, timed: bool = False) -> Any:
        """``obs [n, C, H, W] -> (logits [n, A], values [n])`` with ``net`` (this one by default) in eval mode;
        ``timed`` adds its seconds to ``timings["network_s"]`` (self-play)."""
        net = net or self.net
        timings = self.timings if timed else {"network_s": 0.0}

        def evaluate(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            start = time.perf_counter()
            net.eval()
            with torch.no_grad():
                logits, value = net(torch.from_numpy(obs).to(self.device))
            result = logits.float().cpu().numpy(), value.float().cpu().numpy()
            timings["network_s"] += time.perf_counter() - start
            return result

        return evaluate

    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        raise TypeError("alphazero searches from the game's state, not from observations: use "
                        "agent.algo.choose_move(simulator, state) or `rlcore play`")

    def choose_move(self, simulator: Simulator[Any], state: Any, simulations: int | None = None) -> int:
        """The best move at ``state`` by search with the network (no noise), e.g. to play a human."""
        mcts = MCTS(simulator, self.config.search_config(noise=False, simulations=simulations or
                                                          self.config.eval_simulations), seed=self.seed)
        mcts.set_root(state)
        mcts.search_batch(self.evaluator())
        return mcts.best_action()

    # --- self-play ----------------------------------------------------------------------------
    def check_envs(self, envs: VectorEnv) -> None:
        """Settles mirroring from the training game, as self-play does: a learner whose self-play runs in workers
        then counts each of their positions once (they write each position and its mirror image)."""
        self._resolve_mirror(check_game(make_simulator(sub_envs(envs)[0])))

    def _resolve_mirror(self, simulator: Simulator[Any]) -> None:
        symmetric = bool(getattr(simulator, "mirror_symmetric", False))
        if self.config.mirror and not symmetric:
            raise ValueError(f"AlphaZeroConfig.mirror=True, but {simulator_name(simulator)} does not declare "
                             "left-right symmetry (mirror_symmetric); leave mirror unset")
        self._mirror = symmetric if self.config.mirror is None else self.config.mirror

    def _search(self, envs: VectorEnv) -> MCTS:
        if self.mcts is None:
            simulator = check_game(make_simulator(sub_envs(envs)[0]))
            self._resolve_mirror(simulator)
            self.mcts = MCTS(simulator, self.config.search_config(noise=True), num_trees=envs.num_envs,
                             seed=self.seed)
            if self._saved_search is not None:  # resuming: the trees and generator of the checkpoint
                self.mcts.load_state_dict(self._saved_search)
                self._saved_search = None
        return self.mcts

    def _deterministic_search(self, envs: VectorEnv) -> MCTS:
        """A search of its own for deterministic plans on ``envs`` (no noise; the self-play trees stay untouched)."""
        if id(envs) not in self._fixed_searches:
            simulator = make_simulator(sub_envs(envs)[0])
            self._fixed_searches[id(envs)] = MCTS(simulator, self.config.search_config(noise=False),
                                                  num_trees=envs.num_envs, seed=self.seed)
        return self._fixed_searches[id(envs)]

    def plan(self, envs: VectorEnv, deterministic: bool = False) -> Tensor:
        """Searches every game's position in lockstep and plays one move in each. Returns ``int64 [B]``.

        ``deterministic=False`` is self-play on the training envs (root noise, sampled early moves, positions
        recorded); ``True`` plays the best moves on any envs, with a search of their own."""
        mcts = self._search(envs) if not deterministic else self._deterministic_search(envs)
        start, network_before = time.perf_counter(), self.timings["network_s"]
        for b, env in enumerate(sub_envs(envs)):
            mcts.sync_root(current_state(mcts.simulator, env), b)
        noise_moves = self.config.gumbel_noise_moves
        if not deterministic and noise_moves is not None:
            mcts.gumbel_scales[:] = [float(len(self._games[b]) < noise_moves) for b in range(envs.num_envs)]
        mcts.search_batch(self.evaluator(timed=not deterministic))
        actions = np.zeros(envs.num_envs, np.int64)
        root_value = float(np.mean([mcts.root_value(b) for b in range(envs.num_envs)]))  # before the roots move
        for b in range(envs.num_envs):
            sample = not deterministic and len(self._games[b]) < self._sampled_moves
            actions[b] = self._sample(mcts.visit_counts(b)) if sample else mcts.best_action(b)
            if not deterministic:
                state, target = mcts.root_state(b), mcts.target_policy(b)
                self._games[b].append((mcts.simulator.observation(state), target, mcts.simulator.to_play(state),
                                       mcts.policy_value(target, b)))
            mcts.advance(int(actions[b]), b)
        if not deterministic:
            seconds = time.perf_counter() - start
            self._metrics.update({"search/root_value": root_value,
                                  "search/simulations_per_s": len(actions) * self.config.num_simulations / seconds,
                                  **self._time_self_play(seconds, len(actions), network_before)})
        return torch.from_numpy(actions)

    def _time_self_play(self, seconds: float, moves: int, network_before: float) -> dict[str, float]:
        """Adds a lockstep move's seconds to :attr:`timings`, except the process's first one (it compiles the
        search kernels and warms the network up, and would make short runs read slow); returns the rates."""
        timings = self.timings
        if not self._timed_first_move:
            self._timed_first_move = True
            timings["network_s"] = network_before
            return {}
        timings["self_play_s"] += seconds
        timings["self_play_moves"] += moves
        return {"time/self_play_moves_per_s": timings["self_play_moves"] / timings["self_play_s"],
                "search/network_share": timings["network_s"] / timings["self_play_s"]}

    def _sample(self, counts: np.ndarray) -> int:
        probabilities = torch.from_numpy(counts / counts.sum())
        return int(torch.multinomial(probabilities, 1, generator=self.generator))

    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """Stores finished games with their outcomes (the loop trains every ``train_every`` new positions)."""
        self.record_finished_games(transition)
        return dict(self._metrics)

    def record_finished_games(self, transition: dict[str, Any]) -> None:
        """Labels the games that ended at this step with their outcome and adds their positions to
        :attr:`replay` (a self-play worker's whole job, besides :meth:`plan`)."""
        done = np.asarray(transition["terminated"]) | np.asarray(transition["truncated"])
        for b in np.flatnonzero(done):
            self._finish_game(int(b), float(transition["reward"][b]))

    def _finish_game(self, b: int, final_reward: float) -> None:
        """Labels game ``b``'s positions with the outcome for the player to move at each (mixed with the search's
        value by ``value_target_mix``)."""
        obs, policy, players, search_values = zip(*self._games[b])
        last_mover = players[-1]
        value = np.array([final_reward if player == last_mover else -final_reward for player in players], np.float32)
        mix = self.config.value_target_mix
        if mix > 0.0:
            value = ((1.0 - mix) * value + mix * np.array(search_values, np.float32)).astype(np.float32)
        obs_array, policy_array = np.stack(obs), np.stack(policy).astype(np.float32)
        self.replay.add(obs_array, policy_array, value)
        if self._mirror:
            self.replay.add(*mirror(obs_array, policy_array), value)
        self.new_positions += len(value)
        self.games_played += 1
        self._games[b] = []

    # --- training -----------------------------------------------------------------------------
    def train_phase(self) -> dict[str, float]:
        """``gradient_steps`` updates of the network on positions from :attr:`replay`."""
        start = time.perf_counter()
        self.net.train()
        totals = np.zeros(2)
        for _ in range(self.config.gradient_steps):
            batch = self.replay.sample(self.config.batch_size, self.generator)
            logits, value = self.net(batch["obs"].to(self.device))
            policy_loss = -(batch["policy"].to(self.device) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
            value_loss = F.mse_loss(value, batch["value"].to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            (policy_loss + value_loss).backward()
            self.optimizer.step()
            totals += (policy_loss.item(), value_loss.item())
        self.updates += self.config.gradient_steps
        self.new_positions = 0
        policy_loss, value_loss = totals / self.config.gradient_steps
        self.timings["train_s"] += time.perf_counter() - start
        self._metrics.update({"train/policy_loss": policy_loss, "train/value_loss": value_loss,
                              "time/train_share": self.timings["train_s"] / max(
                                  self.timings["train_s"] + self.timings["self_play_s"], 1e-9),
                              "train/loss": policy_loss + value_loss, "train/n_updates": float(self.updates),
                              "search/games": float(self.games_played), "search/positions": float(len(self.replay))})
        return dict(self._metrics)

    # --- self-play workers --------------------------------------------------------------------
    def replay_settings(self) -> ReplaySettings:
        """Positions: ``obs`` board planes, the search's visit ``policy [A]`` and the game's ``value`` for the player
        to move, ``buffer_size`` rows per writer, sampled as stored."""
        fields = (("obs", FieldSpec(tuple(self.observation_space.shape), torch.float32)),
                  ("policy", FieldSpec((self.num_actions,), torch.float32)),
                  ("value", FieldSpec((), torch.float32)))
        return ReplaySettings(self.config.buffer_size, fields, env_columns=False)

    def record_remote_games(self, positions: int, games: int) -> None:
        """``positions``: the replay rows the workers added (two per position when mirroring)."""
        self.new_positions += positions // 2 if self._mirror else positions
        self.games_played += games

    def acting_state(self) -> dict[str, Tensor]:
        """The network's state dict, tensor by tensor (``net/<name>``)."""
        return {f"net/{name}": tensor for name, tensor in self.net.state_dict().items()}

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        self.net.load_state_dict({name.removeprefix("net/"): tensor for name, tensor in tensors.items()})

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self, num_games: int, *, seed: int = 0, env: EnvSpec | None = None, training: bool = False
                 ) -> dict[str, float]:
        """Plays ``num_games`` against pure MCTS and against the previous training evaluation's network (a
        ``training`` evaluation's network becomes the next one's opponent; a user's evaluation changes nothing).

        Returns:
            ``eval/mean_reward`` (= ``search/eval_vs_mcts``, the score against pure MCTS: 1 a win, 0.5 a draw),
            ``eval/std_reward`` (of the per-game scores), ``eval/mean_ep_length`` (moves per game, both players')
            and ``search/eval_vs_previous``.
        """
        simulator = self._evaluation_simulator(env)
        config = self.config
        ours = lambda: NetworkPlayer(simulator, self.evaluator(), config.search_config(  # noqa: E731
            noise=False, simulations=config.eval_simulations), num_games, seed=seed)
        mcts = RolloutPlayer(simulator, MCTSConfig(num_simulations=config.eval_mcts_simulations, c=2.0),
                             num_games, seed=seed + 1)
        previous = NetworkPlayer(simulator, self.evaluator(self.previous_net), config.search_config(
            noise=False, simulations=config.eval_simulations), num_games, seed=seed + 2)
        against_mcts = play_games(simulator, ours(), mcts, num_games)
        vs_mcts = against_mcts.score
        vs_previous = play_games(simulator, ours(), previous, num_games).score
        if training:
            self.previous_net.load_state_dict(self.net.state_dict())
        return {"eval/mean_reward": vs_mcts, "eval/std_reward": against_mcts.score_std,
                "eval/mean_ep_length": float(np.mean(against_mcts.moves)) if against_mcts.moves else 0.0,
                "search/eval_vs_mcts": vs_mcts, "search/eval_vs_previous": vs_previous}

    def _evaluation_simulator(self, env: EnvSpec | None) -> Simulator[Any]:
        if self.mcts is not None:
            return self.mcts.simulator
        if env is None:
            raise ValueError("alphazero.evaluate needs env=... (the game) before self-play has started")
        return check_game(make_simulator(make_env(env)))

    # --- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        games = [{"obs": np.stack([g[0] for g in game]) if game else np.zeros((0, *self.observation_space.shape),
                                                                                np.float32),
                  "policy": np.stack([g[1] for g in game]) if game else np.zeros((0, self.num_actions)),
                  "players": np.array([g[2] for g in game], np.int64),
                  "search_values": np.array([g[3] for g in game], np.float32)} for game in self._games]
        search = self._saved_search if self.mcts is None else self.mcts.state_dict()
        return {**self._base_state(), "net": self.net.state_dict(), "previous_net": self.previous_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "games": games, "search": search,
                "counters": [self.new_positions, self.updates, self.games_played]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self.net.load_state_dict(state["net"])
        self.previous_net.load_state_dict(state["previous_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._games = [list(zip(list(game["obs"]), list(game["policy"]), [int(p) for p in game["players"]],
                                [float(v) for v in game.get("search_values", np.zeros(len(game["players"])))]))
                       for game in state["games"]]  # checkpoints before value_target_mix: no search values
        self._saved_search = state["search"]
        self.new_positions, self.updates, self.games_played = (int(value) for value in state["counters"])


def simulator_name(simulator: Simulator[Any]) -> str:
    return str(getattr(simulator, "name", type(simulator).__name__))


def check_game(simulator: Simulator[Any]) -> Simulator[Any]:
    """``simulator`` if alphazero can train on it: two players, ``observation(state)`` and ``initial_state()``."""
    missing = [name for name in ("observation", "initial_state") if not hasattr(simulator, name)]
    if simulator.num_players != 2 or missing:
        reason = f"has {simulator.num_players} player(s)" if simulator.num_players != 2 else f"lacks {missing}"
        raise TypeError(f"alphazero trains on two-player zero-sum games whose simulator has observation(state) and "
                        f"initial_state(); {simulator_name(simulator)} {reason}. Use rlcore/TicTacToe-v0, "
                        "rlcore/ConnectFour-v0 or an OpenSpiel game such as 'openspiel/hex(board_size=5)'; "
                        "single-agent envs plan with 'mcts'")
    return simulator
