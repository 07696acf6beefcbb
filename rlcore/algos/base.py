"""What every algorithm is: a config dataclass, a class registered by name, and a small interface.

The :class:`~rlcore.trainer.Trainer` owns the loop; an algorithm only acts and updates.
Which loop runs is chosen by ``data_kind``:

- ``"transitions"``: :meth:`Algorithm.observe` after every vector step (tabular methods);
- ``"replay"``: transitions go into the algorithm's replay buffer, and
  :meth:`Algorithm.train` takes gradient steps on samples from it (DQN);
- ``"rollout"``: ``n_steps`` vector steps acted by ``explore`` go to ``store``, then ``update``
  learns from the whole rollout (REINFORCE, A2C, PPO; see :mod:`rlcore.algos.onpolicy`);
- ``"planning"``: ``plan(envs)`` searches from the sub-envs' *states* (not observations) for one
  vector step, then :meth:`Algorithm.observe` sees the transition (MCTS, AlphaZero).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Literal, TypeVar

import gymnasium as gym
import torch
from torch import Tensor

from rlcore.spaces import describe_space, space_fits

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


def get_algo_class(name: str) -> type[Algorithm[Any]]:
    """The algorithm registered as ``name`` (case-insensitive); a KeyError suggests the closest and lists them."""
    import rlcore.algos  # noqa: F401  (registers the built-in algorithms)

    by_lower_name = {registered.lower(): cls for registered, cls in ALGORITHMS.items()}
    if isinstance(name, str) and name.lower() in by_lower_name:
        return by_lower_name[name.lower()]
    from rlcore.fields import did_you_mean

    raise KeyError(f"unknown algorithm {name!r}{did_you_mean(str(name), ALGORITHMS)}; registered algorithms: "
                   f"{', '.join(sorted(ALGORITHMS))}")


def algos_fitting(observation_space: gym.Space, action_space: gym.Space) -> list[str]:
    """Names of the registered algorithms that accept both spaces."""
    import rlcore.algos  # noqa: F401

    return sorted(name for name, cls in ALGORITHMS.items() if cls.fits(observation_space, action_space))


# ------------------------------------------------------------------------- algorithms
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

    @classmethod
    def fits(cls, observation_space: gym.Space, action_space: gym.Space) -> bool:
        """Whether this algorithm accepts these spaces."""
        return space_fits(observation_space, cls.observation_spaces, flat_box=cls.flat_box_only) and space_fits(
            action_space, cls.action_spaces
        )

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raises :class:`UnsupportedSpaceError` naming the bad space and the algorithms that fit."""
        if cls.fits(observation_space, action_space):
            return
        if not space_fits(observation_space, cls.observation_spaces, flat_box=cls.flat_box_only):
            which, space, accepted = "observation", observation_space, cls.observation_spaces
        else:
            which, space, accepted = "action", action_space, cls.action_spaces
        accepted_names = ", ".join(t.__name__ for t in accepted)
        if cls.flat_box_only and "Box" in accepted_names and which == "observation":
            accepted_names = accepted_names.replace("Box", "1-D Box")
        fitting = algos_fitting(observation_space, action_space)
        raise UnsupportedSpaceError(
            f"{cls.name} cannot handle the {which} space {describe_space(space)}: it accepts {accepted_names}. "
            f"Algorithms that fit this env: {fitting or 'none yet'}"
            + ("; or wrap the env (e.g. FlattenObservation)" if which == "observation" else "")
        )

    # --- acting -----------------------------------------------------------------------
    @abstractmethod
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Actions for a batch of observations: ``[N, *obs_shape] -> [N, *action_shape]``.

        ``deterministic=False`` is the behaviour policy (with exploration); ``True`` is
        the greedy policy used for evaluation and ``predict``.
        """

    def actor(self, deterministic: bool = True) -> Callable[[Tensor], Tensor]:
        """A fresh acting function ``[N, *obs_shape] -> [N, *action_shape]`` for whole episodes (evaluation).

        Algorithms whose policy keeps a per-env state (memory) return a callable that keeps its own,
        starting fresh episodes on its first call.
        """
        return lambda obs: self.act(obs, deterministic=deterministic)

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Tells the algorithm how far training is, for its schedules (exploration, target sync)."""
        self.env_steps = env_steps
        self.total_env_steps = max(total_env_steps, 1)

    # --- learning -----------------------------------------------------------------------
    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """``"transitions"`` algorithms: learn from one vector step (values ``[N, ...]``)."""
        raise NotImplementedError(f"{self.name} does not learn from single transitions")

    def train(self, gradient_steps: int) -> dict[str, float]:
        """``"replay"`` algorithms: take ``gradient_steps`` updates from the replay buffer."""
        raise NotImplementedError(f"{self.name} does not learn from replay")

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
