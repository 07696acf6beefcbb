"""benchmarks/zoo_suite.py's SAC and TD3 tasks: rl-zoo's settings (hyperparams/{sac,td3}.yml) reach rlcore's config and
SB3's model with the zoo's values (and equal defaults where the zoo is silent), and the time split covers their runs.

The SB3 side is checked on real SB3 models built from :func:`zoo_suite.sb3_settings`, the rlcore side on the config
objects :func:`zoo_suite.rlcore_config` builds (which validate names and values)."""

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlcore.algos.base import get_algo_class
from rlcore.algos.onpolicy_config import scheduled

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import zoo_suite  # noqa: E402

OFF_POLICY = [task for task in zoo_suite.TASKS if task.algo in ("sac", "td3")]
SHARED = ("buffer_size", "learning_starts", "batch_size", "tau", "gamma", "gradient_steps")
"""Settings both libraries name alike (compared whether the zoo sets them or not: the defaults must agree too)."""
NOT_SETTINGS = ("n_timesteps", "policy", "n_envs", "use_sde", "policy_kwargs", "noise_type", "noise_std",
                "learning_rate", "train_freq")
"""Zoo keys checked separately (or not settings of the algorithm)."""


def sb3_model(task: zoo_suite.Task) -> Any:
    """SB3's model as the suite builds it (on one env, no training)."""
    import importlib

    from stable_baselines3.common.env_util import make_vec_env

    module, name = zoo_suite.ALGORITHMS[task.algo].sb3_class.split(":")
    model_class = getattr(importlib.import_module(module), name)
    return model_class("MlpPolicy", make_vec_env(task.env, n_envs=1, seed=0), device="cpu", seed=0, verbose=0,
                       **zoo_suite.sb3_settings(task, 1_000))


def test_every_zoo_sac_and_td3_env_that_runs_here_is_a_task() -> None:
    envs = ("MountainCarContinuous-v0", "Pendulum-v1", "LunarLanderContinuous-v3", "BipedalWalker-v3",
            "BipedalWalkerHardcore-v3", "HalfCheetah-v5", "Ant-v5", "Hopper-v5", "Walker2d-v5", "Humanoid-v5",
            "Swimmer-v5")
    assert sorted(task.name for task in OFF_POLICY) == sorted(f"{algo}/{env}" for algo in ("sac", "td3")
                                                               for env in envs)
    assert {name: (zoo_suite.ALGORITHMS[name].kind, zoo_suite.ALGORITHMS[name].sb3_class) for name in ("sac", "td3")
            } == {"sac": ("replay", "stable_baselines3:SAC"), "td3": ("replay", "stable_baselines3:TD3")}
    assert {"sac/Pendulum-v1", "td3/Pendulum-v1"} <= set(zoo_suite.QUICK)
    halfcheetah = next(task for task in OFF_POLICY if task.name == "td3/HalfCheetah-v5")
    assert any("HalfCheetah-v4" in note for note in halfcheetah.deviations)
    assert any("HalfCheetah-v3" in note for note in halfcheetah.deviations)


@pytest.mark.bench_extra
@pytest.mark.parametrize("task", OFF_POLICY, ids=lambda task: task.name)
def test_the_zoos_sac_and_td3_settings_reach_both_libraries(task: zoo_suite.Task) -> None:
    pytest.importorskip("stable_baselines3")  # the peer, installed by the bench extra
    zoo = task.zoo
    config = get_algo_class(task.algo).config_class(**zoo_suite.rlcore_config(task))
    model = sb3_model(task)

    for key in SHARED:  # equal in both, and the zoo's value where it sets one
        assert getattr(config, key) == getattr(model, key), key
        if key in zoo:
            assert getattr(config, key) == zoo[key], key
    for key, value in zoo.items():
        if key not in NOT_SETTINGS and key not in SHARED:  # ent_coef
            assert getattr(config, key) == value == getattr(model, key), key
    assert config.train_freq == model.train_freq.frequency == zoo.get("train_freq", 1)
    assert model.train_freq.unit.value == "step"

    zoo_rate = str(zoo.get("learning_rate", config.learning_rate))
    start = float(zoo_rate.removeprefix("lin_"))
    assert config.learning_rate == pytest.approx(model.lr_schedule(1.0)) == pytest.approx(start)
    assert config.lr_schedule == ("linear" if zoo_rate.startswith("lin_") else "constant")
    for progress in (0.25, 0.9):  # SB3's argument is the progress remaining
        assert scheduled(config.learning_rate, config.lr_schedule, progress) == pytest.approx(
            model.lr_schedule(1.0 - progress))

    arch = zoo.get("policy_kwargs", {}).get("net_arch")
    assert list(config.net_arch) == model.policy.actor.net_arch == list(arch or config.net_arch)
    assert list(config.q_arch) == model.policy.critic_kwargs["net_arch"] == list(arch or config.net_arch)

    noise = model.action_noise
    if "noise_type" in zoo:
        dim = int(np.prod(model.action_space.shape))
        assert config.action_noise == zoo["noise_type"]
        assert config.noise_std == zoo["noise_std"]
        assert type(noise).__name__ == zoo_suite.NOISE_CLASSES[zoo["noise_type"]]
        np.testing.assert_array_equal(noise._sigma, np.full(dim, zoo["noise_std"]))
        np.testing.assert_array_equal(noise._mu, np.zeros(dim))
    else:
        assert config.action_noise is None and noise is None

    assert model.use_sde == getattr(config, "use_sde", False) == bool(zoo.get("use_sde"))  # TD3 has none
    if model.use_sde:  # gSDE reaches both, with its initial noise scale
        assert model.policy_kwargs["log_std_init"] == config.log_std_init == zoo["policy_kwargs"]["log_std_init"]
    assert not any("gSDE" in note or "log_std_init" in note for note in task.deviations)


@pytest.mark.bench_extra
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_the_time_split_covers_sac_and_td3_runs_of_both_libraries(algo: str) -> None:
    """A tiny Pendulum run of each library: acting, storing, updating and env stepping are all timed, and their CPU
    seconds fit in the run's."""
    pytest.importorskip("stable_baselines3")
    zoo: dict[str, Any] = {"n_timesteps": 1_000, "learning_starts": 60, "train_freq": 2, "gradient_steps": 2,
                           "batch_size": 16, "buffer_size": 1_000, "policy_kwargs": {"net_arch": [16]}}
    if algo == "td3":
        zoo.update(noise_type="normal", noise_std=0.2)
    task = zoo_suite.Task(algo, "Pendulum-v1", zoo, None)
    steps = zoo_suite.throughput_steps(task, 40)
    assert steps == 60 + 40
    for name, runner in zoo_suite.RUNNERS.items():
        result = runner(task, 0, steps, 0)
        assert result.env_steps == steps, name
        for part in ("env_step", "act", "store", "update"):
            assert result.parts[part] > 0.0, (name, part)
        assert sum(result.parts.values()) <= result.cpu_seconds, name
        assert result.to_json(None)["engine"], name


def test_the_final_return_is_the_final_policys_long_evaluation_and_the_verdict_reads_it() -> None:
    """Learning mode: a run's final return is the mean of its final evaluation (FINAL_EPISODES episodes) when it has
    one, else its last curve point; the verdict compares rlcore's mean with SB3's worst seed on those."""
    def run(last: float, final: float | None) -> zoo_suite.RunResult:
        result = zoo_suite.RunResult(1.0, 1.0, 100, {}, [(50, 0.5, last - 5.0), (100, 1.0, last)])
        result.final_evaluation = final
        return result

    assert run(-80.0, -86.0).to_json(-100.0)["final_return"] == -86.0
    assert run(-80.0, -86.0).to_json(-100.0)["last_evaluation"] == -80.0
    assert run(-80.0, None).to_json(-100.0)["final_return"] == -80.0
    def summary(*runs: zoo_suite.RunResult) -> dict:
        return zoo_suite.summarize([run.to_json(-100.0) for run in runs])

    ours = summary(run(-80.0, -87.0), run(-80.0, -86.0))  # last points above SB3's
    theirs = summary(run(-90.0, -84.0), run(-90.0, -85.5))
    assert ours["final_returns"] == [-87.0, -86.0]
    assert zoo_suite.learning_verdict({"rlcore": ours, "sb3": theirs})["returns_within_sb3_spread"] is False
    better = summary(run(-80.0, -85.0), run(-80.0, -84.0))
    assert zoo_suite.learning_verdict({"rlcore": better, "sb3": theirs})["returns_within_sb3_spread"] is True


def suite_line(first_seed: int, finals: dict[str, list[float]], seconds: dict[str, list[float]],
               recorded_seeds: bool = True) -> dict:
    """A learning-mode result line as :func:`zoo_suite.run_task` writes it, for runs of 1,000 env steps."""
    per_seed = {name: [{**({"seed": first_seed + index} if recorded_seeds else {}),
                        **run_result(final, wall).to_json(-100.0)}
                       for index, (final, wall) in enumerate(zip(finals[name], seconds[name]))] for name in finals}
    line = {"mode": "learning", "task": "a2c/Acrobot-v1", "threads": "one", "env_steps": 1000, "seeds": len(
        finals["rlcore"]), "first_seed": first_seed, "load_before_after": [0.0, 1.0], **zoo_suite.comparison(per_seed)}
    return {**line, **zoo_suite.learning_verdict(line)}


def run_result(final: float, seconds: float) -> zoo_suite.RunResult:
    result = zoo_suite.RunResult(seconds, seconds, 1000, {"update": seconds / 2}, [(1000, seconds, final)])
    result.final_evaluation = final
    return result


def test_merge_pools_the_seeds_of_parallel_runs_into_one_line() -> None:
    """``--merge``: the runs of one task with other seeds (``--first-seed``, e.g. one process per core) become one
    line whose medians, ratios and verdict are over all their seeds, in seed order; overlapping seeds or runs of
    different tasks are refused."""
    first = suite_line(0, {"rlcore": [-80.0, -90.0], "sb3": [-85.0, -88.0]}, {"rlcore": [1.0, 3.0], "sb3": [4.0, 4.0]})
    second = suite_line(2, {"rlcore": [-95.0], "sb3": [-87.0]}, {"rlcore": [2.0], "sb3": [10.0]})
    assert first["returns_within_sb3_spread"] is True  # -85 against SB3's worst -88
    merged = zoo_suite.merge([second, first])
    assert [run["seed"] for run in merged["rlcore"]["per_seed"]] == [0, 1, 2]
    assert merged["rlcore"]["final_returns"] == [-80.0, -90.0, -95.0]
    assert merged["sb3"]["final_returns"] == [-85.0, -88.0, -87.0]
    assert merged["seeds"] == 3 and merged["first_seed"] == 0 and merged["merged_from"] == 2
    assert merged["rlcore"]["steps_per_s"] == 500.0 and merged["sb3"]["steps_per_s"] == 250.0  # medians of 3
    assert merged["ratio"] == 2.0 and merged["cpu_ratio"] == 2.0
    assert merged["returns_within_sb3_spread"] is False  # -88.3 is under SB3's worst seed, -88
    assert merged["rlcore"]["seeds_reaching_reference"] == 3

    older = suite_line(3, {"rlcore": [-70.0], "sb3": [-90.0]}, {"rlcore": [1.0], "sb3": [1.0]}, recorded_seeds=False)
    assert [run["seed"] for run in zoo_suite.merge([first, older])["sb3"]["per_seed"]] == [0, 1, 3]
    with pytest.raises(SystemExit, match=r"seed\(s\) \[2\]"):
        zoo_suite.merge([first, second, second])
    with pytest.raises(SystemExit, match="one task"):
        zoo_suite.merge([first, {**second, "task": "a2c/CartPole-v1"}])


def test_each_result_names_the_cpu_and_whether_it_multiplies_bfloat16() -> None:
    from rlcore.kernels.mlp_bf16 import fast_bf16_matmul

    cpu = zoo_suite.cpu_description()
    assert set(cpu) == {"model", "isa", "bf16_products", "bf16_speedup"} and cpu["model"]
    assert (cpu["bf16_speedup"] is None) or cpu["bf16_speedup"] > 0.0
    assert cpu["bf16_products"] is fast_bf16_matmul()  # which kernels SAC/TD3/DQN ran (amp="auto")


ON_POLICY_GSDE = [task for task in zoo_suite.TASKS if task.algo in ("ppo", "a2c") and task.zoo.get("use_sde")]


@pytest.mark.parametrize("task", ON_POLICY_GSDE, ids=lambda task: task.name)
def test_the_zoos_gsde_settings_reach_rlcores_ppo_and_a2c(task: zoo_suite.Task) -> None:
    config = get_algo_class(task.algo).config_class(**zoo_suite.rlcore_config(task))
    assert config.use_sde and config.sde_sample_freq == task.zoo.get("sde_sample_freq", -1)
    assert config.log_std_init == task.zoo.get("policy_kwargs", {}).get("log_std_init", 0.0)
    assert not any("gSDE" in note for note in task.deviations)
    settings = zoo_suite.sb3_settings(task, 1_000)
    assert settings["use_sde"] is True and settings.get("sde_sample_freq", -1) == config.sde_sample_freq


def test_gsde_settings_are_dropped_for_both_only_where_rlcores_algorithm_has_none() -> None:
    assert zoo_suite.dropped_keys("sac") == zoo_suite.dropped_keys("ppo") == ("policy",)
    assert zoo_suite.dropped_keys("dqn") == ("policy", "use_sde", "sde_sample_freq")
    sac = [task for task in zoo_suite.TASKS if task.algo == "sac" and task.zoo.get("use_sde")]
    assert sac and all(zoo_suite.rlcore_config(task)["use_sde"] for task in sac)


def test_a_task_without_a_learning_run_shows_what_one_would_cost() -> None:
    task = next(task for task in zoo_suite.TASKS if task.name == "td3/LunarLanderContinuous-v3")  # 300k env steps
    throughput = {"rlcore": {"steps_per_s": 400.0}, "sb3": {"steps_per_s": 200.0}}
    assert zoo_suite.not_run_cell(task, throughput) == "not run (~2 core-hours)"  # 3 x (750 s + 1,500 s)
    throughput["sb3"]["steps_per_s"] = 20.0
    assert zoo_suite.not_run_cell(task, throughput) == "not run (~13 core-hours)"  # 3 x (750 s + 15,000 s)
    assert zoo_suite.not_run_cell(task, None) == "not run"
    throughput = {"rlcore": {"steps_per_s": 30_000.0}, "sb3": {"steps_per_s": 10_000.0}}
    assert zoo_suite.not_run_cell(task, throughput) == "not run (~2 core-minutes)"  # 3 x (10 s + 30 s)


def test_the_table_lists_every_task_of_the_suite_and_counts_the_measured_ones() -> None:
    line = {"env_steps": 8192, "ratio": 4.0, "cpu_ratio": 3.9, "rlcore": {"steps_per_s": 4000.0,
            "parts_cpu_seconds": {"env_step": 1.0, "update": 1.0}}, "sb3": {"steps_per_s": 1000.0}}
    text = zoo_suite.table({("throughput", "ppo/CartPole-v1", "one"): line})
    rows = [row for row in text.splitlines() if row.startswith("| `")]
    suite = [task for task in zoo_suite.TASKS if task.algo in zoo_suite.ALGORITHMS]
    assert [row.split("`")[1] for row in rows] == [task.name for task in suite]
    assert sum("not measured" in row for row in rows) == len(suite) - 1
    ppo_tasks = sum(task.algo == "ppo" for task in suite)
    assert f"| ppo | 1 of {ppo_tasks} | 4.00x | 4.00x |" in text
    assert "| sac |" not in text  # no algorithm line without a measured task


def test_rlcore_gets_each_env_as_a_user_passes_it() -> None:
    by_name = {task.name: task for task in zoo_suite.TASKS}
    car_racing = zoo_suite.rlcore_env(by_name["ppo/CarRacing-v3"])
    assert car_racing.env == "CarRacing-v3" and len(car_racing.wrappers) == 4 and not car_racing.env_kwargs
    minatar = zoo_suite.rlcore_env(by_name["ppo/rlcore/MinAtar-Breakout-v0"])
    assert (minatar.env, minatar.wrappers, minatar.env_kwargs) == (
        "rlcore/MinAtar-Breakout-v0", [], {"use_minimal_action_set": True})
    assert zoo_suite.rlcore_env(by_name["ppo/Acrobot-v1"]) == zoo_suite.RlcoreEnv("Acrobot-v1")
    assert [zoo_suite.rlcore_envs(by_name[name]) for name in ("ppo/CarRacing-v3", "ppo/rlcore/MinAtar-Breakout-v0",
                                                              "ppo/Acrobot-v1", "a2c/BipedalWalker-v3")] == [
        "leaner step", "batched", "batched", "leaner step"]
