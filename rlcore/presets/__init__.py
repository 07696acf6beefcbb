"""Tuned hyperparameters per (algorithm, env), rl-zoo style: ``<algo>.yaml`` maps env ids to settings.

Each entry has two sections: ``train`` (fields of :class:`rlcore.trainer.TrainConfig`) and
``algo`` (fields of the algorithm's config). Users override any field by passing it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def load_preset(algo: str, env_id: str) -> dict[str, dict[str, Any]]:
    """The preset for ``algo`` on ``env_id`` as ``{"train": {...}, "algo": {...}}``; empty sections if none."""
    path = resources.files(__package__) / f"{algo}.yaml"
    if not path.is_file():
        return {"train": {}, "algo": {}}
    table = yaml.safe_load(path.read_text()) or {}
    entry = table.get(env_id) or {}
    unknown = set(entry) - {"train", "algo"}
    if unknown:
        raise ValueError(f"preset {algo}.yaml:{env_id} has unknown sections {sorted(unknown)}; use 'train' and 'algo'")
    return {"train": dict(entry.get("train") or {}), "algo": dict(entry.get("algo") or {})}


def preset_envs(algo: str) -> list[str]:
    """Env ids that have a preset for ``algo``."""
    path = resources.files(__package__) / f"{algo}.yaml"
    if not path.is_file():
        return []
    return sorted((yaml.safe_load(path.read_text()) or {}).keys())
