"""Train DQN on CartPole-v1 with the tuned preset, keep the best agent, and evaluate it.

Run:  python examples/dqn_cartpole.py            (about a minute on one CPU core)
      RLCORE_EXAMPLE_QUICK=1 python examples/dqn_cartpole.py   (a few seconds; what CI runs)
Then: tensorboard --logdir runs --host 127.0.0.1
"""

import os

import rlcore

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"

# 1. Train. The preset (rlcore/presets/dqn.yaml) holds rl-zoo's CartPole settings;
#    any keyword overrides it: TrainConfig fields (total_env_steps, seed, ...) or DQNConfig fields.
agent = rlcore.train(
    "dqn",
    "CartPole-v1",
    seed=0,
    total_env_steps=3_000 if QUICK else 50_000,
    eval_freq=1_000 if QUICK else 2_500,
    double=True,  # options: double, dueling, n_step, prioritized
)

# 2. DQN on CartPole can forget late in training; the trainer kept the best evaluated agent.
best = rlcore.load(agent.run_dir / "best")
final_score = agent.evaluate(n_episodes=10)["mean_reward"]
best_score = best.evaluate(n_episodes=10)["mean_reward"]
print(f"final agent: {final_score:.1f}   best agent: {best_score:.1f}   run folder: {agent.run_dir}")

# 3. Use it: one observation in, one action out.
import gymnasium as gym  # noqa: E402

env = gym.make("CartPole-v1")
obs, _ = env.reset(seed=123)
episode_return, done = 0.0, False
while not done:
    obs, reward, terminated, truncated, _ = env.step(best.predict(obs))
    episode_return += reward
    done = terminated or truncated
print(f"one episode with the best agent: return {episode_return:.0f}")
# random play scores about 22; assert the agent learned something real
assert best_score > (40 if QUICK else 400), best_score
