"""An LSTM sequence model over token ids: a sequence classifier or a next-token language model.

Token 0 is padding; sequences are padded at the end. The encoder is an embedding and a stack of
single-layer LSTMs (separate modules, so that the last k of them can be fine-tuned alone); the
sequence's feature vector is the top layer's hidden state at its last non-padding token.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("classify", "lm")


class LSTMSequenceModel(nn.Module):
    """Embedding -> ``num_layers`` LSTMs -> a classifier head (``task="classify"``) or a next-token head (``"lm"``).

    Args:
        vocab_size: Token ids are ``0..vocab_size-1``; 0 is padding.
        embed_dim: Width of the token embeddings.
        hidden_size: Width of every LSTM layer (and of the features).
        num_layers: Stacked LSTM layers.
        task: ``"classify"``: logits ``[B, num_classes]`` from the last hidden state; ``"lm"``: logits
            ``[B, T, vocab_size]`` for the next token at every position.
        num_classes: Classes of the classifier head.
        score_from: Language model accuracy counts predictions of tokens at positions ``>= score_from``
            (the first ones cannot be predicted from so short a prefix).
    """

    kind = "lstm"

    def __init__(self, vocab_size: int = 32, embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 1,
                 task: str = "classify", num_classes: int = 4, score_from: int = 2) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        if vocab_size < 2 or embed_dim < 1 or hidden_size < 1 or num_layers < 1 or num_classes < 2:
            raise ValueError(f"need vocab_size >= 2, embed_dim, hidden_size, num_layers >= 1 and num_classes >= 2; "
                             f"got {vocab_size}, {embed_dim}, {hidden_size}, {num_layers}, {num_classes}")
        self.vocab_size, self.embed_dim, self.hidden_size = int(vocab_size), int(embed_dim), int(hidden_size)
        self.num_layers, self.task, self.num_classes = int(num_layers), task, int(num_classes)
        self.score_from = int(score_from)
        self.embedding = nn.Embedding(self.vocab_size, self.embed_dim, padding_idx=0)
        self.layers = nn.ModuleList(
            nn.LSTM(self.embed_dim if index == 0 else self.hidden_size, self.hidden_size, batch_first=True)
            for index in range(self.num_layers))
        self.head = nn.Linear(self.hidden_size, self.num_classes if task == "classify" else self.vocab_size)
        self.feature_dim = self.hidden_size

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (JSON), to rebuild the network from a checkpoint."""
        return {"vocab_size": self.vocab_size, "embed_dim": self.embed_dim, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "task": self.task, "num_classes": self.num_classes,
                "score_from": self.score_from}

    def layer_groups(self) -> list[nn.Module]:
        """The feature layers from input to output: the embedding, then each LSTM."""
        return [self.embedding, *self.layers]

    def hidden_states(self, tokens: Tensor) -> Tensor:
        """The top layer's outputs: ``[B, T]`` int -> ``[B, T, hidden_size]``."""
        x = self.embedding(tokens.long())
        for layer in self.layers:
            x, _ = layer(x)
        return x

    def features(self, tokens: Tensor) -> Tensor:
        """The hidden state at each sequence's last non-padding token: ``[B, T] -> [B, hidden_size]``.

        An all-padding sequence gets the state after its first (padding) token.
        """
        tokens = tokens.long()
        states = self.hidden_states(tokens)
        last = (tokens != 0).sum(dim=1).clamp(min=1) - 1
        return states[torch.arange(tokens.shape[0], device=tokens.device), last]

    def forward(self, tokens: Tensor) -> Tensor:
        """``classify``: ``[B, num_classes]``; ``lm``: next-token logits ``[B, T, vocab_size]``."""
        if self.task == "classify":
            return self.head(self.features(tokens))
        return self.head(self.hidden_states(tokens))

    def supervised_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor, int]:
        """``(mean loss, correct predictions, scored predictions)`` on ``{"tokens": [B, T], "label": [B]}``.

        ``lm`` is trained on every next token (padding ignored) and scored from ``score_from`` on.
        """
        tokens = batch["tokens"].long()
        if self.task == "classify":
            logits = self(tokens)
            loss = F.cross_entropy(logits, batch["label"])
            return loss, (logits.argmax(dim=1) == batch["label"]).sum(), int(tokens.shape[0])
        logits = self(tokens)[:, :-1]
        targets = tokens[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=0)
        scored = targets[:, max(self.score_from - 1, 0):]
        predicted = logits[:, max(self.score_from - 1, 0):].argmax(dim=-1)
        valid = scored != 0
        return loss, ((predicted == scored) & valid).sum(), int(valid.sum())


__all__ = ["LSTMSequenceModel"]
