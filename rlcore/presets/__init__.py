"""Tuned hyperparameters per (algorithm, env), rl-zoo style: ``<algo>.yaml`` maps env ids to settings.

Each entry has two sections: ``train`` (fields of :class:`rlcore.trainer.TrainConfig`) and
``algo`` (fields of the algorithm's config). Users override any field by passing it.

An entry may also have a ``gpu`` section, itself with ``train`` and ``algo`` sections: the GPU-sized variant of
the preset (more envs, larger batches), whose settings replace the entry's. Which variant a run takes is
``TrainConfig.preset`` (:func:`preset_variant`): ``auto`` (the default) takes the GPU variant when the run trains
on CUDA, ``cpu`` and ``gpu`` name one.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

SECTIONS = ("train", "algo")
PRESET_CHOICES = ("auto", "cpu", "gpu")
"""``TrainConfig.preset``: ``auto`` (the GPU variant when the run trains on CUDA and has one), ``cpu`` (the entry
itself) or ``gpu`` (its GPU variant on any device)."""


def _table(algo: str) -> dict[str, Any]:
    path = resources.files(__package__) / f"{algo}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _sections(entry: dict[str, Any], where: str, allowed: frozenset[str]) -> dict[str, dict[str, Any]]:
    """``entry``'s ``train`` and ``algo`` sections (copies; empty where absent), after checking that it has no
    section outside ``allowed`` (``where`` names it in the error)."""
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"preset {where} has unknown sections {sorted(unknown)}; use {', '.join(sorted(allowed))}")
    return {section: dict(entry.get(section) or {}) for section in SECTIONS}


def load_preset(algo: str, env_id: str, variant: str = "cpu") -> dict[str, dict[str, Any]]:
    """The preset for ``algo`` on ``env_id`` as ``{"train": {...}, "algo": {...}}``; empty sections if none.

    Args:
        variant: ``cpu`` (the entry) or ``gpu`` (the entry with its ``gpu`` section's settings in place).

    Raises:
        ValueError: ``variant="gpu"`` for an entry without a GPU variant (naming the entries that have one), or an
            entry with sections other than ``train``, ``algo`` and ``gpu``.
    """
    if variant not in ("cpu", "gpu"):
        raise ValueError(f"preset variant must be 'cpu' or 'gpu', got {variant!r}")
    entry = _table(algo).get(env_id) or {}
    preset = _sections(entry, f"{algo}.yaml:{env_id}", frozenset({*SECTIONS, "gpu"}))
    if variant == "gpu":
        if not entry.get("gpu"):
            having = gpu_preset_envs(algo)
            raise ValueError(f"preset='gpu': {algo} has no GPU preset for {env_id} ("
                             + (f"it has one for {', '.join(having)}" if having else "it has none")
                             + "); use preset='auto' or 'cpu', and set num_envs, batch sizes etc. yourself")
        gpu = _sections(entry["gpu"], f"{algo}.yaml:{env_id}:gpu", frozenset(SECTIONS))
        for section in SECTIONS:
            preset[section].update(gpu[section])
    return preset


def preset_envs(algo: str) -> list[str]:
    """Env ids that have a preset for ``algo``."""
    return sorted(_table(algo).keys())


def gpu_preset_envs(algo: str) -> list[str]:
    """Env ids whose ``algo`` preset has a GPU variant."""
    return sorted(env for env, entry in _table(algo).items() if isinstance(entry, dict) and entry.get("gpu"))


def preset_variant(algo: str, env_id: str, choice: str, device: str) -> str:
    """Which variant of the ``(algo, env_id)`` preset a run takes: ``gpu`` or ``cpu``.

    Args:
        choice: ``TrainConfig.preset``: ``auto``, ``cpu`` or ``gpu``.
        device: The run's ``TrainConfig.device`` (``auto`` resolves to CUDA when it is present).

    Raises:
        ValueError: A ``choice`` outside :data:`PRESET_CHOICES`.
    """
    if choice not in PRESET_CHOICES:
        raise ValueError(f"preset must be one of {', '.join(PRESET_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    if env_id not in gpu_preset_envs(algo):
        return "cpu"
    from rlcore.train_config import resolve_device  # imports torch: only for the entries that have a GPU variant

    return "gpu" if resolve_device(device).type == "cuda" else "cpu"
