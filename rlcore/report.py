"""What a run tells its user on the console: the preset it starts from, the steps it will take, and a summary.

All of it goes through logging (INFO, logger ``rlcore.report``), so it appears above the progress bar and
wherever the user's logging sends it.
"""

from __future__ import annotations

import logging
import math
import shlex
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

logger = logging.getLogger(__name__)


def announce_preset(algo: str, env: Any, preset: dict[str, dict[str, Any]], overrides: dict[str, Any],
                    variant: str = "cpu") -> str:
    """Logs (and returns) one line: which preset the run starts from (``variant="gpu"``: its GPU variant), or that
    the defaults are used."""
    if overrides.get("init_from") is not None:
        loop = f", the loop's from rlcore/presets/{algo}.yaml" if preset["train"] else ""
        line = f"settings: {algo}'s from the agent in {overrides['init_from']}{loop}; yours override them"
    elif not isinstance(env, str):
        line = f"preset: none (the env is not a registered id); {algo} starts from its defaults"
    elif not (preset["train"] or preset["algo"]):
        line = (f"preset: none for {algo} on {env}; using the defaults of {algo} and of the training loop "
                "(`rlcore presets` lists the tuned ones)")
    else:
        settings = {**preset["train"], **preset["algo"]}
        overridden = sorted(key for key in overrides if key in settings)
        source = f"rlcore/presets/{algo}.yaml" + (", its GPU variant" if variant == "gpu" else "")
        line = (f"preset: {algo} on {env} from {source} ({len(settings)} settings"
                + (f"; yours override {', '.join(overridden)}" if overridden else "") + ")")
    logger.info("%s", line)
    return line


def steps_per_iteration(trainer: Any) -> int:
    """Env steps the training loop collects between two checks of ``total_env_steps``."""
    algo, envs = trainer.algo, trainer.total_envs
    if algo.data_kind == "replay":
        return int(algo.config.train_freq) * envs
    if algo.data_kind == "rollout":
        return int(algo.config.n_steps) * envs
    return envs


def announce_steps(trainer: Any) -> int:
    """The env steps the run will take (a whole number of iterations); logs a line when that is more than asked."""
    total = int(trainer.config.total_env_steps)
    if trainer.config.num_workers > 0:
        return total  # workers collect in their own rhythm
    chunk = steps_per_iteration(trainer)
    planned = math.ceil(total / chunk) * chunk
    if planned != total:
        kind = trainer.algo.data_kind
        unit = "rollout" if kind == "rollout" else "collection"
        setting = {"rollout": "n_steps", "replay": "train_freq"}.get(kind)  # others step each env once
        each = f"{setting}={chunk // trainer.total_envs}" if setting else "1 step"
        logger.info("steps: total_env_steps=%s is not a multiple of the %s (%s x %d envs = %s env steps): the run "
                    "takes %s env steps", f"{total:,}", unit, each, trainer.total_envs, f"{chunk:,}", f"{planned:,}")
    return planned


def _renders_rgb_array(trainer: Any) -> bool | None:
    """Whether one env of the run declares ``rgb_array`` among its ``metadata["render_modes"]`` (None: unknown, e.g.
    a factory id). Batched vector envs declare nothing: their single env is read (its class, for an id)."""
    inner = trainer.envs.unwrapped
    metadata: Any = None
    if isinstance(trainer.env_spec, str):
        try:
            entry = gym.spec(trainer.env_spec).entry_point
            metadata = getattr(load_env_creator(entry) if isinstance(entry, str) else entry, "metadata", None)
        except Exception:  # noqa: BLE001  (openspiel/ ids and the like: not a gymnasium registration)
            metadata = None
    elif isinstance(inner, gym.vector.SyncVectorEnv):
        metadata = inner.envs[0].unwrapped.metadata
    if not isinstance(metadata, dict):
        return None
    return "rgb_array" in (metadata.get("render_modes") or [])


def summarize_run(trainer: Any) -> list[str]:
    """Logs (and returns) the end-of-run summary: env steps, wall time, best and final evaluation, where the best
    agent is and the commands to evaluate or watch it."""
    steps, seconds = int(trainer.env_steps), float(trainer.elapsed())
    lines = [f"done: {steps:,} env steps in {_duration(seconds)} ({steps / max(seconds, 1e-9):,.0f} steps/s)"]
    history = [entry for entry in trainer.history if "eval/mean_reward" in entry]
    if history:
        best = max(history, key=lambda entry: entry["eval/mean_reward"])
        final = history[-1]
        lines.append(f"evaluation ({trainer.config.eval_episodes} episodes): best {best['eval/mean_reward']:.2f} at "
                     f"{int(best['env_steps']):,} env steps, final {final['eval/mean_reward']:.2f} at "
                     f"{int(final['env_steps']):,}")
    else:
        lines.append("evaluation: none (eval_freq=0)")
    run_dir = trainer.logger.run_dir
    if run_dir is None:
        lines.append("nothing saved (log_dir=None): save the returned agent with agent.save(path)")
    else:
        agent_dir = Path(run_dir) / "best"
        if not (agent_dir / "meta.json").exists():
            agent_dir = Path(run_dir) / "final"
        quoted = shlex.quote(str(agent_dir))
        video = f"{trainer.algo_name}-{trainer.env_label.replace('/', '-')}.mp4"
        lines += [f"{agent_dir.name} agent: {agent_dir}", f"evaluate it: rlcore eval {quoted} --episodes 10"]
        by_id = isinstance(trainer.env_spec, str)
        if trainer.wrappers or not by_id:  # code (wrappers, an env class or factory): the shell cannot pass it
            code = [name for name, needed in (("env", not by_id), ("wrappers", bool(trainer.wrappers))) if needed]
            arguments = ", ".join("env=..." if name == "env" else "wrappers=[...]" for name in code)
            lines[-1] = (f"evaluate it: rlcore.load({str(agent_dir)!r}, {arguments}).evaluate(10) with the run's "
                         f"{' and '.join(code)}" + (" (rlcore eval evaluates without them)" if by_id else ""))
        renders = _renders_rgb_array(trainer)
        if renders is not False and by_id:
            lines.append(f"watch it:    rlcore eval {quoted} --episodes 1 --video {video}")
        elif renders is False and trainer.algo.has_own_evaluation:  # a board game drawn as text
            lines.append(f"play it:     rlcore play {quoted}")
        lines.append(f"curves:      rlcore board --log-dir {shlex.quote(str(_runs_root(trainer, Path(run_dir))))}")
    for line in lines:
        logger.info("%s", line)
    return lines


def _runs_root(trainer: Any, run_dir: Path) -> Path:
    """The ``log_dir`` above ``run_dir`` (TensorBoard then shows every run), else the run folder itself."""
    root = Path(trainer.config.log_dir) if trainer.config.log_dir else None
    if root is not None and root.resolve() in run_dir.resolve().parents:
        return root
    return run_dir


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
