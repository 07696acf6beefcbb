"""Collecting with several workers: processes on this machine (``backend="local"``) or Ray actors (``"ray"``).

Both backends run the same roles: *workers* step their own envs with a copy of the policy and hand the
learner complete transitions (or whole rollouts); the *learner* owns the algorithm, the replay buffer or
rollout, evaluation, logging and checkpoints, and publishes new weights that workers pull.
:func:`run_distributed` is what :meth:`rlcore.Trainer.run` calls when ``num_workers > 0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from rlcore.agent import Agent
    from rlcore.trainer import Trainer


def run_distributed(trainer: Trainer) -> Agent:
    """Trains ``trainer``'s algorithm with ``trainer.config.num_workers`` workers on its backend."""
    if trainer.config.backend == "ray":
        from rlcore.distributed.ray_backend import run_ray

        return run_ray(trainer)
    from rlcore.distributed.local import run_local

    return run_local(trainer)
