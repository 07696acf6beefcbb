"""The Trainer owns the loop, the counters, evaluation, logging and checkpoints; never the maths.

One short loop per data kind:

- ``"replay"``: ``train_freq`` vector steps into the replay buffer, then ``gradient_steps`` updates;
- ``"transitions"``: one vector step, then :meth:`Algorithm.observe`;
- ``"rollout"``: ``n_steps`` vector steps into the algorithm's rollout, then one update on it;
- ``"planning"``: the algorithm plans one vector step from the envs' states, then observes it.

After each iteration it logs, evaluates and checkpoints when their intervals come due.
A checkpoint holds everything the loop needs to go on exactly as if never stopped:
the algorithm (networks, optimizer, generator), the replay buffer, counters, RNG states
and each env's current episode (replayed on resume, see :class:`rlcore.env.ReplayableEnv`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlcore.agent import Agent, build_algorithm
from rlcore.algos.base import Algorithm, get_algo_class
from rlcore.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from rlcore.collector import Collector
from rlcore.env import EnvSpec, env_name, make_vec_env
from rlcore.evaluation import evaluate_policy
from rlcore.logger import Logger, ProgressBar
from rlcore.settings import check_range, config_from_dict, config_to_dict
from rlcore.spaces import space_to_json
from rlcore.threads import apply_threads, check_threads

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
"""Sub-folder of a run holding its latest resumable checkpoint."""
BEST_DIR = "best"
"""Sub-folder of a run holding the agent with the best evaluation so far."""
FINAL_DIR = "final"
"""Sub-folder of a run holding the agent at the end of training."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop, shared by every algorithm."""

    total_env_steps: int = 100_000
    """Environment steps to train for (summed over the vector env's sub-envs)."""
    num_envs: int = 1
    """Sub-envs stepped together."""
    seed: int = 0
    """Seeds the networks, the algorithm's generator and the envs (sub-env ``i`` gets ``seed + i``)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    vectorization: str = "sync"
    """``sync`` (one process) or ``async`` (a process per sub-env)."""
    eval_freq: int = 10_000
    """Env steps between deterministic evaluations; 0 disables them."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_freq: int = 10_000
    """Env steps between resumable checkpoints; 0 keeps only the final one."""
    save_buffer: bool = True
    """Include the replay buffer in resumable checkpoints (needed for an exact resume)."""
    log_dir: str | None = "runs"
    """Root of the run folders ``<log_dir>/<env>/<algo>/seed<k>-<time>``; None disables files."""
    log_interval: int = 1_000
    """Env steps between scalar logs."""
    progress_bar: bool = True
    """Show a rich progress bar on the console."""
    stop_at_reward: float | None = None
    """Stop training once an evaluation's mean reward reaches this (SB3's StopTrainingOnRewardThreshold)."""
    num_workers: int = 0
    """Collector processes (``backend="local"``) or Ray actors (``backend="ray"``), each stepping ``num_envs``
    sub-envs; 0 collects in the learner's own process."""
    backend: str = "local"
    """``local``: worker processes (``spawn``) writing into shared memory; ``ray``: Ray actors."""
    ray_address: str | None = None
    """``backend="ray"``: an existing cluster to join (``"auto"``, ``"ray://head:10001"``); None starts a local Ray."""
    weight_pull_interval: int = 50
    """Vector steps a worker takes between pulls of newer weights (off-policy algorithms; on-policy workers
    always act with the weights of the current update)."""
    worker_lead: int | None = 0
    """Off-policy workers: env steps they may collect beyond what the learner has trained on at the algorithm's
    gradient-steps-per-env-step ratio (a rate limiter, so a slow learner keeps the single-process sample
    efficiency); 0: ``train_freq * num_envs`` per worker; None: unlimited (Ape-X: workers never wait)."""
    worker_epsilon: str = "schedule"
    """DQN workers' exploration: ``schedule`` (every worker follows the config's decay) or ``apex`` (worker ``i`` of
    ``N`` keeps ``0.4 ** (1 + 7 i / (N - 1))``, as in Ape-X)."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments for ``gym.make`` / the env factory, as rl-zoo's ``env_kwargs`` (a preset may set them);
    the ``env_kwargs=`` of :class:`Trainer` and :func:`rlcore.train` override them key by key."""
    threads: int | str | None = "auto"
    """CPU threads of torch and numpy's BLAS: ``auto`` (one for small networks, every core for large CNN batches;
    an ``OMP_NUM_THREADS`` set by the user wins), a number, or None to leave them as they are
    (see :mod:`rlcore.threads`)."""

    def __post_init__(self) -> None:
        check_range("total_env_steps", self.total_env_steps, 1)
        check_range("num_envs", self.num_envs, 1)
        check_range("eval_freq", self.eval_freq, 0)
        check_range("eval_episodes", self.eval_episodes, 1)
        check_range("checkpoint_freq", self.checkpoint_freq, 0)
        check_range("log_interval", self.log_interval, 1)
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {self.vectorization!r}")
        check_range("num_workers", self.num_workers, 0)
        check_range("weight_pull_interval", self.weight_pull_interval, 1)
        if self.worker_lead is not None:
            check_range("worker_lead", self.worker_lead, 0)
        if self.backend not in ("local", "ray"):
            raise ValueError(f"backend must be 'local' or 'ray', got {self.backend!r}")
        if self.worker_epsilon not in ("schedule", "apex"):
            raise ValueError(f"worker_epsilon must be 'schedule' or 'apex', got {self.worker_epsilon!r}")
        if self.env_kwargs is not None and (
            not isinstance(self.env_kwargs, dict) or not all(isinstance(key, str) for key in self.env_kwargs)
        ):
            raise ValueError(f"env_kwargs must be a dict of keyword arguments (str keys) or None, got "
                             f"{self.env_kwargs!r}")
        check_threads(self.threads)
        resolve_device(self.device)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is parsed by torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return resolved


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one algorithm on one env; see :func:`rlcore.train` for the one-line version.

    Args:
        algo: A registered algorithm name (``"dqn"``, ``"q_learning"``, ...).
        env: A registered id, an ``Env`` subclass or a factory.
        config: Loop settings.
        algo_config: The algorithm's config dataclass, or a dict of its fields.
        env_kwargs: Passed to ``gym.make`` / the factory, over ``config.env_kwargs``.
        run_dir: Where to log and checkpoint; a fresh ``runs/<env>/<algo>/seed<k>-<time>`` by default.
    """

    def __init__(
        self,
        algo: str,
        env: EnvSpec,
        config: TrainConfig | None = None,
        algo_config: Any = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
        _purge_step: int | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.algo_name = algo
        self.env_spec = env
        self.env_kwargs = {**(self.config.env_kwargs or {}), **(env_kwargs or {})}
        algo_class = get_algo_class(algo)
        if algo_config is None or isinstance(algo_config, dict):
            algo_config = config_from_dict(algo_class.config_class, algo_config or {})
        self.device = resolve_device(self.config.device)
        seed_everything(self.config.seed)
        self.envs = make_vec_env(env, self.config.num_envs, vectorization=self.config.vectorization,
                                 env_kwargs=self.env_kwargs)
        self.algo: Algorithm[Any] = build_algorithm(
            algo, self.envs.single_observation_space, self.envs.single_action_space, algo_config,
            device=self.device, seed=self.config.seed, num_envs=self.total_envs,
        )
        self.threads = apply_threads(self.config.threads, algo=self.algo, device=self.device)
        self.collector: Any = Collector(self.envs, seed=self.config.seed, device=self.device)
        if self.config.num_workers > 0:
            self._prepare_workers()
        self.run_dir: Path | None = Path(run_dir) if run_dir is not None else self._default_run_dir()
        self.logger = Logger(self.run_dir if self.config.log_dir is not None or run_dir is not None else None,
                             purge_step=_purge_step)
        self.best_eval = -float("inf")
        self.evaluations = 0
        self.history: list[dict[str, float]] = []
        """Every evaluation as ``{"env_steps": ..., "eval/mean_reward": ...}``."""
        self._next = {"log": self.config.log_interval, "eval": self.config.eval_freq,
                      "checkpoint": self.config.checkpoint_freq}
        self._eval_envs = None
        self.worker_pool: Any = None
        """The running :class:`rlcore.distributed.local.LocalWorkerPool` while local workers collect."""
        self._train_metrics: dict[str, float] = {}
        self._elapsed_before = 0.0
        """Training seconds of earlier sessions of this run (restored on resume)."""
        self._start_time = time.perf_counter()

    # ------------------------------------------------------------------------ set-up
    def _default_run_dir(self) -> Path | None:
        """A fresh ``<log_dir>/<env>/<algo>/seed<k>-<time>``, claimed with an atomic ``mkdir`` when logging is on, so
        two runs started at once (sweep trials, workers of a script) never share a folder."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        root = Path(self.config.log_dir or "runs")
        base = root / env_name(self.env_spec) / self.algo_name / f"seed{self.config.seed}-{stamp}"
        if self.config.log_dir is None:
            return None  # nothing is written: no folder, no path pointing nowhere
        base.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            candidate = base if attempt == 0 else base.with_name(f"{base.name}-{attempt}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise RuntimeError(f"could not create a fresh run folder next to {base}")

    def hparams(self) -> dict[str, Any]:
        """The run's settings, as recorded in TensorBoard and in checkpoints."""
        return {
            "algo": self.algo_name,
            "env": self.env_spec if isinstance(self.env_spec, str) else env_name(self.env_spec),
            "train": dataclasses.asdict(self.config),
            "algo_config": config_to_dict(self.algo.config),
        }

    @property
    def total_envs(self) -> int:
        """Sub-envs over all workers (``num_envs`` without workers)."""
        return self.config.num_envs * max(self.config.num_workers, 1)

    def _prepare_workers(self) -> None:
        """Checks that the algorithm can train from workers; off-policy ones get a replay with a shard per worker."""
        from rlcore.distributed.roles import RemoteCollector

        self.envs.close()  # workers step the envs; the learner only needed their spaces
        self.collector = RemoteCollector(self.total_envs)
        selfplay = hasattr(self.algo, "record_finished_games")
        if self.algo.data_kind not in ("replay", "rollout") and not selfplay:
            raise ValueError(f"num_workers > 0 needs an off-policy (replay), on-policy (rollout) or self-play "
                             f"(alphazero) algorithm; {self.algo_name!r} learns from {self.algo.data_kind}: use "
                             "num_workers=0")
        if getattr(self.algo.config, "memory", None) is not None and self.algo.data_kind == "replay":
            raise ValueError(f"num_workers > 0 does not support memory={self.algo.config.memory!r} DQN yet (its "
                             "windows need one replay per env column); use num_workers=0")
        if self.algo.data_kind == "rollout":
            from rlcore.distributed.roles import check_on_policy_workers

            check_on_policy_workers(self.algo)
            return
        from rlcore.distributed.shared_replay import ShardedReplay, position_geometry

        if self.config.backend == "local":
            from rlcore.distributed.roles import check_spawnable

            check_spawnable(self.env_spec)
        if selfplay:
            if self.config.backend == "ray":
                raise ValueError("AlphaZero self-play workers run as local processes only: use backend='local'")
            self.algo.replay = ShardedReplay(position_geometry(  # type: ignore[attr-defined]
                self.envs.single_observation_space, self.envs.single_action_space, self.config.num_workers,
                self.algo.config.buffer_size), shared=self.config.backend == "local")
            return
        self.algo.replay = ShardedReplay.from_spaces(  # type: ignore[attr-defined]
            self.envs.single_observation_space, self.envs.single_action_space,
            num_shards=self.config.num_workers, envs_per_shard=self.config.num_envs,
            capacity=self.algo.config.buffer_size, n_step=self.algo.config.n_step, gamma=self.algo.config.gamma,
            shared=self.config.backend == "local", prioritized=self.algo.config.prioritized,
            alpha=self.algo.config.per_alpha, beta=self.algo.config.per_beta_start,
        )

    # ------------------------------------------------------------------------ the loop
    def run(self) -> Agent:
        """Trains until ``total_env_steps``; returns the final agent (the best one is in ``run_dir/best``)."""
        if self.config.num_workers > 0:
            from rlcore.distributed import run_distributed

            return run_distributed(self)
        total = self.config.total_env_steps
        self.logger.log_hparams(self.hparams())
        bar = ProgressBar(total, f"{self.algo_name} {self.env_label}", self.config.progress_bar,
                          start=self.collector.env_steps)
        self.start_clock()
        start_time, start_steps = time.perf_counter(), self.collector.env_steps
        iterate = {"replay": self._replay_iteration, "transitions": self._transitions_iteration,
                   "rollout": self._rollout_iteration, "planning": self._planning_iteration}[self.algo.data_kind]
        try:
            while self.collector.env_steps < total and not self.reached_target():
                iterate()
                fps = (self.collector.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)
                self._after_iteration(fps, bar)
            return self.finish(bar)
        finally:
            bar.close()
            self.logger.close()

    @property
    def env_label(self) -> str:
        return env_name(self.env_spec)

    def start_clock(self) -> None:
        """Starts :meth:`elapsed` where earlier sessions of the run left it."""
        self._start_time = time.perf_counter() - self._elapsed_before

    def finish(self, bar: ProgressBar) -> Agent:
        """The end of a run: a last evaluation (unless one just ran), the checkpoint, the final agent."""
        evaluated_last = bool(self.history) and self.history[-1]["env_steps"] == self.collector.env_steps
        if self.config.eval_freq and not evaluated_last:
            self._evaluate()
        self._save_checkpoint()
        agent = self.agent()
        if self.logger.run_dir is not None:
            agent.save(self.run_dir / FINAL_DIR)
        return agent

    def reached_target(self) -> bool:
        target = self.config.stop_at_reward
        return target is not None and bool(self.history) and self.best_eval >= target

    def _replay_iteration(self) -> None:
        algo, replay = self.algo, self.algo.replay  # type: ignore[attr-defined]
        for _ in range(algo.config.train_freq):
            replay.add(self.collector.step(algo.act))
            algo.set_progress(self.collector.env_steps, self.config.total_env_steps)
        if self.collector.env_steps > algo.config.learning_starts:
            self._train_metrics = algo.train(algo.config.gradient_steps)

    def _rollout_iteration(self) -> None:
        algo = self.algo
        for _ in range(algo.config.n_steps):
            algo.store(self.collector.step(algo.explore))  # type: ignore[attr-defined]
        algo.set_progress(self.collector.env_steps, self.config.total_env_steps)
        self._train_metrics = algo.update(torch.from_numpy(self.collector.last_obs))  # type: ignore[attr-defined]

    def _transitions_iteration(self) -> None:
        transition = self.collector.step(self.algo.act)
        self.algo.set_progress(self.collector.env_steps, self.config.total_env_steps)
        metrics = self.algo.observe(transition)
        if metrics:
            self._train_metrics = metrics

    def _planning_iteration(self) -> None:
        plan = lambda obs: self.algo.plan(self.envs, deterministic=False)  # type: ignore[attr-defined]  # noqa: E731
        transition = self.collector.step(plan)
        self.algo.set_progress(self.collector.env_steps, self.config.total_env_steps)
        metrics = self.algo.observe(transition)
        if metrics:
            self._train_metrics = metrics

    def _due(self, what: str, interval: int) -> bool:
        if interval <= 0 or self.collector.env_steps < self._next[what]:
            return False
        while self._next[what] <= self.collector.env_steps:
            self._next[what] += interval
        return True

    def _after_iteration(self, fps: float, bar: ProgressBar) -> None:
        metrics: dict[str, float] = {}
        if self._due("log", self.config.log_interval):
            metrics = {**self.collector.stats.metrics(), **self._train_metrics, "time/fps": fps,
                       "time/episodes": float(self.collector.stats.episodes)}
            self.logger.log_scalars(metrics, self.collector.env_steps)
        if self._due("eval", self.config.eval_freq):
            metrics.update(self._evaluate())
        if self._due("checkpoint", self.config.checkpoint_freq):
            self._save_checkpoint()
        bar.update(self.collector.env_steps, {**self.collector.stats.metrics(), "time/fps": fps, **metrics,
                                              **({"eval/mean_reward": self.history[-1]["eval/mean_reward"]}
                                                 if self.history else {})})

    def elapsed(self) -> float:
        """Seconds this run has trained, over all sessions (a resumed run continues the count)."""
        return time.perf_counter() - self._start_time

    # --------------------------------------------------------------------- evaluation
    def _evaluate(self) -> dict[str, float]:
        episodes, seed = self.config.eval_episodes, self._eval_seed()
        if hasattr(self.algo, "evaluate"):  # algorithms with their own evaluation (two-player games)
            metrics = self.algo.evaluate(episodes, seed=seed, env=self.env_spec)
        else:
            if self._eval_envs is None:
                self._eval_envs = make_vec_env(self.env_spec, episodes, env_kwargs=self.env_kwargs)
            act = self.algo.actor(deterministic=True)
            if self.algo.data_kind == "planning":  # planners act on the envs' states
                act = lambda obs: self.algo.plan(self._eval_envs, deterministic=True)  # type: ignore  # noqa: E731
            metrics = evaluate_policy(act, self._eval_envs, episodes, seed=seed, device=self.device)
        self.evaluations += 1
        self.logger.log_scalars(metrics, self.collector.env_steps)
        self.history.append({"env_steps": float(self.collector.env_steps), "eval_seed": float(seed),
                             "wall_time": self.elapsed(), **metrics})
        if metrics["eval/mean_reward"] > self.best_eval:
            self.best_eval = metrics["eval/mean_reward"]
            if self.logger.run_dir is not None:
                self.agent().save(self.run_dir / BEST_DIR)
            logger.info("new best evaluation %.2f at %d env steps", self.best_eval, self.collector.env_steps)
        return metrics

    def _eval_seed(self) -> int:
        return 1_000_000 + self.config.seed * 1_000 + self.evaluations * 97

    # ---------------------------------------------------------------------- agents
    def agent(self) -> Agent:
        """The current policy as an :class:`Agent` (shares the networks; no copy)."""
        return Agent(self.algo, env=self.env_spec, env_kwargs=self.env_kwargs, run_dir=self.run_dir)

    # ----------------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> None:
        if self.logger.run_dir is None:
            return
        self.logger.flush()
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.training_state(), self.training_meta())

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here."""
        replay = getattr(self.algo, "replay", None)
        return {
            "algo": self.algo.state_dict(),
            "collector": self.collector.state_dict(),
            "replay": replay.state_dict() if replay is not None and self.config.save_buffer else None,
            "rng": capture_rng_state(),
            "trainer": {"next": dict(self._next), "best_eval": self.best_eval, "evaluations": self.evaluations,
                        "history": self.history, "train_metrics": self._train_metrics, "elapsed": self.elapsed()},
        }

    def training_meta(self) -> dict[str, Any]:
        if not isinstance(self.env_spec, str):
            env_id = None
        else:
            env_id = self.env_spec
        return {
            "kind": "training",
            "algo": self.algo_name,
            "env_id": env_id,
            "env_kwargs": self.env_kwargs,
            "algo_config": config_to_dict(self.algo.config),
            "train_config": dataclasses.asdict(self.config),
            "observation_space": space_to_json(self.algo.observation_space),
            "action_space": space_to_json(self.algo.action_space),
            "env_steps": self.collector.env_steps,
            "run_dir": str(self.run_dir),
        }

    @classmethod
    def resume(cls, path: str | Path, env: EnvSpec | None = None, **config_overrides: Any) -> Trainer:
        """Rebuilds a run from its folder (or its checkpoint folder) to continue exactly where it stopped.

        Args:
            path: A run folder (its ``checkpoint/`` is used) or a checkpoint folder.
            env: Needed only when the run's env was a class or factory rather than an id.
            config_overrides: TrainConfig fields to change, e.g. ``total_env_steps`` to train longer.
        """
        path = Path(path)
        checkpoint = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).exists() else path
        state, meta = load_checkpoint(checkpoint)
        if meta.get("kind") != "training":
            raise CheckpointError(
                f"{checkpoint} is an agent checkpoint, not a resumable training checkpoint; resume from the run "
                f"folder or its '{CHECKPOINT_DIR}/' sub-folder"
            )
        env_spec = env if env is not None else meta["env_id"]
        if env_spec is None:
            raise ValueError(f"the run in {path} trained on an env class or factory; pass it as env=... to resume")
        train_config = TrainConfig(**{**meta["train_config"], **config_overrides})
        trainer = cls(meta["algo"], env_spec, train_config, meta["algo_config"], env_kwargs=meta["env_kwargs"],
                      run_dir=meta["run_dir"] if Path(meta["run_dir"]).exists() else checkpoint.parent,
                      _purge_step=int(meta["env_steps"]) + 1)
        trainer.load_training_state(state)
        logger.info("resumed %s at %d env steps from %s", meta["algo"], meta["env_steps"], checkpoint)
        return trainer

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`training_state`."""
        self.algo.load_state_dict(state["algo"])
        replay = getattr(self.algo, "replay", None)
        if replay is not None and state["replay"] is not None:
            replay.load_state_dict(state["replay"])
        self.collector.load_state_dict(state["collector"])
        trainer_state = state["trainer"]
        self._next = {key: int(value) for key, value in trainer_state["next"].items()}
        self.best_eval = float(trainer_state["best_eval"])
        self.evaluations = int(trainer_state["evaluations"])
        self.history = list(trainer_state["history"])
        self._train_metrics = dict(trainer_state["train_metrics"])
        self._elapsed_before = float(trainer_state.get("elapsed", 0.0))
        restore_rng_state(state["rng"])
