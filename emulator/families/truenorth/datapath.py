"""TrueNorth's neuron datapath (Cassidy et al. 2013), written once: the plain per-neuron form (the
definition, run by the reference engine) and beside it the vectorised form the fast engine runs,
tested against each other.

One step (``sat`` saturates into the spec's ``[state] v``, ``bits`` wide)::

    for active axon i with crossbar bit 1, ascending: V = sat(V + s[G_i])   (stochastic: ± 1 w.p. |s|/256)
    V = sat(V + Ω · λ), Ω = 1 or sgn(V) with leak reversal              (stochastic: ± Ω w.p. |λ|/256)
    η = ρ & (2^mask_bits - 1)
    V >= α + η: spike, reset by γ (0: V = R, 1: V -= α, 2: keep)
    elif V < -β: κ = 1: V = -β; else 0: V = -R, 1: V += β, 2: keep

``s[G]`` is the post neuron's weight for the axon's type ``G`` (the synaptic increment). ρ is a
``chip.threshold_rng_bits``-wide draw of :func:`emulator.fixed.draw`. Every addition saturates, so
the delivery order matters when a partial sum could leave the register (:data:`ORDERED`); V
lives in int64 and the drive in float64: widths up to 48 bits are exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from emulator import fixed
from emulator.families.datapath import Delivery, PopulationStep, ReferenceStep, Support, Synapses, uniform
from spikeforge.errors import EmulatorError

if TYPE_CHECKING:
    from emulator.engine import Wiring
    from emulator.fast import Lowered
    from hw_specs import HwSpec

__all__ = ["SUPPORT", "HIDDEN", "ORDERED", "slot", "slots", "increments", "stepwise", "reference_step",
           "population", "compiled", "TrueNorthPopulation"]

SUPPORT: Mapping[str, Support] = {"v": Support((2, 48), ("saturate",))}
HIDDEN: tuple[str, ...] = ()
ORDERED = True
#: the draw slots of the leak and the threshold (axon slots are the local axon index, < 256)
LEAK_SLOT = 256
THRESHOLD_SLOT = 257


def slot(params: Mapping[str, int]) -> int:
    return 0


def slots(readout: bool) -> int:
    return 1


def increments(syn: Synapses, params: Sequence[Mapping[str, int]], registers: Mapping[str, NDArray[np.int64]],
               spec: HwSpec) -> NDArray[np.int64]:
    """``s[G]``: the post neuron's type weight for the type of the synapse's axon (a crossbar bit
    of 1 is a connection)."""
    return registers["type_weights"][syn.post, syn.axon_type].astype(np.int64)


def stepwise(registers: Mapping[str, NDArray[np.int64]]) -> NDArray[np.bool_]:
    """Neurons with a stochastic synapse mode draw one number per synapse, in order."""
    return registers["stochastic_synapse"] != 0


def _synaptic_event(x: int, s: int, draw: int, stochastic: bool, lo: int, hi: int) -> int:
    """One synaptic event: ``sat(V + s)``, or ``sat(V ± 1)`` with probability ``|s| / 2^bits``."""
    if stochastic:
        return fixed.saturate(x + (fixed.sign(s) if draw < abs(s) else 0), lo, hi)
    return fixed.saturate(x + s, lo, hi)


# ------------------------------------------------------------------ the definition
def reference_step(wiring: Wiring, seed: int) -> ReferenceStep:
    """The per-neuron update on Python integers (module docstring), over ``wiring``'s tables."""
    lists = wiring.lists
    r = lists.reg
    n_neurons = wiring.n_neurons
    lo, hi = fixed.limits(wiring.spec.state["v"].bits)
    bits = wiring.spec.chip.threshold_rng_bits
    synapses = lists.neuron_synapses
    axon_type = lists.axon_type
    axon_local = lists.axon_local

    def step(state: dict[str, list[int]], counts: list[int], t: int) -> list[int]:
        v = state["v"]
        out = [0] * n_neurons
        for n in range(n_neurons):
            vn = v[n]
            stoch = r["stochastic_synapse"][n]
            for axon, s in synapses[n]:
                c = counts[axon]
                if not c:
                    continue
                g = axon_type[axon]
                for _ in range(c):
                    is_stoch = bool(stoch >> g & 1)
                    rho = fixed.draw(seed, t, n, axon_local[axon], bits) if is_stoch else 0
                    vn = _synaptic_event(vn, s, rho, is_stoch, lo, hi)
            lam = r["leak"][n]
            omega = fixed.sign(vn) if r["leak_reversal"][n] else 1
            if r["stochastic_leak"][n]:
                rho = fixed.draw(seed, t, n, LEAK_SLOT, bits)
                vn = fixed.saturate(vn + (omega * fixed.sign(lam) if rho < abs(lam) else 0), lo, hi)
            else:
                vn = fixed.saturate(vn + omega * lam, lo, hi)
            mask = (1 << r["threshold_mask_bits"][n]) - 1
            eta = fixed.draw(seed, t, n, THRESHOLD_SLOT, bits) & mask if mask else 0
            alpha, beta = r["threshold"][n], r["neg_threshold"][n]
            mode, reset = r["reset_mode"][n], r["reset_value"][n]
            if vn >= alpha + eta:
                out[n] = 1
                vn = reset if mode == 0 else vn - alpha if mode == 1 else vn
            elif vn < -beta:
                if r["neg_saturate"][n]:
                    vn = -beta
                else:
                    vn = -reset if mode == 0 else vn + beta if mode == 1 else vn
            v[n] = fixed.saturate(vn, lo, hi)
        return out

    return step


# ------------------------------------------------------------- the vectorised form
class TrueNorthPopulation(PopulationStep):
    """The update over int64 ``[batch, n]`` V. Neurons with stochastic synapses integrate their
    synapses one at a time from the axon tables of ``order`` (a Program's :class:`Wiring`)."""

    def __init__(self, q: int, registers: Mapping[str, NDArray[np.int64]], neurons: NDArray[np.int64],
                 spec: HwSpec, batch: int, seed: int, order: Wiring | None) -> None:
        self.q = q
        self.size = int(neurons.size)
        self.neurons = neurons.astype(np.int64)
        self.batch = batch
        self.seed = seed
        self.lo, self.hi = fixed.limits(spec.state["v"].bits)
        self.rng_bits = spec.chip.threshold_rng_bits
        self.r = {k: uniform(v) for k, v in registers.items() if k != "type_weights"}
        self.stochastic = np.flatnonzero(stepwise(registers)).tolist()
        self.stochastic_mask = registers["stochastic_synapse"].tolist()
        if self.stochastic and order is None:
            raise EmulatorError("stochastic synapses need the axon order of a Program (a lowered netlist has none)")
        self.order = order
        self.reset()

    def reset(self) -> None:
        self.state = {"v": np.zeros((self.batch, self.size), dtype=np.int64)}

    def current(self, sums: Mapping[int, NDArray[Any]]) -> NDArray[Any] | None:
        raise NotImplementedError("truenorth delivers in order: the engine passes (pos, neg) drives")

    def step(self, drive: Any, delivery: Delivery, t: int, t_global: int) -> NDArray[np.int64]:
        """One step; ``drive = (pos, neg)`` ``[B, 1, n]`` float parts of the synaptic input, or
        ``(None, None)``."""
        pos, neg = drive
        r = self.r
        v = self.state["v"]
        lo, hi = self.lo, self.hi
        if pos is not None and neg is not None:
            add = (pos[:, 0] + neg[:, 0]).astype(np.int64)
            up = v + pos[:, 0]
            down = v + neg[:, 0]
            bad = (up > hi) | (down < lo)
            new = v + add
            for b in np.flatnonzero(bad.any(axis=1)).tolist():
                new[b] = delivery.in_order(self.q, b, v[b], add[b], t, lo, hi, 0)
            v[:] = new
        for i in self.stochastic:
            self._stochastic_synapses(i, delivery, t, t_global)
        lam = r["leak"]
        omega = np.where(r["leak_reversal"] != 0, np.sign(v), 1)
        if (r["stochastic_leak"] != 0).any():
            rho_leak = fixed.draw_array(self.seed, t_global, self.neurons, LEAK_SLOT, self.rng_bits)
            stoch_leak = np.where(rho_leak < np.abs(lam), np.sign(lam), 0)
            leak = np.where(r["stochastic_leak"] != 0, stoch_leak, lam)
        else:
            leak = lam
        v[:] = np.clip(v + omega * leak, lo, hi)
        mask = np.left_shift(1, r["threshold_mask_bits"]) - 1
        eta: NDArray[Any] | int
        if mask.any():
            eta = fixed.draw_array(self.seed, t_global, self.neurons, THRESHOLD_SLOT, self.rng_bits) & mask
        else:
            eta = 0
        alpha, beta = r["threshold"], r["neg_threshold"]
        mode, reset = r["reset_mode"], r["reset_value"]
        spikes = v >= alpha + eta
        below = ~spikes & (v < -beta)
        pos_reset = np.where(mode == 0, reset, np.where(mode == 1, v - alpha, v))
        neg_reset = np.where(r["neg_saturate"] != 0, -beta,
                             np.where(mode == 0, -reset, np.where(mode == 1, v + beta, v)))
        v[:] = np.clip(np.where(spikes, pos_reset, np.where(below, neg_reset, v)), lo, hi)
        return spikes.astype(np.int64)

    def _stochastic_synapses(self, i: int, delivery: Delivery, t: int, t_global: int) -> None:
        """Local neuron ``i``'s synapses, one at a time in the chip's order (per-synapse draws)."""
        assert self.order is not None
        lists = self.order.lists
        v = self.state["v"]
        nid = int(self.neurons[i])
        mask = self.stochastic_mask[i]
        for b in range(self.batch):
            x = int(v[b, i])
            for axon, s in lists.neuron_synapses[nid]:
                c = delivery.arrivals(axon, b, t)
                if not c:
                    continue
                g = lists.axon_type[axon]
                for _ in range(c):
                    is_stoch = bool(mask >> g & 1)
                    rho = fixed.draw(self.seed, t_global, nid, lists.axon_local[axon], self.rng_bits) if is_stoch else 0
                    x = _synaptic_event(x, s, rho, is_stoch, self.lo, self.hi)
            v[b, i] = x


def population(net: Lowered, q: int, batch: int, seed: int) -> TrueNorthPopulation:
    pop = net.populations[q]
    return TrueNorthPopulation(q, pop.registers, pop.neurons, net.spec, batch, seed, net.order)


def compiled(wiring: Wiring, batch: int) -> None:
    return None
