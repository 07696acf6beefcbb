"""What the settings of a config dataclass are: their declared types, one-line docs, and values made to fit.

Used wherever a user names a setting: ``rlcore.train(..., key=value)``, ``rlcore train --set key=value`` and
``rlcore algos NAME`` (and ``docs/algorithms.md``, generated from the same source). A value is converted by the
field's declared type, so ``--set net_arch=64,64`` and ``--set gamma=0.98`` work from the shell, and a value that
does not fit (``gamma=0.99.9``, ``learning_rate="fast"``) is an error naming the field and the expected form.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import os
import textwrap
import types
import typing
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any, Literal, get_args, get_origin

import numpy as np

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
NONE_WORDS = ("none", "null", "~")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` (case-insensitive), else ``""``."""
    choices = list(choices)
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


@functools.cache
def field_types(config_class: type) -> dict[str, Any]:
    """Field name -> declared type (annotations resolved), in declaration order."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(config_class)}


@functools.cache
def field_docs(config_class: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field in the class body), through the bases."""
    docs: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for statement, following in zip(body, body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def first_sentence(doc: str) -> str:
    """The doc's first sentence on one line: up to the first ``. `` outside parentheses that does not end an
    abbreviation (``e.g.``, ``i.e.``, ``...``)."""
    text = " ".join(doc.split())
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1, "[": 1, "]": -1}.get(char, 0)
        if char == "." and depth == 0 and text[index + 1:index + 2] == " ":
            before = text[max(0, index - 4):index + 1].lower()
            if not before.endswith(("e.g.", "i.e.", "..", "etc.", "vs.")):
                return text[:index]
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def type_name(annotation: Any) -> str:
    """A short, readable name: ``int``, ``float | None``, ``tuple[int, ...]``, ``'uct' | 'puct'``."""
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is tuple:
        return f"tuple[{type_name(args[0])}, ...]" if len(args) == 2 and args[1] is Ellipsis else "tuple"
    if origin in (dict, list):
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]" if args else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


class SettingError(ValueError):
    """A setting's value does not fit its declared type; the message names the field and the expected form."""


def user_path(path: str | os.PathLike[str]) -> Path:
    """A file or folder path a user named, with ``~`` expanded to their home folder as the shell does."""
    return Path(os.path.expanduser(os.fspath(path)))


def absolute_user_path(path: str | os.PathLike[str]) -> Path:
    """:func:`user_path` made absolute (``"."`` and ``"x/.."`` resolved, symlinks kept)."""
    return Path(os.path.abspath(user_path(path)))


EXTRACTOR_PATH_SETTINGS = ("checkpoint", "model_folder", "vocabulary")
"""``features_kwargs`` entries that name files or folders (the backbones' checkpoint, BERT folder, vocabulary)."""


def with_absolute_paths(features_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """``features_kwargs`` with its :data:`EXTRACTOR_PATH_SETTINGS` as absolute paths (``~`` expanded), so that a saved
    agent or a resumed run finds them from any working directory; other entries unchanged."""
    if not features_kwargs:
        return features_kwargs
    paths = {key for key, value in features_kwargs.items()
             if key in EXTRACTOR_PATH_SETTINGS and isinstance(value, str | PurePath)}
    return {key: str(absolute_user_path(value)) if key in paths else value for key, value in features_kwargs.items()}


def plain_value(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, also inside dicts, lists and tuples, as the Python numbers and lists
    they hold (``np.int64(3)`` -> ``3``), and paths as strings: settings are recorded as JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {key: plain_value(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain_value(item) for item in value)
    return value


def convert_value(name: str, annotation: Any, value: Any) -> Any:
    """``value`` converted to the declared type ``annotation`` of the field ``name``.

    Strings (from the shell or YAML) are parsed: numbers, booleans (``true``/``false``), ``null``, lists of numbers
    as ``64,64`` or ``[64, 64]``. Values already of the type pass unchanged (ranges are checked by the config).

    Raises:
        SettingError: The value fits none of the type's forms; the message names the field and shows one.
    """
    value = plain_value(value)
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        if isinstance(value, str) and value.strip().lower() in NONE_WORDS and type(None) in args:
            return None
        if isinstance(value, str):  # text from the shell: numbers and lists before the string itself
            members = [member for member in members if member is not str] + [m for m in members if m is str]
        else:
            for member in members:  # a value already of one member's type is kept as it is
                if _is_instance(value, member):
                    return value
        for member in members:
            try:
                return convert_value(name, member, value)
            except SettingError:
                continue
        raise SettingError(f"{name} must be {_expected(annotation)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise SettingError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}"
                           + did_you_mean(str(value), [str(arg) for arg in args]))
    if annotation is bool:
        return _to_bool(name, value)
    if annotation in (int, float):
        return _to_number(name, annotation, value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise SettingError(f"{name} must be a string, got {value!r}")
    if origin in (tuple, list):
        return _to_sequence(name, annotation, value)
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
        raise SettingError(f"{name} must be a mapping, e.g. {{key: value}} ({{\"key\": value}} in Python), got "
                           f"{value!r}")
    return value


def _is_instance(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    if origin is Literal:
        return value in get_args(annotation)
    return False


def _expected(annotation: Any) -> str:
    """How to write a value of ``annotation``, for error messages."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in args)
    if annotation is type(None):
        return "null (None)"
    if annotation is int:
        return "a whole number (int)"
    if annotation is float:
        return "a number (float)"
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list):
        return "a list of numbers, e.g. [64, 64] (or 64,64 on the shell)"
    if origin is dict:
        return "a mapping, e.g. {key: value}"
    return type_name(annotation)


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise SettingError(f"{name} must be true or false, got {value!r}")


def _to_number(name: str, kind: type, value: Any) -> int | float:
    what = "a whole number (int)" if kind is int else "a number (float)"
    if isinstance(value, bool):
        raise SettingError(f"{name} must be {what}, got {value!r}")
    number: float | int
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip()) if kind is int else float(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise SettingError(f"{name} must be {what}, got {value!r}") from None
    else:
        raise SettingError(f"{name} must be {what}, got {value!r}")
    if kind is int:
        if isinstance(number, float) and not number.is_integer():
            raise SettingError(f"{name} must be {what}, got {value!r}")
        return int(number)
    return float(number)


def _to_sequence(name: str, annotation: Any, value: Any) -> tuple[Any, ...] | list[Any]:
    args = get_args(annotation)
    item_type = args[0] if args else Any
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        items: list[Any] = [part.strip() for part in text.split(",") if part.strip()] if text else []
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        items = [value]
    else:
        raise SettingError(f"{name} must be {_expected(annotation)}, got {value!r}")
    try:
        converted = [convert_value(name, item_type, item) for item in items]
    except SettingError:
        raise SettingError(f"{name} must be {_expected(annotation)}, got {value!r}") from None
    return tuple(converted) if get_origin(annotation) is tuple else converted


def convert_settings(config_class: type, values: dict[str, Any]) -> dict[str, Any]:
    """Every value of ``values`` converted by ``config_class``'s declared field types (unknown keys kept)."""
    types_of = field_types(config_class)
    return {key: convert_value(key, types_of[key], value) if key in types_of else value
            for key, value in values.items()}
