"""numpy's PCG64 bit generator as numba kernels over one generator per env, for batched envs.

A batched env must draw exactly what the single env draws from its ``np_random`` (gymnasium seeds it as
``Generator(PCG64(SeedSequence(seed)))``), so that the same seed gives the same trajectory. Each env's
generator is held in arrays (row ``i`` is env ``i``'s generator), stepped inside numba:

- ``state``, ``inc``: ``uint64 [N, 2]`` (high word, low word) of PCG64's 128-bit LCG state and increment;
- ``has_uint32``, ``uinteger``: ``uint64 [N]``, numpy's buffered upper half of a 64-bit draw, which its
  32-bit draws (legacy ``RandomState.randint`` of small ranges) use before drawing again.

One draw steps the LCG (``state = state * MULTIPLIER + inc`` modulo 2**128) and outputs the XSL-RR
permutation of the new state (``rotr64(high ^ low, high >> 58)``), as numpy's ``pcg64.h``. Seeding stays in numpy
(:meth:`Generators.seed`), and :meth:`Generators.numpy_state` / :meth:`Generators.load` convert a row to and from
``PCG64.state`` dicts, so checkpoints hold the same data as the single env's.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

_MASK64 = (1 << 64) - 1
MULTIPLIER = 0x2360ED051FC65DA44385DF649FCCF645
"""PCG's default 128-bit multiplier (numpy's ``PCG_DEFAULT_MULTIPLIER_128``)."""
_MULT_HI = np.uint64(MULTIPLIER >> 64)
_MULT_LO = np.uint64(MULTIPLIER & _MASK64)
_LOW32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)
_U58 = np.uint64(58)
_U63 = np.uint64(63)
_U64 = np.uint64(64)
_U11 = np.uint64(11)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_DOUBLE_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(cache=True, inline="always")
def _mul_high(a: np.uint64, b: np.uint64) -> np.uint64:
    """The high 64 bits of the 128-bit product ``a * b``."""
    a_lo, a_hi = a & _LOW32, a >> _U32
    b_lo, b_hi = b & _LOW32, b >> _U32
    cross_1, cross_2 = a_lo * b_hi, a_hi * b_lo
    middle = ((a_lo * b_lo) >> _U32) + (cross_1 & _LOW32) + (cross_2 & _LOW32)
    return a_hi * b_hi + (cross_1 >> _U32) + (cross_2 >> _U32) + (middle >> _U32)


@numba.njit(cache=True)
def next_uint64(state: np.ndarray, inc: np.ndarray, row: int) -> np.uint64:
    """Env ``row``'s next 64-bit draw (numpy's ``next_uint64``); advances its generator."""
    high, low = state[row, 0], state[row, 1]
    new_low = low * _MULT_LO
    new_high = _mul_high(low, _MULT_LO) + low * _MULT_HI + high * _MULT_LO
    added = new_low + inc[row, 1]
    carry = _ONE if added < new_low else _ZERO
    high, low = new_high + inc[row, 0] + carry, added
    state[row, 0], state[row, 1] = high, low
    mixed = high ^ low
    rotation = high >> _U58
    return (mixed >> rotation) | (mixed << ((_U64 - rotation) & _U63))


@numba.njit(cache=True)
def next_double(state: np.ndarray, inc: np.ndarray, row: int) -> float:
    """A uniform double in ``[0, 1)`` as numpy's ``random()`` / ``RandomState.rand()``: 53 bits of a 64-bit draw."""
    return float(next_uint64(state, inc, row) >> _U11) * _DOUBLE_UNIT


@numba.njit(cache=True)
def next_uint32(state: np.ndarray, inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray,
                row: int) -> np.uint64:
    """numpy's ``next_uint32``: the buffered upper half of the last 64-bit draw if there is one, else the lower half
    of a new draw (whose upper half is buffered)."""
    if has_uint32[row]:
        has_uint32[row] = _ZERO
        return uinteger[row]
    draw = next_uint64(state, inc, row)
    has_uint32[row] = _ONE
    uinteger[row] = draw >> _U32
    return draw & _LOW32


class Generators:
    """``N`` PCG64 generators as arrays (see the module docstring); rows are handed to the kernels."""

    def __init__(self, num_envs: int) -> None:
        self.state = np.zeros((num_envs, 2), dtype=np.uint64)
        self.inc = np.zeros((num_envs, 2), dtype=np.uint64)
        self.has_uint32 = np.zeros(num_envs, dtype=np.uint64)
        self.uinteger = np.zeros(num_envs, dtype=np.uint64)

    def seed(self, row: int, seed: int | None) -> None:
        """Seeds env ``row`` as gymnasium seeds ``np_random`` (fresh entropy for None)."""
        self.load(row, np.random.PCG64(np.random.SeedSequence(seed)).state)

    def reseed(self, seed: int | list[int | None] | None, started: bool) -> None:
        """What a vector env's ``reset(seed=...)`` does to its generators: ``seed`` an int (env ``i`` gets
        ``seed + i``), one per env, or None; an env given None continues its generator once ``started`` (fresh
        entropy before its first seed)."""
        num_envs = len(self.state)
        seeds = ([seed + i for i in range(num_envs)] if isinstance(seed, int | np.integer)
                 else [None] * num_envs if seed is None else list(seed))
        if len(seeds) != num_envs:
            raise ValueError(f"reset got {len(seeds)} seeds for {num_envs} envs")
        for row, env_seed in enumerate(seeds):
            if env_seed is not None or not started:
                self.seed(row, env_seed)

    def load(self, row: int, numpy_state: dict[str, Any]) -> None:
        """Sets env ``row`` from a ``PCG64.state`` dict."""
        if numpy_state.get("bit_generator") != "PCG64":
            raise ValueError(f"expected a PCG64 state, got {numpy_state.get('bit_generator')!r}")
        for name, value in (("state", numpy_state["state"]["state"]), ("inc", numpy_state["state"]["inc"])):
            getattr(self, name)[row] = (int(value) >> 64, int(value) & _MASK64)
        self.has_uint32[row] = int(numpy_state["has_uint32"])
        self.uinteger[row] = int(numpy_state["uinteger"])

    def numpy_state(self, row: int) -> dict[str, Any]:
        """Env ``row``'s generator as a ``PCG64.state`` dict (plain Python ints)."""
        def join(words: np.ndarray) -> int:
            return (int(words[0]) << 64) | int(words[1])

        return {"bit_generator": "PCG64", "state": {"state": join(self.state[row]), "inc": join(self.inc[row])},
                "has_uint32": int(self.has_uint32[row]), "uinteger": int(self.uinteger[row])}


@numba.njit(cache=True)
def legacy_randint(state: np.ndarray, inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray, row: int,
                   low: int, high: int) -> int:
    """``RandomState.randint(low, high)`` (``high - low <= 2**32``): numpy's legacy masked rejection over 32-bit
    draws, the range's bit mask applied to :func:`next_uint32` until a value fits; a range of one value draws
    nothing."""
    if high - low == 1:
        return low
    largest = np.uint64(high - 1 - low)
    mask = largest
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> np.uint64(shift)
    while True:
        value = next_uint32(state, inc, has_uint32, uinteger, row) & mask
        if value <= largest:
            return low + int(value)
