"""MCTS as an agent: plans every step with tree search on a simulator of the env (nothing is learned).

``rlcore.train("mcts", "CartPole-v1")`` searches from each sub-env's current state through the
snapshot adapters of :mod:`rlcore.search.simulator` (or a game's native simulator) and plays the
most visited action. The tree of the action played is kept for the next step (the adapters'
snapshots include the random-number state, so the child in the tree *is* the next state).

Planning needs the env's state, not only its observation, so this is a ``"planning"`` algorithm:
the Trainer hands it the vector env (:meth:`MCTSAgent.plan`) instead of observations. Vector envs
must be ``vectorization="sync"`` (the sub-envs live in this process).

References:
    Kocsis & Szepesvari, 2006. Bandit based Monte-Carlo planning. ECML.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.algos.base import Example, PlanningAlgorithm, register_algo, sub_envs
from rlcore.search import MCTS, MCTSConfig, make_simulator
from rlcore.search.simulator import current_state
from rlcore.settings import check_range


@dataclass(frozen=True)
class MCTSAgentConfig:
    """Hyperparameters of :class:`MCTSAgent` (see :class:`rlcore.search.MCTSConfig`)."""

    num_simulations: int = 100
    """Simulations per step."""
    rule: Literal["uct", "puct"] = "uct"
    """Selection rule."""
    c: float = 1.0
    """Exploration constant (values are rescaled to [0, 1] in single-agent envs)."""
    rollout_depth: int = 50
    """Steps per random rollout at most."""
    gamma: float = 1.0
    """Discount of rewards inside the search."""
    solver: bool = False
    """MCTS-solver (for deterministic envs and games)."""
    reuse_tree: bool = True
    """Keep the subtree of the action played."""

    def __post_init__(self) -> None:
        check_range("num_simulations", self.num_simulations, 1)
        check_range("c", self.c, 0.0)
        check_range("rollout_depth", self.rollout_depth, 1)
        check_range("gamma", self.gamma, 0.0, 1.0)
        if self.rule not in ("uct", "puct"):
            raise ValueError(f"rule must be 'uct' or 'puct', got {self.rule!r}")

    def search_config(self) -> MCTSConfig:
        return MCTSConfig(num_simulations=self.num_simulations, rule=self.rule, c=self.c, gamma=self.gamma,
                          rollout_depth=self.rollout_depth, solver=self.solver, reuse_tree=self.reuse_tree)


class _Planner:
    """One sub-env's simulator and search tree."""

    def __init__(self, env: gym.Env, config: MCTSConfig, seed: int) -> None:
        self.simulator = make_simulator(env)
        self.mcts = MCTS(self.simulator, config, seed=seed)

    def current_state(self, env: gym.Env) -> Any:
        return current_state(self.simulator, env)

    def choose(self, env: gym.Env) -> tuple[int, float]:
        """Searches from ``env``'s state (keeping the tree when the state is the one it expected),
        then moves the root to the chosen action's child, which is the next state.

        Returns:
            The action and the search's value of the state.
        """
        action = self.mcts.choose(self.current_state(env))
        value = self.mcts.root_value()
        self.mcts.advance(action)
        return action, value


@register_algo("mcts")
class MCTSAgent(PlanningAlgorithm[MCTSAgentConfig]):
    """Plans each action with MCTS on a simulator of the env; see the module docstring."""

    config_class: ClassVar[type] = MCTSAgentConfig
    example: ClassVar[Example | None] = Example("FrozenLake-v1", {"total_env_steps": 40, "num_simulations": 16,
                                                                 "reuse_tree": False})
    """(Trees over Python simulators are not checkpointed: only a run without tree reuse resumes bit-exactly.)"""
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (
        spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Tuple, spaces.Dict)
    """Any: the search reads the env's state, never its observations."""
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    flat_box_only: ClassVar[bool] = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: MCTSAgentConfig,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        self._planners: list[_Planner] = []
        """The training envs' planners, by sub-env index (their generators and native trees are checkpointed)."""
        self._saved_planners: list[dict[str, Any]] | None = None
        self._fixed_planners: dict[int, _Planner] = {}
        """Planners for deterministic plans on other envs, seeded from ``seed`` (never from the training generator)."""
        self.seed_for_play = seed
        self._metrics: dict[str, float] = {}

    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        raise TypeError(
            "mcts plans from the env's state, not from observations: use agent.evaluate(...), or "
            "agent.algo.plan(vector_env) for a synchronous vector env"
        )

    def choose_move(self, simulator: Any, state: Any, simulations: int | None = None) -> int:
        """The planner's action at ``state`` of ``simulator`` (e.g. to play a human in ``rlcore play``)."""
        config = self.config.search_config()
        if simulations is not None:
            config = dataclasses.replace(config, num_simulations=simulations)
        return MCTS(simulator, config, seed=self.seed_for_play).choose(state)

    def _training_planners(self, envs: VectorEnv) -> list[_Planner]:
        """One planner per training sub-env, seeded from the algorithm's generator (or restored from a checkpoint)."""
        config = self.config.search_config()
        for index, env in enumerate(sub_envs(envs)[len(self._planners):], start=len(self._planners)):
            if self._saved_planners is not None and index < len(self._saved_planners):
                planner = _Planner(env, config, seed=0)
                planner.mcts.load_state_dict(self._saved_planners[index])
            else:
                planner = _Planner(env, config, int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self._planners.append(planner)
        return self._planners

    def _fresh_planners(self, envs: VectorEnv) -> list[_Planner]:
        config = self.config.search_config()
        return [_Planner(env, config, self.seed_for_play + index) for index, env in enumerate(sub_envs(envs))]

    def plan(self, envs: VectorEnv, deterministic: bool = False) -> Tensor:
        """Searches from each sub-env's current state. Returns actions ``int64 [N]``.

        The tree of the chosen action is kept; the next call reuses it when the env's state is
        that child's state (it is, unless the episode ended and the env was reset). ``deterministic=False`` plans
        for the training envs; ``True`` plans on any envs with planners of their own.
        """
        if not deterministic:
            return self._plan_with(self._training_planners(envs), envs)
        if id(envs) not in self._fixed_planners:
            self._fixed_planners[id(envs)] = self._fresh_planners(envs)  # type: ignore[assignment]
        return self._plan_with(self._fixed_planners[id(envs)], envs)  # type: ignore[arg-type]

    def evaluation_planner(self, envs: VectorEnv) -> Callable[[Tensor], Tensor]:
        """Fresh planners for one evaluation, seeded from ``seed``: evaluating neither changes training nor depends
        on earlier evaluations."""
        planners = self._fresh_planners(envs)
        return lambda obs: self._plan_with(planners, envs)

    def _plan_with(self, planners: list[_Planner], envs: VectorEnv) -> Tensor:
        start, actions, values = time.perf_counter(), [], []
        for planner, env in zip(planners, sub_envs(envs)):
            action, value = planner.choose(env)
            actions.append(action)
            values.append(value)
        seconds = time.perf_counter() - start
        self._metrics = {"search/root_value": float(np.mean(values)),
                         "search/simulations_per_s": len(actions) * self.config.num_simulations / max(seconds, 1e-9)}
        return torch.tensor(actions, dtype=torch.int64) + self.action_start

    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        """Nothing to learn; returns the last search's ``search/...`` metrics."""
        return dict(self._metrics)

    def state_dict(self) -> dict[str, Any]:
        """The generator, counters and each training planner's generator (and tree, on native simulators; trees over
        Python simulators are rebuilt on resume)."""
        planners = [planner.mcts.state_dict() for planner in self._planners] or self._saved_planners
        return {**self._base_state(), "planners": planners, "seed": self.seed_for_play}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self._planners, self._fixed_planners = [], {}
        self._saved_planners = state.get("planners")
        self.seed_for_play = int(state.get("seed", self.seed_for_play))
