"""Offline data for the supervised backbones: scikit-learn's digits, generated sequences, and text corpora.

Nothing here downloads anything: the digits ship inside scikit-learn, the sequences are generated
from a seed, and a corpus is a local text file (one sentence per line).

A *dataset* is a ``dict[str, Tensor]`` whose tensors share their first dimension (the examples);
:func:`rlcore.backbones.training.fit` shuffles and slices it into minibatches.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Dataset = dict[str, Tensor]
"""Tensors with a shared first dimension ``[N, ...]``, e.g. ``{"x": [N, 1, 8, 8], "y": [N]}``."""

DIGITS_SPLITS = ("train", "val", "test")
DIGITS_TEST_FRACTION = 0.2
DIGITS_VAL_FRACTION = 0.1
DIGITS_SPLIT_SEED = 0


def require(module: str, package: str) -> None:
    """Raises an ImportError that says what to install when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not installed; pip install {package} (or pip install -e '.[backbones]')")


def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """One fixed split of scikit-learn's 1,797 8x8 digit images, as uint8 images and int64 labels.

    The split is the same everywhere (a permutation with seed 0): 20% ``test`` (359 images), then
    10% of the rest ``val`` (144) and the remaining ``train`` (1,294). The digit env
    (``rlcore/Digits-v0``) shows ``test`` images by default, which the CNN never trains on.

    Returns:
        ``(images [N, 1, 8, 8] uint8 in 0..255, labels [N] int64 in 0..9)``; sklearn's 0..16 grey
        levels are scaled by 255/16 and rounded.

    Raises:
        ValueError: An unknown split.
        ImportError: scikit-learn is not installed.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split must be one of {list(DIGITS_SPLITS)}, got {split!r}")
    require("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_test = int(round(DIGITS_TEST_FRACTION * len(labels)))
    rest = order[n_test:]
    n_val = int(round(DIGITS_VAL_FRACTION * len(rest)))
    chosen = {"test": order[:n_test], "val": rest[:n_val], "train": rest[n_val:]}[split]
    return images[chosen], labels[chosen]


def digits_dataset(split: str) -> Dataset:
    """:func:`digits_split` as tensors: ``{"x": [N, 1, 8, 8] uint8, "y": [N] int64}``."""
    images, labels = digits_split(split)
    return {"x": torch.from_numpy(images), "y": torch.from_numpy(labels)}


def progression_sequences(
    count: int, length: int = 16, vocab_size: int = 32, n_steps: int = 4, noise: float = 0.0, seed: int = 0
) -> Dataset:
    """Generated sequences: arithmetic progressions modulo ``vocab_size - 1``, with optional noise.

    Each sequence draws a start ``s`` and a step ``d`` in ``1..n_steps``; token ``t`` is
    ``1 + (s + t * d) mod (vocab_size - 1)`` (token 0 is padding and never appears). With probability
    ``noise`` a token is replaced by a uniformly random one. The label is ``d - 1``: a classifier must
    infer the step from the whole (noisy) sequence; a language model must infer it from the first
    tokens to predict the next one (positions ``>= 2`` are predictable without noise).

    Returns:
        ``{"tokens": [count, length] int64 in 1..vocab_size-1, "label": [count] int64 in 0..n_steps-1}``.
    """
    if vocab_size < 3 or n_steps < 1 or length < 2 or not 0.0 <= noise <= 1.0:
        raise ValueError(f"need vocab_size >= 3, n_steps >= 1, length >= 2 and 0 <= noise <= 1; got "
                         f"vocab_size={vocab_size}, n_steps={n_steps}, length={length}, noise={noise}")
    rng = np.random.default_rng(seed)
    modulus = vocab_size - 1
    start = rng.integers(0, modulus, size=(count, 1))
    step = rng.integers(1, n_steps + 1, size=(count, 1))
    tokens = 1 + (start + np.arange(length)[None, :] * step) % modulus
    if noise > 0.0:
        replace = rng.random((count, length)) < noise
        tokens = np.where(replace, rng.integers(1, vocab_size, size=(count, length)), tokens)
    return {"tokens": torch.from_numpy(tokens.astype(np.int64)), "label": torch.from_numpy(step[:, 0] - 1)}


def read_corpus(path: str | Path) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file (one sentence per line).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file holds no sentence.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"corpus file {file} does not exist; pass a text file with one sentence per line")
    sentences = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise ValueError(f"corpus file {file} holds no sentence")
    return sentences


def split_sentences(sentences: list[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded ``(train, val)`` split of a corpus; ``val`` holds at least one sentence."""
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_val = max(1, int(round(val_fraction * len(sentences)))) if len(sentences) > 1 else 0
    val = [sentences[i] for i in order[:n_val]]
    train = [sentences[i] for i in order[n_val:]] or val
    return train, val


__all__ = ["Dataset", "digits_dataset", "digits_split", "progression_sequences", "read_corpus", "require",
           "split_sentences"]


# ------------------------------------------------------------------------------ the TextTopic sentences
TOPICS: dict[str, tuple[str, ...]] = {
    "animal": ("dog", "cat", "horse", "cow", "sheep", "lion", "tiger", "rabbit", "wolf", "bear", "monkey",
               "elephant", "fox", "mouse", "goat", "deer"),
    "food": ("bread", "cheese", "apple", "banana", "pizza", "soup", "rice", "cake", "salad", "butter", "pasta",
             "orange", "cookie", "sandwich", "potato", "carrot"),
    "vehicle": ("car", "truck", "bus", "bicycle", "train", "boat", "plane", "motorcycle", "tractor", "van", "taxi",
                "ship", "scooter", "helicopter", "jeep", "tram"),
    "instrument": ("guitar", "piano", "violin", "drum", "flute", "trumpet", "cello", "harp", "saxophone",
                   "clarinet", "banjo", "organ", "trombone", "accordion", "tuba", "harmonica"),
    "clothing": ("shirt", "jacket", "hat", "shoe", "scarf", "sweater", "coat", "dress", "sock", "glove", "boot",
                 "skirt", "belt", "tie", "jeans", "hoodie"),
}
"""The topics (actions, in this order) and their nouns."""

TEMPLATES: tuple[str, ...] = (
    "there is a {} near the house",
    "i saw a {} yesterday",
    "my friend talked about the {}",
    "look at that {} over there",
    "the {} was in the picture",
    "we read a story about a {}",
    "she drew a {} on the paper",
    "he found an old {} in the box",
    "a {} appeared in my dream",
    "the kids love the {}",
)
"""Topic-neutral sentence frames; ``{}`` is the noun."""


def topic_sentences() -> list[tuple[str, int]]:
    """Every ``(sentence, topic index)`` of ``rlcore/TextTopic-v0`` (800 of them), in a fixed order."""
    return [(template.format(noun), topic) for template in TEMPLATES
            for topic, nouns in enumerate(TOPICS.values()) for noun in nouns]
