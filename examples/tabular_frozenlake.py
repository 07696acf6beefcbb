"""Tabular Q-learning on FrozenLake-v1 (4x4, slippery), then the greedy policy as a map.

Run:  python examples/tabular_frozenlake.py
      RLCORE_EXAMPLE_QUICK=1 python examples/tabular_frozenlake.py   (what CI runs)
"""

import os

import numpy as np

import rlcore

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"

agent = rlcore.train("q_learning", "FrozenLake-v1", seed=0, progress_bar=not QUICK,
                     **({"total_env_steps": 60_000} if QUICK else {}))
success_rate = agent.evaluate(n_episodes=1000)["mean_reward"]  # reward is 1 only on reaching the goal
print(f"greedy success rate over 1000 episodes: {success_rate:.2f} (optimum with the 100-step limit: ~0.74)")

arrows = np.array(["<", "v", ">", "^"])
policy = agent.predict(np.arange(16)).reshape(4, 4)
print("\n".join(" ".join(arrows[row]) for row in policy))
# a random policy succeeds ~1.5% of the time
assert success_rate > (0.3 if QUICK else 0.7), success_rate
