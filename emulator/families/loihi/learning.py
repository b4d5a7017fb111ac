"""Loihi's learning engine: the fixed-point arithmetic of traces and sum-of-products rules.

Written once, in a scalar form on Python ``int`` (the reference engine's definition) and an array
form on int64 numpy arrays (the fast engine), tested against each other. The rule language is
:mod:`emulator.learning.rules`; the per-epoch schedule that calls these functions is
:mod:`emulator.learning.epoch` (definition) and :mod:`emulator.learning.vectorised`.

Sources. The chain follows lava-nc 0.10's fixed-point learning model —
``lava/magma/core/model/py/connection.py`` (``LearningConnectionModelBitApproximate``),
``lava/magma/core/learning/learning_rule_applier.py`` (``LearningRuleApplierBitApprox``),
``lava/magma/core/learning/constants.py`` (widths) and ``lava/utils/weightutils.py``
(``clip_weights``) — read and checked for this module, with the differences listed below; the
widths are Lava's (traces 7 bits, synaptic variables 8 bits + sign, accumulator 15 bits + sign,
scale mantissa 4 bits, constants 8 bits, impulse fraction 8 bits, within-epoch time 6 bits).

Traces (7-bit unsigned, ``[0, 2^trace_bits − 1]``), per step::

    decay:    p = x · k_τ;  x ← (p >> 12) + [r₁₂ < (p mod 2^12)]      k_τ = round(2^12 · e^(−1/τ)), τ = 0: k = 0
    impulse:  x ← min(2^bits − 1, x + (I >> 8) + [r₈ < (I mod 2^8)])  I = round(impulse · 2^8)  ("set": 0 + ...)

(stochastic rounding to the nearest integer, unbiased: ``E[x'] = x·e^(−1/τ)`` and ``x + impulse``).
A product of a rule (``S = m · 2^e``, dependency ``D``, factors ``F_n + C_n`` of width ``b_n``)::

    f_n  = clip(F_n + C_n, −2^b_n, 2^b_n − 1)            (sgn(...): its sign)
    v    = D · m · Π f_n
    v    = (v >> max(0, Σ b_n + 4 − 15)) << (e + 7)       (back to 15 bits, then the scale)
    v    = clip(v, −2^15, 2^15 − 1);  acc = clip(acc + v, −2^15, 2^15 − 1)

with ``acc`` starting at ``Z << 7`` (Z: 8 bits + sign in a 16-bit accumulator). After the last
product, stochastic rounding to the variable's stored precision and the sign-mode clip::

    n = acc >> (7 + k);  n += [r < acc mod 2^(7+k)];  Z = clip(n · 2^k, lo, hi)

``k`` is the weight truncation of the projection (:func:`emulator.families.loihi.hardware.truncation_bits`;
0 for tags), ``[lo, hi]``: mixed ``[−256, 255]``, excitatory ``[0, 255]``, inhibitory ``[−255, 0]``
(Lava ``clip_weights``, with ``hi`` rounded down to a multiple of ``2^k``), delay tag ``[0, 255]``,
tag ``[−256, 255]``.

Differences from Lava 0.10, and why (a rule with ``random="lava"`` restores all of them: the
``lava_*`` functions below and :mod:`emulator.learning.lava`):

* Lava decays with the float ``exp(−t/τ)`` and draws one random number per step shared by every
  trace and one per epoch shared by every synapse; here the decay factor is the integer ``k_τ``
  and every draw is counter-based per (seed, batch element, projection, step, unit, purpose), so
  both engines compute it independently (:func:`draw`).
* Lava compares the 8-bit impulse fraction with a 7-bit random number (round up with probability
  frac/128); here an 8-bit number (frac/256, unbiased).
* Lava clips the accumulator to ``[−2^15 − 1, 2^15 − 1]`` and tags to ``[−2^8 − 1, 2^8 − 1]`` (one
  below a 16- and a 9-bit register); here to the registers' ranges.
* Lava adds a repeated spike's impulse in the epoch with random number 0 (always rounding up);
  here with a draw.
* Lava rounds learned weights to 8 bits and does not truncate them to ``num_weight_bits``; the
  chip stores ``num_weight_bits``, so here the rounding is to the stored precision ``2^k``
  (a learned Program stays a valid Program).
* Clipping the accumulator by sign mode before rounding (Lava) and clipping after rounding (here)
  give the same result: the bounds are multiples of the rounding step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from emulator import fixed

from . import hardware

if TYPE_CHECKING:
    from hw_specs import HwSpec

__all__ = ["ACCUMULATOR_BITS", "DECAY_BITS", "IMPULSE_FRACTION_BITS", "SYNAPSE_SHIFT", "limits", "factor_bits",
           "decay_factor", "impulse_fixed", "variable_bounds", "draw", "draw_array", "decay", "decay_array",
           "add_impulse", "add_impulse_array", "factor", "factor_array", "term", "term_array", "accumulate",
           "accumulate_array", "finish", "finish_array", "LAVA_ACCUMULATOR_LO", "lava_decay_factors", "lava_decay",
           "lava_decay_array", "lava_add_impulse", "lava_add_impulse_array", "lava_bounds", "lava_finish",
           "lava_finish_array"]

#: the synaptic-change accumulator: 15 bits + sign (Lava W_ACCUMULATOR_S)
ACCUMULATOR_BITS = 16
_ACC_LO, _ACC_HI = fixed.limits(ACCUMULATOR_BITS)
#: the scale mantissa's width (Lava W_S_MANT), counted in the product's shift
MANTISSA_BITS = 4
#: the product is shifted left by exponent + 7 (Lava stores s_exp + 7)
EXPONENT_BIAS = 7
#: a synaptic variable enters the accumulator shifted by 16 − 9 (Lava W_ACCUMULATOR_S − W_WEIGHTS_S)
SYNAPSE_SHIFT = 7
#: widths of the synaptic variables as factors (8 bits + sign: Lava W_WEIGHTS_S, W_TAG_2_S, W_TAG_1_S)
SYNAPSE_BITS = 9
#: width of a constant factor (Lava W_CONST)
CONSTANT_BITS = 8
#: decay factors are 12-bit fractions (as the neuron's du, dv)
DECAY_BITS = 12
#: impulses carry 8 fractional bits (Lava W_TRACE_FRACTIONAL_PART)
IMPULSE_FRACTION_BITS = 8
#: the engine's limits a spec's ``[learning]`` table may leave out: trace time constants are 8-bit
#: (Lava x1_tau precision 8); u_k periods u0..u9 (Lava's rule grammar ``u\d``); factors per
#: product: an assumption (no public figure), a spec may set ``factors_per_product``
DEFAULT_LIMITS: Mapping[str, Any] = {
    "epoch_steps": (1, 64), "trace_bits": 7, "scale_mantissa": (-8, 7), "scale_exp": (-7, 8),
    "products_per_rule": 4, "factors_per_product": 3, "constant": (-128, 127), "decimate": (0, 9),
    "tau": (0, 255),
}
#: the bounds of the tags d (a delay, non-negative) and t
_TAG_BOUNDS = {"d": (0, 255), "t": (-256, 255)}


def limits(spec: HwSpec) -> dict[str, Any]:
    """The learning engine's limits: the spec's ``[learning]`` over :data:`DEFAULT_LIMITS` (ranges as
    ``(lo, hi)`` tuples)."""
    out = dict(DEFAULT_LIMITS)
    for key, value in spec.learning.items():
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def factor_bits(var: str, trace_bits: int) -> int:
    """The width of a factor (Lava FACTOR_TO_WIDTH_DICT): spikes 1, traces ``trace_bits``, w/d/t 9."""
    if var in ("x0", "y0"):
        return 1
    if var in ("w", "d", "t"):
        return SYNAPSE_BITS
    return trace_bits


def decay_factor(tau: int) -> int:
    """``k_τ = round(2^12 · e^(−1/τ))``; ``τ = 0`` gives 0 (the limit of ``e^(−1/τ)``): the trace holds
    only the impulse of the step its unit spikes, as Lava's ``_compute_trace_histories`` leaves a
    trace of ``tau = 0`` at 0 between impulses."""
    return 0 if tau == 0 else int(round(math.exp(-1.0 / tau) * (1 << DECAY_BITS)))


def impulse_fixed(impulse: float) -> int:
    """An impulse as an integer with 8 fractional bits (Lava ``_decompose_impulses``)."""
    return int(round(float(impulse) * (1 << IMPULSE_FRACTION_BITS)))


def variable_bounds(var: str, params: Mapping[str, int]) -> tuple[int, int, int]:
    """``(lo, hi, k)`` of synaptic variable ``var`` of a projection with ``params``: its clip range and
    the stored precision ``2^k`` (module docstring)."""
    if var != "w":
        lo, hi = _TAG_BOUNDS[var]
        return lo, hi, 0
    k = hardware.truncation_bits(params)
    top = (255 >> k) << k
    mode = int(params.get("sign_mode", 0))
    if mode == 1:
        return 0, top, k
    if mode == 2:
        return -top, 0, k
    return -256, top, k


# ------------------------------------------------------------------ random numbers
_M64 = (1 << 64) - 1


def _base(seed: int, proj: int, step: int, purpose: int) -> int:
    h = fixed.mix64(seed)
    for part in (proj, step, purpose):
        h = fixed.mix64((h ^ part) & _M64)
    return h


def draw(seed: int, batch: int, proj: int, step: int, purpose: int, unit: int, bits: int) -> int:
    """A ``bits``-wide pseudo-random integer for (run seed, batch element, projection, step or epoch,
    purpose, unit): SplitMix64's finaliser (:func:`emulator.fixed.mix64`) over the key, counter-based:
    ``mix64(mix64(base + unit) ^ batch) >> (64 − bits)`` with ``base`` the hash of (seed, projection,
    step, purpose)."""
    x = fixed.mix64((_base(seed, proj, step, purpose) + unit) & _M64)
    return fixed.mix64(x ^ batch) >> (64 - bits)


def _mix64_array(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def draw_array(seed: int, batches: NDArray[Any], proj: int, step: int, purpose: int, units: NDArray[Any],
               bits: int) -> NDArray[np.int64]:
    """:func:`draw` for every batch element of ``batches`` ``[B]`` and unit of ``units`` ``[n]``
    (non-negative integers): int64 ``[B, n]``."""
    base = np.uint64(_base(seed, proj, step, purpose))
    with np.errstate(over="ignore"):
        x = _mix64_array(np.asarray(units, dtype=np.uint64) + base)
    x = _mix64_array(x[None, :] ^ np.asarray(batches, dtype=np.uint64)[:, None])
    return np.right_shift(x, np.uint64(64 - bits)).astype(np.int64)


# ------------------------------------------------------------------ scalar forms (the definition)
def decay(x: int, k: int, r: int) -> int:
    """One step of trace decay with stochastic rounding; ``r`` a 12-bit draw."""
    p = x * k
    return (p >> DECAY_BITS) + (1 if r < (p & ((1 << DECAY_BITS) - 1)) else 0)


def add_impulse(x: int, impulse: int, r: int, hi: int, overwrite: bool) -> int:
    """A spike's impulse (8 fractional bits) with stochastic rounding, saturated at ``hi``; an
    ``overwrite`` trace restarts from 0 (nearest-neighbour pairing). ``r`` an 8-bit draw."""
    frac = impulse & ((1 << IMPULSE_FRACTION_BITS) - 1)
    v = (0 if overwrite else x) + (impulse >> IMPULSE_FRACTION_BITS) + (1 if r < frac else 0)
    return min(v, hi)


def factor(value: int, const: int, sgn: bool, bits: int) -> int:
    """``clip(value + const, −2^bits, 2^bits − 1)``, or its sign for ``sgn(...)``."""
    v = value + const
    if sgn:
        return (v > 0) - (v < 0)
    return min(max(v, -(1 << bits)), (1 << bits) - 1)


def term(dependency: int, factors: list[int], mantissa: int, exponent: int, width: int, lo: int = _ACC_LO) -> int:
    """One product's contribution to the accumulator (module docstring); ``width`` = Σ b_n."""
    v = dependency * mantissa
    for f in factors:
        v *= f
    v = (v >> max(0, width + MANTISSA_BITS - (ACCUMULATOR_BITS - 1))) << (exponent + EXPONENT_BIAS)
    return min(max(v, lo), _ACC_HI)


def accumulate(acc: int, v: int, lo: int = _ACC_LO) -> int:
    """``clip(acc + v, lo, 2^15 − 1)`` (``lo``: Lava's bound in ``random="lava"`` mode)."""
    return min(max(acc + v, lo), _ACC_HI)


def finish(acc: int, lo: int, hi: int, k: int, r: int) -> int:
    """The accumulator rounded stochastically to ``2^k`` (``r`` a ``7 + k``-bit draw), clipped."""
    q = SYNAPSE_SHIFT + k
    n = acc >> q
    if r < acc - (n << q):
        n += 1
    return min(max(n << k, lo), hi)


# ---------------------------------------------------------------------- array forms
I64 = NDArray[np.int64]


def decay_array(x: I64, k: int, r: I64) -> I64:
    p = x * k
    return (p >> DECAY_BITS) + (r < (p & ((1 << DECAY_BITS) - 1)))


def add_impulse_array(x: I64, impulse: int, r: I64, hi: int, overwrite: bool) -> I64:
    frac = impulse & ((1 << IMPULSE_FRACTION_BITS) - 1)
    base = np.zeros_like(x) if overwrite else x
    return np.minimum(base + (impulse >> IMPULSE_FRACTION_BITS) + (r < frac), hi)


def factor_array(value: I64, const: int, sgn: bool, bits: int) -> I64:
    v = value + const
    if sgn:
        return np.sign(v)
    return np.clip(v, -(1 << bits), (1 << bits) - 1)


def term_array(dependency: I64, factors: list[I64], mantissa: int, exponent: int, width: int,
               lo: int = _ACC_LO) -> I64:
    v = dependency.astype(np.int64) * mantissa
    for f in factors:
        v = v * f
    v = np.left_shift(np.right_shift(v, max(0, width + MANTISSA_BITS - (ACCUMULATOR_BITS - 1))),
                      exponent + EXPONENT_BIAS)
    return np.clip(v, lo, _ACC_HI)


def accumulate_array(acc: I64, v: I64, lo: int = _ACC_LO) -> I64:
    return np.clip(acc + v, lo, _ACC_HI)


def finish_array(acc: I64, lo: int, hi: int, k: int, r: I64) -> I64:
    q = SYNAPSE_SHIFT + k
    n = acc >> q
    n = n + (r < acc - (n << q))
    return np.clip(n << k, lo, hi)


# ------------------------------------------------- random="lava": Lava 0.10's own arithmetic
#: Lava clips the accumulator to [−2^15 − 1, 2^15 − 1] (``LearningRuleApplierBitApprox.apply``)
LAVA_ACCUMULATOR_LO = _ACC_LO - 1
#: Lava's tag bounds (``_saturate_synaptic_variable``): tag_2 (d) [0, 255], tag_1 (t) [−257, 255]
_LAVA_TAG_BOUNDS = {"d": (0, 255), "t": (-257, 255)}


def lava_decay_factors(taus: list[int]) -> list[float]:
    """``e^(−1/τ)`` per trace (x1, x2, y1, y2, y3) computed as Lava does: one numpy ``exp`` over the
    non-zero time constants of the pre traces, one over the post traces' (``_compute_trace_histories``
    calls ``_decay_trace(..., 1, taus[taus != 0][:, np.newaxis], ...)``), so the floats are Lava's;
    0.0 for ``τ = 0`` (Lava leaves such a trace at 0 between impulses)."""
    out: list[float] = []
    for group in (taus[:2], taus[2:]):
        arr = np.array(group)
        nonzero = arr[arr != 0]
        factors = iter(np.exp(-1 / nonzero[:, np.newaxis])[:, 0].tolist())
        out += [next(factors) if t else 0.0 for t in group]
    return out


def lava_decay(x: int, factor: float, r: float) -> int:
    """Lava's decay: ``v = e^(−1/τ)·x`` (float64), ``floor(v) + [r < v − floor(v)]``, ``r`` one uniform
    float shared by every trace of the step."""
    v = factor * x
    f = math.floor(v)
    return int(f) + (1 if r < v - f else 0)


def lava_decay_array(x: I64, factor: float, r: float) -> I64:
    v = factor * x
    f = np.floor(v)
    return (f + (r < v - f)).astype(np.int64)


def lava_add_impulse(x: int, impulse: int, r: int, hi: int) -> int:
    """Lava's ``_add_impulse``: ``clip(x + ⌊I⌋ + [r < frac(I)·2^8], 0, hi)`` with ``r`` a 7-bit number."""
    frac = impulse & ((1 << IMPULSE_FRACTION_BITS) - 1)
    return min(max(x + (impulse >> IMPULSE_FRACTION_BITS) + (1 if r < frac else 0), 0), hi)


def lava_add_impulse_array(x: I64, impulse: int, r: int, hi: int) -> I64:
    frac = impulse & ((1 << IMPULSE_FRACTION_BITS) - 1)
    return np.clip(x + (impulse >> IMPULSE_FRACTION_BITS) + int(r < frac), 0, hi)


def lava_bounds(var: str, params: Mapping[str, int]) -> tuple[int, int]:
    """Lava's clip range of a learned variable (``clip_weights`` with 8 bits; the tags' bounds)."""
    if var != "w":
        return _LAVA_TAG_BOUNDS[var]
    mode = int(params.get("sign_mode", 0))
    return (0, 255) if mode == 1 else (-255, 0) if mode == 2 else (-256, 255)


def lava_finish(acc: int, var: str, params: Mapping[str, int], r: float) -> int:
    """Lava's ``_apply_learning_rules`` after the products: sign saturation (w by sign mode, d ≥ 0),
    stochastic rounding to 2^7 with the epoch's one float ``r`` (``r < frac``, exact for
    ``frac = (acc mod 2^7) / 2^7``), the shift back and the clip (:func:`lava_bounds`)."""
    lo, hi = lava_bounds(var, params)
    if var == "d" or var == "w" and lo == 0:
        acc = max(0, acc)
    elif var == "w" and hi == 0:
        acc = min(0, acc)
    n = acc >> SYNAPSE_SHIFT
    if r < (acc - (n << SYNAPSE_SHIFT)) / (1 << SYNAPSE_SHIFT):
        n += 1
    return min(max(n, lo), hi)


def lava_finish_array(acc: I64, var: str, params: Mapping[str, int], r: float) -> I64:
    lo, hi = lava_bounds(var, params)
    if var == "d" or var == "w" and lo == 0:
        acc = np.maximum(0, acc)
    elif var == "w" and hi == 0:
        acc = np.minimum(0, acc)
    n = acc >> SYNAPSE_SHIFT
    n = n + (r < (acc - (n << SYNAPSE_SHIFT)) / (1 << SYNAPSE_SHIFT))
    return np.clip(n, lo, hi)
