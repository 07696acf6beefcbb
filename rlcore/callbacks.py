"""Callbacks: user code the training loop calls at fixed points, as in Stable-Baselines3.

Pass them as ``rlcore.train(..., callbacks=[...])``, ``Trainer(..., callbacks=[...])`` or
``Trainer.resume(path, callbacks=[...])``. Every hook gets the :class:`~rlcore.trainer.Trainer`, whose
``env_steps``, ``history`` (every evaluation), ``best_eval``, ``algo`` and ``run_dir`` they may read, and whose
:meth:`~rlcore.trainer.Trainer.log_scalars` writes custom scalars to the run's TensorBoard file at the current
env step. The hooks run in the learner's process, with or without worker processes, and on resumed runs.

A callback that needs state across a resume should derive it from ``trainer.history`` (restored from the
checkpoint), as :class:`StopOnNoImprovement` does, rather than keep counters of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rlcore.trainer import Trainer

logger = logging.getLogger(__name__)


class Callback:
    """Base class: override the hooks you need; each default does nothing.

    Hooks, in the order a run meets them: :meth:`on_training_start`, then per loop iteration
    :meth:`on_iteration` (and :meth:`on_evaluation` / :meth:`on_checkpoint` when one happens during it), and
    :meth:`on_training_end` once training stopped (after the final evaluation and checkpoint).
    """

    def on_training_start(self, trainer: Trainer) -> None:
        """Before the first iteration of this session (a resumed run starts a new session)."""

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> bool | None:
        """After each loop iteration (collection + learning).

        Args:
            metrics: The latest training metrics (``train/...``, ``rollout/...``); ``trainer.env_steps`` is the
                step counter.

        Returns:
            False to stop training (the run then finishes normally: last evaluation, checkpoint, ``final/``).
        """
        return None

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> bool | None:
        """After each evaluation; ``metrics`` holds ``eval/mean_reward`` and friends.

        Returns:
            False to stop training (SB3's ``StopTrainingOnRewardThreshold`` / ``...NoModelImprovement``).
        """
        return None

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a resumable checkpoint was written to ``path``."""

    def on_training_end(self, trainer: Trainer) -> None:
        """After the run's final evaluation and checkpoint."""


def _go_on(answers: list[Any]) -> bool:
    """Whether training goes on: every callback returned None or something true (a numpy ``False_`` computed from
    statistics stops it as ``False`` does, as in SB3)."""
    return all(answer is None or bool(answer) for answer in answers)


class CallbackList(Callback):
    """Calls each callback in turn; a stop request from any of them stops training."""

    def __init__(self, callbacks: list[Callback] | Callback | None = None) -> None:
        self.callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be rlcore.callbacks.Callback instances, got {callback!r}")

    def on_training_start(self, trainer: Trainer) -> None:
        for callback in self.callbacks:
            callback.on_training_start(trainer)

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        return _go_on([callback.on_iteration(trainer, metrics) for callback in self.callbacks])

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        return _go_on([callback.on_evaluation(trainer, metrics) for callback in self.callbacks])

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(trainer, path)

    def on_training_end(self, trainer: Trainer) -> None:
        for callback in self.callbacks:
            callback.on_training_end(trainer)


class StopOnNoImprovement(Callback):
    """Stops training when ``patience`` evaluations in a row did not beat the best one before them by more
    than ``min_delta`` (SB3's ``StopTrainingOnNoModelImprovement``).

    Args:
        patience: Evaluations without improvement that are tolerated; the next one without stops.
        min_delta: How much ``eval/mean_reward`` must rise to count as an improvement.
        min_evaluations: Evaluations before the rule applies at all.
    """

    def __init__(self, patience: int, *, min_delta: float = 0.0, min_evaluations: int = 0) -> None:
        if patience < 0 or min_evaluations < 0:
            raise ValueError(f"patience and min_evaluations must be >= 0, got {patience} and {min_evaluations}")
        self.patience = patience
        self.min_delta = min_delta
        self.min_evaluations = min_evaluations

    def evaluations_without_improvement(self, rewards: list[float]) -> int:
        """How many of the latest ``rewards`` came after the last improvement."""
        best, since = -float("inf"), 0
        for reward in rewards:
            if reward > best + self.min_delta:
                best, since = reward, 0
            else:
                since += 1
        return since

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> bool:
        rewards = [entry["eval/mean_reward"] for entry in trainer.history]
        if len(rewards) <= self.min_evaluations:
            return True
        since = self.evaluations_without_improvement(rewards)
        if since > self.patience:
            logger.info("stopping: %d evaluations without improvement over %.2f (patience %d)", since,
                        max(rewards), self.patience)
            return False
        return True


class RecordVideo(Callback):
    """Records ``episodes`` deterministic episodes to ``<run_dir>/videos/step<env steps>.<format>`` every
    ``every_env_steps`` env steps (and at the end of training), and logs their mean return as ``video/mean_reward``.

    The episodes are played as evaluation plays them: on an env built as evaluation builds it (the run's env, or a
    copy of an env instance or of a vector env's sub-env, with the run's ``env_kwargs`` and ``wrappers``), by a fresh
    policy state per episode for memory policies; the env must render ``rgb_array`` frames (an id or class is made
    with ``render_mode="rgb_array"``; an instance or vector env must have been made with it).

    A recording that fails (an env without frames, a full disk) logs a warning naming why and training goes on;
    a bad ``video_format`` or ``folder``, or imageio missing, raises here.

    Args:
        every_env_steps: Env steps between recordings.
        episodes: Episodes per video.
        video_format: ``mp4`` (needs imageio-ffmpeg) or ``gif``.
        folder: Where videos go; default ``<run_dir>/videos``. A run without a folder (``log_dir=None``) records
            only with ``folder`` (it warns once at the start otherwise).
    """

    def __init__(self, every_env_steps: int, *, episodes: int = 1, video_format: str = "mp4",
                 folder: str | Path | None = None) -> None:
        if every_env_steps < 1 or episodes < 1:
            raise ValueError(f"every_env_steps and episodes must be >= 1, got {every_env_steps} and {episodes}")
        if video_format not in ("mp4", "gif"):
            raise ValueError(f"video_format must be 'mp4' or 'gif', got {video_format!r}")
        from rlcore.evaluation import check_video_path

        check_video_path(f"video.{video_format}")  # imageio (and imageio-ffmpeg for mp4) is installed
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise ValueError(f"RecordVideo folder {str(folder)!r} is a file, not a folder")
        self.every_env_steps = every_env_steps
        self.episodes = episodes
        self.video_format = video_format
        self.folder = Path(folder) if folder is not None else None
        self._next = every_env_steps
        self._failures: set[str] = set()
        self.written: list[Path] = []

    def on_training_start(self, trainer: Trainer) -> None:
        self._next = (trainer.env_steps // self.every_env_steps + 1) * self.every_env_steps
        if not self._records(trainer):
            logger.warning("RecordVideo records nothing: the run writes no files (log_dir=None); pass "
                           "RecordVideo(..., folder=...) to say where its videos go")

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.env_steps >= self._next:
            self._next = (trainer.env_steps // self.every_env_steps + 1) * self.every_env_steps
            self._record(trainer)

    def on_training_end(self, trainer: Trainer) -> None:
        if not self.written or self.written[-1].stem != f"step{trainer.env_steps}":
            self._record(trainer)

    def _records(self, trainer: Trainer) -> bool:
        return self.folder is not None or trainer.logger.run_dir is not None

    def _record(self, trainer: Trainer) -> None:
        if not self._records(trainer):
            return  # the run writes no files (warned at its start)
        folder = self.folder or (trainer.run_dir / "videos")
        path = folder / f"step{trainer.env_steps}.{self.video_format}"
        from rlcore.evaluation import record_video

        try:
            folder.mkdir(parents=True, exist_ok=True)
            # the env, env_kwargs and wrappers evaluation uses (trainer.agent() acts as evaluation does)
            metrics: dict[str, Any] = record_video(trainer.agent(), trainer.eval_env_spec, path, self.episodes,
                                                   env_kwargs=trainer._eval_env_kwargs(),
                                                   wrappers=trainer._eval_wrappers())
        except Exception as error:  # noqa: BLE001  (a video is never worth the run)
            reason = f"{type(error).__name__}: {error}"
            if reason not in self._failures:  # each reason once: an env without frames fails every time
                self._failures.add(reason)
                logger.warning("RecordVideo: no video at %d env steps (%s); training goes on", trainer.env_steps,
                               reason)
            else:
                logger.debug("RecordVideo: no video at %d env steps (%s)", trainer.env_steps, reason)
            return
        trainer.log_scalars({"video/mean_reward": metrics["eval/mean_reward"]})
        self.written.append(path)


__all__ = ["Callback", "CallbackList", "RecordVideo", "StopOnNoImprovement"]
