"""A trained agent: predict, evaluate, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlcore.algos.base import Algorithm, get_algo_class
from rlcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rlcore.env import EnvSpec, make_vec_env
from rlcore.evaluation import evaluate_policy
from rlcore.settings import config_from_dict, config_to_dict
from rlcore.spaces import space_from_json, space_to_json
from rlcore.threads import apply_threads


def build_algorithm(
    name: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    config: Any,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    num_envs: int = 1,
) -> Algorithm[Any]:
    """Instantiates the registered algorithm ``name``; ``config`` may be its dataclass or a dict of fields."""
    algo_class = get_algo_class(name)
    if config is None or isinstance(config, dict):
        config = config_from_dict(algo_class.config_class, config or {})
    return algo_class(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)


class Agent:
    """A policy with the env it was trained on.

    Args:
        algo: The trained algorithm.
        env: The env spec it was trained on (an id is stored in saved agents; classes
            and factories are not, so pass ``env=`` to :meth:`evaluate` after loading).
    """

    def __init__(
        self,
        algo: Algorithm[Any],
        env: EnvSpec | None = None,
        env_kwargs: dict[str, Any] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.algo = algo
        self.env = env
        self.env_kwargs = dict(env_kwargs or {})
        self.run_dir = run_dir

    @property
    def name(self) -> str:
        return self.algo.name

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (``obs_shape``) or a batch (``[B, *obs_shape]``).

        Returns an action of the action space's shape, or a batch ``[B, ...]`` of them.
        """
        space = self.algo.observation_space
        array = np.asarray(obs, dtype=space.dtype)
        single = array.shape == space.shape
        if not single and array.shape[1:] != space.shape:
            raise ValueError(
                f"predict() got an observation of shape {array.shape}; expected {space.shape} or "
                f"[batch, {', '.join(map(str, space.shape))}]"
            )
        batch = torch.from_numpy(array[None] if single else array)
        action = self.algo.act(batch, deterministic=deterministic).cpu().numpy()
        return action[0] if single else action

    def evaluate(
        self, n_episodes: int = 10, *, env: EnvSpec | None = None, seed: int = 10_000
    ) -> dict[str, float]:
        """Mean, std of return and mean length over ``n_episodes`` deterministic episodes."""
        target = env if env is not None else self.env
        if target is None:
            raise ValueError("this agent does not know its env (it was a class or factory); pass env=...")
        if hasattr(self.algo, "evaluate"):  # algorithms with their own evaluation (two-player games)
            metrics = self.algo.evaluate(n_episodes, seed=seed, env=target)
            return {key.removeprefix("eval/"): value for key, value in metrics.items()}
        act = self.algo.actor(deterministic=True)
        if self.algo.data_kind == "planning":  # planners act on the envs' states, not on observations
            target = make_vec_env(target, n_episodes, env_kwargs=self.env_kwargs)
            act = lambda obs: self.algo.plan(target, deterministic=True)  # type: ignore  # noqa: E731
        metrics = evaluate_policy(act, target, n_episodes, seed=seed, env_kwargs=self.env_kwargs,
                                  device=self.algo.device)
        if self.algo.data_kind == "planning":
            target.close()  # type: ignore[union-attr]
        return {key.removeprefix("eval/"): value for key, value in metrics.items()}

    def save(self, path: str | Path) -> Path:
        """Writes the agent as a checkpoint folder (atomically); :func:`load` reads it back."""
        meta = {
            "kind": "agent",
            "algo": self.algo.name,
            "env_id": self.env if isinstance(self.env, str) else None,
            "env_kwargs": self.env_kwargs,
            "algo_config": config_to_dict(self.algo.config),
            "observation_space": space_to_json(self.algo.observation_space),
            "action_space": space_to_json(self.algo.action_space),
            "env_steps": self.algo.env_steps,
        }
        return save_checkpoint(path, {"algo": self.algo.state_dict()}, meta)


def load(
    path: str | Path, *, device: str | torch.device = "cpu", algo: str | None = None,
    threads: int | str | None = "auto",
) -> Agent:
    """Loads an agent saved by :meth:`Agent.save`, or the agent inside a training checkpoint or run folder.

    Args:
        path: A checkpoint folder, or a run folder (its ``best/``, else ``final/``, is used).
        algo: When given, the checkpoint must be of this algorithm.
        threads: CPU threads for ``predict`` and ``evaluate``, as :attr:`rlcore.TrainConfig.threads`:
            ``"auto"``, a number, or None to leave the process's settings alone.

    Raises:
        CheckpointError: Missing, corrupted, truncated, or of another algorithm.
    """
    path = Path(path)
    for sub in ("best", "final", "checkpoint"):
        if not (path / "meta.json").exists() and (path / sub / "meta.json").exists():
            path = path / sub
            break
    state, meta = load_checkpoint(path, expected_algo=algo)
    try:
        observation_space = space_from_json(meta["observation_space"])
        action_space = space_from_json(meta["action_space"])
        built = build_algorithm(meta["algo"], observation_space, action_space, meta["algo_config"], device=device)
        built.load_state_dict(state["algo"])
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"{path} does not hold a loadable {meta.get('algo')} agent: {error}") from error
    apply_threads(threads, algo=built, device=built.device)
    return Agent(built, env=meta.get("env_id"), env_kwargs=meta.get("env_kwargs"))
