"""Seed-aggregated comparison of runs: a table of final scores and thresholds, and learning curves.

TensorBoard shows runs one by one; this module groups them by ``(algorithm, env)`` and aggregates
over seeds::

    table = rlcore.compare(["runs/CartPole-v1"], metric="eval/mean_reward", threshold=475)
    print(table)                 # markdown
    table.rows                   # list of dicts, one per (algo, env)
    table.plot("curves.png")     # mean over seeds with a min-max band

Statistics, per group (over seeds, one number per seed):

- **final score**: the metric's value at the run's last logged step;
- **mean** and **IQM**, the interquartile mean: the mean of the middle 50% of the seeds' final
  scores, where a seed straddling the 25% or 75% quantile counts with the fraction of its 1/n
  probability mass that lies inside (so every n gives a value; for n divisible by 4 it equals
  ``scipy.stats.trim_mean(x, 0.25)``, for other n it differs from trim_mean, which drops whole seeds);
- a **95% percentile-bootstrap CI** of the mean (or of the IQM, ``ci_of="iqm"``) from 10,000
  resamples of the seeds drawn with ``numpy.random.default_rng(seed)`` (``seed=0``): the same runs
  always give the same interval;
- **env steps to threshold** and **wall time to threshold**: the first logged step whose value is
  ``>= threshold``, and the seconds from the run's first event to that event; the mean over the seeds
  that reach it, with how many did.

Event files are read with TensorBoard's own ``EventAccumulator`` without sampling (``scalars=0``),
so every logged point counts and the curves of resumed runs are purged as TensorBoard does.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "eval/mean_reward"
"""The metric compared when none is named: the deterministic evaluation's mean return."""
EVENT_GLOB = "events.out.tfevents.*"
"""How TensorBoard event files are named."""
CI_STATISTICS = ("mean", "iqm")
"""What the bootstrap confidence interval can be computed for."""


# ------------------------------------------------------------------------------------------- reading runs
@dataclass(frozen=True)
class RunCurve:
    """One run's curve of one metric.

    Attributes:
        path: The run folder.
        algo: Algorithm name (from ``hparams.json``, else the folder ``<env>/<algo>/seed<k>-...``).
        env: Env name, from the same places.
        seed: The run's seed, or None if neither ``hparams.json`` nor the folder name tell it.
        steps: Env steps of the logged points, ascending ``[P]``.
        values: The metric at those steps ``[P]``.
        wall_times: Seconds from the run's first event to each point ``[P]``.
    """

    path: Path
    algo: str
    env: str
    seed: int | None
    steps: np.ndarray
    values: np.ndarray
    wall_times: np.ndarray

    @property
    def final(self) -> float:
        """The metric's value at the last logged step."""
        return float(self.values[-1])

    def first_reaching(self, threshold: float) -> tuple[int, float] | None:
        """``(env steps, wall seconds)`` of the first point with value ``>= threshold``; None if none."""
        hits = np.flatnonzero(self.values >= threshold)
        if hits.size == 0:
            return None
        return int(self.steps[hits[0]]), float(self.wall_times[hits[0]])


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders in ``paths``: each path is a run folder, or a folder searched for runs below it.

    A run folder is one that holds TensorBoard event files directly.

    Raises:
        FileNotFoundError: A path does not exist, or holds no event files at any depth.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"run folder {str(path)!r} does not exist")
        if any(path.glob(EVENT_GLOB)):
            runs = [path]
        else:
            runs = sorted({event.parent for event in path.rglob(EVENT_GLOB)})
        if not runs:
            raise FileNotFoundError(
                f"{str(path)!r} holds no TensorBoard event files ({EVENT_GLOB}) at any depth; pass run folders "
                "written by rlcore train (runs/<env>/<algo>/seed<k>-<time>) or a folder above them"
            )
        found.extend(run for run in runs if run not in found)
    return found


def _run_identity(run_dir: Path) -> tuple[str, str, int | None]:
    """``(algo, env, seed)`` from ``hparams.json``, falling back to the folder layout."""
    hparams: dict[str, Any] = {}
    hparams_file = run_dir / "hparams.json"
    if hparams_file.is_file():
        try:
            hparams = json.loads(hparams_file.read_text())
        except json.JSONDecodeError as error:
            logger.warning("ignoring unreadable %s (%s); using the folder layout", hparams_file, error)
    algo = hparams.get("algo") or run_dir.parent.name
    env = hparams.get("env") or run_dir.parent.parent.name
    seed = (hparams.get("train") or {}).get("seed")
    if seed is None:
        match = re.match(r"seed(\d+)", run_dir.name)
        seed = int(match.group(1)) if match else None
    return str(algo), str(env), None if seed is None else int(seed)


def load_run(run_dir: str | Path, metric: str = DEFAULT_METRIC) -> RunCurve:
    """Reads one run's curve of ``metric`` with TensorBoard's reader (every point, no sampling).

    Raises:
        FileNotFoundError: The folder holds no event files.
        KeyError: The run never logged ``metric``; the message lists the metrics it has.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    if not any(run_dir.glob(EVENT_GLOB)):
        raise FileNotFoundError(
            f"{str(run_dir)!r} holds no TensorBoard event files ({EVENT_GLOB}); is it a run folder "
            "(runs/<env>/<algo>/seed<k>-<time>)?"
        )
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    available = sorted(events.Tags()["scalars"])
    if metric not in available:
        raise KeyError(_unknown_metric_message(metric, run_dir, available))
    points = sorted(events.Scalars(metric), key=lambda event: event.step)
    start = events.FirstEventTimestamp()
    algo, env, seed = _run_identity(run_dir)
    return RunCurve(
        path=run_dir, algo=algo, env=env, seed=seed,
        steps=np.array([point.step for point in points], dtype=np.int64),
        values=np.array([point.value for point in points], dtype=np.float64),
        wall_times=np.array([point.wall_time - start for point in points], dtype=np.float64),
    )


def _unknown_metric_message(metric: str, run_dir: Path, available: list[str]) -> str:
    close = difflib.get_close_matches(metric, available, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(available) if available else "none (the run logged no scalars yet)"
    return f"metric {metric!r} is not in {str(run_dir)!r}{hint}; metrics available there: {listing}"


# ---------------------------------------------------------------------------------------------- statistics
def iqm_weights(n: int) -> np.ndarray:
    """Weights ``[n]`` of the sorted values in the interquartile mean (they sum to 1).

    Value ``i`` of ``n`` sorted values holds the probability mass ``[i/n, (i+1)/n]``; its weight is
    the part of that inside ``[0.25, 0.75]``, divided by 0.5.
    """
    if n < 1:
        raise ValueError(f"the interquartile mean needs at least one value, got n={n}")
    edges = np.arange(n + 1) / n
    inside = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None)
    return inside / inside.sum()


def interquartile_mean(values: Sequence[float] | np.ndarray) -> float:
    """The mean of the middle 50% of ``values``, with fractional weights at the 25%/75% edges."""
    array = np.sort(np.asarray(values, dtype=np.float64))
    return float(array @ iqm_weights(array.size))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (or IQM) of ``values``, reproducible by ``seed``.

    Each resample draws ``len(values)`` values with replacement.
    """
    if statistic not in CI_STATISTICS:
        raise ValueError(f"statistic must be one of {CI_STATISTICS}, got {statistic!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    array = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = array[rng.integers(0, array.size, size=(n_resamples, array.size))]
    if statistic == "mean":
        estimates = samples.mean(axis=1)
    else:
        estimates = np.sort(samples, axis=1) @ iqm_weights(array.size)
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------- the table
@dataclass
class RunGroup:
    """The seeds of one ``(algo, env)``."""

    algo: str
    env: str
    runs: list[RunCurve] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.algo} / {self.env}"

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps [G], values [S, G])``: each seed's curve linearly interpolated on a shared grid.

        The grid is every logged step of any seed within the steps all seeds cover.
        """
        low = max(int(run.steps[0]) for run in self.runs)
        high = min(int(run.steps[-1]) for run in self.runs)
        grid = np.unique(np.concatenate([run.steps for run in self.runs]))
        grid = grid[(grid >= low) & (grid <= high)]
        if grid.size == 0:  # seeds logged at disjoint steps: fall back to their final points
            grid = np.array([high])
        return grid, np.stack([np.interp(grid, run.steps, run.values) for run in self.runs])


COLUMNS = {
    "algo": "algo", "env": "env", "seeds": "seeds", "final_mean": "final mean", "final_iqm": "IQM",
    "ci": "95% CI", "steps_to_threshold": "env steps to {t}", "time_to_threshold": "wall s to {t}",
    "reached": "reached {t}",
}


@dataclass
class ComparisonTable:
    """The result of :func:`compare`: one row (a dict) per ``(algo, env)``; ``str()`` is a markdown table.

    Row keys: ``algo``, ``env``, ``seeds``, ``final_mean``, ``final_iqm``, ``ci_low``, ``ci_high``,
    ``ci_of``, ``metric``, ``threshold``, ``steps_to_threshold``, ``time_to_threshold`` (means over
    the seeds that reached the threshold; None when none did or no threshold was given) and
    ``reached`` (how many seeds did).
    """

    rows: list[dict[str, Any]]
    groups: list[RunGroup]
    metric: str
    threshold: float | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def row(self, algo: str, env: str | None = None) -> dict[str, Any]:
        """The row of ``algo`` (on ``env``, needed only when several envs are compared)."""
        matches = [row for row in self.rows if row["algo"] == algo and env in (None, row["env"])]
        if len(matches) != 1:
            known = ", ".join(f"{row['algo']} on {row['env']}" for row in self.rows)
            raise KeyError(f"{len(matches)} rows match algo={algo!r} env={env!r}; the table has: {known}")
        return matches[0]

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (copies)."""
        return [dict(row) for row in self.rows]

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (pandas is not a dependency of rlcore; install it to use this)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError("ComparisonTable.to_pandas() needs pandas: pip install pandas") from error
        return pandas.DataFrame(self.to_dicts())

    def to_markdown(self) -> str:
        """A markdown table of the rows, with the metric and threshold in the header."""
        keys = [key for key in COLUMNS if self.threshold is not None or not _is_threshold_column(key)]
        threshold = "-" if self.threshold is None else f"{self.threshold:g}"
        header = [COLUMNS[key].format(t=threshold) for key in keys]
        lines = [f"metric: {self.metric}" + ("" if self.threshold is None else f", threshold: {threshold}"), "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(key, row) for key in keys) + " |" for row in self.rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Writes a PNG of the learning curves (mean over seeds, min-max band); see :func:`plot_curves`."""
        return plot_curves(self.groups, path, metric=self.metric, threshold=self.threshold, title=title)


def _is_threshold_column(key: str) -> bool:
    return key in ("steps_to_threshold", "time_to_threshold", "reached")


def _cell(key: str, row: dict[str, Any]) -> str:
    if key == "ci":
        return f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    if key == "reached":
        return f"{row['reached']}/{row['seeds']}"
    value = row[key]
    if value is None:
        return "-"
    if key == "steps_to_threshold":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else str(value)
    return str(value)


def group_runs(runs: Iterable[RunCurve]) -> list[RunGroup]:
    """Runs grouped by ``(algo, env)``, in order of first appearance; seeds sorted."""
    groups: dict[tuple[str, str], RunGroup] = {}
    for run in runs:
        groups.setdefault((run.algo, run.env), RunGroup(run.algo, run.env)).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda run: (run.seed is None, run.seed if run.seed is not None else 0, str(run.path)))
    return list(groups.values())


def summarize(
    group: RunGroup,
    *,
    metric: str,
    threshold: float | None = None,
    ci_of: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """One table row for ``group``: final mean, IQM, bootstrap CI and time to ``threshold``."""
    finals = np.array([run.final for run in group.runs])
    low, high = bootstrap_ci(finals, statistic=ci_of, confidence=confidence, n_resamples=n_resamples, seed=seed)
    row: dict[str, Any] = {
        "algo": group.algo, "env": group.env, "seeds": len(group.runs),
        "final_mean": float(finals.mean()), "final_iqm": interquartile_mean(finals),
        "ci_low": low, "ci_high": high, "ci_of": ci_of, "metric": metric, "threshold": threshold,
        "steps_to_threshold": None, "time_to_threshold": None, "reached": 0,
    }
    if threshold is not None:
        hits = [hit for hit in (run.first_reaching(threshold) for run in group.runs) if hit is not None]
        row["reached"] = len(hits)
        if hits:
            row["steps_to_threshold"] = float(np.mean([steps for steps, _ in hits]))
            row["time_to_threshold"] = float(np.mean([seconds for _, seconds in hits]))
    return row


def compare(
    run_dirs: str | Path | Iterable[str | Path],
    metric: str = DEFAULT_METRIC,
    *,
    threshold: float | None = None,
    out: str | Path | None = None,
    ci_of: str = "mean",
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> ComparisonTable:
    """Compares runs grouped by ``(algo, env)`` over their seeds.

    Example:
        >>> table = rlcore.compare(["runs/CartPole-v1"], metric="eval/mean_reward", threshold=475)
        >>> table.row("dqn")["final_iqm"]

    Args:
        run_dirs: Run folders, or folders above them (searched for event files), or one such path.
        metric: The scalar tag compared, e.g. ``eval/mean_reward`` or ``rollout/ep_rew_mean``.
        threshold: A score; the table then gives env steps and wall time to reach it.
        out: If given, a PNG of the learning curves is written there.
        ci_of: The bootstrap CI is of the ``"mean"`` or of the ``"iqm"`` of the final scores.
        seed: Seed of the bootstrap's generator (the same runs always give the same CI).

    Returns:
        A :class:`ComparisonTable`: ``.rows`` (dicts), ``str()`` (markdown), ``.plot(path)``.
    """
    if ci_of not in CI_STATISTICS:
        raise ValueError(f"ci_of must be one of {CI_STATISTICS}, got {ci_of!r}")
    paths = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not paths:
        raise ValueError("compare() needs at least one run folder")
    runs = [load_run(run_dir, metric) for run_dir in find_run_dirs(paths)]
    groups = group_runs(runs)
    rows = [summarize(group, metric=metric, threshold=threshold, ci_of=ci_of, confidence=confidence,
                      n_resamples=n_resamples, seed=seed) for group in groups]
    table = ComparisonTable(rows=rows, groups=groups, metric=metric, threshold=threshold)
    logger.info("compared %d runs in %d groups on %s", len(runs), len(groups), metric)
    if out is not None:
        table.plot(out)
    return table


# ---------------------------------------------------------------------------------------------- plotting
def plot_curves(
    groups: Sequence[RunGroup],
    path: str | Path,
    *,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Writes a PNG: per group the mean over seeds as a line and the seeds' min-max as a band.

    Uses matplotlib's Agg backend (no display needed). x axis: env steps.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plotting learning curves needs matplotlib: pip install 'rlcore[compare]'") from error
    path = Path(path)
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)  # render with Agg whatever pyplot's backend is: no display, no global state
    axes = figure.add_subplot()
    for group in groups:
        steps, values = group.curve()
        line, = axes.plot(steps, values.mean(axis=0), marker="o" if steps.size == 1 else None,
                          label=f"{group.label} ({len(group.runs)} seeds)")
        axes.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xlabel("env steps")
    axes.set_ylabel(metric)
    axes.set_title(title or f"{metric}: mean over seeds, band = min-max")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    logger.info("wrote learning curves to %s", path)
    return path
