"""SAC, TD3 and DDPG beyond the registry's tests: Box actions of any bounds, action noise, the settings users know
from SB3 and their errors, the TensorBoard tags, and training from worker processes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlcore
from rlcore.algos.base import UnsupportedSpaceError, build_algorithm
from rlcore.algos.off_policy import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from rlcore.algos.sac import SACConfig
from rlcore.checkpoint import CheckpointError, pack_state
from rlcore.kernels.mlp_bf16 import fast_bf16_matmul
from rlcore.trainer import Trainer

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ODD_BOX = spaces.Box(np.array([-2.0, 0.0, 10.0], np.float32), np.array([2.0, 5.0, 10.5], np.float32))
SMALL = {"net_arch": [16], "batch_size": 16, "buffer_size": 1000, "learning_starts": 50}
ALGOS = ["sac", "td3", "ddpg"]


@pytest.mark.parametrize("name", ALGOS)
def test_actions_cover_any_box_and_the_critics_see_them_in_minus_one_to_one(name: str) -> None:
    algo = build_algorithm(name, OBS, ODD_BOX, {**SMALL, "action_noise": "normal" if name != "sac" else None})
    corners = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    env_actions = algo.to_env_action(corners)
    assert torch.allclose(env_actions, torch.tensor([[-2.0, 0.0, 10.0], [2.0, 5.0, 10.5], [0.0, 2.5, 10.25]]))
    assert torch.allclose(algo.to_scaled_action(env_actions), corners, atol=1e-6)
    obs = torch.randn(500, 3)
    for env_steps in (0, 1000):  # uniform warm-up, then the policy (with noise for TD3/DDPG)
        algo.env_steps = env_steps
        actions = algo.act(obs)
        low, high = torch.as_tensor(ODD_BOX.low), torch.as_tensor(ODD_BOX.high)
        assert actions.dtype == torch.float32 and actions.shape == (500, 3)
        assert bool(((actions >= low) & (actions <= high)).all())
        assert bool((actions.std(dim=0) > 0).all())  # exploration: not one action for all
    if name == "sac":
        assert algo.act(obs[:1], deterministic=True).equal(algo.act(obs[:1], deterministic=True))


def test_warm_up_actions_are_uniform_over_the_box() -> None:
    algo = build_algorithm("sac", OBS, ODD_BOX, {**SMALL, "learning_starts": 10_000})
    actions = algo.act(torch.zeros(20_000, 3))
    midpoints = (torch.as_tensor(ODD_BOX.low) + torch.as_tensor(ODD_BOX.high)) / 2
    assert torch.allclose(actions.mean(dim=0), midpoints, atol=0.05)
    widths = torch.as_tensor(ODD_BOX.high - ODD_BOX.low)
    assert torch.allclose(actions.std(dim=0), widths / 12**0.5, rtol=0.03)


def test_ornstein_uhlenbeck_noise_is_correlated_resets_per_env_and_saves_its_state() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = OrnsteinUhlenbeckActionNoise(action_dim=2, std=0.5)
    draws = torch.stack([noise.sample(3, generator) for _ in range(2_000)])  # [T, N, A]
    lagged = torch.corrcoef(torch.stack([draws[:-1, 0, 0], draws[1:, 0, 0]]))[0, 1]
    assert lagged > 0.9  # x_t = 0.9985 x_{t-1} + small noise
    white = NormalActionNoise(2, 0.5)
    white_draws = torch.stack([white.sample(3, generator) for _ in range(2_000)])
    assert abs(torch.corrcoef(torch.stack([white_draws[:-1, 0, 0], white_draws[1:, 0, 0]]))[0, 1]) < 0.1
    assert white_draws.std().item() == pytest.approx(0.5, rel=0.05)
    saved = noise.state_dict()
    noise.reset(np.array([True, False, False]))
    assert noise.state[0].abs().sum() == 0 and noise.state[1].abs().sum() > 0
    noise.load_state_dict(saved)
    assert torch.equal(noise.state, saved["state"])


def test_ornstein_uhlenbeck_noise_is_reset_when_the_episode_ends_in_training() -> None:
    trainer = rlcore.Trainer("ddpg", "Pendulum-v1", rlcore.TrainConfig(
        total_env_steps=450, num_envs=2, eval_freq=0, log_dir=None, progress_bar=False),
        {**SMALL, "action_noise": "ornstein-uhlenbeck", "noise_std": 0.3})
    noise, replay = trainer.algo.action_noise, trainer.algo.replay
    resets: list[tuple[int, list[bool], float]] = []

    def reset(ended: np.ndarray) -> None:
        if ended.any():
            resets.append((trainer.algo.env_steps, ended.tolist(), float(noise.state.abs().max())))
        noise.reset(ended)
        assert not ended.any() or float(noise.state[torch.from_numpy(ended)].abs().max()) == 0.0

    replay.on_episode_end = reset
    trainer.run()  # Pendulum's episodes end after 200 steps, in both envs at once
    assert len(resets) == 1 and resets[0][1] == [True, True] and resets[0][2] > 0, resets
    assert noise.state.shape == (2, 1) and float(noise.state.abs().max()) > 0  # it went on after the reset


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("sac", {"ent_coef": "automatic"}, "ent_coef"),
    ("sac", {"ent_coef": -0.1}, "ent_coef"),
    ("sac", {"target_entropy": "low"}, "target_entropy"),
    ("td3", {"action_noise": "gaussian"}, "action_noise"),
    ("td3", {"policy_delay": 0}, "policy_delay"),
    ("td3", {"target_noise_clip": -1.0}, "target_noise_clip"),
    ("ddpg", {"tau": 0.0}, "tau"),
    ("sac", {"train_freq": 0}, "train_freq"),
])
def test_bad_settings_name_the_setting(name: str, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_algorithm(name, OBS, ODD_BOX, settings)


def test_unbounded_actions_and_discrete_actions_are_refused_with_the_fix() -> None:
    with pytest.raises(UnsupportedSpaceError, match="finite"):
        build_algorithm("sac", OBS, spaces.Box(-np.inf, np.inf, (2,), np.float32), {})
    with pytest.raises(UnsupportedSpaceError, match="Discrete"):
        build_algorithm("td3", OBS, spaces.Discrete(3), {})
    for name in ("sac", "td3", "ddpg"):  # they used to send real-valued actions to an integer Box
        with pytest.raises(UnsupportedSpaceError, match=r"integer Box would get actions outside it; use a float Box"):
            build_algorithm(name, OBS, spaces.Box(0, 10, (2,), np.int64), {})
        with pytest.raises(UnsupportedSpaceError, match=r"at index 1 low == high leaves no room"):  # NaN at the first
            build_algorithm(name, OBS, spaces.Box(np.float32([-1, 0.5]), np.float32([1, 0.5])), {})  # update before


def test_sac_learns_its_entropy_coefficient_or_keeps_a_fixed_one() -> None:
    assert SACConfig(ent_coef="auto_0.1").ent_coef == "auto_0.1"
    learned = build_algorithm("sac", OBS, ODD_BOX, {**SMALL, "ent_coef": "auto_0.1", "target_entropy": -1.5})
    assert learned.ent_coef().item() == pytest.approx(0.1) and learned.target_entropy == -1.5
    fixed = build_algorithm("sac", OBS, ODD_BOX, {**SMALL, "ent_coef": 0.05})
    assert fixed.log_ent_coef is None and fixed.ent_coef().item() == pytest.approx(0.05)
    assert build_algorithm("sac", OBS, ODD_BOX, SMALL).target_entropy == -3.0  # -dim(action)


@pytest.mark.parametrize("name", ALGOS)
def test_training_logs_sb3s_tags_and_the_actor_critic_losses(name: str, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = rlcore.Trainer(name, "Pendulum-v1", rlcore.TrainConfig(
        total_env_steps=600, eval_freq=300, eval_episodes=1, log_dir=str(tmp_path), progress_bar=False,
        log_interval=100), {**SMALL, "train_freq": 4, "gradient_steps": 2})
    trainer.run()
    events = EventAccumulator(str(trainer.run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/actor_loss", "train/critic_loss", "train/n_updates", "train/learning_rate",
                "rollout/ep_rew_mean", "eval/mean_reward", "time/fps"}
    expected |= {"train/ent_coef", "train/ent_coef_loss"} if name == "sac" else set()
    assert expected <= tags, expected - tags
    assert trainer.algo.updates % 2 == 0 and trainer.algo.updates >= 0.9 * (600 - 50) / 4 * 2


def test_sac_trains_from_two_worker_processes_at_the_replay_ratio() -> None:
    trainer = rlcore.Trainer("sac", "Pendulum-v1", rlcore.TrainConfig(
        num_workers=2, total_env_steps=2_000, eval_freq=0, log_dir=None, progress_bar=False),
        {**SMALL, "learning_starts": 200, "train_freq": 8, "gradient_steps": 4, "normalize_obs": True})
    trainer.run()
    assert trainer.algo.updates >= 0.9 * (2_000 - 200) * 4 / 8
    assert trainer.algo.obs_normalizer.stats.count > 1_000  # workers' observations reached the statistics


@pytest.mark.parametrize(("name", "noise"), [("sac", None), ("ddpg", "ornstein-uhlenbeck")])
def test_normalized_observations_reach_the_statistics_in_one_process(name: str, noise: str | None) -> None:
    """``normalize_obs`` with the in-process replay (and with the one that reports episode ends, for OU noise):
    every collected observation is folded into the statistics once."""
    trainer = rlcore.Trainer(name, "Pendulum-v1", rlcore.TrainConfig(
        total_env_steps=400, eval_freq=0, log_dir=None, progress_bar=False),
        {**SMALL, "normalize_obs": True, **({"action_noise": noise} if noise else {})})
    trainer.run()
    assert trainer.algo.obs_normalizer.stats.count == pytest.approx(400, abs=1e-3)


def test_ornstein_uhlenbeck_noise_with_workers_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="action_noise='normal'"):
        rlcore.Trainer("ddpg", "Pendulum-v1", rlcore.TrainConfig(num_workers=2, log_dir=None),
                       {"action_noise": "ornstein-uhlenbeck"})


def test_bf16_training_checkpoints_float32_weights_and_resumes_exactly(tmp_path: Path) -> None:
    from runs import run_until_killed
    from test_registry import assert_same_state, example_trainer

    overrides = {"net_arch": [64, 64], "amp": "bf16"}
    reference = example_trainer("sac", tmp_path / "a", **overrides)
    reference.run()
    assert reference.algo.amp == ("bf16" if fast_bf16_matmul() else None)
    killed = example_trainer("sac", tmp_path / "b", **overrides)
    run_until_killed(killed, killed.config.checkpoint_freq)
    resumed = Trainer.resume(killed.run_dir)
    resumed.run()
    assert_same_state(reference.algo, resumed.algo)
    tensors = pack_state(resumed.algo.state_dict())[0]
    assert tensors and all(tensor.dtype in (torch.float32, torch.int64, torch.float64, torch.bool, torch.uint8)
                           for tensor in tensors.values())
    assert all(param.dtype == torch.float32 for param in resumed.algo.actor_net.parameters())


def test_a_checkpoint_from_before_amp_loads_in_float32_and_a_bad_amp_is_refused(tmp_path: Path) -> None:
    agent = rlcore.train("sac", "Pendulum-v1", total_env_steps=60, **SMALL, seed=0, eval_freq=0, progress_bar=False,
                         device="cpu", log_dir=None)
    assert agent.algo.config.amp == "auto"
    agent.save(tmp_path / "agent")
    meta_path = tmp_path / "agent" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["algo_config"].pop("amp") == "auto"
    meta_path.write_text(json.dumps(meta))  # as saved before the setting existed
    assert rlcore.load(tmp_path / "agent", device="cpu").algo.config.amp is None
    meta["algo_config"]["amp"] = "fp8"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="amp must be one of"):
        rlcore.load(tmp_path / "agent", device="cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algo", ["td3", "ddpg", "sac", "ppo", "a2c"])
def test_actions_at_the_bounds_stay_inside_the_box_in_its_dtype(algo: str, dtype: type) -> None:
    """float32 arithmetic put -1 at -0.30000004 (TD3/DDPG, about 13% of bound pairs) and PPO/A2C clipped a float64
    box to float32 bounds outside it: envs checking action_space.contains failed, and predict returned float32."""
    box = spaces.Box(np.array([-0.3, -2.0, 0.2]), np.array([0.9, -0.3, 0.6]), dtype=dtype)
    agent = build_algorithm(algo, spaces.Box(-1, 1, (2,), np.float32), box, {"net_arch": [8]}, seed=0)
    extremes = torch.tensor([[-1.0] * 3, [1.0] * 3]) * (1 if algo in ("td3", "ddpg", "sac") else 50)
    actions = agent.to_env_action(extremes).cpu().numpy()
    assert actions.dtype == dtype
    assert all(box.contains(action) for action in actions), actions
    np.testing.assert_allclose(actions, np.stack([box.low, box.high]), rtol=1e-6)
