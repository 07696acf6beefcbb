"""Seed-aggregated comparison (rlcore.compare, rlcore compare, rlcore bench) and the hparams written per run."""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import rlcore
from rlcore import cli
from rlcore.compare import bootstrap_ci, find_run_dirs, interquartile_mean, iqm_weights, load_run
from rlcore.trainer import TrainConfig, Trainer

STEPS = list(range(100, 1100, 100))  # 10 evaluations, at env steps 100 .. 1000
# final scores per seed; each curve rises linearly from final/10 at step 100 to final at step 1000
FINALS = {"dqn": [10.0, 20.0, 30.0, 100.0], "ppo": [1.0, 2.0, 10.0]}
THRESHOLD = 6.0


def write_run(run_dir: Path, values: list[float], *, hparams: dict | None, extra_tag: bool = True) -> None:
    """An event file with eval/mean_reward = values[i] at STEPS[i], i seconds after the writer opened."""
    from torch.utils.tensorboard import SummaryWriter

    start = time.time()
    writer = SummaryWriter(str(run_dir))
    for index, (step, value) in enumerate(zip(STEPS, values)):
        writer.add_scalar("eval/mean_reward", value, step, walltime=start + index)
        if extra_tag:
            writer.add_scalar("rollout/ep_rew_mean", value / 2, step, walltime=start + index)
    writer.close()
    if hparams is not None:
        (run_dir / "hparams.json").write_text(json.dumps(hparams))


@pytest.fixture(scope="module")
def known_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/CartPole-v1/{dqn: 4 seeds, ppo: 3 seeds}; ppo seed 2 has no hparams.json (folder layout is used)."""
    root = tmp_path_factory.mktemp("known") / "runs"
    for algo, finals in FINALS.items():
        for seed, final in enumerate(finals):
            run_dir = root / "CartPole-v1" / algo / f"seed{seed}-20250101-000000-00000{seed}"
            curve = [final * (index + 1) / 10 for index in range(len(STEPS))]
            hparams = {"algo": algo, "env": "CartPole-v1", "train": {"seed": seed}}
            write_run(run_dir, curve, hparams=None if (algo, seed) == ("ppo", 2) else hparams)
    return root


def first_step_reaching(final: float) -> int:
    return next(step for index, step in enumerate(STEPS) if final * (index + 1) / 10 >= THRESHOLD)


def test_compare_gives_exact_mean_iqm_and_threshold_steps(known_runs: Path) -> None:
    table = rlcore.compare([known_runs], metric="eval/mean_reward", threshold=THRESHOLD)
    assert [(row["algo"], row["env"], row["seeds"]) for row in table] == [("dqn", "CartPole-v1", 4),
                                                                         ("ppo", "CartPole-v1", 3)]
    dqn, ppo = table.row("dqn"), table.row("ppo")
    assert dqn["final_mean"] == 40.0
    assert dqn["final_iqm"] == 25.0  # the middle two of 10, 20, 30, 100
    assert ppo["final_mean"] == pytest.approx(13 / 3)
    # 3 runs: rliable's IQM (the 25% trimmed mean) drops floor(3 / 4) = 0 runs at each end: the mean
    assert ppo["final_iqm"] == pytest.approx(13 / 3)
    # dqn: every seed reaches 6, at 600, 300, 200, 100 env steps; ppo: only the seed ending at 10 (at 600)
    assert dqn["reached"] == 4 and dqn["steps_to_threshold"] == np.mean([first_step_reaching(f) for f in FINALS["dqn"]])
    assert dqn["steps_to_threshold"] == 300.0
    assert ppo["reached"] == 1 and ppo["steps_to_threshold"] == 600.0
    # wall time: point i is i seconds after the writer opened (its first event); dqn hits at points 5, 2, 1, 0
    assert dqn["time_to_threshold"] == pytest.approx(2.0, abs=0.5)
    assert ppo["time_to_threshold"] == pytest.approx(5.0, abs=0.5)
    assert dqn["ci_low"] <= dqn["final_mean"] <= dqn["ci_high"]
    assert dqn["ci_low"] >= 10.0 and dqn["ci_high"] <= 100.0
    text = str(table)
    assert "| dqn | CartPole-v1 | 4 | 40.00 | 25.00 |" in text and "4/4" in text and "1/3" in text
    assert ("IQM: 25% trimmed mean over runs (as rliable); 95% CI: percentile bootstrap of the mean over runs (10,000 "
            "resamples with replacement, seed 0)") in text


def test_no_threshold_leaves_the_threshold_columns_out(known_runs: Path) -> None:
    table = rlcore.compare(known_runs / "CartPole-v1" / "dqn", metric="rollout/ep_rew_mean")
    assert len(table) == 1 and table[0]["final_mean"] == 20.0 and table[0]["steps_to_threshold"] is None
    assert "reached" not in table.to_markdown() and "rollout/ep_rew_mean" in table.to_markdown()


def test_folder_layout_is_the_fallback_for_algo_env_and_seed(known_runs: Path) -> None:
    run = load_run(next((known_runs / "CartPole-v1" / "ppo").glob("seed2-*")))
    assert (run.algo, run.env, run.seed, run.final) == ("ppo", "CartPole-v1", 2, 10.0)
    assert run.steps.tolist() == STEPS  # every point: no reservoir sampling


def test_bootstrap_ci_is_reproducible_with_a_fixed_seed(known_runs: Path) -> None:
    first = rlcore.compare([known_runs]).rows
    second = rlcore.compare([known_runs]).rows
    assert [(row["ci_low"], row["ci_high"]) for row in first] == [(row["ci_low"], row["ci_high"]) for row in second]
    values = [10.0, 20.0, 30.0, 100.0]
    assert bootstrap_ci(values, seed=0) == bootstrap_ci(values, seed=0) == (first[0]["ci_low"], first[0]["ci_high"])
    sample = np.random.default_rng(5).normal(3.0, 2.0, size=200)
    assert bootstrap_ci(sample, seed=1) != bootstrap_ci(sample, seed=0)
    # a large sample's percentile bootstrap of the mean is close to the normal interval mean +- 1.96 sem
    sem = sample.std() / np.sqrt(sample.size)
    low, high = bootstrap_ci(sample, seed=0)
    assert low == pytest.approx(sample.mean() - 1.96 * sem, abs=0.1 * sem)
    assert high == pytest.approx(sample.mean() + 1.96 * sem, abs=0.1 * sem)
    low, high = bootstrap_ci(values, statistic="iqm", seed=0)
    assert 10.0 <= low <= 25.0 <= high <= 100.0
    iqm_table = rlcore.compare([known_runs], ci_of="iqm")
    assert (iqm_table[0]["ci_low"], iqm_table[0]["ci_high"]) == (low, high) and iqm_table[0]["ci_of"] == "iqm"


def test_iqm_weighting() -> None:
    assert iqm_weights(4).tolist() == [0.0, 0.5, 0.5, 0.0]
    assert iqm_weights(1).tolist() == [1.0] and interquartile_mean([7.0]) == 7.0
    assert interquartile_mean([5.0, 1.0]) == 3.0
    assert interquartile_mean(np.arange(1.0, 9.0)) == 4.5
    scipy_stats = pytest.importorskip("scipy.stats")
    sample = np.random.default_rng(0).normal(size=12)
    assert interquartile_mean(sample) == pytest.approx(scipy_stats.trim_mean(sample, 0.25))


def test_png_of_learning_curves_is_non_trivial(known_runs: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    out = tmp_path / "plots" / "curves.png"
    rlcore.compare([known_runs], threshold=THRESHOLD, out=out)
    assert out.stat().st_size > 20_000
    image = imread(out)
    assert image.shape[:2] == (500, 800)
    colours = np.unique((image[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100, len(colours)  # two curves, their bands, text, grid: not a blank canvas
    # the bands are drawn: many pixels are neither white nor near-grey
    rgb = image[..., :3]
    assert ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.1).mean() > 0.02


def test_errors_name_the_bad_value_and_the_fix(known_runs: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"'eval/mean_rewrd'.*did you mean 'eval/mean_reward'.*rollout/ep_rew_mean"):
        rlcore.compare([known_runs], metric="eval/mean_rewrd")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"empty.*no TensorBoard event files"):
        rlcore.compare([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_run_dirs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="ci_of"):
        rlcore.compare([known_runs], ci_of="median")
    with pytest.raises(ValueError, match=r"out='curves.jpg': the learning curves are a PNG; give a path ending"):
        rlcore.compare([known_runs], out="curves.jpg")


def test_a_run_without_the_metric_is_skipped_with_a_warning(known_runs: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from torch.utils.tensorboard import SummaryWriter

    shutil.copytree(known_runs / "CartPole-v1" / "dqn", tmp_path / "runs" / "dqn")
    killed = tmp_path / "runs" / "dqn" / "seed9-killed"
    SummaryWriter(str(killed)).close()  # a run killed before its first evaluation: an event file, no scalars
    with caplog.at_level(logging.WARNING, logger="rlcore"):
        table = rlcore.compare([tmp_path / "runs"])
    assert [row["seeds"] for row in table.rows] == [len(FINALS["dqn"])]
    assert any("skipping a run: metric 'eval/mean_reward' is not in" in record.message and "seed9-killed" in
               record.message for record in caplog.records)
    with pytest.raises(KeyError, match="the run logged no scalars yet"):
        rlcore.compare([killed])  # that run alone: the error


def test_cli_compare_prints_the_table_and_writes_the_png(known_runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.png"
    assert cli.main(["compare", str(known_runs), "--threshold", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dqn | CartPole-v1 | 4 | 40.00 | 25.00 |" in printed and "env steps to 6" in printed
    assert out.stat().st_size > 20_000
    assert cli.main(["compare", str(known_runs), "--metric", "nope"]) == 2
    assert "metrics available there: eval/mean_reward, rollout/ep_rew_mean" in capsys.readouterr().err


def test_cli_bench_runs_the_grid_in_the_run_layout_and_compares(tmp_path: Path, capsys) -> None:
    bench_dir = tmp_path / "bench"
    code = cli.main(["bench", "q_learning,sarsa", "--env", "FrozenLake-v1", "--seeds", "2", "--steps", "2000",
                     "--bench-dir", str(bench_dir), "--no-progress", "--set", "eval_episodes=10",
                     "--threshold", "0.05"])
    assert code == 0
    for algo in ("q_learning", "sarsa"):
        runs = sorted((bench_dir / "FrozenLake-v1" / algo).glob("seed*-*"))
        assert [run.name.split("-")[0] for run in runs] == ["seed0", "seed1"]
        assert all((run / "hparams.json").is_file() and (run / "final" / "meta.json").is_file() for run in runs)
        # without an eval_freq, bench evaluates every steps/10 (the preset's 25,000 would give one point)
        steps = load_run(runs[0]).steps
        assert len(steps) == 10 and steps[-1] == 2000, steps
    printed = capsys.readouterr().out
    assert "| q_learning | FrozenLake-v1 | 2 |" in printed and "| sarsa | FrozenLake-v1 | 2 |" in printed
    assert (bench_dir / "curves.png").stat().st_size > 10_000
    assert "| q_learning |" in (bench_dir / "comparison.md").read_text()
    assert cli.main(["bench", "nope", "--env", "FrozenLake-v1"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().err


def test_runs_write_hparams_for_tensorboards_hparams_view(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    config = TrainConfig(total_env_steps=300, eval_freq=0, log_dir=str(tmp_path), progress_bar=False, seed=4,
                         device="cpu")
    trainer = Trainer("dqn", "CartPole-v1", config, {"net_arch": [8, 8], "learning_starts": 100})
    trainer.run()
    events = EventAccumulator(str(trainer.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    hparams = metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["algo"].string_value == "dqn" and hparams["env"].string_value == "CartPole-v1"
    assert hparams["train.seed"].number_value == 4 and hparams["algo_config.learning_starts"].number_value == 100
    assert hparams["algo_config.net_arch"].string_value == "[8, 8]"
    assert hparams["train.progress_bar"].string_value == "false"
    assert hparams["version.torch"].string_value == __import__("torch").__version__
    assert {"hyperparameters/text_summary", "versions/text_summary"} <= set(events.Tags()["tensors"])


def direct_iqm(values: list[float]) -> float:
    """The 25% trimmed mean by hand: sort, drop floor(n/4) at each end, average the rest."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    kept = ordered[cut:len(ordered) - cut]
    return sum(kept) / len(kept)


def direct_percentile_bootstrap(values: list[float], statistic, resamples: int = 10_000, seed: int = 0):
    """One resample at a time: draw n runs with replacement, take the statistic; the 2.5% and 97.5% quantiles."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    estimates = [statistic([values[index] for index in row]) for row in draws]
    return float(np.quantile(estimates, 0.025)), float(np.quantile(estimates, 0.975))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_iqm_and_ci_match_a_direct_computation(tmp_path: Path, n: int) -> None:
    # float32 values: TensorBoard stores scalars as float32, so these are exactly the finals read back
    finals = [float(value) for value in np.random.default_rng(n).normal(100.0, 30.0, size=n).astype(np.float32)]
    for seed, final in enumerate(finals):
        write_run(tmp_path / "runs" / f"seed{seed}", [final * (i + 1) / 10 for i in range(len(STEPS))],
                  hparams={"algo": "ppo", "env": "CartPole-v1", "train": {"seed": seed}}, extra_tag=False)
    expected_iqm = direct_iqm(finals)
    if n >= 5:  # trimming happens: the IQM is not the mean
        assert expected_iqm != pytest.approx(float(np.mean(finals)))
    scipy_stats = pytest.importorskip("scipy.stats") if n == 10 else None
    if scipy_stats is not None:
        assert expected_iqm == pytest.approx(scipy_stats.trim_mean(finals, 0.25))  # rliable's aggregate_iqm
    for ci_of, statistic in (("mean", lambda xs: sum(xs) / len(xs)), ("iqm", direct_iqm)):
        row = rlcore.compare([tmp_path / "runs"], ci_of=ci_of).rows[0]
        assert row["seeds"] == n and row["final_iqm"] == pytest.approx(expected_iqm, rel=1e-12)
        assert row["final_mean"] == pytest.approx(float(np.mean(finals)), rel=1e-12)
        low, high = direct_percentile_bootstrap(finals, statistic)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
        assert row["ci_method"] == (f"95% CI: percentile bootstrap of the {'mean' if ci_of == 'mean' else 'IQM'} over "
                                    "runs (10,000 resamples with replacement, seed 0)")


def settings_runs(root: Path, *, repeat_seed: bool = False) -> Path:
    """dqn on CartPole-v1 at two learning rates (2 seeds each), and one ppo run; seeds differ within each group."""
    layout = [(1e-3, 0, 100.0), (1e-3, 1, 200.0), (1e-4, 0, 10.0), (1e-4, 0 if repeat_seed else 1, 20.0)]
    for index, (learning_rate, seed, final) in enumerate(layout):
        write_run(root / f"dqn-{index}", [final * (i + 1) / 10 for i in range(len(STEPS))], extra_tag=False,
                  hparams={"algo": "dqn", "env": "CartPole-v1", "train": {"seed": seed, "log_dir": f"runs{index}",
                                                                         "threads": "auto"},
                           "algo_config": {"learning_rate": learning_rate, "net_arch": [64, 64]}})
    write_run(root / "ppo-0", [float(i) for i in range(len(STEPS))], extra_tag=False,
              hparams={"algo": "ppo", "env": "CartPole-v1", "train": {"seed": 0},
                       "algo_config": {"learning_rate": 3e-4}})
    return root


def test_runs_with_different_settings_are_two_rows_labelled_by_them(tmp_path: Path) -> None:
    table = rlcore.compare([settings_runs(tmp_path)])
    assert [(row["label"], row["seeds"], row["final_mean"]) for row in table] == [
        ("dqn / CartPole-v1 [learning_rate=0.001]", 2, 150.0),
        ("dqn / CartPole-v1 [learning_rate=0.0001]", 2, 15.0),
        ("ppo / CartPole-v1", 1, 9.0)]  # the seed and log_dir differ too, but never split groups
    assert table.row("dqn", learning_rate=1e-4)["final_mean"] == 15.0
    text = table.to_markdown()
    assert "| algo | env | settings | seeds |" in text and "| dqn | CartPole-v1 | learning_rate=0.001 | 2 |" in text
    # pooled on purpose, and labelled by a template
    pooled = rlcore.compare([tmp_path], group_by=["net_arch"], label="{algo} arch={net_arch} ({seeds} runs)")
    assert [(row["label"], row["seeds"]) for row in pooled] == [("dqn arch=[64, 64] (4 runs)", 4),
                                                                ("ppo arch=? (1 runs)", 1)]
    with pytest.raises(ValueError, match=r"no run records a setting 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        rlcore.compare([tmp_path], group_by=["learning_rat"])
    with pytest.raises(ValueError, match=r"label '\{nope\}': 'nope' is not a field"):
        rlcore.compare([tmp_path], label="{nope}")
    with pytest.raises(ValueError, match=r"label '\{algo.x\}': .* is not a field; use \{algo\}"):
        rlcore.compare([tmp_path], label="{algo.x}")  # an attribute of a field


def test_repeated_seeds_in_a_group_are_flagged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = rlcore.compare([settings_runs(tmp_path, repeat_seed=True)])
    row = table.row("dqn", learning_rate=1e-4)
    assert row["repeated_seeds"] == [0] and table.row("dqn", learning_rate=1e-3)["repeated_seeds"] == []
    assert "| 2 (repeated seed 0!) |" in table.to_markdown()
    assert ("warning: dqn / CartPole-v1 [learning_rate=0.0001] has runs with the same seed (0); they are not "
            "independent samples") in table.to_markdown()
    assert any("share seed(s) [0]" in message for message in caplog.messages)


def test_cli_compare_groups_and_labels(tmp_path: Path, capsys) -> None:
    settings_runs(tmp_path)
    assert cli.main(["compare", str(tmp_path), "--group-by", "learning_rate", "--label", "{algo} {learning_rate}"]) == 0
    printed = capsys.readouterr().out
    assert "| dqn | CartPole-v1 | dqn 0.001 | 2 |" in printed and "| ppo | CartPole-v1 | ppo 0.0003 | 1 |" in printed


def test_bench_checks_every_algorithm_and_setting_before_training(tmp_path: Path) -> None:
    from rlcore.algos.base import UnsupportedSpaceError
    from rlcore.bench import run_bench

    with pytest.raises(UnsupportedSpaceError, match=r"sac cannot handle the action space Discrete\(2\)"):
        run_bench(["dqn", "sac"], "CartPole-v1", seeds=1, total_env_steps=300, bench_dir=tmp_path / "bench")
    with pytest.raises(ValueError, match=r"unknown setting 'n_steps' for dqn \(did you mean 'n_step'\?\)"):
        run_bench(["ppo", "dqn"], "CartPole-v1", seeds=1, total_env_steps=300, bench_dir=tmp_path / "bench",
                  n_steps=64)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 2"):
        run_bench(["dqn"], "CartPole-v1", seeds=1, total_env_steps=300, bench_dir=tmp_path / "bench", gamma=2.0)
    assert not (tmp_path / "bench").exists()  # no run started


def test_wall_time_reads_training_seconds_and_the_clock_before_them(tmp_path: Path) -> None:
    """A run begun without time/elapsed_s (an older rlcore) and resumed with it: the points before the tag's first
    step keep the event clock, the later ones the training seconds (not the clock, which counts the pause)."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path / "run"
    start = time.time()
    first = SummaryWriter(str(run_dir), filename_suffix=".first")
    for index, step in enumerate((400, 800)):
        first.add_scalar("eval/mean_reward", float(index), step, walltime=start + index)
    first.close()
    resumed = SummaryWriter(str(run_dir), filename_suffix=".resumed")
    for step, seconds in ((1200, 150.0), (1600, 200.0)):
        resumed.add_scalar("eval/mean_reward", 5.0, step, walltime=start + 1000 + seconds)
        resumed.add_scalar("time/elapsed_s", seconds, step, walltime=start + 1000 + seconds)
    resumed.close()
    curve = load_run(run_dir, "eval/mean_reward")
    assert curve.steps.tolist() == [400, 800, 1200, 1600]
    np.testing.assert_allclose(curve.wall_times, [0.0, 1.0, 150.0, 200.0], atol=0.01)


def test_runs_on_other_env_kwargs_or_wrappers_are_other_rows(tmp_path: Path) -> None:
    """The env_kwargs given to rlcore.train (not only the config's) and the wrappers' names are in hparams.json."""
    import gymnasium as gym

    def short_episodes(env: gym.Env) -> gym.Env:
        return gym.wrappers.TimeLimit(env, 5)

    runs = tmp_path / "runs"
    for slippery, wrappers in [(True, None), (False, None), (True, [short_episodes])]:
        for seed in (0, 1):
            rlcore.train("q_learning", "FrozenLake-v1", env_kwargs={"is_slippery": slippery}, wrappers=wrappers,
                         seed=seed, total_env_steps=200, eval_freq=100, eval_episodes=2, progress_bar=False,
                         log_dir=str(runs))
    recorded = [json.loads(path.read_text()) for path in sorted(runs.rglob("hparams.json"))]
    assert sorted(str(h["train"]["env_kwargs"]) for h in recorded).count("{'is_slippery': True}") == 4
    assert sum(str(h.get("wrappers")).endswith("short_episodes']") for h in recorded) == 2, recorded
    table = rlcore.compare(runs)
    assert sorted(row["seeds"] for row in table.rows) == [2, 2, 2], table


def test_a_run_given_twice_under_two_spellings_counts_once(tmp_path: Path) -> None:
    from rlcore.compare import find_run_dirs

    rlcore.train("ppo", "CartPole-v1", total_env_steps=64, n_steps=32, num_envs=2, eval_freq=64, eval_episodes=1,
                 log_dir=str(tmp_path), progress_bar=False)
    run = next(path.parent for path in tmp_path.rglob("events.out.tfevents.*"))
    relative = Path(os.path.relpath(run))
    assert len(find_run_dirs([str(tmp_path), str(relative)])) == 1
