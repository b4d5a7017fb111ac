"""Xylo's neuron datapath (XyloSim ``XyloLayer::evolve``), written once: the plain per-neuron form
(the definition, run by the reference engine) and beside it the vectorised form the fast engine
runs, tested against each other; the compiled kernel (:mod:`.kernel`) is built from the same
:mod:`emulator.fixed` primitives.

One step (``sat_r`` saturates into the spec's ``[state]`` register ``r``)::

    for axon in ascending order, for each of its spikes: isyn[s] = sat_isyn[s](isyn[s] + inc)
    isyn[s] -= shift_decay(isyn[s], dash_syn[s])
    dv   = sat_vmem(sat_vmem(-shift_decay(vmem, dash_mem) + Σ_s isyn[s]) + bias)
    vmem = sat_vmem(vmem + dv); while vmem >= threshold (at most 31 / 1 times): spike, vmem -= threshold

``inc = w << weight_shift`` held in the synaptic state's type (XyloSim: an int16 at 16 bits).
A readout neuron has one synaptic state; a hidden neuron two (``isyn``, ``isyn2``).

Every addition into a synaptic state saturates, so the order of deliveries matters when a
partial sum could leave the register (:data:`ORDERED`): the fast engine proves per neuron that
no order saturates (``x + Σ⁺ <= hi`` and ``x + Σ⁻ >= lo``) and otherwise re-accumulates in the
chip's order. The states live in int64 and the drive in float64: widths up to 48 bits are exact.
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

    from .kernel import Runner

__all__ = ["SUPPORT", "HIDDEN", "ORDERED", "SYNAPTIC", "slot", "slots", "increments", "stepwise",
           "reference_step", "population", "compiled", "XyloPopulation", "SMALL"]

SUPPORT: Mapping[str, Support] = {
    "vmem": Support((2, 48), ("saturate",)),
    "isyn": Support((2, 48), ("saturate",)),
    "isyn2": Support((2, 48), ("saturate",)),
}
HIDDEN: tuple[str, ...] = ()
ORDERED = True
#: the synaptic state registers, by slot
SYNAPTIC = ("isyn", "isyn2")
#: populations with at most this many synaptic-state entries (batch · states · neurons) step on
#: Python integers: numpy's per-call cost would dominate (a readout layer)
SMALL = 32


def slot(params: Mapping[str, int]) -> int:
    """The synaptic state a projection feeds (its ``synapse`` field)."""
    return int(params.get("synapse", 0))


def slots(readout: bool) -> int:
    """A readout neuron has one synaptic state, a hidden neuron two."""
    return 1 if readout else 2


def increments(syn: Synapses, params: Sequence[Mapping[str, int]], registers: Mapping[str, NDArray[np.int64]],
               spec: HwSpec) -> NDArray[np.int64]:
    """``w << weight_shift`` converted (two's complement) to the width of the synaptic state it
    feeds, as XyloSim converts it to the int16 increment."""
    shift = np.array([pr.get("weight_shift", 0) for pr in params] or [0], dtype=np.int64)
    state = np.array([slot(pr) for pr in params] or [0], dtype=np.int64)
    bits = np.array([spec.state[name].bits for name in SYNAPTIC], dtype=np.int64)
    out = np.left_shift(syn.weight.astype(np.int64), shift[syn.proj])
    for s, b in enumerate(bits.tolist()):
        sel = state[syn.proj] == s
        out[sel] = fixed.wrap_signed_array(out[sel], b)
    return out


def stepwise(registers: Mapping[str, NDArray[np.int64]]) -> NDArray[np.bool_]:
    return np.zeros(registers["threshold"].shape[0], dtype=bool)


def _limits(spec: HwSpec) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """``([(lo, hi) per synaptic state], (lo, hi) of vmem)``."""
    return [fixed.limits(spec.state[k].bits) for k in SYNAPTIC], fixed.limits(spec.state["vmem"].bits)


# ------------------------------------------------------------------ the definition
def reference_step(wiring: Wiring, seed: int) -> ReferenceStep:
    """The per-neuron update on Python integers (module docstring), over ``wiring``'s tables."""
    lists = wiring.lists
    r = lists.reg
    n_neurons = wiring.n_neurons
    n_axons = wiring.n_axons
    syn_lim, (vlo, vhi) = _limits(wiring.spec)
    axon_slot = [slot(wiring.projection_params[j]) if j >= 0 else 0 for j in lists.axon_projection]
    readout = wiring.readout.tolist()
    max_spikes = wiring.max_spikes.tolist()
    axon_synapses = lists.axon_synapses

    def step(state: dict[str, list[int]], counts: list[int], t: int) -> list[int]:
        syn = (state["isyn"], state["isyn2"])
        vmem = state["vmem"]
        # delivery: axons in ascending order; every spike adds its increment, saturating
        for axon in range(n_axons):
            c = counts[axon]
            if not c:
                continue
            s = axon_slot[axon]
            lo, hi = syn_lim[s]
            for n, weight in axon_synapses[axon]:
                for _ in range(c):
                    syn[s][n] = fixed.saturate(syn[s][n] + weight, lo, hi)
        out = [0] * n_neurons
        for n in range(n_neurons):
            dashes = (r["dash_syn"][n],) if readout[n] else (r["dash_syn"][n], r["dash_syn2"][n])
            total = 0
            for s, dash in enumerate(dashes):
                syn[s][n] -= fixed.shift_decay(syn[s][n], dash)
                total += syn[s][n]
            dv = fixed.saturate(-fixed.shift_decay(vmem[n], r["dash_mem"][n]) + total, vlo, vhi)
            dv = fixed.saturate(dv + r["bias"][n], vlo, vhi)
            vm = fixed.saturate(vmem[n] + dv, vlo, vhi)
            theta = r["threshold"][n]
            limit = max_spikes[n]
            k = 0
            while vm >= theta and k < limit:
                k += 1
                vm -= theta
            vmem[n] = vm
            out[n] = k
        return out

    return step


# ------------------------------------------------------------- the vectorised form
class XyloPopulation(PopulationStep):
    """The update over int64 ``[batch, S, n]`` synaptic states and ``[batch, n]`` vmem."""

    def __init__(self, q: int, registers: Mapping[str, NDArray[np.int64]], readout: bool,
                 max_spikes: NDArray[np.int64], spec: HwSpec, batch: int) -> None:
        self.q = q
        self.size = n = int(registers["threshold"].shape[0])
        self.batch = batch
        self.n_syn = slots(readout)
        r = {k: uniform(v) for k, v in registers.items()}
        syn_lim, (self.vlo, self.vhi) = _limits(spec)
        self.syn_lim = syn_lim[: self.n_syn]
        lo = [lim[0] for lim in self.syn_lim]
        hi = [lim[1] for lim in self.syn_lim]
        # [1, S, 1] bounds when the synaptic states differ in width, else scalars
        uniform_width = len(set(self.syn_lim)) == 1
        self.syn_lo: Any = lo[0] if uniform_width else np.array(lo, dtype=np.int64)[None, :, None]
        self.syn_hi: Any = hi[0] if uniform_width else np.array(hi, dtype=np.int64)[None, :, None]
        self.lo_min, self.hi_min = max(lo), min(hi)  # the conservative bounds of the quick test
        self.dash_each = [r["dash_syn"], r["dash_syn2"]][: self.n_syn]
        self.dash_mem = r["dash_mem"]
        self.bias = r["bias"]
        self.threshold = r["threshold"]
        self.has_bias = bool(np.any(r["bias"] != 0))
        self.max_spikes = uniform(max_spikes)
        # one shift for all synaptic states: [1, S, 1] when each state's dash is uniform
        stack = np.stack([np.broadcast_to(d, (n,)) for d in self.dash_each])[None]
        self.dash_stack = stack[:, :, :1] if all(np.ndim(d) == 0 for d in self.dash_each) else stack
        self.small = {k: np.broadcast_to(r[k], (n,)).tolist() for k in ("dash_mem", "bias", "threshold")}
        self.small["dash_each"] = [np.broadcast_to(d, (n,)).tolist() for d in self.dash_each]
        self.small["max_spikes"] = max_spikes.tolist()
        self.reset()

    def reset(self) -> None:
        # both synaptic states as one [B, S, n] array (S = 1 for a readout): one numpy call updates
        # both; "isyn"/"isyn2" are views for probes
        syn = np.zeros((self.batch, self.n_syn, self.size), dtype=np.int64)
        shape = (self.batch, self.size)
        # a readout's second synaptic state is never fed: it reads 0, as in the reference engine
        isyn2 = syn[:, 1] if self.n_syn == 2 else np.zeros(shape, dtype=np.int64)
        self.state = {"syn": syn, "isyn": syn[:, 0], "isyn2": isyn2, "vmem": np.zeros(shape, dtype=np.int64)}

    def current(self, sums: Mapping[int, NDArray[Any]]) -> NDArray[Any] | None:
        raise NotImplementedError("xylo delivers in order: the engine passes (pos, neg) drives")

    def step(self, drive: Any, delivery: Delivery, t: int, t_global: int) -> NDArray[np.int64]:
        """One step; ``drive = (pos, neg)`` ``[B, S, n]`` float parts of the synaptic input, or
        ``(None, None)``."""
        pos, neg = drive
        syn = self.state["syn"]
        if syn.size <= SMALL:
            return self._step_small(pos, neg, delivery, t)
        if pos is not None and neg is not None:
            add = (pos + neg).astype(np.int64)
            # no ordering of the additions can saturate: the plain sum is the chip's result.
            # Cheap conservative test first (4 reductions), the element-wise one only if it fails.
            risky = syn.max() + pos.max() > self.hi_min or syn.min() + neg.min() < self.lo_min
            if risky:
                up, down = syn + pos, syn + neg
                bad = ((up > self.syn_hi) | (down < self.syn_lo)).any(axis=2)
                risky = bool(bad.any())
            if risky:
                new = syn + add
                for b, s_ in zip(*np.nonzero(bad), strict=True):
                    lo, hi = self.syn_lim[s_]
                    new[b, s_] = delivery.in_order(self.q, int(b), syn[b, s_], add[b, s_], t, lo, hi, int(s_))
                syn[...] = new
            else:
                syn += add
        syn -= fixed.shift_decay_array(syn, self.dash_stack)
        total = syn[:, 0] + syn[:, 1] if syn.shape[1] > 1 else syn[:, 0].copy()
        vmem = self.state["vmem"]
        dv = fixed.saturate_inplace(total - fixed.shift_decay_array(vmem, self.dash_mem), self.vlo, self.vhi)
        if self.has_bias:
            dv += self.bias
            fixed.saturate_inplace(dv, self.vlo, self.vhi)
        vmem += dv
        fixed.saturate_inplace(vmem, self.vlo, self.vhi)
        theta = self.threshold
        k = vmem // theta
        np.maximum(k, 0, out=k)
        np.minimum(k, self.max_spikes, out=k)
        vmem -= k * theta
        return k

    def _step_small(self, pos: NDArray[Any] | None, neg: NDArray[Any] | None, delivery: Delivery,
                    t: int) -> NDArray[np.int64]:
        """:meth:`step` on Python lists, for populations so small that numpy's per-call cost would
        dominate; same equations, same fallback."""
        regs = self.small
        syn, vmem = self.state["syn"], self.state["vmem"]
        vlo, vhi = self.vlo, self.vhi
        b_n, s_n, n = syn.shape
        sy = syn.tolist()
        vm = vmem.tolist()
        pl = pos.tolist() if pos is not None else None
        nl = neg.tolist() if neg is not None else None
        out = []
        dash_each, dash_mem = regs["dash_each"], regs["dash_mem"]
        bias, thresholds, max_spikes = regs["bias"], regs["threshold"], regs["max_spikes"]
        for b in range(b_n):
            for s_ in range(s_n):
                row = sy[b][s_]
                if pl is not None and nl is not None:
                    lo, hi = self.syn_lim[s_]
                    prow, nrow = pl[b][s_], nl[b][s_]
                    if any(row[i] + prow[i] > hi or row[i] + nrow[i] < lo for i in range(n)):
                        add = (pos[b, s_] + neg[b, s_]).astype(np.int64)  # type: ignore[index]
                        row = delivery.in_order(self.q, b, syn[b, s_], add, t, lo, hi, s_).tolist()
                    else:
                        row = [row[i] + int(prow[i] + nrow[i]) for i in range(n)]
                d = fixed.shift_decay_list(row, dash_each[s_])
                sy[b][s_] = [x - y for x, y in zip(row, d, strict=True)]
            total = [x + y for x, y in zip(sy[b][0], sy[b][1], strict=True)] if s_n > 1 else sy[b][0]
            v = vm[b]
            dm = fixed.shift_decay_list(v, dash_mem)
            dv = fixed.saturate_list([x - y for x, y in zip(total, dm, strict=True)], vlo, vhi)
            if self.has_bias:
                dv = fixed.saturate_list([x + y for x, y in zip(dv, bias, strict=True)], vlo, vhi)
            v = fixed.saturate_list([x + y for x, y in zip(v, dv, strict=True)], vlo, vhi)
            k = [min(max(x // th, 0), m) for x, th, m in zip(v, thresholds, max_spikes, strict=True)]
            vm[b] = [x - kk * th for x, kk, th in zip(v, k, thresholds, strict=True)]
            out.append(k)
        syn[...] = sy
        vmem[...] = vm
        return np.array(out, dtype=np.int64)


def population(net: Lowered, q: int, batch: int, seed: int) -> XyloPopulation:
    pop = net.populations[q]
    return XyloPopulation(q, pop.registers, pop.readout, pop.max_spikes, net.spec, batch)


def compiled(wiring: Wiring, batch: int) -> Runner | None:
    """The numba kernel's runner (:mod:`.kernel`) when numba is installed and
    ``SPIKEFORGE_EMULATOR_JIT`` is not ``0``; otherwise None (the numpy path runs)."""
    from . import kernel

    if not kernel.load():
        return None
    return kernel.Runner(wiring, batch)
