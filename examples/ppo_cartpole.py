"""Train PPO on CartPole-v1 with the tuned preset, then on Pendulum-v1 (continuous actions).

Run:  python examples/ppo_cartpole.py             (about 30 seconds on one CPU core)
      RLCORE_EXAMPLE_QUICK=1 python examples/ppo_cartpole.py   (a few seconds; what CI runs)
Then: tensorboard --logdir runs --host 127.0.0.1
"""

import os

import numpy as np

import rlcore

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"

# 1. Discrete actions. The preset (rlcore/presets/ppo.yaml) holds rl-zoo's CartPole settings:
#    8 envs, 32-step rollouts, 20 epochs, linear learning-rate and clip-range schedules.
#    stop_at_reward ends training at the first evaluation that reaches it.
agent = rlcore.train("ppo", "CartPole-v1", seed=0, total_env_steps=20_000 if QUICK else 100_000,
                     eval_freq=5_120, stop_at_reward=475)
score = agent.evaluate(n_episodes=10)["mean_reward"]
print(f"PPO CartPole-v1: {score:.1f} (random play scores about 22)   run folder: {agent.run_dir}")
assert score > (100 if QUICK else 400), score

# 2. Continuous actions: a diagonal Gaussian policy; actions are clipped to the Box when sent to the env.
#    Any setting can be overridden by keyword, e.g. observation/reward normalization (SB3's VecNormalize).
pendulum = rlcore.train("ppo", "Pendulum-v1", seed=0, total_env_steps=8_192 if QUICK else 100_000)
obs = np.zeros(3, dtype=np.float32)
print(f"PPO Pendulum-v1: {pendulum.evaluate(5)['mean_reward']:.1f}; action for {obs}: {pendulum.predict(obs)}")
assert pendulum.predict(obs).shape == (1,)
