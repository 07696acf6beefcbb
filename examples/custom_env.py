"""Plug your own gymnasium environment into rlcore: a class, a class with settings, or a factory.

Run:  python examples/custom_env.py
      RLCORE_EXAMPLE_QUICK=1 python examples/custom_env.py   (a few seconds; what CI runs)
"""

import os

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import rlcore

QUICK = os.environ.get("RLCORE_EXAMPLE_QUICK") == "1"


class ReachTarget(gym.Env):
    """Walk along a line of `length` cells to a target cell. Observation: (position, target) in [0, 1].

    Actions: 0 = left, 1 = right. Reward: -0.1 per step, +1 on reaching the target (the episode ends).
    Episodes are cut after `max_steps` steps (truncation, so rlcore bootstraps from the last state).
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 10, max_steps: int = 40) -> None:
        self.length, self.max_steps = length, max_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        return np.array([self.position, self.target], dtype=np.float32) / (self.length - 1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds self.np_random: all randomness must come from it (exact resume)
        self.position, self.target = self.np_random.choice(self.length, size=2, replace=False)
        self.steps = 0
        return self._obs(), {}

    def step(self, action):
        self.position = int(np.clip(self.position + (1 if action == 1 else -1), 0, self.length - 1))
        self.steps += 1
        reached = self.position == self.target
        reward = 1.0 if reached else -0.1
        return self._obs(), reward, reached, self.steps >= self.max_steps, {}


# 1. Check the env against gymnasium's API before training on it.
check_env(ReachTarget(), skip_render_check=True)

# 2. Train on the class itself; env_kwargs go to its constructor. (A factory works too:
#    rlcore.train("ppo", lambda: ReachTarget(length=12), ...).) Presets exist only for registered ids,
#    so the algorithm's defaults apply; override any field as a keyword.
agent = rlcore.train("ppo", ReachTarget, env_kwargs={"length": 10}, seed=0, num_envs=8,
                     total_env_steps=10_000 if QUICK else 50_000, eval_freq=2_000, progress_bar=not QUICK)

# 3. An agent trained on a class (not an id) does not know how to rebuild its env after loading,
#    so evaluation takes the env explicitly.
score = agent.evaluate(n_episodes=50, env=ReachTarget)["mean_reward"]


def random_score(episodes: int = 200) -> float:
    env, rng, total = ReachTarget(), np.random.default_rng(0), 0.0
    for episode in range(episodes):
        env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(2)))
            total, done = total + reward, terminated or truncated
    return total / episodes


baseline = random_score()
print(f"trained agent: {score:.2f}   random policy: {baseline:.2f}   run folder: {agent.run_dir}")
# the best possible mean return is ~0.73 (the target is 3.7 cells away on average); random walking is far below
assert score > baseline + 1.0, (score, baseline)
assert (agent.run_dir / "best" / "meta.json").exists()
