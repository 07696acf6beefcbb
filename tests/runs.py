"""Test helpers for runs that stop part-way: a callback that 'kills' a run right after a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

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


def check_predict_with_state(agent: Any, obs_size: int = 4) -> None:
    """``agent.predict(obs, state=..., episode_start=...)`` (sb3-contrib's RecurrentPPO convention) acts as the
    agent's evaluation actor does step by step, restarts the rows an episode starts in, and takes one observation."""
    observations = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 3, obs_size)).astype(np.float32)
    actor, state, actions = agent.algo.actor(), None, []
    for step, obs in enumerate(observations):
        action, state = agent.predict(obs, state=state, episode_start=np.full(3, step == 0))
        assert np.array_equal(action, np.asarray(actor(torch.from_numpy(obs))))
        actions.append(action)
    unroll = getattr(getattr(agent.algo, "q_net", None), "unroll", None)
    if unroll is not None:  # recurrent DQN: training's whole-sequence path, independent of the step-by-step one
        with torch.no_grad():
            q_values = unroll(torch.from_numpy(observations).transpose(0, 1))  # [3, 5, A]
        assert np.array_equal(np.stack(actions), q_values.argmax(-1).T.numpy())
    with pytest.raises(ValueError, match=r"got a state for 3 observations .* with 1; pass the state of the same"):
        agent.predict(observations[0][0], state=state)
    fresh, _ = agent.predict(observations[0])
    restarted, _ = agent.predict(observations[0], state=state, episode_start=np.ones(3, dtype=bool))
    assert np.array_equal(fresh, restarted)
    one, _ = agent.predict(observations[0][0])
    assert np.shape(one) == agent.algo.action_space.shape and one == fresh[0]
