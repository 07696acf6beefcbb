"""A local benchmark grid: every algorithm x every seed on one env, run one after another, then compared.

Each run is an ordinary run folder (``<bench_dir>/<env>/<algo>/seed<k>-<time>/``), so TensorBoard,
``rlcore compare`` and ``rlcore train --resume`` work on it as on any other run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rlcore.compare import DEFAULT_METRIC, ComparisonTable, compare
from rlcore.env import EnvSpec, env_name

logger = logging.getLogger(__name__)

EVALUATIONS_PER_RUN = 10
"""Without an explicit ``eval_freq``, bench evaluates at least this often per run (curves need points)."""


@dataclass
class BenchResult:
    """What :func:`run_bench` did: the comparison table, its folder, its runs and the curves' PNG."""

    table: ComparisonTable
    bench_dir: Path
    run_dirs: list[Path]
    plot: Path | None


def default_bench_dir(env: EnvSpec, root: str | Path = "runs/bench") -> Path:
    """A fresh ``<root>/<env>-<time>`` folder name."""
    return Path(root) / f"{env_name(env)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _run_settings(algo: str, env: EnvSpec, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings of one grid run: ``settings`` plus the seed, and an ``eval_freq`` giving a curve."""
    from rlcore.api import split_settings
    from rlcore.trainer import TrainConfig

    run = {**settings, "seed": seed}
    if "eval_freq" not in settings:
        train_settings, _ = split_settings(algo, env, run)
        total = int(train_settings.get("total_env_steps", TrainConfig.total_env_steps))
        preset_freq = int(train_settings.get("eval_freq", TrainConfig.eval_freq))
        # a preset's 0 (no evaluation, e.g. envs without a time limit) is kept
        run["eval_freq"] = min(preset_freq, max(1, total // EVALUATIONS_PER_RUN))
    return run


def run_bench(
    algos: Sequence[str],
    env: EnvSpec,
    *,
    seeds: int = 3,
    total_env_steps: int | None = None,
    bench_dir: str | Path | None = None,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    ci_of: str = "mean",
    plot: bool = True,
    out: str | Path | None = None,
    **settings: Any,
) -> BenchResult:
    """Trains every algorithm in ``algos`` with seeds ``0 .. seeds-1`` on ``env`` (sequentially), then compares.

    Args:
        algos: Registered algorithm names, e.g. ``["dqn", "ppo"]``.
        env: A registered env id (its presets apply), an ``Env`` subclass or a factory.
        seeds: How many seeds per algorithm.
        total_env_steps: Env steps per run (default: each algorithm's preset).
        bench_dir: Root of the grid's run folders (default: a fresh ``runs/bench/<env>-<time>``).
        metric, threshold, ci_of: As in :func:`rlcore.compare`.
        plot: Write a PNG of the learning curves: to ``out``, default ``bench_dir/curves.png``.
        settings: Passed to every :func:`rlcore.train` call (TrainConfig or algorithm fields). Unless
            ``eval_freq`` is among them, each run evaluates at least 10 times.

    Returns:
        A :class:`BenchResult`; the table is also written to ``bench_dir/comparison.md``.
    """
    from rlcore.api import check_run, train
    from rlcore.env import env_spaces

    if not algos:
        raise ValueError("run_bench needs at least one algorithm, e.g. ['dqn', 'ppo']")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if "log_dir" in settings or "run_dir" in settings:
        raise ValueError("run_bench places the runs itself; pass bench_dir=... instead of log_dir/run_dir")
    if "seed" in settings:
        raise ValueError(f"run_bench trains seeds 0..{seeds - 1} of each algorithm, so seed={settings['seed']!r} "
                         "would be overridden; drop it (the number of seeds is seeds=K, on the command line --seeds K)")
    if total_env_steps is not None:
        settings["total_env_steps"] = total_env_steps
    spaces = env_spaces(env)
    for algo in algos:  # a bad name, an unfitting algorithm or setting fails before any training
        check_run(algo, env, settings, spaces)
    bench_dir = Path(bench_dir) if bench_dir is not None else default_bench_dir(env)
    run_dirs: list[Path] = []
    grid = [(algo, seed) for algo in algos for seed in range(seeds)]
    for index, (algo, seed) in enumerate(grid, 1):
        logger.info("bench run %d/%d: %s on %s, seed %d", index, len(grid), algo, env, seed)
        agent = train(algo, env, log_dir=str(bench_dir), **_run_settings(algo, env, seed, settings))
        run_dirs.append(Path(agent.run_dir))
    table = compare(run_dirs, metric, threshold=threshold, ci_of=ci_of)
    (bench_dir / "comparison.md").write_text(table.to_markdown() + "\n")
    curves = table.plot(out if out is not None else bench_dir / "curves.png") if plot else None
    return BenchResult(table=table, bench_dir=bench_dir, run_dirs=run_dirs, plot=curves)
