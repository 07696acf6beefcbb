"""The env checker (rlcore/env_checker.py): each finding is one line that names the bad value and the fix."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import rlcore
from rlcore.env import make_vec_env
from rlcore.env_checker import EnvCheckError


class GoodEnv(gym.Env):
    """A correct env with a Box observation; each broken env below changes one thing."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def observe(self) -> Any:
        return self.np_random.uniform(-1, 1, 3).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self._t = 0
        return self.observe(), {}

    def step(self, action: Any) -> Any:
        self._t += 1
        return self.observe(), 1.0, False, self._t >= 10, {}


def broken(name: str, base: type = GoodEnv, **members: Any) -> type:
    return type(name, (base,), members)


class DictEnv(GoodEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({"x": spaces.Box(-1.0, 1.0, (3,), np.float32), "k": spaces.Discrete(3)})

    def observe(self) -> Any:
        return {"x": super().observe(), "k": np.int64(1)}


class MaskedEnv(GoodEnv):
    def action_masks(self) -> Any:
        return np.array([True, False])


def no_space_init(self: Any) -> None:
    GoodEnv.__init__(self)
    self.observation_space = (3,)


def old_reset(self: Any) -> Any:
    return np.zeros(3, np.float32)


def unseeded_reset(self: Any, *, seed: int | None = None, options: dict | None = None) -> Any:
    return np.random.default_rng().uniform(-1, 1, 3).astype(np.float32), {}


FINDINGS: list[tuple[type, str]] = [
    (broken("NoSpace", __init__=no_space_init),
     r"has observation_space=\(3,\), not a gymnasium Space: set self\.observation_space in __init__"),
    (broken("OldResetSignature", reset=old_reset),
     r"reset\(\) takes no seed or options argument; gymnasium's reset is def reset\(self, \*, seed=None"),
    (broken("ResetObsOnly", reset=lambda self, *, seed=None, options=None: np.zeros(3, np.float32)),
     r"reset\(\) returned a ndarray; gymnasium's reset returns \(obs, info\): return obs, \{\}"),
    (broken("ResetInfoNotDict", reset=lambda self, *, seed=None, options=None: (np.zeros(3, np.float32), None)),
     r"reset\(\) returned info of type NoneType; return \(obs, info\) with info a dict"),
    (broken("Unseeded", reset=unseeded_reset),
     r"reset\(seed=123\) gave different observations twice: its randomness ignores the seed; call "
     r"super\(\)\.reset\(seed=seed\)"),
    (broken("OldStep", step=lambda self, action: (self.observe(), 1.0, False, {})),
     r"step\(\) returned 4 values; gymnasium's step returns 5: \(obs, reward, terminated, truncated, info\)"),
    (broken("RewardArray", step=lambda self, action: (self.observe(), np.ones(1), False, False, {})),
     r"step\(\) returned a reward of type ndarray \(array\(\[1\.\]\)\); return a float: reward = float"),
    (broken("TerminatedInt", step=lambda self, action: (self.observe(), 1.0, 0, False, {})),
     r"step\(\) returned terminated=0 of type int; return a bool: terminated = bool\(\.\.\.\)"),
    (broken("StepInfoList", step=lambda self, action: (self.observe(), 1.0, False, False, [])),
     r"step\(\) returned info of type list; return a dict"),
    (broken("WrongDtype", observe=lambda self: np.zeros(3, np.float64)),
     r"reset\(\) observation has dtype float64, but observation_space is float32: return obs\.astype\(np\.float32\)"),
    (broken("WrongShape", observe=lambda self: np.zeros(4, np.float32)),
     r"reset\(\) observation has shape \(4,\), but observation_space has \(3,\): return arrays of the space's shape"),
    (broken("NotArray", observe=lambda self: [0.0, 0.0, 0.0]),
     r"reset\(\) observation is a list, not a numpy array; return np\.asarray\(obs, dtype=np\.float32\)"),
    (broken("OutOfBounds", observe=lambda self: np.array([0.0, 2.0, 0.0], np.float32)),
     r"reset\(\) observation is outside observation_space's bounds: at index \(1,\) it is 2\.0, outside "
     r"\[-1\.0, 1\.0\]; clip the observation, or widen the Box's low/high"),
    (broken("NaN", observe=lambda self: np.array([0.0, np.nan, 0.0], np.float32)),
     r"reset\(\) observation holds NaN or inf: fix the env's dynamics"),
    (broken("DictNotDict", DictEnv, observe=lambda self: np.zeros(3, np.float32)),
     r"reset\(\) observation is a ndarray, but observation_space is a Dict: return a dict with the keys \['k', 'x'\]"),
    (broken("DictMissingKey", DictEnv, observe=lambda self: {"x": np.zeros(3, np.float32)}),
     r"reset\(\) observation has the keys \['x'\], observation_space has \['k', 'x'\] \(missing \['k'\]\): return "
     r"exactly the space's keys"),
    (broken("DiscreteOutside", DictEnv, observe=lambda self: {"x": np.zeros(3, np.float32), "k": np.int64(7)}),
     r"reset\(\) observation 'k' is 7, outside Discrete\(3\): return one of 0\.\.2, or enlarge the space"),
    (broken("DiscreteFloat", DictEnv, observe=lambda self: {"x": np.zeros(3, np.float32), "k": 1.0}),
     r"reset\(\) observation 'k' is float 1\.0, but observation_space is Discrete\(3\): return an int"),
    (broken("MaskWrongShape", MaskedEnv, action_masks=lambda self: np.array([True, False, True])),
     r"action_masks\(\) after reset\(\) has shape \(3,\); it must hold one bool per action, shape \(2,\)"),
    (broken("MaskFloats", MaskedEnv, action_masks=lambda self: np.array([0.5, 1.0])),
     r"action_masks\(\) after reset\(\) has dtype float64; return bools \(True = legal\): np\.array\(mask, "
     r"dtype=bool\)"),
    (broken("MaskNoneLegal", MaskedEnv, action_masks=lambda self: np.array([False, False])),
     r"action_masks\(\) after reset\(\) allows no action; an observation the agent acts on needs at least one "
     r"legal action"),
]


@pytest.mark.parametrize(("env_class", "message"), FINDINGS, ids=[env.__name__ for env, _ in FINDINGS])
def test_each_finding_is_one_line_naming_the_value_and_the_fix(env_class: type, message: str) -> None:
    with pytest.raises(EnvCheckError, match=message) as raised:
        make_vec_env(env_class, 1, check_env=True)
    text = str(raised.value)
    assert "\n" not in text and text.startswith(f"the env {env_class.__qualname__}")


class InfoMaskOnlyAtReset(GoodEnv):
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        obs, info = super().reset(seed=seed, options=options)
        return obs, {"action_mask": np.array([True, True])}


class MaskedBoxActions(MaskedEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize(("env_class", "message"), [
    (InfoMaskOnlyAtReset, r"info after step\(\) has no 'action_mask', though reset\(\) gave one; put the mask in the "
                          r"info of every reset and step"),
    (MaskedBoxActions, r"gives action masks but its action space is Box\(.*\); masks need a Discrete or "
                       r"MultiDiscrete action space"),
])
def test_action_mask_findings(env_class: type, message: str) -> None:
    with pytest.raises(EnvCheckError, match=message):
        make_vec_env(env_class, 1, check_env=True)


class MaskAttribute(GoodEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_masks = np.array([True, False])  # an attribute where a method belongs


@pytest.mark.parametrize("check", [True, False])
def test_an_action_masks_attribute_that_is_not_a_method_is_named(check: bool) -> None:
    """Checked or not, the same finding (unchecked, the first evaluation used to call the array)."""
    with pytest.raises(EnvCheckError, match=r"the env MaskAttribute's action_masks is a ndarray, not a method: rlcore "
                                            r"reads action masks from an action_masks\(\) method"):
        make_vec_env(MaskAttribute, 1, check_env=check)


def test_training_runs_the_checker_on_a_users_env_and_check_env_false_skips_it() -> None:
    wrong_dtype = FINDINGS[9][0]
    with pytest.raises(EnvCheckError, match=r"has dtype float64, but observation_space is float32"):
        rlcore.train("ppo", wrong_dtype, total_env_steps=64, n_steps=32, batch_size=32, log_dir=None)
    agent = rlcore.train("ppo", broken("Unseeded", reset=unseeded_reset), total_env_steps=64, n_steps=32,
                         batch_size=32, log_dir=None, progress_bar=False, eval_freq=0, check_env=False)
    assert agent.algo is not None


class TextObservations(gym.Env):
    observation_space = spaces.Text(5)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        return "abc", {}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        return "abc", 0.0, True, False, {}


def test_non_numeric_observations_reach_the_space_check_not_a_numpy_error() -> None:
    """The checker's seeded-reset comparison crashed on strings (numpy's isnan of a str array)."""
    from rlcore.algos.base import UnsupportedSpaceError

    with pytest.raises(UnsupportedSpaceError, match=r"ppo cannot handle the observation space Text"):
        rlcore.train("ppo", TextObservations, total_env_steps=64, log_dir=None)


def test_correct_envs_pass_the_checker_and_their_masks_are_found() -> None:
    for env_class in (GoodEnv, DictEnv):
        make_vec_env(env_class, 1, check_env=True).close()
    envs = make_vec_env(MaskedEnv, 2, check_env=True)
    _, info = envs.reset(seed=0)
    assert np.array_equal(info["action_mask"], [[True, False], [True, False]])


def test_a_user_vector_env_is_checked_too() -> None:
    envs = gym.vector.SyncVectorEnv([broken("WrongDtype", observe=lambda self: np.zeros(3, np.float64))] * 2)
    with pytest.raises(EnvCheckError, match=r"the env WrongDtype \(sub-env 0 of the vector env SyncVectorEnv\)'s "
                                            r"reset\(\) observation has dtype float64, but observation_space"):
        make_vec_env(envs, check_env=True)
