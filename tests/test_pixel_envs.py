"""The pixel and partially observable envs of issue 4: MinAtar, Atari, Memory, CartPole without velocities.

Checked: gymnasium's env checker on the full (wrapped) envs, determinism under seeds, exact
replay of episodes by rlcore's ReplayableEnv (what exact resume relies on), the Memory task's
mechanics, CartPoleNoVelocity's dynamics, PPO smoke runs with the automatic CNNs, and that a
memoryless MLP policy stays at chance on the memory task while solving it without a delay.
"""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the rlcore/* ids)
import rlcore
from envs.memory import MemoryEnv
from rlcore.env import get_replay_states, make_vec_env, restore_replay_states

HAS_MINATAR = importlib.util.find_spec("minatar") is not None
HAS_ATARI = importlib.util.find_spec("ale_py") is not None and importlib.util.find_spec("cv2") is not None
needs_minatar = pytest.mark.skipif(not HAS_MINATAR, reason="needs minatar (pip install -e '.[pixels]')")
needs_atari = pytest.mark.skipif(not HAS_ATARI, reason="needs ale-py and opencv (pip install -e '.[pixels]')")

MINATAR_GAMES = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
"""Game -> number of observation channels."""
MINATAR_IDS = [pytest.param(f"rlcore/MinAtar-{game}-v0", marks=needs_minatar) for game in MINATAR_GAMES]
ATARI_ID = pytest.param("rlcore/Atari-Breakout-v0", marks=needs_atari)
NEW_IDS = ["rlcore/Memory-v0", "rlcore/CartPoleNoVelocity-v0", *MINATAR_IDS, ATARI_ID]


def rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> list[tuple]:
    """``steps`` steps of random actions from ``reset(seed=seed)``, resetting (unseeded) at episode ends."""
    actions = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    trace = [(obs.copy(),)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(actions.integers(env.action_space.n)))
        trace.append((obs.copy(), reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append((obs.copy(),))
    return trace


def same_trace(first: list[tuple], second: list[tuple]) -> bool:
    return len(first) == len(second) and all(
        len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)) for a, b in zip(first, second))


# ------------------------------------------------------------------------------ registration and checker
@pytest.mark.parametrize("env_id", NEW_IDS)
def test_env_passes_gymnasium_checker_with_its_wrappers(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version.*")
        check_env(env, skip_render_check=True)
    env.close()


@needs_minatar
@pytest.mark.parametrize(("game", "channels"), MINATAR_GAMES.items())
def test_minatar_spaces_and_time_limit(game: str, channels: int) -> None:
    env = gym.make(f"rlcore/MinAtar-{game}-v0")
    assert env.observation_space == gym.spaces.Box(0, 1, (10, 10, channels), np.bool_)
    assert env.action_space == gym.spaces.Discrete(6)  # the full action set, as in the MinAtar paper
    assert env.spec.max_episode_steps == 10_000
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, channels)


@needs_minatar
def test_minatar_options_and_errors() -> None:
    from envs.minatar import MinAtarEnv

    minimal = gym.make("rlcore/MinAtar-Breakout-v0", use_minimal_action_set=True)
    assert minimal.action_space == gym.spaces.Discrete(3)
    frame = MinAtarEnv("Breakout", render_mode="rgb_array")
    frame.reset(seed=0)
    image = frame.render()
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8 and image.any()
    with pytest.raises(ValueError, match="unknown MinAtar game 'pacman'.*Breakout"):
        MinAtarEnv("pacman")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        MinAtarEnv("breakout", sticky_action_prob=1.5)
    env = gym.make("rlcore/MinAtar-Breakout-v0", max_episode_steps=5)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(5)]
    assert ends[-1] == (False, True) or any(terminated for terminated, _ in ends)


@needs_atari
def test_atari_preprocessing_stack() -> None:
    env = gym.make("rlcore/Atari-Breakout-v0")
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)  # Breakout's minimal set
    preprocessing = env.env
    while not isinstance(preprocessing, gym.wrappers.AtariPreprocessing):
        preprocessing = preprocessing.env
    assert (preprocessing.frame_skip, preprocessing.noop_max, preprocessing.terminal_on_life_loss) == (4, 30, False)
    assert env.unwrapped._frameskip == 1 and env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0


@needs_atari
def test_sticky_actions_repeat_the_previous_action() -> None:
    from envs.atari import StickyActions

    class Recorder(gym.Env):
        observation_space = gym.spaces.Discrete(1)
        action_space = gym.spaces.Discrete(4)

        def __init__(self) -> None:
            self.taken: list[int] = []

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {}

        def step(self, action):
            self.taken.append(int(action))
            return 0, 0.0, False, False, {}

    always = StickyActions(Recorder(), prob=1.0)
    always.reset(seed=0)
    for action in (3, 2, 1):
        always.step(action)
    assert always.unwrapped.taken == [0, 0, 0]  # the previous action starts as NOOP and sticks forever
    half = StickyActions(Recorder(), prob=0.5)
    half.reset(seed=0)
    for action in range(400):
        half.step(action % 4)
    taken = np.array(half.unwrapped.taken)
    assert 0.3 < np.mean(taken == np.arange(400) % 4) < 0.9
    with pytest.raises(ValueError, match="sticky action probability"):
        StickyActions(Recorder(), prob=-0.1)


# ------------------------------------------------------------------------------ determinism and exact replay
@pytest.mark.parametrize("env_id", NEW_IDS)
def test_same_seed_same_episodes(env_id: str) -> None:
    steps = 120 if "Atari" in env_id else 300
    first = rollout(gym.make(env_id), seed=3, steps=steps)
    assert same_trace(first, rollout(gym.make(env_id), seed=3, steps=steps))
    if "CartPole" not in env_id:  # the others' randomness shows within a few episodes
        others = [rollout(gym.make(env_id), seed=seed, steps=steps) for seed in (4, 5, 6)]
        assert not all(same_trace(first, other) for other in others)


@pytest.mark.parametrize("env_id", ["rlcore/Memory-v0", *MINATAR_IDS, ATARI_ID])
def test_replayable_env_rebuilds_episodes_exactly(env_id: str) -> None:
    """What exact resume does: restore each sub-env's episode from its replay state, then carry on identically."""
    steps_before, steps_after = (60, 60) if "Atari" in env_id else (250, 250)
    actions = np.random.default_rng(1)
    original = make_vec_env(env_id, 2)
    current, _ = original.reset(seed=[7, 8])
    for _ in range(steps_before):  # several episodes: later ones start from unseeded autoresets
        current = original.step(actions.integers(original.single_action_space.n, size=2))[0]
    states = get_replay_states(original)
    restored = make_vec_env(env_id, 2)
    assert np.array_equal(restore_replay_states(restored, states), current)
    for _ in range(steps_after):  # sticky actions, game events and resets must all agree
        action = actions.integers(original.single_action_space.n, size=2)
        expected, got = original.step(action), restored.step(action)
        for a, b in zip(expected[:4], got[:4]):
            assert np.array_equal(a, b)


# ------------------------------------------------------------------------------ Memory
def test_memory_mechanics() -> None:
    env = MemoryEnv(delay=4)
    queries = []
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        cue = int(np.argmax(obs[:2]))
        assert obs[:2].sum() == 1.0 and obs[2] == 0.0 and obs[3] == 0.0
        for t in range(1, 5):  # the delay: no cue, progress t / delay, any action, no reward
            obs, reward, terminated, truncated, info = env.step(1 - cue)
            assert obs[:2].sum() == 0.0 and obs[2] == pytest.approx(t / 4) and reward == 0.0
            assert not terminated and not truncated and "success" not in info
        assert obs[3] == 1.0  # the query step
        queries.append(obs.copy())
        answer = cue if seed % 2 else 1 - cue
        _, reward, terminated, truncated, info = env.step(answer)
        assert terminated and not truncated and reward == float(answer == cue) and info["success"] == (answer == cue)
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)
    assert all(np.array_equal(query, queries[0]) for query in queries)  # the query never tells the cue


def test_memory_cues_are_balanced_and_options_validated() -> None:
    env = MemoryEnv(delay=0, n_cues=3)
    cues = [int(np.argmax(env.reset(seed=seed)[0][:3])) for seed in range(300)]
    assert set(cues) == {0, 1, 2} and max(np.bincount(cues)) < 130
    obs, _ = env.reset(seed=0)
    assert obs[3] == 1.0 and obs[4] == 1.0  # delay 0: cue and query in one observation
    assert env.step(int(np.argmax(obs[:3])))[1] == 1.0
    for bad in ({"delay": -1}, {"n_cues": 1}, {"delay": 2.5}):
        with pytest.raises(ValueError):
            MemoryEnv(**bad)


def ppo_success_rate(delay: int, steps: int) -> float:
    agent = rlcore.train("ppo", "rlcore/Memory-v0", env_kwargs={"delay": delay}, total_env_steps=steps, num_envs=8,
                         seed=0, log_dir=None, progress_bar=False, eval_freq=0, n_steps=64, batch_size=256,
                         n_epochs=4, learning_rate=1e-3, ent_coef=0.0)
    return agent.evaluate(200)["mean_reward"]  # reward 1 exactly on success: the mean is the success rate


def test_mlp_ppo_stays_at_chance_on_memory_but_solves_it_without_delay() -> None:
    assert ppo_success_rate(delay=0, steps=8_192) >= 0.95  # the task is learnable when the cue is visible
    assert ppo_success_rate(delay=5, steps=16_384) <= 0.60  # a memoryless policy cannot recall it


# ------------------------------------------------------------------------------ CartPoleNoVelocity
def test_pendulum_no_velocity_has_pendulum_dynamics_without_the_velocity() -> None:
    full, hidden = gym.make("Pendulum-v1"), gym.make("rlcore/PendulumNoVelocity-v0")
    assert hidden.observation_space.shape == (2,) and hidden.spec.max_episode_steps == 200
    full_obs, _ = full.reset(seed=3)
    hidden_obs, _ = hidden.reset(seed=3)
    torques = np.random.default_rng(0).uniform(-2, 2, size=(250, 1)).astype(np.float32)
    for torque in torques:
        assert np.array_equal(hidden_obs, full_obs[:2])
        full_obs, full_reward, full_end, full_cut, _ = full.step(torque)
        hidden_obs, reward, end, cut, _ = hidden.step(torque)
        assert (reward, end, cut) == (full_reward, full_end, full_cut)
        if end or cut:
            full_obs, _ = full.reset()
            hidden_obs, _ = hidden.reset()


def test_cartpole_no_velocity_has_cartpole_dynamics_without_the_velocities() -> None:
    full, hidden = gym.make("CartPole-v1"), gym.make("rlcore/CartPoleNoVelocity-v0")
    assert hidden.observation_space.shape == (2,) and hidden.spec.max_episode_steps == 500
    actions = np.random.default_rng(0)
    full_obs, _ = full.reset(seed=5)
    hidden_obs, _ = hidden.reset(seed=5)
    for _ in range(200):
        assert np.array_equal(hidden_obs, full_obs[[0, 2]])
        action = int(actions.integers(2))
        full_obs, full_reward, full_end, full_cut, _ = full.step(action)
        hidden_obs, reward, end, cut, _ = hidden.step(action)
        assert (reward, end, cut) == (full_reward, full_end, full_cut)
        if end or cut:
            full_obs, _ = full.reset()
            hidden_obs, _ = hidden.reset()
    hidden.reset(seed=0)
    length, cut = 0, False
    while not cut:  # a controller that sees the full state balances until CartPole-v1's time limit
        x, x_dot, theta, theta_dot = hidden.unwrapped.state
        _, _, end, cut, _ = hidden.step(int(x + x_dot + 10 * theta + 2 * theta_dot > 0))
        length += 1
        assert not end
    assert length == 500


# ------------------------------------------------------------------------------ PPO smoke runs on pixels
@needs_minatar
def test_ppo_smoke_on_minatar_breakout_with_the_automatic_small_cnn() -> None:
    from rlcore.nets.cnn import SmallCNN

    agent = rlcore.train("ppo", "rlcore/MinAtar-Breakout-v0", total_env_steps=1_024, num_envs=4, n_steps=64,
                         batch_size=128, n_epochs=2, seed=0, log_dir=None, progress_bar=False, eval_freq=0,
                         features_extractor="auto")
    assert isinstance(agent.algo.policy.features, SmallCNN) and agent.algo.policy.features.channels_last
    assert agent.algo.env_steps == 1_024
    assert np.isfinite(agent.evaluate(2)["mean_reward"])


@needs_atari
def test_ppo_smoke_on_atari_breakout_with_the_automatic_nature_cnn() -> None:
    from rlcore.nets.cnn import NatureCNN

    agent = rlcore.train("ppo", "rlcore/Atari-Breakout-v0", total_env_steps=256, num_envs=2, n_steps=64,
                         batch_size=64, n_epochs=1, seed=0, log_dir=None, progress_bar=False, eval_freq=0)
    features = agent.algo.policy.features
    assert isinstance(features, NatureCNN) and not features.channels_last and features.channels == 4
    assert agent.algo.env_steps == 256


# ------------------------------------------------------------------------------ DQN smoke runs on pixels
@needs_minatar
def test_dqn_smoke_on_minatar_breakout_with_the_automatic_small_cnn() -> None:
    from rlcore.nets.cnn import SmallCNN

    agent = rlcore.train("dqn", "rlcore/MinAtar-Breakout-v0", total_env_steps=600, seed=0, log_dir=None,
                         progress_bar=False, eval_freq=0, learning_starts=200, buffer_size=1_000, train_freq=4,
                         gradient_steps=1, batch_size=32, target_update_interval=100)
    assert isinstance(agent.algo.q_net.features, SmallCNN) and agent.algo.updates > 0
    assert np.isfinite(agent.evaluate(1)["mean_reward"])


@needs_atari
def test_dqn_smoke_on_atari_breakout_with_the_automatic_nature_cnn() -> None:
    from rlcore.nets.cnn import NatureCNN

    agent = rlcore.train("dqn", "rlcore/Atari-Breakout-v0", total_env_steps=300, seed=0, log_dir=None,
                         progress_bar=False, eval_freq=0, learning_starts=100, buffer_size=500, train_freq=4,
                         gradient_steps=1, batch_size=32, target_update_interval=100)
    assert isinstance(agent.algo.q_net.features, NatureCNN) and agent.algo.updates > 0
    assert agent.algo.replay.storage["obs"].dtype == torch.uint8
