"""Encoders: shapes and gradients, the automatic choice per space, and PPO on image observations
(with the bf16 autocast and torch.compile paths, on CPU)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import rlcore
import rlcore.algos.base
from rlcore.nets.base import FlattenExtractor
from rlcore.nets.cnn import ImpalaCNN, NatureCNN, SmallCNN, image_layout
from rlcore.nets.extractors import (
    EXTRACTORS,
    CombinedExtractor,
    auto_extractor_name,
    make_extractor,
    register_extractor,
)

ATARI = spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = spaces.Box(0, 1, (10, 10, 4), bool)
PROCGEN = spaces.Box(0, 255, (64, 64, 3), np.uint8)


def batch_of(space: gym.Space, size: int, seed: int = 0) -> torch.Tensor:
    space.seed(seed)
    return torch.as_tensor(np.stack([space.sample() for _ in range(size)]))


@pytest.mark.parametrize(("encoder", "space", "width"), [(NatureCNN, ATARI, 512), (ImpalaCNN, PROCGEN, 256),
                                                         (SmallCNN, MINATAR, 128)])
def test_encoder_shapes_and_gradients(encoder, space, width) -> None:
    net = encoder(space)
    features = net(batch_of(space, 3))
    assert features.shape == (3, width) and net.out_dim == width
    features.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in net.parameters())


def test_image_layout_detects_channel_order_and_rejects_non_images() -> None:
    assert image_layout(ATARI) == (4, 84, 84, False)
    assert image_layout(MINATAR) == (4, 10, 10, True)
    assert image_layout(PROCGEN) == (3, 64, 64, True)
    assert image_layout(spaces.Box(0, 1, (10, 10, 10), bool)) == (10, 10, 10, True)  # MinAtar Seaquest
    assert image_layout(spaces.Box(-1, 1, (3, 8, 8), np.float32)) is None  # not in [0, 1]
    assert image_layout(spaces.Box(0, 1, (8,), np.float32)) is None
    with pytest.raises(ValueError, match="36x36"):
        NatureCNN(MINATAR)


def test_an_ambiguous_image_layout_is_warned_once(caplog) -> None:
    """[16, 10, 10] may be 16 stacked channel-first frames: it is read channel-last, as SB3 does (which warns)."""
    caplog.set_level("WARNING", logger="rlcore.nets.cnn")
    for _ in range(2):
        SmallCNN(spaces.Box(0, 1, (16, 10, 10), bool))
    SmallCNN(MINATAR)
    SmallCNN(spaces.Box(0, 1, (10, 10, 10), bool))
    assert [record.getMessage() for record in caplog.records] == [
        "image observations of shape (16, 10, 10) are read channel-last (10 channels of 16x10 pixels); if their 16 "
        "channels come first, transpose them to channel-last (H, W, C) in a wrapper"]


def test_uint8_planes_of_zeros_and_ones_are_not_divided_by_255() -> None:
    """A uint8 Box with high 1 (binary planes) was scaled as pixels: its inputs reached the CNN as 0 and 1/255."""
    assert SmallCNN(spaces.Box(0, 1, (10, 10, 4), np.uint8)).scale == 1.0
    assert SmallCNN(spaces.Box(0, 255, (10, 10, 4), np.uint8)).scale == pytest.approx(1 / 255)
    assert SmallCNN(MINATAR).scale == 1.0


def test_channel_last_input_gives_the_same_features_as_channel_first() -> None:
    torch.manual_seed(0)
    last = SmallCNN(spaces.Box(0, 255, (10, 10, 4), np.uint8))
    torch.manual_seed(0)
    first = SmallCNN(spaces.Box(0, 255, (4, 10, 10), np.uint8))
    images = batch_of(spaces.Box(0, 255, (10, 10, 4), np.uint8), 5)
    assert torch.allclose(last(images), first(images.permute(0, 3, 1, 2)), atol=1e-6)


def test_automatic_choice_per_space() -> None:
    assert isinstance(make_extractor(ATARI), NatureCNN)
    assert isinstance(make_extractor(MINATAR), SmallCNN)
    vector = make_extractor(spaces.Box(-1, 1, (5,), np.float32))
    assert type(vector) is FlattenExtractor and vector.out_dim == 5
    one_hot = make_extractor(spaces.Discrete(7))
    assert type(one_hot) is FlattenExtractor and one_hot(torch.tensor([3])).tolist() == [[0, 0, 0, 1, 0, 0, 0]]
    combined = make_extractor(spaces.Dict({"image": MINATAR, "position": spaces.Box(-1, 1, (2,)),
                                           "room": spaces.Discrete(3)}))
    assert isinstance(combined, CombinedExtractor) and combined.out_dim == 128 + 2 + 3
    obs = {"image": batch_of(MINATAR, 4), "position": torch.zeros(4, 2), "room": torch.tensor([0, 1, 2, 0])}
    assert combined(obs).shape == (4, 133)
    assert isinstance(make_extractor(ATARI, "impala_cnn", features_dim=64), ImpalaCNN)
    with pytest.raises(ValueError, match="unknown features_extractor 'resnet'"):
        make_extractor(ATARI, "resnet")
    nested = make_extractor(spaces.Tuple([spaces.Discrete(2), spaces.Dict({"image": MINATAR})]))
    assert isinstance(nested, CombinedExtractor) and nested.keys == ("0", "1/image") and nested.out_dim == 2 + 128
    with pytest.raises(TypeError, match="'1' is Text"):
        make_extractor(spaces.Tuple([spaces.Discrete(2), spaces.Text(3)]))


def test_a_registered_extractor_is_used_by_name() -> None:
    @register_extractor("test_tiny_mlp")
    class TinyMLP(FlattenExtractor):
        def __init__(self, space, width: int = 8) -> None:
            super().__init__(space)
            self.layer = torch.nn.Linear(self.out_dim, width)
            self.out_dim = width

        def forward(self, obs):
            return torch.relu(self.layer(super().forward(obs)))

    try:
        agent = rlcore.train("ppo", "CartPole-v1", total_env_steps=256, n_steps=32, log_dir=None, progress_bar=False,
                             eval_freq=0, features_extractor="test_tiny_mlp", features_kwargs={"width": 8})
        assert isinstance(agent.algo.policy.features, TinyMLP) and agent.algo._kernel is None
    finally:
        EXTRACTORS.pop("test_tiny_mlp")


def is_orthogonal(weight: torch.Tensor, gain: float) -> bool:
    """Rows (or columns, whichever are fewer) of the flattened weight are orthogonal with norm ``gain``."""
    matrix = weight.detach().reshape(weight.shape[0], -1)
    small = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    return torch.allclose(small, gain**2 * torch.eye(small.shape[0]), atol=1e-4)


def test_ortho_init_covers_rlcores_cnns_in_a_dict_encoder_and_leaves_a_users_extractor_alone() -> None:
    """As SB3's ortho_init: the CNN of each image leaf gets orthogonal layers (gain sqrt 2) and zero biases, the heads
    0.01 and 1; unlike SB3, a registered (e.g. pretrained) extractor keeps the weights it was built with."""
    space = spaces.Dict({"image": spaces.Box(0, 255, (3, 5, 5), np.uint8), "flag": spaces.Discrete(2)})
    policy = rlcore.algos.base.build_algorithm("ppo", space, spaces.Discrete(4), {}, seed=0).policy
    cnn = policy.features.parts["image"]
    for layer in (cnn.convs[0], cnn.linear[0]):
        assert is_orthogonal(layer.weight, 2**0.5) and not layer.bias.any()
    assert is_orthogonal(policy.actor[-1].weight, 0.01) and is_orthogonal(policy.critic[-1].weight, 1.0)
    plain = rlcore.algos.base.build_algorithm("ppo", space, spaces.Discrete(4), {"ortho_init": False}, seed=0).policy
    assert not is_orthogonal(plain.features.parts["image"].convs[0].weight, 2**0.5)

    @register_extractor("test_pretrained")
    class Pretrained(FlattenExtractor):
        def __init__(self, space) -> None:
            super().__init__(space)
            self.layer = torch.nn.Linear(self.out_dim, 4)
            torch.nn.init.constant_(self.layer.weight, 0.5)  # stands for loaded weights
            self.out_dim = 4

        def forward(self, obs):
            return self.layer(super().forward(obs))

    try:
        box = spaces.Box(-1, 1, (3,), np.float32)
        policy = rlcore.algos.base.build_algorithm("ppo", box, spaces.Discrete(2),
                                                   {"features_extractor": "test_pretrained"}, seed=0).policy
        assert torch.equal(policy.features.layer.weight, torch.full((4, 3), 0.5))
    finally:
        EXTRACTORS.pop("test_pretrained")


class SideEnv(gym.Env):
    """A 10x10 image with one lit pixel in the left or right half; acting on that side pays 1."""

    observation_space = spaces.Box(0, 255, (10, 10, 1), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def _draw(self) -> np.ndarray:
        self._side = int(self.np_random.integers(2))
        image = np.zeros((10, 10, 1), np.uint8)
        image[int(self.np_random.integers(10)), self._side * 5 + int(self.np_random.integers(5)), 0] = 255
        return image

    def step(self, action):
        reward = float(int(action) == self._side)
        self._t += 1
        return self._draw(), reward, False, self._t >= 10, {}


def test_ppo_with_a_cnn_learns_from_pixels() -> None:
    agent = rlcore.train("ppo", SideEnv, total_env_steps=12_288, num_envs=4, seed=0, log_dir=None, progress_bar=False,
                         eval_freq=0, n_steps=64, batch_size=64, n_epochs=4, learning_rate=1e-3)
    assert isinstance(agent.algo.policy.features, SmallCNN)
    score = agent.evaluate(10, env=SideEnv)["mean_reward"]
    assert score >= 9.0, score  # random play scores 5 of 10


def one_update(**switches) -> torch.Tensor:
    """The parameter change of one PPO update on a fixed batch of SideEnv images (flattened)."""
    from rlcore.agent import build_algorithm

    env = SideEnv()
    settings = {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "learning_rate": 1e-3, **switches}
    algo = build_algorithm("ppo", env.observation_space, env.action_space, settings, seed=1, num_envs=1)
    start = torch.cat([p.detach().reshape(-1).clone() for p in algo.policy.parameters()])
    generator = torch.Generator().manual_seed(5)
    obs = (torch.rand(128, 10, 10, 1, generator=generator) > 0.95).to(torch.uint8) * 255
    batch = {"obs": obs, "action": torch.randint(2, (128,), generator=generator),
             "log_prob": torch.full((128,), -0.69), "value": torch.zeros(128),
             "advantage": torch.randn(128, generator=generator), "return": torch.randn(128, generator=generator)}
    algo.optimize(batch)
    return torch.cat([p.detach().reshape(-1) for p in algo.policy.parameters()]) - start


def test_bf16_autocast_and_torch_compile_paths_train_on_cpu() -> None:
    fp32 = one_update()
    bf16 = one_update(amp="bf16")
    compiled = one_update(compile=True, compile_backend="aot_eager")
    assert float(fp32.abs().max()) > 0
    assert torch.allclose(compiled, fp32, atol=1e-6)  # the compiled graph computes the same update
    # bf16 rounds the forward pass: the same update direction, not the same bits
    assert torch.isfinite(bf16).all() and not torch.equal(bf16, fp32)
    assert float(torch.nn.functional.cosine_similarity(bf16, fp32, dim=0)) > 0.98


@pytest.mark.slow
def test_inductor_compile_trains_on_cpu() -> None:
    assert torch.allclose(one_update(compile=True), one_update(), atol=1e-4)


def test_dqn_with_a_cnn_learns_from_pixels() -> None:
    agent = rlcore.train("dqn", SideEnv, total_env_steps=6000, seed=0, log_dir=None, progress_bar=False, eval_freq=0,
                         learning_starts=500, buffer_size=5000, train_freq=4, gradient_steps=1, batch_size=32,
                         target_update_interval=250, exploration_fraction=0.3, learning_rate=1e-3)
    assert isinstance(agent.algo.q_net.features, SmallCNN) and agent.algo.replay.storage["obs"].dtype == torch.uint8
    assert agent.evaluate(10, env=SideEnv)["mean_reward"] >= 9.0


def test_a_3d_box_too_small_for_a_cnn_is_flattened_or_named() -> None:
    """A uint8 Box of 100 planes of 2x3 is read as an image too small for any CNN: "auto" flattens it (small_cnn's
    3x3 convolution used to fail in torch's conv), and a CNN asked for by name says why and what to pass."""
    space = spaces.Box(0, 255, (100, 2, 3), np.uint8)
    assert auto_extractor_name(space) == "flatten" and make_extractor(space).out_dim == 600
    with pytest.raises(ValueError, match=r"SmallCNN cannot encode 2x3 images \(channels 100\): they are too small for "
                                         r"its convolutions; pass features_extractor='flatten'"):
        make_extractor(space, "small_cnn")
    assert auto_extractor_name(spaces.Box(0, 255, (10, 10, 3), np.uint8)) == "small_cnn"
