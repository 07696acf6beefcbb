"""Deterministic evaluation of a policy over whole episodes."""

from __future__ import annotations

import inspect
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

from rlcore.env import (
    EnvCopies,
    EnvSpec,
    as_mask_array,
    env_label,
    fresh_env_spec,
    gives_action_masks,
    is_env_instance,
    make_env,
    make_vec_env,
)
from rlcore.fields import user_path
from rlcore.observations import flat_observation, stack, to_tensor
from rlcore.spaces import space_difference

logger = logging.getLogger(__name__)


def check_policy_spaces(envs: VectorEnv | gym.Env, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raises a ValueError unless the envs' (or the one env's) spaces are the policy's."""
    if isinstance(envs, VectorEnv):
        got = (envs.single_observation_space, envs.single_action_space)
    else:
        got = (envs.observation_space, envs.action_space)
    difference = space_difference(got, (observation_space, action_space))
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
        max_episode_steps: Episodes still running after this many steps (or after the env's own time limit, where
            its spec has a longer one) are cut there with a warning, so a policy that loops in an env without a
            time limit cannot hang evaluation.

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
            check_policy_spaces(envs, *spaces)
        masks = action_masks and gives_action_masks(envs)
        limit = max(max_episode_steps, _spec_time_limit(envs) or 0)
        returns, lengths = _run_episodes(act, envs, seed, torch.device(device), limit, masks)
    finally:
        if owns_envs:
            envs.close()
    return {
        "eval/mean_reward": float(returns.mean()),
        "eval/std_reward": float(returns.std()),
        "eval/mean_ep_length": float(lengths.mean()),
    }


def _spec_time_limit(envs: VectorEnv) -> int | None:
    """The time limit (``max_episode_steps``) of the vector env's or its first sub-env's spec, if any."""
    for source in (envs, *getattr(envs.unwrapped, "envs", ())[:1]):
        spec = getattr(source, "spec", None)
        if spec is not None and spec.max_episode_steps is not None:
            return int(spec.max_episode_steps)
    return None


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
        action = _act_batch(act, to_tensor(flat_observation(obs), device),
                            as_mask_array(info["action_mask"], count) if masks else None)
        obs, reward, terminated, truncated, info = envs.step(action)
        returns += reward * running
        lengths += running
        running &= ~(terminated | truncated)
    if running.any():
        logger.warning(
            "evaluation cut %d of %d episodes at %d steps, the most it runs (the policy did not finish them); "
            "their returns so far are counted", running.sum(), count, max_episode_steps
        )
    return returns, lengths


def _act_batch(act: Callable[..., Tensor], observation: Any, mask: np.ndarray | None) -> np.ndarray:
    """``act``'s actions for a batch of observations ``[N, ...]``, among the legal actions of ``mask`` (bool
    ``[N, n]``) when given."""
    with torch.no_grad():
        if mask is None:
            return act(observation).cpu().numpy()
        return act(observation, action_mask=torch.from_numpy(mask)).cpu().numpy()


VIDEO_FORMATS = (".mp4", ".gif")
"""File types :func:`record_video` writes: mp4 (H.264 through imageio-ffmpeg) and gif (imageio alone)."""


def record_video(
    predict: Callable[[np.ndarray], Any] | Any,
    env: EnvSpec | gym.Env | VectorEnv,
    path: str | Path,
    n_episodes: int = 1,
    *,
    seed: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
    fps: int | None = None,
    max_episode_steps: int = 10_000,
    wrappers: list[Callable[[Any], Any]] | None = None,
) -> dict[str, float]:
    """Plays ``n_episodes`` episodes one after another and writes their frames to one video file.

    Episode ``i`` is reset with ``seed + i``, as in :func:`evaluate_policy`, so a deterministic
    policy scores the same here as there.

    Args:
        predict: An agent (or its ``predict``): it acts as its evaluation does, through a fresh ``algo.actor()``
            per episode on a batch of one (so memory policies start each episode with a fresh state), and a
            planner's (MCTS) searches from the recorded env's state. Or any callable: one observation -> one action
            (called with ``action_masks=`` too where the env gives masks).
        env: An id, class or factory, built with ``render_mode="rgb_array"`` (a factory that takes no
            ``render_mode`` is built as it is); or an env instance or a vector env, of which a copy is built as
            evaluation builds it (:func:`~rlcore.env.fresh_env_spec`): it must have been made with
            ``render_mode="rgb_array"``.
        path: ``.mp4`` (needs ``imageio-ffmpeg``) or ``.gif``. GIFs keep every frame in memory
            until written; prefer mp4 for long or many episodes. The video is written to a temporary file
            beside ``path`` and moved there when complete: a failed recording leaves no partial file.
        fps: Frames per second; default: the env's ``metadata["render_fps"]``, else 30.
        wrappers: Applied to the env built here, innermost first (the run's ``wrappers=``, as evaluation applies
            them); the frames are the wrapped env's ``render()``.

    Returns:
        ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length`` and ``video/frames``.

    Raises:
        TypeError: An env that gives no rgb_array frames (naming it).
        ValueError: A bad path or ``n_episodes``, or an env whose spaces are not the agent's.
    """
    path = user_path(path)
    check_video_path(path)
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    single = _make_rendering_env(env, env_kwargs or {}, wrappers or [])
    try:
        episode_policy = _acting_on(predict, single)
        rate = int(fps or single.metadata.get("render_fps") or 30)
        with _video_writer(path, rate) as write:
            returns, lengths, frames = _record_episodes(episode_policy, single, write, n_episodes, seed,
                                                        max_episode_steps)
    finally:
        single.close()
    logger.info("wrote %d frames of %d episodes to %s", frames, n_episodes, path)
    return {
        "eval/mean_reward": float(np.mean(returns)),
        "eval/std_reward": float(np.std(returns)),
        "eval/mean_ep_length": float(np.mean(lengths)),
        "video/frames": float(frames),
    }


def check_video_path(path: str | Path) -> None:
    """Raises what writing a video to ``path`` would fail on before any frame: a ValueError for a file type other than
    :data:`VIDEO_FORMATS`, an ImportError naming the package to install for it."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise ValueError(f"video path {str(path)!r} must end in one of {VIDEO_FORMATS}")
    try:
        import imageio  # noqa: F401
    except ImportError as error:
        raise ImportError("recording videos needs imageio: pip install -e '.[compare]'") from error
    if suffix != ".gif":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as error:
            raise ImportError("mp4 videos need imageio-ffmpeg (or write a .gif): pip install -e '.[compare]'") \
                from error


_Step = Callable[[Any, "np.ndarray | None"], Any]
"""One step of a recorded episode: (observation, action mask or None) -> action."""


def _acting_on(policy: Callable[[np.ndarray], Any] | Any, env: gym.Env) -> Callable[[], _Step]:
    """What starts each recorded episode's acting on ``env``: for an agent (or its ``predict``), a fresh
    ``algo.actor()`` on a batch of one, as :func:`evaluate_policy` acts (a memory policy's state starts fresh), or,
    for a planner agent, a search from ``env``'s state each step (the observation is not read); another callable is
    called as it is."""
    from rlcore.agent import Agent
    from rlcore.algos.base import PlanningAlgorithm

    agent = policy if isinstance(policy, Agent) else getattr(policy, "__self__", None)
    if not isinstance(agent, Agent) or (agent is not policy and getattr(policy, "__func__", None) is not Agent.predict):
        return lambda: lambda obs, mask: policy(obs) if mask is None else policy(obs, action_masks=mask)
    algo = agent.algo
    if isinstance(algo, PlanningAlgorithm):
        plan = algo.evaluation_planner(SyncVectorEnv([lambda: env]))
        return lambda: lambda obs, mask: plan(torch.zeros(1))[0].item()
    check_policy_spaces(env, algo.observation_space, algo.action_space)

    def episode() -> _Step:
        act = algo.actor(deterministic=True)

        def step(obs: Any, mask: np.ndarray | None) -> Any:
            legal = mask[None] if mask is not None and algo.accepts_action_masks else None
            return _act_batch(act, to_tensor(stack([obs]), algo.device), legal)[0]

        return step

    return episode


OFFSCREEN_SDL = {"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "SDL_NO_SIGNAL_HANDLERS": "1"}
"""SDL (pygame, which draws gymnasium's classic-control frames) renders rgb_array frames off screen with these; its
default drivers look for a display and print "XDG_RUNTIME_DIR is invalid or not set" on a headless console, and its
own SIGINT/SIGTERM handlers would swallow a ``kill`` of a recording process."""


def _make_rendering_env(env: Any, env_kwargs: dict[str, Any], wrappers: list[Callable[[Any], Any]]) -> Any:
    """``env`` built to render rgb_array frames, with ``wrappers``: an id, class or factory taking ``render_mode``
    is asked for them; an instance's copy, a vector env's own factory (:func:`fresh_env_spec`) or another factory
    is built as it is and must render them already."""
    for name, value in OFFSCREEN_SDL.items():  # a user's own choice of driver stays
        os.environ.setdefault(name, value)
    source = fresh_env_spec(env)  # copies of an instance; a vector env's own factory
    asks = isinstance(source, str | type) or (callable(source) and _takes_render_mode(source))
    with warnings.catch_warnings(record=True) as caught:  # gymnasium's render-mode warning, unless it is an error
        warnings.simplefilter("always")
        try:
            rendering = make_env(source, render_mode="rgb_array", **env_kwargs) if asks else \
                make_env(source, **env_kwargs)
        except (TypeError, ValueError) as error:
            if "render_mode" not in str(error) and not (asks and "takes no arguments" in str(error)):
                raise
            raise TypeError(f"{env!r} does not accept render_mode='rgb_array' ({error}); recording a video needs an "
                            "env that takes render_mode and renders rgb_array frames") from error
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not asks and rendering.render_mode != "rgb_array":
        mode = rendering.render_mode
        rendering.close()
        made = "the env instance" if is_env_instance(env) or isinstance(source, EnvCopies) else \
            f"the vector env {env_label(env)}" if isinstance(env, VectorEnv) else f"the factory {env_label(env)}"
        raise TypeError(f"{made} builds envs with render_mode={mode!r}; recording a video needs rgb_array frames: "
                        "make it with render_mode='rgb_array' (or pass an id, a class or a factory that takes "
                        "render_mode)")
    try:
        for wrapper in wrappers:
            rendering = wrapper(rendering)
    except BaseException:
        rendering.close()
        raise
    return rendering


def _takes_render_mode(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes a ``render_mode`` keyword (or any keyword); True where its signature is unknown."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(parameter.name == "render_mode" or parameter.kind is inspect.Parameter.VAR_KEYWORD
               for parameter in parameters)


def _record_episodes(
    episode_policy: Callable[[], _Step],
    env: Any,
    write: Callable[[np.ndarray], None],
    n_episodes: int,
    seed: int,
    max_episode_steps: int,
) -> tuple[list[float], list[int], int]:
    returns, lengths, frames = [], [], 0
    for episode in range(n_episodes):
        obs, info = env.reset(seed=seed + episode)
        act = episode_policy()
        write(_frame(env))
        frames += 1
        total, steps, done = 0.0, 0, False
        while not done and steps < max_episode_steps:
            action = act(obs, _action_mask(env, info))
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
    try:
        frame = env.render()
    except NotImplementedError as error:
        raise NotImplementedError(
            f"{env.spec.id if env.spec else type(env.unwrapped).__name__} has no render() "
            f"({error or 'gymnasium.Env.render'}); recording a video needs an env whose render() returns rgb_array "
            "frames [H, W, 3]"
        ) from error
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise TypeError(
            f"{env.spec.id if env.spec else type(env.unwrapped).__name__} rendered {type(frame).__name__} with "
            "render_mode='rgb_array', not an [H, W, 3] image; recording needs an env that renders rgb_array frames"
        )
    return frame


@contextmanager
def _video_writer(path: Path, fps: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yields ``write(frame)`` for an mp4 (streamed to ffmpeg) or a gif (written on close)."""
    check_video_path(path)
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
