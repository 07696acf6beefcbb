"""The leaner Box2D envs (envs/bipedal_walker.py, envs/lunar_lander.py, envs/car_racing.py) step aside for another
gymnasium."""

import importlib

import pytest

pytest.importorskip("Box2D")

import rlcore.env  # noqa: E402
from rlcore.env import LEANER_STEP_ENVS, make_vec_env  # noqa: E402


@pytest.mark.parametrize("env_id", ["BipedalWalker-v3", "LunarLanderContinuous-v3", "CarRacing-v3"])
def test_another_gymnasium_step_falls_back_to_gymnasiums_env(env_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module_name, class_name = LEANER_STEP_ENVS[env_id].split(":")
    leaner = importlib.import_module(module_name)
    leaner_class = getattr(leaner, class_name)
    assert leaner.faster_step_refusal() is None
    assert all(type(env.unwrapped) is leaner_class for env in make_vec_env(env_id, 2).envs)
    name = next(iter(leaner.CHECKED_AGAINST))
    monkeypatch.setitem(leaner.CHECKED_AGAINST, name, "0" * 16)
    rlcore.env._leaner_step_applies.cache_clear()
    try:
        assert "is not the code its kernel was checked against" in leaner.faster_step_refusal()
        envs = make_vec_env(env_id, 2)
        assert all(type(env.unwrapped) is not leaner_class for env in envs.envs)
    finally:
        rlcore.env._leaner_step_applies.cache_clear()
