"""rlcore's PPO and A2C against SB3's in lockstep: the same weights and optimizer state at each round's start, the
same gSDE noise matrices, twin envs stepped with SB3's actions; rl-zoo's PPO MountainCarContinuous settings (gSDE,
observations and rewards normalized, one env, 8-step rollouts) and A2C BipedalWalker settings (16 envs, RMSprop).

Each round SB3 collects a rollout and trains on it, and rlcore does the same on its twin envs with the noise SB3
drew; their sampled actions, advantages, returns and updated weights must agree to float32 rounding. What this
catches: any difference in the collecting step (normalization, the gSDE draw, clipping), in the targets (GAE, the
bootstrap values at truncations and at the rollout's end) or in the update (loss, Adam / RMSprop, gradient
clipping), on rlcore's default path (the CPU kernels).

The recurrent test does the same for the LSTM PPO against sb3-contrib's RecurrentPPO (velocity-less CartPole,
rl-zoo's settings): the memory path (stored states, sequences, resets at episode starts, the critic's own LSTM).
The off-policy test does it for SAC and TD3, gradient step by gradient step, on SB3's minibatches and random draws.
All need SB3 / sb3-contrib (the bench extra); skipped without it."""

import sys
from collections.abc import Callable
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


def sb3_model(task: Any, num_envs: int, total: int, seed: int, env_kwargs: dict[str, Any]) -> Any:
    """SB3's model for ``task`` (a zoo_suite task) with the zoo's settings, its ``VecNormalize`` and ``num_envs``
    envs (``gymnasium.make(task.env, **env_kwargs)``) seeded ``seed, seed + 1, ...``, set up to learn ``total``
    env steps."""
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = zoo_suite.sb3_settings(task, total)
    env = VecNormalize(make_vec_env(task.env, n_envs=num_envs, seed=seed, env_kwargs=env_kwargs),
                       gamma=settings["gamma"])
    model = getattr(stable_baselines3, task.algo.upper())("MlpPolicy", env, seed=seed, device="cpu", **settings)
    model._setup_learn(total, None)
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


def parameter_pairs(model: Any, policy: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(SB3 parameter, rlcore parameter): the actor's and the critic's MLPs, and gSDE's ``log_std``."""
    extractor = model.policy.mlp_extractor
    layers = [(extractor.policy_net[0], policy.actor[0]), (extractor.policy_net[2], policy.actor[2]),
              (model.policy.action_net, policy.actor[4]), (extractor.value_net[0], policy.critic[0]),
              (extractor.value_net[2], policy.critic[2]), (model.policy.value_net, policy.critic[4])]
    pairs = [(getattr(theirs, name), getattr(ours, name)) for theirs, ours in layers for name in ("weight", "bias")]
    return pairs + [(model.policy.log_std, policy.log_std)]


def assert_tracks_sb3(task_name: str, num_envs: int, seed: int, rounds: int, atol_weights: float,
                      max_episode_steps: int | None = None) -> tuple[int, int]:
    """SB3 and rlcore (same initial weights, SB3's gSDE noise) collect a rollout each on twin envs and train on it,
    ``rounds`` times; each round their sampled actions and then their weights must agree. ``max_episode_steps``
    shortens the env's time limit (to reach truncations). Returns the episodes that ended (terminated,
    truncated)."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    (task,) = zoo_suite.select(task_name)
    steps = int(task.zoo["n_steps"])
    total = steps * num_envs * rounds
    env_kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    model = sb3_model(task, num_envs, total, seed, env_kwargs)
    config = TrainConfig(total_env_steps=total, num_envs=num_envs, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    algo = Trainer(task.algo, task.env, config, zoo_suite.rlcore_config(task)).algo
    pairs = parameter_pairs(model, algo.policy)

    def sb3s_noise(count: int, generator: Any = None) -> None:  # rlcore draws when SB3 does: take SB3's draw
        algo.distribution.exploration_matrix = model.policy.action_dist.exploration_mat.detach().clone()
        algo.distribution.exploration_matrices = model.policy.action_dist.exploration_matrices.detach().clone()

    algo.distribution.reset_noise = sb3s_noise
    targets: dict[str, torch.Tensor] = {}
    compute_targets = algo.compute_targets

    def kept_targets(last_value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets["advantages"], targets["returns"] = compute_targets(last_value)
        return targets["advantages"], targets["returns"]

    algo.compute_targets = kept_targets
    callback = idle_callback(model)
    twin = make_vec_env(task.env, n_envs=num_envs, seed=seed, env_kwargs=env_kwargs)
    obs = twin.reset()
    terminations = truncations = 0
    for round_ in range(rounds):
        adopt_weights_and_optimizer(pairs, model, algo.optimizer)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=steps)
        model._update_current_progress_remaining(model.num_timesteps, total)  # as SB3's learn() does
        sb3s_targets = {name: getattr(model.rollout_buffer, name).copy() for name in ("advantages", "returns")}
        actions = []
        for step in range(steps):
            action, extras = algo.explore(torch.as_tensor(obs))
            # the twin takes SB3's action (rlcore's is within float32 rounding of it): a walker's contacts would
            # turn a 1e-6 difference into another trajectory within a few rounds
            sb3s_action = np.clip(model.rollout_buffer.actions[step], twin.action_space.low, twin.action_space.high)
            next_obs, reward, done, infos = twin.step(sb3s_action)
            truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
            terminations += int((done & ~truncated).sum())
            truncations += int(truncated.sum())
            final_obs = np.stack([info["terminal_observation"] if ended else row
                                  for row, ended, info in zip(next_obs, done, infos)])
            algo.store({"obs": obs, "action": action.numpy(), "reward": reward.astype(np.float32),
                        "next_obs": final_obs, "terminated": done & ~truncated, "truncated": truncated, **extras})
            actions.append(extras["action"].reshape(-1).numpy())
            obs = next_obs
        np.testing.assert_allclose(np.concatenate(actions), model.rollout_buffer.actions.reshape(-1),
                                   atol=1e-4, err_msg=f"round {round_}")
        model.train()
        algo.set_progress(steps * num_envs * (round_ + 1), total)
        algo.update(torch.as_tensor(obs))
        for name in ("advantages", "returns"):  # the bootstraps (truncations included) and GAE
            np.testing.assert_allclose(targets[name].numpy(), sb3s_targets[name], rtol=1e-4,
                                       atol=1e-5, err_msg=f"round {round_}: {name}")
        gap = max(float((theirs - ours).abs().max()) for theirs, ours in pairs)
        assert gap < atol_weights, f"round {round_}: the weights differ by {gap:.2e} after one update"
    return terminations, truncations


@pytest.mark.bench_extra
def test_ppo_with_gsde_and_normalization_tracks_sb3_round_by_round() -> None:
    assert_tracks_sb3("ppo/MountainCarContinuous-v0", num_envs=1, seed=3, rounds=ROUNDS, atol_weights=2e-6)


@pytest.mark.bench_extra
def test_a2c_with_gsde_rmsprop_and_a_linear_rate_tracks_sb3_round_by_round() -> None:
    """rl-zoo's A2C BipedalWalker setting: 16 envs, 8-step rollouts, gSDE (``log_std_init=-2``), RMSprop with a
    linearly decaying rate, observations and rewards normalized, no advantage normalization; the walkers' time limit
    cut to 50 steps so that rollouts hold both falls (terminations) and time-outs (truncations, whose bootstrap
    reads the final observation normalized as SB3's ``VecNormalize`` does: with the step's returned observations,
    reset ones included, folded into the statistics)."""
    terminations, truncations = assert_tracks_sb3("a2c/BipedalWalker-v3", num_envs=16, seed=0, rounds=ROUNDS,
                                                  atol_weights=5e-5, max_episode_steps=50)
    assert terminations > 0 and truncations > 0, (terminations, truncations)


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


OPTIMIZER_STATE = ("exp_avg", "exp_avg_sq", "square_avg")
"""Adam's moments and RMSprop's mean square: the same names in torch's optimizers' state and rlcore's flat ones."""


def flat_slice(optimizer: Any, parameter: torch.Tensor) -> slice:
    """Where ``parameter`` (a view of an rlcore flat optimizer's buffer) lies in it."""
    start = (parameter.data_ptr() - optimizer.flat_params.data_ptr()) // optimizer.flat_params.element_size()
    return slice(start, start + parameter.numel())


def adopt_weights_and_optimizer(pairs: list[tuple[torch.Tensor, torch.Tensor]], model: Any, optimizer: Any) -> None:
    """Copies SB3's parameters and optimizer state (Adam's moments or RMSprop's mean square) into rlcore's (a
    :class:`~rlcore.optim.FlatAdam` or :class:`~rlcore.optim.FlatRMSprop`), so that a gap after an update is that
    update's difference, not float32 rounding grown over rounds."""
    names = [name for name in OPTIMIZER_STATE if hasattr(optimizer, name)]
    with torch.no_grad():
        for theirs, ours in pairs:
            ours.copy_(theirs)
            state = model.policy.optimizer.state.get(theirs)
            if state:
                rows = flat_slice(optimizer, ours)
                for name in names:
                    getattr(optimizer, name)[rows].copy_(state[name].reshape(-1))
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
        adopt_weights_and_optimizer(pairs, model, algo.optimizer)
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


# ------------------------------------------------------------------------------ SAC and TD3 vs SB3
OFF_POLICY_STEPS = 16
OFF_POLICY_BATCH = 64


def off_policy_pairs(model: Any, algo: Any) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """(SB3 parameters stacked along rows, rlcore parameter): actors, critics, targets (and SAC's ``log alpha``).
    rlcore's SAC actor has one output layer for the means and the log-stds, SB3's two (``mu``, ``log_std``)."""
    pairs: list[tuple[list[torch.Tensor], torch.Tensor]] = []

    def linear(theirs: list[torch.nn.Module], ours: torch.nn.Module) -> None:
        pairs.extend([([getattr(part, name) for part in theirs], getattr(ours, name)) for name in ("weight", "bias")])

    for theirs, ours in ((model.critic, algo.critic), (model.critic_target, algo.critic_target)):
        for q_net, q_ours in zip(theirs.q_networks, ours.q_nets):
            for index in (0, 2, 4):
                linear([q_net[index]], q_ours[index])
    if hasattr(model, "log_ent_coef"):  # SAC
        latent = model.actor.latent_pi
        linear([latent[0]], algo.actor_net.body[0])
        linear([latent[2]], algo.actor_net.body[2])
        if model.use_sde:  # SB3's mu is Linear + Hardtanh; log_std [L, A] a parameter
            linear([model.actor.mu[0]], algo.actor_net.mu)
            pairs.append(([model.actor.log_std], algo.actor_net.log_std))
        else:
            linear([model.actor.mu, model.actor.log_std], algo.actor_net.body[4])
        pairs.append(([model.log_ent_coef], algo.log_ent_coef))
    else:  # TD3
        for theirs, ours in ((model.actor, algo.actor_net), (model.actor_target, algo.actor_target)):
            for index in (0, 2, 4):
                linear([theirs.mu[index]], ours.body[index])
    return pairs


def owner_of(algo: Any, parameter: torch.Tensor) -> Any:
    """The rlcore optimizer whose flat buffer holds ``parameter``; None for a target network's."""
    for optimizer in algo.optimizers().values():
        flat = optimizer.flat_params
        if flat.data_ptr() <= parameter.data_ptr() < flat.data_ptr() + flat.numel() * flat.element_size():
            return optimizer
    return None


def adopt_off_policy_state(pairs: list[tuple[list[torch.Tensor], torch.Tensor]], model: Any, algo: Any) -> None:
    """Copies SB3's parameters and Adam moments into rlcore's networks and flat optimizers."""
    sb3_state = {}
    for optimizer in (model.actor.optimizer, model.critic.optimizer, getattr(model, "ent_coef_optimizer", None)):
        if optimizer is not None:
            sb3_state.update(optimizer.state)
    with torch.no_grad():
        for theirs, ours in pairs:
            ours.copy_(torch.cat([part.reshape(-1, *ours.shape[1:]) for part in theirs]))
            states = [sb3_state.get(part) for part in theirs]
            owner = owner_of(algo, ours)
            if owner is None or not all(states):
                continue
            rows = flat_slice(owner, ours)
            for name in OPTIMIZER_STATE[:2]:  # Adam's
                getattr(owner, name)[rows].copy_(torch.cat([state[name].reshape(-1) for state in states]))
            owner.steps = int(states[0]["step"])
    algo.updates = model._n_updates


def exact_squashed_log_prob(self: Any, actions: torch.Tensor, gaussian_actions: torch.Tensor) -> torch.Tensor:
    """SB3's squashed Gaussian log-probability with rlcore's exact ``log(1 - tanh(u)^2)`` in place of SB3's
    ``log(1 - tanh(u)^2 + 1e-6)`` (a deliberate difference, ~1e-4 of the actor's gradient at Pendulum's start)."""
    from stable_baselines3.common.distributions import DiagGaussianDistribution

    log_prob = DiagGaussianDistribution.log_prob(self, gaussian_actions)
    return log_prob - exact_squash_correction(gaussian_actions)


def exact_squash_correction(pre_squash: torch.Tensor) -> torch.Tensor:
    """``sum_i log(1 - tanh(u_i)^2)`` ``[B]``, exact (rlcore's form)."""
    return (2.0 * (np.log(2.0) - pre_squash - torch.nn.functional.softplus(-2.0 * pre_squash))).sum(dim=1)


def exact_state_dependent_log_prob(self: Any, mean_actions: torch.Tensor, log_std: torch.Tensor,
                                   latent_sde: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SB3's gSDE action and log-probability with ``u`` kept, not recovered as ``atanh`` of the clamped action,
    and rlcore's exact squash correction (the same function where ``|u|`` stays under ~8)."""
    self.proba_distribution(mean_actions, log_std, latent_sde)
    noise = self.get_noise(self._latent_sde)
    std = self.distribution.stddev
    log_prob = (-0.5 * (noise / std).square() - std.log() - 0.5 * np.log(2.0 * np.pi)).sum(dim=1)
    pre_squash = self.distribution.mean + noise
    return torch.tanh(pre_squash), log_prob - exact_squash_correction(pre_squash)


def recording_steps(optimizer: Any, record: Callable[[], None]) -> None:
    """Makes ``optimizer.step`` call ``record`` first (to keep the gradient it is about to apply)."""
    step = optimizer.step

    def recorded_step(*args: Any, **kwargs: Any) -> Any:
        record()
        return step(*args, **kwargs)

    optimizer.step = recorded_step


@pytest.mark.bench_extra
@pytest.mark.parametrize("task_name", ["sac/Pendulum-v1", "td3/Pendulum-v1", "sac/BipedalWalker-v3"])
def test_sac_and_td3_track_sb3_gradient_step_by_gradient_step(task_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """rlcore's SAC and TD3 (their default CPU kernels, through ``train``) beside SB3's, rl-zoo's Pendulum settings
    and SAC's BipedalWalker settings (gSDE, 400x300): before each gradient step rlcore adopts SB3's weights,
    targets, Adam moments (and ``log alpha``), takes SB3's minibatch and SB3's random draws (SAC's
    reparameterization noise at ``s`` and ``s'`` or gSDE's weights, TD3's target smoothing). Each optimizer's
    gradient must be SB3's, to 1e-5 of its largest element, with SB3's SAC log-probability computed as rlcore's (the
    exact squash correction; with gSDE from ``u`` itself, not ``atanh`` of the clamped action), and the target
    networks' weights SB3's after the step (TD3's actor and targets move every second step). Adam's steps
    themselves are compared with torch's in tests/test_kernels.py."""
    pytest.importorskip("stable_baselines3")
    import stable_baselines3
    from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution, StateDependentNoiseDistribution
    from stable_baselines3.common.env_util import make_vec_env

    monkeypatch.setattr(SquashedDiagGaussianDistribution, "log_prob", exact_squashed_log_prob)
    monkeypatch.setattr(StateDependentNoiseDistribution, "log_prob_from_params", exact_state_dependent_log_prob)
    (task,) = zoo_suite.select(task_name)
    seed, total = 0, 10_000
    settings = {**zoo_suite.sb3_settings(task, total), "learning_starts": 0, "batch_size": OFF_POLICY_BATCH}
    model = getattr(stable_baselines3, task.algo.upper())("MlpPolicy", make_vec_env(task.env, n_envs=1, seed=seed),
                                                          seed=seed, device="cpu", **settings)
    model._setup_learn(total, None)
    config = TrainConfig(total_env_steps=total, num_envs=1, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    algo = Trainer(task.algo, task.env, config, {**zoo_suite.rlcore_config(task), "batch_size": OFF_POLICY_BATCH}).algo
    assert algo._kernel is not None  # the path zoo runs take
    rng = np.random.default_rng(seed)
    env = make_vec_env(task.env, n_envs=1, seed=seed)
    obs = env.reset()
    for _ in range(500):  # random transitions, in SB3's buffer as its collection stores them (scaled actions)
        scaled = rng.uniform(-1.0, 1.0, (1, *env.action_space.shape)).astype(np.float32)
        next_obs, reward, done, infos = env.step(model.policy.unscale_action(scaled))
        final = np.stack([info["terminal_observation"] if ended else row
                          for row, ended, info in zip(next_obs, done, infos)])
        model.replay_buffer.add(obs, final, scaled, reward, done, infos)
        obs = next_obs

    drawn: dict[str, Any] = {}
    sample = model.replay_buffer.sample

    def kept_sample(batch_size: int, env: Any = None) -> Any:
        drawn["batch"] = sample(batch_size, env)
        state = torch.get_rng_state()  # the draws SB3 is about to take, taken here first
        actions = drawn["batch"].actions.shape[1]
        if task.algo == "sac" and model.use_sde:  # the first of reset_noise's two draws: the matrix used
            drawn["normals"] = torch.empty(model.actor.log_std.shape).normal_()
        elif task.algo == "sac":
            drawn["normals"] = torch.cat([torch.empty(batch_size, actions).normal_() for _ in range(2)])
        else:
            drawn["normals"] = (torch.empty(batch_size, actions).normal_(0, model.target_policy_noise)
                                / algo.twin.target_policy_noise)
        torch.set_rng_state(state)
        return drawn["batch"]

    def sb3s_batch(rows: int) -> dict[str, torch.Tensor]:
        batch = drawn["batch"]
        return {"obs": batch.observations, "action": batch.actions, "reward": batch.rewards.reshape(-1),
                "discount": (1.0 - batch.dones.reshape(-1)) * model.gamma, "next_obs": batch.next_observations}

    model.replay_buffer.sample = kept_sample
    algo.standard_normal = lambda *shape: drawn["normals"].reshape(shape).clone()
    algo.sample = sb3s_batch
    pairs = off_policy_pairs(model, algo)
    sb3_grads: dict[int, torch.Tensor] = {}
    our_grads: dict[int, torch.Tensor] = {}
    sb3_siblings: dict[int, list[int]] = {}  # parameter -> the parameters its SB3 optimizer steps
    for optimizer in (model.actor.optimizer, model.critic.optimizer, getattr(model, "ent_coef_optimizer", None)):
        if optimizer is not None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            sb3_siblings.update({id(p): [id(q) for q in parameters] for p in parameters})
            recording_steps(optimizer, lambda parameters=parameters: sb3_grads.update(
                {id(p): p.grad.detach().clone() for p in parameters if p.grad is not None}))
    for optimizer in algo.optimizers().values():
        recording_steps(optimizer, lambda optimizer=optimizer: our_grads.update(
            {id(optimizer): optimizer.flat_grads.clone()}))
    actor_steps = 0
    for step in range(OFF_POLICY_STEPS):
        adopt_off_policy_state(pairs, model, algo)
        sb3_grads.clear()
        our_grads.clear()
        model.train(gradient_steps=1, batch_size=OFF_POLICY_BATCH)
        algo.train(1)
        for index, (theirs, ours) in enumerate(pairs):
            owner = owner_of(algo, ours)
            if owner is None:  # a target network: Polyak-averaged, compared by weight
                expected = torch.cat([part.detach().reshape(-1, *ours.shape[1:]) for part in theirs])
                gap = float((expected - ours.detach()).abs().max())
                assert gap < 5e-7, f"step {step}: target parameter {index} {tuple(ours.shape)} differs by {gap:.2e}"
                continue
            if id(theirs[0]) not in sb3_grads:  # TD3's actor on a step without its update
                assert id(owner) not in our_grads, f"step {step}: rlcore stepped an optimizer SB3 did not"
                continue
            expected = torch.cat([sb3_grads[id(part)].reshape(-1) for part in theirs])
            scale = max(float(sb3_grads[key].abs().max()) for key in sb3_siblings[id(theirs[0])])
            gap = float((our_grads[id(owner)][flat_slice(owner, ours)] - expected).abs().max())
            assert gap <= 1e-5 * scale, f"step {step}: gradient {index} {tuple(ours.shape)} differs by {gap:.2e}"
            actor_steps += owner is algo.actor_optimizer
    assert actor_steps > 0


@pytest.mark.bench_extra
@pytest.mark.parametrize(("task_name", "steps", "capacity"), [("td3/LunarLanderContinuous-v3", 1_500, 1_000),
                                                               ("sac/Pendulum-v1", 700, 500)])
def test_off_policy_collection_stores_what_sb3s_collection_stores(task_name: str, steps: int, capacity: int) -> None:
    """rlcore's off-policy collection (``Trainer.run`` with ``learning_starts`` past the run, so no update) beside
    SB3's (``learn`` likewise), rl-zoo's settings but a replay smaller than the run, both taking the same actions
    (drawn here in ``[-1, 1]``, SB3 stepping rlcore's env actions for them): every row of the ring, positions
    included after it wrapped, is SB3's -- the observation, the action as the critics see it (scaled to
    ``[-1, 1]``), the reward, the true next observation (the episode's last where it ended) and the discount (0
    where the episode terminated; a time limit bootstraps, as SB3's ``handle_timeout_termination``).
    LunarLander's episodes end by landing or crashing, Pendulum's by its 200-step limit only."""
    pytest.importorskip("stable_baselines3")
    import stable_baselines3
    from stable_baselines3.common.env_util import make_vec_env

    from rlcore.buffers.samplers import SampleIndex

    (task,) = zoo_suite.select(task_name)
    seed, no_updates = 0, {"learning_starts": steps + 1, "buffer_size": capacity}
    config = TrainConfig(total_env_steps=steps, num_envs=1, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    trainer = Trainer(task.algo, task.env, config, {**zoo_suite.rlcore_config(task), **no_updates})
    algo = trainer.algo
    scaled = torch.from_numpy(np.random.default_rng(seed).uniform(-1.0, 1.0, (steps, algo.action_dim))).float()
    env_actions = algo.to_env_action(scaled)  # SB3 steps these too: its unscaling rounds differently in the last bit
    our_actions, sb3_actions = iter(env_actions), iter(zip(env_actions.numpy(), scaled.numpy()))
    algo.act = lambda obs, deterministic=False: next(our_actions)[None]
    trainer.run()

    model = getattr(stable_baselines3, task.algo.upper())(
        "MlpPolicy", make_vec_env(task.env, n_envs=1, seed=seed), seed=seed, device="cpu",
        **{**zoo_suite.sb3_settings(task, steps), **no_updates})

    def sb3_sample_action(learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[Any, Any]:
        env_action, buffer_action = next(sb3_actions)
        return env_action[None], buffer_action[None]

    model._sample_action = sb3_sample_action
    model.learn(steps)
    assert next(our_actions, None) is None and next(sb3_actions, None) is None  # every action taken, once

    ours = algo.replay.gather(SampleIndex(torch.arange(capacity), None))
    buffer = model.replay_buffer
    assert buffer.full and buffer.pos == steps % capacity
    assert algo.replay.steps_capacity == capacity and algo.replay.committed().tolist() == [steps]  # rlcore's ring
    ended_by_time = buffer.dones[:, 0] * buffer.timeouts[:, 0]
    terminal = buffer.dones[:, 0] * (1.0 - buffer.timeouts[:, 0])
    assert ended_by_time.sum() > 0 if task.env == "Pendulum-v1" else terminal.sum() > 0
    expected = {"obs": buffer.observations[:, 0], "action": buffer.actions[:, 0], "reward": buffer.rewards[:, 0],
                "next_obs": buffer.next_observations[:, 0], "discount": (1.0 - terminal) * model.gamma}
    got = {"obs": ours["obs"], "action": algo.to_scaled_action(ours["action"]), "reward": ours["reward"],
           "next_obs": ours["next_obs"], "discount": ours["discount"]}
    for key, want in expected.items():
        gap = np.abs(got[key].numpy() - want).max()
        assert gap <= (1e-6 if key == "action" else 0.0), f"{key} differs from SB3's by {gap:.2e}"
