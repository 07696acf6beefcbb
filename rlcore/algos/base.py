"""What every algorithm is: a config dataclass, a class registered by name, and a declared contract.

The :class:`~rlcore.trainer.Trainer` owns the one training loop; an algorithm only acts and learns. What the
loop calls depends on the algorithm's *data kind*, and each kind is an abstract base class here that declares
exactly those methods and the config fields the loop reads:

- :class:`TransitionAlgorithm` (``"transitions"``): :meth:`~TransitionAlgorithm.observe` after every vector
  step (tabular Q-learning, SARSA);
- :class:`ReplayAlgorithm` (``"replay"``): vector steps go into :attr:`~ReplayAlgorithm.replay`, and
  :meth:`~ReplayAlgorithm.train` takes gradient steps on samples from it; the loop reads ``train_freq``,
  ``gradient_steps`` and ``learning_starts`` (:class:`ReplaySchedule`) to decide when (DQN);
- :class:`RolloutAlgorithm` (``"rollout"``): ``n_steps`` vector steps acted by ``explore`` go to ``store``,
  then ``update`` learns from the whole rollout (REINFORCE, A2C, PPO; see :mod:`rlcore.algos.onpolicy`);
- :class:`PlanningAlgorithm` (``"planning"``): ``plan(envs)`` searches from the sub-envs' *states* (not
  observations) for one vector step, then ``observe`` sees the transition (MCTS); a
  :class:`SelfPlayAlgorithm` also learns from its finished games (AlphaZero), every ``train_every`` new
  positions once it holds ``learning_starts``.

Worker processes and Ray actors need only :meth:`Algorithm.acting_state` / :meth:`Algorithm.load_acting_state`
(the tensors that make a copy act like the learner) and, for exploration, :meth:`Algorithm.set_progress`.
A new algorithm is one file: subclass the kind, implement its abstract methods, give it an :class:`Example`,
and decorate it with :func:`register_algo`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar

import gymnasium as gym
import torch
from gymnasium.vector import SyncVectorEnv
from torch import Tensor

from rlcore.observations import Observation, batch_size
from rlcore.settings import config_from_dict
from rlcore.spaces import COMPOSITE_SPACES, LEAF_SPACES, describe_space, space_fits

if TYPE_CHECKING:  # pragma: no cover
    from gymnasium.vector import VectorEnv

    from rlcore.buffers.replay import ReplaySettings
    from rlcore.normalize import RunningMeanStd

DataKind = Literal["transitions", "replay", "rollout", "planning"]
ConfigT = TypeVar("ConfigT")
AlgoT = TypeVar("AlgoT", bound=type["Algorithm[Any]"])

ALGORITHMS: dict[str, type[Algorithm[Any]]] = {}
"""Every registered algorithm by name; filled by :func:`register_algo`."""


class UnsupportedSpaceError(TypeError):
    """An env's space is not one an algorithm handles."""


def register_algo(name: str) -> Callable[[AlgoT], AlgoT]:
    """Class decorator: makes an algorithm available to ``rlcore.train``, the CLI and the tests."""

    def decorate(cls: AlgoT) -> AlgoT:
        if name in ALGORITHMS and ALGORITHMS[name] is not cls:
            raise ValueError(f"an algorithm named {name!r} is already registered: {ALGORITHMS[name]}")
        cls.name = name
        ALGORITHMS[name] = cls
        return cls

    return decorate


def custom_algo_class_name(cls: type[Algorithm[Any]]) -> str | None:
    """``module.QualifiedName`` of a subclass of a registered algorithm that keeps the inherited name (a PPO with its
    own loss), None for the registered class itself."""
    import rlcore.algos  # noqa: F401  (registers the built-in algorithms)

    if ALGORITHMS.get(cls.name) is cls:
        return None
    return f"{cls.__module__}.{cls.__qualname__}"


def get_algo_class(name: str | type[Algorithm[Any]]) -> type[Algorithm[Any]]:
    """The algorithm registered as ``name`` (case-insensitive); a KeyError suggests the closest and lists them.

    An :class:`Algorithm` subclass passes through, so a subclass of a registered algorithm (say a PPO with its own
    ``loss_class``) goes wherever a name does; it keeps the name it inherits (presets, run folders, checkpoints).
    """
    if isinstance(name, type):
        if issubclass(name, Algorithm) and isinstance(getattr(name, "name", None), str):
            return name
        raise TypeError(f"{name.__qualname__} is not a subclass of a registered algorithm; register it with "
                        "@register_algo('its_name') or subclass one (e.g. rlcore.algos.ppo.PPO)")
    import rlcore.algos  # noqa: F401  (registers the built-in algorithms)

    by_lower_name = {registered.lower(): cls for registered, cls in ALGORITHMS.items()}
    if isinstance(name, str) and name.lower() in by_lower_name:
        return by_lower_name[name.lower()]
    from rlcore.fields import did_you_mean

    raise KeyError(f"unknown algorithm {name!r}{did_you_mean(str(name), ALGORITHMS)}; registered algorithms: "
                   f"{', '.join(sorted(ALGORITHMS))}")


def build_algorithm(
    name: str | type[Algorithm[Any]],
    observation_space: gym.Space,
    action_space: gym.Space,
    config: Any,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_envs: int = 1,
) -> Algorithm[Any]:
    """Instantiates the registered algorithm ``name`` (or an Algorithm subclass); ``config`` may be its dataclass or
    a dict of fields."""
    algo_class = get_algo_class(name)
    if config is None or isinstance(config, dict):
        config = config_from_dict(algo_class.config_class, config or {})
    return algo_class(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)


def algos_fitting(observation_space: gym.Space, action_space: gym.Space) -> list[str]:
    """Names of the registered algorithms that accept both spaces."""
    import rlcore.algos  # noqa: F401

    return sorted(name for name, cls in ALGORITHMS.items() if cls.fits(observation_space, action_space))


def _empty_box(space: gym.Space) -> gym.spaces.Box | None:
    """The first Box without elements in ``space`` (also inside Dict and Tuple spaces), else None."""
    if isinstance(space, gym.spaces.Box):
        return space if space.shape and 0 in space.shape else None
    children = space.spaces.values() if isinstance(space, gym.spaces.Dict) else \
        space.spaces if isinstance(space, gym.spaces.Tuple) else ()
    return next((box for box in map(_empty_box, children) if box is not None), None)


# ------------------------------------------------------------------------- algorithms
@dataclass(frozen=True)
class Example:
    """A small, quick run of an algorithm: what the registry-driven tests train, save, resume and compare, and
    what ``rlcore algos NAME`` shows as a starting point.

    Args:
        env: A registered env id the algorithm fits.
        settings: :class:`~rlcore.trainer.TrainConfig` and algorithm-config fields for a run of a few seconds
            (small networks, a few hundred env steps); ``total_env_steps`` must be given.
    """

    env: str
    settings: dict[str, Any] = field(default_factory=dict)


class Algorithm(ABC, Generic[ConfigT]):
    """Base class of every algorithm.

    Subclasses set the class attributes and implement :meth:`act`, :meth:`state_dict`,
    :meth:`load_state_dict`, and :meth:`observe` or :meth:`train` depending on ``data_kind``.

    Args:
        observation_space: The env's (single, not batched) observation space.
        action_space: The env's (single) action space.
        config: An instance of ``config_class``.
        device: Where networks live.
        seed: Seeds the algorithm's own ``torch.Generator`` (exploration, sampling).
        num_envs: Envs stepped in parallel, ``N`` (sizes replay columns).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    data_kind: ClassVar[DataKind]
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]]
    action_spaces: ClassVar[tuple[type[gym.Space], ...]]
    flat_box_only: ClassVar[bool] = True
    """Whether Box observations must be 1-D (true until image encoders exist)."""
    example: ClassVar[Example | None] = None
    """A quick run on a small env (see :class:`Example`); every registered algorithm gives one."""
    has_own_evaluation: ClassVar[bool] = False
    """True when the algorithm scores itself (:meth:`evaluate`, e.g. two-player games against a reference
    player) instead of the loop's episodes of its deterministic policy."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: ConfigT,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        self.check_spaces(observation_space, action_space)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.num_envs = num_envs
        self.env_steps = 0
        self.total_env_steps = 1
        self.action_masks = False
        """Whether the training env gives action masks that this algorithm stores (set by
        :meth:`enable_action_masks`)."""

    @classmethod
    def fits(cls, observation_space: gym.Space, action_space: gym.Space) -> bool:
        """Whether this algorithm accepts these spaces."""
        return space_fits(observation_space, cls.observation_spaces, flat_box=cls.flat_box_only) and space_fits(
            action_space, cls.action_spaces
        )

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raises :class:`UnsupportedSpaceError` naming the bad space and the algorithms that fit."""
        for which, space in (("observation", observation_space), ("action", action_space)):
            empty = _empty_box(space)
            if empty is not None:
                raise UnsupportedSpaceError(f"the {which} space {describe_space(space)} holds a Box with no elements "
                                            f"(shape {empty.shape}); give it at least one")
        if cls.fits(observation_space, action_space):
            return
        if not space_fits(observation_space, cls.observation_spaces, flat_box=cls.flat_box_only):
            which, space, accepted = "observation", observation_space, cls.observation_spaces
        else:
            which, space, accepted = "action", action_space, cls.action_spaces
        accepted_names = ", ".join(t.__name__ for t in accepted if t not in COMPOSITE_SPACES)
        if cls.flat_box_only and "Box" in accepted_names and which == "observation":
            accepted_names = accepted_names.replace("Box", "1-D Box")
        if any(t in COMPOSITE_SPACES for t in accepted):
            leaves = ", ".join(t.__name__ for t in accepted if t in LEAF_SPACES)
            accepted_names += f", and Dict and Tuple spaces of those ({leaves})"
        fitting = [name + (" (a planner: only on envs it can snapshot, see docs/algorithms.md)"
                           if issubclass(ALGORITHMS[name], PlanningAlgorithm) else "")
                   for name in algos_fitting(observation_space, action_space)]
        raise UnsupportedSpaceError(
            f"{cls.name} cannot handle the {which} space {describe_space(space)}: it accepts {accepted_names}. "
            f"Algorithms that fit this env: {', '.join(fitting) or 'none yet'}"
            + ("; or wrap the env (e.g. FlattenObservation)" if which == "observation" else "")
        )

    # --- acting -----------------------------------------------------------------------
    @abstractmethod
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Actions for a batch of observations: ``[N, *obs_shape] -> [N, *action_shape]``.

        ``deterministic=False`` is the behaviour policy (with exploration); ``True`` is
        the greedy policy used for evaluation and ``predict``. A Dict or Tuple observation comes as a flat dict
        ``{path: [N, *leaf_shape]}`` (:mod:`rlcore.observations`). Algorithms that :attr:`accepts_action_masks`
        also take ``action_mask=`` (bool ``[N, n]``, True = legal) and act among the legal actions only.
        The behaviour policy may return ``(actions, extras)``: the extras (``[N, ...]`` arrays) join the
        transition the collector hands to the replay (MuZero's search policy).
        """

    @property
    def acts_with_state(self) -> bool:
        """Whether acting carries a per-env state from step to step (a memory policy): then :meth:`act_with_state`
        acts, with the state the caller keeps (``Agent.predict(obs, state=..., episode_start=...)``)."""
        return False

    def initial_acting_state(self, num_envs: int) -> dict[str, Tensor]:
        """The per-env state of ``num_envs`` envs before their first step (memory policies)."""
        raise TypeError(f"{self.name} acts without a per-env state; call act()")

    def act_with_state(self, obs: Observation, state: dict[str, Tensor], episode_start: Tensor, *,
                       deterministic: bool = True, action_mask: Tensor | None = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:
        """One step of a memory policy for ``N`` envs: actions ``[N, *action_shape]`` and the next state, from the
        envs' ``state`` (:meth:`initial_acting_state`) and ``episode_start`` (bool ``[N]``: rows whose state starts
        anew). The training envs' own state is untouched."""
        raise TypeError(f"{self.name} acts without a per-env state; call act()")

    def actor(self, deterministic: bool = True) -> Callable[..., Tensor]:
        """A fresh acting function ``[N, *obs_shape] -> [N, *action_shape]`` for whole episodes (evaluation).

        Algorithms whose policy keeps a per-env state (memory) return a callable that keeps its own,
        starting fresh episodes on its first call. It takes ``action_mask=`` as :meth:`act` does.
        """
        if not self.acts_with_state:
            return lambda obs, **masks: self.act(obs, deterministic=deterministic, **masks)
        state: dict[str, Tensor] | None = None
        episode_start: Tensor | None = None

        def act(obs: Observation, **masks: Any) -> Tensor:
            nonlocal state, episode_start
            if state is None or episode_start is None:
                rows = batch_size(obs)
                state = self.initial_acting_state(rows)
                episode_start = torch.ones(rows, dtype=torch.bool, device=self.device)
            action, state = self.act_with_state(obs, state, episode_start, deterministic=deterministic, **masks)
            episode_start = torch.zeros_like(episode_start)
            return action

        return act

    @property
    def accepts_action_masks(self) -> bool:
        """Whether :meth:`act` (and a rollout algorithm's ``explore``) take ``action_mask=`` and act only among the
        legal actions; when True, the loop, evaluation and ``predict`` pass the env's masks (sb3-contrib's
        convention: an ``action_masks()`` method of the env, or ``info["action_mask"]``)."""
        return False

    def searches_legal_actions(self, envs: VectorEnv) -> bool:
        """Whether the algorithm acts on ``envs`` only among the legal actions without reading masks: a search over
        each sub-env's own simulator, which expands only the actions it says are legal (what an env's masks say)."""
        return False

    def check_envs(self, envs: VectorEnv) -> None:
        """Refuses training envs the algorithm cannot learn from though their spaces fit (the loop calls it once)."""

    def enable_action_masks(self) -> None:
        """Called once before collecting when the training env gives action masks and :attr:`accepts_action_masks`:
        from then on collected data holds them (``action_mask``, ``next_action_mask``), e.g. a replay stores
        ``next_action_mask`` for its targets' max."""
        self.action_masks = True

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Tells the algorithm how far training is, for its schedules (exploration, target sync)."""
        self.env_steps = env_steps
        self.total_env_steps = max(total_env_steps, 1)

    # --- evaluation and workers -----------------------------------------------------------
    def evaluate(self, num_episodes: int, *, seed: int = 0, env: Any = None, training: bool = False
                 ) -> dict[str, float]:
        """Algorithms with ``has_own_evaluation``: their score (``eval/mean_reward`` and more) on ``env``;
        ``training``: the training loop's evaluation, which may become the baseline of the next (not a user's)."""
        raise NotImplementedError(f"{self.name} is evaluated by running its policy (has_own_evaluation is False)")

    def check_workers(self) -> None:
        """Raises a ValueError naming the setting to change when this algorithm, as configured, cannot learn from
        worker processes or Ray actors (``num_workers > 0``)."""
        raise ValueError(f"{self.name} cannot train with num_workers > 0 ({self.data_kind} data); use num_workers=0")

    def acting_state(self) -> dict[str, Tensor]:
        """The tensors a worker's copy of this algorithm needs to act as this one does, by name (published after
        every update; e.g. the flat parameter buffer and observation statistics). Not copies: the publisher
        copies them."""
        raise NotImplementedError(f"{self.name} does not publish weights to workers")

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        """Copies tensors published by :meth:`acting_state` (of the learner) into this copy, in place."""
        raise NotImplementedError(f"{self.name} does not load weights from a learner")

    # --- persistence ----------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimizers, counters, the generator."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""

    def _base_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "env_steps": self.env_steps}

    def _load_base_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.env_steps = int(state["env_steps"])


def flat_acting_state(optimizer: Any, stats: dict[str, RunningMeanStd]) -> dict[str, Tensor]:
    """What a worker needs of an algorithm trained by a flat optimizer (:class:`rlcore.optim.FlatOptimizer`):
    ``params``, the flat parameter buffer ``[P]`` that every parameter is a view of (one memcpy), and each
    running statistic's tensors (``obs_mean``, ``reward_var``, ...; see :meth:`RunningMeanStd.tensors`)."""
    tensors = {"params": optimizer.flat_params}
    for name, running in stats.items():
        tensors.update(running.tensors(name))
    return tensors


@torch.no_grad()
def load_flat_acting_state(optimizer: Any, stats: dict[str, RunningMeanStd], tensors: dict[str, Tensor]) -> None:
    """Copies tensors published by :func:`flat_acting_state` into a worker's copy, in place."""
    optimizer.flat_params.copy_(tensors["params"])
    for name, running in stats.items():
        running.load_tensors(tensors, name)


# ------------------------------------------------------------------------- the data kinds
class TransitionAlgorithm(Algorithm[ConfigT]):
    """Learns from each vector step as it happens (tabular methods)."""

    data_kind: ClassVar[DataKind] = "transitions"

    @abstractmethod
    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """Learns from one vector step (values ``[N, ...]``); returns metrics (may be empty)."""


class ReplaySchedule(Protocol):
    """The config fields the loop reads to schedule a :class:`ReplayAlgorithm`'s training."""

    train_freq: int
    """Vector steps between training phases."""
    gradient_steps: int
    """Gradient steps per training phase."""
    learning_starts: int
    """Env steps collected before the first training phase."""


class ReplayAlgorithm(Algorithm[ConfigT]):
    """Learns from a replay buffer that the loop fills (DQN and other off-policy methods).

    The loop adds every vector step to :attr:`replay` (acted by :meth:`act`) and, after ``learning_starts`` env
    steps, calls :meth:`train` with ``gradient_steps`` once per ``train_freq`` vector steps of ``num_envs`` envs
    (with workers: at the same ratio of gradient steps to env steps).
    """

    data_kind: ClassVar[DataKind] = "replay"
    config: Any  # a dataclass with the ReplaySchedule fields
    replay: Any
    """The algorithm's replay buffer (:class:`rlcore.buffers.ReplayBuffer`, or shards when workers collect)."""
    updates: int
    """Gradient steps taken so far."""

    @abstractmethod
    def train(self, gradient_steps: int) -> dict[str, float]:
        """Takes ``gradient_steps`` updates from :attr:`replay`; returns metrics."""

    @abstractmethod
    def replay_settings(self) -> ReplaySettings:
        """What the algorithm asks of its replay (fields, capacity, n-step, prioritized sampling); the caller places
        it (:func:`rlcore.buffers.replay.build_replay`: this process, or a shard per worker in shared memory)."""

    def set_worker_exploration(self, rate: float) -> None:
        """Fixes a worker's exploration rate (Ape-X's per-worker epsilon); algorithms without one ignore it."""

    def check_workers(self) -> None:
        """Replay algorithms learn from workers' shards."""


class RolloutAlgorithm(Algorithm[ConfigT]):
    """Learns on-policy from whole rollouts of ``n_steps`` vector steps (REINFORCE, A2C, PPO)."""

    data_kind: ClassVar[DataKind] = "rollout"
    config: Any  # a dataclass with an ``n_steps`` field
    rollout: Any
    """The rollout being filled (:class:`rlcore.buffers.rollout.RolloutBuffer`, columns ``[T, N, ...]``)."""

    @abstractmethod
    def explore(self, obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The behaviour policy: env actions ``[N, ...]`` and the extras to store (log-probs, values, ...)."""

    @abstractmethod
    def store(self, transition: dict[str, Any]) -> None:
        """Appends one vector step (with :meth:`explore`'s extras) to :attr:`rollout`."""

    @abstractmethod
    def update(self, last_obs: Tensor) -> dict[str, float]:
        """Learns from the full :attr:`rollout` (``last_obs`` ``[N, *obs_shape]`` bootstraps), then clears it."""

    def value_pending_truncations(self, following_obs: Any) -> None:
        """Completes :attr:`rollout` where a value waits for the observations after its last step
        (``[N, *obs_shape]``): a worker calls it before sending its rollout. Nothing by default."""

    def running_stats(self) -> dict[str, RunningMeanStd]:
        """Running statistics that collecting updates (``"obs"``, ``"reward"`` normalization): workers fold theirs
        into the learner's exactly."""
        return {}

    def running_stats_changed(self) -> None:
        """Called after :meth:`running_stats` were changed in place (workers' statistics merged in)."""


class PlanningAlgorithm(Algorithm[ConfigT]):
    """Acts by searching from the envs' states (MCTS); needs ``vectorization="sync"``."""

    data_kind: ClassVar[DataKind] = "planning"

    @abstractmethod
    def plan(self, envs: VectorEnv, deterministic: bool = False) -> Tensor:
        """Searches from each sub-env's current state; returns one action per sub-env, ``[N]``."""

    def evaluation_planner(self, envs: VectorEnv) -> Callable[[Tensor], Tensor]:
        """A fresh deterministic acting function over ``envs`` for whole evaluation episodes (observations are
        ignored: planners read the envs' states)."""
        return lambda obs: self.plan(envs, deterministic=True)

    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """Sees the vector step :meth:`plan` chose; returns the latest search metrics."""
        return {}

    def searches_legal_actions(self, envs: VectorEnv) -> bool:
        """True when every sub-env has its own simulator (``env.unwrapped.simulator``: board games, OpenSpiel),
        whose legal actions the search expands; adapters of other envs search every action."""
        planned = sub_envs(envs)  # not synchronous: refused here, not after a warning about masks
        return all(getattr(env.unwrapped, "simulator", None) is not None for env in planned)


def sub_envs(envs: VectorEnv) -> list[gym.Env]:
    """The sub-envs of a synchronous vector env, under any vector wrappers (planners read their states; the
    wrappers rlcore puts around a user's vector env reset its ended sub-envs within the step, so the states read
    after a step are the ones the next actions apply to)."""
    inner = envs.unwrapped
    if not isinstance(inner, SyncVectorEnv):
        raise TypeError(
            f"planning algorithms read each sub-env's state, so they need a gymnasium SyncVectorEnv "
            f"(vectorization='sync', or your own SyncVectorEnv); got {type(inner).__name__}"
        )
    return list(inner.envs)


class SelfPlaySchedule(Protocol):
    """The config fields the loop reads to schedule a :class:`SelfPlayAlgorithm`'s training."""

    train_every: int
    """New positions between training phases."""
    learning_starts: int
    """Positions held before the first training phase."""


class SelfPlayAlgorithm(PlanningAlgorithm[ConfigT]):
    """A planner that learns from its finished games (AlphaZero): :meth:`observe` records them into
    :attr:`replay`, and the loop calls :meth:`train_phase` every ``train_every`` new positions."""

    config: Any  # a dataclass with the SelfPlaySchedule fields
    replay: Any
    """Labelled positions (``obs``, ``policy``, ``value``); shards written by self-play workers when they play."""
    new_positions: int
    """Positions added since the last training phase."""

    @abstractmethod
    def train_phase(self) -> dict[str, float]:
        """Trains on :attr:`replay` and sets :attr:`new_positions` to 0; returns metrics."""

    @abstractmethod
    def replay_settings(self) -> ReplaySettings:
        """The fields and capacity of the positions it learns from (``obs``, ``policy``, ``value``), for the store of
        one shard per self-play worker that the loop places in shared memory."""

    @abstractmethod
    def record_remote_games(self, positions: int, games: int) -> None:
        """Self-play workers finished ``games`` games and wrote their ``positions`` into :attr:`replay`'s shards."""

    def check_workers(self) -> None:
        """Self-play workers write positions into shards."""
