"""rlcore's PPO against SB3's in lockstep: the same weights, the same gSDE noise matrices, twin envs, rl-zoo's
MountainCarContinuous settings (gSDE, observations and rewards normalized, one env, 8-step rollouts).

Each round SB3 collects a rollout and trains on it, and rlcore does the same on its twin env with the noise SB3
drew; the two stay together to float32 rounding (the gap grows chaotically after ~20 rounds, from that rounding
alone). What this catches: any difference in the collecting step (normalization, the gSDE draw, clipping),
in the targets (GAE, the bootstrap values) or in the update (loss, Adam, gradient clipping), on rlcore's default
path (the CPU kernels). Needs SB3 (the bench extra); skipped without it."""

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlcore.trainer import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import zoo_suite  # noqa: E402

ROUNDS = 12


def sb3_ppo(settings: dict[str, Any], seed: int) -> Any:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("MountainCarContinuous-v0", n_envs=1, seed=seed), gamma=settings["gamma"])
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **settings)
    model._setup_learn(8 * ROUNDS, None)
    return model


def layer_pairs(model: Any, policy: Any) -> list[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """(SB3 layer, rlcore layer) for the actor's and the critic's MLPs."""
    extractor = model.policy.mlp_extractor
    return [(extractor.policy_net[0], policy.actor[0]), (extractor.policy_net[2], policy.actor[2]),
            (model.policy.action_net, policy.actor[4]), (extractor.value_net[0], policy.critic[0]),
            (extractor.value_net[2], policy.critic[2]), (model.policy.value_net, policy.critic[4])]


@pytest.mark.bench_extra
def test_ppo_with_gsde_and_normalization_tracks_sb3_round_by_round() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    (task,) = zoo_suite.select("ppo/MountainCarContinuous-v0")
    seed = 3
    model = sb3_ppo(zoo_suite.sb3_settings(task, 8 * ROUNDS), seed)
    config = TrainConfig(total_env_steps=8 * ROUNDS, num_envs=1, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    algo = Trainer("ppo", task.env, config, zoo_suite.rlcore_config(task)).algo
    pairs = layer_pairs(model, algo.policy)
    with torch.no_grad():
        for theirs, ours in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
        algo.policy.log_std.copy_(model.policy.log_std)

    def sb3s_noise(count: int, generator: Any = None) -> None:  # rlcore draws when SB3 does: take SB3's draw
        algo.distribution.exploration_matrix = model.policy.action_dist.exploration_mat.detach().clone()
        algo.distribution.exploration_matrices = model.policy.action_dist.exploration_matrices.detach().clone()

    algo.distribution.reset_noise = sb3s_noise

    class Nothing(BaseCallback):
        def _on_step(self) -> bool:
            return True

    callback = Nothing()
    callback.init_callback(model)
    twin = make_vec_env("MountainCarContinuous-v0", n_envs=1, seed=seed)
    obs = twin.reset()
    for round_ in range(ROUNDS):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=8)
        actions = []
        for _ in range(8):
            action, extras = algo.explore(torch.as_tensor(obs))
            next_obs, reward, done, infos = twin.step(action.numpy())
            truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
            final_obs = np.stack([info["terminal_observation"] if ended else row
                                  for row, ended, info in zip(next_obs, done, infos)])
            algo.store({"obs": obs, "action": action.numpy(), "reward": reward.astype(np.float32),
                        "next_obs": final_obs, "terminated": done & ~truncated, "truncated": truncated, **extras})
            actions.append(extras["action"].reshape(-1).numpy())
            obs = next_obs
        np.testing.assert_allclose(np.concatenate(actions), model.rollout_buffer.actions.reshape(-1), atol=1e-4,
                                   err_msg=f"round {round_}")
        model.train()
        algo.set_progress(8 * (round_ + 1), 8 * ROUNDS)
        algo.update(torch.as_tensor(obs))
        with torch.no_grad():
            gap = max(float((theirs.weight - ours.weight).abs().max()) for theirs, ours in pairs)
            gap = max(gap, float((model.policy.log_std - algo.policy.log_std).abs().max()))
        assert gap < 2e-5, f"round {round_}: the weights differ by {gap:.2e}"
