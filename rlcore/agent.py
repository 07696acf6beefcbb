"""A trained agent: predict, evaluate, save, load."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv

from rlcore.algos.base import Algorithm, PlanningAlgorithm, build_algorithm, custom_algo_class_name, get_algo_class
from rlcore.buffers.storage import action_mask_size
from rlcore.checkpoint import (
    META_FILE,
    STATE_FILE,
    CheckpointError,
    checkpoint_versions,
    load_checkpoint,
    save_checkpoint,
)
from rlcore.checkpoint_schema import CheckpointContents, check_layout, read_contents
from rlcore.env import EnvSpec, callable_label, fresh_env_spec, is_env_instance, make_env, make_vec_env
from rlcore.evaluation import check_policy_spaces, evaluate_policy
from rlcore.fields import plain_value, user_path
from rlcore.observations import batch_size, flat_observation
from rlcore.settings import config_to_dict
from rlcore.spaces import is_composite, leaf_spaces, out_of_range, space_to_json
from rlcore.threads import apply_threads
from rlcore.train_config import resolve_device

logger = logging.getLogger(__name__)


def observation_array(value: Any, space: spaces.Space, name: str) -> np.ndarray:
    """``value`` (one observation or a batch) as an array of ``space``'s dtype; a Discrete observation's values must
    be whole numbers in its range (a cast would truncate 2.7 to 2, and an index out of range fails in the network).

    Raises:
        ValueError: Naming ``name``, the bad value and the range.
    """
    array = np.asarray(value)
    if isinstance(space, spaces.Discrete) and array.size:
        low, high = int(space.start), int(space.start) + int(space.n) - 1
        try:
            numbers = array.astype(np.float64)
        except (TypeError, ValueError):  # not numbers at all
            numbers = None
        bad = repr(array.ravel()[0].tolist()) if numbers is None else out_of_range(numbers, low, high)
        if bad is not None:
            start = "" if low == 0 else f", start={low}"
            raise ValueError(f"predict() got {bad} in {name}; a Discrete({space.n}{start}) observation is a whole "
                             f"number in [{low}, {high}]")
    if (isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.integer) and array.size
            and array.dtype != space.dtype and np.issubdtype(array.dtype, np.number)):
        low, high = int(np.min(space.low)), int(np.max(space.high))
        bad = out_of_range(array.astype(np.float64), low, high)
        if bad is not None:  # a cast would wrap 300 to 44 and truncate 0.7 (a pixel scaled to [0, 1]) to 0
            raise ValueError(f"predict() got {bad} in {name}; the observation space holds whole numbers in [{low}, "
                             f"{high}] ({space.dtype}): pass the env's own observations (e.g. pixels, not pixels / "
                             "255)")
    return array.astype(space.dtype, copy=False)

def _check_state_rows(state: dict[str, torch.Tensor] | None, rows: int) -> None:
    """A memory state from ``predict`` holds one row per observation it was given (first dimension)."""
    for key, value in (state or {}).items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"predict() got a state whose {key!r} is a {type(value).__name__}; pass the state the "
                            "previous predict() returned, or state=None to start")
        if value.shape[:1] != (rows,):
            raise ValueError(f"predict() got a state for {value.shape[0] if value.dim() else 0} observations "
                             f"({key!r} of shape {tuple(value.shape)}) with {rows}; pass the state of the same "
                             "batch, or state=None to start every row")


class Agent:
    """A policy with the env it was trained on.

    Args:
        algo: The trained algorithm.
        env: The env spec it was trained on (an id is stored in saved agents; classes
            and factories are not, so pass ``env=`` to :meth:`evaluate` after loading).
        wrappers: Applied to each env :meth:`evaluate` builds (their names are saved, never their code).
        wrapper_names: The names of the wrappers the agent trained with (a loaded agent's, from its checkpoint);
            default: those of ``wrappers``.
    """

    def __init__(
        self,
        algo: Algorithm[Any],
        env: EnvSpec | None = None,
        env_kwargs: dict[str, Any] | None = None,
        run_dir: Path | None = None,
        wrappers: list[Any] | None = None,
        wrapper_names: tuple[str, ...] | None = None,
    ) -> None:
        self.algo = algo
        self.env = env
        self.env_kwargs = dict(env_kwargs or {})
        self.run_dir = run_dir
        self.wrappers = list(wrappers or [])
        self.wrapper_names = (tuple(wrapper_names) if wrapper_names is not None
                              else tuple(callable_label(wrapper) for wrapper in self.wrappers))

    @property
    def name(self) -> str:
        return self.algo.name

    def predict(self, obs: Any, deterministic: bool = True, action_masks: Any = None, *,
                state: dict[str, torch.Tensor] | None = None, episode_start: Any = None) -> Any:
        """Actions for one observation (``obs_shape``) or a batch (``[B, *obs_shape]``); a Dict (or Tuple)
        observation is a dict (tuple) of arrays, each of its key's shape or ``[B, ...]``.

        Args:
            obs: The observation(s).
            deterministic: The greedy action (else a sample of the behaviour policy).
            action_masks: The legal actions (bool ``[n]``, or ``[B, n]`` for a batch; sb3-contrib's
                ``MaskablePPO.predict`` convention): only those are chosen.
            state: Memory policies (``memory="lstm"``/``"transformer"``): the state the previous call returned, or
                None to start every row's episode (sb3-contrib's ``RecurrentPPO.predict`` convention).
            episode_start: Memory policies: bool per row (``[B]``, or one bool for one observation), True where an
                episode starts at this observation (its state is reset); default: all True without a ``state``,
                else all False.

        Returns an action of the action space's shape, or a batch ``[B, ...]`` of them; memory policies return
        ``(actions, state)``, the state to pass with the next observations.
        """
        space = self.algo.observation_space
        if is_composite(space):
            batch, single = self._dict_batch(obs)
        else:
            if isinstance(obs, tuple) and len(obs) == 2 and isinstance(obs[1], dict):
                raise ValueError("predict() got a tuple (observation, info), as env.reset() returns it; pass the "
                                 "observation: obs, info = env.reset(); agent.predict(obs)")
            array = observation_array(obs, space, "the observation")
            single = array.shape == space.shape
            if not single and array.shape[1:] != space.shape:
                raise ValueError(
                    f"predict() got an observation of shape {array.shape}; expected {space.shape} or "
                    f"[batch, {', '.join(map(str, space.shape))}]"
                )
            batch = torch.from_numpy(array[None] if single else array)
        rows = batch_size(batch)
        if rows == 0:
            raise ValueError("predict() got an empty batch (0 observations); pass one observation or a batch of them")
        masks = {} if action_masks is None else {"action_mask": self._mask_batch(action_masks, single, rows)}
        if self.algo.acts_with_state:
            starts = self._episode_starts(episode_start, state is None, rows)
            _check_state_rows(state, rows)
            action, state = self.algo.act_with_state(
                batch, self.algo.initial_acting_state(rows) if state is None else state, starts,
                deterministic=deterministic, **masks)
        elif state is not None or episode_start is not None:
            raise ValueError(f"{self.name} acts without a memory state; call predict() without state= and "
                             "episode_start=")
        else:
            action = self.algo.act(batch, deterministic=deterministic, **masks)
        if isinstance(action, tuple):  # a behaviour policy's (actions, extras for the replay), e.g. MuZero's
            action = action[0]
        action = np.asarray(action.cpu().numpy() if isinstance(action, torch.Tensor) else action)
        action = action[0] if single else action
        return (action, state) if self.algo.acts_with_state else action

    def _episode_starts(self, episode_start: Any, fresh: bool, rows: int) -> torch.Tensor:
        """``episode_start`` as bool ``[rows]`` (default: all True for a fresh state, else all False)."""
        if episode_start is None:
            return torch.full((rows,), fresh, dtype=torch.bool)
        starts = np.asarray(episode_start, dtype=bool).reshape(-1)
        if starts.shape != (rows,):
            raise ValueError(f"predict() got episode_start of shape {np.shape(episode_start)}; expected one bool per "
                             f"observation ({rows},)")
        return torch.from_numpy(starts.copy())

    def _dict_batch(self, obs: Any) -> tuple[dict[str, torch.Tensor], bool]:
        """A Dict/Tuple observation (single or batched) as the flat dict of ``[B, ...]`` tensors algorithms take."""
        leaves = leaf_spaces(self.algo.observation_space)
        flat = flat_observation(obs) if isinstance(obs, dict | tuple) else None
        if not isinstance(flat, dict) or set(flat) != set(leaves):
            got = sorted(flat) if isinstance(flat, dict) else type(obs).__name__
            raise ValueError(f"predict() got an observation with the keys {got}; this agent's observations are "
                             f"{'dicts' if isinstance(self.algo.observation_space, spaces.Dict) else 'tuples'} with "
                             f"the leaves {list(leaves)}")
        arrays = {path: observation_array(flat[path], leaf, f"the leaf {path!r}") for path, leaf in leaves.items()}
        single = all(arrays[path].shape == tuple(leaf.shape) for path, leaf in leaves.items())
        if not single:
            sizes = {path: array.shape[:1] for path, array in arrays.items()}
            bad = [path for path, leaf in leaves.items() if arrays[path].shape[1:] != tuple(leaf.shape)]
            if bad or len(set(sizes.values())) != 1:
                shapes = {path: arrays[path].shape for path in leaves}
                raise ValueError(f"predict() got leaves of shapes {shapes}; expected "
                                 f"{ {path: tuple(leaf.shape) for path, leaf in leaves.items()} } (one observation) or "
                                 "each with the same leading batch dim")
        return {path: torch.from_numpy(array[None] if single else array) for path, array in arrays.items()}, single

    def _mask_batch(self, action_masks: Any, single: bool, rows: int) -> torch.Tensor:
        if not self.algo.accepts_action_masks:
            opted = getattr(self.algo.config, "use_action_masks", None)
            why = ("it was built with use_action_masks=False" if opted is False
                   else "its memory policy acts without them" if getattr(self.algo, "keeps_memory", False)
                   else "it needs a Discrete or MultiDiscrete action space" if opted is not None
                   else "it acts without masks")
            raise ValueError(f"{self.name} does not take action masks here ({why}); call predict() without "
                             "action_masks")
        mask = np.asarray(action_masks, dtype=bool)
        mask = mask[None] if single and mask.ndim == 1 else mask
        size = action_mask_size(self.algo.action_space)
        if mask.shape != (rows, size):
            raise ValueError(f"predict() got action_masks of shape {np.shape(action_masks)}; expected ({size},) for "
                             f"one observation or ({rows}, {size}) for the batch")
        if not mask.any(axis=1).all():
            raise ValueError("predict() got an action mask that allows no action")
        return torch.from_numpy(mask)

    def evaluate(
        self, n_episodes: int = 10, *, env: EnvSpec | None = None, seed: int = 10_000,
        env_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Mean, std of return and mean length over ``n_episodes`` deterministic episodes.

        ``env`` (default: the agent's own) is built with ``env_kwargs``, by default the ones the agent trained with
        (``{}`` builds it without them); the run's wrappers apply to the agent's own env only.
        """
        target = env if env is not None else self.env
        if target is None:
            raise ValueError("this agent does not know its env (it trained on an env class, factory or instance, "
                             "which a checkpoint does not record); pass env=...")
        if self.algo.has_own_evaluation and env_kwargs:
            raise ValueError(f"{self.name} scores itself against a reference player on its own game, which takes no "
                             f"env_kwargs; drop env_kwargs={env_kwargs!r}")
        if env_kwargs is None and self.env_kwargs and not self.algo.has_own_evaluation:
            self._check_env_takes_kwargs(target)
        if env is None and self.wrapper_names and not self.wrappers:
            logger.warning("this agent trained with the wrappers %s, which a saved agent names but cannot hold "
                           "(code): it is evaluated without them, on another task than its training's "
                           "evaluations; pass them: rlcore.load(path, wrappers=[...])", list(self.wrapper_names))
        return self._evaluate(n_episodes, env, target, seed, self.env_kwargs if env_kwargs is None else env_kwargs)

    def _check_env_takes_kwargs(self, target: EnvSpec) -> None:
        """Builds ``target`` once with the recorded env_kwargs: an env that does not take them is named with the fix
        (a bare ``TypeError: unexpected keyword argument`` before)."""
        if isinstance(target, VectorEnv) or is_env_instance(target):
            return
        try:
            make_env(target, **self.env_kwargs).close()
        except TypeError as error:
            if "unexpected keyword argument" not in str(error):
                raise
            raise TypeError(f"{target!r} does not take the env_kwargs {self.env_kwargs} this agent trained with "
                            f"({error}); pass env_kwargs={{}} (rlcore eval: --env-kwargs '{{}}') or the ones it "
                            "takes") from error

    def _evaluate(self, n_episodes: int, env: EnvSpec | None, target: EnvSpec, seed: int,
                  env_kwargs: dict[str, Any]) -> dict[str, float]:
        if self.algo.has_own_evaluation:  # e.g. two-player games: the score against a reference player
            if env is not None:  # another game than its own is refused by its spaces (it crashed in the network)
                probe = make_env(fresh_env_spec(env), **env_kwargs)
                try:
                    check_policy_spaces(probe, self.algo.observation_space, self.algo.action_space)
                finally:
                    probe.close()
            metrics = self.algo.evaluate(n_episodes, seed=seed, env=target)
            return {key.removeprefix("eval/"): value for key, value in metrics.items()}
        act = self.algo.actor(deterministic=True)
        planner = self.algo if isinstance(self.algo, PlanningAlgorithm) else None
        wrappers = self.wrappers if env is None else []
        if planner is not None:  # planners act on the envs' states, not on observations
            target = envs = make_vec_env(fresh_env_spec(target), n_episodes, env_kwargs=env_kwargs,
                                         wrappers=wrappers, batched=False)
            act = planner.evaluation_planner(envs)
        elif isinstance(target, VectorEnv):  # the user's own vector env: fresh envs built the same way
            target = fresh_env_spec(target)
        metrics = evaluate_policy(act, target, n_episodes, seed=seed, env_kwargs=env_kwargs,
                                  device=self.algo.device, wrappers=wrappers,
                                  action_masks=self.algo.accepts_action_masks,
                                  spaces=(self.algo.observation_space, self.algo.action_space))
        if planner is not None:
            envs.close()
        return {key.removeprefix("eval/"): value for key, value in metrics.items()}

    def save(self, path: str | Path) -> Path:
        """Writes the agent as a checkpoint folder (atomically); :func:`load` reads it back."""
        meta = {
            "kind": "agent",
            "algo": self.algo.name,
            "env_id": self.env if isinstance(self.env, str) else None,
            "env_kwargs": plain_value(self.env_kwargs),  # numpy values as the numbers they hold
            "algo_config": config_to_dict(self.algo.config),
            "observation_space": space_to_json(self.algo.observation_space),
            "action_space": space_to_json(self.algo.action_space),
            "env_steps": self.algo.env_steps,
            "wrappers": list(self.wrapper_names),
        }
        custom = custom_algo_class_name(type(self.algo))
        if custom is not None:  # a name only: loading builds the stock algorithm (the same networks)
            meta["algo_class"] = custom
        return save_checkpoint(path, {"algo": self.algo.state_dict()}, meta)


RUN_CHECKPOINTS = ("best", "final", "checkpoint")
"""The checkpoints of a run folder an agent is loaded from, in order of preference."""


class _MetadataRead(Exception):
    """Stops :func:`read_agent` once the metadata is validated, before any tensor is read."""


def read_agent(path: str | Path, algo: str, *, tensors: bool = True
               ) -> tuple[Path, CheckpointContents, dict[str, Any] | None]:
    """``(folder, validated metadata, state)`` of the ``algo`` agent saved at ``path`` (or in the run folder
    ``path``), for starting a run from it (``TrainConfig.init_from``); its env id is not looked up. With
    ``tensors=False`` only the metadata is read (the state is None)."""
    folder = locate_checkpoint(path)
    found: list[CheckpointContents] = []

    def inspect(meta: dict[str, Any], layout: Any) -> None:
        contents = read_contents(meta, check_env=False)
        check_layout(contents, layout)
        found[:] = [contents]
        if not tensors:
            raise _MetadataRead

    try:
        state, _ = load_checkpoint(folder, expected_algo=get_algo_class(algo).name, inspect=inspect)
    except _MetadataRead:
        return folder, found[0], None
    return folder, found[0], state


def locate_checkpoint(path: str | Path, subfolders: tuple[str, ...] = RUN_CHECKPOINTS) -> Path:
    """``path`` itself when it is a checkpoint, else the first of ``subfolders`` a run folder ``path`` holds.

    ``path`` itself is resolved (it may be or go through a symlink, as the caller chose); the checkpoint folders
    inside a run folder are not (:func:`~rlcore.checkpoint.load_checkpoint` refuses symlinks). A checkpoint
    counts when any version of it is on disk (an interrupted save leaves ``NAME.old`` or
    ``NAME.tmp-*`` instead of ``NAME``); :func:`~rlcore.checkpoint.load_checkpoint` then finds the newest
    complete one.

    Raises:
        CheckpointError: ``path`` is a run folder without any of ``subfolders`` yet.
    """
    path = Path(os.path.realpath(user_path(path)))  # the caller's path may go through symlinks; nothing inside it
    if not path.is_dir() or (path / META_FILE).exists() or (path / STATE_FILE).exists():
        return path
    for sub in subfolders:
        if checkpoint_versions(path / sub):
            return path / sub
    if any(path.glob("events.out.tfevents.*")) or (path / "hparams.json").exists():
        raise CheckpointError(
            f"the run in {path} has no checkpoint yet (no {', '.join(f'{sub}/' for sub in subfolders)}): it "
            "stopped before saving one (runs save every checkpoint_freq env steps, after each new best "
            "evaluation and at the end), or it was deleted; there is nothing to load or resume from: start "
            "the run again")
    return path


def load(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    algo: str | None = None,
    env: EnvSpec | None = None,
    trust_env_module: bool = False,
    threads: int | str | None = "auto",
    wrappers: list[Callable[[gym.Env], gym.Env]] | None = None,
) -> Agent:
    """Loads an agent saved by :meth:`Agent.save`, or the agent inside a training checkpoint or run folder.

    Everything in the checkpoint is treated as data (see ``docs/security.md``): its metadata is validated
    before anything is built, the networks it describes must fit the saved tensors (dtypes and sizes) before
    any is allocated, and its env id is only accepted when gymnasium can build it without importing a module.

    Args:
        path: A checkpoint folder, or a run folder (its ``best/``, else ``final/``, else ``checkpoint/``
            is used); the newest complete version of it (see :func:`rlcore.checkpoint.load_checkpoint`).
        device: Where the networks go, by training's rule: ``"auto"`` (the default) is ``cuda`` when CUDA is
            available, else ``cpu`` (so an agent trained with the default device loads where it trained), or
            ``"cpu"``, ``"cuda[:i]"``, a ``torch.device``. Saving and loading on the same device gives
            bit-identical actions.
        algo: When given, the checkpoint must be of this algorithm.
        env: The env the agent acts in, instead of the checkpoint's env id (needed when the agent was trained
            on a class or factory, or on an id that only a module import registers).
        trust_env_module: Accept the checkpoint's env id even if ``gym.make`` would import a module for it
            (``"mod:Env-v0"``); only for checkpoints you trust. An id that is merely not registered in this
            process is kept with a warning (``predict`` works; evaluating needs the package that registers it).
        threads: CPU threads for ``predict`` and ``evaluate``, as :attr:`rlcore.TrainConfig.threads`:
            ``"auto"``, a number, or None to leave the process's settings alone.
        wrappers: The wrappers the agent trained with, for :meth:`Agent.evaluate` on its own env (checkpoints
            record their names, never their code; evaluating an agent that names some without them warns).

    Raises:
        CheckpointError: Missing, corrupted, truncated, of another algorithm, metadata that does not fit the
            saved tensors, or an env id that needs a module import (pass ``env=``).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    folder = locate_checkpoint(path)
    found: list[CheckpointContents] = []

    def inspect(meta: dict[str, Any], layout: Any) -> None:
        contents = read_contents(meta, check_env=env is None, trust_env_module=trust_env_module, unregistered="warn")
        check_layout(contents, layout)
        found[:] = [contents]

    expected = get_algo_class(algo).name if algo is not None else None  # names are case-insensitive
    state, _ = load_checkpoint(folder, expected_algo=expected, inspect=inspect)
    contents = found[0]
    try:
        built = build_algorithm(contents.algo, contents.observation_space, contents.action_space,
                                contents.algo_config, device=device)
        built.load_state_dict(state["algo"])
    except Exception as error:  # noqa: BLE001  (anything the saved state makes the algorithm raise)
        raise CheckpointError(f"{folder} does not hold a loadable {contents.algo} agent: {type(error).__name__}: "
                              f"{error}") from error
    apply_threads(threads, algo=built, device=built.device)
    return Agent(built, env=env if env is not None else contents.env_id, env_kwargs=contents.env_kwargs,
                 wrappers=wrappers, wrapper_names=contents.wrappers)
