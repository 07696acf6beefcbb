"""Ground-floor settings helpers: validating, building and serializing config dataclasses, schedules.

Every layer may import this module (algorithms, networks, optimizers, the trainer); it imports nothing of
rlcore's, so it can never take part in an import circle.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")

MAX_SEED = 2**63 - 1
"""The largest seed: runs derive torch's, numpy's and the envs' seeds from it (torch takes 64-bit integers)."""


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    hint: str = "",
) -> None:
    """Raises a ValueError naming ``name``, ``value`` and the valid range when out of range, NaN, or infinite
    (unless ``allow_inf``: a clipping bound, where ``inf`` means none); ``hint`` follows the range (another
    accepted value)."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    not_finite = isinstance(value, float) and (math.isnan(value) or math.isinf(value) and not allow_inf)
    if not_finite or too_low or too_high:
        if low is None and high is None:
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        left = "(" if low_open else "["
        right = ")" if high_open or (high is None and not allow_inf) else "]"
        low_text = "-inf" if low is None else _bound_text(low)
        high_text = "inf" if high is None else _bound_text(high)
        raise ValueError(f"{name} must be in {left}{low_text}, {high_text}{right}{' ' + hint if hint else ''}, "
                         f"got {value!r}")


def _bound_text(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def config_from_dict(config_class: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Builds ``config_class(**values)``; unknown keys are an error that lists the valid ones."""
    names = {field.name for field in dataclasses.fields(config_class)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown {config_class.__name__} field(s) {unknown}; valid fields: {sorted(names)}"
        )
    return config_class(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(config).items()
    }


def linear_schedule(start: float, end: float, fraction: float, progress: float) -> float:
    """Goes linearly from ``start`` to ``end`` over the first ``fraction`` of training, then stays.

    Args:
        progress: Fraction of training done, in ``[0, 1]``.
    """
    if fraction <= 0.0:
        return end
    return start + (end - start) * min(progress / fraction, 1.0)
