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
from rlcore.algos.base import (
    Algorithm,
    PlanningAlgorithm,
    ReplayAlgorithm,
    RolloutAlgorithm,
    SelfPlayAlgorithm,
    TransitionAlgorithm,
    get_algo_class,
)
from rlcore.callbacks import Callback, CallbackList
from rlcore.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from rlcore.distributed.roles import WorkerSettings, WorkerSpec
from rlcore.env import EnvSpec, env_name, make_vec_env
from rlcore.evaluation import evaluate_policy
from rlcore.logger import Logger, ProgressBar
from rlcore.settings import check_range, config_from_dict, config_to_dict
from rlcore.sources import InProcessSource, Source
from rlcore.spaces import space_to_json

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
    worker_resources: dict[str, float] | None = None
    """``backend="ray"``: custom Ray resources each collector actor asks for, e.g. ``{"collector": 1}``, so actors run
    only on nodes started with ``ray start --resources='{"collector": 4}'`` (not beside the learner); None: any node."""
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
        if self.worker_resources is not None and self.backend != "ray":
            raise ValueError(f"worker_resources={self.worker_resources!r} places Ray actors: set backend='ray'")
        if self.worker_epsilon not in ("schedule", "apex"):
            raise ValueError(f"worker_epsilon must be 'schedule' or 'apex', got {self.worker_epsilon!r}")
        if self.env_kwargs is not None and (
            not isinstance(self.env_kwargs, dict) or not all(isinstance(key, str) for key in self.env_kwargs)
        ):
            raise ValueError(f"env_kwargs must be a dict of keyword arguments (str keys) or None, got "
                             f"{self.env_kwargs!r}")
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
        callbacks: :class:`rlcore.callbacks.Callback` instances called at the loop's hooks.
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
        callbacks: list[Callback] | None = None,
        _purge_step: int | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.algo_name = algo
        self.env_spec = env
        self.env_kwargs = {**(self.config.env_kwargs or {}), **(env_kwargs or {})}
        self.callbacks = CallbackList(callbacks)
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
        self.source: Source = self._make_source()
        self.run_dir = Path(run_dir) if run_dir is not None else self._default_run_dir()
        self.logger = Logger(self.run_dir if self.config.log_dir is not None or run_dir is not None else None,
                             purge_step=_purge_step)
        self.best_eval = -float("inf")
        self.evaluations = 0
        self.history: list[dict[str, float]] = []
        """Every evaluation as ``{"env_steps": ..., "eval/mean_reward": ...}``."""
        self._next = {"log": self.config.log_interval, "eval": self.config.eval_freq,
                      "checkpoint": self.config.checkpoint_freq}
        self._eval_envs = None
        self._train_metrics: dict[str, float] = {}
        self._stop_requested = False
        self._phases_done = 0
        """Replay algorithms: training phases taken (set from the env steps when a session starts, so a resumed run
        needs no counter: its checkpoint was written after the phases its env steps call for)."""
        self._elapsed_before = 0.0
        """Training seconds of earlier sessions of this run (restored on resume)."""
        self._start_time = time.perf_counter()
        self._session_start = (self._start_time, 0)

    # ------------------------------------------------------------------------ set-up
    def _default_run_dir(self) -> Path:
        """A fresh ``<log_dir>/<env>/<algo>/seed<k>-<time>``, claimed with an atomic ``mkdir`` when logging is on, so
        two runs started at once (sweep trials, workers of a script) never share a folder."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        root = Path(self.config.log_dir or "runs")
        base = root / env_name(self.env_spec) / self.algo_name / f"seed{self.config.seed}-{stamp}"
        if self.config.log_dir is None:
            return base
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

    @property
    def env_steps(self) -> int:
        """Env steps collected so far in this run (over every sub-env and worker, earlier sessions included)."""
        return self.source.env_steps

    def _make_source(self) -> Source:
        """Collection in this process, or by ``num_workers`` worker processes / Ray actors."""
        config = self.config
        if config.num_workers == 0:
            return InProcessSource(self.envs, seed=config.seed, device=self.device,
                                   total_env_steps=config.total_env_steps)
        self.algo.check_workers()
        self.envs.close()  # workers step the envs; the learner only needed their spaces
        shared = config.backend == "local"
        if isinstance(self.algo, ReplayAlgorithm):
            self.algo.replay = self.algo.sharded_replay(config.num_workers, config.num_envs, shared=shared)
        elif isinstance(self.algo, SelfPlayAlgorithm):
            if not shared:
                raise ValueError("AlphaZero self-play workers run as local processes only: use backend='local'")
            self.algo.replay = self.algo.sharded_positions(config.num_workers)
        specs = [self.worker_spec(index) for index in range(config.num_workers)]
        settings = WorkerSettings(total_env_steps=config.total_env_steps, num_envs=config.num_envs,
                                  weight_pull_interval=config.weight_pull_interval, worker_lead=config.worker_lead)
        if config.backend == "ray":
            from rlcore.distributed.ray_backend import RaySource

            return RaySource(specs, settings, ray_address=config.ray_address, worker_resources=config.worker_resources)
        from rlcore.distributed.local import LocalWorkerSource

        return LocalWorkerSource(specs, settings)

    def worker_spec(self, index: int) -> WorkerSpec:
        """Worker ``index``'s recipe: this run's env, algorithm and seeds."""
        config = self.config
        return WorkerSpec(
            algo=self.algo_name, algo_config=config_to_dict(self.algo.config), env=self.env_spec,
            env_kwargs=self.env_kwargs, num_envs=config.num_envs, index=index, num_workers=config.num_workers,
            seed=config.seed, total_env_steps=config.total_env_steps, vectorization=config.vectorization,
            worker_epsilon=config.worker_epsilon,
        )

    # ------------------------------------------------------------------------ the loop
    def run(self) -> Agent:
        """Trains until ``total_env_steps`` (or a stop: ``stop_at_reward``, a callback); returns the final agent (the
        best one is in ``run_dir/best``)."""
        self.logger.log_hparams(self.hparams())
        label = " ".join(part for part in (self.algo_name, self.env_label, self.source.label) if part)
        bar = ProgressBar(self.config.total_env_steps, label, self.config.progress_bar, start=self.env_steps)
        learn = {"replay": self._replay_iteration, "transitions": self._transitions_iteration,
                 "rollout": self._rollout_iteration, "planning": self._planning_iteration}[self.algo.data_kind]
        try:
            self.source.start(self.algo)
            if isinstance(self.algo, ReplayAlgorithm):
                self._phases_done = self._replay_phases_due(self.env_steps)
            self.start_clock()
            self.callbacks.on_training_start(self)
            while self.env_steps < self.config.total_env_steps and not self._stopping():
                learn()
                self._after_iteration(bar)
            self.source.finish()
            return self.finish(bar)
        finally:
            self.source.close()
            bar.close()
            self.logger.close()

    @property
    def env_label(self) -> str:
        return env_name(self.env_spec)

    def start_clock(self) -> None:
        """Starts :meth:`elapsed` where earlier sessions of the run left it, and this session's fps count."""
        now = time.perf_counter()
        self._start_time = now - self._elapsed_before
        self._session_start = (now, self.env_steps)

    def finish(self, bar: ProgressBar) -> Agent:
        """The end of a run: a last evaluation (unless one just ran), the checkpoint, the final agent."""
        evaluated_last = bool(self.history) and self.history[-1]["env_steps"] == self.env_steps
        if self.config.eval_freq and not evaluated_last:
            self._evaluate()
        self._save_checkpoint()
        agent = self.agent()
        if self.logger.run_dir is not None:
            agent.save(self.run_dir / FINAL_DIR)
        self.callbacks.on_training_end(self)
        return agent

    def reached_target(self) -> bool:
        target = self.config.stop_at_reward
        return target is not None and bool(self.history) and self.best_eval >= target

    def _stopping(self) -> bool:
        return self._stop_requested or self.reached_target()

    # --- one iteration per data kind: the source collects, the algorithm learns when the schedule says so -------
    def _replay_iteration(self) -> None:
        algo = self.algo
        assert isinstance(algo, ReplayAlgorithm)
        self.source.collect_replay(algo, algo.config.train_freq)
        due = self._replay_phases_due(self.env_steps)
        if due > self._phases_done:
            while self._phases_done < due:  # each phase sees the schedules (target sync, epsilon) of its own env step
                algo.set_progress(min(self._replay_phase_env_steps(self._phases_done), self.config.total_env_steps),
                                  self.config.total_env_steps)
                self._train_metrics = algo.train(algo.config.gradient_steps)
                self._phases_done += 1
            self.source.publish(algo)
        else:
            self.source.idle()
        self.source.limit(self._replay_collection_limit())

    @property
    def _replay_period(self) -> int:
        """Env steps per training phase: ``train_freq`` vector steps of ``num_envs`` sub-envs (of one worker)."""
        return self.algo.config.train_freq * self.config.num_envs

    def _replay_phases_due(self, env_steps: int) -> int:
        """Training phases a single-process run has taken by ``env_steps``: one per ``train_freq`` vector steps
        once more than ``learning_starts`` env steps are in. The one rule for every source (workers included)."""
        period = self._replay_period
        return max(0, env_steps // period - self.algo.config.learning_starts // period)

    def _replay_phase_env_steps(self, phase: int) -> int:
        """The env steps at which a single-process run takes training phase ``phase`` (0, 1, ...)."""
        period = self._replay_period
        return (phase + 1 + self.algo.config.learning_starts // period) * period

    def _replay_collection_limit(self) -> int | None:
        """How far workers may collect before the learner catches up: the env steps of the next training phase
        plus ``worker_lead`` (None when ``worker_lead`` is None: workers run free, as in Ape-X)."""
        lead = self.config.worker_lead
        if lead is None:
            return None
        if lead == 0:
            lead = self._replay_period * max(self.config.num_workers, 1)
        return self.algo.config.learning_starts + (self._phases_done + 1) * self._replay_period + lead

    def _rollout_iteration(self) -> None:
        algo = self.algo
        assert isinstance(algo, RolloutAlgorithm)
        last_obs = self.source.collect_rollout(algo)
        algo.set_progress(self.env_steps, self.config.total_env_steps)
        self._train_metrics = algo.update(last_obs)
        self.source.publish(algo)

    def _transitions_iteration(self) -> None:
        assert isinstance(self.algo, TransitionAlgorithm)
        metrics = self.source.collect_transitions(self.algo)
        if metrics:
            self._train_metrics = metrics

    def _planning_iteration(self) -> None:
        algo = self.algo
        assert isinstance(algo, PlanningAlgorithm)
        metrics = self.source.collect_plans(algo)
        if isinstance(algo, SelfPlayAlgorithm) and algo.new_positions >= algo.config.train_every and (
                len(algo.replay) >= algo.config.learning_starts):
            metrics = {**metrics, **algo.train_phase()}
            self.source.publish(algo)
        else:
            self.source.idle()
        if metrics:
            self._train_metrics = metrics

    # --- after each iteration: logs, evaluation, checkpoints, callbacks ------------------------------------------
    def _due(self, what: str, interval: int) -> bool:
        if interval <= 0 or self.env_steps < self._next[what]:
            return False
        while self._next[what] <= self.env_steps:
            self._next[what] += interval
        return True

    def fps(self) -> float:
        """Env steps per second in this session."""
        start_time, start_steps = self._session_start
        return (self.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)

    def _after_iteration(self, bar: ProgressBar) -> None:
        fps, metrics = self.fps(), {}
        train_metrics = {**self._train_metrics, **self.source.metrics()}
        if self._due("log", self.config.log_interval):
            metrics = {**self.source.stats.metrics(), **train_metrics, "time/fps": fps,
                       "time/episodes": float(self.source.stats.episodes)}
            self.logger.log_scalars(metrics, self.env_steps)
        if self._due("eval", self.config.eval_freq):
            metrics.update(self._evaluate())
        if self._due("checkpoint", self.config.checkpoint_freq):
            self._save_checkpoint()
        if self.callbacks.on_iteration(self, train_metrics) is False:
            self._stop_requested = True
        bar.update(self.env_steps, {**self.source.stats.metrics(), "time/fps": fps, **metrics,
                                    **({"eval/mean_reward": self.history[-1]["eval/mean_reward"]}
                                       if self.history else {})})

    def log_scalars(self, metrics: dict[str, float]) -> None:
        """Writes custom scalars (``scope/name -> value``) to the run's TensorBoard file at the current env step."""
        self.logger.log_scalars(metrics, self.env_steps)

    def elapsed(self) -> float:
        """Seconds this run has trained, over all sessions (a resumed run continues the count)."""
        return time.perf_counter() - self._start_time

    # --------------------------------------------------------------------- evaluation
    def _evaluate(self) -> dict[str, float]:
        episodes, seed = self.config.eval_episodes, self._eval_seed()
        if self.algo.has_own_evaluation:  # e.g. two-player games: the score against a reference player
            metrics = self.algo.evaluate(episodes, seed=seed, env=self.env_spec)
        else:
            if self._eval_envs is None:
                self._eval_envs = make_vec_env(self.env_spec, episodes, env_kwargs=self.env_kwargs)
            act = self.algo.actor(deterministic=True)
            if isinstance(self.algo, PlanningAlgorithm):  # planners act on the envs' states
                act = self.algo.evaluation_planner(self._eval_envs)
            metrics = evaluate_policy(act, self._eval_envs, episodes, seed=seed, device=self.device)
        self.evaluations += 1
        self.logger.log_scalars(metrics, self.env_steps)
        self.history.append({"env_steps": float(self.env_steps), "eval_seed": float(seed),
                             "wall_time": self.elapsed(), **metrics})
        if metrics["eval/mean_reward"] > self.best_eval:
            self.best_eval = metrics["eval/mean_reward"]
            if self.logger.run_dir is not None:
                self.agent().save(self.run_dir / BEST_DIR)
            logger.info("new best evaluation %.2f at %d env steps", self.best_eval, self.env_steps)
        if self.callbacks.on_evaluation(self, metrics) is False:
            self._stop_requested = True
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
        path = save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.training_state(), self.training_meta())
        self.callbacks.on_checkpoint(self, path)

    def _replay(self) -> Any:
        """The algorithm's replay buffer or position store (None for algorithms without one)."""
        if isinstance(self.algo, ReplayAlgorithm | SelfPlayAlgorithm):
            return self.algo.replay
        return None

    def training_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here."""
        replay = self._replay()
        return {
            "algo": self.algo.state_dict(),
            "collector": self.source.state_dict(),
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
            "env_steps": self.env_steps,
            "run_dir": str(self.run_dir),
        }

    @classmethod
    def resume(cls, path: str | Path, env: EnvSpec | None = None, *, callbacks: list[Callback] | None = None,
               **config_overrides: Any) -> Trainer:
        """Rebuilds a run from its folder (or its checkpoint folder) to continue exactly where it stopped.

        Args:
            path: A run folder (its ``checkpoint/`` is used) or a checkpoint folder.
            env: Needed only when the run's env was a class or factory rather than an id.
            callbacks: Callbacks for the resumed session (callbacks are code, so checkpoints hold none).
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
                      callbacks=callbacks, _purge_step=int(meta["env_steps"]) + 1)
        trainer.load_training_state(state)
        logger.info("resumed %s at %d env steps from %s", meta["algo"], meta["env_steps"], checkpoint)
        return trainer

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`training_state`."""
        self.algo.load_state_dict(state["algo"])
        replay = self._replay()
        if replay is not None and state["replay"] is not None:
            replay.load_state_dict(state["replay"])
        self.source.load_state_dict(state["collector"])
        trainer_state = state["trainer"]
        self._next = {key: int(value) for key, value in trainer_state["next"].items()}
        self.best_eval = float(trainer_state["best_eval"])
        self.evaluations = int(trainer_state["evaluations"])
        self.history = list(trainer_state["history"])
        self._train_metrics = dict(trainer_state["train_metrics"])
        self._elapsed_before = float(trainer_state.get("elapsed", 0.0))
        restore_rng_state(state["rng"])
