"""Recurrent DQN (memory="lstm" | "transformer"): the network, the window targets, per-env state, exact resume."""

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from runs import check_predict_with_state, run_until_killed

import rlcore
from rlcore.algos.dqn import DQN, DQNConfig
from rlcore.algos.r2d2 import R2D2, R2D2Config, window_td_targets
from rlcore.api import split_settings
from rlcore.buffers.replay import ReplayBuffer
from rlcore.buffers.sequence import EpisodeEndReplay
from rlcore.nets.base import FlattenExtractor
from rlcore.nets.recurrent_q import RecurrentQNetwork
from rlcore.trainer import TrainConfig, Trainer

BOX = spaces.Box(-np.inf, np.inf, (3,), np.float32)
MEMORY_KINDS = ["lstm", "transformer"]


def small_net(kind: str, dueling: bool = False) -> RecurrentQNetwork:
    torch.manual_seed(0)
    return RecurrentQNetwork(BOX, 2, FlattenExtractor(BOX), kind, memory_size=8, context=4, net_arch=(8,),
                             dueling=dueling)


def memory_dqn(kind: str = "lstm", num_envs: int = 1, **options) -> DQN:
    settings = {"batch_size": 4, "buffer_size": 400 * num_envs, "net_arch": (8,), "memory": kind, "memory_size": 8,
                "context_length": 4, "sequence_length": 3, "burn_in": 2, **options}
    return DQN(BOX, spaces.Discrete(2), DQNConfig(**settings), num_envs=num_envs, seed=0)


def add_steps(algo: DQN, steps: int, end_every: int = 7, seed: int = 0) -> None:
    """Transitions whose ``obs[..., 0]`` is the global step, so windows can be checked for order."""
    rng = np.random.default_rng(seed)
    num_envs = algo.num_envs
    for step in range(steps):
        obs = np.concatenate([np.full((num_envs, 1), step, np.float32), rng.normal(size=(num_envs, 2))], axis=1)
        ends = (step + np.arange(num_envs)) % end_every == end_every - 1
        algo.replay.add({"obs": obs.astype(np.float32), "action": rng.integers(2, size=num_envs),
                         "reward": rng.normal(size=num_envs).astype(np.float32),
                         "next_obs": (obs + 0.5).astype(np.float32), "terminated": ends & (step % 2 == 0),
                         "truncated": ends & (step % 2 == 1)})


# --- the network ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_unroll_from_an_episode_start_equals_stepping(kind: str, dueling: bool) -> None:
    net = small_net(kind, dueling).eval()
    obs = torch.randn(3, 7, 3)
    state = net.initial_state(3, "cpu", torch.float32)
    stepped = []
    with torch.no_grad():
        for t in range(7):
            q, state = net.step(obs[:, t], state, torch.full((3,), t == 0))
            stepped.append(q)
        stepped_q = torch.stack(stepped, dim=1)
        assert net.unroll(obs).shape == (3, 7, 2)
        assert torch.allclose(net.unroll(obs), stepped_q, atol=1e-5)
        assert torch.allclose(net.unroll(obs, burn_in=3), stepped_q[:, 3:], atol=1e-5)


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_the_burn_in_gets_no_output_but_carries_gradients_to_the_memory(kind: str) -> None:
    """Burn-in steps have no Q-values (no loss), but the loss steps' memory of them is trained: a cue seen in the
    burn-in must be kept for a later loss step (the memory task's cue, 10 steps before its query)."""
    net = small_net(kind)
    obs = torch.randn(2, 6, 3, requires_grad=True)
    out = net.unroll(obs, burn_in=2)
    assert out.shape == (2, 4, 2)
    out.sum().backward()
    assert torch.all(obs.grad.abs().sum(dim=2) > 0)
    obs.grad = None
    starts = torch.zeros(2, 6, dtype=torch.bool)
    starts[0, 2] = True  # row 0's episode starts with the first loss step: its burn-in is another episode's
    net.unroll(obs, burn_in=2, episode_start=starts).sum().backward()
    assert torch.all(obs.grad[0, :2] == 0) and torch.all(obs.grad[1, :2].abs().sum(dim=1) > 0)


def test_unroll_rejects_a_burn_in_as_long_as_the_window() -> None:
    with pytest.raises(ValueError, match="burn_in"):
        small_net("lstm").unroll(torch.zeros(1, 3, 3), burn_in=3)


# --- targets ----------------------------------------------------------------------------------
def test_window_targets_hand_computed_with_a_terminal_last_step() -> None:
    reward = torch.tensor([[9.0, 1.0, 2.0, 3.0]])  # the first step is burn-in
    terminated = torch.tensor([[False, False, False, True]])
    truncated = torch.zeros_like(terminated)
    next_value = torch.tensor([[10.0, 20.0, 30.0]])  # after loss steps 0, 1, 2
    targets, mask = window_td_targets(reward, terminated, truncated, next_value, 0.5, 1, burn_in=1)
    assert targets.tolist() == [[1.0 + 0.5 * 10.0, 2.0 + 0.5 * 20.0, 3.0]]
    assert mask.tolist() == [[1.0, 1.0, 1.0]]
    targets, _ = window_td_targets(reward, terminated, truncated, next_value, 0.5, 2, burn_in=1)
    assert targets.tolist() == [[1.0 + 0.5 * 2.0 + 0.25 * 20.0, 2.0 + 0.5 * 3.0, 3.0]]


def test_window_targets_bootstrap_after_a_truncation_and_mask_steps_past_an_end() -> None:
    reward = torch.tensor([[1.0, 2.0, 3.0]])
    truncated = torch.tensor([[False, False, True]])
    targets, _ = window_td_targets(reward, torch.zeros_like(truncated), truncated, torch.tensor([[4.0, 5.0, 6.0]]),
                                   0.5, 3)
    assert targets.tolist() == [[1.0 + 0.5 * 2.0 + 0.25 * 3.0 + 0.125 * 6.0, 2.0 + 0.5 * 3.0 + 0.25 * 6.0,
                                 3.0 + 0.5 * 6.0]]


def test_window_targets_never_cross_an_episode_end_and_count_the_next_episodes_steps() -> None:
    """Windows may hold two episodes: returns stop at the end, the next episode's steps count (their own
    returns), and only a return that ends at a truncation inside the window is masked (its bootstrap, the
    final observation's value, is not in the window)."""
    reward = torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0]])
    terminated = torch.tensor([[True, False, True, False, False]])  # one end in the burn-in, one inside
    next_value = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    targets, mask = window_td_targets(reward, terminated, torch.zeros_like(terminated), next_value, 0.5, 2,
                                      burn_in=1)
    assert targets.tolist() == [[1.0 + 0.5 * 2.0, 2.0, 3.0 + 0.5 * 4.0 + 0.25 * 40.0, 4.0 + 0.5 * 40.0]]
    assert mask.tolist() == [[1.0, 1.0, 1.0, 1.0]]
    truncated = terminated.clone()
    _, mask = window_td_targets(reward, torch.zeros_like(truncated), truncated, next_value, 0.5, 2, burn_in=1)
    assert mask.tolist() == [[0.0, 0.0, 1.0, 1.0]]  # both returns reach the truncation at loss step 1
    _, mask = window_td_targets(reward, torch.zeros_like(truncated), truncated, next_value, 0.5, 1, burn_in=1)
    assert mask.tolist() == [[1.0, 0.0, 1.0, 1.0]]


# --- acting -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_the_behaviour_policy_carries_each_envs_state_and_resets_it_at_episode_starts(kind: str) -> None:
    algo = memory_dqn(kind, num_envs=2)
    net = algo.q_net
    obs = [torch.randn(2, 3) for _ in range(3)]
    algo.act(obs[0])
    algo.replay.add({"obs": obs[0].numpy(), "action": np.zeros(2, np.int64), "reward": np.zeros(2, np.float32),
                     "next_obs": obs[1].numpy(), "terminated": np.array([True, False]),
                     "truncated": np.array([False, False])})
    assert algo._episode_start.tolist() == [True, False]
    algo.act(obs[1])
    with torch.no_grad():
        fresh = net.initial_state(2, "cpu", torch.float32)
        _, after_first = net.step(obs[0], fresh, torch.ones(2, dtype=torch.bool))
        _, expected = net.step(obs[1], after_first, torch.tensor([True, False]))
    for key, value in expected.items():
        assert torch.allclose(algo._memory_state[key].float(), value.float(), atol=1e-6), key
    # env 0 restarted: it acts from now on as an env whose episode began with obs[1]
    with torch.no_grad():
        _, restarted = net.step(obs[1][:1], net.initial_state(1, "cpu", torch.float32), torch.ones(1, dtype=torch.bool))
        no_start = torch.zeros(1, dtype=torch.bool)
        carried = net.step(obs[2][:1], {key: value[:1] for key, value in algo._memory_state.items()}, no_start)[0]
        assert torch.allclose(carried, net.step(obs[2][:1], restarted, no_start)[0], atol=1e-6)
    assert not algo._episode_start.any()


def test_greedy_acting_with_memory_goes_through_actor() -> None:
    algo = memory_dqn(num_envs=2)
    with pytest.raises(TypeError, match="algo.actor"):
        algo.act(torch.zeros(2, 3), deterministic=True)
    with pytest.raises(ValueError, match="2 training envs"):
        algo.act(torch.zeros(5, 3))
    act = algo.actor(deterministic=True)
    before = {key: value.clone() for key, value in algo._memory_state.items()}
    first, second = act(torch.ones(5, 3)), act(torch.ones(5, 3))
    assert first.shape == second.shape == (5,)
    assert all(torch.equal(before[key], value) for key, value in algo._memory_state.items())  # training state kept


# --- learning ---------------------------------------------------------------------------------
def test_the_learner_sees_windows_across_episodes_with_their_starts_marked() -> None:
    algo = memory_dqn(num_envs=3, learning_rate=1e-2)
    add_steps(algo, 60, end_every=4)  # episodes shorter than the 5-step windows still train
    seen: list[dict[str, torch.Tensor]] = []
    step = algo._sequence_step

    def spy(window: dict[str, torch.Tensor], inputs: torch.Tensor, episode_start: torch.Tensor,
            q_target: torch.Tensor) -> torch.Tensor:
        seen.append({**window, "inputs": inputs, "episode_start": episode_start, "q_target": q_target})
        return step(window, inputs, episode_start, q_target)

    algo._sequence_step = spy  # type: ignore[method-assign]
    before = [p.detach().clone() for p in algo.q_net.parameters()]
    metrics = algo.train(4)
    assert len(seen) == 4 and np.isfinite(metrics["train/loss"]) and metrics["train/n_updates"] == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.q_net.parameters()))
    for window in seen:
        assert window["obs"].shape == (4, 5, 3) and window["inputs"].shape == (4, 6, 3)
        assert window["q_target"].shape == (4, 4, 2)  # the 3 loss steps and the bootstrap after the last
        step_counts = window["obs"][:, :, 0]
        assert torch.all(step_counts[:, 1:] - step_counts[:, :-1] == 1)
        ends = window["terminated"] | window["truncated"]
        assert ends[:, :-1].any()  # every 5-step window holds an episode end before its last step
        assert torch.equal(window["episode_start"][:, 1:-1], ends[:, :-1])  # the memory restarts after each end
        assert not window["episode_start"][:, [0, -1]].any()  # a fresh state; the last next_obs continues
        assert torch.equal(window["inputs"][:, -1, 0], window["obs"][:, -1, 0] + 0.5)  # then its next_obs


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_unrolling_a_window_across_episodes_is_stepping_with_resets(kind: str) -> None:
    """The learner's unroll over a window that holds episode starts gives, at every step after the burn-in, the
    Q-values acting gave: the memory starts afresh where an episode starts (the Transformer's context too)."""
    net = small_net(kind)
    obs = torch.randn(3, 9, 3)
    starts = torch.zeros(3, 9, dtype=torch.bool)
    starts[0, 4] = starts[1, 2] = starts[1, 3] = starts[2, 7] = True
    with torch.no_grad():
        state = net.initial_state(3, "cpu", torch.float32)
        stepped = []
        for index in range(9):
            q, state = net.step(obs[:, index], state, starts[:, index] | (index == 0))
            stepped.append(q)
        stepped_q = torch.stack(stepped, dim=1)
        for burn_in in (0, 3):
            assert torch.allclose(net.unroll(obs, burn_in, starts), stepped_q[:, burn_in:], atol=1e-5)
        # without the starts, the rows with a start inside differ (the check can fail)
        assert not torch.allclose(net.unroll(obs, 3)[:2], stepped_q[:2, 3:], atol=1e-3)


def test_burn_in_steps_do_not_enter_the_loss() -> None:
    algo = memory_dqn()
    add_steps(algo, 40, end_every=40)
    window = {"obs": torch.randn(4, 5, 3), "action": torch.zeros(4, 5, dtype=torch.long), "reward": torch.randn(4, 5),
              "terminated": torch.zeros(4, 5, dtype=torch.bool), "truncated": torch.zeros(4, 5, dtype=torch.bool)}
    inputs = torch.cat([window["obs"], torch.randn(4, 1, 3)], dim=1)
    q_target = torch.randn(4, 4, 2)
    changed = {**window, "action": window["action"].clone(), "reward": window["reward"].clone()}
    changed["action"][:, :2], changed["reward"][:, :2] = 1, 100.0
    state = {key: value.clone() for key, value in algo.q_net.state_dict().items()}
    optimizer_state = algo.optimizer.state_dict()
    no_starts = torch.zeros(4, 6, dtype=torch.bool)
    loss = algo._sequence_step(window, inputs, no_starts, q_target)
    algo.q_net.load_state_dict(state)
    algo.optimizer.load_state_dict(optimizer_state)
    assert torch.equal(algo._sequence_step(changed, inputs, no_starts, q_target), loss)


def test_a_buffer_smaller_than_one_window_per_env_is_refused_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="buffer_size=20 holds 5 steps per env for 4 envs.*= 6"):
        memory_dqn(num_envs=4, buffer_size=20, sequence_length=4, burn_in=2)


def test_training_waits_for_a_window_and_trains_on_episodes_shorter_than_it() -> None:
    algo = memory_dqn(sequence_length=4, burn_in=2)
    add_steps(algo, 5, end_every=100)
    assert "train/loss" not in algo.train(1) and algo.updates == 0
    short = memory_dqn(sequence_length=4, burn_in=2)
    add_steps(short, 30, end_every=4)  # episodes of 4 steps, windows of 6
    assert np.isfinite(short.train(1)["train/loss"]) and short.updates == 1


def test_a_replaced_replay_buffer_is_refused_naming_num_workers() -> None:
    algo = memory_dqn()
    algo.replay = ReplayBuffer(100, 1)
    with pytest.raises(ValueError, match="num_workers"):
        algo.train(1)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("memory", "gru", "memory must be one of"), ("burn_in", -1, "burn_in"), ("sequence_length", 0, "sequence_length"),
    ("memory_size", 0, "memory_size"), ("prioritized", True, "prioritized"),
])
def test_invalid_memory_settings_name_the_field(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DQNConfig(**{"memory": "lstm", field: value})


def test_memory_dqn_is_r2d2_with_an_episode_end_replay_and_no_kernel() -> None:
    algo = memory_dqn()
    assert type(algo) is R2D2 and algo.name == "dqn" and isinstance(algo.config, R2D2Config)
    assert isinstance(algo.replay, EpisodeEndReplay) and not hasattr(algo, "_kernel")
    with pytest.raises(TypeError, match="q_net.step"):
        algo.q_values(torch.zeros(1, 3))


# --- checkpoints ------------------------------------------------------------------------------
def test_state_dict_restores_the_training_envs_memory() -> None:
    algo = memory_dqn(num_envs=2)
    algo.act(torch.randn(2, 3))
    algo._episodes_ended(np.array([False, True]))
    other = memory_dqn(num_envs=2)
    other.load_state_dict(algo.state_dict())
    assert all(torch.equal(other._memory_state[key], value) for key, value in algo._memory_state.items())
    assert other._episode_start.tolist() == [False, True]
    with pytest.raises(ValueError, match="checkpoint.s memory"):
        memory_dqn().load_state_dict(DQN(BOX, spaces.Discrete(2), DQNConfig(net_arch=(8,))).state_dict())


@pytest.mark.parametrize("memory", MEMORY_KINDS)
def test_memory_dqn_trains_evaluates_and_resumes_exactly(memory: str, tmp_path: Path) -> None:
    settings = {"memory": memory, "sequence_length": 4, "burn_in": 2, "context_length": 3, "memory_size": 8,
                "net_arch": [8], "learning_starts": 64, "train_freq": 4, "gradient_steps": 2, "batch_size": 8,
                "buffer_size": 2000, "target_update_interval": 100, "double": True, "n_step": 2}

    def config(folder: str) -> TrainConfig:
        return TrainConfig(total_env_steps=320, num_envs=2, seed=4, eval_freq=160, eval_episodes=2,
                           checkpoint_freq=96, log_dir=str(tmp_path / folder), progress_bar=False, device="cpu")

    reference = Trainer("dqn", "CartPole-v1", config("a"), settings)
    reference.run()
    partial = Trainer("dqn", "CartPole-v1", config("b"), settings)
    run_until_killed(partial, 96)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(partial.run_dir)
    assert resumed.env_steps == 96
    resumed.run()
    assert reference.algo.updates > 0
    for a, b in zip(reference.algo.q_net.parameters(), resumed.algo.q_net.parameters()):
        assert torch.equal(a, b)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]
    loaded = rlcore.load(reference.run_dir / "final")
    assert loaded.evaluate(2)["mean_reward"] == reference.agent().evaluate(2)["mean_reward"]
    check_predict_with_state(loaded)


def test_r2d2_by_its_own_name_is_the_same_algorithm_as_dqn_with_memory() -> None:
    settings = {"memory": "lstm", "sequence_length": 4, "burn_in": 2, "memory_size": 8, "net_arch": [8],
                "learning_starts": 64, "train_freq": 4, "batch_size": 8, "buffer_size": 2000}
    config = TrainConfig(total_env_steps=200, num_envs=2, seed=3, eval_freq=0, log_dir=None, progress_bar=False)
    runs = {name: Trainer(name, "CartPole-v1", config, settings).run() for name in ("dqn", "r2d2")}  # no presets
    assert {name: (type(agent.algo), agent.name) for name, agent in runs.items()} == {
        "dqn": (R2D2, "dqn"), "r2d2": (R2D2, "r2d2")}
    assert runs["r2d2"].algo.updates > 0
    for a, b in zip(runs["dqn"].algo.q_net.parameters(), runs["r2d2"].algo.q_net.parameters()):
        assert torch.equal(a, b)
    assert R2D2Config().memory == "lstm"
    with pytest.raises(ValueError, match="r2d2 needs memory"):
        R2D2Config(memory=None)
    preset = split_settings("r2d2", "rlcore/Memory-v0", {})[1]
    assert preset == {**split_settings("dqn", "rlcore/Memory-v0", {})[1]}


def test_a_dqn_subclass_with_memory_is_pointed_to_r2d2() -> None:
    class MyDQN(DQN):
        pass

    with pytest.raises(TypeError, match="subclass rlcore.algos.r2d2.R2D2"):
        MyDQN(BOX, spaces.Discrete(2), DQNConfig(memory="lstm"))
    assert type(MyDQN(BOX, spaces.Discrete(2), DQNConfig())) is MyDQN
