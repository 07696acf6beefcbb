"""What search needs from an environment: the :class:`Simulator` protocol, and ways to get one.

A simulator has *states* and a *pure* ``step(state, action) -> (next_state, reward, done)`` that
never changes ``state``; ``reward`` goes to the player who acted (for a two-player zero-sum game
the terminal value at the end: +1 win, 0 draw, -1 loss). ``to_play(state)`` is 0 in single-agent
problems and 0 or 1 in two-player zero-sum games. Three kinds exist:

- :class:`NativeSimulator`: rules as numba kernels over ``int64`` state rows (``envs/`` games);
  search runs entirely in numba;
- snapshot adapters for gymnasium envs (:func:`make_simulator`): a state is a snapshot of the full
  env state *including its random-number generator*, so a stochastic env replays identically from
  a snapshot. Toy-text envs (FrozenLake, CliffWalking, Taxi, Blackjack), classic control
  (CartPole, MountainCar, Acrobot: ``unwrapped.state`` plus ``TimeLimit``'s elapsed steps) and
  ALE Atari envs (``cloneState(include_rng=True)``, when ale-py is installed);
- any user class with the methods of :class:`Simulator`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import gymnasium as gym
import numpy as np

from rlcore.search.native import NativeKernel, step_state

S = TypeVar("S")


class SnapshotError(TypeError):
    """An env whose full state cannot be captured, so search cannot plan on it."""


@runtime_checkable
class Simulator(Protocol[S]):
    """The protocol MCTS plans with. Actions are integers ``0 .. num_actions - 1``.

    An optional attribute ``max_value`` (float) is the largest value a state can have for its player to move
    (``1.0`` where +1 is a win and the only reward): with ``solver=True`` a child proven worth it proves its parent
    at once; without it, a parent is proven only once all its children are."""

    num_actions: int
    """Size of the action set."""
    num_players: int
    """1 (single-agent) or 2 (two-player zero-sum, alternating or not, as ``to_play`` says)."""

    def legal_actions(self, state: S) -> np.ndarray:
        """Legal actions at a non-terminal ``state``, ascending. ``int64 [k]``, ``k >= 1``."""
        ...

    def step(self, state: S, action: int) -> tuple[S, float, bool]:
        """``(next_state, reward to the player who acted, episode over)``; ``state`` is unchanged."""
        ...

    def to_play(self, state: S) -> int:
        """The player to move: always 0 for single-agent simulators."""
        ...

    def is_terminal(self, state: S) -> bool:
        """Whether the episode is over at ``state``."""
        ...


class NativeSimulator:
    """A :class:`Simulator` whose rules are numba kernels; states are ``int64 [S]`` rows.

    Args:
        kernel: The game's kernels.
        initial_state: The start position. ``int64 [S]``.
        terminal_index: Index of the state entry that is nonzero once the game is over.
        mirror_symmetric: Whether the left-right mirror of a position (and of its moves) is an equivalent
            position (AlphaZero then also trains on mirrored positions).
        name: The game's name in messages.
    """

    num_players = 2

    def __init__(self, kernel: NativeKernel, initial_state: np.ndarray, terminal_index: int, *,
                 mirror_symmetric: bool = False, name: str = "native game") -> None:
        self.kernel = kernel
        self.mirror_symmetric = mirror_symmetric
        self.name = name
        self.num_actions = kernel.num_actions
        self._initial = np.asarray(initial_state, np.int64).copy()
        self._terminal_index = terminal_index

    def initial_state(self) -> np.ndarray:
        return self._initial.copy()

    def legal_actions(self, state: np.ndarray) -> np.ndarray:
        out = np.empty(self.num_actions, np.int64)
        return out[: self.kernel.legal(state, out)].copy()

    def step(self, state: np.ndarray, action: int) -> tuple[np.ndarray, float, bool]:
        next_state, reward, done = step_state(self.kernel.step, state, int(action))
        return next_state, float(reward), bool(done)

    def to_play(self, state: np.ndarray) -> int:
        return int(self.kernel.to_play(state))

    def is_terminal(self, state: np.ndarray) -> bool:
        return bool(state[self._terminal_index] != 0)

    def observation(self, state: np.ndarray) -> np.ndarray:
        """The network input of ``state``. ``float32 obs_shape``."""
        out = np.zeros(self.kernel.obs_shape, np.float32)
        self.kernel.encode(state, out)
        return out

    def action_mask(self, state: np.ndarray) -> np.ndarray:
        """``int8 [A]``: 1 where the action is legal (all zeros once the game is over)."""
        mask = np.zeros(self.num_actions, np.int8)
        if not self.is_terminal(state):
            mask[self.legal_actions(state)] = 1
        return mask


# ---------------------------------------------------------------------------------- snapshots
@dataclass(frozen=True)
class EnvSnapshot:
    """The full state of a gymnasium env at one moment; treat it as immutable."""

    fields: dict[str, Any]
    """Attributes of ``env.unwrapped`` that change during an episode (deep copies)."""
    rng_state: dict[str, Any]
    """``env.unwrapped.np_random.bit_generator.state``."""
    elapsed_steps: int | None
    """``TimeLimit``'s step counter, or None without a time limit."""
    done: bool = False
    """Whether the episode ended (terminated or truncated) at this state."""
    extra: Any = field(default=None, compare=False)
    """Engine state that is not a plain attribute (the ALE emulator's ``ALEState``)."""


CLASSIC_CONTROL_FIELDS: dict[str, tuple[str, ...]] = {
    "CartPoleEnv": ("state", "steps_beyond_terminated"),
    "MountainCarEnv": ("state",),
    "AcrobotEnv": ("state",),
}
"""Per classic-control env class: the attributes that hold its physics state."""
TOY_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "FrozenLakeEnv": ("s", "lastaction"),
    "CliffWalkingEnv": ("s", "lastaction"),
    "TaxiEnv": ("s", "lastaction", "taxi_orientation", "fickle_step"),
    "BlackjackEnv": ("dealer", "player", "dealer_top_card_suit", "dealer_top_card_value_str"),
}
"""Per toy-text env class: the attributes that hold its state."""


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    """The outermost ``TimeLimit`` wrapper around ``env``, if any."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


class GymSimulator:
    """A :class:`Simulator` over a gymnasium env with discrete actions, by snapshot and restore.

    States are :class:`EnvSnapshot` objects. :meth:`snapshot` reads the state of any env of the
    same kind (the live one an agent acts in); :meth:`step` restores a snapshot into a private
    *twin* env built from the same spec, steps it and snapshots the result, so the live env is
    never touched. Use :func:`make_simulator` to pick the right subclass.

    Args:
        env: The env to plan for (its spec builds the twin).
        twin: The env to simulate in; by default built from ``env.unwrapped.spec``, with the live
            env's time limit.
    """

    num_players = 1

    def __init__(self, env: gym.Env, twin: gym.Env | None = None) -> None:
        _check_discrete(env)
        self.num_actions = int(env.action_space.n)
        self.action_start = int(env.action_space.start)
        self._check_supported(env)
        if twin is None:
            spec = env.unwrapped.spec or env.spec  # the unwrapped spec: no wrappers to rebuild
            if spec is None:
                raise SnapshotError(f"{_env_label(env)} has no spec to build a twin env from; pass twin=...")
            twin = gym.make(spec)
        live_limit, twin_limit = _time_limit(env), _time_limit(twin)
        if live_limit is not None and twin_limit is None:  # the unwrapped spec carries no time limit
            twin = gym.wrappers.TimeLimit(twin, live_limit._max_episode_steps)
        elif live_limit is not None and twin_limit is not None:
            twin_limit._max_episode_steps = live_limit._max_episode_steps
        self.twin = twin
        self.twin.reset(seed=0)

    def _check_supported(self, env: gym.Env) -> None:
        """Raises :class:`SnapshotError` when this adapter cannot capture ``env``'s state."""

    # -- snapshots ---------------------------------------------------------------------
    def _fields(self, unwrapped: gym.Env) -> tuple[str, ...]:
        return ()

    def snapshot(self, env: gym.Env, done: bool = False) -> EnvSnapshot:
        """Captures ``env``'s full state (``done``: whether its episode just ended)."""
        unwrapped = env.unwrapped
        limit = _time_limit(env)
        return EnvSnapshot(
            fields={name: copy.deepcopy(getattr(unwrapped, name)) for name in self._fields(unwrapped)},
            rng_state=copy.deepcopy(unwrapped.np_random.bit_generator.state),
            elapsed_steps=None if limit is None else int(limit._elapsed_steps or 0),
            done=done,
            extra=self._capture_extra(unwrapped),
        )

    def restore(self, snapshot: EnvSnapshot, env: gym.Env) -> None:
        """Puts ``env`` into ``snapshot``'s state."""
        unwrapped = env.unwrapped
        for name, value in snapshot.fields.items():
            setattr(unwrapped, name, copy.deepcopy(value))
        unwrapped.np_random.bit_generator.state = copy.deepcopy(snapshot.rng_state)
        limit = _time_limit(env)
        if limit is not None and snapshot.elapsed_steps is not None:
            limit._elapsed_steps = snapshot.elapsed_steps
        self._restore_extra(unwrapped, snapshot.extra)

    def same_state(self, first: EnvSnapshot, second: EnvSnapshot) -> bool:
        """Whether two snapshots hold the same state (arrays compared by value)."""
        if (first.elapsed_steps, first.done) != (second.elapsed_steps, second.done):
            return False
        if first.rng_state != second.rng_state or first.fields.keys() != second.fields.keys():
            return False
        return all(_equal(first.fields[name], second.fields[name]) for name in first.fields) and _equal(
            self._extra_key(first.extra), self._extra_key(second.extra))

    def _extra_key(self, extra: Any) -> Any:
        return None

    def _capture_extra(self, unwrapped: gym.Env) -> Any:
        return None

    def _restore_extra(self, unwrapped: gym.Env, extra: Any) -> None:
        pass

    # -- the protocol ------------------------------------------------------------------
    def legal_actions(self, state: EnvSnapshot) -> np.ndarray:
        return np.arange(self.num_actions, dtype=np.int64)

    def step(self, state: EnvSnapshot, action: int) -> tuple[EnvSnapshot, float, bool]:
        if state.done:
            raise ValueError("cannot step a snapshot whose episode is over")
        self.restore(state, self.twin)
        _, reward, terminated, truncated, _ = self.twin.step(int(action) + self.action_start)
        done = bool(terminated or truncated)
        return self.snapshot(self.twin, done), float(reward), done

    def to_play(self, state: EnvSnapshot) -> int:
        return 0

    def is_terminal(self, state: EnvSnapshot) -> bool:
        return state.done

    def rollout(self, state: EnvSnapshot, depth: int, gamma: float, rng: np.random.Generator) -> float:
        """Discounted return of up to ``depth`` uniformly random actions from ``state``.

        Restores once and steps the twin's unwrapped env (no snapshot per step), counting the time
        limit itself, so a rollout step costs one env step.
        """
        if state.done:
            return 0.0
        self.restore(state, self.twin)
        limit = _time_limit(self.twin)
        steps_left = depth
        if limit is not None and state.elapsed_steps is not None:
            steps_left = min(depth, limit._max_episode_steps - state.elapsed_steps)
        env, total, discount = self.twin.unwrapped, 0.0, 1.0
        for action in rng.integers(self.num_actions, size=max(steps_left, 0)):
            _, reward, terminated, truncated, _ = env.step(int(action) + self.action_start)
            total += discount * float(reward)
            discount *= gamma
            if terminated or truncated:
                break
        return total


def _equal(first: Any, second: Any) -> bool:
    if isinstance(first, np.ndarray) or isinstance(second, np.ndarray):
        return bool(np.array_equal(first, second))
    return bool(first == second)


def _check_discrete(env: gym.Env) -> None:
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise SnapshotError(
            f"search needs a Discrete action space; {_env_label(env)} has {env.action_space}. "
            "Discretize the actions with a wrapper, or use a policy-gradient algorithm"
        )


def _env_label(env: gym.Env) -> str:
    spec_id = env.spec.id if env.spec is not None else None
    return f"{spec_id or type(env.unwrapped).__name__} ({type(env.unwrapped).__name__})"


class _FieldSimulator(GymSimulator):
    """Snapshots a known set of ``unwrapped`` attributes (see the field tables)."""

    table: dict[str, tuple[str, ...]] = {}
    kind = ""

    def _check_supported(self, env: gym.Env) -> None:
        if type(env.unwrapped).__name__ not in self.table:
            raise SnapshotError(
                f"cannot snapshot {_env_label(env)} as a {self.kind} env; known: {sorted(self.table)}"
            )

    def _fields(self, unwrapped: gym.Env) -> tuple[str, ...]:
        return self.table[type(unwrapped).__name__]


class ToyTextSimulator(_FieldSimulator):
    """Toy-text envs: the discrete state (and Blackjack's hands) plus the RNG."""

    table = TOY_TEXT_FIELDS
    kind = "toy-text"


class ClassicControlSimulator(_FieldSimulator):
    """Classic control: ``unwrapped.state`` (and CartPole's termination counter), the time limit, the RNG."""

    table = CLASSIC_CONTROL_FIELDS
    kind = "classic-control"


class AtariSimulator(GymSimulator):
    """ALE Atari envs: the emulator state with its RNG (``cloneState(include_rng=True)``), so sticky
    actions replay identically, plus the env's ``np_random`` (random frame skips)."""

    def _check_supported(self, env: gym.Env) -> None:
        if not hasattr(env.unwrapped, "ale"):
            raise SnapshotError(f"{_env_label(env)} is not an ALE env (it has no .ale)")

    def _capture_extra(self, unwrapped: gym.Env) -> Any:
        ale = unwrapped.ale
        return ale.cloneState(include_rng=True), ale.getEpisodeFrameNumber(), ale.getRAM().tobytes()

    def _restore_extra(self, unwrapped: gym.Env, extra: Any) -> None:
        unwrapped.ale.restoreState(extra[0])

    def _extra_key(self, extra: Any) -> Any:
        return extra[1:]  # frame number and RAM: ALEState itself has no equality


ADAPTERS: list[tuple[Callable[[gym.Env], bool], type[GymSimulator]]] = [
    (lambda env: type(env.unwrapped).__name__ in TOY_TEXT_FIELDS, ToyTextSimulator),
    (lambda env: type(env.unwrapped).__name__ in CLASSIC_CONTROL_FIELDS, ClassicControlSimulator),
    (lambda env: hasattr(env.unwrapped, "ale"), AtariSimulator),
]
"""How :func:`make_simulator` picks an adapter: the first whose test accepts the env."""


def current_state(simulator: Simulator[Any], env: gym.Env) -> Any:
    """The state ``env`` is in, as ``simulator``'s state: a native game's row (a copy), or the simulator's
    ``snapshot(env)`` (gymnasium adapters, OpenSpiel games)."""
    if isinstance(simulator, NativeSimulator):
        return np.array(env.unwrapped.state, np.int64)
    snapshot = getattr(simulator, "snapshot", None)
    if snapshot is None:
        raise SnapshotError(f"{type(simulator).__name__} has no snapshot(env) method, so the state of "
                            f"{_env_label(env)} cannot be read for search")
    return snapshot(env)


def make_simulator(env: gym.Env, twin: gym.Env | None = None) -> Simulator[Any]:
    """A :class:`Simulator` for ``env``: its native one (``env.unwrapped.simulator``) or an adapter.

    Raises:
        SnapshotError: No adapter can capture ``env``'s full state; the message names the env.
    """
    native = getattr(env.unwrapped, "simulator", None)
    if native is not None:
        return native
    _check_discrete(env)
    for accepts, adapter in ADAPTERS:
        if accepts(env):
            return adapter(env, twin)
    raise SnapshotError(
        f"cannot snapshot {_env_label(env)}: search needs the env's full state, including its random-number "
        "state. Supported: envs with a .simulator (rlcore/TicTacToe-v0, rlcore/ConnectFour-v0, openspiel/<game>), "
        "toy-text "
        f"{sorted(TOY_TEXT_FIELDS)}, classic control {sorted(CLASSIC_CONTROL_FIELDS)} and ALE envs. For another "
        "env, write a Simulator (rlcore.search.simulator.Simulator) or add its state attributes to "
        "TOY_TEXT_FIELDS / CLASSIC_CONTROL_FIELDS"
    )
