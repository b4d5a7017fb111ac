"""Xylo compile hooks: time constants → bit-shift decays, the shift-per-matrix weight format, the
rules' family facts, and the float model of one population (the network the quantised one approximates).

numpy only (no torch, no compiler imports): the compiler reaches this module through
``emulator.families.get(spec.family).compiling``.

Decays are bit shifts (``x ← x − x·2^−dash``); weights are 8-bit ``q`` with one left shift per
matrix (input, recurrent, readout), ``W · scale = q << shift``; 16-bit saturating states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "dash", "bias_gain", "keep_factors", "decay_registers", "population", "FloatNeurons",
    "QUANTISER", "OVERFLOW_STATE", "OVERFLOW_FIX", "WEIGHT_EXPONENT", "REGISTER_KEYS", "FAN_OUT_LABEL",
    "FAN_OUT_FIX", "FAN_OUT_PER_CORE",
]

# ----------------------------------------------------------------------------- rule facts
QUANTISER = "shift_per_matrix"
OVERFLOW_STATE = "isyn"
OVERFLOW_FIX = "a smaller weight_shift or fewer simultaneous inputs"
WEIGHT_EXPONENT: str | None = "weight_shift"
WEIGHT_ERROR_KEYS = ""
WEIGHT_ERROR_FIX = ""
REGISTER_KEYS = "registers.threshold, registers.bias"
#: what the fan-out rule counts: target synapses of one neuron
FAN_OUT_LABEL = "fan-out (target synapses of one neuron)"
FAN_OUT_FIX = "reduce the next layer's width or prune outgoing weights"
FAN_OUT_PER_CORE = False


# ------------------------------------------------------------------------- time constants
def dash(tau: float | None, dt: float, max_dash: int = 15) -> int:
    """Bit-shift decay ``dash = round(log2(τ/dt))`` in ``[0, max_dash]`` (Rockpool's mapping).

    ``tau=None`` means as slow as the chip allows (``max_dash``).
    """
    if tau is None:
        return max_dash
    if tau <= dt:
        return 0
    return int(min(max_dash, max(0, round(math.log2(tau / dt)))))


def _dash_syn(tau_syn: float | None, dt: float, max_dash: int = 15) -> int:
    # no synaptic time constant: dash_syn = 1, a 0 shift would clear the current before it is used
    return dash(tau_syn, dt, max_dash) if tau_syn is not None else 1


def decay_registers(tau_mem: float | None, tau_syn: float | None, dt: float, max_dash: int = 15) -> dict[str, int]:
    """``{"dash_mem", "dash_syn", "dash_syn2"}`` for the time constants (s) at step ``dt`` (s)."""
    ds = _dash_syn(tau_syn, dt, max_dash)
    return {"dash_mem": dash(tau_mem, dt, max_dash), "dash_syn": ds, "dash_syn2": ds}


def keep_factors(tau_mem: float | None, tau_syn: float | None, dt: float) -> tuple[float, float]:
    """``(keep_syn, keep_mem)``: ``1 − 2^−dash_syn`` and ``1 − 2^−dash_mem``."""
    return 1 - 2.0 ** -_dash_syn(tau_syn, dt), 1 - 2.0 ** -dash(tau_mem, dt)


def bias_gain(tau_syn: float | None, dt: float) -> float:
    """Factor mapping a constant input current ``b`` (which enters the synaptic state) onto the
    bias register (which adds to ``vmem``): ``k/(1 − k)``, ``k = 1 − 2^−dash_syn``."""
    k = 1 - 2.0 ** -_dash_syn(tau_syn, dt)
    return k / (1 - k)


# --------------------------------------------------------------------------- weight format
def _worst_input(post_idx: NDArray[np.int64], n: int, q: NDArray[Any], factor: float, count: int
                 ) -> NDArray[np.float64]:
    # integer-valued terms: the sum is exact in any order (bincount is the fast scatter-add)
    out: NDArray[np.float64] = np.bincount(post_idx, weights=np.abs(q).astype(np.float64) * factor * count,
                                           minlength=n).astype(np.float64)
    return out


def population(weights: Sequence[tuple[NDArray[Any], NDArray[np.int64]]], shifts: Sequence[int],
               counts: Sequence[int], *, size: int, threshold: float, bias: NDArray[Any] | None,
               tau_syn: float | None, dt: float, spec: Any) -> tuple[float, Any]:
    """Quantise one population at the given matrix ``shifts``: its error and values.

    ``weights``: per incoming projection ``(values, post_idx)`` (float COO); ``counts``: spikes a
    pre unit sends per step at most. The state scale ``s`` gives the largest weight the full
    8-bit range; ``q = round(w·s / 2^shift)``, ``threshold = round(θ·s)``, ``bias = round(b·g·s)``.
    Returns ``(error, (s, qs, threshold, bias, thr_err, bias_err, worst, limit))``; the error is
    the sum of relative RMS weight errors, threshold and bias errors, plus 1 if the worst-case
    input can saturate ``isyn``; ``inf`` when a register does not fit.
    """
    wr = spec.synapse_range("weight")
    qmax = min(wr.hi, -wr.lo)
    s = min((qmax * 2.0 ** sh / float(np.abs(v).max()) for (v, _), sh in zip(weights, shifts, strict=True)),
            default=qmax / threshold)  # no input projection: as if one weight equalled the threshold
    qs = [np.clip(np.round(v * s / 2.0 ** sh), -qmax, qmax).astype(np.int64)
          for (v, _), sh in zip(weights, shifts, strict=True)]
    thr = round(threshold * s)
    t_rng, b_rng = spec.registers["threshold"], spec.registers["bias"]
    b_f = (bias if bias is not None else np.zeros(size)) * bias_gain(tau_syn, dt)
    b = np.round(b_f * s)
    ok = thr in t_rng and bool(((b >= b_rng.lo) & (b <= b_rng.hi)).all())
    w_err = sum(_rel_rms(q * 2.0 ** sh / s - v, v) for q, sh, (v, _) in zip(qs, shifts, weights, strict=True))
    thr_err = abs(thr / s - threshold) / threshold
    bias_err = _rel_rms(b / s - b_f, np.full(1, threshold)) if b_f.any() else 0.0
    worst = np.zeros(size)
    for (_, post), q, sh, c in zip(weights, qs, shifts, counts, strict=True):
        worst += _worst_input(post, size, q, 2.0 ** sh, c)
    limit = (1 << (spec.state["isyn"].bits - 1)) - 1
    err = w_err + thr_err + bias_err + (0.0 if worst.max() <= limit else 1.0)
    return (err if ok else math.inf), (s, qs, thr, b.astype(np.int64), thr_err, bias_err, float(worst.max()), limit)


def _rel_rms(err: NDArray[Any], ref: NDArray[Any]) -> float:
    den = float(np.sqrt(np.mean(ref ** 2))) if ref.size else 0.0
    return float(np.sqrt(np.mean(err ** 2))) / den if den > 0 else 0.0


# ----------------------------------------------------------------------------- simulation
class FloatNeurons:
    """The float model of one population with the chip's decays, spike test and reset::

        i ← (i + a)·keep_syn;   v ← v·keep_mem + i + b·bias_gain
        k = min(⌊v/θ⌋, max_spikes) where v ≥ θ;   v ← v − k·θ
    """

    def __init__(self, *, size: int, threshold: float, bias: NDArray[Any] | None, tau_mem: float | None,
                 tau_syn: float | None, dt: float, max_spikes: int = 1) -> None:
        self.ks, self.km = keep_factors(tau_mem, tau_syn, dt)
        self.bias = (bias if bias is not None else np.zeros(size)) * bias_gain(tau_syn, dt)
        self.threshold = threshold
        self.limit = max_spikes
        self.size = size

    def state(self, batch: int) -> dict[str, NDArray[np.float64]]:
        return {"isyn": np.zeros((batch, self.size)), "vmem": np.zeros((batch, self.size))}

    dtype: Any = np.float64

    def input(self, current: NDArray[np.float64], params: Mapping[str, int]) -> NDArray[np.float64]:
        return current

    def step(self, state: dict[str, NDArray[np.float64]], a: NDArray[np.float64]) -> NDArray[np.float64]:
        isyn = (state["isyn"] + a) * self.ks
        vmem = state["vmem"] * self.km + isyn + self.bias
        k = np.where(vmem >= self.threshold, np.minimum(self.limit, np.floor(vmem / self.threshold)), 0.0)
        state["isyn"], state["vmem"] = isyn, vmem - k * self.threshold
        return k
