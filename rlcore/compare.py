"""Seed-aggregated comparison of runs: a table of final scores and thresholds, and learning curves.

TensorBoard shows runs one by one; this module groups them and aggregates over their seeds::

    table = rlcore.compare(["runs/CartPole-v1"], metric="eval/mean_reward", threshold=475)
    print(table)                 # markdown
    table.rows                   # list of dicts, one per group
    table.plot("curves.png")     # mean over seeds with a min-max band

Groups: runs of one ``(algorithm, env)`` whose settings (read from each run's ``hparams.json``) differ are never
pooled: each combination of the settings that differ among them is a group of its own, labelled by those settings
(``dqn / CartPole-v1 [learning_rate=0.001]``). The seed, the log folder, the progress bar, the thread count and
the other settings that do not change what is learned (:data:`IGNORED_SETTINGS`) do not split groups.
``group_by=[...]`` groups by the named settings only (pooling the rest on purpose),
``label="{algo} lr={learning_rate}"`` names the rows. A group in which a seed appears twice is flagged
(``repeated_seeds``; a warning is logged).

Statistics, per group (over its runs, one number per run):

- **final score**: the metric's value at the run's last logged step;
- **mean** and **IQM**, the interquartile mean as rliable computes it (``scipy.stats.trim_mean(x, 0.25)``):
  the sorted final scores with ``floor(n / 4)`` dropped at each end, averaged (for 3 runs that is their mean, for
  5 the middle 3, for 10 the middle 6);
- a **95% percentile-bootstrap CI** of the mean (or of the IQM, ``ci_of="iqm"``), as rliable's default
  (``method="percentile"``): 10,000 resamples of the runs drawn with replacement by
  ``numpy.random.default_rng(seed)`` (``seed=0``), the interval between the 2.5% and 97.5% quantiles of the
  resampled statistic; the same runs always give the same interval, and the table names the method;
- **env steps to threshold** and **wall time to threshold**: the first logged step whose value is
  ``>= threshold``, and the run's training seconds at that step (the ``time/elapsed_s`` scalar rlcore logs with
  every group of metrics, which a resumed run continues, so the time between a kill and its resume does not
  count; for event files without it, the seconds from the run's first event); the mean over the seeds that reach
  it, with how many did.

Event files are read with TensorBoard's own ``EventAccumulator`` without sampling (``scalars=0``),
so every logged point counts and the curves of resumed runs are purged as TensorBoard does.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlcore.fields import did_you_mean, user_path
from rlcore.logger import HPARAMS_FILE, TRAINING_SECONDS_TAG, read_hparams

logger = logging.getLogger(__name__)

DEFAULT_METRIC = "eval/mean_reward"
"""The metric compared when none is named: the deterministic evaluation's mean return."""
EVENT_GLOB = "events.out.tfevents.*"
"""How TensorBoard event files are named."""
CI_STATISTICS = ("mean", "iqm")
"""What the bootstrap confidence interval can be computed for."""
IGNORED_SETTINGS = frozenset({
    "train.seed", "train.log_dir", "train.log_interval", "train.progress_bar", "train.checkpoint_freq",
    "train.save_buffer", "train.threads", "train.ray_address", "train.device",
})
"""Settings (flattened ``hparams.json`` keys) that never split groups: the seed and what does not change learning."""
UNKNOWN = "?"
"""The value of a setting a run does not record (no ``hparams.json``, or an older one without the key)."""


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
        wall_times: The run's training seconds at each point ``[P]`` (see the module's docstring).
        settings: The run's ``hparams.json`` flattened (``algo_config.learning_rate``, ``train.num_envs``, ...),
            or None when it has none.
    """

    path: Path
    algo: str
    env: str
    seed: int | None
    steps: np.ndarray
    values: np.ndarray
    wall_times: np.ndarray
    settings: dict[str, Any] | None = None

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
        path = user_path(raw)
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
        known = {run.resolve() for run in found}  # one run given under two spellings counts once
        found.extend(run for run in runs if run.resolve() not in known)
    return found


def _run_identity(run_dir: Path) -> tuple[str, str, int | None, dict[str, Any] | None]:
    """``(algo, env, seed, flattened settings)`` from ``hparams.json``, falling back to the folder layout."""
    hparams: dict[str, Any] | None = None
    try:
        hparams = read_hparams(run_dir)
    except json.JSONDecodeError as error:
        logger.warning("ignoring unreadable %s (%s); using the folder layout", run_dir / HPARAMS_FILE, error)
    known = hparams or {}
    algo = known.get("algo") or run_dir.parent.name
    env = known.get("env") or run_dir.parent.parent.name
    seed = (known.get("train") or {}).get("seed")
    if seed is None:
        match = re.match(r"seed(\d+)", run_dir.name)
        seed = int(match.group(1)) if match else None
    settings = None if hparams is None else _flatten({key: value for key, value in hparams.items()
                                                      if key not in ("algo", "env")})
    return str(algo), str(env), None if seed is None else int(seed), settings


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


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
    algo, env, seed, settings = _run_identity(run_dir)
    return RunCurve(
        path=run_dir, algo=algo, env=env, seed=seed, settings=settings,
        steps=np.array([point.step for point in points], dtype=np.int64),
        values=np.array([point.value for point in points], dtype=np.float64),
        wall_times=_training_seconds(events, available, points, start),
    )


def _training_seconds(events: Any, available: list[str], points: list[Any], start: float) -> np.ndarray:
    """The run's training seconds at each of ``points`` ``[P]``: its ``time/elapsed_s`` curve at their steps
    (interpolated between logged steps); points before its first logged step (event files without it, or a run
    begun by a version that did not log it and resumed by one that does) get the seconds since the first event."""
    clock = np.array([point.wall_time - start for point in points], dtype=np.float64)
    if TRAINING_SECONDS_TAG not in available:
        return clock
    elapsed = sorted(events.Scalars(TRAINING_SECONDS_TAG), key=lambda event: event.step)
    steps = np.array([event.step for event in elapsed], dtype=np.float64)
    seconds = np.array([event.value for event in elapsed], dtype=np.float64)
    at = np.array([point.step for point in points], dtype=np.float64)
    return np.where(at >= steps[0], np.interp(at, steps, seconds), clock)


def load_runs(run_dirs: list[Path], metric: str) -> list[RunCurve]:
    """Each run's curve of ``metric``; a run that lacks it (killed before its first evaluation, say) is skipped with a
    warning while others have it.

    Raises:
        KeyError: No run has ``metric`` (naming the metrics there are).
    """
    runs: list[RunCurve] = []
    lacking: list[KeyError] = []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir, metric))
        except KeyError as error:
            lacking.append(error)
    if not runs:
        raise lacking[0]
    for error in lacking:
        logger.warning("skipping a run: %s", error.args[0])
    return runs


def _unknown_metric_message(metric: str, run_dir: Path, available: list[str]) -> str:
    hint = did_you_mean(metric, available)
    listing = ", ".join(available) if available else "none (the run logged no scalars yet)"
    return f"metric {metric!r} is not in {str(run_dir)!r}{hint}; metrics available there: {listing}"


# ---------------------------------------------------------------------------------------------- statistics
def iqm_weights(n: int) -> np.ndarray:
    """Weights ``[n]`` of the sorted values in the interquartile mean (they sum to 1).

    As rliable (``scipy.stats.trim_mean(x, 0.25)``): ``floor(n / 4)`` values at each end weigh 0, the rest equally.
    """
    if n < 1:
        raise ValueError(f"the interquartile mean needs at least one value, got n={n}")
    cut = int(0.25 * n)
    weights = np.zeros(n)
    weights[cut:n - cut] = 1.0 / (n - 2 * cut)
    return weights


def interquartile_mean(values: Sequence[float] | np.ndarray) -> float:
    """The 25% trimmed mean of ``values`` (rliable's IQM): sorted, ``floor(n / 4)`` dropped at each end, averaged."""
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

    Each of ``n_resamples`` resamples draws ``len(values)`` values with replacement (one
    ``rng.integers(0, n, size=(n_resamples, n))`` call); the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles (numpy's default linear interpolation) of the resampled statistic.
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
        estimates = np.sort(samples, axis=1) @ iqm_weights(array.size)  # the IQM of every resample at once
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------- the table
@dataclass
class RunGroup:
    """The runs of one ``(algo, env)`` and one combination of the settings that differ (``settings``)."""

    algo: str
    env: str
    runs: list[RunCurve] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """Short setting name -> value, for the settings that tell this group from the others of its (algo, env)."""
    name: str | None = None
    """A label given with ``label=``; None: ``label`` is built from algo, env and ``settings``."""

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        described = ", ".join(f"{key}={_setting_text(value)}" for key, value in self.settings.items())
        return f"{self.algo} / {self.env}" + (f" [{described}]" if described else "")

    @property
    def repeated_seeds(self) -> list[int]:
        """Seeds that more than one run of the group used (its runs are then not independent samples)."""
        counts = Counter(run.seed for run in self.runs if run.seed is not None)
        return sorted(seed for seed, count in counts.items() if count > 1)

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
    "algo": "algo", "env": "env", "settings": "settings", "seeds": "seeds", "final_mean": "final mean",
    "final_iqm": "IQM",
    "ci": "95% CI", "steps_to_threshold": "env steps to {t}", "time_to_threshold": "wall s to {t}",
    "reached": "reached {t}",
}


@dataclass
class ComparisonTable:
    """The result of :func:`compare`: one row (a dict) per ``(algo, env)``; ``str()`` is a markdown table.

    Row keys: ``algo``, ``env``, ``label``, ``settings`` (the settings that tell the group apart), ``seeds``,
    ``repeated_seeds``, ``final_mean``, ``final_iqm``, ``ci_low``, ``ci_high``, ``ci_of``, ``ci_method``,
    ``metric``, ``threshold``, ``steps_to_threshold``, ``time_to_threshold`` (means over the seeds that reached
    the threshold; None when none did or no threshold was given) and ``reached`` (how many seeds did).
    """

    rows: list[dict[str, Any]]
    groups: list[RunGroup]
    metric: str
    threshold: float | None = None
    ci_method: str = ""
    """How the CI was computed, in words (printed under the table)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def row(self, algo: str, env: str | None = None, **settings: Any) -> dict[str, Any]:
        """The row of ``algo`` (on ``env``, and with ``settings``, needed only when they tell rows apart)."""
        matches = [row for row in self.rows if row["algo"] == algo and env in (None, row["env"])
                   and all(row["settings"].get(key) == value for key, value in settings.items())]
        if len(matches) != 1:
            known = "; ".join(row["label"] for row in self.rows)
            raise KeyError(f"{len(matches)} rows match algo={algo!r} env={env!r} {settings or ''}; the table has: "
                           f"{known}")
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
        """A markdown table of the rows, with the metric, threshold, IQM and CI method above it."""
        with_settings = any(row["settings"] or row["label"] != f"{row['algo']} / {row['env']}" for row in self.rows)
        keys = [key for key in COLUMNS if (self.threshold is not None or not _is_threshold_column(key))
                and (key != "settings" or with_settings)]
        threshold = "-" if self.threshold is None else f"{self.threshold:g}"
        header = [COLUMNS[key].format(t=threshold) for key in keys]
        lines = [f"metric: {self.metric}" + ("" if self.threshold is None else f", threshold: {threshold}"),
                 f"IQM: 25% trimmed mean over runs (as rliable); {self.ci_method}", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(key, row) for key in keys) + " |" for row in self.rows]
        repeated = [row for row in self.rows if row["repeated_seeds"]]
        lines += [f"warning: {row['label']} has runs with the same seed ({', '.join(map(str, row['repeated_seeds']))})"
                  "; they are not independent samples" for row in repeated]
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
    if key == "settings":
        return row["label"].split(" [", 1)[1].rstrip("]") if row["label"].endswith("]") else (
            row["label"] if row["label"] != f"{row['algo']} / {row['env']}" else "-")
    if key == "seeds" and row["repeated_seeds"]:
        return f"{row['seeds']} (repeated seed {', '.join(map(str, row['repeated_seeds']))}!)"
    value = row[key]
    if value is None:
        return "-"
    if key == "steps_to_threshold":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else str(value)
    return str(value)


def _setting_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(runs: Iterable[RunCurve], group_by: Sequence[str] | None = None, label: str | None = None
               ) -> list[RunGroup]:
    """Runs grouped by ``(algo, env)`` and the settings that differ among them (or ``group_by``), in order of first
    appearance; seeds sorted within a group.

    Args:
        group_by: Setting names (``learning_rate`` or ``algo_config.learning_rate``) to group by instead of every
            setting that differs; runs that differ only in others are pooled.
        label: A ``str.format`` template for the row labels over ``algo``, ``env`` and the settings' short names,
            e.g. ``"{algo} lr={learning_rate}"``.
    """
    runs = list(runs)
    by_task: dict[tuple[str, str], list[RunCurve]] = {}
    for run in runs:
        by_task.setdefault((run.algo, run.env), []).append(run)
    recorded_keys = sorted({key for run in runs for key in (run.settings or {})})
    chosen = None if group_by is None else [_resolve_key(name, recorded_keys) for name in group_by]
    groups: list[RunGroup] = []
    for (algo, env), members in by_task.items():
        keys = chosen if chosen is not None else _differing_keys(members)
        split: dict[tuple[Any, ...], RunGroup] = {}
        for run in members:
            values = _group_values(run, keys, members)
            if values not in split:
                split[values] = RunGroup(algo, env, settings=dict(zip(_short_names(keys), values)))
            split[values].runs.append(run)
        groups.extend(split.values())
    for group in groups:
        group.runs.sort(key=lambda run: (run.seed is None, run.seed if run.seed is not None else 0, str(run.path)))
        if label is not None:
            group.name = _format_label(label, group)
        if group.repeated_seeds:
            logger.warning("%s: %d runs share seed(s) %s; they are not independent samples", group.label,
                           len(group.runs), group.repeated_seeds)
    return groups


def _differing_keys(runs: list[RunCurve]) -> list[str]:
    """The flattened setting keys whose values differ among ``runs`` (one (algo, env)), but for the ignored ones."""
    recorded = [run.settings for run in runs if run.settings is not None]
    every_key = sorted({key for settings in recorded for key in settings})
    return [key for key in every_key if key not in IGNORED_SETTINGS
            and len({_hashable(settings.get(key, UNKNOWN)) for settings in recorded}) > 1]


def _group_values(run: RunCurve, keys: list[str], members: list[RunCurve]) -> tuple[Any, ...]:
    if run.settings is None:  # no hparams.json: it joins the others if they agree, else stays apart
        known = {tuple(_hashable(other.settings.get(key, UNKNOWN)) for key in keys)
                 for other in members if other.settings is not None}
        return next(iter(known)) if len(known) == 1 else tuple(UNKNOWN for _ in keys)
    return tuple(_hashable(run.settings.get(key, UNKNOWN)) for key in keys)


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _resolve_key(name: str, every_key: list[str]) -> str:
    if name in every_key:
        return name
    matches = [key for key in every_key if key.rsplit(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    short = sorted({key.rsplit(".", 1)[-1] for key in every_key})
    if not matches:
        raise ValueError(f"group_by: no run records a setting {name!r}{did_you_mean(name, short)}; settings in "
                         f"hparams.json: {', '.join(short)}")
    raise ValueError(f"group_by: {name!r} is ambiguous ({', '.join(matches)}); name one of them")


def _short_names(keys: list[str]) -> list[str]:
    """``algo_config.learning_rate`` -> ``learning_rate`` unless two keys would share a short name."""
    short = [key.rsplit(".", 1)[-1] for key in keys]
    return [name if short.count(name) == 1 else key for name, key in zip(short, keys)]


def _format_label(template: str, group: RunGroup) -> str:
    first = group.runs[0].settings or {}
    fields = {key.rsplit(".", 1)[-1]: value for key, value in first.items()}
    fields.update({key.replace(".", "_"): value for key, value in first.items()})
    fields.update(group.settings)
    fields.update(algo=group.algo, env=group.env, seeds=len(group.runs))
    try:
        return template.format(**{key: _setting_text(value) for key, value in fields.items()})
    except (KeyError, IndexError, ValueError, AttributeError) as error:  # {x.y}: an attribute of a field
        raise ValueError(f"label {template!r}: {error} is not a field; use {{algo}}, {{env}}, {{seeds}} or a setting's "
                         f"name, e.g. {{learning_rate}}") from None


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
        "algo": group.algo, "env": group.env, "label": group.label, "settings": dict(group.settings),
        "seeds": len(group.runs), "repeated_seeds": group.repeated_seeds,
        "final_mean": float(finals.mean()), "final_iqm": interquartile_mean(finals),
        "ci_low": low, "ci_high": high, "ci_of": ci_of,
        "ci_method": ci_description(ci_of, confidence, n_resamples, seed), "metric": metric, "threshold": threshold,
        "steps_to_threshold": None, "time_to_threshold": None, "reached": 0,
    }
    if threshold is not None:
        hits = [hit for hit in (run.first_reaching(threshold) for run in group.runs) if hit is not None]
        row["reached"] = len(hits)
        if hits:
            row["steps_to_threshold"] = float(np.mean([steps for steps, _ in hits]))
            row["time_to_threshold"] = float(np.mean([seconds for _, seconds in hits]))
    return row


def ci_description(ci_of: str, confidence: float, n_resamples: int, seed: int) -> str:
    """The CI method in words, as the table prints it."""
    statistic = "mean" if ci_of == "mean" else "IQM"
    return (f"{confidence:.0%} CI: percentile bootstrap of the {statistic} over runs ({n_resamples:,} resamples with "
            f"replacement, seed {seed})")


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
    group_by: Sequence[str] | None = None,
    label: str | None = None,
) -> ComparisonTable:
    """Compares runs grouped by ``(algo, env)`` and the settings that differ, over their seeds.

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
        group_by: Group by these settings only (see :func:`group_runs`), pooling runs that differ in others.
        label: Row labels, a template such as ``"{algo} lr={learning_rate}"``.

    Returns:
        A :class:`ComparisonTable`: ``.rows`` (dicts), ``str()`` (markdown), ``.plot(path)``.
    """
    if ci_of not in CI_STATISTICS:
        raise ValueError(f"ci_of must be one of {CI_STATISTICS}, got {ci_of!r}")
    if out is not None and Path(out).suffix.lower() != ".png":
        raise ValueError(f"out={str(out)!r}: the learning curves are a PNG; give a path ending in .png")
    paths = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not paths:
        raise ValueError("compare() needs at least one run folder")
    runs = load_runs(find_run_dirs(paths), metric)
    groups = group_runs(runs, group_by=group_by, label=label)
    rows = [summarize(group, metric=metric, threshold=threshold, ci_of=ci_of, confidence=confidence,
                      n_resamples=n_resamples, seed=seed) for group in groups]
    table = ComparisonTable(rows=rows, groups=groups, metric=metric, threshold=threshold,
                            ci_method=ci_description(ci_of, confidence, n_resamples, seed))
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
        raise ImportError("plotting learning curves needs matplotlib: pip install -e '.[compare]'") from error
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
