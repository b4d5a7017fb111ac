"""The reference engine: the living definition of every target family.

Plain Python integers, one neuron at a time, one axon at a time, in the order the chip
works. Slow on purpose: it must be obviously right. The fast engine is tested against it.

One time step ``t``, per batch element:

1. spikes arrive at axons: an input route delivers channel counts sent at ``t - delay``,
   a neuron route delivers the spike count its source emitted at step ``t - delay``;
2. synaptic accumulation through the crossbar (family specific, below);
3. – 7. the neuron update: current, voltage, refractory, spike test, reset;
8. spikes are recorded, to enter the routes.

Loihi (Lava ``PyLifModelBitAcc`` + ``PyDenseModelBitAcc``)::

    a   = Σ_projections shift(Σ_axons w · count, weight_exp)
    u   = wrap24(trunc(u · (4096 - du - 1) / 4096) + a · 2^6)
    v   = clip(trunc(v · (4096 - dv) / 4096) + u + bias_mant · 2^bias_exp, vmin, vmax)
    refractory counter > 0: v = 0, counter -= 1, no spike
    else spike if v > vth · 2^6; then v = 0, counter = refractory

Xylo (XyloSim ``XyloLayer::evolve``)::

    for axon in ascending order, for each of its spikes: isyn[s] = sat16(isyn[s] + (w << shift))
    isyn[s] -= shift_decay(isyn[s], dash_syn[s])
    dv   = sat16(sat16(-shift_decay(vmem, dash_mem) + Σ_s isyn[s]) + bias)
    vmem = sat16(vmem + dv); while vmem >= threshold (at most 31 / 1 times): spike, vmem -= threshold

TrueNorth (Cassidy et al. 2013)::

    for active axon i with crossbar bit 1, ascending: V = sat20(V + s[G_i])   (stochastic: ± 1 w.p. |s|/256)
    V = sat20(V + Ω · λ), Ω = 1 or sgn(V) with leak reversal              (stochastic: ± Ω w.p. |λ|/256)
    η = ρ & (2^mask_bits - 1)
    V >= α + η: spike, reset by γ (0: V = R, 1: V -= α, 2: keep)
    elif V < -β: κ = 1: V = -β; else 0: V = -R, 1: V += β, 2: keep
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import fixed
from .engine import Wiring

__all__ = ["ReferenceEngine"]


class ReferenceEngine:
    """Runs a Program step by step with Python integers; keeps state between :meth:`run` calls."""

    name = "reference"

    def __init__(self, wiring: Wiring, batch: int, seed: int) -> None:
        self.w = wiring
        self.batch = batch
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        w = self.w
        n = w.n_neurons
        self.t = 0
        self.state = [{k: [0] * n for k in w.state_names} for _ in range(self.batch)]
        self.refractory = [[0] * n for _ in range(self.batch)]
        # history[b][k] = spike counts of step t-1-k (k < max_delay)
        self.neuron_hist = [[[0] * n for _ in range(w.max_delay)] for _ in range(self.batch)]
        self.input_hist = [[[0] * w.n_channels for _ in range(w.max_input_delay + 1)] for _ in range(self.batch)]

    def run(self, inputs: NDArray[np.int64], probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.int64]], NDArray[np.int64]]:
        """``inputs`` ``[B, T, channels]`` (all ports concatenated) → spikes per population
        ``{pop: [B, T, n]}``, probed values ``{probe: [B, T, n]}`` and synaptic operations ``[B, T]``."""
        b_n, t_n, _ = inputs.shape
        w = self.w
        spikes = np.zeros((b_n, t_n, w.n_neurons), dtype=np.int64)
        states = {key: np.zeros((b_n, t_n, w.n_neurons), dtype=np.int64) for key in w.state_names}
        synops = np.zeros((b_n, t_n), dtype=np.int64)
        step = {"loihi": self._step_loihi, "xylo": self._step_xylo, "truenorth": self._step_truenorth}[w.family]
        for t in range(t_n):
            for b in range(b_n):
                self.input_hist[b].insert(0, [int(c) for c in inputs[b, t]])
                self.input_hist[b].pop()
                counts, ops = self._arrivals(b)
                synops[b, t] = ops
                out = step(b, counts, self.t)
                spikes[b, t] = out
                for key in w.state_names:
                    states[key][b, t] = self.state[b][key]
                self.neuron_hist[b].insert(0, out)
                self.neuron_hist[b].pop()
            self.t += 1
        pops = w.program.populations
        by_pop = {name: spikes[:, :, pop.neurons] for name, pop in pops.items()}
        probed = {name: (spikes if var == "spikes" else states[var])[:, :, pops[pop].neurons]
                  for name, (pop, var) in probes.items()}
        return by_pop, probed, synops

    # ------------------------------------------------------------------ step 1
    def _arrivals(self, b: int) -> tuple[list[int], int]:
        """Spike count at every axon this step, and the synaptic operations they cause."""
        w = self.w
        counts = [0] * w.n_axons
        for axon, kind, src, delay in w.axon_sources:
            if kind == 0:
                c = self.input_hist[b][delay][src]
            else:
                c = self.neuron_hist[b][delay - 1][src]
            counts[axon] += c
        ops = 0
        for axon, c in enumerate(counts):
            if c:
                ops += c * w.axon_fanout[axon]
        return counts, ops

    # ------------------------------------------------------------------- loihi
    def _step_loihi(self, b: int, counts: list[int], t: int) -> list[int]:
        w = self.w
        st = self.state[b]
        u, v = st["u"], st["v"]
        ref = self.refractory[b]
        r = w.reg
        out = [0] * w.n_neurons
        for n in range(w.n_neurons):
            acc: dict[int, int] = {}
            for axon, weight in w.neuron_synapses[n]:
                c = counts[axon]
                if c:
                    j = w.axon_projection[axon]
                    acc[j] = acc.get(j, 0) + weight * c
            a = sum(fixed.shift(total, w.weight_exp[j]) for j, total in acc.items())
            un = fixed.mul_shift_trunc(u[n], 4096 - (r["du"][n] + 1), 12) + (a << 6)
            un = fixed.wrap(un, 24)
            bias = r["bias_mant"][n] << r["bias_exp"][n]
            vn = fixed.mul_shift_trunc(v[n], 4096 - r["dv"][n], 12) + un + bias
            vn = fixed.saturate(vn, w.vmin[n], w.vmax[n])
            if ref[n] > 0:
                vn = 0
                ref[n] -= 1
            elif vn > r["vth"][n] << 6:
                out[n] = 1
                vn = 0
                ref[n] = r["refractory"][n]
            u[n], v[n] = un, vn
        return out

    # -------------------------------------------------------------------- xylo
    def _step_xylo(self, b: int, counts: list[int], t: int) -> list[int]:
        w = self.w
        st = self.state[b]
        syn = (st["isyn"], st["isyn2"])
        vmem = st["vmem"]
        r = w.reg
        # delivery: axons in ascending order; every spike adds its shifted weight, saturating
        for axon in range(w.n_axons):
            c = counts[axon]
            if not c:
                continue
            s = w.synapse_index[axon]
            for n, weight in w.axon_synapses[axon]:
                for _ in range(c):
                    syn[s][n] = fixed.sat_add(syn[s][n], weight, 16)
        out = [0] * w.n_neurons
        for n in range(w.n_neurons):
            dashes = (r["dash_syn"][n],) if w.readout[n] else (r["dash_syn"][n], r["dash_syn2"][n])
            total = 0
            for s, dash in enumerate(dashes):
                syn[s][n] -= fixed.shift_decay(syn[s][n], dash)
                total += syn[s][n]
            dv = fixed.sat_add(-fixed.shift_decay(vmem[n], r["dash_mem"][n]), total, 16)
            dv = fixed.sat_add(dv, r["bias"][n], 16)
            vm = fixed.sat_add(vmem[n], dv, 16)
            theta = r["threshold"][n]
            limit = w.max_spikes[n]
            k = 0
            while vm >= theta and k < limit:
                k += 1
                vm -= theta
            vmem[n] = vm
            out[n] = k
        return out

    # --------------------------------------------------------------- truenorth
    def _step_truenorth(self, b: int, counts: list[int], t: int) -> list[int]:
        w = self.w
        v = self.state[b]["v"]
        r = w.reg
        lo, hi = w.v_lo, w.v_hi
        bits = w.rng_bits
        out = [0] * w.n_neurons
        for n in range(w.n_neurons):
            vn = v[n]
            tw = w.type_weights[n]
            stoch = r["stochastic_synapse"][n]
            for axon, _bit in w.neuron_synapses[n]:
                c = counts[axon]
                if not c:
                    continue
                g = w.axon_type[axon]
                s = tw[g]
                for _ in range(c):
                    if stoch >> g & 1:
                        rho = fixed.draw(self.seed, t, n, w.axon_local[axon], bits)
                        vn = fixed.saturate(vn + (fixed.sign(s) if rho < abs(s) else 0), lo, hi)
                    else:
                        vn = fixed.saturate(vn + s, lo, hi)
            lam = r["leak"][n]
            omega = fixed.sign(vn) if r["leak_reversal"][n] else 1
            if r["stochastic_leak"][n]:
                rho = fixed.draw(self.seed, t, n, 256, bits)
                vn = fixed.saturate(vn + (omega * fixed.sign(lam) if rho < abs(lam) else 0), lo, hi)
            else:
                vn = fixed.saturate(vn + omega * lam, lo, hi)
            mask = (1 << r["threshold_mask_bits"][n]) - 1
            eta = fixed.draw(self.seed, t, n, 257, bits) & mask if mask else 0
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
