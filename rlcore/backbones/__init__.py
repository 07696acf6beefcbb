"""Supervised backbones (a residual CNN, an LSTM, BERT) trained like rlcore trains agents, and reused as
feature extractors of rlcore and SB3 policies.

::

    from rlcore.backbones import FitConfig, ResidualCNN, digits_dataset, evaluate, fit

    model = ResidualCNN()
    result = fit(model, digits_dataset("train"), digits_dataset("val"), FitConfig(epochs=30))
    evaluate(model, digits_dataset("test"))["accuracy"]          # ~0.98
    rlcore.train("ppo", "rlcore/Digits-v0", features_extractor="backbone_cnn",
                 features_kwargs={"checkpoint": str(result.best_checkpoint)})

Importing this package registers the extractors ``backbone_cnn``, ``backbone_lstm`` and ``bert``
(``make_extractor`` also imports it on demand); ``transformers`` is only imported when a BERT is built.
See ``docs/backbones.md``.
"""

from rlcore.backbones.bert import BertBackbone, BertMaskedLM, default_model_folder
from rlcore.backbones.cnn import ResidualCNN
from rlcore.backbones.data import digits_dataset, digits_split, progression_sequences, read_corpus
from rlcore.backbones.extractors import (
    BackboneExtractor,
    BertExtractor,
    CNNBackboneExtractor,
    EmbeddingCache,
    LSTMBackboneExtractor,
)
from rlcore.backbones.lstm import LSTMSequenceModel
from rlcore.backbones.training import FitConfig, FitResult, evaluate, fit, load_backbone, save_backbone

__all__ = [
    "BackboneExtractor",
    "BertBackbone",
    "BertExtractor",
    "BertMaskedLM",
    "CNNBackboneExtractor",
    "EmbeddingCache",
    "FitConfig",
    "FitResult",
    "LSTMBackboneExtractor",
    "LSTMSequenceModel",
    "ResidualCNN",
    "default_model_folder",
    "digits_dataset",
    "digits_split",
    "evaluate",
    "fit",
    "load_backbone",
    "progression_sequences",
    "read_corpus",
    "save_backbone",
]
