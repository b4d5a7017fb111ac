"""The only integer semantics of spikeforge.

Every arithmetic primitive a neuron datapath uses lives here, in two forms: a scalar form on
Python ``int`` (used by the reference engine, the living definition) and an array form on
numpy arrays (used by the fast engine). Tests check the two against each other.

Python ``int`` has unbounded width and ``>>`` on it is an arithmetic (floor) shift, so the
scalar forms are exact by construction. Every width is a parameter (``bits``); a state
register's width and overflow policy come from the spec's ``[state]`` table as a
:class:`Format` (``hw_specs.StateFormat`` is one) and :func:`overflow` applies it.

Some array forms also exist in place (``*_inplace``) or on Python lists (``*_list``) for the
fast engine's hot loops; they are tested against the scalar forms like the others.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


class Format(Protocol):
    """A state register's format: ``bits`` wide two's complement; ``overflow`` is ``"wrap"``
    (modulo ``2^bits``) or ``"saturate"`` (held at ``lo`` / ``hi``)."""

    @property
    def bits(self) -> int: ...

    @property
    def overflow(self) -> str: ...


def limits(bits: int) -> tuple[int, int]:
    """``(lo, hi) = (-2^(bits-1), 2^(bits-1) - 1)``: the range of a signed ``bits``-wide register."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1

# ---------------------------------------------------------------------------- scalar forms


def shift(x: int, k: int) -> int:
    """``x << k`` for k >= 0, arithmetic ``x >> -k`` (floor) for k < 0: Loihi's weight exponent."""
    return x << k if k >= 0 else x >> -k


def mul_shift_trunc(x: int, m: int, k: int) -> int:
    """``sign(p) * (|p| >> k)`` with ``p = x * m``: a multiply-shift rounding toward zero, as
    Loihi's decay does (Lava ``AbstractPyLifModelFixed.subthr_dynamics``)."""
    p = x * m
    return -((-p) >> k) if p < 0 else p >> k


def wrap(x: int, bits: int) -> int:
    """Wrap into ``(-2^(bits-1), 2^(bits-1)]`` modulo ``2^bits``.

    Loihi's 24-bit current register wraps with this (unusual) half-open range: a value above
    ``2^23`` loses ``2^24``, a value at or below ``-2^23`` gains ``2^24`` (Lava wraps with
    ``u > 2^23`` and ``u <= -2^23``). Lava applies one conditional step; the modulo here is
    identical whenever one step suffices and is what a 24-bit register does otherwise.
    """
    half = 1 << (bits - 1)
    full = 1 << bits
    return x - full * -((half - x) // full)  # x - full * ceil((x - half) / full)


def saturate(x: int, lo: int, hi: int) -> int:
    """Clamp to ``[lo, hi]``: a saturating register holds its extreme instead of wrapping."""
    return lo if x < lo else hi if x > hi else x


def sat_add(x: int, y: int, bits: int) -> int:
    """``sat(x + y)`` into a signed ``bits``-wide register (XyloSim ``safe_add``)."""
    return saturate(x + y, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def wrap_signed(x: int, bits: int) -> int:
    """Two's complement wrap into ``[-2^(bits-1), 2^(bits-1))``: a C integer conversion."""
    full = 1 << bits
    return ((x + (full >> 1)) % full) - (full >> 1)


def shift_decay(x: int, dash: int) -> int:
    """Xylo's bit-shift decay amount: ``d = x >> dash``; if that is 0 for ``x != 0``, ``sign(x)``.

    The state then becomes ``x - d`` (XyloSim ``decay``): a small state always moves toward 0.
    """
    d = x >> dash
    if d == 0 and x != 0:
        d = 1 if x > 0 else -1
    return d


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def overflow(x: int, fmt: Format) -> int:
    """``x`` held in a register of format ``fmt``: :func:`wrap_signed` for ``"wrap"``, clamped to
    ``[-2^(bits-1), 2^(bits-1) - 1]`` for ``"saturate"``."""
    if fmt.overflow == "wrap":
        return wrap_signed(x, fmt.bits)
    lo, hi = limits(fmt.bits)
    return saturate(x, lo, hi)


# ----------------------------------------------------------------------------- array forms
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


def shift_array(x: IntArray, k: int) -> IntArray:
    """Array form of :func:`shift` (int64)."""
    return np.left_shift(x, k) if k >= 0 else np.right_shift(x, -k)


def shift_float(x: FloatArray, k: int) -> FloatArray:
    """:func:`shift` on integer-valued float64: exact while |x| * 2^k < 2^53 (floor for k < 0)."""
    if k >= 0:
        return x * float(1 << k)
    return np.floor(x * (1.0 / (1 << -k)))


def mul_shift_trunc_array(x: IntArray, m: IntArray | int, k: int) -> IntArray:
    """Array form of :func:`mul_shift_trunc` on int64."""
    p = x * m
    return np.sign(p) * np.right_shift(np.abs(p), k)


def mul_shift_trunc_float(x: FloatArray, m: FloatArray | float, k: int, out: FloatArray | None = None) -> FloatArray:
    """:func:`mul_shift_trunc` on integer-valued float64.

    ``trunc(x * m / 2^k)`` equals ``sign(p) * (|p| >> k)`` for ``p = x * m`` because the
    product and the power-of-two division are exact in float64 while ``|p| < 2^53``.
    """
    out = np.multiply(x, m, out=out)
    out *= 1.0 / (1 << k)
    return np.trunc(out, out=out)


def wrap_array(x: IntArray, bits: int) -> IntArray:
    """Array form of :func:`wrap` (int64)."""
    half = 1 << (bits - 1)
    full = 1 << bits
    return x - full * -((half - x) // full)


def wrap_float(x: FloatArray, bits: int) -> FloatArray:
    """:func:`wrap` on integer-valued float64 (exact while |x| < 2^53)."""
    half = float(1 << (bits - 1))
    full = float(1 << bits)
    return x - full * np.ceil((x - half) / full)


def shift_decay_array(x: IntArray, dash: IntArray | int) -> IntArray:
    """Array form of :func:`shift_decay` (int64), in three passes: ``x >> dash`` is 0 for a
    non-zero ``x`` only when ``0 < x < 2^dash`` (an arithmetic shift of a negative number is at
    most -1), and then the amount is 1."""
    d = np.right_shift(x, dash)
    d += (d == 0) & (x > 0)
    return d


def shift_decay_list(xs: list[int], dashes: list[int]) -> list[int]:
    """:func:`shift_decay` over Python lists (the fast engine's path for tiny populations, where
    a numpy call costs more than the arithmetic)."""
    return [(x >> k) or (1 if x > 0 else 0) for x, k in zip(xs, dashes, strict=True)]


def sat_array(x: IntArray, bits: int) -> IntArray:
    """Saturate int64 values into a signed ``bits``-wide register."""
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def saturate_inplace(x: NDArray[Any], lo: Any, hi: Any) -> NDArray[Any]:
    """:func:`saturate` on an array, in place (no temporary); returns ``x``."""
    np.maximum(x, lo, out=x)
    np.minimum(x, hi, out=x)
    return x


def saturate_list(xs: list[int], lo: int, hi: int) -> list[int]:
    """:func:`saturate` over a Python list."""
    return [lo if x < lo else hi if x > hi else x for x in xs]


def overflow_array(x: IntArray, fmt: Format) -> IntArray:
    """Array form of :func:`overflow` (int64)."""
    if fmt.overflow == "wrap":
        return wrap_signed_array(x, fmt.bits)
    return sat_array(x, fmt.bits)


def wrap_float_inplace(x: FloatArray, bits: int) -> FloatArray:
    """:func:`wrap_float` in place, after a cheap range test (a register rarely wraps, and the
    test is two reductions where the wrap is four passes); returns ``x``."""
    half = float(1 << (bits - 1))
    if x.size and (x.max() > half or x.min() <= -half):
        x[...] = wrap_float(x, bits)
    return x


def wrap_signed_array(x: IntArray, bits: int) -> IntArray:
    """Array form of :func:`wrap_signed`."""
    full = 1 << bits
    return ((x + (full >> 1)) % full) - (full >> 1)


# ------------------------------------------------------------------ pseudo-random numbers
_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a bijective 64-bit hash (Steele, Lea & Flood 2014).

    The stochastic modes of a chip need random numbers whose generator is not public; ours is
    counter-based, so any engine can draw the number for (seed, step, neuron, slot) without
    replaying a sequence, and reference and fast engines agree bit for bit.
    """
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def draw(seed: int, step: int, neuron: int, slot: int, bits: int) -> int:
    """A ``bits``-wide pseudo-random integer for (seed, step, global neuron, slot).

    ``key = seed * 2^48 + step * 2^28 + neuron * 2^9 + slot`` (slots < 512, neurons < 2^19 per
    program key space, steps < 2^20 wrap into the key), hashed twice with :func:`mix64`.
    """
    key = (seed << 48) + (step << 28) + (neuron << 9) + slot
    return mix64(mix64(key)) >> (64 - bits)


def draw_array(seed: int, step: int, neuron: NDArray[np.int64], slot: NDArray[np.int64] | int, bits: int) -> IntArray:
    """Array form of :func:`draw`; ``neuron`` and ``slot`` broadcast."""
    with np.errstate(over="ignore"):
        key = (
            np.uint64((seed << 48) & _M64)
            + np.uint64((step << 28) & _M64)
            + np.left_shift(np.asarray(neuron, dtype=np.uint64), np.uint64(9))
            + np.asarray(slot, dtype=np.uint64)
        )
        x = _mix64_array(_mix64_array(key))
    return np.right_shift(x, np.uint64(64 - bits)).astype(np.int64)


def _mix64_array(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
