"""Collecting with several workers: processes on this machine (``backend="local"``) or Ray actors (``"ray"``).

Both backends run the same roles: *workers* step their own envs with a copy of the policy and hand the
learner complete transitions (or whole rollouts); the *learner* owns the algorithm, the replay buffer or
rollout, evaluation, logging and checkpoints, and publishes new weights that workers pull. To the Trainer's
one loop each backend is a :class:`rlcore.sources.Source`: :class:`~rlcore.distributed.local.LocalWorkerSource`
and :class:`~rlcore.distributed.ray_backend.RaySource`. Nothing here imports the Trainer.
"""
