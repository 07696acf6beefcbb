"""``rlcore sweep``: algorithms x envs x seeds x a hyperparameter grid, one Ray Tune trial per combination.

A sweep file (YAML) lists what to cross and the settings every trial shares::

    algos: [dqn, ppo]
    envs: [CartPole-v1]
    seeds: 3                      # seeds 0..2, or a list: [0, 7]
    grid:                         # every combination of these values
      learning_rate: [1.0e-3, 3.0e-4]
    total_env_steps: 20000        # any TrainConfig or algorithm field, for every trial
    log_dir: runs/sweeps/lr       # default: runs/sweeps/<file name>-<time>
    ray_address: null             # join a cluster ("auto", "ray://head:10001"); default: a local loopback Ray
    cpus_per_trial: 1
    max_concurrent_trials: null

Each trial is an ordinary rlcore run (the algorithm's preset, then the shared settings, then the trial's grid
point) in the usual folder ``<log_dir>/<env>/<algo>/seed<k>-<time>/`` (TensorBoard events, checkpoints, the best
and final agents), so ``rlcore compare <log_dir>`` and TensorBoard work on a sweep as on any runs. Each trial
reports every evaluation to Tune (``mean_reward``, ``best_mean_reward``, ``env_steps``, the ``node_id`` it runs
on); Tune's own records go to ``<log_dir>/tune/``. The result table groups trials by (algo, env, grid point),
averages over seeds, and marks the best grid point of each (algo, env).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from rlcore.callbacks import Callback
from rlcore.interrupt import signal_handlers_kept

if TYPE_CHECKING:  # pragma: no cover
    from rlcore.trainer import Trainer

logger = logging.getLogger(__name__)

SWEEP_KEYS = frozenset({"algos", "envs", "seeds", "grid", "log_dir", "name", "ray_address", "cpus_per_trial",
                        "max_concurrent_trials"})
"""Keys of a sweep file that are not training settings."""
TUNE_DIR = "tune"
"""Sub-folder of the sweep's log dir holding Ray Tune's experiment records."""
METRIC = "mean_reward"
"""What trials report to Tune: the mean reward of the latest evaluation."""
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(value: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string; numbers written that way become floats."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_coerce(item) for item in value]
    return value


@dataclass
class SweepSpec:
    """What a sweep crosses and the settings its trials share."""

    algos: list[str]
    envs: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    """TrainConfig or algorithm fields for every trial (over the presets)."""
    log_dir: str | None = None
    """Root of the trials' run folders; ``runs/sweeps/<name>`` by default."""
    name: str = "sweep"
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    max_concurrent_trials: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], name: str = "sweep") -> SweepSpec:
        """Reads the sweep file's mapping; keys outside :data:`SWEEP_KEYS` are shared training settings."""
        values = dict(values)
        missing = [key for key in ("algos", "envs") if key not in values]
        if missing:
            raise ValueError(f"a sweep needs {missing}; e.g. algos: [dqn, ppo], envs: [CartPole-v1]")
        seeds = values.get("seeds", 1)
        if not (isinstance(seeds, int) and seeds >= 1 or isinstance(seeds, list) and seeds
                and all(isinstance(seed, int) and seed >= 0 for seed in seeds)):
            raise ValueError(f"seeds: {seeds!r} must be a count >= 1 (seeds 0..K-1) or a list of seeds >= 0, "
                             "e.g. seeds: 3 or seeds: [0, 7]")
        seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        grid_values = values.get("grid") or {}
        if not isinstance(grid_values, dict):
            raise ValueError(f"grid: {grid_values!r} must map settings to their values, e.g. grid: {{learning_rate: "
                             "[1.0e-3, 3.0e-4]}")
        grid = {key: _coerce(list(options) if isinstance(options, list) else [options])
                for key, options in grid_values.items()}
        for key, options in grid.items():
            if not options:
                raise ValueError(f"grid: {key} has no values")
        settings = {key: _coerce(value) for key, value in values.items() if key not in SWEEP_KEYS}
        for where, keys in (("grid", grid), ("the shared settings", settings)):
            if "seed" in keys:  # every trial's seed is one of seeds: this one was overwritten silently
                raise ValueError(f"seed in {where}: a sweep's seeds are its `seeds:` (a count or a list), which each "
                                 "trial runs with; put the seeds there")
        return cls(
            algos=_as_list(values["algos"]), envs=_as_list(values["envs"]), seeds=seed_list, grid=grid,
            settings=settings, log_dir=values.get("log_dir"), name=str(values.get("name", name)),
            ray_address=values.get("ray_address"), cpus_per_trial=float(values.get("cpus_per_trial", 1.0)),
            max_concurrent_trials=values.get("max_concurrent_trials"),
        )

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point without a grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[key] for key in keys))]

    def trials(self, log_dir: Path) -> list[dict[str, Any]]:
        """One JSON-able recipe per (algo, env, grid point, seed); each one is checked here as :func:`rlcore.train`
        would check it (the env's spaces, the settings' names and ranges), before any trial starts."""
        from rlcore.api import check_run
        from rlcore.env import env_spaces

        recipes = []
        spaces = {env: env_spaces(env) for env in self.envs}
        for algo, env, point, seed in itertools.product(self.algos, self.envs, self.grid_points(), self.seeds):
            settings = {**self.settings, **point, "seed": seed, "log_dir": str(log_dir), "progress_bar": False}
            check_run(algo, env, settings, spaces[env])  # what train would refuse fails now, before Ray starts
            recipes.append({"algo": algo, "env": env, "seed": seed, "params": point, "settings": settings})
        return recipes


def _as_list(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def load_sweep(path: str | Path) -> SweepSpec:
    """Reads a sweep file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path}: {'a folder' if path.is_dir() else 'no such file'}; pass a "
                                "YAML file (algos:, envs:, seeds:, grid:, ...)")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping (algos:, envs:, seeds:, grid:, ...)")
    return SweepSpec.from_dict(values, name=path.stem)


# ------------------------------------------------------------------------------------------ one trial
class TuneReport(Callback):
    """Reports each evaluation of a trial's run to Ray Tune."""

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        import ray
        from ray import tune

        tune.report({METRIC: metrics["eval/mean_reward"], "best_mean_reward": trainer.best_eval,
                     "env_steps": trainer.env_steps, "run_dir": str(trainer.run_dir), "wall_time": trainer.elapsed(),
                     "node_id": ray.get_runtime_context().get_node_id()})


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune's function trainable: one ordinary rlcore run from a recipe of :meth:`SweepSpec.trials`."""
    from rlcore.api import split_settings
    from rlcore.trainer import TrainConfig, Trainer

    recipe = config["trial"]
    train_settings, algo_settings = split_settings(recipe["algo"], recipe["env"], recipe["settings"])
    train_settings.setdefault("threads", max(1, int(config.get("threads", 1))))  # the trial's CPUs, unless set
    if not train_settings.get("eval_freq", TrainConfig.eval_freq):
        raise ValueError("a sweep trial reports its evaluations: set eval_freq > 0")
    Trainer(recipe["algo"], recipe["env"], TrainConfig(**train_settings), algo_settings, callbacks=[TuneReport()]).run()


# ------------------------------------------------------------------------------------------ the sweep
@dataclass
class SweepResult:
    """What :func:`run_sweep` did: every trial's outcome and the table over seeds."""

    trials: list[dict[str, Any]]
    """Per trial: ``algo, env, seed, params, run_dir, final`` (last evaluation), ``best``, ``env_steps``,
    ``node_id`` (the Ray node it ran on), ``error`` (None when it finished)."""
    rows: list[dict[str, Any]]
    """Per (algo, env, grid point): ``seeds``, ``final_mean``, ``final_std``, ``best_mean``, ``best`` (True for
    the best grid point of its algo and env, by ``final_mean``)."""
    log_dir: Path
    tune_dir: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [trial for trial in self.trials if trial["error"] is not None]

    def to_markdown(self) -> str:
        """The table, best grid point of each (algo, env) marked with ``*``."""
        lines = ["| algo | env | params | seeds | final (mean ± std) | best eval (mean) |", "|---|---|---|---|---|---|"]
        for row in self.rows:
            mark = " *" if row["best"] else ""
            lines.append(f"| {row['algo']}{mark} | {row['env']} | {_params_label(row['params'])} | {row['seeds']} | "
                         f"{row['final_mean']:.2f} ± {row['final_std']:.2f} | {row['best_mean']:.2f} |")
        if self.failed:
            lines.append(f"\n{len(self.failed)} trial(s) failed: "
                         + "; ".join(f"{t['algo']} {t['env']} seed {t['seed']}: {t['error']}" for t in self.failed))
        return "\n".join(lines)


def _params_label(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items()) or "-"


def summarize(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups finished trials by (algo, env, grid point): mean and std over seeds of the final evaluation, mean of
    the best one; marks the best grid point of each (algo, env)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for trial in trials:
        if trial["error"] is None and trial["final"] is not None:
            key = (trial["algo"], trial["env"], json.dumps(trial["params"], sort_keys=True))
            groups.setdefault(key, []).append(trial)
    rows = []
    for (algo, env, params), members in groups.items():
        finals = np.array([member["final"] for member in members], dtype=np.float64)
        bests = np.array([member["best"] for member in members], dtype=np.float64)
        rows.append({"algo": algo, "env": env, "params": json.loads(params), "seeds": len(members),
                     "final_mean": float(finals.mean()), "final_std": float(finals.std()),
                     "best_mean": float(bests.mean()), "best": False,
                     "run_dirs": [member["run_dir"] for member in members]})
    for algo, env in {(row["algo"], row["env"]) for row in rows}:
        candidates = [row for row in rows if row["algo"] == algo and row["env"] == env]
        max(candidates, key=lambda row: row["final_mean"])["best"] = True
    rows.sort(key=lambda row: (row["algo"], row["env"], -row["final_mean"]))
    return rows


def _trial_dirname(trial: Any) -> str:
    recipe = trial.config["trial"]
    label = "-".join(f"{key}={value}" for key, value in recipe["params"].items())
    name = f"{recipe['algo']}-{recipe['env']}-seed{recipe['seed']}-{label}-{trial.trial_id}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:120]


def _trial_resources(spec: SweepSpec) -> Any:
    """One bundle for the trial, plus one per Ray collector actor when trials use ``backend="ray"`` workers: a CPU
    and the ``worker_resources`` the actors ask for (the actors run inside the trial's placement group)."""
    from ray import tune

    from rlcore.distributed.ray_backend import check_worker_resources

    workers = int(spec.settings.get("num_workers", 0))
    if workers > 0 and spec.settings.get("backend") == "ray":
        actor = {"CPU": 1.0, **check_worker_resources(spec.settings.get("worker_resources"))}
        return tune.PlacementGroupFactory([{"CPU": spec.cpus_per_trial}] + [dict(actor) for _ in range(workers)])
    return {"cpu": spec.cpus_per_trial}


def run_sweep(sweep: SweepSpec | Mapping[str, Any] | str | Path, *, log_dir: str | Path | None = None,
              verbose: int = 0) -> SweepResult:
    """Runs every trial of ``sweep`` (a :class:`SweepSpec`, its mapping, or a sweep file) with Ray Tune.

    Joins ``sweep.ray_address`` or starts a local loopback Ray (shut down at the end); when Ray is already
    initialized in this process, uses it. ``log_dir`` overrides the sweep's.
    """
    if isinstance(sweep, (str, Path)):
        sweep = load_sweep(sweep)
    elif not isinstance(sweep, SweepSpec):
        sweep = SweepSpec.from_dict(sweep)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(log_dir or sweep.log_dir or Path("runs") / "sweeps" / f"{sweep.name}-{stamp}").absolute()
    recipes = sweep.trials(root)  # Tune runs trials in their own working folders: every path is absolute
    from rlcore.distributed.ray_backend import init_ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no Tune TensorBoard files among the runs
    started = init_ray(sweep.ray_address)
    try:
        results = _fit(sweep, recipes, root, verbose)
    finally:
        if started:
            import ray

            ray.shutdown()
    trials = [_outcome(result) for result in results]
    trials.sort(key=lambda trial: (trial["algo"], trial["env"], json.dumps(trial["params"]), trial["seed"]))
    result = SweepResult(trials, summarize(trials), root, root / TUNE_DIR)
    logger.info("sweep of %d trials done (%d failed); runs in %s", len(trials), len(result.failed), root)
    return result


def _fit(sweep: SweepSpec, recipes: list[dict[str, Any]], root: Path, verbose: int) -> Any:
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    trainable = tune.with_resources(run_trial, _trial_resources(sweep))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(recipes), "threads": max(1, int(sweep.cpus_per_trial))},
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", max_concurrent_trials=sweep.max_concurrent_trials,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=sweep.name, storage_path=str(root / TUNE_DIR), verbose=verbose,
                                  callbacks=[CSVLoggerCallback(), JsonLoggerCallback()]),
    )
    with signal_handlers_kept(*(getattr(signal, name) for name in ("SIGINT", "SIGUSR1") if hasattr(signal, name))):
        return tuner.fit()


def _outcome(result: Any) -> dict[str, Any]:
    """One trial's row from Tune's result: its recipe, last and best evaluation, run folder, error."""
    recipe = result.config["trial"]
    metrics = result.metrics or {}
    final = metrics.get(METRIC)
    return {
        "algo": recipe["algo"], "env": recipe["env"], "seed": recipe["seed"], "params": recipe["params"],
        "run_dir": metrics.get("run_dir"), "final": None if final is None or math.isnan(final) else float(final),
        "best": metrics.get("best_mean_reward"), "env_steps": metrics.get("env_steps"),
        "node_id": metrics.get("node_id"),
        "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}"[:500],
    }
