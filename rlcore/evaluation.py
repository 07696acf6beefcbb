"""Deterministic evaluation of a policy over whole episodes."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv, VectorEnv
from torch import Tensor

from rlcore.env import EnvSpec, as_mask_array, fresh_env_spec, gives_action_masks, make_env, make_vec_env
from rlcore.observations import flat_observation, to_tensor
from rlcore.spaces import space_difference

logger = logging.getLogger(__name__)


def _check_spaces(envs: VectorEnv, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raises a ValueError unless the envs' spaces are the policy's."""
    difference = space_difference((envs.single_observation_space, envs.single_action_space),
                                  (observation_space, action_space))
    if difference is not None:
        which, space, expected = difference
        raise ValueError(f"the evaluation env's {which} space {space} differs from the agent's {expected}; "
                         "evaluate on the env it trained on (or one with the same spaces)")


def evaluate_policy(
    act: Callable[..., Tensor],
    env: EnvSpec | VectorEnv,
    n_episodes: int = 10,
    *,
    seed: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    max_episode_steps: int = 10_000,
    wrappers: list[Callable[[Any], Any]] | None = None,
    action_masks: bool = False,
    spaces: tuple[gym.Space, gym.Space] | None = None,
) -> dict[str, float]:
    """Runs ``n_episodes`` complete episodes, one per sub-env, all stepped together.

    Each evaluation with the same ``seed`` sees the same initial states, so evaluation
    never depends on (or disturbs) the training run's randomness.

    Args:
        act: Observations ``[E, *obs_shape]`` (a flat dict for Dict observations) -> actions ``[E, ...]`` (the greedy
            policy); called with ``action_mask=`` ``[E, n]`` too when ``action_masks`` and the env gives masks.
        env: An env spec (an instance is copied), or a vector env with exactly ``n_episodes`` sub-envs (reused).
        wrappers: Applied to each sub-env built here.
        action_masks: Pass the env's action masks (``info["action_mask"]``) to ``act``.
        spaces: The policy's observation and action spaces: an env with other spaces is refused (a ValueError naming
            both) before any step.
        max_episode_steps: Episodes still running after this many steps are cut there (with a
            warning), so a policy that loops in an env without a time limit cannot hang evaluation.

    Returns:
        ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length``.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    owns_envs = not isinstance(env, VectorEnv)
    envs = make_vec_env(fresh_env_spec(env), n_episodes, env_kwargs=env_kwargs, wrappers=wrappers) if owns_envs else env
    if envs.num_envs != n_episodes:
        raise ValueError(f"the evaluation vector env has {envs.num_envs} sub-envs; expected n_episodes={n_episodes}")
    try:
        if spaces is not None:
            _check_spaces(envs, *spaces)
        masks = action_masks and gives_action_masks(envs)
        returns, lengths = _run_episodes(act, envs, seed, torch.device(device), max_episode_steps, masks)
    finally:
        if owns_envs:
            envs.close()
    return {
        "eval/mean_reward": float(returns.mean()),
        "eval/std_reward": float(returns.std()),
        "eval/mean_ep_length": float(lengths.mean()),
    }


def _run_episodes(
    act: Callable[..., Tensor], envs: VectorEnv, seed: int, device: torch.device, max_episode_steps: int,
    masks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    count = envs.num_envs
    obs, info = envs.reset(seed=[seed + i for i in range(count)])
    returns = np.zeros(count)
    lengths = np.zeros(count, dtype=np.int64)
    running = np.ones(count, dtype=bool)
    for _ in range(max_episode_steps):
        if not running.any():
            break
        with torch.no_grad():
            observation = to_tensor(flat_observation(obs), device)
            if masks:
                mask = torch.from_numpy(as_mask_array(info["action_mask"], count))
                action = act(observation, action_mask=mask).cpu().numpy()
            else:
                action = act(observation).cpu().numpy()
        obs, reward, terminated, truncated, info = envs.step(action)
        returns += reward * running
        lengths += running
        running &= ~(terminated | truncated)
    if running.any():
        logger.warning(
            "evaluation cut %d of %d episodes at max_episode_steps=%d (the env has no time limit and the "
            "policy did not finish); their returns so far are counted", running.sum(), count, max_episode_steps
        )
    return returns, lengths


VIDEO_FORMATS = (".mp4", ".gif")
"""File types :func:`record_video` writes: mp4 (H.264 through imageio-ffmpeg) and gif (imageio alone)."""


def record_video(
    predict: Callable[[np.ndarray], Any] | Any,
    env: EnvSpec,
    path: str | Path,
    n_episodes: int = 1,
    *,
    seed: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
    fps: int | None = None,
    max_episode_steps: int = 10_000,
) -> dict[str, float]:
    """Plays ``n_episodes`` episodes one after another and writes their frames to one video file.

    Episode ``i`` is reset with ``seed + i``, as in :func:`evaluate_policy`, so a deterministic
    policy scores the same here as there.

    Args:
        predict: One observation -> one action, e.g. ``agent.predict`` (or the agent); a planner's (MCTS)
            searches from the recorded env's state.
        env: The env spec; it is built with ``render_mode="rgb_array"``.
        path: ``.mp4`` (needs ``imageio-ffmpeg``) or ``.gif``. GIFs keep every frame in memory
            until written; prefer mp4 for long or many episodes. The video is written to a temporary file
            beside ``path`` and moved there when complete: a failed recording leaves no partial file.
        fps: Frames per second; default: the env's ``metadata["render_fps"]``, else 30.

    Returns:
        ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length`` and ``video/frames``.
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_FORMATS:
        raise ValueError(f"video path {str(path)!r} must end in one of {VIDEO_FORMATS}")
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    single = _make_rendering_env(env, env_kwargs or {})
    try:
        predict = _acting_on(predict, single)
        rate = int(fps or single.metadata.get("render_fps") or 30)
        with _video_writer(path, rate) as write:
            returns, lengths, frames = _record_episodes(predict, single, write, n_episodes, seed, max_episode_steps)
    finally:
        single.close()
    logger.info("wrote %d frames of %d episodes to %s", frames, n_episodes, path)
    return {
        "eval/mean_reward": float(np.mean(returns)),
        "eval/std_reward": float(np.std(returns)),
        "eval/mean_ep_length": float(np.mean(lengths)),
        "video/frames": float(frames),
    }


def _acting_on(policy: Callable[[np.ndarray], Any] | Any, env: gym.Env) -> Callable[..., Any]:
    """One observation -> one action on ``env``: a callable as it is, an agent's ``predict``, or, for a planner
    agent, a search from ``env``'s state each step (the observation is not read)."""
    from rlcore.algos.base import PlanningAlgorithm

    agent = getattr(policy, "__self__", policy)  # agent.predict is the agent's
    algo = getattr(agent, "algo", None)
    if isinstance(algo, PlanningAlgorithm):
        plan = algo.evaluation_planner(SyncVectorEnv([lambda: env]))
        return lambda obs, action_masks=None: plan(torch.zeros(1))[0].item()
    return agent.predict if agent is policy and algo is not None else policy


OFFSCREEN_SDL = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
"""SDL (pygame, which draws gymnasium's classic-control frames) renders rgb_array frames off screen with these; its
default drivers look for a display and print "XDG_RUNTIME_DIR is invalid or not set" on a headless console."""


def _make_rendering_env(env: EnvSpec, env_kwargs: dict[str, Any]) -> Any:
    for name, value in OFFSCREEN_SDL.items():  # a user's own choice of driver stays
        os.environ.setdefault(name, value)
    with warnings.catch_warnings(record=True) as caught:  # gymnasium's render-mode warning, unless it is an error
        warnings.simplefilter("always")
        try:
            rendering = make_env(env, render_mode="rgb_array", **env_kwargs)
        except (TypeError, ValueError) as error:
            if "render_mode" not in str(error):
                raise
            raise TypeError(f"{env!r} does not accept render_mode='rgb_array' ({error}); recording a video needs an "
                            "env that takes render_mode and renders rgb_array frames") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return rendering


def _record_episodes(
    predict: Callable[[np.ndarray], Any],
    env: Any,
    write: Callable[[np.ndarray], None],
    n_episodes: int,
    seed: int,
    max_episode_steps: int,
) -> tuple[list[float], list[int], int]:
    returns, lengths, frames = [], [], 0
    for episode in range(n_episodes):
        obs, info = env.reset(seed=seed + episode)
        write(_frame(env))
        frames += 1
        total, steps, done = 0.0, 0, False
        while not done and steps < max_episode_steps:
            mask = _action_mask(env, info)
            action = predict(obs) if mask is None else predict(obs, action_masks=mask)
            obs, reward, terminated, truncated, info = env.step(action)
            total, steps, done = total + float(reward), steps + 1, bool(terminated or truncated)
            write(_frame(env))
            frames += 1
        if not done:
            logger.warning("recording cut episode %d at max_episode_steps=%d", episode, max_episode_steps)
        returns.append(total)
        lengths.append(steps)
    return returns, lengths, frames


def _action_mask(env: Any, info: dict[str, Any]) -> np.ndarray | None:
    """The legal actions now (``info["action_mask"]`` or the env's ``action_masks()``), or None without masks."""
    if "action_mask" in info:
        return np.asarray(info["action_mask"], dtype=bool)
    if env.has_wrapper_attr("action_masks"):
        return np.asarray(env.get_wrapper_attr("action_masks")(), dtype=bool)
    return None


def _frame(env: Any) -> np.ndarray:
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise TypeError(
            f"{env.spec.id if env.spec else type(env.unwrapped).__name__} rendered {type(frame).__name__} with "
            "render_mode='rgb_array', not an [H, W, 3] image; recording needs an env that renders rgb_array frames"
        )
    return frame


@contextmanager
def _video_writer(path: Path, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields ``write(frame)`` for an mp4 (streamed to ffmpeg) or a gif (written on close)."""
    try:
        import imageio  # noqa: F401
    except ImportError as error:
        raise ImportError("recording videos needs imageio: pip install 'rlcore[compare]'") from error
    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as error:
            raise ImportError("mp4 videos need imageio-ffmpeg (or write a .gif): pip install 'rlcore[compare]'") \
                from error
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        with _file_writer(partial, fps) as write:
            yield write
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _file_writer(path: Path, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """``write(frame)`` into ``path``: a gif through pillow, else an mp4 through ffmpeg."""
    if path.suffix.lower() == ".gif":
        import imageio.v3 as iio

        with iio.imopen(path, "w", plugin="pillow") as file:
            # bits=8: each frame is quantized to a 256-colour palette as it comes (4x less memory than RGB)
            yield lambda frame: file.write(frame, duration=1000 / fps, loop=0, bits=8)
        return
    import imageio.v2 as iio2

    # macro_block_size=1 keeps the frame size (ffmpeg would pad to multiples of 16); H.264 needs even sides
    writer = iio2.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1,
                             pixelformat="yuv420p")
    try:
        yield lambda frame: writer.append_data(_even_sized(frame))
    finally:
        writer.close()


def _even_sized(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[0] - frame.shape[0] % 2, frame.shape[1] - frame.shape[1] % 2
    return frame[:height, :width, :3]
