"""PPO's GPU-sized MinAtar Breakout preset learns as the CPU preset must (slow): a mean evaluation return >= 10 within
1M env steps (issue 4's level, issue 19's condition on the GPU run), trained here on the CPU, where the variant's
learning is the GPU's up to rounding. Each run stops at its first evaluation >= 10."""

import pytest

from rlcore.api import split_settings
from rlcore.trainer import TrainConfig, Trainer

BREAKOUT = "rlcore/MinAtar-Breakout-v0"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_breakouts_gpu_preset_reaches_10_within_1m_steps(seed: int) -> None:
    train, settings = split_settings("ppo", BREAKOUT, {"preset": "gpu", "device": "cpu", "seed": seed,
                                                       "log_dir": None, "progress_bar": False, "checkpoint_freq": 0,
                                                       "stop_at_reward": 10.0})
    assert train["num_envs"] == 64 and train["total_env_steps"] == 1_000_000
    trainer = Trainer("ppo", BREAKOUT, TrainConfig(**train), settings)
    trainer.run()
    assert trainer.best_eval >= 10, [entry["eval/mean_reward"] for entry in trainer.history]
