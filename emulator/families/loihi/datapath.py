"""Loihi's neuron datapath (Lava ``PyLifModelBitAcc`` + ``PyDenseModelBitAcc``), written once:
the plain per-neuron form (the definition, run by the reference engine) and beside it the
vectorised form the fast engine runs, tested against each other.

One step, per neuron (``u`` and ``v`` are the spec's ``[state]`` registers, ``bits_u`` / ``bits_v``
wide)::

    a   = Σ_projections shift(Σ_axons w · count, weight_exp)
    u   = wrap_bits_u(trunc(u · (4096 - du - 1) / 4096) + a · 2^6)        (Lava's half-open wrap)
    v   = clip(trunc(v · (4096 - dv) / 4096) + u + bias_mant · 2^bias_exp, vmin, vmax)
    refractory counter > 0: v = 0, counter -= 1, no spike
    else spike if v > vth · 2^6; then v = 0, counter = refractory

``vmin = max(-2^vmin_exp + 1, -(2^(bits_v-1) - 1))``, ``vmax = min(2^(9 + 2·vmax_exp) - 1,
2^(bits_v-1) - 1)`` (NengoLoihi's per-compartment limits, bounded by the register; Lava clips to
``±(2^23 - 1)`` at 24 bits).

The delivery order does not matter (plain integer sums), so the fast engine sums each
projection's crossbar product over a whole chunk. Its update runs on integer-valued float64:
``trunc(u · (4096 - d) / 4096)`` equals ``sign(p)·(|p| >> 12)`` for ``p = u·(4096 - d)`` while
``|p| < 2^53``, i.e. ``|u| <= 2^41``: widths up to 42 bits are exact (:data:`SUPPORT`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from emulator import fixed
from emulator.families.datapath import Delivery, PopulationStep, ReferenceStep, Support, Synapses, uniform

if TYPE_CHECKING:
    from emulator.engine import Wiring
    from emulator.fast import Lowered
    from hw_specs import HwSpec

__all__ = ["SUPPORT", "HIDDEN", "ORDERED", "slot", "slots", "increments", "stepwise", "limits",
           "reference_step", "population", "compiled", "LoihiPopulation"]

#: 42 bits: the float64 update is exact while |u| · 4095 < 2^53 (module docstring)
SUPPORT: Mapping[str, Support] = {"u": Support((2, 42), ("wrap",)), "v": Support((2, 42), ("saturate",))}
HIDDEN = ("refractory",)
ORDERED = False


def slot(params: Mapping[str, int]) -> int:
    """One synaptic state (``u``) per neuron."""
    return 0


def slots(readout: bool) -> int:
    return 1


def increments(syn: Synapses, params: Sequence[Mapping[str, int]], registers: Mapping[str, NDArray[np.int64]],
               spec: HwSpec) -> NDArray[np.int64]:
    """The stored weight (already truncated to ``num_weight_bits``); ``weight_exp`` applies to a
    projection's sum, in the update."""
    return syn.weight.astype(np.int64)


def stepwise(registers: Mapping[str, NDArray[np.int64]]) -> NDArray[np.bool_]:
    return np.zeros(registers["vth"].shape[0], dtype=bool)


def limits(registers: Mapping[str, NDArray[np.int64]], spec: HwSpec) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(vmin, vmax)`` per neuron (module docstring), int64."""
    hi = fixed.limits(spec.state["v"].bits)[1]
    one = np.int64(1)
    vmin = np.maximum(-np.left_shift(one, registers["vmin_exp"].astype(np.int64)) + 1, -hi)
    vmax = np.minimum(np.left_shift(one, 9 + 2 * registers["vmax_exp"].astype(np.int64)) - 1, hi)
    return vmin, vmax


def _weight_exp(params: Sequence[Mapping[str, int]]) -> list[int]:
    return [int(pr.get("weight_exp", 0)) for pr in params]


# ------------------------------------------------------------------ the definition
def reference_step(wiring: Wiring, seed: int) -> ReferenceStep:
    """The per-neuron update on Python integers (module docstring), over ``wiring``'s tables."""
    lists = wiring.lists
    r = lists.reg
    n_neurons = wiring.n_neurons
    vmin, vmax = (x.tolist() for x in limits(wiring.registers, wiring.spec))
    weight_exp = _weight_exp(wiring.projection_params)
    bits_u = wiring.spec.state["u"].bits
    synapses = lists.neuron_synapses
    axon_projection = lists.axon_projection

    def step(state: dict[str, list[int]], counts: list[int], t: int) -> list[int]:
        u, v, ref = state["u"], state["v"], state["refractory"]
        out = [0] * n_neurons
        for n in range(n_neurons):
            acc: dict[int, int] = {}
            for axon, weight in synapses[n]:
                c = counts[axon]
                if c:
                    j = axon_projection[axon]
                    acc[j] = acc.get(j, 0) + weight * c
            a = sum(fixed.shift(total, weight_exp[j]) for j, total in acc.items())
            un = fixed.mul_shift_trunc(u[n], 4096 - (r["du"][n] + 1), 12) + (a << 6)
            un = fixed.wrap(un, bits_u)
            bias = r["bias_mant"][n] << r["bias_exp"][n]
            vn = fixed.mul_shift_trunc(v[n], 4096 - r["dv"][n], 12) + un + bias
            vn = fixed.saturate(vn, vmin[n], vmax[n])
            if ref[n] > 0:
                vn = 0
                ref[n] -= 1
            elif vn > r["vth"][n] << 6:
                out[n] = 1
                vn = 0
                ref[n] = r["refractory"][n]
            u[n], v[n] = un, vn
        return out

    return step


# ------------------------------------------------------------- the vectorised form
class LoihiPopulation(PopulationStep):
    """The update over ``[batch, n]`` integer-valued float64 arrays (exact: module docstring)."""

    def __init__(self, registers: Mapping[str, NDArray[np.int64]], params: Sequence[Mapping[str, int]],
                 spec: HwSpec, batch: int) -> None:
        r = {k: uniform(v) for k, v in registers.items()}
        self.size = int(registers["vth"].shape[0])
        self.batch = batch
        self.bits_u = spec.state["u"].bits
        self.weight_exp = _weight_exp(params)
        vmin, vmax = limits(registers, spec)
        self.refractory_reg = r["refractory"]
        # (4096 - d)/4096 is exact in float64, and so is u times it (< 2^53: module docstring)
        self.ku = (4096.0 - (r["du"] + 1)) / 4096.0
        self.kv = (4096.0 - r["dv"]) / 4096.0
        self.bias = np.left_shift(r["bias_mant"], r["bias_exp"]).astype(np.float64)
        self.vth = np.left_shift(r["vth"], 6).astype(np.float64)
        self.vmin = vmin.astype(np.float64)
        self.vmax = vmax.astype(np.float64)
        self.has_refractory = bool((r["refractory"] > 0).any())
        self.has_bias = bool((r["bias_mant"] != 0).any())
        self.reset()

    def reset(self) -> None:
        shape = (self.batch, self.size)
        self.state = {"u": np.zeros(shape), "v": np.zeros(shape), "refractory": np.zeros(shape, dtype=np.int64)}
        self.scratch = np.zeros(shape)

    def current(self, sums: Mapping[int, NDArray[Any]]) -> NDArray[Any] | None:
        """``a = Σ_projections shift(Σ w·count, weight_exp)``, time-major ``[t, B, n]``; the step
        aligns it (``· 2^6``). A single exponent-0 projection's sums pass through as they are
        (int32 or float32 from the products: no chunk-sized conversion)."""
        out: NDArray[Any] | None = None
        for j, total in sums.items():
            exp = self.weight_exp[j]
            term = total if exp == 0 else fixed.shift_float(total.astype(np.float64), exp)
            out = term if out is None else out.astype(np.float64) + term
        return out

    def step(self, drive: Any, delivery: Delivery, t: int, t_global: int) -> NDArray[np.bool_]:
        """One step; ``drive`` is the synaptic input ``a`` of :meth:`current` (``[B, n]``)."""
        st = self.state
        u, v = st["u"], st["v"]
        np.trunc(np.multiply(u, self.ku, out=u), out=u)  # == sign(p)(|p| >> 12), see module doc
        np.multiply(drive, 64.0, out=self.scratch)  # the 6-bit MSB alignment, exact in float64
        u += self.scratch
        fixed.wrap_float_inplace(u, self.bits_u)
        np.trunc(np.multiply(v, self.kv, out=v), out=v)
        v += u
        if self.has_bias:
            v += self.bias
        np.minimum(v, self.vmax, out=v)
        np.maximum(v, self.vmin, out=v)
        spikes = v > self.vth
        if self.has_refractory:
            ref = st["refractory"]
            held = ref > 0
            spikes &= ~held
            v[held] = 0.0
            ref[held] -= 1
            ref[spikes] = np.broadcast_to(self.refractory_reg, spikes.shape)[spikes]
        np.copyto(v, 0.0, where=spikes)
        return spikes


def population(net: Lowered, q: int, batch: int, seed: int) -> LoihiPopulation:
    return LoihiPopulation(net.populations[q].registers, net.projections, net.spec, batch)


def compiled(wiring: Wiring, batch: int) -> None:
    """No compiled runner: the numpy update is at BLAS speed already."""
    return None
