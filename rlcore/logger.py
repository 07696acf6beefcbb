"""Where metrics go: TensorBoard event files and a progress bar on the console.

Keys are ``scope/name`` with SB3's names (``rollout/ep_rew_mean``, ``train/loss``,
``eval/mean_reward``, ``time/fps``); the x axis is always environment steps.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

logger = logging.getLogger(__name__)


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO, ``LEVEL logger: message`` otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}" + (
            "\n" + self.formatException(record.exc_info) if record.exc_info else "")


@contextlib.contextmanager
def script_console_logging() -> Iterator[None]:
    """Within: rlcore's INFO lines (the preset applied, the steps a run takes, where its best agent is) go to stderr
    as the shell shows them, when the program has configured no logging (a plain script; SB3's ``verbose=1``).
    A program with a root handler keeps its own logging; the ``rlcore`` logger is restored afterwards."""
    package, root = logging.getLogger("rlcore"), logging.getLogger()
    if root.handlers or package.handlers or package.level != logging.NOTSET:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(logging.NOTSET)

HPARAMS_FILE = "hparams.json"
"""A run folder's record of every setting (:meth:`Logger.log_hparams`), also the mark that a run started there."""

TRAINING_SECONDS_TAG = "time/elapsed_s"
"""The scalar of a run's training seconds over all its sessions (a resumed run continues the count), logged with
every group of metrics; comparisons read wall time to a threshold from it."""


def read_hparams(run_dir: Path) -> Any:
    """The parsed ``hparams.json`` of ``run_dir``, or None without one.

    Raises:
        json.JSONDecodeError: The file is not valid JSON.
    """
    path = run_dir / HPARAMS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class Logger:
    """Writes scalars to TensorBoard (when ``run_dir`` is given) and keeps the latest values.

    Args:
        run_dir: Folder for the event files; ``None`` keeps metrics in memory only.
        purge_step: When resuming, events at or after this step from the killed run are
            dropped, so curves do not double back.
    """

    def __init__(self, run_dir: str | Path | None, *, purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.latest: dict[str, float] = {}
        self._writer = None
        if self.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.run_dir), purge_step=purge_step)

    def log_scalars(self, metrics: dict[str, float], step: int) -> None:
        """Records each ``scope/name -> value`` at x = ``step`` (env steps)."""
        self.latest.update(metrics)
        if self._writer is not None:
            for key, value in metrics.items():
                self._writer.add_scalar(key, value, step)

    def log_hparams(self, hparams: dict[str, Any]) -> None:
        """Records the run's settings in TensorBoard's HParams view, as a markdown table (Text tab) and as JSON.

        The HParams view gets the flattened settings (``train.seed``, ``algo_config.learning_rate``, ...)
        plus the library versions (``version.torch``, ...); numbers stay numbers, everything else
        (lists, None, booleans) becomes a string. Only the per-run session summary is written, not an
        experiment summary, so TensorBoard builds the table's columns from the union of all runs'
        settings (runs of different algorithms have different fields) and offers every scalar tag of
        the run (``eval/mean_reward``, ...) as a metric column.
        """
        if self._writer is None or self.run_dir is None:
            return
        flat = _flatten(hparams)
        rows = "\n".join(f"| {key} | {value} |" for key, value in sorted(flat.items()))
        self._writer.add_text("hyperparameters", f"| setting | value |\n|---|---|\n{rows}", 0)
        self._writer.add_text("versions", _versions_markdown(), 0)
        self._writer.file_writer.add_summary(_hparams_session_summary(flat))
        _replace_file(self.run_dir / HPARAMS_FILE, json.dumps(hparams, indent=2, default=str))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _hparams_session_summary(flat: dict[str, Any]) -> Any:
    """The HParams plugin's session-start summary for the flattened settings and the library versions."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    values = {key: hparam_value(value) for key, value in flat.items()}
    values.update({f"version.{name}": version for name, version in library_versions().items()})
    _, session_start, _ = hparams_summaries(values, {})
    return session_start


def hparam_value(value: Any) -> int | float | str:
    """A setting as the HParams view accepts it: ints and floats as they are, anything else as a string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value) if isinstance(value, list | bool) or value is None else str(value)


def library_versions() -> dict[str, str]:
    """Versions of python, rlcore, torch, gymnasium and numpy, whole: the imported module's ``__version__`` where
    it has one (``2.11.0+cu130``: a wheel's metadata may drop the local part that names the CUDA build)."""
    versions = {"python": platform.python_version()}
    for package in ("rlcore", "torch", "gymnasium", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
        if package != "rlcore":  # rlcore's __version__ is the source's, the metadata the installed build's
            with contextlib.suppress(ImportError, AttributeError):
                versions[package] = str(importlib.import_module(package).__version__)
    return versions


def _versions_markdown() -> str:
    return "\n".join(f"- {name}: {version}" for name, version in library_versions().items())


REFRESH_PER_SECOND = 10
"""How often the progress bar redraws (rich's default)."""


class ProgressBar:
    """A rich progress bar over env steps showing the speed, the latest return and the latest (and best) evaluation.

    While it is shown, log records go through its console (above the bar), never onto the bar's line: rich
    redirects ``sys.stdout``/``sys.stderr`` while the bar is live, and the bar points the logging handlers that
    write to the terminal's streams (``logging.basicConfig``'s, the ``rlcore`` command's) at those redirections
    until it closes.

    Args:
        total_env_steps: The bar's end.
        description: Text before the bar (``dqn CartPole-v1``).
        enabled: False shows nothing (every method is then a no-op).
        start: Env steps already done (a resumed run).
        best_eval: The best evaluation so far (a resumed run's), or None.
        console: The rich console to draw on (default: rich's, on stdout).
    """

    def __init__(self, total_env_steps: int, description: str, enabled: bool = True, start: int = 0,
                 console: Any = None, best_eval: float | None = None) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._rerouted: list[tuple[logging.StreamHandler, Any]] = []
        self.best_eval = best_eval
        self._last_update = -float("inf")
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.completed:,}/{task.total:,} steps"),
            TextColumn("{task.fields[fps]} steps/s  return {task.fields[ret]}  eval {task.fields[eval]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
        )
        self._total = total_env_steps
        self._task = self._progress.add_task(
            description, total=total_env_steps, completed=start, fps="-", ret="-", eval="-"
        )
        originals = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
        self._progress.start()
        self._route_log_handlers(originals)

    def _route_log_handlers(self, originals: tuple[Any, ...]) -> None:
        """Points every logging handler that writes to the real stdout/stderr at rich's redirection of it."""
        if sys.stderr in originals and sys.stdout in originals:
            return  # not redirected (not a terminal): nothing to glue onto
        for handler in _stream_handlers():
            stream = handler.stream
            if stream in (originals[1], originals[3]) and sys.stderr not in originals:
                self._rerouted.append((handler, handler.setStream(sys.stderr)))
            elif stream in (originals[0], originals[2]) and sys.stdout not in originals:
                self._rerouted.append((handler, handler.setStream(sys.stdout)))

    def due(self) -> bool:
        """Whether an :meth:`update` now would be seen: the bar redraws :data:`REFRESH_PER_SECOND` times a second,
        so values given between two redraws never show (the trainer skips building them: it steps a single env
        thousands of times a second)."""
        return self._progress is not None and time.monotonic() - self._last_update >= 1.0 / REFRESH_PER_SECOND

    def update(self, env_steps: int, metrics: dict[str, float]) -> None:
        if self._progress is None:
            return
        self._last_update = time.monotonic()
        fields: dict[str, Any] = {"completed": env_steps}
        if env_steps > self._total:  # the last iteration collected past total_env_steps (whole rollouts)
            self._total = fields["total"] = env_steps
        if "time/fps" in metrics:
            fields["fps"] = f"{metrics['time/fps']:.0f}"
        if "rollout/ep_rew_mean" in metrics:
            fields["ret"] = f"{metrics['rollout/ep_rew_mean']:.1f}"
        if "eval/mean_reward" in metrics:
            latest = float(metrics["eval/mean_reward"])
            self.best_eval = latest if self.best_eval is None else max(self.best_eval, latest)
            fields["eval"] = f"{latest:.1f} (best {self.best_eval:.1f})"
        self._progress.update(self._task, **fields)

    def close(self) -> None:
        if self._progress is not None:
            for handler, stream in reversed(self._rerouted):
                handler.setStream(stream)
            self._rerouted.clear()
            self._progress.stop()
            self._progress = None


def _replace_file(path: Path, text: str) -> None:
    """Writes ``text`` to a fresh file next to ``path`` and renames it over ``path``: a symlink at ``path`` (say,
    planted in a run folder from someone else) is replaced, never followed."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if hasattr(os, "fchmod"):  # readable like the event files, not mkstemp's 0600
                os.fchmod(handle.fileno(), 0o644)
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _stream_handlers() -> list[logging.StreamHandler]:
    """The StreamHandlers of the root logger and of every logger that has its own."""
    loggers = [logging.getLogger()] + [item for item in logging.Logger.manager.loggerDict.values()
                                       if isinstance(item, logging.Logger)]
    found: list[logging.StreamHandler] = []
    for item in loggers:
        for handler in item.handlers:
            if type(handler) is logging.StreamHandler and handler not in found:
                found.append(handler)
    return found
