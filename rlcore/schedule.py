"""When a replay algorithm trains: one rule for every source of data (this process, workers, Ray actors)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplayPhases:
    """Training phases of ``gradient_steps`` updates, one per ``train_freq`` vector steps of ``num_envs`` sub-envs once
    more than ``learning_starts`` env steps are in: the single-process rule, which workers' runs keep too (so their
    gradient-steps-per-env-step ratio is the single-process one).

    Args:
        train_freq: Vector steps per phase.
        learning_starts: Env steps before the first phase.
        num_envs: Sub-envs of one vector env (of one worker).
        num_workers: Workers collecting (0: this process).
        worker_lead: Env steps workers may collect beyond the next phase (0: one period per worker; None: no limit).
    """

    train_freq: int
    learning_starts: int
    num_envs: int
    num_workers: int = 0
    worker_lead: int | None = 0

    @property
    def period(self) -> int:
        """Env steps per phase."""
        return self.train_freq * self.num_envs

    def due(self, env_steps: int) -> int:
        """Phases a single-process run has taken by ``env_steps``."""
        return max(0, env_steps // self.period - self.learning_starts // self.period)

    def env_steps_of(self, phase: int) -> int:
        """The env steps at which a single-process run takes phase ``phase`` (0, 1, ...); the phase trains with the
        schedules (target sync, exploration) of that step."""
        return (phase + 1 + self.learning_starts // self.period) * self.period

    def collection_limit(self, phases_done: int) -> int | None:
        """How far workers may collect before the learner catches up: the env steps of the next phase plus the lead
        (None: no limit, workers run free as in Ape-X)."""
        if self.worker_lead is None:
            return None
        lead = self.worker_lead or self.period * max(self.num_workers, 1)
        return self.learning_starts + (phases_done + 1) * self.period + lead
