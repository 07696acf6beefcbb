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
import json
import logging
import math
import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, VectorEnv

from rlcore.agent import Agent, build_algorithm, read_agent
from rlcore.algos.base import (
    Algorithm,
    PlanningAlgorithm,
    ReplayAlgorithm,
    RolloutAlgorithm,
    SelfPlayAlgorithm,
    TransitionAlgorithm,
    custom_algo_class_name,
    get_algo_class,
)
from rlcore.buffers.replay import build_replay
from rlcore.callbacks import Callback, CallbackList
from rlcore.checkpoint import (
    CheckpointError,
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from rlcore.collector import DivergedError
from rlcore.distributed.roles import WorkerSettings, WorkerSpec
from rlcore.env import (
    EnvSpec,
    ErrorKeepingAsyncVectorEnv,
    built_env_name,
    callable_label,
    env_name,
    fresh_env_spec,
    gives_action_masks,
    is_env_instance,
    make_vec_env,
)
from rlcore.evaluation import evaluate_policy
from rlcore.fields import plain_value, user_path
from rlcore.interrupt import InterruptAtIterationEnd
from rlcore.logger import TRAINING_SECONDS_TAG, Logger, ProgressBar
from rlcore.resume import BEST_DIR, CHECKPOINT_DIR, FINAL_DIR, resume_run
from rlcore.schedule import ReplayPhases
from rlcore.settings import config_from_dict, config_to_dict
from rlcore.sources import InProcessSource, Source
from rlcore.spaces import describe_space, space_difference, space_to_json
from rlcore.threads import apply_threads
from rlcore.train_config import TrainConfig, apply_tf32, resolve_device

logger = logging.getLogger(__name__)



def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one algorithm on one env; see :func:`rlcore.train` for the one-line version.

    Args:
        algo: A registered algorithm name (``"dqn"``, ``"q_learning"``, ...), or a subclass of one.
        env: A registered id, an ``Env`` subclass or a factory.
        config: Loop settings.
        algo_config: The algorithm's config dataclass, or a dict of its fields.
        env_kwargs: Passed to ``gym.make`` / the factory, over ``config.env_kwargs``.
        run_dir: Where to log and checkpoint; a fresh ``runs/<env>/<algo>/seed<k>-<time>`` by default.
        callbacks: :class:`rlcore.callbacks.Callback` instances (or one) called at the loop's hooks.
        wrappers: Applied to each sub-env (training and evaluation), innermost first; code, so checkpoints hold
            none: pass them again to :meth:`resume`.

    ``env`` may also be an env instance (the one sub-env: ``num_envs=1``; evaluation steps fresh copies of it) or a
    ``gymnasium.vector.VectorEnv`` (any autoreset mode; ``num_envs`` is its own; evaluation builds fresh envs from
    the factory it was built from). Neither can be replayed into worker processes (``num_workers=0``); a run on a
    user's vector env resumes with fresh episodes (its sub-envs cannot replay theirs).
    """

    def __init__(
        self,
        algo: str | type[Algorithm[Any]],
        env: EnvSpec,
        config: TrainConfig | None = None,
        algo_config: Any = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
        callbacks: list[Callback] | Callback | None = None,
        wrappers: list[Callable[[gym.Env], gym.Env]] | None = None,
        _purge_step: int | None = None,
        _expected_spaces: tuple[Any, Any] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        if isinstance(env, VectorEnv) and self.config.num_envs != env.num_envs:
            if self.config.num_envs != 1:
                raise ValueError(f"num_envs={self.config.num_envs}, but the vector env passed has {env.num_envs} "
                                 "sub-envs; leave num_envs unset (it is taken from the vector env)")
            self.config = dataclasses.replace(self.config, num_envs=env.num_envs)
        self.wrappers = list(wrappers or [])
        self.algo_name = get_algo_class(algo).name
        self.algo_class_name = custom_algo_class_name(get_algo_class(algo))
        """The qualified name of a user's subclass of the algorithm (recorded, so that resume and ``rlcore compare``
        tell it from the stock one), or None."""
        self.env_spec = env
        self.env_kwargs = {**(self.config.env_kwargs or {}), **(env_kwargs or {})}
        if self.config.log_dir is not None or run_dir is not None:  # before anything is built or written
            _check_recordable_env_kwargs(self.env_kwargs)
        self.callbacks = CallbackList(callbacks)
        algo_class = get_algo_class(algo)
        if algo_config is None or isinstance(algo_config, dict):
            algo_config = config_from_dict(algo_class.config_class, algo_config or {})
        self.device = resolve_device(self.config.device)
        apply_tf32(self.device, self.config.tf32)
        seed_everything(self.config.seed)
        self.envs = make_vec_env(env, self.config.num_envs, vectorization=self.config.vectorization,
                                 env_kwargs=self.env_kwargs, wrappers=self.wrappers, check_env=self.config.check_env,
                                 batched=not issubclass(algo_class, PlanningAlgorithm))  # planners read sub-envs
        try:
            self._set_up(algo, algo_config, env, run_dir, _expected_spaces, _purge_step)
        except BaseException:  # a setting found wrong late: nothing started is left running (async env processes)
            source = getattr(self, "source", None)
            if source is not None:
                source.close(failed=True)
            self._release_shared_replay()
            self.envs.close()
            raise
        self.best_eval = -float("inf")
        self.evaluations = 0
        self.history: list[dict[str, float]] = []
        """Every evaluation as ``{"env_steps": ..., "eval/mean_reward": ...}``."""
        self._next = {"log": self.config.log_interval, "eval": self.config.eval_freq,
                      "checkpoint": self.config.checkpoint_freq}
        self._eval_envs = None
        self._train_metrics: dict[str, float] = {}
        self._stop_requested = False
        self._phases = (ReplayPhases(self.algo.config.train_freq, self.algo.config.learning_starts,
                                     self.config.num_envs, self.config.num_workers, self.config.worker_lead)
                        if isinstance(self.algo, ReplayAlgorithm) else None)
        """When the replay algorithm trains (None for other data kinds)."""
        self._gradient_steps = (0 if self._phases is None else self.algo.config.gradient_steps
                                if self.algo.config.gradient_steps > 0 else self._phases.period)
        """Replay algorithms: gradient steps per phase (``gradient_steps=-1``: the phase's env steps, as SB3)."""
        self._phases_done = 0
        """Replay algorithms: training phases taken (set from the env steps when a session starts, so a resumed run
        needs no counter: its checkpoint was written after the phases its env steps call for)."""
        self._elapsed_before = 0.0
        """Training seconds of earlier sessions of this run (restored on resume)."""
        self._start_time = time.perf_counter()
        self._session_start = (self._start_time, 0)

    # ------------------------------------------------------------------------ set-up
    def _set_up(self, algo: str | type[Algorithm[Any]], algo_config: Any, env: EnvSpec, run_dir: str | Path | None,
                expected_spaces: tuple[Any, Any] | None, purge_step: int | None) -> None:
        """The run's algorithm, its start (``init_from``), its collection source, folder and logger, once its envs
        are built."""
        if expected_spaces is not None:  # resuming: the env must be the checkpoint's before the algo is built
            _check_env_spaces(self.envs, env, *expected_spaces)
        self.env_title = built_env_name(env, self.envs)
        """The task's name in the run folder, ``hparams.json`` and logs (see :func:`rlcore.env.built_env_name`)."""
        self.eval_env_spec = fresh_env_spec(env) if self.config.eval_freq else env
        """What evaluation builds its fresh envs from (a factory of copies for an env instance)."""
        self.algo: Algorithm[Any] = build_algorithm(
            algo, self.envs.single_observation_space, self.envs.single_action_space, algo_config,
            device=self.device, seed=self.config.seed, num_envs=self.total_envs,
        )
        self.algo.check_envs(self.envs)
        if gives_action_masks(self.envs):
            if self.algo.accepts_action_masks:
                self.algo.enable_action_masks()
            elif self.algo.searches_legal_actions(self.envs):
                logger.debug("%s searches its simulators' legal actions (the env's action masks)", self.algo_name)
            else:  # a user's opt-out is news; an algorithm without masks acting illegally is a warning
                opted_out = getattr(self.algo.config, "use_action_masks", True) is False
                (logger.info if opted_out else logger.warning)(
                    "%s ignores the env's action masks: it acts on every action (%s)", self.algo_name,
                    "use_action_masks=False" if opted_out else "it does not support masks")
        if self.config.init_from is not None and expected_spaces is None:  # a resume restores its own state
            self._start_from_agent(self.config.init_from)
        worker_rate = getattr(type(self.algo), "set_worker_exploration", None)  # overridden by epsilon explorers
        explores_by_epsilon = worker_rate not in (None, ReplayAlgorithm.set_worker_exploration)
        if self.config.worker_epsilon == "apex" and not (self.config.num_workers and explores_by_epsilon):
            raise ValueError(f"worker_epsilon='apex' gives each worker its own exploration rate: it needs "
                             f"num_workers >= 1 and an algorithm that explores by epsilon (dqn), not "
                             f"{self.algo_name} with num_workers={self.config.num_workers}; set "
                             "worker_epsilon='schedule' (the default)")
        self.threads = apply_threads(self.config.threads, algo=self.algo, device=self.device)
        self.source: Source = self._make_source()
        self.run_dir: Path | None = user_path(run_dir) if run_dir is not None else self._default_run_dir()
        self.logger = Logger(self.run_dir if self.config.log_dir is not None or run_dir is not None else None,
                             purge_step=purge_step)

    def _default_run_dir(self) -> Path | None:
        """A fresh ``<log_dir>/<env>/<algo>/seed<k>-<time>``, claimed with an atomic ``mkdir`` when logging is on, so
        two runs started at once (sweep trials, workers of a script) never share a folder."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        root = user_path(self.config.log_dir or "runs")
        base = root / self.env_title / self.algo_name / f"seed{self.config.seed}-{stamp}"
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
        """The run's settings, as recorded in TensorBoard's HParams view and ``hparams.json`` (what ``rlcore compare``
        groups runs by): ``train.env_kwargs`` are the ones the env was built with (the config's and the
        ``env_kwargs=`` argument's), and ``wrappers`` the names of the run's wrappers, where it has any."""
        train = plain_value(dataclasses.asdict(self.config))
        train["env_kwargs"] = plain_value(self.env_kwargs) or train["env_kwargs"]
        hparams = {
            "algo": self.algo_name,
            "env": self.env_spec if isinstance(self.env_spec, str) else self.env_title,
            "train": train,
            "algo_config": config_to_dict(self.algo.config),
        }
        if self.wrappers:
            hparams["wrappers"] = self.wrapper_names
        if self.algo_class_name is not None:
            hparams["algo_class"] = self.algo_class_name
        return hparams

    @property
    def wrapper_names(self) -> list[str]:
        """The names of the run's wrappers, as its records hold them (never their code)."""
        return [callable_label(wrapper) for wrapper in self.wrappers]

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
                                   total_env_steps=config.total_env_steps, action_masks=self.algo.action_masks)
        if isinstance(self.env_spec, VectorEnv) or is_env_instance(self.env_spec):
            raise ValueError(f"num_workers={config.num_workers} builds the env in each worker process, but "
                             f"{env_name(self.env_spec)} was passed already built (an env instance or a vector env); "
                             "pass a registered id, an Env class or a factory (defined at module level)")
        self.algo.check_workers()
        self.envs.close()  # workers step the envs; the learner only needed their spaces
        shared = config.backend == "local"
        if isinstance(self.algo, SelfPlayAlgorithm) and not shared:
            raise ValueError("AlphaZero self-play workers run as local processes only: use backend='local'")
        if isinstance(self.algo, ReplayAlgorithm | SelfPlayAlgorithm):  # transitions / positions: a shard per worker
            from rlcore.distributed.shared_replay import shard_placement

            placement = shard_placement(config.num_workers, config.num_envs, shared=shared)
            self.algo.replay = build_replay(self.algo.replay_settings(), placement)
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
            worker_epsilon=config.worker_epsilon, wrappers=tuple(self.wrappers),
        )

    # ------------------------------------------------------------------------ the loop
    def run(self) -> Agent:
        """Trains until ``total_env_steps`` (or a stop: ``stop_at_reward``, a callback); returns the final agent (the
        best one is in ``run_dir/best``).

        Raises:
            KeyboardInterrupt: on Ctrl-C. With a run folder the first one ends the iteration and saves a
                checkpoint first (:class:`rlcore.interrupt.InterruptAtIterationEnd`); a second one raises at once.
        """
        self.logger.log_hparams(self.hparams())
        label = " ".join(part for part in (self.algo_name, self.env_label, self.source.label) if part)
        bar = ProgressBar(self.config.total_env_steps, label, self.config.progress_bar, start=self.env_steps,
                          best_eval=self.best_eval if self.history else None)
        learn = {"replay": self._replay_iteration, "transitions": self._transitions_iteration,
                 "rollout": self._rollout_iteration, "planning": self._planning_iteration}[self.algo.data_kind]
        interrupt = InterruptAtIterationEnd(
            f"Ctrl-C: the run stops after this iteration and saves a checkpoint in {self.run_dir} (Ctrl-C again "
            "stops it at once, losing the steps since its last checkpoint)",
            enabled=self.logger.run_dir is not None and not self._has_foreign_async_envs())
        failed = True
        try:
            with interrupt:
                self.source.start(self.algo)
                if self._phases is not None:
                    self._phases_done = self._phases.due(self.env_steps)
                self.start_clock()
                self.callbacks.on_training_start(self)
                while self.env_steps < self.config.total_env_steps and not self._stopping() and not interrupt.requested:
                    learn()
                    self._after_iteration(bar)
                if interrupt.requested and self.env_steps < self.config.total_env_steps and not self._stopping():
                    failed = False  # a whole iteration, checkpointed: the envs close as after a finished run
                    self._stop_on_interrupt()  # else the run is done: it finishes (final evaluation, final/)
            self.source.finish()
            agent = self.finish(bar)
            failed = False
            return agent
        finally:
            self.source.close(failed=failed)
            self._release_run_resources()
            bar.close()
            self.logger.close()

    def _release_run_resources(self) -> None:
        """At the end of :meth:`run` (finished, failed or interrupted): the evaluation envs close, and local workers'
        shared-memory replay is released (its segment unlinked; its checkpoint holds it): a notebook that keeps the
        agent, or a failed run's traceback, keeps no segment in ``/dev/shm``."""
        if self._eval_envs is not None:
            self._eval_envs.close()
            self._eval_envs = None
        self._release_shared_replay()

    def _release_shared_replay(self) -> None:
        """Local workers' replay in shared memory: released, its segment unlinked."""
        replay = self._replay() if hasattr(self, "algo") else None
        if self.config.num_workers > 0 and self.config.backend == "local" and replay is not None:
            replay.close()

    def _start_from_agent(self, path: str) -> None:
        """``init_from``: the saved agent's learned state (its networks, SAC's entropy coefficient, the observation
        and reward statistics) in this run's algorithm; the rest is this run's own: a fresh optimizer at its learning
        rate, its seed's generator, its counters and schedules, its envs' memory and noise."""
        folder, contents, state = read_agent(path, self.algo_name)
        difference = space_difference((self.algo.observation_space, self.algo.action_space),
                                      (contents.observation_space, contents.action_space))
        if difference is not None:
            which, space, wanted = difference
            raise ValueError(f"init_from {folder}: the agent's {which} space {describe_space(wanted)} is not this "
                             f"env's {describe_space(space)}; start from an agent trained on this env")
        assert state is not None
        fresh, saved, networks = self.algo.state_dict(), state["algo"], _networks(self.algo)
        learned = {key: saved[key] for key in fresh if key in saved and (key in networks or key in LEARNED_STATE)}
        if not (networks.keys() | LEARNED_TABLES) & learned.keys():
            raise ValueError(f"init_from {folder}: {self.algo_name} has no networks to start from; train it anew")
        if isinstance(fresh.get("reward_normalizer"), dict) and isinstance(saved.get("reward_normalizer"), dict):
            learned["reward_normalizer"] = {**saved["reward_normalizer"],  # its statistics, this run's per-env sums
                                            "returns": fresh["reward_normalizer"]["returns"]}
        try:
            self.algo.load_state_dict({**fresh, **learned})
        except Exception as error:  # noqa: BLE001  (whatever a network of other sizes makes loading raise)
            first = " ".join(str(error).split())[:300]  # torch lists every mismatching tensor
            raise CheckpointError(f"init_from {folder}: its {self.algo_name} networks do not fit this run's settings "
                                  f"({type(error).__name__}: {first}); keep the agent's network settings (net_arch, "
                                  "channels, num_blocks, memory, ...: `rlcore algos "
                                  f"{self.algo_name}` lists them)") from error
        logger.info("starting from the agent in %s (its networks and statistics; a fresh optimizer)", folder)

    def _has_foreign_async_envs(self) -> bool:
        """A user's own async vector env: a terminal's Ctrl-C reaches its processes too, which then die, so the run
        cannot go on to a checkpoint (rlcore's own async sub-envs leave Ctrl-C to the learner)."""
        inner = self.envs.unwrapped
        return isinstance(inner, AsyncVectorEnv) and not isinstance(inner, ErrorKeepingAsyncVectorEnv)

    def _stop_on_interrupt(self) -> None:
        """After a first Ctrl-C: the checkpoint of where the run is (a whole iteration), then KeyboardInterrupt."""
        self._save_checkpoint()
        workers, ray = self.config.num_workers, self.config.backend == "ray"
        processes = (f", num_workers={workers}" if workers else "") + (", backend='ray'" if workers and ray else "")
        python = "rlcore.Trainer.resume(run_dir" + ("" if isinstance(self.env_spec, str) else ", env=...") + (
            ", wrappers=[...]" if self.wrappers else "") + processes + ").run()"
        flags = (f" --num-workers {workers}" if workers else "") + (" --backend ray" if workers and ray else "")
        shell = isinstance(self.env_spec, str) and not self.wrappers  # the CLI passes neither an env object nor code
        logger.warning("interrupted at %d env steps; the checkpoint in %s holds them: continue with %s",
                       self.env_steps, self.run_dir,
                       f"`rlcore train --resume {self.run_dir}{flags}` (Python: {python})" if shell else python)
        raise KeyboardInterrupt

    @property
    def env_label(self) -> str:
        return self.env_title

    def start_clock(self) -> None:
        """Starts :meth:`elapsed` where earlier sessions of the run left it, and this session's fps count."""
        now = time.perf_counter()
        self._start_time = now - self._elapsed_before
        self._session_start = (now, self.env_steps)

    def finish(self, bar: ProgressBar) -> Agent:
        """The end of a run: a last evaluation (unless one just ran), the checkpoint, the final agent."""
        evaluated_last = bool(self.history) and self.history[-1]["env_steps"] == self.env_steps
        self._check_losses_finite()  # also where nothing is saved and no log was due (a short run)
        self._check_weights_finite()
        self._warn_if_untrained()
        if self.config.eval_freq and not evaluated_last:
            bar.update(self.env_steps, self._evaluate())
        self._save_checkpoint()
        agent = self.agent()
        if self.logger.run_dir is not None:
            agent.save(self.run_dir / FINAL_DIR)
        self.callbacks.on_training_end(self)
        return agent

    def _warn_if_untrained(self) -> None:
        """A replay algorithm (DQN, SAC, ...) that ended before its first update, its ``learning_starts`` (env steps)
        not passed, returns an untrained agent (or ``init_from``'s unchanged): say so, and why."""
        if not isinstance(self.algo, ReplayAlgorithm) or self.algo.updates != 0:
            return
        agent = f"the agent is {self.config.init_from}'s, unchanged" if self.config.init_from else \
            "the agent is untrained"
        logger.warning("%s took no learning step: it learns once past learning_starts=%s and collected %s env steps; "
                       "%s. Train longer (total_env_steps) or lower learning_starts", self.algo_name,
                       f"{self.algo.config.learning_starts:,}", f"{self.env_steps:,}", agent)

    def reached_target(self) -> bool:
        target = self.config.stop_at_reward
        return target is not None and bool(self.history) and self.best_eval >= target

    def _stopping(self) -> bool:
        return self._stop_requested or self.reached_target()

    # --- one iteration per data kind: the source collects, the algorithm learns when the schedule says so -------
    def _replay_iteration(self) -> None:
        algo, phases, total = self.algo, self._phases, self.config.total_env_steps
        assert isinstance(algo, ReplayAlgorithm) and phases is not None
        self.source.collect_replay(algo, algo.config.train_freq)
        due = phases.due(self.env_steps)
        if due > self._phases_done:
            while self._phases_done < due:  # each phase sees the schedules (target sync, epsilon) of its own env step
                algo.set_progress(min(phases.env_steps_of(self._phases_done), total), total)
                self._train_metrics = algo.train(self._gradient_steps)
                self._phases_done += 1
            self.source.publish(algo)
        else:
            self.source.idle()
        self.source.limit(phases.collection_limit(self._phases_done))

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
            self._check_losses_finite()
            metrics = {**self.source.stats.metrics(), **train_metrics, "time/fps": fps,
                       "time/episodes": float(self.source.stats.episodes)}
            self.logger.log_scalars({**metrics, TRAINING_SECONDS_TAG: self.elapsed()}, self.env_steps)
        if self._due("eval", self.config.eval_freq):
            metrics.update(self._evaluate())
        if self._due("checkpoint", self.config.checkpoint_freq):
            self._save_checkpoint()
        if self.callbacks.on_iteration(self, train_metrics) is False:
            self._stop_requested = True
        if metrics or bar.due() or self.env_steps >= self.config.total_env_steps or self._stopping():
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
            metrics = self.algo.evaluate(episodes, seed=seed, env=self.env_spec, training=True)
        else:
            if self._eval_envs is None:
                self._eval_envs = make_vec_env(self.eval_env_spec, episodes, env_kwargs=self._eval_env_kwargs(),
                                               wrappers=self._eval_wrappers(),
                                               batched=not isinstance(self.algo, PlanningAlgorithm))
            act = self.algo.actor(deterministic=True)
            if isinstance(self.algo, PlanningAlgorithm):  # planners act on the envs' states
                act = self.algo.evaluation_planner(self._eval_envs)
            metrics = evaluate_policy(act, self._eval_envs, episodes, seed=seed, device=self.device,
                                      action_masks=self.algo.accepts_action_masks)
        self.evaluations += 1
        self.logger.log_scalars({**metrics, TRAINING_SECONDS_TAG: self.elapsed()}, self.env_steps)
        self.history.append({"env_steps": float(self.env_steps), "eval_seed": float(seed),
                             "wall_time": self.elapsed(), **metrics})
        if metrics["eval/mean_reward"] > self.best_eval:
            self.best_eval = metrics["eval/mean_reward"]
            if self.logger.run_dir is not None:
                self._check_weights_finite()
                self.agent().save(self.run_dir / BEST_DIR)
            logger.info("new best evaluation %.2f at %d env steps", self.best_eval, self.env_steps)
        if self.callbacks.on_evaluation(self, metrics) is False:
            self._stop_requested = True
        return metrics

    def _eval_env_kwargs(self) -> dict[str, Any]:
        """env_kwargs for evaluation envs (none for copies of an instance or a vector env's own factory)."""
        return {} if isinstance(self.env_spec, VectorEnv) or is_env_instance(self.env_spec) else self.env_kwargs

    def _eval_wrappers(self) -> list[Any]:
        """The wrappers of evaluation envs: training's (a vector env's factory already applies its own)."""
        return [] if isinstance(self.env_spec, VectorEnv) else self.wrappers

    def _eval_seed(self) -> int:
        return 1_000_000 + self.config.seed * 1_000 + self.evaluations * 97

    # ---------------------------------------------------------------------- agents
    def agent(self) -> Agent:
        """The current policy as an :class:`Agent` (shares the networks; no copy)."""
        return Agent(self.algo, env=self.eval_env_spec, env_kwargs=self._eval_env_kwargs(), run_dir=self.run_dir,
                     wrappers=self._eval_wrappers())

    # ----------------------------------------------------------------- checkpoints
    def _check_losses_finite(self) -> None:
        """Refuses to go on (or to save) after a NaN or inf loss: the weights are diverging or diverged."""
        for key, value in self._train_metrics.items():
            if "loss" in key and not math.isfinite(float(value)):
                self._diverged(f"{self.algo_name}'s {key} is {float(value)}")

    def _check_weights_finite(self) -> None:
        """Before a checkpoint or a best agent is written: the networks' weights are finite (one update can break
        them while the loss it reported was finite)."""
        for name, network in _networks(self.algo).items():
            if not all(bool(torch.isfinite(weight).all()) for weight in network.parameters()):
                self._diverged(f"{self.algo_name}'s {name} weights are not finite (NaN or inf)")

    def _diverged(self, what: str) -> None:
        raise DivergedError(f"{what} at env step {self.env_steps}: training diverged; lower learning_rate, clip "
                            "gradients (max_grad_norm) or normalize rewards/observations"
                            + (f" (the last checkpoint in {self.run_dir} precedes it)" if self.logger.run_dir else ""))

    def _save_checkpoint(self) -> None:
        if self.logger.run_dir is None:
            return
        self._check_losses_finite()
        self._check_weights_finite()
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
                        "history": self.history, "train_metrics": self._train_metrics, "elapsed": self.elapsed(),
                        "stopped_by_callback": self._stop_requested},
        }

    def training_meta(self) -> dict[str, Any]:
        """The checkpoint's metadata (validated on resume by :func:`rlcore.checkpoint_schema.read_contents`)."""
        return {
            "kind": "training",
            "algo": self.algo_name,
            "env_id": self.env_spec if isinstance(self.env_spec, str) else None,
            "env_kwargs": plain_value(self.env_kwargs),  # numpy values as the numbers they hold
            "algo_config": config_to_dict(self.algo.config),
            "train_config": plain_value(dataclasses.asdict(self.config)),
            "observation_space": space_to_json(self.algo.observation_space),
            "action_space": space_to_json(self.algo.action_space),
            "env_steps": self.env_steps,
            "wrappers": self.wrapper_names,
            **({"algo_class": self.algo_class_name} if self.algo_class_name is not None else {}),
        }

    @classmethod
    def resume(cls, path: str | Path, env: EnvSpec | None = None, *, algo: type[Algorithm[Any]] | None = None,
               trust_env_module: bool = False, callbacks: list[Callback] | Callback | None = None,
               wrappers: list[Callable[[gym.Env], gym.Env]] | None = None, **config_overrides: Any) -> Trainer:
        """Rebuilds a run from its folder (or its checkpoint folder) to continue exactly where it stopped; the
        checkpoint is treated as data and the run folder is the one named (see :func:`rlcore.resume.resume_run`).

        Args:
            path: A run folder (its ``checkpoint/`` is used) or a run's checkpoint folder.
            env: The env, instead of the checkpoint's id (a class or factory, or an id a module import registers).
            algo: The Algorithm subclass the run trained, when it was one.
            trust_env_module: Accept a checkpoint env id for which ``gym.make`` would import a module.
            callbacks: Callbacks for the resumed session (checkpoints hold no code).
            wrappers: The wrappers the run's sub-envs had (code, so checkpoints hold none).
            config_overrides: TrainConfig fields to change, e.g. ``total_env_steps`` to train longer; the settings
                that reach processes, the network or folders (``RESUME_FROM_CALLER``) come only from here.
        """
        return resume_run(cls, path, env=env, algo=algo, trust_env_module=trust_env_module, callbacks=callbacks,
                          wrappers=wrappers, overrides=config_overrides)

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


def _check_env_spaces(envs: Any, env: EnvSpec, observation_space: Any, action_space: Any) -> None:
    difference = space_difference((envs.single_observation_space, envs.single_action_space),
                                  (observation_space, action_space))
    if difference is not None:
        which, space, expected = difference
        raise CheckpointError(f"the env {env_name(env)}'s {which} space {space} differs from the checkpoint's "
                              f"{expected}; resume with the env the run trained on")


def _networks(algo: Algorithm[Any]) -> dict[str, torch.nn.Module]:
    """The algorithm's networks by attribute name (the keys its ``state_dict`` stores them under)."""
    return {name: value for name, value in vars(algo).items() if isinstance(value, torch.nn.Module)}


LEARNED_TABLES = frozenset({"q_table"})
"""Keys of an algorithm's state that hold what it learned in place of networks (tabular Q-learning and SARSA)."""
LEARNED_STATE = ("log_ent_coef", "obs_normalizer", *LEARNED_TABLES)
"""Keys of an algorithm's state, beside its networks, that a run started from an agent (``init_from``) takes from it:
SAC's learned entropy coefficient, the observation statistics (the reward statistics too, without per-env sums),
a tabular agent's Q-table."""


def _check_recordable_env_kwargs(env_kwargs: dict[str, Any]) -> None:
    """Checkpoints record env_kwargs as JSON (a resumed run rebuilds its env from them): refuse, before the run
    starts, a value JSON cannot hold."""
    for key, value in env_kwargs.items():
        try:
            json.dumps(plain_value(value), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"env_kwargs[{key!r}] = {value!r} cannot be recorded in the run's checkpoints (JSON: "
                            f"{error}); pass numbers, strings, booleans, lists or dicts of them (convert inside your "
                            "env), or log_dir=None for a run that writes nothing") from None
