"""rlcore's extractors (the backbones included) in Stable-Baselines3 policies.

::

    from stable_baselines3 import PPO
    from rlcore.backbones.sb3 import GroupLRAdam, RlcoreExtractor

    policy_kwargs = {
        "features_extractor_class": RlcoreExtractor,
        "features_extractor_kwargs": {"extractor": "bert", "vocabulary": list(VOCABULARY)},
        "optimizer_class": GroupLRAdam,        # only needed for a backbone learning_rate of its own
    }
    PPO("MlpPolicy", "rlcore/TextTopic-v0", policy_kwargs=policy_kwargs)

SB3 hands the extractor preprocessed observations: token ids of a Box arrive as floats (the extractors
convert them back to integers, exactly), and images of an SB3 image space arrive divided by 255
(with SB3's default ``normalize_images=True``), which ``backbone_cnn`` takes as they are (it scales only
uint8 tensors). rlcore's ``nature_cnn`` / ``impala_cnn`` / ``small_cnn`` scale uint8 *spaces* themselves: give
SB3 ``normalize_images=False`` for those. Pretrained backbones keep their loaded weights under SB3's PPO/A2C
``ortho_init`` (which re-initialises the rest of the extractor, as it does SB3's own). Needs ``stable-baselines3``
(``pip install stable-baselines3``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlcore.backbones.data import require
from rlcore.optim import LR_ATTRIBUTE

require("stable_baselines3", "stable-baselines3")

from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402


class RlcoreExtractor(BaseFeaturesExtractor):
    """Any extractor registered in rlcore (``bert``, ``backbone_cnn``, ``backbone_lstm``, ``nature_cnn``, ...)
    as an SB3 ``features_extractor_class``.

    Args:
        observation_space: Given by SB3.
        extractor: The registered name.
        kwargs: The extractor's ``features_kwargs``.

    Shapes: ``[B, *obs_shape]`` (as SB3 preprocesses them) -> ``[B, features_dim]``.
    """

    def __init__(self, observation_space: gym.Space, extractor: str = "bert", **kwargs: Any) -> None:
        from rlcore.nets.extractors import make_extractor

        inner = make_extractor(observation_space, extractor, **kwargs)
        super().__init__(observation_space, inner.out_dim)
        self.extractor = inner

    def forward(self, observations: Tensor) -> Tensor:
        return self.extractor(observations)

    def apply(self, fn: Callable[[nn.Module], None]) -> RlcoreExtractor:
        """``nn.Module.apply`` everywhere but inside pretrained backbones, whose loaded weights are kept: SB3's
        PPO and A2C (``ortho_init=True``, their default) re-initialise the features extractor with ``apply``."""
        from rlcore.backbones.extractors import BackboneExtractor

        kept = {id(module.backbone) for module in self.extractor.modules()
                if isinstance(module, BackboneExtractor) and module.pretrained}
        _apply_outside(self, fn, kept)
        return self


def _apply_outside(module: nn.Module, fn: Callable[[nn.Module], None], kept: set[int]) -> None:
    """``fn`` on ``module`` and its submodules, children first (as ``nn.Module.apply``), skipping the subtrees
    whose root's id is in ``kept``."""
    if id(module) in kept:
        return
    for child in module.children():
        _apply_outside(child, fn, kept)
    fn(module)


class GroupLRAdam(torch.optim.Adam):
    """torch's Adam over the trainable parameters, with the learning rates of :func:`rlcore.optim.set_learning_rate`.

    SB3 builds its optimizer as ``optimizer_class(policy.parameters(), lr=lr_schedule(1))`` and sets every
    group's ``lr`` to the schedule's value before each update; this optimizer keeps, per group, the ratio of
    the group's own initial learning rate to ``lr`` and applies it at each step, so a backbone marked with
    ``learning_rate=1e-5`` trains at ``1e-5 * schedule / initial`` while the heads follow SB3's schedule.
    Frozen parameters (``requires_grad=False``) are left out.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 1e-3, **kwargs: Any) -> None:
        by_lr: dict[float | None, list[nn.Parameter]] = {}
        for param in params:
            if param.requires_grad:
                by_lr.setdefault(getattr(param, LR_ATTRIBUTE, None), []).append(param)
        groups = [{"params": members, "lr_scale": 1.0 if own is None else own / lr} for own, members in by_lr.items()]
        super().__init__(groups, lr=lr, **kwargs)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        base = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group["lr_scale"]
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, base):
                group["lr"] = lr


__all__ = ["GroupLRAdam", "RlcoreExtractor"]
