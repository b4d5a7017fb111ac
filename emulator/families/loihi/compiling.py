"""Loihi compile hooks: time constants → decays, the mantissa/exponent weight format, the rules'
family facts, and the float model of one population (the network the quantised one approximates).

numpy only (no torch, no compiler imports): the compiler reaches this module through
``emulator.families.get(spec.family).compiling``.

Decays are 12-bit multiplicative (``x ← x·(4096 − d)/4096``; the current register adds 1 to its
``du``). A projection's weights are mantissas ``q`` with a shared exponent ``e``: the chip adds
``(q · s) << e << 6`` to ``u`` (Lava's ``Dense`` with ``weight_exp``), so ``W · scale = q · 2^(e+6)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "decay", "bias_gain", "keep_factors", "decay_registers", "weight_geometry", "state_scale", "exponent_for",
    "mantissas", "threshold_register", "bias_registers", "settling", "FloatNeurons",
    "QUANTISER", "OVERFLOW_STATE", "OVERFLOW_FIX", "WEIGHT_EXPONENT", "REGISTER_KEYS", "FAN_OUT_LABEL",
    "FAN_OUT_FIX", "FAN_OUT_PER_CORE", "INPUT_SHIFT",
]

# ----------------------------------------------------------------------------- rule facts
#: the quantisation scheme (``compiler.passes.quantize`` runs the search that fits it)
QUANTISER = "mantissa_exponent"
#: the state the worst-case input current lands in, and what lowers it
OVERFLOW_STATE = "u"
OVERFLOW_FIX = "a lower weight_exp (fewer fractional bits) or fewer simultaneous inputs"
#: the projection field holding a matrix's exponent (the weight-precision rule names it)
WEIGHT_EXPONENT: str | None = "weight_exp"
WEIGHT_ERROR_KEYS = ""
WEIGHT_ERROR_FIX = ""
#: the spec keys of the threshold and bias registers (the registers rule names them)
REGISTER_KEYS = "registers.vth, registers.bias_mant"
#: what the fan-out rule counts: one route per destination core
FAN_OUT_LABEL = "fan-out (routes of one neuron)"
FAN_OUT_FIX = "reduce the next layer's width or prune outgoing weights"
FAN_OUT_PER_CORE = True
#: the chip shifts every synaptic input left by 6 before it enters ``u`` (and ``vth`` by 6 too)
INPUT_SHIFT = 6


# ------------------------------------------------------------------------- time constants
def decay(tau: float | None, dt: float, offset: int = 0) -> int:
    """12-bit decay register for time constant ``tau`` (s) at step ``dt`` (s).

    ``d = round(4096·(1 − exp(−dt/τ))) − offset`` clipped to ``[0, 4095]``; ``offset`` is 1 for
    the current decay ``du`` (the chip multiplies by ``4096 − (du + 1)``), 0 for ``dv``.
    ``tau=None`` means no state: ``du = 4095`` (current does not persist), ``dv = 0`` (no leak).
    """
    if tau is None:
        return 4095 if offset else 0
    if tau <= 0:
        return 4095
    return int(min(4095, max(0, round(4096 * (1 - math.exp(-dt / tau))) - offset)))


def decay_registers(tau_mem: float | None, tau_syn: float | None, dt: float) -> dict[str, int]:
    """``{"du": …, "dv": …}`` for the time constants (s) at step ``dt`` (s)."""
    return {"du": decay(tau_syn, dt, offset=1), "dv": decay(tau_mem, dt)}


def keep_factors(tau_mem: float | None, tau_syn: float | None, dt: float) -> tuple[float, float]:
    """``(keep_u, keep_v)``: the factors the chip applies to ``u`` and ``v`` every step,
    ``(4096 − du − 1)/4096`` and ``(4096 − dv)/4096``."""
    du = decay(tau_syn, dt, offset=1)
    dv = decay(tau_mem, dt)
    return (4096 - du - 1) / 4096, (4096 - dv) / 4096


def bias_gain(tau_syn: float | None, dt: float) -> float:
    """Factor mapping a constant input current ``b`` (which enters ``u``) onto the bias register
    (which adds to ``v``): the steady-state current ``b / δu``, ``4096 / (du + 1)``."""
    du = decay(tau_syn, dt, offset=1)
    return 4096.0 / (du + 1)


def settling(du: int) -> float:
    """``1 − keep_u`` (at least one 4096th): under a constant input ``u`` settles at ``input / settling``."""
    keep = 1.0 - (4096 - du - 1) / 4096
    return max(keep, 1.0 / 4096)


# --------------------------------------------------------------------------- weight format
def weight_geometry(values: NDArray[Any], w_hi: int, bits: int) -> tuple[int, int, float]:
    """``(step, q_max, max|w|)`` of a projection stored with ``bits`` weight bits.

    Mantissas are multiples of ``step = 2^k``, ``k = mag_bits − bits + is_mixed`` (Lava's
    truncation; a mixed-sign matrix loses one more bit), at most ``q_max`` (the spec's range).
    """
    mag_bits = max(w_hi.bit_length(), 1)  # 255 → 8-bit magnitude
    hi, lo = float(np.max(values)), float(np.min(values))  # two passes: max|w| = max(hi, −lo)
    mixed = hi > 0 and lo < 0
    k = max(0, mag_bits - bits + int(mixed))
    step = 1 << k
    return step, (w_hi // step) * step, max(hi, -lo)


def state_scale(q_max: int, w_max: float, e: int) -> float:
    """State scale ``s`` at which weight ``w_max`` uses the full mantissa ``q_max`` at exponent ``e``."""
    return q_max * 2.0 ** (e + INPUT_SHIFT) / w_max


def exponent_for(w_max: float, s: float, q_max: int, lo: int, hi: int) -> int:
    """The smallest exponent in ``[lo, hi]`` at which ``w_max · s`` fits the mantissa range."""
    need = w_max * s / (q_max * 64.0)
    return min(hi, max(lo, math.ceil(math.log2(need) - 1e-12))) if need > 0 else lo


#: weights per block of the mantissa computation
_BLOCK = 1 << 20


def mantissas(values: NDArray[Any], s: float, e: int, step: int, q_max: int) -> NDArray[np.int64]:
    """``clip(round(w·s / (2^(e+6)·step))·step, ±q_max)`` as int64 (computed in place, a block of
    weights at a time: one small float buffer)."""
    w = np.asarray(values).reshape(-1)
    if w.dtype != np.float64:  # (other dtypes compute in their own precision, as written above)
        q = np.clip(np.round(values * s / (2.0 ** (e + INPUT_SHIFT) * step)) * step, -q_max, q_max)
        return q.astype(np.int64, copy=False)
    out = np.empty(w.size, dtype=np.int64)
    buf = np.empty(min(w.size, _BLOCK), dtype=np.float64)
    unit = 2.0 ** (e + INPUT_SHIFT) * step
    for lo in range(0, w.size, _BLOCK):
        b = buf[:min(w.size, lo + _BLOCK) - lo]
        np.multiply(w[lo:lo + b.size], s, out=b)
        b /= unit
        np.round(b, out=b)
        b *= step
        np.clip(b, -q_max, q_max, out=b)
        out[lo:lo + b.size] = b  # integer-valued: the cast is exact
    return out.reshape(np.shape(values))


def threshold_register(threshold: float, s: float) -> tuple[int, float]:
    """``(vth, θ·s/64)``: the chip compares ``v > vth << 6``."""
    raw = threshold * s / 64.0
    return round(raw), raw


def bias_registers(target: NDArray[np.float64], mant_hi: int, exp_lo: int, exp_hi: int
                   ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per neuron ``(bias_mant, bias_exp)`` with ``bias_mant << bias_exp ≈ target``: the smallest
    exponent whose rounded mantissa fits ``|bias_mant| ≤ mant_hi`` (else ``exp_hi``); the mantissa
    is returned rounded but not clipped (the caller checks the range)."""
    bexp = np.full(target.shape, exp_hi, dtype=np.int64)
    for x in range(exp_hi, exp_lo - 1, -1):  # descending: ends at the smallest exponent that fits
        bexp = np.where(np.abs(np.round(target / 2.0 ** x)) <= mant_hi, x, bexp)
    mant = np.asarray(np.round(target / 2.0 ** bexp), dtype=np.float64)
    return mant, bexp


# ----------------------------------------------------------------------------- simulation
class FloatNeurons:
    """The float model of one population with the chip's decays, spike test and reset::

        u ← u·keep_u + a;   v ← v·keep_v + u + b·bias_gain;   s = [v > θ];   v ← 0 where s

    ``step`` takes the summed input ``a`` ``[batch, n]`` float64 and returns the spikes (float64).
    """

    def __init__(self, *, size: int, threshold: float, bias: NDArray[Any] | None, tau_mem: float | None,
                 tau_syn: float | None, dt: float, max_spikes: int = 1) -> None:
        self.ku = (4096 - decay(tau_syn, dt, offset=1) - 1) / 4096
        self.kv = (4096 - decay(tau_mem, dt)) / 4096
        self.bias = (bias if bias is not None else np.zeros(size)) * bias_gain(tau_syn, dt)
        self.threshold = threshold
        self.size = size

    def state(self, batch: int) -> dict[str, NDArray[np.float64]]:
        return {"u": np.zeros((batch, self.size)), "v": np.zeros((batch, self.size))}

    dtype: Any = np.float64

    def input(self, current: NDArray[np.float64], params: Mapping[str, int]) -> NDArray[np.float64]:
        return current

    def step(self, state: dict[str, NDArray[np.float64]], a: NDArray[np.float64]) -> NDArray[np.float64]:
        u = state["u"] * self.ku + a
        v = state["v"] * self.kv + u + self.bias
        s = v > self.threshold
        v[s] = 0.0
        state["u"], state["v"] = u, v
        return s.astype(np.float64)
