"""Supervised training of the backbones with rlcore's conventions: ``fit`` and ``evaluate``.

:func:`fit` trains any model that has ``supervised_loss(batch, generator) -> (loss, correct, count)``
(:class:`~rlcore.backbones.cnn.ResidualCNN`, :class:`~rlcore.backbones.lstm.LSTMSequenceModel`,
:class:`~rlcore.backbones.bert.BertMaskedLM`) on a dataset (a ``dict`` of tensors with a shared first
dimension), like the RL trainer does: TensorBoard scalars (``train/loss``, ``train/accuracy``,
``val/loss``, ``val/accuracy``, ``time/examples_per_s``; the x axis is training examples seen),
``hparams.json``, a progress bar (the ``eval`` column shows the validation accuracy), early stopping
on the validation accuracy, and checkpoints in rlcore's format (``best/`` and ``final/``, JSON +
safetensors, loadable with :func:`load_backbone` and usable by the extractors).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlcore.backbones.data import Dataset
from rlcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlcore.logger import Logger, ProgressBar
from rlcore.optim import LR_ATTRIBUTE
from rlcore.settings import MAX_SEED, check_range
from rlcore.train_config import resolve_device

logger = logging.getLogger(__name__)

BEST_DIR, FINAL_DIR = "best", "final"
CHECKPOINT_KIND = "backbone"


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit`."""

    epochs: int = 30
    """Passes over the training set (at most: early stopping may end sooner)."""
    batch_size: int = 64
    """Examples per gradient step."""
    learning_rate: float = 1e-3
    """AdamW's step size."""
    lr_schedule: str = "cosine"
    """``constant``, or ``cosine``: decays to 0 over ``epochs`` (by gradient step)."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    max_grad_norm: float | None = 1.0
    """Global gradient-norm clip; None disables it."""
    patience: int | None = 5
    """Stop after this many epochs without a better validation accuracy; None: never stop early."""
    min_delta: float = 0.0
    """An improvement must exceed this much accuracy."""
    seed: int = 0
    """Seeds the shuffling, augmentation and masking (and torch's global RNG)."""
    device: str = "cpu"
    """``cpu``, ``cuda[:i]`` or ``auto`` (CUDA when available)."""
    eval_batch_size: int = 256
    """Examples per batch when evaluating."""
    progress_bar: bool = True
    """Show rlcore's progress bar."""
    log_dir: str | None = "runs"
    """Root of the run folders ``<log_dir>/pretrain/<kind>/seed<k>-<time>``; None writes nothing."""

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be one of ['constant', 'cosine'], got {self.lr_schedule!r}")
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, allow_inf=True)
        if self.patience is not None:
            check_range("patience", self.patience, 1)
        check_range("eval_batch_size", self.eval_batch_size, 1)
        check_range("seed", self.seed, 0, MAX_SEED)
        resolve_device(self.device)  # a bad name or CUDA where there is none: refused now, naming the value


@dataclass
class FitResult:
    """What :func:`fit` did. The model it trained holds the best validation weights afterwards."""

    run_dir: Path | None
    """The run folder (None when nothing was written)."""
    best_epoch: int
    """Epoch (1-based) of the best validation accuracy."""
    best_val_accuracy: float
    """That accuracy."""
    epochs: int
    """Epochs run."""
    stopped_early: bool
    """Whether early stopping ended training."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch``, ``examples``, ``train/loss``, ``train/accuracy``, ``val/loss``, ``val/accuracy``."""

    @property
    def best_checkpoint(self) -> Path | None:
        """``run_dir/best``, the checkpoint of the best validation accuracy (None without a run folder)."""
        return None if self.run_dir is None else self.run_dir / BEST_DIR


def learning_rate_param_groups(params: list[nn.Parameter], lr: float) -> list[dict[str, Any]]:
    """torch optimizer parameter groups: one at ``lr``, one per own learning rate set with
    :func:`rlcore.optim.set_learning_rate` (e.g. a pretrained BERT below a fresh head)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for param in params:
        groups.setdefault(float(getattr(param, LR_ATTRIBUTE, lr)), []).append(param)
    return [{"params": members, "lr": group_lr} for group_lr, members in groups.items()]


def dataset_size(data: Dataset) -> int:
    """The number of examples; a ValueError if the tensors disagree or there are none."""
    sizes = {key: int(tensor.shape[0]) for key, tensor in data.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"a dataset is a dict of tensors with one first dimension, got sizes {sizes}")
    return next(iter(sizes.values()))


def batches(data: Dataset, batch_size: int, order: Tensor | None = None, device: torch.device | str = "cpu"
            ) -> list[dict[str, Tensor]]:
    """Slices ``data`` (rows in ``order``, if given) into minibatches on ``device``."""
    count = dataset_size(data)
    index = order if order is not None else torch.arange(count)
    return [{key: tensor[chunk].to(device) for key, tensor in data.items()} for chunk in index.split(batch_size)]


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 256, seed: int = 0,
             device: torch.device | str | None = None) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (eval mode; masking, if any, drawn from ``seed``).

    Returns:
        ``{"loss": ..., "accuracy": ..., "count": scored predictions}``; the loss is averaged over batches
        weighted by their scored predictions.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total_loss, correct, count = 0.0, 0, 0
    try:
        for batch in batches(data, batch_size, device=device):
            loss, batch_correct, batch_count = model.supervised_loss(batch, generator)
            total_loss += float(loss) * batch_count
            correct += int(batch_correct)
            count += batch_count
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got a dataset with nothing to score")
    return {"loss": total_loss / count, "accuracy": correct / count, "count": float(count)}


def fit(model: nn.Module, train: Dataset, val: Dataset | None = None, config: FitConfig | None = None, *,
        run_dir: str | Path | None = None, name: str | None = None) -> FitResult:
    """Trains ``model``'s trainable parameters with AdamW, with early stopping on the validation accuracy.

    Args:
        model: Any module with ``supervised_loss(batch, generator) -> (loss, correct, count)``, ``config()``
            and ``kind`` (the backbones of this package).
        train: The training set.
        val: The validation set for early stopping and ``best/``; None uses the training set.
        config: Loop settings (defaults: :class:`FitConfig`).
        run_dir: The run folder; default ``<log_dir>/pretrain/<kind>/seed<k>-<time>`` (none if ``log_dir`` is None).
        name: The progress bar's label (default ``pretrain <kind>``).

    Returns:
        A :class:`FitResult`; ``model`` ends with the best validation weights (also in ``run_dir/best``),
        ``run_dir/final`` holds the last epoch's.
    """
    config = config or FitConfig()
    kind = getattr(model, "kind", type(model).__name__.lower())
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    params = [param for param in model.parameters() if param.requires_grad]
    if not params:
        raise ValueError(f"the {kind} model has no trainable parameter; unfreeze some before fit()")
    optimizer = torch.optim.AdamW(learning_rate_param_groups(params, config.learning_rate), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    val = val if val is not None else train
    n_train = dataset_size(train)
    total_steps = config.epochs * math.ceil(n_train / config.batch_size)
    schedule = (lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step / total_steps, 1.0)))
                if config.lr_schedule == "cosine" else lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if run_dir is None and config.log_dir is not None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_dir = Path(config.log_dir) / "pretrain" / kind / f"seed{config.seed}-{stamp}"
    run_path = Path(run_dir) if run_dir is not None else None
    board = Logger(run_path)
    board.log_hparams({"kind": kind, "model": model.config(), "fit": dataclasses.asdict(config),
                       "train_examples": n_train, "val_examples": dataset_size(val)})
    bar = ProgressBar(config.epochs * n_train, name or f"pretrain {kind}", config.progress_bar)
    best_accuracy, best_epoch, best_state = -math.inf, 0, None
    history: list[dict[str, float]] = []
    examples, stopped_early, epoch = 0, False, 0
    start = time.perf_counter()
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n_train, generator=generator)
            loss_sum, correct, scored = 0.0, 0, 0
            for batch in batches(train, config.batch_size, order, device):
                loss, batch_correct, batch_count = model.supervised_loss(batch, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                rows = int(next(iter(batch.values())).shape[0])
                examples += rows
                loss_sum += float(loss.detach()) * batch_count
                correct += int(batch_correct)
                scored += batch_count
                bar.update(examples, {"time/fps": examples / max(time.perf_counter() - start, 1e-9),
                                      **({"eval/mean_reward": best_accuracy} if best_state is not None else {})})
            validation = evaluate(model, val, config.eval_batch_size, seed=config.seed, device=device)
            record = {"epoch": float(epoch), "examples": float(examples),
                      "train/loss": loss_sum / max(scored, 1), "train/accuracy": correct / max(scored, 1),
                      "val/loss": validation["loss"], "val/accuracy": validation["accuracy"],
                      "train/learning_rate": config.learning_rate * schedule(scheduler.last_epoch),
                      "time/examples_per_s": examples / max(time.perf_counter() - start, 1e-9)}
            history.append(record)
            board.log_scalars({key: value for key, value in record.items() if "/" in key}, examples)
            logger.info("%s epoch %d: train loss %.4f, val accuracy %.4f", kind, epoch, record["train/loss"],
                        record["val/accuracy"])
            if validation["accuracy"] > best_accuracy + config.min_delta or best_state is None:
                best_accuracy, best_epoch = validation["accuracy"], epoch
                best_state = copy.deepcopy(model.state_dict())
                if run_path is not None:
                    save_backbone(run_path / BEST_DIR, model, {**record, "best_epoch": epoch})
            elif config.patience is not None and epoch - best_epoch >= config.patience:
                stopped_early = True
                logger.info("early stop after epoch %d: no better validation accuracy than %.4f (epoch %d) for %d "
                            "epochs", epoch, best_accuracy, best_epoch, config.patience)
                break
        if run_path is not None:
            save_backbone(run_path / FINAL_DIR, model, history[-1])
    finally:
        bar.close()
        board.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(run_path, best_epoch, best_accuracy, epoch, stopped_early, history)


# ------------------------------------------------------------------------------------------------ checkpoints
def save_backbone(path: str | Path, model: nn.Module, metrics: dict[str, float] | None = None) -> Path:
    """Writes ``model`` (a backbone of this package) as an rlcore checkpoint folder (JSON + safetensors).

    ``meta.json`` holds ``kind: "backbone"``, the backbone's kind and constructor config and ``metrics``;
    the state is ``{"model": state_dict}``. A BERT's config names its source folder (tokenizer and
    architecture), which must still exist when the checkpoint is loaded.
    """
    meta = {"kind": CHECKPOINT_KIND, "backbone": model.kind, "model_class": type(model).__name__,
            "config": model.config(), "metrics": dict(metrics or {})}
    return save_checkpoint(path, {"model": model.state_dict()}, meta)


def build_backbone(kind: str, model_class: str, config: dict[str, Any], *, pretrained_source: bool = False
                   ) -> nn.Module:
    """A backbone of ``kind`` built from its JSON config (random weights; BERT's architecture from its folder)."""
    from rlcore.backbones.bert import BertMaskedLM
    from rlcore.backbones.cnn import ResidualCNN
    from rlcore.backbones.lstm import LSTMSequenceModel

    if kind == "cnn":
        return ResidualCNN(**config)
    if kind == "lstm":
        return LSTMSequenceModel(**config)
    if kind == "bert":
        settings = dict(config)
        return BertMaskedLM.from_config(settings.pop("folder"), pretrained=pretrained_source, **settings)
    raise ValueError(f"unknown backbone kind {kind!r} ({model_class}); known: cnn, lstm, bert")


def load_backbone(path: str | Path, expected_kind: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Loads a checkpoint written by :func:`save_backbone` (or a run folder of :func:`fit`: its ``best/``).

    Returns:
        ``(model in eval mode, meta)``; ``meta["state_file"]["sha256"]`` identifies the weights.

    Raises:
        CheckpointError: Not a backbone checkpoint, of another kind, or inconsistent with its config.
    """
    folder = Path(path)
    if not (folder / "meta.json").exists() and (folder / BEST_DIR / "meta.json").exists():
        folder = folder / BEST_DIR
    state, meta = load_checkpoint(folder)
    if meta.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{folder} is not a backbone checkpoint (kind {meta.get('kind')!r}); pass a folder "
                              "written by rlcore.backbones.fit / save_backbone or `rlcore pretrain`")
    kind = meta.get("backbone")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{folder} holds a {kind!r} backbone, not {expected_kind!r}")
    try:
        model = build_backbone(kind, meta.get("model_class", ""), meta["config"])
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{folder} does not hold a loadable {kind} backbone: {error}") from error
    model.eval()
    return model, meta


__all__ = ["FitConfig", "FitResult", "evaluate", "fit", "load_backbone", "save_backbone"]
