"""rlcore's PPO against SB3's in lockstep: the same weights, the same gSDE noise matrices, twin envs, rl-zoo's
MountainCarContinuous settings (gSDE, observations and rewards normalized, one env, 8-step rollouts).

Each round SB3 collects a rollout and trains on it, and rlcore does the same on its twin env with the noise SB3
drew; the two stay together to float32 rounding (the gap grows chaotically after ~20 rounds, from that rounding
alone). What this catches: any difference in the collecting step (normalization, the gSDE draw, clipping),
in the targets (GAE, the bootstrap values) or in the update (loss, Adam, gradient clipping), on rlcore's default
path (the CPU kernels).

The second test does the same for the LSTM PPO against sb3-contrib's RecurrentPPO (velocity-less CartPole, rl-zoo's
settings): the memory path (stored states, sequences, resets at episode starts, the critic's own LSTM). Both need
SB3 / sb3-contrib (the bench extra); skipped without it."""

import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

from rlcore.callbacks import Callback
from rlcore.trainer import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import recurrent_ppo_vs_contrib as bench  # noqa: E402
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


def idle_callback(model: Any) -> Any:
    """A callback that does nothing, bound to ``model`` (SB3's ``collect_rollouts`` needs one)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Nothing(BaseCallback):
        def _on_step(self) -> bool:
            return True

    callback = Nothing()
    callback.init_callback(model)
    return callback


def layer_pairs(model: Any, policy: Any) -> list[tuple[torch.nn.Linear, torch.nn.Linear]]:
    """(SB3 layer, rlcore layer) for the actor's and the critic's MLPs."""
    extractor = model.policy.mlp_extractor
    return [(extractor.policy_net[0], policy.actor[0]), (extractor.policy_net[2], policy.actor[2]),
            (model.policy.action_net, policy.actor[4]), (extractor.value_net[0], policy.critic[0]),
            (extractor.value_net[2], policy.critic[2]), (model.policy.value_net, policy.critic[4])]


@pytest.mark.bench_extra
def test_ppo_with_gsde_and_normalization_tracks_sb3_round_by_round() -> None:
    pytest.importorskip("stable_baselines3")
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
    callback = idle_callback(model)
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


# ------------------------------------------------------------------------------ recurrent PPO vs sb3-contrib
RECURRENT_ROUNDS = 10


def recurrent_pairs(model: Any, policy: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(contrib parameter, rlcore parameter): both LSTMs, then the actor's and the critic's heads."""
    pairs = []
    for theirs, ours in ((model.policy.lstm_actor, policy.core.cell), (model.policy.lstm_critic,
                                                                      policy.critic_core.cell)):
        pairs += [(getattr(theirs, f"{name}_l0"), getattr(ours, name))
                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    extractor = model.policy.mlp_extractor
    for theirs, ours in ((extractor.policy_net[0], policy.actor[0]), (model.policy.action_net, policy.actor[2]),
                         (extractor.value_net[0], policy.critic[0]), (model.policy.value_net, policy.critic[2])):
        pairs += [(theirs.weight, ours.weight), (theirs.bias, ours.bias)]
    return pairs


def adopt_weights_and_adam(pairs: list[tuple[torch.Tensor, torch.Tensor]], model: Any, optimizer: Any) -> None:
    """Copies contrib's parameters and Adam moments into rlcore's (a :class:`~rlcore.optim.FlatAdam`)."""
    with torch.no_grad():
        for theirs, ours in pairs:
            ours.copy_(theirs)
            state = model.policy.optimizer.state.get(theirs)
            if state:
                start = (ours.data_ptr() - optimizer.flat_params.data_ptr()) // optimizer.flat_params.element_size()
                rows = slice(start, start + ours.numel())
                optimizer.exp_avg[rows].copy_(state["exp_avg"].reshape(-1))
                optimizer.exp_avg_sq[rows].copy_(state["exp_avg_sq"].reshape(-1))
                optimizer.steps = int(state["step"])


@pytest.mark.bench_extra
def test_recurrent_ppo_tracks_sb3_contribs_recurrent_ppo_round_by_round() -> None:
    """rlcore's LSTM PPO (``critic_memory="separate"``, trained by ``Trainer.run``) beside contrib's RecurrentPPO
    on velocity-less CartPole: each step rlcore acts with contrib's sampled action (so the twin envs stay together)
    and its log-probability must be contrib's; after each round (8 envs x 32 steps, 20 epochs on one 256-row
    minibatch) the weights must agree. Before each round rlcore adopts contrib's weights and Adam moments, so a gap
    is one round's difference, not float32 rounding grown over rounds. contrib rotates its rollout at a random
    index before cutting sequences ("a trick to shuffle a bit"), which rlcore does not: the index is fixed at 0 here,
    so both train on each env's 32 steps as one sequence from its stored first state."""
    pytest.importorskip("sb3_contrib")
    task = bench.TASKS["cartpole"]
    num_envs, seed = task["num_envs"], 0
    steps = task["ppo"]["n_steps"]
    total = num_envs * steps * RECURRENT_ROUNDS
    model = bench.contrib_model(task, seed)
    model._setup_learn(total, None)
    name, settings = bench.rlcore_settings(task, "lstm", {"critic_memory": "separate"})
    config = TrainConfig(total_env_steps=total, num_envs=num_envs, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    callback = idle_callback(model)
    gaps: list[float] = []
    log_prob_gaps: list[float] = []
    progress = {"step": 0}

    def contrib_collects() -> None:
        adopt_weights_and_adam(pairs, model, algo.optimizer)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=steps)

    class ContribTrainsToo(Callback):
        def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> None:  # after rlcore's update
            model._update_current_progress_remaining(model.num_timesteps, total)
            with mock.patch("numpy.random.randint", return_value=0), torch.enable_grad():
                model.train()
            gaps.append(max(float((theirs - ours).abs().max()) for theirs, ours in pairs))
            if len(gaps) < RECURRENT_ROUNDS:
                contrib_collects()

    def contribs_action(params: torch.Tensor, generator: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        step = progress["step"] % steps
        progress["step"] += 1
        action = torch.as_tensor(model.rollout_buffer.actions[step]).long().view(-1)
        log_prob = algo.distribution.log_prob(params, action)
        log_prob_gaps.append(float(np.abs(log_prob.numpy() - model.rollout_buffer.log_probs[step]).max()))
        return action, log_prob

    trainer = Trainer(name, task["env"], config, settings, callbacks=[ContribTrainsToo()])
    algo = trainer.algo
    pairs = recurrent_pairs(model, algo.policy)
    algo.distribution.sample_with_log_prob = contribs_action
    contrib_collects()
    trainer.run()
    assert len(gaps) == RECURRENT_ROUNDS
    assert max(log_prob_gaps) < 1e-5, f"log-probs differ by up to {max(log_prob_gaps):.2e}"
    for round_, gap in enumerate(gaps):
        assert gap < 2e-6, f"round {round_}: the weights differ by {gap:.2e} after one update"
