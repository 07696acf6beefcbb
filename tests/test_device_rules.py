"""The GPU bugs of issue 19, each shown on the CPU where it can be and on CUDA (``gpu``, skipped without it): a
trainable LSTM backbone inside a frozen-in-eval-mode extractor, which device ``rlcore.load`` uses, bit-identical
actions after save/load, and the torch version recorded whole."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers rlcore/TextTopic-v0)
import rlcore
from envs.text import MAX_WORDS, VOCABULARY, encode
from rlcore.logger import library_versions
from rlcore.nets.extractors import make_extractor
from rlcore.train_config import resolve_device
from rlcore.trainer import TrainConfig, Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
TEXT_SPACE = gym.spaces.Box(0, len(VOCABULARY) - 1, (MAX_WORDS,), np.int64)


def _trainable_lstm_extractor(dropout: float = 0.0, device: str = "cpu") -> torch.nn.Module:
    extractor = make_extractor(TEXT_SPACE, "backbone_lstm", pretrained=False, num_layers=2, hidden_size=8,
                               trainable_layers=2)
    for layer in extractor.backbone.layers:
        layer.dropout = dropout
    return extractor.to(device)


def _tokens(device: str = "cpu") -> torch.Tensor:
    words = ["there is a dog near the house", "i saw a guitar yesterday"]
    return torch.as_tensor(np.stack([encode(sentence) for sentence in words]), device=device)


def test_trainable_recurrent_backbone_layers_follow_the_training_flag_with_eval_outputs() -> None:
    """cuDNN's RNN backward refuses eval mode: the trainable LSTM layers follow the extractor's training flag (the
    rest of the backbone stays in eval mode), and the outputs are those of eval mode, dropout or not."""
    extractor = _trainable_lstm_extractor(dropout=0.5)
    frozen_layer, *trained = [extractor.backbone.embedding, *extractor.backbone.layers]
    assert extractor.training and all(layer.training for layer in trained) and not frozen_layer.training
    tokens = _tokens()
    trained_out = extractor(tokens)
    extractor.eval()
    assert not any(layer.training for layer in trained)
    torch.testing.assert_close(trained_out, extractor(tokens), rtol=0, atol=0)  # no dropout while training
    assert all(layer.dropout == 0.5 for layer in extractor.backbone.layers)  # the setting itself is kept
    extractor.train()
    extractor(tokens).sum().backward()
    assert all(param.grad is not None for layer in trained for param in layer.parameters())


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_trainable_recurrent_backbone_computes_gradients_on_cuda(dropout: float) -> None:
    extractor = _trainable_lstm_extractor(dropout, device="cuda")
    extractor(_tokens("cuda")).sum().backward()  # cudnn RNN backward can only be called in training mode
    assert all(param.grad is not None for param in extractor.backbone.layers.parameters())


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("algo", ["a2c", "reinforce", "ppo"])
def test_on_policy_algorithms_fine_tune_an_lstm_backbone_on_cuda(algo: str) -> None:
    trainer = Trainer(algo, "rlcore/TextTopic-v0", TrainConfig(total_env_steps=32, num_envs=2, eval_freq=0,
                                                               log_dir=None, progress_bar=False, device="cuda"),
                      {"features_extractor": "backbone_lstm", "n_steps": 8,
                       "features_kwargs": {"pretrained": False, "hidden_size": 8, "trainable_layers": 1}})
    before = trainer.algo.policy.features.backbone.layers[0].weight_hh_l0.detach().clone()
    trainer.run()
    assert not torch.equal(before, trainer.algo.policy.features.backbone.layers[0].weight_hh_l0)


# ------------------------------------------------------------------------------------------------ rlcore.load
def _save_trained(tmp_path: Path, device: str) -> rlcore.Agent:
    agent = rlcore.train("ppo", "Pendulum-v1", total_env_steps=256, num_envs=2, seed=0, log_dir=None,
                         progress_bar=False, eval_freq=0, n_steps=64, batch_size=64, n_epochs=1, normalize_obs=True,
                         device=device)
    agent.save(tmp_path / "agent")
    return agent


def _assert_same_device_and_actions(agent: rlcore.Agent, loaded: rlcore.Agent) -> None:
    assert loaded.algo.device == agent.algo.device
    for mine, theirs in zip(agent.algo.policy.parameters(), loaded.algo.policy.parameters()):
        assert theirs.device == mine.device and torch.equal(theirs, mine)
    observations = np.random.default_rng(0).uniform(-1, 1, (256, 3)).astype(np.float32)
    assert np.array_equal(agent.predict(observations), loaded.predict(observations))  # bit for bit


def test_load_uses_trainings_device_rule_and_acts_bit_identically(tmp_path: Path) -> None:
    agent = _save_trained(tmp_path, "auto")
    loaded = rlcore.load(tmp_path / "agent")
    assert loaded.algo.device == resolve_device("auto") == agent.algo.device
    _assert_same_device_and_actions(agent, loaded)
    assert rlcore.load(tmp_path / "agent", device="cpu").algo.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here; use device='auto' or 'cpu'"):
            rlcore.load(tmp_path / "agent", device="cuda")


@pytest.mark.gpu
@needs_cuda
def test_an_agent_trained_on_cuda_loads_on_cuda_and_acts_bit_identically(tmp_path: Path) -> None:
    agent = _save_trained(tmp_path, "cuda")
    loaded = rlcore.load(tmp_path / "agent")
    assert loaded.algo.device.type == "cuda"
    _assert_same_device_and_actions(agent, loaded)
    on_cpu = rlcore.load(tmp_path / "agent", device="cpu")
    assert next(on_cpu.algo.policy.parameters()).device.type == "cpu"


# ------------------------------------------------------------------------------------------------ versions
def test_recorded_torch_version_keeps_its_local_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA wheel's ``torch.__version__`` is ``2.11.0+cu130`` while its metadata may say ``2.11.0``."""
    monkeypatch.setattr(torch, "__version__", "9.8.7+cu999")
    versions = library_versions()
    assert versions["torch"] == "9.8.7+cu999"
    assert versions["numpy"] == np.__version__ and versions["gymnasium"] == gym.__version__


@pytest.mark.gpu
@needs_cuda
def test_recorded_torch_version_on_cuda_names_the_build() -> None:
    assert library_versions()["torch"] == torch.__version__


@pytest.fixture
def restore_matmul_precision():
    precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


@pytest.mark.usefixtures("restore_matmul_precision")
def test_tf32_is_switched_on_for_cuda_runs_only_and_can_be_turned_off() -> None:
    """``tf32`` (default True) sets TF32 products for a CUDA device, full precision when False, and leaves the CPU's
    settings alone (on the CPU, "high"/"medium" would change oneDNN's float32 products)."""
    from rlcore.train_config import apply_tf32

    torch.set_float32_matmul_precision("highest")
    apply_tf32(torch.device("cpu"), True)
    assert torch.get_float32_matmul_precision() == "highest"
    apply_tf32(torch.device("cuda"), True)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    apply_tf32(torch.device("cuda"), False)
    assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
    with pytest.raises(ValueError, match="tf32 must be True or False, got 'yes'"):
        TrainConfig(tf32="yes")  # type: ignore[arg-type]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.usefixtures("restore_matmul_precision")
@pytest.mark.parametrize("tf32", [True, False])
def test_cuda_runs_use_tf32_unless_turned_off(tf32: bool) -> None:
    torch.set_float32_matmul_precision("highest")
    Trainer("ppo", "CartPole-v1", TrainConfig(total_env_steps=64, num_envs=1, device="cuda", log_dir=None,
                                              eval_freq=0, progress_bar=False, tf32=tf32), {"n_steps": 64}).run()
    assert torch.get_float32_matmul_precision() == ("high" if tf32 else "highest")
