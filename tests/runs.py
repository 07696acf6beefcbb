"""Test helpers for runs that stop part-way: a callback that 'kills' a run right after a checkpoint."""

from __future__ import annotations

from pathlib import Path

from rlcore.callbacks import Callback
from rlcore.trainer import Trainer


class SimulatedKill(Exception):
    """Raised by :class:`KillAfterCheckpoint`: the run stops as if SIGKILLed right after a checkpoint."""


class KillAfterCheckpoint(Callback):
    """Raises :class:`SimulatedKill` once a checkpoint is written at or after ``env_steps``."""

    def __init__(self, env_steps: int) -> None:
        self.env_steps = env_steps

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        if trainer.env_steps >= self.env_steps:
            raise SimulatedKill(f"killed after the checkpoint at {trainer.env_steps} env steps")


def run_until_killed(trainer: Trainer, env_steps: int) -> Trainer:
    """Runs ``trainer`` until its first checkpoint at or after ``env_steps``, then stops it as a kill would (no final
    evaluation, checkpoint or agent); returns it."""
    trainer.callbacks.callbacks.append(KillAfterCheckpoint(env_steps))
    try:
        trainer.run()
    except SimulatedKill:
        return trainer
    raise AssertionError(f"the run ended without a checkpoint at or after {env_steps} env steps")
