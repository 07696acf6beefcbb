"""The env checker: gymnasium's API rules, checked on a user's env before rlcore trains on it.

:func:`check_env` runs the checks of gymnasium's ``gymnasium.utils.env_checker.check_env`` that decide whether rlcore
can train on an env (the spaces, ``reset`` and ``step`` returning what the API says, every observation inside its
space with its dtype, the reward and flags of the right types, ``reset(seed=...)`` reproducible, action masks of the
right shape) and turns each finding into one :class:`EnvCheckError` line that names the bad value and says how to fix
it. rlcore runs it once on the first use of a user's env (a class, a factory, an instance, a vector env or an id that
is not gymnasium's or rlcore's own); ``check_env=False`` (a :class:`~rlcore.TrainConfig` field) skips it.

It also finds out whether the env gives action masks (:class:`EnvFacts`): an ``action_masks()`` method, as
sb3-contrib's ``MaskablePPO`` expects, or ``info["action_mask"]``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlcore.spaces import describe_space

CHECK_SEED = 123
"""The seed the checker resets with (twice, to check that a seed reproduces the first observation)."""


class EnvCheckError(ValueError):
    """An env does not follow gymnasium's API in a way rlcore cannot train on; the message says how to fix it."""


@dataclass(frozen=True)
class EnvFacts:
    """What the checker learned about an env."""

    action_masks: str | None
    """``"method"`` (the env has ``action_masks()``), ``"info"`` (``info["action_mask"]``) or None."""


def mask_source(env: gym.Env, info: dict[str, Any], where: str = "the env") -> str | None:
    """Where ``env`` gives action masks: ``"method"``, ``"info"`` (``info`` of a reset holds one) or None.

    Raises:
        EnvCheckError: ``action_masks`` is an attribute but not a method.
    """
    if env.has_wrapper_attr("action_masks"):
        masks = env.get_wrapper_attr("action_masks")
        if not callable(masks):
            raise EnvCheckError(f"{where}'s action_masks is a {type(masks).__name__}, not a method: rlcore reads "
                                "action masks from an action_masks() method or from info['action_mask']; make it a "
                                "method (or rename the attribute)")
        return "method"
    return "info" if isinstance(info, dict) and "action_mask" in info else None


def check_env(env: gym.Env, name: str) -> EnvFacts:
    """Checks ``env`` (reset with :data:`CHECK_SEED` twice and stepped once; it is left mid-episode).

    Args:
        env: The env (not vectorized).
        name: How errors name it (its class, id or factory).

    Raises:
        EnvCheckError: The first finding, as one line with the fix.
    """
    where = f"the env {name}"
    for which in ("observation_space", "action_space"):
        space = getattr(env, which, None)
        if not isinstance(space, gym.Space):
            raise EnvCheckError(f"{where} has {which}={space!r}, not a gymnasium Space: set self.{which} in __init__ "
                                "(e.g. gymnasium.spaces.Box(low, high, shape, dtype) or Discrete(n))")
    _check_reset_signature(env, where)
    obs, info = _checked_reset(env, where)
    again, _ = _checked_reset(env, where)
    if not _same(obs, again):
        raise EnvCheckError(f"{where}'s reset(seed={CHECK_SEED}) gave different observations twice: its randomness "
                            "ignores the seed; call super().reset(seed=seed) first in reset() and draw every random "
                            "number from self.np_random (rlcore seeds and resumes envs through it); if a wrapper "
                            "keeps state across resets (e.g. NormalizeObservation's running statistics), the env is "
                            "fine: pass check_env=False")
    source = mask_source(env, info, where)
    mask = _checked_mask(env, source, info, "reset()", where)
    action = _legal_action(env.action_space, mask)
    result = env.step(action)
    if not isinstance(result, tuple) or len(result) != 5:
        count = len(result) if isinstance(result, tuple) else type(result).__name__
        raise EnvCheckError(f"{where}'s step() returned {count} values; gymnasium's step returns 5: (obs, reward, "
                            "terminated, truncated, info) (the old gym API's (obs, reward, done, info) splits done "
                            "into terminated (the episode ended) and truncated (a time limit cut it))")
    obs, reward, terminated, truncated, info = result
    _check_observation(obs, env.observation_space, "step()", where)
    if not (isinstance(reward, int | float | np.integer | np.floating) and not isinstance(reward, bool | np.bool_)
            or isinstance(reward, np.ndarray) and reward.shape == () and reward.dtype.kind in "iuf"):
        raise EnvCheckError(f"{where}'s step() returned a reward of type {type(reward).__name__} ({_short(reward)}); "
                            "return a float: reward = float(...)")
    for flag, value in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(value, bool | np.bool_):
            raise EnvCheckError(f"{where}'s step() returned {flag}={_short(value)} of type {type(value).__name__}; "
                                f"return a bool: {flag} = bool(...)")
    if not isinstance(info, dict):
        raise EnvCheckError(f"{where}'s step() returned info of type {type(info).__name__}; return a dict "
                            "(e.g. {})")
    if not (terminated or truncated):
        _checked_mask(env, source, info, "step()", where)
    return EnvFacts(action_masks=source)


def _check_reset_signature(env: gym.Env, where: str) -> None:
    try:
        parameters = inspect.signature(env.unwrapped.reset).parameters
    except (TypeError, ValueError):  # a builtin or C extension: let the call decide
        return
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    missing = [name for name in ("seed", "options") if name not in parameters and not takes_any]
    if missing:
        raise EnvCheckError(f"{where}'s reset() takes no {' or '.join(missing)} argument; gymnasium's reset is "
                            "def reset(self, *, seed=None, options=None): super().reset(seed=seed); ...; "
                            "return obs, info")


def _checked_reset(env: gym.Env, where: str) -> tuple[Any, dict[str, Any]]:
    result = env.reset(seed=CHECK_SEED)
    if not isinstance(result, tuple) or len(result) != 2:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
        raise EnvCheckError(f"{where}'s reset() returned {got}; gymnasium's reset returns (obs, info): "
                            "return obs, {}")
    obs, info = result
    if not isinstance(info, dict):
        raise EnvCheckError(f"{where}'s reset() returned info of type {type(info).__name__}; return (obs, info) "
                            "with info a dict (e.g. {})")
    _check_observation(obs, env.observation_space, "reset()", where)
    return obs, info


def _check_observation(obs: Any, space: gym.Space, method: str, where: str, path: str = "") -> None:
    """That ``obs`` is an element of ``space`` with its exact dtype and shape (the leaves of a Dict or Tuple too)."""
    what = f"{where}'s {method} observation{f' {path!r}' if path else ''}"
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, dict):
            raise EnvCheckError(f"{what} is a {type(obs).__name__}, but observation_space is a Dict: return a dict "
                                f"with the keys {list(space.spaces)}")
        missing, extra = sorted(set(space.spaces) - set(obs)), sorted(set(obs) - set(space.spaces))
        if missing or extra:
            raise EnvCheckError(f"{what} has the keys {sorted(obs)}, observation_space has {list(space.spaces)}"
                                f"{f' (missing {missing})' if missing else ''}{f' (extra {extra})' if extra else ''}: "
                                "return exactly the space's keys")
        for key, sub in space.spaces.items():
            _check_observation(obs[key], sub, method, where, f"{path}/{key}" if path else key)
        return
    if isinstance(space, spaces.Tuple):
        if not isinstance(obs, tuple) or len(obs) != len(space.spaces):
            raise EnvCheckError(f"{what} is {type(obs).__name__} {_short(obs)}, but observation_space is a Tuple of "
                                f"{len(space.spaces)}: return a tuple of that length")
        for index, sub in enumerate(space.spaces):
            _check_observation(obs[index], sub, method, where, f"{path}/{index}" if path else str(index))
        return
    if isinstance(space, spaces.Discrete):
        if not (isinstance(obs, int | np.integer) and not isinstance(obs, bool)
                or isinstance(obs, np.ndarray) and obs.shape == () and obs.dtype.kind in "iu"):
            raise EnvCheckError(f"{what} is {type(obs).__name__} {_short(obs)}, but observation_space is "
                                f"{describe_space(space)}: return an int (e.g. np.int64(state))")
        if not space.contains(obs):
            raise EnvCheckError(f"{what} is {int(obs)}, outside {describe_space(space)}: return one of "
                                f"{int(space.start)}..{int(space.start) + int(space.n) - 1}, or enlarge the space")
        return
    if isinstance(space, spaces.Box):
        _check_box_observation(obs, space, what)
        return
    if not space.contains(obs):
        raise EnvCheckError(f"{what} {_short(obs)} is not in its observation_space {describe_space(space)}")


def _check_box_observation(obs: Any, space: spaces.Box, what: str) -> None:
    if not isinstance(obs, np.ndarray):
        raise EnvCheckError(f"{what} is a {type(obs).__name__}, not a numpy array; return "
                            f"np.asarray(obs, dtype=np.{space.dtype})")
    if obs.shape != space.shape:
        raise EnvCheckError(f"{what} has shape {obs.shape}, but observation_space has {space.shape}: return arrays of "
                            "the space's shape (or declare the shape you return)")
    if obs.dtype != space.dtype:
        raise EnvCheckError(f"{what} has dtype {obs.dtype}, but observation_space is {space.dtype}: return "
                            f"obs.astype(np.{space.dtype}) (or declare dtype=np.{obs.dtype} in the Box)")
    if obs.dtype.kind == "f" and not np.isfinite(obs).all():
        raise EnvCheckError(f"{what} holds NaN or inf: fix the env's dynamics")
    if not space.contains(obs):
        low = np.broadcast_to(space.low, space.shape)
        high = np.broadcast_to(space.high, space.shape)
        outside = np.argwhere((obs < low) | (obs > high))
        index = tuple(int(i) for i in outside[0]) if len(outside) else ()
        detail = (f"at index {index} it is {obs[index]}, outside [{low[index]}, {high[index]}]" if len(outside)
                  else "it is outside the space")
        raise EnvCheckError(f"{what} is outside observation_space's bounds: {detail}; clip the observation, or "
                            "widen the Box's low/high")


def _checked_mask(env: gym.Env, source: str | None, info: dict[str, Any], method: str, where: str) -> np.ndarray | None:
    """The action mask after ``method`` (validated), or None when the env gives none."""
    if source is None:
        return None
    space = env.action_space
    if not isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        raise EnvCheckError(f"{where} gives action masks but its action space is {describe_space(space)}; masks "
                            "need a Discrete or MultiDiscrete action space")
    if source == "method":
        raw, origin = env.get_wrapper_attr("action_masks")(), "action_masks()"
    else:
        if "action_mask" not in info:
            raise EnvCheckError(f"{where}'s info after {method} has no 'action_mask', though reset() gave one; "
                                "put the mask in the info of every reset and step")
        raw, origin = info["action_mask"], "info['action_mask']"
    size = int(space.n) if isinstance(space, spaces.Discrete) else int(np.sum(space.nvec))
    try:
        mask = np.asarray(raw)
    except (TypeError, ValueError) as error:
        raise EnvCheckError(f"{where}'s {origin} after {method} is not an array ({error}); return a bool array of "
                            f"{size} entries") from error
    if mask.shape != (size,):
        raise EnvCheckError(f"{where}'s {origin} after {method} has shape {mask.shape}; it must hold one bool per "
                            f"action, shape ({size},)"
                            + (" (the sub-spaces' masks concatenated)" if isinstance(space, spaces.MultiDiscrete)
                               else ""))
    if mask.dtype != np.bool_ and not (mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all()):
        raise EnvCheckError(f"{where}'s {origin} after {method} has dtype {mask.dtype}; return bools (True = legal): "
                            "np.array(mask, dtype=bool)")
    mask = mask.astype(bool)
    if not mask.any():
        raise EnvCheckError(f"{where}'s {origin} after {method} allows no action; an observation the agent acts on "
                            "needs at least one legal action")
    return mask


def _legal_action(space: gym.Space, mask: np.ndarray | None) -> Any:
    """A random action (a legal one when ``mask`` is given), drawn with a seeded space."""
    space.seed(CHECK_SEED)
    if mask is None:
        return space.sample()
    if isinstance(space, spaces.Discrete):
        return space.sample(mask=mask.astype(np.int8))
    masks = np.split(mask.astype(np.int8), np.cumsum(space.nvec)[:-1])  # type: ignore[attr-defined]
    return space.sample(mask=tuple(masks))


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, dict):
        return isinstance(second, dict) and first.keys() == second.keys() and all(
            _same(first[key], second[key]) for key in first)
    if isinstance(first, tuple):
        return isinstance(second, tuple) and len(first) == len(second) and all(map(_same, first, second))
    a, b = np.asarray(first), np.asarray(second)
    numeric = a.dtype.kind in "biufc" and b.dtype.kind in "biufc"  # NaN-aware equality needs numbers (not Text)
    return bool(np.array_equal(a, b, equal_nan=numeric))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["CHECK_SEED", "EnvCheckError", "EnvFacts", "check_env", "mask_source"]
