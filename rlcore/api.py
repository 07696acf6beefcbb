"""The one-line entry points: ``rlcore.train`` and ``rlcore.load``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.vector import VectorEnv

from rlcore.agent import Agent, read_agent
from rlcore.algos.base import Algorithm, get_algo_class
from rlcore.callbacks import Callback
from rlcore.env import EnvSpec
from rlcore.fields import convert_value, did_you_mean, field_types, plain_value
from rlcore.logger import HPARAMS_FILE, script_console_logging
from rlcore.presets import load_preset, preset_variant
from rlcore.report import announce_preset, announce_steps, summarize_run
from rlcore.settings import config_to_dict
from rlcore.trainer import TrainConfig, Trainer

TRAIN_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainConfig))


def run_preset(algo_name: str, env: Any, overrides: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """``(variant, preset)``: the (algo, env) preset a run with ``overrides`` starts from, ``{"train": {...},
    "algo": {...}}`` (empty sections when the env is not a registered id or has none), and which variant it is:
    ``gpu`` where ``overrides``' ``preset`` (``TrainConfig.preset``, default ``auto``) and device pick the entry's
    GPU variant (:func:`rlcore.presets.preset_variant`), else ``cpu``."""
    choice = overrides.get("preset", "auto")
    if not isinstance(env, str):
        if choice == "gpu":
            raise ValueError("preset='gpu' takes the GPU variant of a registered env id's preset, but the env is not "
                             "an id; leave preset='auto' and set num_envs, batch sizes etc. yourself")
        return "cpu", _from_agent(algo_name, overrides, {"train": {}, "algo": {}})
    preset = load_preset(algo_name, env)
    device = overrides.get("device", preset["train"].get("device", "auto"))
    variant = preset_variant(algo_name, env, choice, str(device))
    return variant, _from_agent(algo_name, overrides, preset if variant == "cpu" else load_preset(algo_name, env,
                                                                                                    variant))


def _from_agent(algo_name: str, overrides: dict[str, Any], preset: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """With ``init_from``, the agent's own algorithm settings in place of the preset's (its networks must fit)."""
    if overrides.get("init_from") is None:
        return preset
    _, contents, _ = read_agent(str(plain_value(overrides["init_from"])), algo_name, tensors=False)
    return {"train": preset["train"], "algo": config_to_dict(contents.algo_config)}


def split_settings(
    algo: str | type[Algorithm[Any]], env: EnvSpec, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merges the (algo, env) preset (:func:`run_preset`: its GPU variant where the run takes it) with
    ``overrides``; returns ``(train_settings, algo_settings)``.

    An override key goes to TrainConfig if it names one of its fields, else to the algorithm's config; its value
    is converted by the field's declared type (:func:`rlcore.fields.convert_value`). A subclass of a registered
    algorithm gets the presets of the name it inherits.

    Raises:
        ValueError: An unknown key (with the closest field name) or a value that does not fit its field.
    """
    algo_class = get_algo_class(algo)
    return merge_settings(algo_class, run_preset(algo_class.name, env, overrides)[1], overrides)


def merge_settings(algo_class: type[Algorithm[Any]], preset: dict[str, dict[str, Any]], overrides: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`split_settings` for a preset already chosen (:func:`run_preset`)."""
    train_settings, algo_settings = dict(preset["train"]), dict(preset["algo"])
    algo_fields = field_types(algo_class.config_class)
    for key, value in overrides.items():
        if key in TRAIN_FIELDS:
            train_settings[key] = convert_value(key, field_types(TrainConfig)[key], value)
        elif key in algo_fields:
            algo_settings[key] = convert_value(key, algo_fields[key], value)
        else:
            raise ValueError(f"unknown setting {key!r} for {algo_class.name}"
                             f"{did_you_mean(key, [*TRAIN_FIELDS, *algo_fields])}; "
                             f"`rlcore algos {algo_class.name}` lists its settings")
    return train_settings, algo_settings


def check_run(algo: str, env: EnvSpec, settings: dict[str, Any], spaces: tuple[gym.Space, gym.Space]) -> None:
    """Raises what :func:`train` would refuse before any training: an algorithm that does not fit the env's
    ``spaces`` (:func:`rlcore.env.env_spaces`), an unknown setting, or a value out of its range (for runs planned
    ahead: a bench's grid, a sweep's trials)."""
    algo_class = get_algo_class(algo)
    algo_class.check_spaces(*spaces)
    train_settings, algo_settings = split_settings(algo, env, settings)
    TrainConfig(**train_settings)
    algo_class.config_class(**algo_settings)


def train(
    algo: str | type[Algorithm[Any]],
    env: EnvSpec | gym.Env | VectorEnv,
    *,
    env_kwargs: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | Callback | None = None,
    wrappers: list[Callable[[gym.Env], gym.Env]] | None = None,
    **settings: Any,
) -> Agent:
    """Trains ``algo`` on ``env`` with its tuned preset (if any), overridden by ``settings``.

    Example:
        >>> agent = rlcore.train("dqn", "CartPole-v1", total_env_steps=50_000, seed=1)
        >>> agent.evaluate(10)["mean_reward"]

    Args:
        algo: A registered algorithm name: ``dqn``, ``q_learning``, ``sarsa``, ..., or a subclass of one (e.g. a
            PPO with its own ``loss_class``; see :mod:`rlcore.algos.ppo`).
        env: A registered id, a ``gymnasium.Env`` subclass or a factory; or an env instance (the one sub-env,
            ``num_envs=1``; evaluation steps fresh copies of it); or a ``gymnasium.vector.VectorEnv`` you built (e.g.
            ``gym.make_vec(id, 8, vectorization_mode="async")``, either autoreset mode; ``num_envs`` is its own).
            Observations may be Box, Discrete, or Dict/Tuple of those; an env with ``action_masks()`` (or
            ``info["action_mask"]``) gets masked actions from the algorithms that take masks.
        callbacks: :class:`rlcore.callbacks.Callback` instances, or one (stop early, log custom scalars, record videos).
        wrappers: ``gym.Wrapper`` classes or functions applied to each sub-env (training and evaluation), innermost
            first.
        settings: Any :class:`TrainConfig` field (``total_env_steps``, ``seed``, ``num_envs``,
            ``device``, ...) or field of the algorithm's config (``learning_rate``, ...).

    Returns:
        The trained agent; the best evaluated one is saved in ``<run_dir>/best``.

    Raises:
        FileExistsError: ``run_dir`` already holds a run (resume it instead).
    """
    if run_dir is not None and (Path(run_dir) / HPARAMS_FILE).is_file():
        raise FileExistsError(f"run_dir {run_dir} already holds a run (its hparams.json); a new run there would "
                              "overwrite its checkpoints: continue it with Trainer.resume / rlcore train --resume, or "
                              "pass another folder")
    algo_class = get_algo_class(algo)
    if isinstance(algo, str):
        algo = algo_class.name  # names are case-insensitive: "DQN" is dqn
    variant, preset = run_preset(algo_class.name, env, settings)
    train_settings, algo_settings = merge_settings(algo_class, preset, settings)
    with script_console_logging():  # a script without logging set up sees what the shell shows
        trainer = Trainer(algo, env, TrainConfig(**train_settings), algo_settings, env_kwargs=env_kwargs,
                          run_dir=run_dir, callbacks=callbacks, wrappers=wrappers)
        announce_preset(trainer.algo_name, env, preset, settings, variant)
        announce_steps(trainer)
        agent = trainer.run()
        summarize_run(trainer)
    return agent
