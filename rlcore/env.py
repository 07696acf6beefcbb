"""Environments: resolving what the user passed, vectorizing it, and making runs resumable.

Every algorithm sees a gymnasium ``VectorEnv`` in *same-step* autoreset mode: when an
episode ends, ``step`` returns the first observation of the next episode and the true
last observation sits in ``info["final_obs"]``. The :class:`Collector` turns that into
``next_obs`` rows, so no algorithm ever handles autoreset itself.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import logging
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.vector.async_vector_env import AsyncState
from gymnasium.vector.utils import concatenate, iterate

from rlcore.observations import stack

logger = logging.getLogger(__name__)

EnvSpec = str | type | Callable[[], gym.Env]
"""What users may pass as an environment: a registered id, an ``Env`` subclass, or a factory (and, to
:func:`rlcore.train`, an env instance or a ``VectorEnv``)."""


MINATAR_GAMES: dict[str, str] = {
    "Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
"""MinAtar games registered as ``rlcore/MinAtar-<Game>-v0`` -> minatar's module name."""
MINATAR_MAX_EPISODE_STEPS = 10_000
"""The registered time limit of MinAtar games (a truncation; the games have no limit of their own but Freeway's)."""
ATARI_GAMES: tuple[str, ...] = ("BeamRider", "Breakout", "Enduro", "MsPacman", "Pong", "Qbert", "Seaquest",
                                "SpaceInvaders")
"""Atari games registered as ``rlcore/Atari-<Game>-v0``: the classic DQN/PPO evaluation set."""


BATCHED_ENVS: dict[str, str] = {"rlcore/MinAtar-Breakout-v0": "envs.minatar_breakout:BreakoutVectorEnv",
                                "rlcore/MinAtar-Freeway-v0": "envs.minatar_freeway:FreewayVectorEnv",
                                "rlcore/MinAtar-SpaceInvaders-v0": "envs.minatar_space_invaders:SpaceInvadersVectorEnv",
                                "rlcore/MinAtar-Asterix-v0": "envs.minatar_asterix:AsterixVectorEnv",
                                "rlcore/MinAtar-Seaquest-v0": "envs.minatar_seaquest:SeaquestVectorEnv"}
"""Ids with a batched vector implementation (one compiled step for all sub-envs, the same trajectories as the
single env's): :func:`make_vec_env` uses it for ``num_envs > 1`` (gymnasium's ``vector_entry_point``)."""


LEANER_STEP_ENVS: dict[str, str] = {"BipedalWalker-v3": "envs.bipedal_walker:BipedalWalker",
                                    "BipedalWalkerHardcore-v3": "envs.bipedal_walker:BipedalWalker",
                                    "LunarLander-v3": "envs.lunar_lander:LunarLander",
                                    "LunarLanderContinuous-v3": "envs.lunar_lander:LunarLander",
                                    "CarRacing-v3": "envs.car_racing:CarRacing"}
"""gymnasium ids whose env rlcore builds from its own subclass with a leaner ``step`` (the same trajectories, bit for
bit; :mod:`envs.bipedal_walker`, :mod:`envs.lunar_lander`, :mod:`envs.car_racing`'s renderer): :func:`make_vec_env`
uses it for an id (with the caller's ``env_kwargs`` and ``wrappers``), with the registered spec otherwise."""


def _rlcore_env_table() -> dict[str, dict[str, Any]]:
    """``gym.register`` arguments of rlcore's own envs (the classes live in the ``envs/`` package).

    Entry points are strings, so nothing of ``envs/`` (or minatar, ale-py) is imported until an env is made; the
    MinAtar and Atari ids exist when their packages are installed (``pip install -e ".[pixels]"``).
    """
    table: dict[str, dict[str, Any]] = {
        "rlcore/CartPoleNoVelocity-v0": {"entry_point": "envs.cartpole_hidden:CartPoleNoVelocityEnv",
                                         "max_episode_steps": 500, "reward_threshold": 475.0},
        "rlcore/ConnectFour-v0": {"entry_point": "envs.connect_four:ConnectFourEnv"},
        "rlcore/Corridor-v0": {"entry_point": "envs.corridor:CorridorEnv", "max_episode_steps": 100},
        "rlcore/Digits-v0": {"entry_point": "envs.digits:DigitsEnv", "reward_threshold": 9.0},
        "rlcore/DictGrid-v0": {"entry_point": "envs.dict_grid:DictGridEnv", "max_episode_steps": 20,
                               "reward_threshold": 0.9},
        "rlcore/Memory-v0": {"entry_point": "envs.memory:MemoryEnv"},
        "rlcore/PendulumNoVelocity-v0": {"entry_point": "envs.pendulum_hidden:PendulumNoVelocityEnv",
                                         "max_episode_steps": 200},
        "rlcore/TextTopic-v0": {"entry_point": "envs.text:TextTopicEnv", "reward_threshold": 7.2},
        "rlcore/TicTacToe-v0": {"entry_point": "envs.tictactoe:TicTacToeEnv"},
        "rlcore/TicTacToeVsRandom-v0": {"entry_point": "envs.tictactoe_masked:TicTacToeVsRandomEnv"},
    }
    if importlib.util.find_spec("minatar") is not None:
        table.update({f"rlcore/MinAtar-{name}-v0": {"entry_point": "envs.minatar:MinAtarEnv", "kwargs": {"game": game},
                                                      "max_episode_steps": MINATAR_MAX_EPISODE_STEPS}
                      for name, game in MINATAR_GAMES.items()})
        for env_id, vector_entry_point in BATCHED_ENVS.items():
            table[env_id]["vector_entry_point"] = vector_entry_point
    if importlib.util.find_spec("ale_py") is not None and importlib.util.find_spec("cv2") is not None:
        table.update({f"rlcore/Atari-{game}-v0": {"entry_point": "envs.atari:make_atari", "kwargs": {"game": game}}
                      for game in ATARI_GAMES})
    return table


def register_rlcore_envs() -> list[str]:
    """Registers rlcore's own ``rlcore/<Name>-v0`` ids with gymnasium (done when rlcore is imported); returns them."""
    table = _rlcore_env_table()
    for env_id, arguments in table.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **arguments)
    return sorted(table)


def rlcore_env_ids() -> list[str]:
    """The ids of rlcore's own envs."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith("rlcore/"))


def env_name(env: Any) -> str:
    """A short, filesystem-safe name for run folders: ``CartPole-v1``, ``rlcore-Corridor-v0``."""
    if isinstance(env, str):
        raw = env
    elif isinstance(env, VectorEnv):
        raw = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    elif isinstance(env, gym.Env):
        raw = type(env.unwrapped).__name__
    else:
        raw = getattr(env, "__name__", type(env).__name__)
    return re.sub(r"[^\w.-]+", "-", raw).strip("-")  # e.g. openspiel/hex(board_size=5) -> openspiel-hex-board_size-5


def built_env_name(env: Any, envs: VectorEnv) -> str:
    """The name a run is filed and compared under (:func:`env_name`), taken from the envs it built where the
    argument names no task: a factory (a lambda, a ``functools.partial``, CleanRL's ``thunk``) or a vector env
    without a spec is named by its first sub-env's registered id, else that env's class, so that runs of other
    tasks never share a folder or a ``rlcore compare`` row."""
    if isinstance(env, str | type | gym.Env) or (isinstance(env, VectorEnv) and env.spec is not None):
        return env_name(env)
    return env_name(_first_sub_env_name(envs) or env)


def _first_sub_env_name(envs: VectorEnv) -> str | None:
    """The first sub-env's registered id, else its class name; None where its sub-envs cannot be read."""
    inner = envs.unwrapped
    if isinstance(inner, SyncVectorEnv):
        first = inner.envs[0].unwrapped
        return first.spec.id if first.spec is not None else type(first).__name__
    try:
        specs = inner.get_attr("spec")
    except Exception:  # a vector env of its own kind (natively vectorized, a worker pool): its own name stays
        return None
    return specs[0].id if specs and specs[0] is not None else None


def unknown_env_message(env_id: str, error: Exception) -> str:
    """One line: gymnasium's message with its suggestion, else the closest registered id, else rlcore's own ids."""
    from rlcore.fields import did_you_mean

    message = " ".join(str(error).split())
    if "did you mean" in message.lower():
        return f"unknown env {env_id!r}: {message}"
    suggestion = did_you_mean(env_id, gym.registry)
    if suggestion:
        return f"unknown env {env_id!r}{suggestion}: {message}"
    return (f"unknown env {env_id!r}: {message} rlcore's own envs: {', '.join(rlcore_env_ids())}; or pass a "
            "gymnasium.Env subclass or a function returning an env")


def make_env(env: EnvSpec, **env_kwargs: Any) -> gym.Env:
    """Builds one environment from an id, an ``Env`` class or a factory.

    Raises:
        gymnasium.error.Error: For an unknown id; the message lists rlcore's own ids too.
        TypeError: If ``env`` is none of the accepted kinds or does not build a ``gym.Env``.
    """
    if isinstance(env, str) and env.startswith("openspiel/"):  # the game string is data for pyspiel.load_game
        from rlcore.search.games.openspiel import make_openspiel_env

        built = make_openspiel_env(env, **env_kwargs)
    elif isinstance(env, str):
        try:
            built = gym.make(env, **env_kwargs)
        except gym.error.Error as error:
            if env in gym.registry:
                raise
            raise type(error)(unknown_env_message(env, error)) from error
    elif callable(env):
        built = env(**env_kwargs)
    else:
        raise TypeError(
            f"env must be a registered id, a gymnasium.Env subclass or a factory, got {env!r} "
            f"of type {type(env).__name__}"
        )
    if not isinstance(built, gym.Env):
        raise TypeError(f"{env!r} built a {type(built).__name__}, not a gymnasium.Env")
    return built


def env_spaces(env: EnvSpec) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of one env made from ``env`` (made, read, closed)."""
    probe = make_env(env)
    try:
        return probe.observation_space, probe.action_space
    finally:
        probe.close()


class ReplayableEnv(gym.Wrapper):
    """Remembers how to rebuild the current episode, so a killed run can resume exactly.

    It records the env's random-number state just before the episode's ``reset`` (or the
    seed passed to it) and every action since. :meth:`replay_state` returns that as plain
    data; :meth:`restore_replay_state` puts a fresh env into the same state by resetting
    with the same randomness and stepping the same actions. This is exact for every env
    whose randomness flows through ``np_random`` and whose dynamics are deterministic
    given it: all of gymnasium's own environments and rlcore's.
    """

    MAX_REPLAY_STEPS = 100_000
    """The longest episode a checkpoint replays: past it (a continuing task without episode ends) the episode's
    actions are no longer kept, and a resumed run starts that env's episode anew (a warning says so)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._reset_record: dict[str, Any] = {}
        self._actions: list[Any] = []
        self._replayable = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None:
            self._reset_record = {"seed": int(seed)}
        else:
            bit_generator = self.env.unwrapped.np_random.bit_generator
            state = bit_generator.state
            # numpy's own bit generators build a new state dict at every access (a deep copy costs ~20 us per
            # autoreset); another one's state is copied
            fresh = type(bit_generator).__module__.startswith("numpy.random")
            self._reset_record = {"rng_state": state if fresh else copy.deepcopy(state)}
        self._reset_record["options"] = options
        self._actions, self._replayable = [], True
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self._replayable:  # a scalar as a Python number (8 bytes, not a 0-d array's ~100)
            if isinstance(action, np.ndarray):
                action_kept = action.item() if action.ndim == 0 else action.copy()
            else:
                action_kept = action.item() if isinstance(action, np.generic) else action
            self._actions.append(action_kept)
            if len(self._actions) > self.MAX_REPLAY_STEPS:
                self._actions, self._replayable = [], False
        return self.env.step(action)

    def replay_state(self) -> dict[str, Any]:
        """The current episode as data: how it was reset, and its actions so far (an array ``[T, *action_shape]``:
        checkpoints keep it among the tensors); ``replayable`` False past :attr:`MAX_REPLAY_STEPS`."""
        actions = np.asarray(self._actions) if self._actions else np.zeros((0,), np.int64)
        return {"reset": copy.deepcopy(self._reset_record), "actions": actions, "replayable": self._replayable}

    def restore_replay_state(self, state: dict[str, Any]) -> Any:
        """Rebuilds the recorded episode; returns the observation after its last action."""
        record = state["reset"]
        if not state.get("replayable", True):
            logger.warning("the episode of a %s env was longer than %d steps when the checkpoint was written, too "
                           "long to replay: the resumed run starts that env's episode anew",
                           type(self.env.unwrapped).__name__, self.MAX_REPLAY_STEPS)
            obs, _ = self.reset()
            return obs
        if "seed" in record:
            obs, _ = self.reset(seed=record["seed"], options=record.get("options"))
        else:
            self.env.unwrapped.np_random.bit_generator.state = record["rng_state"]
            obs, _ = self.reset(options=record.get("options"))
        for action in state["actions"]:  # a list in checkpoints written before the array
            action = np.asarray(action, dtype=self.action_space.dtype) if isinstance(action, list | np.ndarray) \
                else action
            obs, *_ = self.step(action)
        return obs


class ErrorKeepingAsyncVectorEnv(AsyncVectorEnv):
    """gymnasium's ``AsyncVectorEnv`` raising a sub-env's own error: gymnasium logs the error's traceback through a
    %-format (``logger.error(f"{trace}")``), so a ``%`` in the env's message or source line raised ``TypeError:
    not enough arguments for format string`` in place of the env's error, which was lost."""

    def _raise_if_errors(self, successes: Any) -> None:
        if all(successes):
            return
        errors = [self.error_queue.get() for _ in range(self.num_envs - sum(successes))]
        for index, _, _, trace in errors:
            logger.error("sub-env process %d failed and is shut down:\n%s", index, trace)
            self.parent_pipes[index].close()
            self.parent_pipes[index] = None
        self._state = AsyncState.DEFAULT
        raise errors[-1][2]  # the env's own exception (rebuilding it from its type could fail: CalledProcessError)


class SameStepSyncVectorEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` in same-step autoreset mode, with a leaner ``step``: the same results
    (observations, rewards, flags, and infos with ``final_obs``/``final_info``), without the per-env Python work of
    gymnasium's generic loop (its autoreset-mode dispatch, element-wise writes into numpy arrays, an info merge per
    env, a deep copy of the batched observations). Profiled on CartPole-v1: gymnasium's loop added ~2.6 us per
    env-step to the env's own ~6.3 us.
    """

    _BASE_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

    def step(self, actions: Any) -> Any:
        if self.autoreset_mode != AutoresetMode.SAME_STEP:
            return super().step(actions)
        infos: dict[str, Any] = {}
        observations, rewards, terminations, truncations = self._env_obs, [], [], []
        for index, (env, action) in enumerate(zip(self.envs, iterate(self.action_space, actions), strict=True)):
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                infos = self._add_info(infos, {"final_obs": obs, "final_info": info}, index)
                obs, info = env.reset()
            if info:
                infos = self._add_info(infos, info, index)
            observations[index] = obs
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
        self._rewards = np.array(rewards, dtype=np.float64)
        self._terminations = np.array(terminations, dtype=np.bool_)
        self._truncations = np.array(truncations, dtype=np.bool_)
        self._autoreset_envs = self._terminations | self._truncations
        if type(self.single_observation_space) in self._BASE_SPACES:  # a fresh array: no copy needed after
            batched = np.stack(observations, axis=0, out=np.empty_like(self._observations))
        else:
            self._observations = concatenate(self.single_observation_space, observations, self._observations)
            batched = copy.deepcopy(self._observations) if self.copy else self._observations
        return batched, self._rewards.copy(), self._terminations.copy(), self._truncations.copy(), infos


class StatefulVectorEnv(VectorEnv):
    """A vector env that is not a ``SyncVectorEnv`` of :class:`ReplayableEnv` (a batched implementation, see
    :data:`BATCHED_ENVS`): it gives and takes its sub-envs' states itself, for exact resume. It steps with same-step
    autoreset, like :func:`make_vec_env`'s."""

    def replay_states(self) -> list[dict[str, Any]]:
        """Each sub-env's state as plain data (JSON types)."""
        raise NotImplementedError

    def restore_replay_states(self, states: list[dict[str, Any]]) -> np.ndarray:
        """Puts back :meth:`replay_states`; returns the batched observation ``[N, ...]``."""
        raise NotImplementedError


class ActionMaskInfo(gym.Wrapper):
    """Puts the env's ``action_masks()`` (sb3-contrib's convention) into ``info["action_mask"]`` after every reset and
    step, so the vector env batches them and keeps the final observation's mask in ``final_info`` when it
    autoresets (a method called after the step would see the next episode's first observation)."""

    def _with_mask(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "action_mask": np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._with_mask(info)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._with_mask(info)


class SameStepVectorEnv(VectorWrapper):
    """A user's vector env as rlcore steps it: same-step autoreset, ``info["action_mask"]`` when it has masks.

    gymnasium's vector envs autoreset in one of three modes (``metadata["autoreset_mode"]``). In ``SAME_STEP`` the
    env already resets an ended episode within the step and keeps the true last observation in
    ``info["final_obs"]``. In ``NEXT_STEP`` (gymnasium's default) the step that ends an episode returns its true last
    observation, and the *next* step would reset it and ignore its action; ``DISABLED`` leaves resets to the caller.
    For both, this wrapper resets the envs that just ended at once (``reset(options={"reset_mask": ended})``,
    which also cancels a pending autoreset) and moves their last observations to ``info["final_obs"]``, so every
    step is a real transition of every sub-env and ``next_obs`` is always the true final observation.

    Sub-envs with an ``action_masks()`` method get theirs read after every step through ``call``: in ``NEXT_STEP``
    and ``DISABLED`` modes before the reset (the final observation's mask goes to ``info["final_info"]``); in
    ``SAME_STEP`` mode only the next episode's mask is left (a truncated episode then bootstraps over all actions).
    """

    def __init__(self, env: VectorEnv, masks: str | None) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode")
        if mode is None:
            raise ValueError(f"the vector env {type(env).__name__} does not say how it autoresets; set its "
                             "metadata['autoreset_mode'] to a gymnasium.vector.AutoresetMode")
        self.mode = AutoresetMode(mode)
        self.masks = masks
        self.copies = getattr(env.unwrapped, "copy", True) is False
        """Whether observations are copied: a Sync/AsyncVectorEnv built with ``copy=False`` returns its own buffer,
        which its next step overwrites (the stored ``obs`` would become ``next_obs``)."""

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.env.call(name, *args, **kwargs)

    def _method_masks(self) -> np.ndarray:
        return np.stack([np.asarray(mask, dtype=bool) for mask in self.env.call("action_masks")])

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> Any:
        if isinstance(seed, list | tuple) and not isinstance(self.env.unwrapped, SyncVectorEnv | AsyncVectorEnv):
            seed = seed[0]  # a natively vectorized env takes one int (its sub-envs: seed, seed + 1, ..., as a list)
        obs, info = self.env.reset(seed=seed, options=options)
        if self.masks == "method":
            info = {**info, "action_mask": self._method_masks(), "_action_mask": np.ones(self.num_envs, dtype=bool)}
        return (copy.deepcopy(obs) if self.copies else obs), info

    def step(self, actions: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self.copies:
            obs = copy.deepcopy(obs)
        info = dict(info)
        if self.masks == "method":
            info["action_mask"] = self._method_masks()
            info["_action_mask"] = np.ones(self.num_envs, dtype=bool)
        done = np.logical_or(terminated, truncated)
        if self.mode is AutoresetMode.SAME_STEP or not done.any():
            return obs, reward, terminated, truncated, info
        final_obs = np.full(self.num_envs, None, dtype=object)
        for env, single in zip(np.flatnonzero(done), _rows(self.single_observation_space, obs, np.flatnonzero(done))):
            final_obs[env] = single
        final_info = {key: value for key, value in info.items() if key in ("action_mask", "_action_mask")}
        reset_obs, reset_info = self.env.reset(options={"reset_mask": done})
        if self.copies:
            reset_obs = copy.deepcopy(reset_obs)
        if self.masks == "method":
            masks = info["action_mask"].copy()
            masks[done] = self._method_masks()[done]
            info["action_mask"] = masks
        elif "action_mask" in info and "action_mask" in reset_info:
            masks = as_array(info["action_mask"]).copy()
            masks[done] = as_array(reset_info["action_mask"])[done]
            info["action_mask"] = masks
        info.update({"final_obs": final_obs, "_final_obs": done, "final_info": final_info})
        return reset_obs, reward, terminated, truncated, info


def as_mask_array(masks: Any, num_envs: int) -> np.ndarray:
    """Action masks as a vector env batches them (an array, or an object array of per-env lists) -> bool
    ``[N, n]``."""
    array = np.asarray(masks)
    if array.dtype == object:
        array = np.stack([np.asarray(mask) for mask in array])
    if array.ndim != 2 or array.shape[0] != num_envs:
        raise ValueError(f"action masks must be one flat bool array per sub-env ([{num_envs}, n] for the vector env), "
                         f"got shape {array.shape}")
    return array.astype(bool, copy=False)


def as_array(values: Any) -> np.ndarray:
    """A batched info value as one array (an object array of per-env arrays is stacked)."""
    array = np.asarray(values)
    return np.stack([np.asarray(value) for value in array]) if array.dtype == object else array


def _rows(space: gym.Space, batch: Any, rows: np.ndarray) -> list[Any]:
    """Single observations of ``rows`` of a batched observation (copies; dicts and tuples stay nested)."""
    if isinstance(space, spaces.Dict):
        parts = {key: _rows(sub, batch[key], rows) for key, sub in space.spaces.items()}
        return [{key: parts[key][index] for key in parts} for index in range(len(rows))]
    if isinstance(space, spaces.Tuple):
        parts = [_rows(sub, batch[index], rows) for index, sub in enumerate(space.spaces)]
        return [tuple(part[index] for part in parts) for index in range(len(rows))]
    return [np.array(batch[row]) for row in rows]


def is_env_instance(env: Any) -> bool:
    """Whether ``env`` is an already-built single env (not a class, a factory or an id)."""
    return isinstance(env, gym.Env)


def make_vec_env(
    env: EnvSpec | gym.Env | VectorEnv,
    num_envs: int = 1,
    *,
    vectorization: str = "sync",
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[Callable[[gym.Env], gym.Env]] | None = None,
    check_env: bool = False,
    batched: bool = True,
) -> VectorEnv:
    """Vectorizes ``env`` with same-step autoreset.

    Args:
        env: A registered id, an ``Env`` subclass or a factory returning an env; or an env instance (used as the one
            sub-env, so ``num_envs`` must be 1); or a ``VectorEnv`` the user built (any autoreset mode, see
            :class:`SameStepVectorEnv`; its own ``num_envs``).
        num_envs: Number of copies ``N``; observations come back as ``[N, *obs_shape]``.
        vectorization: ``"sync"`` (one process; best for cheap envs) or ``"async"``
            (one subprocess per env; best for envs that cost more than ~100 us a step).
        env_kwargs: Keyword arguments for ``gym.make`` or the factory.
        wrappers: Applied to each env, innermost first.
        check_env: Run the env checker (:mod:`rlcore.env_checker`) on a user's env first (gymnasium's and rlcore's own
            ids are not checked).
        batched: Use an id's batched implementation where it has one (below); False: always a vector env of
            single envs (planners read each sub-env's state).

    An id with a batched implementation gets it with ``"sync"`` and no ``wrappers``: rlcore's (:data:`BATCHED_ENVS`)
    for ``num_envs > 1``, gymnasium's classic-control ids (:data:`envs.classic_control.RULES`) with no
    ``env_kwargs`` for any ``num_envs``: the same trajectories, bit for bit, several times the env steps per second.
    Likewise the BipedalWalkers', LunarLanders' and CarRacing's sub-envs step rlcore's leaner ``step`` (any
    vectorization, wrappers and ``env_kwargs``: :data:`LEANER_STEP_ENVS`).

    The envs are not reset here; the :class:`Collector` resets them with their seeds. Each sub-env is wrapped in a
    :class:`ReplayableEnv` (exact resume) and, when it has an ``action_masks()`` method, an :class:`ActionMaskInfo`;
    :func:`gives_action_masks` says whether it gives masks at all.
    """
    if isinstance(env, VectorEnv):
        if vectorization != "sync":
            raise ValueError(f"vectorization={vectorization!r} cannot change how a vector env that is already built "
                             f"steps ({type(env.unwrapped).__name__}): build it that way (gym.make_vec(id, n, "
                             "vectorization_mode='async')) or leave vectorization unset")
        return _adopt_vector_env(env, num_envs, env_kwargs, wrappers, check_env)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    kwargs = dict(env_kwargs or {})
    plain = batched and isinstance(env, str) and vectorization == "sync" and not wrappers
    if plain and env in BATCHED_ENVS and num_envs > 1:
        make_env(env, **kwargs).close()  # fail here, in the caller's process, with a clear error
        return gym.make_vec(env, num_envs, vectorization_mode="vector_entry_point", **kwargs)
    if plain and not kwargs:
        from envs.classic_control import RULES, ClassicControlVectorEnv  # ~10 ms once; kernels compile at first use

        if env in RULES:
            return ClassicControlVectorEnv(env, num_envs)  # type: ignore[arg-type]
    build = _leaner_step_builder(env) if batched and isinstance(env, str) else None
    if build is None:
        build = functools.partial(make_env, env)
    instance = is_env_instance(env)
    if instance:
        _check_instance_use(env, num_envs, vectorization, kwargs)
        probe = env
    else:
        probe = build(**kwargs)  # fail here, in the caller's process, with a clear error
    try:
        for wrapper in wrappers or []:
            probe = wrapper(probe)
        masks = _probe(probe, env, check_env)
    finally:
        if not instance:
            probe.close()

    def thunk() -> gym.Env:
        built = env if instance else build(**kwargs)
        for wrapper in wrappers or []:
            built = wrapper(built)
        if masks == "method":
            built = ActionMaskInfo(built)
        return ReplayableEnv(built)

    caller = os.getpid()

    def in_sub_process() -> gym.Env:
        if os.getpid() != caller:  # gymnasium builds one in the caller's process too
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's: it checkpoints, then closes us
        return thunk()

    if vectorization == "sync":
        envs = SameStepSyncVectorEnv([thunk] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        envs = ErrorKeepingAsyncVectorEnv([in_sub_process] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    envs.rlcore_action_masks = masks is not None  # type: ignore[attr-defined]
    envs.rlcore_replayable = True  # type: ignore[attr-defined]
    return envs


def _leaner_step_builder(env_id: str) -> Callable[..., gym.Env] | None:
    """``gym.make`` of ``env_id``'s registered spec with rlcore's leaner class (:data:`LEANER_STEP_ENVS`), or None
    when it has none or that class does not reproduce the installed gymnasium's step."""
    entry_point = LEANER_STEP_ENVS.get(env_id)
    if entry_point is None or env_id not in gym.registry or not _leaner_step_applies(entry_point.split(":")[0]):
        return None
    return functools.partial(gym.make, dataclasses.replace(gym.spec(env_id), entry_point=entry_point))


@functools.cache
def _leaner_step_applies(module: str) -> bool:
    """Whether ``module``'s leaner step reproduces the installed gymnasium's (said once at INFO when it does not)."""
    try:
        refusal = importlib.import_module(module).faster_step_refusal()
    except ImportError as error:  # Box2D missing: building gymnasium's env then says so in gymnasium's words
        logger.debug("%s: %s", module, error)
        return False
    if refusal is not None:
        logger.info("%s steps gymnasium's own env: %s", module, refusal)
    return refusal is None


def _check_instance_use(env: gym.Env, num_envs: int, vectorization: str, env_kwargs: dict[str, Any]) -> None:
    name = type(env.unwrapped).__name__
    if num_envs != 1:
        raise ValueError(f"num_envs={num_envs} asks for {num_envs} copies of the env, but {name} was passed as an "
                         f"instance, which is one env: pass its class ({name}) or a factory (lambda: {name}(...)) to "
                         "build several")
    if vectorization != "sync":
        raise ValueError(f"vectorization={vectorization!r} steps each sub-env in its own process, but {name} was "
                         "passed as an instance of this process: pass its class or a factory, or vectorization='sync'")
    if env_kwargs:
        raise ValueError(f"env_kwargs={env_kwargs!r} are for building the env, but {name} was passed already built: "
                         "pass its class or a factory with the kwargs, or build the instance with them")


def _probe(env: gym.Env, spec: Any, check: bool) -> str | None:
    """Runs the env checker on a user's env (when ``check``) and returns where it gives action masks (see
    :func:`rlcore.env_checker.mask_source`)."""
    from rlcore.env_checker import check_env, mask_source

    if check and needs_check(spec):
        return check_env(env, env_label(spec)).action_masks
    if env.has_wrapper_attr("action_masks"):
        return mask_source(env, {}, f"the env {env_label(spec)}")
    _, info = env.reset(seed=0)
    return mask_source(env, info)


KNOWN_GOOD_ENTRY_POINTS = ("gymnasium.", "envs.", "ale_py", "shimmy")
"""Entry points of registered envs that the env checker leaves alone (gymnasium's own, rlcore's ``envs/``, Atari)."""


def needs_check(env: Any) -> bool:
    """Whether the env checker runs on ``env``: every class, factory, instance and vector env, and ids other than
    gymnasium's, rlcore's (``rlcore/...``, ``openspiel/...``) and Atari's."""
    if not isinstance(env, str):
        return True
    if env.startswith("openspiel/") or env not in gym.registry:
        return False
    entry_point = gym.registry[env].entry_point
    return not (isinstance(entry_point, str) and entry_point.startswith(KNOWN_GOOD_ENTRY_POINTS))


def env_label(env: Any) -> str:
    """How messages name an env: its id, class name or factory name."""
    if isinstance(env, str):
        return env
    if isinstance(env, VectorEnv):
        return f"{type(env).__name__}({env.spec.id if env.spec is not None else type(env.unwrapped).__name__})"
    if isinstance(env, gym.Env):
        return type(env.unwrapped).__name__
    return getattr(env, "__qualname__", None) or getattr(env, "__name__", None) or type(env).__name__


def callable_label(function: Any) -> str:
    """How a checkpoint records a wrapper (or another callable): its qualified name (a partial's function's)."""
    while isinstance(function, functools.partial):
        function = function.func
    return str(getattr(function, "__qualname__", None) or type(function).__qualname__)[:200]


def _adopt_vector_env(envs: VectorEnv, num_envs: int, env_kwargs: dict[str, Any] | None,
                      wrappers: list[Any] | None, check: bool) -> VectorEnv:
    """A user's vector env, checked and seen in same-step autoreset mode (:class:`SameStepVectorEnv`)."""
    if num_envs not in (1, envs.num_envs):
        raise ValueError(f"num_envs={num_envs}, but the vector env passed has {envs.num_envs} sub-envs; leave num_envs "
                         "unset (it is taken from the vector env) or build the vector env with as many")
    if env_kwargs:
        raise ValueError(f"env_kwargs={env_kwargs!r} cannot reach the sub-envs of a vector env that is already built: "
                         "pass them when you build it (gym.make_vec(id, num_envs, **kwargs))")
    if wrappers:
        raise ValueError("wrappers cannot be applied to the sub-envs of a vector env that is already built: pass them "
                         "when you build it (gym.make_vec(id, num_envs, wrappers=[...]))")
    if check:
        _check_vector_env(envs)
    # a natively vectorized env (e.g. gym.make_vec's CartPoleVectorEnv) has no sub-envs to call
    has_method = callable(getattr(envs, "call", None)) and all(envs.call("has_wrapper_attr", "action_masks"))
    masks: str | None = "method" if has_method else None
    if masks is None:
        _, info = envs.reset(seed=0)
        masks = "info" if "action_mask" in info else None
    adopted = SameStepVectorEnv(envs, masks)
    if adopted.mode is not AutoresetMode.SAME_STEP:
        _check_masked_reset(envs)
    adopted.rlcore_action_masks = masks is not None  # type: ignore[attr-defined]
    adopted.rlcore_replayable = False  # type: ignore[attr-defined]
    return adopted


def _check_masked_reset(envs: VectorEnv) -> None:
    """Refuses a next-step or disabled-autoreset vector env whose ``reset(options={"reset_mask": ...})`` resets
    other sub-envs than the mask's (gymnasium's natively vectorized ``CartPoleVectorEnv`` resets all of them):
    :class:`SameStepVectorEnv` would cut the running episodes of the others at every episode end, silently."""
    if envs.num_envs < 2:
        return
    before, _ = envs.reset(seed=0)
    mask = np.zeros(envs.num_envs, dtype=bool)
    mask[0] = True
    mode = envs.metadata.get("autoreset_mode")
    where = f"the vector env {env_label(envs)} ({getattr(mode, 'value', mode)} autoreset)"
    fix = ("build it with gym.make_vec(id, num_envs, vectorization_mode='sync' or 'async'), or pass the env id with "
           "num_envs=N (rlcore vectorizes it itself)")
    try:
        after, _ = envs.reset(options={"reset_mask": mask})
    except Exception as error:
        raise ValueError(f"{where} cannot reset some sub-envs only (reset(options={{'reset_mask': ...}}) failed: "
                         f"{error}); rlcore resets each ended episode at once: {fix}") from error
    from rlcore.env_checker import _same

    kept = np.flatnonzero(~mask)
    space = envs.single_observation_space
    if not all(_same(a, b) for a, b in zip(_rows(space, before, kept), _rows(space, after, kept), strict=True)):
        raise ValueError(f"{where} ignores reset(options={{'reset_mask': ...}}) and resets every sub-env: each episode "
                         f"end would cut the others' episodes; {fix}")


def _check_vector_env(envs: VectorEnv) -> None:
    """The env checker's rules for a vector env: the batched spaces, and reset returning ``(obs, info)`` inside them."""
    from rlcore.env_checker import EnvCheckError, _check_observation

    where = f"the vector env {env_label(envs)}"
    for which in ("single_observation_space", "single_action_space"):
        if not isinstance(getattr(envs, which, None), gym.Space):
            raise EnvCheckError(f"{where} has no {which}; build it with gymnasium's SyncVectorEnv, AsyncVectorEnv or "
                                "gym.make_vec")
    env_fns = getattr(envs.unwrapped, "env_fns", None)
    if env_fns:  # Sync/AsyncVectorEnv cast what their sub-envs return into their buffers: check one sub-env itself
        from rlcore.env_checker import check_env

        sub_env = env_fns[0]()
        try:
            check_env(sub_env, f"{env_label(sub_env)} (sub-env 0 of the vector env {type(envs.unwrapped).__name__})")
        finally:
            sub_env.close()
    result = envs.reset(seed=0)
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], dict):
        raise EnvCheckError(f"{where}'s reset() must return (obs, info) with info a dict")
    for index, single in enumerate(_rows(envs.single_observation_space, result[0], np.arange(envs.num_envs))):
        _check_observation(single, envs.single_observation_space, f"reset() (sub-env {index})", where)


def gives_action_masks(envs: VectorEnv) -> bool:
    """Whether a vector env from :func:`make_vec_env` gives action masks (in ``info["action_mask"]``)."""
    return bool(getattr(envs, "rlcore_action_masks", False))


def can_replay(envs: VectorEnv) -> bool:
    """Whether a vector env's sub-envs are :class:`ReplayableEnv` (a user's own vector env's are not: a resumed run
    on it starts fresh episodes)."""
    return bool(getattr(envs, "rlcore_replayable", True))


class EnvCopies:
    """A factory of fresh copies of an env instance (``copy.deepcopy`` of a snapshot taken when it was made), so
    evaluation can build as many envs as it needs "the same way" as training's one instance."""

    def __init__(self, env: gym.Env) -> None:
        try:
            self.template = copy.deepcopy(env)
        except Exception as error:  # noqa: BLE001  (whatever the env's state refuses)
            raise ValueError(f"evaluation builds fresh copies of the env, but the instance of "
                             f"{type(env.unwrapped).__name__} cannot be copied ({type(error).__name__}: {error}); pass "
                             "its class or a factory instead, or eval_freq=0") from error
        self.__name__ = type(env.unwrapped).__name__

    def __call__(self) -> gym.Env:
        return copy.deepcopy(self.template)


def fresh_env_spec(env: Any) -> Any:
    """What builds fresh envs like ``env`` (for evaluation): an id, class or factory as it is; a factory of copies for
    an instance; for a user's vector env, the factory it was built from (``env_fns[0]`` of gymnasium's Sync and
    Async vector envs), else its spec's id, kwargs and wrappers (``gym.make_vec``).

    Raises:
        ValueError: An instance that cannot be copied, or a vector env built neither way.
    """
    if isinstance(env, VectorEnv):
        _refuse_vector_wrappers(env)
        inner = env.unwrapped
        env_fns = getattr(inner, "env_fns", None)
        if env_fns:
            return env_fns[0]
        spec = inner.spec
        if spec is not None:
            return functools.partial(_make_from_vector_spec, spec)
        raise ValueError(f"evaluation builds fresh envs like the training ones, but the vector env {env_label(env)} "
                         "has neither env_fns nor a spec to build them from; pass eval_freq=0, or build it with "
                         "gym.make_vec, SyncVectorEnv or AsyncVectorEnv")
    if is_env_instance(env):
        return EnvCopies(env)
    return env


def _refuse_vector_wrappers(env: VectorEnv) -> None:
    """Fresh envs come from the vector env's sub-env factory, below its vector wrappers: one that changes what the
    agent sees or earns (a reward scale, an observation transform) would be left out of evaluation, so it is refused
    by name (RecordEpisodeStatistics, which only adds to info, passes)."""
    layers, layer = [], env
    while isinstance(layer, VectorWrapper):
        if not isinstance(layer, gym.wrappers.vector.RecordEpisodeStatistics):
            layers.append(type(layer).__name__)
        layer = layer.env
    if layers:
        raise ValueError(f"evaluation builds fresh envs from the vector env's sub-env factory, without its vector "
                         f"wrappers {layers}, so it would score another task; apply them to each env instead "
                         "(wrappers=[...], or inside the factory), or pass eval_freq=0 (and evaluate yourself)")


def _make_from_vector_spec(spec: Any) -> gym.Env:
    kwargs = {key: value for key, value in spec.kwargs.items()
              if key not in ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers")}
    built = gym.make(spec.id, **kwargs)
    for wrapper in spec.kwargs.get("wrappers") or []:
        built = wrapper(built)
    return built


def get_replay_states(envs: VectorEnv) -> list[dict[str, Any]] | None:
    """Each sub-env's :meth:`ReplayableEnv.replay_state` (a batched env's own :meth:`StatefulVectorEnv.replay_states`;
    None for a vector env whose sub-envs cannot replay)."""
    if not can_replay(envs):
        return None
    if isinstance(envs, StatefulVectorEnv):
        return envs.replay_states()
    if isinstance(envs, SyncVectorEnv):
        return [sub_env.replay_state() for sub_env in envs.envs]
    return list(envs.call("replay_state"))


def restore_replay_states(envs: VectorEnv, states: list[dict[str, Any]]) -> Any:
    """Restores each sub-env from :func:`get_replay_states`; returns the batched observation ``[N, ...]`` (a dict of
    them, by leaf path, for Dict and Tuple observations)."""
    if len(states) != envs.num_envs:
        raise ValueError(
            f"the checkpoint holds {len(states)} env states but the run has num_envs={envs.num_envs}; "
            "resume with the num_envs the run was started with"
        )
    if isinstance(envs, StatefulVectorEnv):
        return envs.restore_replay_states(states)
    if isinstance(envs, SyncVectorEnv):
        observations = [sub_env.restore_replay_state(state) for sub_env, state in zip(envs.envs, states)]
    else:
        observations = _call_each(envs, "restore_replay_state", states)  # type: ignore[arg-type]
    return stack(observations)


def _call_each(envs: AsyncVectorEnv, method: str, per_env_args: list[Any]) -> list[Any]:
    """Calls ``method`` on each async sub-env with its own argument."""
    for pipe, argument in zip(envs.parent_pipes, per_env_args):
        pipe.send(("_call", (method, (argument,), {})))
    results, successes = zip(*[pipe.recv() for pipe in envs.parent_pipes])
    envs._raise_if_errors(successes)
    return list(results)


register_rlcore_envs()
