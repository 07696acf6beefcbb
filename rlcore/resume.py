"""Run folders, and resuming a run from one: the checkpoint is data, the folder is the one the user named, and the
settings that reach processes, the network or folders come from the caller (``docs/security.md``)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from rlcore.agent import locate_checkpoint
from rlcore.algos.base import Algorithm, custom_algo_class_name, get_algo_class
from rlcore.checkpoint import CheckpointError, load_checkpoint
from rlcore.checkpoint_reader import is_symlink
from rlcore.checkpoint_schema import CheckpointContents, check_layout, read_contents
from rlcore.env import EnvSpec, callable_label
from rlcore.fields import convert_settings, did_you_mean, user_path
from rlcore.train_config import TrainConfig

logger = logging.getLogger("rlcore.trainer")

CHECKPOINT_DIR = "checkpoint"
"""Sub-folder of a run holding its latest resumable checkpoint."""
BEST_DIR = "best"
"""Sub-folder of a run holding the agent with the best evaluation so far."""
FINAL_DIR = "final"
"""Sub-folder of a run holding the agent at the end of training."""

RESUME_FROM_CALLER = ("device", "log_dir", "num_workers", "backend", "ray_address", "worker_resources", "threads",
                      "tf32")
"""TrainConfig fields a resumed run never takes from its checkpoint: they choose hardware, processes, network
addresses and folders, so they come from the caller or the defaults."""


class RunFinishedError(ValueError):
    """Resuming a run that already trained its ``total_env_steps``, reached its ``stop_at_reward``, or was stopped by a
    callback."""


def _resumed_config(contents: CheckpointContents, overrides: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The checkpoint's TrainConfig without :data:`RESUME_FROM_CALLER`, updated by ``overrides``."""
    saved = contents.train_config or {}
    reused = {key: value for key, value in saved.items() if key not in RESUME_FROM_CALLER}
    try:
        TrainConfig(**{**reused, **overrides})  # yours can mend what a later version refuses (stop_at_reward, ...)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"meta.json's train_config, with your settings, is invalid: {error}") from error
    workers = saved.get("num_workers") or 0
    if workers and "num_workers" not in overrides:
        raise CheckpointError(
            f"the run in {run_dir} collected with num_workers={workers} (backend={saved.get('backend')!r}); settings "
            "that start processes or reach the network are never taken from a checkpoint: pass num_workers="
            f"{workers} (--num-workers {workers}) and, for Ray, backend='ray' and its ray_address yourself")
    if workers and overrides.get("num_workers") == 0:
        raise CheckpointError(
            f"the run in {run_dir} collected with num_workers={workers}: its replay shards and per-env episodes are "
            f"the workers'; resume it with num_workers={workers} (--num-workers {workers}), not in this process")
    saved_envs = reused.get("num_envs")
    if "num_envs" in overrides and saved_envs is not None and overrides["num_envs"] != saved_envs:
        raise ValueError(f"num_envs={overrides['num_envs']}: the run in {run_dir} collects with num_envs={saved_envs} "
                         "and its checkpoint holds their episodes; resume it with its own (drop num_envs), or start "
                         "a new run")
    config = TrainConfig(**{**reused, **overrides})
    if contents.env_steps >= config.total_env_steps:
        raise RunFinishedError(
            f"the run in {run_dir} already finished: it trained {contents.env_steps} env steps of "
            f"total_env_steps={config.total_env_steps}. To train it longer, resume it with a larger total: "
            f"rlcore train --resume {run_dir} --steps N (or Trainer.resume(..., total_env_steps=N)) with N > "
            f"{contents.env_steps}; its agent is evaluated by: rlcore eval {run_dir}")
    return config


def _checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The training-loop settings a resume changes, converted as ``rlcore.train`` converts them; refuses others."""
    fields = set(TrainConfig.__dataclass_fields__)
    unknown = [key for key in overrides if key not in fields]
    if unknown:
        raise ValueError(f"resuming takes only training-loop settings (TrainConfig); {unknown[0]!r} is not one"
                         f"{did_you_mean(unknown[0], fields)}: the algorithm's settings are the checkpoint's "
                         "(`rlcore algos --loop` lists the loop's)")
    if "seed" in overrides:
        raise ValueError(f"seed={overrides['seed']!r}: resuming continues the run with its own seed (its random "
                         "states are restored); drop seed, or start a new run with it")
    for name, why in (("preset", "chooses the settings a run starts from"),
                      ("init_from", "chooses the agent a run starts from"),
                      ("env_kwargs", "built the run's env, whose episodes the checkpoint replays")):
        if name in overrides:
            raise ValueError(f"{name}={overrides[name]!r}: resuming keeps the run's own ({name} {why}); drop it, or "
                             "start a new run with it")
    return convert_settings(TrainConfig, overrides)


def _check_algo_class(contents: Any, algo: type[Algorithm[Any]] | None, run_dir: Path) -> None:
    """A run of a user's subclass (its own loss) resumes only with a class of that name, a stock run only with the
    stock algorithm (or a subclass passed on purpose): the checkpoint names the class, never holds its code."""
    saved = contents.algo_class
    given = custom_algo_class_name(get_algo_class(algo)) if algo is not None else None
    short = (lambda name: name.rsplit(".", 1)[-1] if name else None)
    if saved is not None and short(given) != short(saved):
        how = (f"Trainer.resume(path, algo={short(saved)})" if given is None
               else f"Trainer.resume(path, algo={short(saved)}), not {short(given)}")
        raise CheckpointError(f"the run in {run_dir} trained {saved} (a subclass of {contents.algo}, with its own "
                              f"code), which checkpoints name but do not hold: pass it, {how}; the shell's "
                              "`rlcore train --resume` can resume stock algorithms only")
    if saved is None and given is not None:
        logger.warning("resuming the stock %s run in %s with %s: its records name that class from here on",
                       contents.algo, run_dir, given)


def _check_wrappers(recorded: tuple[str, ...], given: list[Any] | None, run_dir: Path) -> None:
    """A run whose envs had wrappers resumes with them: checkpoints hold their names, never their code, so they are
    passed again (``wrappers=[]`` resumes without them on purpose); other names than the recorded ones are logged."""
    if recorded and given is None:
        raise ValueError(f"the run in {run_dir} trained with the wrappers {list(recorded)}; checkpoints hold no code, "
                         "so pass them again: Trainer.resume(path, wrappers=[...]) (or wrappers=[] to go on without "
                         "them)")
    names = [callable_label(wrapper) for wrapper in given or []]
    if given is not None and names != list(recorded):
        logger.warning("resuming %s with the wrappers %s; it trained with %s", run_dir, names, list(recorded))


def _check_resumable(state: Any, config: TrainConfig, run_dir: Path, overrides: dict[str, Any]) -> None:
    """Refuses a run that reached ``stop_at_reward`` or that a callback stopped (unless ``total_env_steps`` is named
    again), and run folders whose outputs are symlinks."""
    try:
        trainer_state = state["trainer"]
        best, evaluated = float(trainer_state["best_eval"]), bool(trainer_state["history"])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"the checkpoint of {run_dir} lacks the trainer's state ({error!r})") from error
    if config.stop_at_reward is not None and evaluated and best >= config.stop_at_reward:
        raise RunFinishedError(
            f"the run in {run_dir} already finished: its best evaluation {best:g} reached stop_at_reward="
            f"{config.stop_at_reward:g}. To train it on, resume it with a higher stop_at_reward or none "
            "(--set stop_at_reward=null)")
    if trainer_state.get("stopped_by_callback") is True and "total_env_steps" not in overrides:
        raise RunFinishedError(
            f"the run in {run_dir} already finished: a callback stopped it (e.g. StopOnNoImprovement) before "
            f"total_env_steps={config.total_env_steps}. To train it on anyway, resume it naming the total: "
            f"Trainer.resume(..., total_env_steps=N) (rlcore train --resume {run_dir} --steps N)")
    for name in (CHECKPOINT_DIR, BEST_DIR, FINAL_DIR):
        if is_symlink(run_dir / name):
            raise CheckpointError(f"{run_dir / name} is a symlink; a resumed run writes there, and rlcore never writes "
                                  "through symlinks in a run folder: remove the link (or copy its target in its place)")


def resume_run(trainer_class: Any, path: str | Path, *, env: EnvSpec | None = None,
               algo: type[Algorithm[Any]] | None = None, trust_env_module: bool = False,
               callbacks: list[Any] | None = None, wrappers: list[Any] | None = None,
               overrides: dict[str, Any] | None = None) -> Any:
    """Rebuilds a run of ``trainer_class`` (a :class:`~rlcore.trainer.Trainer`) from its folder to continue exactly
    where it stopped.

    The checkpoint is data (see ``docs/security.md``): its metadata is validated and must fit its tensors before
    anything is built; the run folder written to is the one named here (a copied run resumes in the copy);
    :data:`RESUME_FROM_CALLER` settings (device, workers, backend, Ray address and resources, threads, TF32, log folder)
    come from ``overrides`` or the defaults, never from the checkpoint. One log line says what was reused.

    Raises:
        CheckpointError: No checkpoint yet, a damaged or inconsistent one, or a run with workers resumed without
            naming ``num_workers``.
        RunFinishedError: The run already trained ``total_env_steps``, reached ``stop_at_reward``, or a callback
            stopped it (``total_env_steps`` named in ``overrides`` goes on).
    """
    config_overrides = _checked_overrides(overrides or {})
    named = Path(os.path.realpath(user_path(path)))  # as locate_checkpoint resolves it
    checkpoint = locate_checkpoint(named, (CHECKPOINT_DIR,))
    run_dir = named if checkpoint != named else named.parent
    found: list[tuple[CheckpointContents, TrainConfig]] = []

    def inspect(meta: dict[str, Any], layout: Any) -> None:
        if meta.get("kind") == "agent":
            raise CheckpointError(f"{checkpoint} is an agent checkpoint, not a resumable training checkpoint; "
                                  f"resume from the run folder or its '{CHECKPOINT_DIR}/' sub-folder")
        contents = read_contents(meta, kinds=("training",), check_env=env is None,
                                 trust_env_module=trust_env_module)
        config = _resumed_config(contents, config_overrides, run_dir)
        check_layout(contents, layout, num_envs=config.num_envs * max(config.num_workers, 1))
        found[:] = [(contents, config)]

    state, _ = load_checkpoint(checkpoint, inspect=inspect)
    contents, train_config = found[0]
    _check_resumable(state, train_config, run_dir, config_overrides)
    if algo is not None and get_algo_class(algo).name != contents.algo:
        raise CheckpointError(f"{checkpoint} holds a {contents.algo} run, not one of {algo.__qualname__} "
                              f"({get_algo_class(algo).name})")
    _check_algo_class(contents, algo, run_dir)
    _check_wrappers(contents.wrappers, wrappers, run_dir)
    if env is None and contents.env_id is None:
        raise ValueError(f"the run in {run_dir} trained on an env class, factory or instance, which checkpoints do not "
                         "record (code); pass it: Trainer.resume(path, env=...) (shell: rlcore train ALGO ENV_ID "
                         "--resume RUN, with an id gymnasium can make)")
    trainer = trainer_class(algo if algo is not None else contents.algo, env if env is not None else contents.env_id,
                            train_config, contents.algo_config, env_kwargs=contents.env_kwargs, run_dir=run_dir,
                            callbacks=callbacks, wrappers=wrappers, _purge_step=contents.env_steps + 1,
                            _expected_spaces=(contents.observation_space, contents.action_space))
    try:
        trainer.load_training_state(state)
    except Exception as error:  # noqa: BLE001  (anything the saved state makes the loop's parts raise)
        trainer.source.close(failed=True)
        trainer.logger.close()
        raise CheckpointError(f"{checkpoint} does not hold a resumable {contents.algo} run: "
                              f"{type(error).__name__}: {error}") from error
    logger.info("resumed %s at %d env steps in %s; %s", contents.algo, contents.env_steps, run_dir,
                _resume_settings(contents, train_config, config_overrides))
    return trainer


def _resume_settings(contents: CheckpointContents, config: TrainConfig, overrides: dict[str, Any]) -> str:
    """The one line that says which settings a resumed run took from its checkpoint and which not."""
    values = dataclasses.asdict(config)
    reused = [f"{key}={values[key]!r}" for key in values
              if key not in RESUME_FROM_CALLER and key not in overrides and key in (contents.train_config or {})
              and key != "env_kwargs"]
    given = [f"{key}={values[key]!r}" for key in overrides]
    caller = [f"{key}={values[key]!r}" for key in RESUME_FROM_CALLER if key not in overrides]
    return (f"reused from its checkpoint: algo_config, env_kwargs={contents.env_kwargs!r}, {', '.join(reused)}; "
            f"given: {', '.join(given) or 'nothing'}; defaults, never from a checkpoint: {', '.join(caller) or 'none'}")
