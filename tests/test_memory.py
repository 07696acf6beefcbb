"""Memory policies: the LSTM and Transformer cores, state resets at episode starts, sequence minibatches,
PPO/A2C/REINFORCE with memory, exact resume with the memory state."""

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from runs import check_predict_with_state, run_until_killed

import rlcore
from rlcore.agent import build_algorithm
from rlcore.nets.sequence import LSTMCore, TransformerCore, push_window
from rlcore.trainer import TrainConfig, Trainer


def test_lstm_sequence_equals_stepping_and_resets_at_episode_starts() -> None:
    torch.manual_seed(0)
    core = LSTMCore(3, 8)
    x = torch.randn(2, 5, 3)
    starts = torch.zeros(2, 5, dtype=torch.bool)
    starts[1, 2] = True
    state = {"h": torch.randn(2, 8), "c": torch.randn(2, 8)}
    sequence = core.sequence(x, state, starts)
    stepped, current = [], state
    for index in range(5):
        out, current = core.step(x[:, index], current, starts[:, index])
        stepped.append(out)
    assert torch.allclose(sequence, torch.stack(stepped, 1))
    # after the reset, env 1's outputs equal a fresh run from a zero state on the remaining steps
    fresh = core.sequence(x[1:, 2:], core.initial_state(1), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.allclose(sequence[1:, 2:], fresh, atol=1e-6)


@pytest.mark.parametrize("start_rate", [0.0, 0.1, 0.3, 1.0, "every 4 steps"])
def test_fused_lstm_sequence_matches_stepping_in_outputs_and_gradients(start_rate: float | str) -> None:
    """:meth:`LSTMCore.sequence` (fused between the steps where some sequence starts an episode, or over padded
    episode segments) against one cell step at a time: resets at step 0, anywhere, at every step, or short
    episodes at staggered offsets (the segment path)."""
    torch.manual_seed(3)
    core = LSTMCore(4, 6)
    x = torch.randn(5, 12, 4, requires_grad=True)
    if start_rate == "every 4 steps":
        starts = (torch.arange(12) + torch.arange(5).view(-1, 1)) % 4 == 0
    else:
        starts = torch.rand(5, 12) < start_rate
    state = {"h": torch.randn(5, 6), "c": torch.randn(5, 6)}
    results = []
    for run in (core.sequence, core.sequence_by_step):
        core.zero_grad()
        x.grad = None
        out = run(x, state, starts)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), x.grad.clone(), [p.grad.clone() for p in core.parameters()]))
    (fused, fused_x, fused_params), (stepped, stepped_x, stepped_params) = results
    torch.testing.assert_close(fused, stepped, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused_x, stepped_x, atol=1e-6, rtol=1e-5)
    for mine, theirs in zip(fused_params, stepped_params):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_lstm_takes_the_segment_path_for_short_episodes_and_the_stretch_path_for_long_ones(monkeypatch) -> None:
    """Which fused path :meth:`LSTMCore.sequence` takes (both are held to stepping above)."""
    core = LSTMCore(2, 4)
    calls = []
    monkeypatch.setattr(core, "by_segments", lambda *args: calls.append("segments") or torch.zeros(4, 24, 4))
    x, state = torch.randn(4, 24, 2), {"h": torch.zeros(4, 4), "c": torch.zeros(4, 4)}
    short = torch.zeros(4, 24, dtype=torch.bool)
    short[:, ::6] = True  # four episodes per sequence
    short[1] = short[1].roll(3)
    core.sequence(x, state, short)
    long = torch.zeros(4, 24, dtype=torch.bool)
    long[0, 20] = True  # one later start: two stretches
    core.sequence(x, state, long)
    assert calls == ["segments"]


def test_transformer_ignores_frames_from_before_the_episode_and_the_future() -> None:
    torch.manual_seed(1)
    core = TransformerCore(2, context=4, d_model=8, heads=2, layers=2)
    window = torch.randn(1, 4, 2)
    valid = torch.tensor([[False, False, True, True]])
    other = window.clone()
    other[:, :2] = torch.randn(1, 2, 2) * 100  # frames of an earlier episode
    assert torch.allclose(core(window, valid), core(other, valid), atol=1e-5)
    assert torch.isfinite(core(window, torch.tensor([[False, False, False, True]]))).all()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("heads", [1, 4])
def test_transformer_newest_position_path_matches_the_full_encoder_in_outputs_and_gradients(layers: int,
                                                                                          heads: int) -> None:
    """:meth:`TransformerCore.forward` runs the last encoder layer for the newest position alone; the whole
    encoder's newest position (:meth:`TransformerCore.forward_full`) gives the same outputs and the same gradients
    for the input and every parameter. Windows start an episode at different slots (invalid positions before it),
    one holds only the newest position, one has every position valid."""
    torch.manual_seed(5 + layers + heads)
    core = TransformerCore(3, context=6, d_model=8, heads=heads, layers=layers)
    with torch.no_grad():  # make every parameter matter (the norms start at 1 and 0)
        for parameter in core.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    assert core.computes_newest_only()
    window = torch.randn(5, 6, 3, requires_grad=True)
    valid = torch.arange(6) >= torch.tensor([0, 2, 5, 3, 1]).view(-1, 1)  # [5, 6]: episode starts at these slots
    valid[4, 2] = False  # a gap (a window the mask rule must handle all the same)
    results = []
    for run in (core.forward, core.forward_full):
        core.zero_grad()
        window.grad = None
        out = run(window, valid)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        gradients = {name: parameter.grad.clone() for name, parameter in core.named_parameters()}
        results.append((out.detach(), window.grad.clone(), gradients))
    (newest, newest_input, newest_params), (full, full_input, full_params) = results
    assert newest.shape == (5, 8)
    torch.testing.assert_close(newest, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(newest_input, full_input, atol=1e-5, rtol=1e-5)
    assert newest_params.keys() == full_params.keys()
    for name, gradient in full_params.items():
        assert gradient.abs().sum() > 0, name
        torch.testing.assert_close(newest_params[name], gradient, atol=1e-5, rtol=1e-5, msg=name)
    with torch.no_grad():  # acting: no autograd, and the module in evaluation mode
        core.eval()
        torch.testing.assert_close(core(window, valid), full, atol=1e-5, rtol=1e-5)


def test_transformer_runs_the_full_encoder_for_layers_the_newest_position_path_does_not_reproduce() -> None:
    core = TransformerCore(3, context=4, d_model=8, heads=2)
    layer = core.encoder.layers[-1]
    layer.dropout.p = 0.1
    assert not core.computes_newest_only()  # dropout while training
    core.eval()
    assert core.computes_newest_only()  # dropout is off in evaluation
    core.encoder.norm = torch.nn.LayerNorm(8)
    assert not core.computes_newest_only()  # a final norm over every position
    core.encoder.norm = None
    layer.norm_first = False
    assert not core.computes_newest_only()
    window, valid = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(core(window, valid), core.forward_full(window, valid))


def test_push_window_shifts_and_forgets_at_episode_starts() -> None:
    state = {"window": torch.zeros(2, 3, 1), "valid": torch.zeros(2, 3, dtype=torch.bool)}
    for value in (1.0, 2.0, 3.0):
        state = push_window(state, torch.full((2, 1), value), torch.tensor([value == 1.0, value == 3.0]))
    assert state["window"][:, :, 0].tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    assert state["valid"].tolist() == [[True, True, True], [False, False, True]]


def test_lstm_minibatches_are_whole_sequences_of_one_env() -> None:
    env = gym.make("CartPole-v1")
    algo = build_algorithm("ppo", env.observation_space, env.action_space,
                           {"memory": "lstm", "n_steps": 8, "sequence_length": 4, "batch_size": 8}, num_envs=3)
    rows = 8 * 3
    batch = {"advantage": torch.arange(rows, dtype=torch.float32), "memory/obs": torch.arange(rows).view(-1, 1),
             "memory/episode_start": torch.zeros(rows, dtype=torch.bool), "memory/h": torch.zeros(rows, 64),
             "memory/c": torch.zeros(rows, 64)}
    parts = algo.minibatches(batch, 8, shuffle=True)
    assert len(parts) == 3 and all(part["inputs"]["obs"].shape == (2, 4, 1) for part in parts)
    seen = []
    for part in parts:
        for sequence in part["inputs"]["obs"][:, :, 0].tolist():
            # rows t * N + env of one env, consecutive in time
            assert all(b - a == 3 for a, b in zip(sequence, sequence[1:])), sequence
            seen += sequence
        assert part["advantage"].tolist() == part["inputs"]["obs"].reshape(-1).float().tolist()
    assert sorted(seen) == list(range(rows))


@pytest.mark.parametrize(("algo", "settings", "expected"), [
    ("ppo", {"n_steps": 32, "batch_size": 256}, 32),  # each env's whole rollout fits a minibatch
    ("ppo", {"n_steps": 2048, "batch_size": 64}, 64),  # the longest divisor of n_steps within a minibatch
    ("ppo", {"n_steps": 100, "batch_size": 64}, 50),
    ("ppo", {"n_steps": 32, "batch_size": 256, "sequence_length": 8}, 8),  # as set
    ("a2c", {"n_steps": 5}, 5),  # the rollout is one minibatch
])
def test_lstm_sequences_are_as_long_as_a_minibatch_allows_unless_set(algo: str, settings: dict, expected: int) -> None:
    env = gym.make("CartPole-v1")
    built = build_algorithm(algo, env.observation_space, env.action_space, {"memory": "lstm", **settings}, num_envs=2)
    assert built.config.lstm_sequence_length == expected and built.memory.sequence_length == expected


@pytest.mark.parametrize("memory", ["lstm", "transformer"])
@pytest.mark.parametrize("critic_memory", ["separate", "shared"])
def test_critic_memory_decides_whether_the_value_loss_trains_the_actors_core(memory: str, critic_memory: str) -> None:
    """``separate`` (sb3-contrib's RecurrentPPO): the critic has its own core, the value loss leaves the actor's
    alone; ``shared``: one core. Either way, replaying the stored inputs gives what acting gave."""
    env = gym.make("CartPole-v1")
    algo = build_algorithm("ppo", env.observation_space, env.action_space,
                           {"memory": memory, "critic_memory": critic_memory, "memory_size": 8, "context_length": 3,
                            "net_arch": [8]}, num_envs=2)
    policy = algo.policy
    assert (policy.critic_core is not None) == (critic_memory == "separate")
    state = policy.initial_state(2, "cpu", torch.float32)
    starts = torch.tensor([True, True])
    acted, stored = [], []
    for step in range(4):
        params, value, state, inputs = policy.step(torch.randn(2, 4), state, starts)
        acted.append((params, value))
        stored.append(inputs)
        starts = torch.tensor([False, step == 1])  # env 1 starts an episode at step 2
    if memory == "lstm":
        assert ({"critic_h", "critic_c"} <= set(stored[0])) == (critic_memory == "separate")
        replay = {key: (torch.stack([inputs[key] for inputs in stored], dim=1) if key in ("obs", "episode_start")
                        else stored[0][key]) for key in stored[0]}
        params, value = policy(replay)  # rows env-major: [B * L]
        torch.testing.assert_close(params, torch.stack([p for p, _ in acted], 1).reshape(-1, params.shape[-1]))
        torch.testing.assert_close(value, torch.stack([v for _, v in acted], 1).reshape(-1))
    else:
        params, value = policy(stored[-1])
        torch.testing.assert_close(params, acted[-1][0])
        torch.testing.assert_close(value, acted[-1][1])
    policy.zero_grad()
    value.square().sum().backward()  # a value loss only
    actor_core_grads = [p.grad for p in policy.core.parameters()]
    if critic_memory == "separate":
        assert all(grad is None or not grad.any() for grad in actor_core_grads)
        assert all(p.grad is not None and p.grad.any() for p in policy.critic_core.parameters() if p.dim() > 1)
    else:
        assert any(grad is not None and grad.any() for grad in actor_core_grads)


@pytest.mark.parametrize("memory", ["lstm", "transformer"])
@pytest.mark.parametrize("algo_name", ["ppo", "a2c", "reinforce"])
def test_memory_policies_train_evaluate_and_resume_exactly(memory: str, algo_name: str, tmp_path: Path) -> None:
    settings = {"memory": memory, "n_steps": 16, "sequence_length": 8, "context_length": 4, "memory_size": 16,
                "net_arch": [16]}
    if algo_name == "ppo":
        settings.update(batch_size=32, n_epochs=2)

    def config(folder: str) -> TrainConfig:
        return TrainConfig(total_env_steps=256, num_envs=2, seed=4, eval_freq=128, eval_episodes=2,
                           checkpoint_freq=64, log_dir=str(tmp_path / folder), progress_bar=False, device="cpu")

    reference = Trainer(algo_name, "CartPole-v1", config("a"), settings)
    reference.run()
    partial = Trainer(algo_name, "CartPole-v1", config("b"), settings)
    run_until_killed(partial, 64)  # stops right after the checkpoint there, as if killed
    resumed = Trainer.resume(partial.run_dir)
    resumed.run()
    for a, b in zip(reference.algo.policy.parameters(), resumed.algo.policy.parameters()):
        assert torch.equal(a, b)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]
    loaded = rlcore.load(reference.run_dir / "final")
    assert loaded.evaluate(2)["mean_reward"] == reference.agent().evaluate(2)["mean_reward"]
    check_predict_with_state(loaded)


def test_a_checkpoint_from_before_critic_memory_loads_with_one_shared_core(tmp_path: Path) -> None:
    import json

    agent = rlcore.train("ppo", "CartPole-v1", memory="lstm", critic_memory="shared", n_steps=16, sequence_length=8,
                         memory_size=16, net_arch=[16], batch_size=32, n_epochs=1, total_env_steps=64, num_envs=2,
                         seed=3, eval_freq=0, progress_bar=False, device="cpu", log_dir=str(tmp_path))
    agent.save(tmp_path / "agent")
    meta_path = tmp_path / "agent" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["algo_config"].pop("critic_memory") == "shared"
    meta_path.write_text(json.dumps(meta))  # as saved before the setting existed
    loaded = rlcore.load(tmp_path / "agent", device="cpu")
    assert loaded.algo.config.critic_memory == "shared"
    obs = torch.linspace(-0.5, 0.5, 12).reshape(3, 4)
    act_loaded, act_trained = loaded.algo.actor(), agent.algo.actor()
    for _ in range(3):  # the memory state carries over
        assert torch.equal(act_loaded(obs), act_trained(obs))
    assert all(torch.equal(a, b) for a, b in zip(loaded.algo.policy.parameters(), agent.algo.policy.parameters()))


def test_lstm_needs_n_steps_to_be_a_multiple_of_sequence_length() -> None:
    with pytest.raises(ValueError, match="multiple of sequence_length"):
        rlcore.train("ppo", "CartPole-v1", memory="lstm", n_steps=10, sequence_length=4)


class ShiftedChain(gym.Env):
    """Four-step episodes whose observations are Discrete(4, start=5)."""

    observation_space = gym.spaces.Discrete(4, start=5)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.t = 0
        return 5, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        self.t += 1
        return 5 + self.t % 4, float(action), self.t >= 4, False, {}


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_a_transformer_memory_takes_discrete_observations_with_a_start(algo: str) -> None:
    """The window's unused slots hold 0, outside Discrete(4, start=5): the one-hot failed at the first step."""
    settings = {"n_steps": 16, "batch_size": 32} if algo == "ppo" else {"learning_starts": 32, "batch_size": 8}
    agent = rlcore.train(algo, ShiftedChain, memory="transformer", total_env_steps=96, num_envs=2, eval_freq=0,
                         log_dir=None, progress_bar=False, **settings)
    assert agent.evaluate(2, env=ShiftedChain)["mean_ep_length"] == 4
