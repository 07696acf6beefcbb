"""Choosing a feature extractor for an observation space, by name or automatically.

``make_extractor(space, "auto")`` picks: images -> a CNN (:class:`~rlcore.nets.cnn.NatureCNN`
for 36x36 and larger, :class:`~rlcore.nets.cnn.SmallCNN` below), vectors -> flattening,
``Discrete`` -> one-hot, ``Dict`` and ``Tuple`` (nested too) -> one extractor per leaf, concatenated (as SB3's
``MultiInputPolicy``: a CNN per image leaf, flattening or one-hot for the rest). Any name in
:data:`EXTRACTORS` can be asked for instead; users add their own with :func:`register_extractor`
(a name, so that checkpoints stay JSON: the class must be registered again before loading).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gymnasium as gym
import torch
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor, FlattenExtractor
from rlcore.nets.cnn import ImpalaCNN, NatureCNN, SmallCNN, image_layout
from rlcore.spaces import describe_space, is_composite, leaf_spaces

ExtractorFactory = Callable[..., FeatureExtractor]
"""``factory(observation_space, **kwargs) -> FeatureExtractor``."""

EXTRACTORS: dict[str, ExtractorFactory] = {
    "flatten": FlattenExtractor,
    "nature_cnn": NatureCNN,
    "impala_cnn": ImpalaCNN,
    "small_cnn": SmallCNN,
}
"""Feature extractors by name; ``"auto"`` chooses among them from the space."""

FactoryT = TypeVar("FactoryT", bound=ExtractorFactory)


def register_extractor(name: str) -> Callable[[FactoryT], FactoryT]:
    """Class decorator: makes a :class:`FeatureExtractor` available as ``features_extractor=name``.

    The class is called as ``cls(observation_space, **features_kwargs)`` and must set ``out_dim``.
    """

    def decorate(factory: FactoryT) -> FactoryT:
        if name == "auto" or (name in EXTRACTORS and EXTRACTORS[name] is not factory):
            raise ValueError(f"a feature extractor named {name!r} is already registered")
        EXTRACTORS[name] = factory
        return factory

    return decorate


SMALLEST_IMAGE = 3
"""The smallest height and width ``"auto"`` encodes with a CNN (small_cnn's 3x3 convolution)."""


def auto_extractor_name(space: gym.Space) -> str:
    """The extractor ``"auto"`` picks for a (non-Dict) space."""
    layout = image_layout(space)
    if layout is not None:
        _, height, width, _ = layout
        if min(height, width) < SMALLEST_IMAGE:
            return "flatten"  # smaller than small_cnn's 3x3 convolution: a 3-D Box, not a picture
        return "nature_cnn" if min(height, width) >= 36 else "small_cnn"
    if isinstance(space, spaces.Box | spaces.Discrete):
        return "flatten"
    raise TypeError(f"no feature extractor for the observation space {describe_space(space)}; rlcore handles Box, "
                    "Discrete and Dict of those (wrap the env, or pass a registered features_extractor)")


def make_extractor(space: gym.Space, name: str = "auto", **kwargs: Any) -> FeatureExtractor:
    """The feature extractor ``name`` (or the automatic choice) for ``space``; kwargs go to its constructor.

    Raises:
        ValueError: An unknown name (the message lists the registered ones).
        TypeError: A space no extractor handles.
    """
    if is_composite(space):
        return CombinedExtractor(space, name, **kwargs)
    if name == "auto":
        name = auto_extractor_name(space)
        kwargs = kwargs if name != "flatten" else {}
    try:
        factory = EXTRACTORS[name]
    except KeyError:
        raise ValueError(f"unknown features_extractor {name!r}; registered: {['auto', *sorted(EXTRACTORS)]}") from None
    return factory(space, **kwargs)


class CombinedExtractor(FeatureExtractor):
    """One extractor per leaf of a ``Dict`` or ``Tuple`` space (see :func:`rlcore.spaces.leaf_spaces`), outputs
    concatenated in the space's order.

    Image leaves get the extractor ``name`` (``auto``: NatureCNN or SmallCNN by size) with ``kwargs``; the other
    leaves are flattened (Box) or one-hot encoded (Discrete), so a named CNN such as ``impala_cnn`` or
    ``backbone_cnn`` applies to the images only. A name that is not a CNN applies to every leaf.

    Shapes: ``{path: [B, *leaf_shape]}`` -> ``[B, sum of out_dims]``.
    """

    def __init__(self, observation_space: gym.Space, name: str = "auto", **kwargs: Any) -> None:
        super().__init__()
        cnns = {"auto", "nature_cnn", "impala_cnn", "small_cnn", "backbone_cnn"}
        parts = {}
        for path, leaf in leaf_spaces(observation_space).items():
            image = image_layout(leaf) is not None
            if name in cnns and not image:
                parts[path] = FlattenExtractor(leaf)
                continue
            try:
                parts[path] = make_extractor(leaf, name, **kwargs)
            except (TypeError, ValueError) as error:
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(f"features_extractor={name!r} applies to every leaf of the observation "
                           f"{describe_space(observation_space)} but not to its leaf {path!r}: {error}") from error
        self.keys = tuple(parts)
        # ModuleDict keys may not contain "." (paths hold "/", which is allowed)
        self.parts = nn.ModuleDict(parts)
        self.out_dim = sum(part.out_dim for part in self.parts.values())

    def init_orthogonal(self) -> None:
        """Each part's own :meth:`~rlcore.nets.base.FeatureExtractor.init_orthogonal` (the CNNs; flattening has no
        weights, a registered extractor keeps its own)."""
        for part in self.parts.values():
            part.init_orthogonal()

    def forward(self, obs: dict[str, Tensor]) -> Tensor:  # type: ignore[override]
        return torch.cat([self.parts[key](obs[key]) for key in self.keys], dim=1)
