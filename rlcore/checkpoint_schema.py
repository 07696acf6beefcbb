"""What an agent or training checkpoint's ``meta.json`` may hold, checked before anything is built from it.

:func:`read_contents` is the one schema of rlcore's agent and training checkpoints: known keys only, each of
its type, sizes bounded, the algorithm and its config fields by rlcore's own lists and type hints, spaces
within :data:`MAX_SPACE_ELEMENTS`, and an env id that is registered without importing anything the
checkpoint names (:func:`check_env_id`). :func:`check_layout` then builds the algorithm that the metadata
describes on PyTorch's ``meta`` device (no memory) and compares it with the saved tensors' dtypes and
shapes, so a checkpoint whose metadata would build networks larger than its state file (or of other
dtypes) is refused before a single parameter is allocated. Every violation is a
:class:`~rlcore.checkpoint.CheckpointError` that names the field. See ``docs/security.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import types
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

import gymnasium as gym
import numpy as np
import torch

from rlcore.checkpoint import FORMAT_KEYS, CheckpointError
from rlcore.settings import config_from_dict
from rlcore.spaces import PATH_SEPARATOR, space_from_json

logger = logging.getLogger(__name__)

MAX_SPACE_ELEMENTS: int = 2**24
"""Most elements of an observation or action space in a checkpoint (a Box's size, a Discrete's ``n``, a
MultiDiscrete's or MultiBinary's count); an Atari frame stack has 28,224."""
MAX_SPACE_LEAVES: int = 256
"""Most sub-spaces (over all levels) of a Dict or Tuple observation space in a checkpoint."""
MAX_SPACE_DEPTH: int = 8
"""Deepest nesting of Dict and Tuple spaces in a checkpoint."""
MAX_SPACE_KEY_CHARS: int = 128
"""Longest key of a Dict space in a checkpoint."""
MAX_UNBACKED_ELEMENTS: int = 2**20
"""Most tensor elements the algorithm built from a checkpoint's metadata may hold beyond what its state file
holds at the same paths (fresh buffers an older checkpoint lacks); more is refused before allocation."""
MAX_ENV_ID_CHARS: int = 256
"""Longest env id accepted from a checkpoint."""

AGENT_KEYS = frozenset({"kind", "algo", "env_id", "env_kwargs", "algo_config", "observation_space", "action_space",
                        "env_steps", "wrappers", "algo_class"})
"""The keys of an agent checkpoint's metadata (``Agent.save``), besides the format's own."""
TRAINING_KEYS = AGENT_KEYS | {"train_config", "run_dir"}
"""The keys of a training checkpoint's metadata; ``run_dir`` (written by earlier versions) is ignored."""
BOX_DTYPES = ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16",
              "float32", "float64")
"""dtypes of a Box space in a checkpoint."""


@dataclass(frozen=True)
class CheckpointContents:
    """The validated metadata of an agent or training checkpoint."""

    kind: str
    """``"agent"`` or ``"training"``."""
    algo: str
    algo_config: Any
    """The algorithm's config dataclass, built and validated."""
    observation_space: gym.Space
    action_space: gym.Space
    env_id: str | None
    """A registered id (or any id when the caller trusts env modules or names the env itself)."""
    env_kwargs: dict[str, Any]
    env_steps: int
    train_config: dict[str, Any] | None
    """Training checkpoints: the saved :class:`~rlcore.trainer.TrainConfig` fields, each of its type."""
    wrappers: tuple[str, ...] = ()
    """The names of the wrappers the run's envs had (code is never saved)."""
    algo_class: str | None = None
    """The qualified name of the user's subclass of ``algo`` the run trained (its own loss, say); None: the stock
    algorithm. A name only: code is never saved."""


def read_contents(
    meta: dict[str, Any],
    *,
    kinds: tuple[str, ...] = ("agent", "training"),
    check_env: bool = True,
    trust_env_module: bool = False,
    unregistered: str = "refuse",
) -> CheckpointContents:
    """Validates the metadata of an rlcore agent or training checkpoint (the dict ``load_checkpoint`` returns).

    Args:
        meta: The metadata.
        kinds: The kinds of checkpoint the caller accepts.
        check_env: Check ``env_id`` against gymnasium's registry (False when the caller names the env).
        trust_env_module: Accept an env id that makes gymnasium import a module (``"mod:Env-v0"``).
        unregistered: ``"refuse"`` or ``"warn"`` about an env id not registered in this process (it imports
            nothing: ``gym.make`` would only fail), see :func:`check_env_id`.

    Raises:
        CheckpointError: Naming the first field that is unknown, missing, mistyped or out of bounds.
    """
    unknown = sorted(set(meta) - set(FORMAT_KEYS) - TRAINING_KEYS)
    if unknown:
        raise CheckpointError(f"meta.json has unknown key(s) {[key[:40] for key in unknown[:5]]}: it was edited or "
                              "written by a newer rlcore")
    kind = _required(meta, "kind", str)
    if kind not in kinds:
        raise CheckpointError(f"meta.json's kind is {kind[:40]!r}, expected {' or '.join(map(repr, kinds))}")
    if kind == "agent" and "train_config" in meta:
        raise CheckpointError("meta.json's train_config belongs to training checkpoints, not to an agent")
    algo_class = _algo_class(_required(meta, "algo", str))
    env_id = meta.get("env_id")
    if env_id is not None and not isinstance(env_id, str):
        raise CheckpointError(f"meta.json's env_id must be a string or null, got {_describe(env_id)}")
    if env_id is not None and check_env:
        check_env_id(env_id, trust_env_module=trust_env_module, unregistered=unregistered)
    env_kwargs = meta.get("env_kwargs") or {}
    if not (isinstance(env_kwargs, dict) and all(isinstance(key, str) for key in env_kwargs)):
        raise CheckpointError(f"meta.json's env_kwargs must be an object of keyword arguments, got "
                              f"{_describe(env_kwargs)}")
    env_steps = meta.get("env_steps", 0)
    if not (isinstance(env_steps, int) and not isinstance(env_steps, bool) and 0 <= env_steps < 2**62):
        raise CheckpointError(f"meta.json's env_steps must be a non-negative int, got {_describe(env_steps)}")
    train_config = None
    if kind == "training":
        from rlcore.train_config import TrainConfig

        train_config = _required(meta, "train_config", dict)
        check_fields(TrainConfig, train_config, "train_config")
    wrappers = meta.get("wrappers") or []
    if not (isinstance(wrappers, list) and len(wrappers) <= 64
            and all(isinstance(name, str) and len(name) <= 200 for name in wrappers)):
        raise CheckpointError(f"meta.json's wrappers must be a list of at most 64 names, got {_describe(wrappers)}")
    custom_class = meta.get("algo_class")
    if custom_class is not None and not (isinstance(custom_class, str) and 0 < len(custom_class) <= 200):
        raise CheckpointError(f"meta.json's algo_class must be a class name, got {_describe(custom_class)}")
    if "run_dir" in meta and not isinstance(meta["run_dir"], str | None):
        raise CheckpointError(f"meta.json's run_dir must be a string, got {_describe(meta['run_dir'])}")
    return CheckpointContents(
        kind=kind,
        algo=algo_class.name,
        algo_config=build_config(algo_class.config_class, _required(meta, "algo_config", dict), "algo_config"),
        observation_space=space_from_meta(_required(meta, "observation_space", dict), "observation_space"),
        action_space=space_from_meta(_required(meta, "action_space", dict), "action_space"),
        env_id=env_id,
        env_kwargs=dict(env_kwargs),
        env_steps=env_steps,
        train_config=train_config,
        wrappers=tuple(wrappers),
        algo_class=custom_class,
    )


def _required(meta: dict[str, Any], key: str, kind: type) -> Any:
    if key not in meta:
        raise CheckpointError(f"meta.json lacks {key}; the checkpoint is damaged or not an rlcore agent")
    value = meta[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CheckpointError(f"meta.json's {key} must be a {_KIND_NAMES.get(kind, kind.__name__)}, got "
                              f"{_describe(value)}")
    return value


_KIND_NAMES = {str: "string", dict: "JSON object", list: "list", int: "int"}


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _algo_class(name: str) -> Any:
    from rlcore.algos.base import get_algo_class

    try:
        return get_algo_class(name)
    except KeyError as err:
        raise CheckpointError(f"meta.json's algo: {err.args[0] if err.args else err}") from None


# --------------------------------------------------------------------------------------------------
# env ids
# --------------------------------------------------------------------------------------------------


def check_env_id(env_id: str, *, trust_env_module: bool = False, unregistered: str = "refuse") -> None:
    """Refuses an env id from a checkpoint that ``gym.make`` would build by importing a module.

    gymnasium imports the module named before a ``:`` (``"mod:Env-v0"`` runs ``mod``); rlcore never does that
    for a checkpoint unless ``trust_env_module``. Other ids import nothing: they must be registered already
    (gymnasium's own, rlcore's ``rlcore/...``, or those of packages the caller imported). An unregistered one
    is refused, or with ``unregistered="warn"`` logged (an agent can still ``predict``; evaluating it needs the
    package that registers the id, or ``env=``).

    Raises:
        CheckpointError: The id is too long, names a module, or (``unregistered="refuse"``) is not registered.
    """
    if len(env_id) > MAX_ENV_ID_CHARS:
        raise CheckpointError(f"meta.json's env_id is {len(env_id)} characters long, more than {MAX_ENV_ID_CHARS}")
    if trust_env_module:
        return
    fix = ("Pass the env yourself (rlcore.load(path, env=...), Trainer.resume(path, env=...), --env ID) or, if you "
           "trust this checkpoint and the module, trust_env_module=True (--trust-env-module)")
    if ":" in env_id:
        module = env_id.split(":", 1)[0]
        raise CheckpointError(f"meta.json's env_id {env_id[:80]!r} asks gymnasium to import the module "
                              f"{module[:60]!r}; rlcore never imports a module a checkpoint names. {fix}")
    if env_id.startswith("openspiel/"):  # a game string for pyspiel.load_game: data, no module is imported
        return
    if env_id in gym.registry:  # rlcore's own ids are registered when rlcore is imported
        return
    message = (f"meta.json's env_id {env_id[:80]!r} is not a registered gymnasium id in this process, and rlcore "
               f"does not import a package to register it. Import the package that registers it first, or: {fix}")
    if unregistered != "warn":
        raise CheckpointError(message)
    logger.warning("%s (the agent loads; evaluating it needs that env)", message)


# --------------------------------------------------------------------------------------------------
# config fields
# --------------------------------------------------------------------------------------------------


def check_fields(config_class: type, values: dict[str, Any], field: str) -> None:
    """Every key of ``values`` is a field of the dataclass ``config_class`` and of its annotated type.

    Raises:
        CheckpointError: Naming ``field.key`` and the expected type.
    """
    hints = typing.get_type_hints(config_class)
    names = {item.name for item in dataclasses.fields(config_class)}
    for key, value in values.items():
        if key not in names:
            raise CheckpointError(f"meta.json's {field} has an unknown field {key[:60]!r}; {config_class.__name__} "
                                  f"has {sorted(names)}")
        if not matches_hint(value, hints[key]):
            raise CheckpointError(f"meta.json's {field}.{key} must be {_hint_text(hints[key])}, got {_describe(value)}")


def build_config(config_class: type, values: dict[str, Any], field: str) -> Any:
    """``config_class(**values)`` after :func:`check_fields`; its own validation errors become CheckpointError.

    A field missing from ``values`` takes the class's ``ABSENT_IN_CHECKPOINT`` value where it names one (what a
    checkpoint written before the field existed meant, where the default has changed since), else its default.
    """
    check_fields(config_class, values, field)
    values = {**getattr(config_class, "ABSENT_IN_CHECKPOINT", {}), **values}
    try:
        return config_from_dict(config_class, values)
    except (TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"meta.json's {field} is invalid: {err}") from err


def matches_hint(value: Any, hint: Any) -> bool:
    """Whether the JSON value ``value`` fits the type hint (lists stand for tuples; ints for floats).

    Known: ``Any``, ``None``, ``bool``, ``int``, ``float``, ``str``, unions, ``Literal``, ``tuple[...]``,
    ``list[...]``, ``dict[str, ...]``; any other hint is left to the config's own validation.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(matches_hint(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint in (bool, int, float, str):
        return _scalar_fits(value, hint)
    if origin in (tuple, list):
        if not isinstance(value, list):
            return False
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(matches_hint(item, arg) for item, arg in zip(value, args))
        return all(matches_hint(item, args[0] if args else Any) for item in value)
    if origin is dict:
        value_hint = args[1] if len(args) == 2 else Any
        return isinstance(value, dict) and all(isinstance(key, str) and matches_hint(item, value_hint)
                                               for key, item in value.items())
    return True


def _scalar_fits(value: Any, hint: type) -> bool:
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, hint)


def _hint_text(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else f"a {hint.__name__}"


# --------------------------------------------------------------------------------------------------
# spaces
# --------------------------------------------------------------------------------------------------


def space_from_meta(description: dict[str, Any], field: str) -> gym.Space:
    """The space a checkpoint describes (see :func:`rlcore.spaces.space_to_json`), within MAX_SPACE_ELEMENTS (over all
    the leaves of a Dict or Tuple, which may nest MAX_SPACE_DEPTH deep and hold MAX_SPACE_LEAVES sub-spaces).

    Raises:
        CheckpointError: An unknown type or key, a wrong type, a size out of bounds, or inconsistent bounds.
    """
    budget = [MAX_SPACE_ELEMENTS, MAX_SPACE_LEAVES]
    _check_space(description, field, 0, budget)
    try:
        return space_from_json(description)
    except (TypeError, ValueError, OverflowError) as err:  # gymnasium's own checks
        raise CheckpointError(f"meta.json's {field} is not a valid {description.get('type')}: {err}") from err


_SPACE_KEYS = {"Discrete": {"n", "start"}, "Box": {"low", "high", "shape", "dtype"}, "MultiDiscrete": {"nvec", "start"},
               "MultiBinary": {"n"}, "Dict": {"spaces"}, "Tuple": {"spaces"}}


def _check_space(description: Any, field: str, depth: int, budget: list[int]) -> None:
    """Validates one space description; ``budget`` holds the elements and sub-spaces still allowed (shared by the
    leaves of a composite space)."""
    if not isinstance(description, dict):
        raise CheckpointError(f"meta.json's {field} must be an object describing a space, got {_describe(description)}")
    kind = description.get("type")
    if not isinstance(kind, str) or kind not in _SPACE_KEYS:
        raise CheckpointError(f"meta.json's {field}.type must be one of {sorted(_SPACE_KEYS)}, got {_describe(kind)}")
    unknown = sorted(set(description) - _SPACE_KEYS[kind] - {"type"})
    if unknown:
        raise CheckpointError(f"meta.json's {field} has unknown key(s) {[key[:40] for key in unknown[:5]]} for a "
                              f"{kind}")
    if kind in ("Dict", "Tuple"):
        _check_composite(description, kind, field, depth, budget)
        return
    if kind == "Discrete":
        elements = _count(description, "n", field)
        _int(description.get("start", 0), f"{field}.start")
    elif kind == "Box":
        elements = _check_box(description, field)
    elif kind == "MultiDiscrete":
        nvec = _int_array(description.get("nvec"), f"{field}.nvec", low=1)
        elements = int(nvec.size)
        if "start" in description:
            _check_starts(description["start"], nvec.shape, f"{field}.start")
    else:
        n = description.get("n")
        elements = int(np.prod(_int_array([n] if isinstance(n, int) and not isinstance(n, bool) else n, f"{field}.n",
                                          low=1, counts=False)))
    budget[0] -= elements
    if budget[0] < 0:
        raise CheckpointError(f"meta.json's {field} takes the space beyond {MAX_SPACE_ELEMENTS} elements in all "
                              "(MAX_SPACE_ELEMENTS)")


def _check_composite(description: dict[str, Any], kind: str, field: str, depth: int, budget: list[int]) -> None:
    """A Dict's ``[[key, space], ...]`` or a Tuple's ``[space, ...]``: bounded depth, count and key length."""
    if depth >= MAX_SPACE_DEPTH:
        raise CheckpointError(f"meta.json's {field} nests Dict/Tuple spaces more than {MAX_SPACE_DEPTH} deep "
                              "(MAX_SPACE_DEPTH)")
    items = description.get("spaces")
    if not isinstance(items, list) or not items:
        raise CheckpointError(f"meta.json's {field}.spaces must be a non-empty list, got {_describe(items)}")
    budget[1] -= len(items)
    if budget[1] < 0:
        raise CheckpointError(f"meta.json's {field} holds more than {MAX_SPACE_LEAVES} sub-spaces (MAX_SPACE_LEAVES)")
    if kind == "Tuple":
        for index, item in enumerate(items):
            _check_space(item, f"{field}.spaces[{index}]", depth + 1, budget)
        return
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and 0 < len(item[0]) <= MAX_SPACE_KEY_CHARS and PATH_SEPARATOR not in item[0] and item[0] not in seen):
            raise CheckpointError(f"meta.json's {field}.spaces[{index}] must be a [key, space] pair with a new, "
                                  f"non-empty key of at most {MAX_SPACE_KEY_CHARS} characters without "
                                  f"{PATH_SEPARATOR!r}, got {_describe(item)}")
        seen.add(item[0])
        _check_space(item[1], f"{field}.spaces[{index}]", depth + 1, budget)


def _check_box(description: dict[str, Any], field: str) -> int:
    """Validates a Box description; returns its element count."""
    dtype = description.get("dtype")
    if dtype not in BOX_DTYPES:
        raise CheckpointError(f"meta.json's {field}.dtype must be one of {list(BOX_DTYPES)}, got {_describe(dtype)}")
    shape = _int_array(description.get("shape"), f"{field}.shape", low=0, counts=False).tolist()
    size = math.prod(shape)
    for name in ("low", "high"):
        values = description.get(name)
        if not (isinstance(values, list) and len(values) == size):
            raise CheckpointError(f"meta.json's {field}.{name} must list the {size} bounds of shape {shape}, got "
                                  f"{_describe(values)}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) or v in ("inf", "-inf", "nan")
                   for v in values):
            raise CheckpointError(f"meta.json's {field}.{name} must hold numbers or 'inf'/'-inf'")
    return size


def _count(description: dict[str, Any], key: str, field: str) -> int:
    value = _int(description.get(key), f"{field}.{key}")
    if not 1 <= value <= MAX_SPACE_ELEMENTS:
        raise CheckpointError(f"meta.json's {field}.{key} must be in [1, {MAX_SPACE_ELEMENTS}] (MAX_SPACE_ELEMENTS), "
                              f"got {value}")
    return value


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**62:
        raise CheckpointError(f"meta.json's {field} must be an int, got {_describe(value)}")
    return value


def _check_starts(value: Any, shape: tuple[int, ...], field: str) -> None:
    """A MultiDiscrete's ``start``: ints in the shape of its ``nvec``."""
    try:
        array = np.array(value, dtype=object)
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"meta.json's {field} must be a (nested) list of ints: {err}") from err
    if array.shape != shape:
        raise CheckpointError(f"meta.json's {field} must have nvec's shape {shape}, got {_describe(value)}")
    for number in array.flat:
        _int(number, field)


def _int_array(value: Any, field: str, *, low: int, counts: bool = True) -> np.ndarray:
    """A (nested) list of ints >= ``low`` with at most MAX_SPACE_ELEMENTS entries (each at most that too when
    ``counts``: a category count)."""
    try:
        array = np.array(value, dtype=object)
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"meta.json's {field} must be a (nested) list of ints: {err}") from err
    if array.ndim < 1 or array.ndim > 8 or array.size > MAX_SPACE_ELEMENTS or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_SPACE_ELEMENTS for v in array.flat):
        raise CheckpointError(f"meta.json's {field} must be a (nested) list of at most {MAX_SPACE_ELEMENTS} ints in "
                              f"[{low}, {MAX_SPACE_ELEMENTS}] (MAX_SPACE_ELEMENTS), got {_describe(value)}")
    if not counts and math.prod(array.tolist() if array.ndim == 1 else [array.size]) > MAX_SPACE_ELEMENTS:
        raise CheckpointError(f"meta.json's {field} describes more than {MAX_SPACE_ELEMENTS} elements "
                              "(MAX_SPACE_ELEMENTS)")
    return array.astype(np.int64)


# --------------------------------------------------------------------------------------------------
# the metadata against the saved tensors
# --------------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    unbacked: int = 0
    largest: tuple[int, str, tuple[int, ...], str] | None = None


@contextlib.contextmanager
def _kernel_choices_unlogged() -> Iterator[None]:
    """Silences the INFO lines of the kernel choice (``rlcore.kernels``) while the layout's algorithm is built on the
    meta device: they would announce a reference path ("the parameters live on meta") the run does not take."""
    kernels = logging.getLogger("rlcore.kernels")
    level = kernels.level
    kernels.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        kernels.setLevel(level)


def check_layout(contents: CheckpointContents, layout: Any, *, num_envs: int = 1, key: str = "algo") -> None:
    """Builds the algorithm ``contents`` describes on the ``meta`` device and compares it with the saved state.

    Every tensor or array of the algorithm's ``state_dict()`` that the saved ``layout[key]`` also holds must have
    the saved dtype, and the algorithm may hold at most :data:`MAX_UNBACKED_ELEMENTS` elements beyond what the
    saved tensors at the same paths hold. Nothing is allocated for the networks (numpy buffers an algorithm
    creates in its constructor are, lazily, by the OS).

    Args:
        contents: From :func:`read_contents`.
        layout: The second argument of a :data:`rlcore.checkpoint.Inspector`.
        num_envs: The ``num_envs`` the algorithm will be built with.
        key: Where the algorithm's state is in the saved structure.

    Raises:
        CheckpointError: The metadata does not build the algorithm, or builds one that does not fit the tensors.
    """
    from rlcore.algos.base import build_algorithm

    try:
        with torch.device("meta"), warnings.catch_warnings(), _kernel_choices_unlogged():
            # a backbone read from its own checkpoint is "copied" into meta parameters: a no-op torch warns about
            warnings.filterwarnings("ignore", message=".*to a meta parameter in the current model.*")
            built = build_algorithm(contents.algo, contents.observation_space, contents.action_space,
                                    contents.algo_config, device="meta", num_envs=num_envs)
            state = built.state_dict()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001  (whatever the algorithm raises: the metadata does not build it)
        raise CheckpointError(f"meta.json's algo_config, observation_space and action_space do not build a "
                              f"{contents.algo}: {type(err).__name__}: {err}") from err
    saved = layout.get(key) if isinstance(layout, dict) else None
    tally = _Tally()
    _compare(state, saved, key, tally, contents.algo)
    if tally.unbacked > MAX_UNBACKED_ELEMENTS and tally.largest is not None:
        _, path, shape, saved_as = tally.largest
        raise CheckpointError(
            f"meta.json's algo_config, observation_space and action_space describe a {contents.algo} with "
            f"{tally.unbacked} tensor elements more than its state file holds (at most {MAX_UNBACKED_ELEMENTS}, "
            f"MAX_UNBACKED_ELEMENTS); the largest difference: {path!r} would have shape {list(shape)}, the state file "
            f"holds {saved_as}. The metadata was edited (a network size such as net_arch, or a space's size) or "
            "belongs to another checkpoint; refused before allocating anything")


def _compare(built: Any, saved: Any, path: str, tally: _Tally, algo: str) -> None:
    if isinstance(built, torch.Tensor | np.ndarray):
        _compare_leaf(built, saved, path, tally, algo)
    elif isinstance(built, dict):
        for name, value in built.items():
            _compare(value, saved.get(name) if isinstance(saved, dict) else None, f"{path}/{name}", tally, algo)
    elif isinstance(built, list | tuple):
        for index, value in enumerate(built):
            child = saved[index] if isinstance(saved, list | tuple) and index < len(saved) else None
            _compare(value, child, f"{path}/{index}", tally, algo)


def _compare_leaf(built: torch.Tensor | np.ndarray, saved: Any, path: str, tally: _Tally, algo: str) -> None:
    size = built.numel() if isinstance(built, torch.Tensor) else int(built.size)
    backed = 0
    if isinstance(saved, torch.Tensor | np.ndarray):
        if type(saved) is not type(built) and not (isinstance(saved, torch.Tensor) and isinstance(built, torch.Tensor)):
            raise CheckpointError(f"the state file holds a {type(saved).__name__} at {path!r}, where the {algo} that "
                                  f"meta.json describes holds a {type(built).__name__}")
        if saved.dtype != built.dtype:
            raise CheckpointError(f"tensor {path!r} is {saved.dtype} in the state file, but the {algo} that meta.json "
                                  f"describes holds {built.dtype} there: the checkpoint's dtypes were edited or it is "
                                  "not this algorithm's; refused rather than loading reinterpreted values")
        if len(built.shape) != len(saved.shape):  # sizes may follow num_envs, the number of dimensions never does
            raise CheckpointError(f"tensor {path!r} has shape {list(saved.shape)} in the state file, but the {algo} "
                                  f"that meta.json describes holds one of shape {list(built.shape)} there")
        backed = saved.numel() if isinstance(saved, torch.Tensor) else int(saved.size)
        saved_as = f"shape {list(saved.shape)}"
    else:
        saved_as = "nothing there"
    excess = size - backed
    if excess > 0:
        tally.unbacked += excess
        if tally.largest is None or excess > tally.largest[0]:
            tally.largest = (excess, path, tuple(built.shape), saved_as)


__all__ = [
    "AGENT_KEYS",
    "MAX_ENV_ID_CHARS",
    "MAX_SPACE_DEPTH",
    "MAX_SPACE_ELEMENTS",
    "MAX_SPACE_KEY_CHARS",
    "MAX_SPACE_LEAVES",
    "MAX_UNBACKED_ELEMENTS",
    "TRAINING_KEYS",
    "CheckpointContents",
    "build_config",
    "check_env_id",
    "check_fields",
    "check_layout",
    "matches_hint",
    "read_contents",
    "space_from_meta",
]
