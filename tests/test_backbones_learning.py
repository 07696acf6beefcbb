"""Learning checks of the backbones (slow: ``python -m pytest -m slow tests/test_backbones_learning.py``).

- Frozen pretrained features reach the env's target in >= 3x fewer env steps than the same network with
  random weights (also frozen), for BERT on ``rlcore/TextTopic-v0`` and the digit CNN on ``rlcore/Digits-v0``.
  A run that never reaches the target counts as its whole budget (so the ratio is a lower bound).
- SB3's PPO with rlcore's BERT extractor learns the text env.
- Masked-LM fine-tuning of BERT on the text env's sentences learns to fill in the masked words.

Measured 2026-12-01 on the 2-core CPU (one torch thread), seed 0 (the whole file: ~2.5 minutes): text env,
pretrained BERT 1,024 env steps, random BERT 32,768 (32x); digits, pretrained CNN 2,048, random CNN not within
30,720 (>= 15x; the same random CNN trained end to end needs 12,288, 6x).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import pytest

import envs  # noqa: F401
from envs.digits import TARGET_RETURN as DIGITS_TARGET
from envs.text import TARGET_RETURN as TEXT_TARGET
from envs.text import VOCABULARY
from rlcore.backbones.pretrain import BERT_FIT, CNN_FIT, pretrain_bert, pretrain_cnn, with_settings
from rlcore.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.slow

EVAL_EVERY = 1024
PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 4, "learning_rate": 1e-3, "net_arch": [64], "gamma": 0.0,
       "gae_lambda": 0.0}
"""PPO on one-sentence (one-image) decisions: 4 envs x 64 steps per rollout, no bootstrapping (gamma 0)."""


def steps_to_target(env_id: str, target: float, extractor: str, features_kwargs: dict, budget: int,
                    seed: int = 0) -> tuple[int | None, list[tuple[int, float]]]:
    """Env steps of the first evaluation (10 deterministic episodes every 1,024 steps) reaching ``target``."""
    trainer = Trainer("ppo", env_id, TrainConfig(total_env_steps=budget, num_envs=4, seed=seed, eval_freq=EVAL_EVERY,
                                                 eval_episodes=10, log_dir=None, progress_bar=False,
                                                 stop_at_reward=target, checkpoint_freq=0),
                      {**PPO, "features_extractor": extractor, "features_kwargs": features_kwargs})
    trainer.run()
    curve = [(int(row["env_steps"]), row["eval/mean_reward"]) for row in trainer.history]
    reached = next((steps for steps, score in curve if score >= target), None)
    return reached, curve


def test_frozen_pretrained_bert_reaches_the_text_target_3x_sooner_than_random_bert() -> None:
    words = list(VOCABULARY)
    pretrained, curve = steps_to_target("rlcore/TextTopic-v0", TEXT_TARGET, "bert",
                                        {"vocabulary": words, "max_length": 16}, budget=16_384)
    assert pretrained is not None, curve
    budget = 40 * pretrained
    random, random_curve = steps_to_target("rlcore/TextTopic-v0", TEXT_TARGET, "bert",
                                           {"vocabulary": words, "max_length": 16, "pretrained": False}, budget)
    ratio = (random if random is not None else budget) / pretrained
    print(f"text: pretrained BERT {pretrained} env steps, random BERT {random} (budget {budget}): {ratio:.1f}x")
    assert ratio >= 3.0, (pretrained, random, random_curve)


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = pretrain_cnn(with_settings(CNN_FIT, progress_bar=False), run_dir=tmp_path_factory.mktemp("cnn"))
    assert result.test["accuracy"] >= 0.97
    return result.checkpoint


def test_frozen_pretrained_cnn_reaches_the_digits_target_3x_sooner_than_random_cnn(digits_cnn: Path) -> None:
    pretrained, curve = steps_to_target("rlcore/Digits-v0", DIGITS_TARGET, "backbone_cnn",
                                        {"checkpoint": str(digits_cnn)}, budget=16_384)
    assert pretrained is not None, curve
    budget = 15 * pretrained
    random, random_curve = steps_to_target("rlcore/Digits-v0", DIGITS_TARGET, "backbone_cnn",
                                           {"checkpoint": str(digits_cnn), "pretrained": False}, budget)
    ratio = (random if random is not None else budget) / pretrained
    print(f"digits: pretrained CNN {pretrained} env steps, random CNN {random} (budget {budget}): {ratio:.1f}x")
    assert ratio >= 3.0, (pretrained, random, random_curve)


def test_sb3_ppo_with_the_bert_extractor_learns_the_text_env() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from rlcore.backbones.sb3 import RlcoreExtractor

    env = Monitor(gym.make("rlcore/TextTopic-v0"))
    model = SB3PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=4, learning_rate=1e-3, gamma=0.0,
                   gae_lambda=0.0, seed=0, policy_kwargs={
                       "features_extractor_class": RlcoreExtractor, "net_arch": [64],
                       "features_extractor_kwargs": {"extractor": "bert", "vocabulary": list(VOCABULARY),
                                                     "max_length": 16}})
    model.learn(3072)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=20, deterministic=True)
    assert mean_return >= TEXT_TARGET, mean_return


def test_bert_masked_lm_fine_tuning_learns_the_text_env_sentences() -> None:
    result = pretrain_bert(None, replace(BERT_FIT, progress_bar=False, log_dir=None))
    assert result.test["initial_accuracy"] < 0.05 and result.test["accuracy"] >= 0.4, result.test
