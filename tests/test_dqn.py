"""DQN maths against hand-computed values (its kernel against autograd: tests/test_kernels.py)."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlcore
from rlcore.algos.base import UnsupportedSpaceError
from rlcore.algos.dqn import DQN, DQNConfig, td_targets
from rlcore.buffers.transfer import BatchTransfer, replay_storage_device
from rlcore.nets.base import dueling_combine
from rlcore.policy import QNetwork

BOX = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def test_td_target_takes_the_max_of_the_target_network() -> None:
    reward = torch.tensor([1.0, 0.5])
    discount = torch.tensor([0.9, 0.0])  # second transition terminated
    next_q = torch.tensor([[1.0, 3.0], [10.0, 20.0]])
    assert torch.allclose(td_targets(reward, discount, next_q, None), torch.tensor([1.0 + 0.9 * 3.0, 0.5]))


def test_double_dqn_target_uses_the_online_argmax() -> None:
    reward = torch.tensor([1.0])
    discount = torch.tensor([0.5])
    next_q_target = torch.tensor([[4.0, 2.0]])
    next_q_online = torch.tensor([[0.0, 1.0]])  # online prefers action 1, which the target values at 2
    assert td_targets(reward, discount, next_q_target, next_q_online).item() == pytest.approx(1.0 + 0.5 * 2.0)


def test_dueling_aggregation_hand_computed() -> None:
    value = torch.tensor([[2.0]])
    advantage = torch.tensor([[1.0, 3.0, 5.0]])  # mean 3
    assert dueling_combine(value, advantage).tolist() == [[0.0, 2.0, 4.0]]
    net = QNetwork(BOX, 3, (8,), dueling=True)
    q = net(torch.randn(5, 3))
    value = net.value_head(net.body(net.features(torch.zeros(1, 3))))
    assert q.shape == (5, 3)
    assert net(torch.zeros(1, 3)).mean().item() == pytest.approx(value.item(), abs=1e-6)


def _filled_dqn(seed: int, **options) -> DQN:
    config = DQNConfig(batch_size=16, buffer_size=1000, net_arch=(32, 32), **options)
    algo = DQN(BOX, spaces.Discrete(3), config, seed=seed)
    rng = np.random.default_rng(0)
    for t in range(200):
        algo.replay.add({
            "obs": rng.normal(size=(1, 3)).astype(np.float32),
            "action": rng.integers(3, size=1),
            "reward": rng.normal(size=1).astype(np.float32),
            "next_obs": rng.normal(size=(1, 3)).astype(np.float32),
            "terminated": np.array([t % 17 == 0]),
            "truncated": np.array([t % 23 == 0]),
        })
    return algo


def q_taken(algo: DQN, batch: dict) -> torch.Tensor:
    return algo.q_values(batch["obs"]).gather(1, batch["action"].long().reshape(-1, 1)).squeeze(1)


@pytest.mark.parametrize("fast_path", [True, False])
def test_updates_move_q_towards_the_target(fast_path: bool) -> None:
    algo = _filled_dqn(0, learning_rate=1e-2, fast_path=fast_path)
    assert (algo._kernel is not None) == fast_path
    batch = algo.replay.sample(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        targets = td_targets(batch["reward"], batch["discount"], algo.target_net(batch["next_obs"]), None)
    before = (q_taken(algo, batch) - targets).abs().mean()
    for _ in range(100):
        if fast_path:
            algo._kernel.step(algo._kernel.features(batch["obs"]), algo._kernel.action_indices(batch["action"]),
                              targets.numpy(), None)
        else:
            algo._td_step(batch, targets)
    after = (q_taken(algo, batch) - targets).abs().mean()
    assert after < 0.5 * before


def test_prioritized_replay_updates_priorities_with_td_errors() -> None:
    algo = _filled_dqn(0, prioritized=True, per_alpha=1.0)
    before = algo.replay.sampler.tree.total()
    algo.train(3)
    assert algo.replay.sampler.tree.total() != before


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_prioritized_rows_new_priority_is_its_td_error_plus_per_eps_once(fast_path: bool) -> None:
    options = {"prioritized": True, "per_alpha": 1.0, "per_eps": 0.25, "fast_path": fast_path}
    algo, before_step = _filled_dqn(0, **options), _filled_dqn(0, **options)  # the same networks
    drawn: list[dict[str, torch.Tensor]] = []
    sample = algo._sample
    algo._sample = lambda batch_size: drawn.append(sample(batch_size)) or drawn[-1]
    algo._prioritized_step()
    batch = drawn[0]
    with torch.no_grad():
        targets = td_targets(batch["reward"], batch["discount"], before_step.target_net(batch["next_obs"]), None)
        td_error = (q_taken(before_step, batch) - targets).abs().numpy()
    assert np.allclose(algo.replay.sampler.tree[batch["index"].numpy()], td_error + 0.25, rtol=0, atol=2e-7)


def test_target_sync_every_interval_and_epsilon_schedule() -> None:
    algo = _filled_dqn(0, target_update_interval=100, exploration_fraction=0.5, exploration_final_eps=0.1,
                       learning_starts=50)
    algo.train(5)
    assert not torch.equal(algo.q_net.body[0].weight, algo.target_net.body[0].weight)
    algo.set_progress(49, 1000)
    assert algo.exploration_rate == 1.0  # uniform actions until learning starts, as SB3
    algo.set_progress(99, 1000)
    assert not torch.equal(algo.q_net.body[0].weight, algo.target_net.body[0].weight)
    assert algo.exploration_rate == pytest.approx(1.0 - 0.9 * 99 / 500)
    algo.set_progress(100, 1000)
    assert torch.equal(algo.q_net.body[0].weight, algo.target_net.body[0].weight)
    algo.set_progress(800, 1000)
    assert algo.exploration_rate == pytest.approx(0.1)


def test_warm_up_acts_uniformly_even_where_the_schedule_has_decayed() -> None:
    """SB3 acts uniformly before learning_starts; rlcore followed the schedule, so a fast decay filled the warm-up
    with an untrained network's greedy actions."""
    trainer = rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(total_env_steps=600, eval_freq=0,
                                                                       log_dir=None, progress_bar=False),
                             {"learning_starts": 300, "exploration_fraction": 0.01, "net_arch": [8]})
    rates = []
    original = trainer.algo.act
    trainer.algo.act = lambda obs, **kw: rates.append(trainer.algo.exploration_rate) or original(obs, **kw)
    trainer.run()
    assert rates[:300] == [1.0] * 300 and rates[-1] == pytest.approx(0.05)


@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_gradient_steps_minus_one_takes_as_many_as_the_phase_collects(algo: str) -> None:
    """SB3's gradient_steps=-1: one gradient step per env step collected (train_freq x num_envs per phase)."""
    env = "CartPole-v1" if algo == "dqn" else "Pendulum-v1"
    trainer = rlcore.Trainer(algo, env, rlcore.TrainConfig(total_env_steps=240, num_envs=3, eval_freq=0,
                                                           log_dir=None, progress_bar=False),
                             {"learning_starts": 60, "train_freq": 2, "gradient_steps": -1, "net_arch": [8],
                              "batch_size": 8})
    trainer.run()
    assert trainer.algo.updates == (240 - 60) // 6 * 6
    with pytest.raises(ValueError, match=r"gradient_steps must be in \[1, inf\) or -1: as many as the phase's env "):
        rlcore.train(algo, env, gradient_steps=0, log_dir=None)


def test_epsilon_greedy_explores_at_the_set_rate() -> None:
    algo = _filled_dqn(0)
    obs = torch.zeros(20_000, 3)
    greedy = algo.act(obs, deterministic=True)
    algo.exploration_rate = 0.3
    actions = algo.act(obs)
    # a random action equals the greedy one a third of the time: P(differ) = 0.3 * 2/3
    assert (actions != greedy).float().mean().item() == pytest.approx(0.2, abs=0.015)


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", 0.0), ("gamma", 1.5), ("tau", 0.0), ("n_step", 0), ("exploration_final_eps", -0.1),
     ("loss", "l1"), ("batch_size", 0), ("learning_rate", float("nan"))],
)
def test_invalid_config_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        DQNConfig(**{field: value})


def test_unsupported_spaces_name_the_space_and_the_fitting_algorithms() -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"action space Box.*Algorithms that fit"):
        DQN(BOX, spaces.Box(-1, 1, (2,)), DQNConfig())
    with pytest.raises(UnsupportedSpaceError, match="observation space Tuple.*Dict and Tuple spaces of those"):
        DQN(spaces.Tuple([spaces.Text(3)]), spaces.Discrete(2), DQNConfig())


# --- replay storage device and pinned transfers (issue 4) -------------------------------------------
@pytest.mark.parametrize(("field", "value", "match"), [
    ("replay_device", "gpu", r"replay_device must be one of \['cpu', 'auto', 'device'\], got 'gpu'"),
    ("pin_memory", "yes", "pin_memory must be true or false"),
])
def test_invalid_transfer_switches_name_the_field_and_the_valid_values(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DQNConfig(**{field: value})


@pytest.mark.parametrize("replay_device", ["cpu", "auto", "device"])
def test_on_the_cpu_every_replay_device_keeps_storage_on_the_host(replay_device: str) -> None:
    algo = _filled_dqn(0, replay_device=replay_device, pin_memory=False)
    assert algo.replay.device.type == "cpu" and algo.replay.storage["obs"].device.type == "cpu"
    assert algo._transfer is None and algo._kernel is not None  # the CPU kernel is kept
    assert replay_storage_device(replay_device, "cuda").type == ("cpu" if replay_device == "cpu" else "cuda")


def test_batch_transfer_returns_equal_tensors_on_the_cpu() -> None:
    algo = _filled_dqn(0)
    batch = algo.replay.sample(32, torch.Generator().manual_seed(0))
    moved = BatchTransfer("cpu", pin_memory=True)(batch)
    assert not BatchTransfer("cpu", pin_memory=True).pinned
    assert moved.keys() == batch.keys()
    for key, value in batch.items():
        assert moved[key].device.type == "cpu" and moved[key].dtype == value.dtype and torch.equal(moved[key], value)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("memory", [None, "lstm"])
@pytest.mark.parametrize("replay_device", ["device", "auto"])
def test_replay_storage_on_the_training_device(replay_device: str, memory: str | None) -> None:
    algo = DQN(BOX, spaces.Discrete(3), DQNConfig(batch_size=16, buffer_size=1000, net_arch=(32, 32), memory=memory,
                                                   replay_device=replay_device, sequence_length=4, burn_in=2),
               device="cuda", seed=0)
    _fill(algo, 200)
    assert algo.replay.storage["obs"].device.type == "cuda" and algo._transfer is None
    assert np.isfinite(algo.train(3)["train/loss"])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("memory", [None, "lstm"])
@pytest.mark.parametrize("options", [{}, {"prioritized": True}, {"double": True, "n_step": 3}])
def test_host_storage_moves_batches_through_pinned_staging(options: dict, memory: str | None) -> None:
    if memory is not None and options.get("prioritized"):
        pytest.skip("prioritized replay is not supported with memory")
    config = DQNConfig(batch_size=16, buffer_size=1000, net_arch=(32, 32), memory=memory, sequence_length=4, burn_in=2,
                       **options)
    algo = DQN(BOX, spaces.Discrete(3), config, device="cuda", seed=0)
    _fill(algo, 200)
    assert algo.replay.storage["obs"].device.type == "cpu" and algo._transfer.pinned
    assert np.isfinite(algo.train(3)["train/loss"])
    assert algo._transfer.staging and all(buffer.is_pinned() for buffer in algo._transfer.staging.values())
    batch = algo.replay.sample(8, torch.Generator().manual_seed(0))
    moved = algo._transfer(batch)
    for key, value in batch.items():
        assert moved[key].device.type == "cuda" and torch.equal(moved[key].cpu(), value), key
    unpinned = DQN(BOX, spaces.Discrete(3), DQNConfig(**{**config.__dict__, "pin_memory": False}), device="cuda")
    assert not unpinned._transfer.pinned


def _fill(algo: DQN, steps: int) -> None:
    rng = np.random.default_rng(0)
    for t in range(steps):
        algo.replay.add({
            "obs": rng.normal(size=(1, 3)).astype(np.float32), "action": rng.integers(3, size=1),
            "reward": rng.normal(size=1).astype(np.float32), "next_obs": rng.normal(size=(1, 3)).astype(np.float32),
            "terminated": np.array([t % 17 == 0]), "truncated": np.array([t % 23 == 0]),
        })


def test_a_replay_smaller_than_one_step_of_the_envs_names_buffer_size() -> None:
    with pytest.raises(ValueError, match=r"the replay's capacity 4 \(an algorithm's buffer_size\) holds fewer rows "
                                         r"than the 8 envs write at each step; use a buffer_size of at least 8"):
        rlcore.train("dqn", "CartPole-v1", total_env_steps=64, num_envs=8, buffer_size=4, log_dir=None,
                     progress_bar=False)
