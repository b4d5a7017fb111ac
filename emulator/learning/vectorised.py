"""The fast engine's learning path: a Program with plastic projections, step by step over
``[batch, n]`` arrays, learning as :mod:`emulator.learning.epoch` defines, bit for bit.

A learning network's weights change every epoch and differ per batch element, so the fast
engine's layer-major chunks (one product over all steps) do not apply: :class:`PlasticRunner`
advances one step at a time, every population through the family's vectorised update
(``datapath.population``), every projection as one product per step (a plastic one per batch
element, ``[B, pre] × [B, pre, post]``), and the learning engine's traces and sum-of-products
updates over ``[B, units]`` and ``[B, synapses]`` int64 arrays with the family's array forms. The
fast engine routes a Program here when it has a plastic projection (:func:`plastic_runner`);
every other Program keeps the fast engine's own path.

Exactness: the drive is a sum of ``count · increment`` in float64, exact while below 2^53 (a
Loihi weight is at most 2^8 in magnitude, a count 1); everything else is int64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spikeforge.errors import EmulatorError

from ..families.datapath import PopulationStep, Synapses
from .epoch import PURPOSE_DECAY, PURPOSE_IMPULSE, PURPOSE_REPEAT, PURPOSE_ROUND
from .lava import LavaRandom, LavaStep
from .plasticity import TRACES
from .wiring import PlasticProjection, has_plasticity, plastic_projections

__all__ = ["PlasticRunner", "PlasticState", "plastic_runner"]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
_VARS = "wdt"


def plastic_runner(wiring: Any, batch: int, seed: int) -> PlasticRunner | None:
    """The learning path for ``wiring``'s Program, or None when nothing in it is plastic."""
    if not has_plasticity(wiring.program):
        return None
    return PlasticRunner(wiring, batch, seed)


class PlasticState:
    """One plastic projection's learning state over the batch: traces ``[B, units]``, spike times
    ``tx [B, pre]``, ``ty`` / ``tr [B, post]``, synaptic variables ``z[var] [B, n_syn]`` (int64)."""

    def __init__(self, pp: PlasticProjection, weights: I64, batch: int, seed: int) -> None:
        self.pp = pp
        self.batch = batch
        self.seed = seed
        self._batches = np.arange(batch)
        rule = pp.plasticity.rule
        self.lava = LavaRandom(rule.rng_seed, pp.plasticity.epoch) if rule.random == "lava" else None
        self.trace = {name: np.zeros((batch, pp.n_pre if name[0] == "x" else pp.n_post), dtype=np.int64)
                      for name in TRACES}
        self.tx = np.zeros((batch, pp.n_pre), dtype=np.int64)
        self.ty = np.zeros((batch, pp.n_post), dtype=np.int64)
        self.tr = np.zeros((batch, pp.n_post), dtype=np.int64)
        n = pp.synapses.size
        self.z = {"w": np.broadcast_to(weights, (batch, n)).copy(), "d": np.zeros((batch, n), dtype=np.int64),
                  "t": np.zeros((batch, n), dtype=np.int64)}

    def _draws(self, step: int, purpose: int, n: int, bits: int) -> I64:
        eng = self.pp.plasticity.engine
        return eng.draw_array(self.seed, self._batches, self.pp.index, step, purpose, np.arange(n), bits)

    def observe(self, g: int, pre: NDArray[np.bool_], post: NDArray[np.bool_], reward: NDArray[np.bool_] | None
                ) -> bool:
        """Step ``g``'s spikes ``[B, units]`` (``reward``: per post neuron); learns at an epoch's last
        step and returns whether the synaptic variables changed."""
        pl = self.pp.plasticity
        eng, T = pl.engine, pl.epoch
        s = g % T + 1
        ls = self.lava.step(g) if self.lava is not None else None
        y_traces: tuple[str, ...] = ("y1", "y2") if reward is not None else ("y1", "y2", "y3")
        groups: list[tuple[I64, NDArray[np.bool_], tuple[str, ...]]] = [
            (self.tx, pre, ("x1", "x2")), (self.ty, post, y_traces)]
        if reward is not None:
            groups.append((self.tr, reward, ("y3",)))
        for times, spk, names in groups:
            repeat = spk & (times > 0)
            if repeat.any():
                for name in names:
                    k = TRACES.index(name)
                    tr = self.trace[name]
                    if ls is not None:  # Lava: a repeated pre spike rounds with 0, a post spike with its number
                        lr = 0 if name[0] == "x" else ls.post_impulse
                        tr[repeat] = eng.lava_add_impulse_array(tr, pl.impulse[k], lr, pl.trace_hi)[repeat]
                        continue
                    r = self._draws(g, PURPOSE_REPEAT + k, spk.shape[1], eng.IMPULSE_FRACTION_BITS)
                    tr[repeat] = eng.add_impulse_array(tr, pl.impulse[k], r, pl.trace_hi, pl.rule.nearest)[repeat]
            times[spk] = s
        if s < T:
            return False
        self.end_epoch(g // T, ls)
        return True

    def _history(self, name: str, times: I64, e: int, ls: LavaStep | None) -> I64:
        """``h[s, b, unit]`` for ``s = 0..T`` (Lava's numbers when ``ls`` is given)."""
        pl = self.pp.plasticity
        eng, T = pl.engine, pl.epoch
        k = TRACES.index(name)
        start = self.trace[name]
        h = np.empty((T + 1, *start.shape), dtype=np.int64)
        h[0] = start
        n = start.shape[1]
        for s in range(1, T + 1):
            g = e * T + s - 1
            cur = h[s - 1]
            if ls is not None:
                x_trace = name[0] == "x"
                cur = eng.lava_decay_array(cur, pl.lava_decay[k], ls.x_decay if x_trace else ls.y_decay)
                hit = times == s
                if hit.any():
                    imp = eng.lava_add_impulse_array(cur, pl.impulse[k], ls.x_impulse if x_trace else ls.y_impulse,
                                                     pl.trace_hi)
                    cur[hit] = imp[hit]
                h[s] = cur
                continue
            if cur.any():  # a zero trace decays to 0 whatever the draw
                cur = eng.decay_array(cur, pl.decay[k], self._draws(g, PURPOSE_DECAY + k, n, eng.DECAY_BITS))
            else:
                cur = cur.copy()
            hit = times == s
            if hit.any():
                r = self._draws(g, PURPOSE_IMPULSE + k, n, eng.IMPULSE_FRACTION_BITS)
                cur[hit] = eng.add_impulse_array(cur, pl.impulse[k], r, pl.trace_hi, pl.rule.nearest)[hit]
            h[s] = cur
        return h

    def end_epoch(self, e: int, ls: LavaStep | None = None) -> None:
        """:func:`emulator.learning.epoch.end_epoch` over the batch."""
        pp = self.pp
        pl = pp.plasticity
        eng, T = pl.engine, pl.epoch
        acc_lo = eng.LAVA_ACCUMULATOR_LO if ls is not None else -(1 << (eng.ACCUMULATOR_BITS - 1))
        times = {"x1": self.tx, "x2": self.tx, "y1": self.ty, "y2": self.ty,
                 "y3": self.tr if pp.reward_units is not None else self.ty}
        hist = {name: self._history(name, times[name], e, ls) for name in TRACES}
        old = {v: z.copy() for v, z in self.z.items()}
        bidx = np.arange(self.batch)[:, None]
        pre, post = pp.pre[None, :], pp.post[None, :]
        tx, ty = self.tx[:, pp.pre], self.ty[:, pp.post]  # [B, n_syn]
        n_syn = pp.synapses.size
        for eq in pl.equations:
            var = eq.target[1]
            lo, hi, k = eng.variable_bounds(var, pp.params)
            acc = old[var] << eng.SYNAPSE_SHIFT
            for p in eq.products:
                if p.dependency == "x0":
                    dep, at = tx > 0, tx
                elif p.dependency == "y0":
                    dep, at = ty > 0, ty
                else:
                    on = (e + 1) % (1 << p.decimate) == 0
                    dep = np.full((self.batch, n_syn), on)
                    at = np.full((self.batch, n_syn), T, dtype=np.int64)
                if not dep.any():
                    continue
                values, width = [], 0
                for f in p.factors:
                    if f.var == "x0":
                        raw = (tx > 0).astype(np.int64)
                    elif f.var == "y0":
                        raw = (ty > 0).astype(np.int64)
                    elif f.var in ("w", "d", "t"):
                        raw = old[f.var]
                    else:
                        raw = hist[f.var][at, bidx, pre if f.var[0] == "x" else post]
                    bits = pl.widths[f.var]
                    width += bits
                    values.append(eng.factor_array(raw, f.const, f.sgn, bits))
                acc = eng.accumulate_array(acc, eng.term_array(dep, values, p.mantissa, p.exponent, width, acc_lo),
                                           acc_lo)
            if ls is not None:
                assert ls.conn is not None
                self.z[var] = eng.lava_finish_array(acc, var, pp.params, ls.conn)
                continue
            r = self._draws(e, PURPOSE_ROUND + _VARS.index(var), n_syn, eng.SYNAPSE_SHIFT + k)
            self.z[var] = eng.finish_array(acc, lo, hi, k, r)
        for name in TRACES:
            self.trace[name] = hist[name][T]
        for arr in (self.tx, self.ty, self.tr):
            arr[:] = 0

    def probe(self, var: str) -> I64:
        """``[B, post, pre]`` for a synaptic variable (0 where no synapse), ``[B, units]`` for a trace."""
        if var in self.trace:
            return self.trace[var].copy()
        out = np.zeros((self.batch, self.pp.n_post, self.pp.n_pre), dtype=np.int64)
        out[:, self.pp.post, self.pp.pre] = self.z[var]
        return out


class PlasticRunner:
    """Runs a Program with plastic projections step by step over ``[batch, n]`` arrays (module
    docstring); the fast engine's ``runner`` for such a Program. Keeps state between :meth:`run` calls."""

    def __init__(self, wiring: Any, batch: int, seed: int) -> None:
        from ..fast import Lowered  # the fast engine's lowering (imports this module lazily)

        net = Lowered.from_wiring(wiring)
        self.wiring = wiring
        self.net = net
        self.batch = batch
        self.seed = seed
        self.datapath = wiring.datapath
        if self.datapath.ORDERED:
            raise EmulatorError(f"on-chip learning for the {net.family} family (ordered delivery) is not implemented")
        program = wiring.program
        self.pops = list(net.populations)
        self.pop_index = {pop.name: q for q, pop in enumerate(self.pops)}
        self.projections = plastic_projections(program)
        self.by_name = {pp.name: i for i, pp in enumerate(self.projections)}
        plastic = {pp.index for pp in self.projections}
        self.src_sizes = [net.n_channels] + [pop.size for pop in self.pops]
        # fixed edges: one float64 [pre, post] matrix per (source, post population, projection, delay)
        mats: dict[tuple[int, int, int, int], F64] = {}
        plastic_edges: dict[int, set[tuple[int, int, int]]] = {j: set() for j in plastic}
        for blk in net.synapses.blocks:
            if blk.proj in plastic:
                plastic_edges[blk.proj].add((blk.src, blk.post_pop, blk.delay))
                continue
            m = mats.setdefault(blk.edge, np.zeros((self.src_sizes[blk.src], self.pops[blk.post_pop].size)))
            np.add.at(m, (blk.pre.astype(np.int64), blk.post.astype(np.int64)), blk.increment.astype(np.float64))
        self.fixed = [(k, q, j, d, m) for (k, q, j, d), m in sorted(mats.items())]
        self.plastic_edge: list[tuple[int, int, int]] = []
        for pp in self.projections:
            edges = plastic_edges[pp.index]
            if len(edges) != 1:
                raise EmulatorError(f"plastic projection {pp.name!r}: its synapses form {len(edges)} edges (source, "
                                    "post population, delay); the learning path needs exactly one")
            self.plastic_edge.append(next(iter(edges)))
        proj = program.projections
        self.reward_source = [self._source(proj[pp.index].plasticity.reward) if pp.reward_units is not None else None
                              for pp in self.projections]
        self.pre_source = [self._source(proj[pp.index].pre) for pp in self.projections]
        self.post_pop = [self.pop_index[proj[pp.index].post] for pp in self.projections]
        self.din = net.max_input_delay
        self.dmax = net.max_delay
        self.steps: list[PopulationStep] = [self.datapath.population(net, q, batch, seed)
                                            for q in range(len(self.pops))]
        self.reset()

    def _source(self, name: str) -> int:
        return 0 if name in self.wiring.program.input_ports else 1 + self.pop_index[name]

    def reset(self) -> None:
        self.t = 0
        for s in self.steps:
            s.reset()
        w0 = self.wiring.program.syn_weight.astype(np.int64)
        self.states = [PlasticState(pp, w0[pp.synapses], self.batch, self.seed) for pp in self.projections]
        self.matrices = [self._matrix(i) for i in range(len(self.projections))]
        b = self.batch
        self.hist = [np.zeros((self.din, b, self.net.n_channels))]
        self.hist += [np.zeros((self.dmax, b, pop.size)) for pop in self.pops]

    def _matrix(self, i: int) -> F64:
        """The plastic projection's increments per batch element, float64 ``[B, pre, post]``."""
        pp, st = self.projections[i], self.states[i]
        k, q, _d = self.plastic_edge[i]
        w = self.wiring
        n_syn = pp.synapses.size
        b_n = self.batch
        p = w.program
        axon_type = p.axon_type.astype(np.int64)[p.syn_axon[pp.synapses]]
        syn = Synapses(weight=st.z["w"].reshape(-1), proj=np.full(b_n * n_syn, pp.index, dtype=np.int64),
                       post=np.tile(p.syn_neuron[pp.synapses].astype(np.int64), b_n),
                       axon_type=np.tile(axon_type, b_n))
        inc = np.asarray(w.datapath.increments(syn, w.projection_params, w.registers, p.spec)).reshape(b_n, n_syn)
        m = np.zeros((b_n, self.src_sizes[k], self.pops[q].size))
        bidx = np.repeat(np.arange(b_n), n_syn)
        np.add.at(m, (bidx, np.tile(pp.pre, b_n), np.tile(pp.post, b_n)), inc.reshape(-1).astype(np.float64))
        return m

    # ------------------------------------------------------------------ Delivery (unused)
    def in_order(self, q: int, b: int, start: I64, add: I64, t: int, lo: int, hi: int, slot: int) -> I64:
        raise EmulatorError("the learning path has no in-order delivery (ordered families do not learn)")

    def arrivals(self, axon: int, b: int, t: int) -> int:
        raise EmulatorError("the learning path has no per-axon arrivals (ordered families do not learn)")

    # ------------------------------------------------------------------------------- run
    def step_bytes(self, probes: Mapping[str, tuple[str, str]]) -> int:
        """Bytes per step and sample of :meth:`run` (an upper estimate): the float64 input and
        spike histories and drives, and each probe's record and copy (a plastic projection's
        probe counted at its synapse count)."""
        n = sum(self.src_sizes)
        total = 8 * (2 * n + self.src_sizes[0])
        for who, _var in probes.values():
            if who in self.pop_index:
                total += 16 * self.pops[self.pop_index[who]].size
            else:
                total += 16 * int(self.projections[self.by_name[who]].synapses.size)
        return total

    def learned_weights(self, b: int) -> dict[int, I64]:
        """Per plastic projection index, its synapses' learned weights (batch element ``b``)."""
        return {pp.index: st.z["w"][b].copy() for pp, st in zip(self.projections, self.states, strict=True)}

    def run(self, inputs: I64, probes: Mapping[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[Any]], dict[str, I64], I64]:
        """As the fast engine's ``run``: spikes per population ``{pop: [B, T, n]}``, probes, synaptic
        operations ``[B, T]``."""
        b_n, t_n, _ = inputs.shape
        net = self.net
        x_now = np.moveaxis(inputs[:, :, : net.n_channels], 1, 0).astype(np.float64)
        ext = [np.concatenate([self.hist[0], x_now], axis=0)]
        ext += [np.concatenate([self.hist[1 + q], np.zeros((t_n, b_n, pop.size))], axis=0)
                for q, pop in enumerate(self.pops)]
        offsets = [self.din] + [self.dmax] * len(self.pops)
        state_probes = {name: (self.pop_index[pop], var) for name, (pop, var) in probes.items()
                        if pop in self.pop_index and var != "spikes"}
        learn_probes = {name: (self.by_name[proj], var) for name, (proj, var) in probes.items()
                        if proj not in self.pop_index}
        rec: dict[str, list[I64]] = {name: [] for name in (*state_probes, *learn_probes)}
        synops = np.zeros((t_n, b_n), dtype=np.int64)
        for t in range(t_n):
            g = self.t + t
            drive: dict[int, dict[int, F64]] = {}
            for k, q, j, d, m in self.fixed:
                x = ext[k][offsets[k] + t - d]
                acc = drive.setdefault(q, {})
                acc[j] = acc.get(j, 0.0) + x @ m
            for i, (k, q, d) in enumerate(self.plastic_edge):
                x = ext[k][offsets[k] + t - d]
                j = self.projections[i].index
                acc = drive.setdefault(q, {})
                acc[j] = acc.get(j, 0.0) + np.matmul(x[:, None, :], self.matrices[i])[:, 0, :]
            for q, step in enumerate(self.steps):
                sums = drive.get(q)
                cur = step.current({j: v[None] for j, v in sums.items()}) if sums else None
                a = cur[0] if cur is not None else np.zeros((b_n, self.pops[q].size))
                ext[1 + q][offsets[1 + q] + t] = step.step(a, self, t, g)
            for src, d, vec in net.synops:
                synops[t] += np.rint(ext[src][offsets[src] + t - d] @ vec.astype(np.float64)).astype(np.int64)
            for i, st in enumerate(self.states):
                pp = st.pp
                k, q = self.pre_source[i], self.post_pop[i]
                row = ext[k][offsets[k] + t] > 0
                pre = row[:, pp.pre_units if k == 0 else np.arange(pp.n_pre)]
                post = ext[1 + q][offsets[1 + q] + t] > 0
                reward = None
                rk = self.reward_source[i]
                if rk is not None:
                    assert pp.reward_units is not None
                    rrow = ext[rk][offsets[rk] + t] > 0
                    r = rrow[:, pp.reward_units if rk == 0 else np.arange(pp.reward_units.size)]
                    reward = np.broadcast_to(r.any(axis=1, keepdims=True), post.shape) if r.shape[1] == 1 else r
                if st.observe(g, pre, post, reward):
                    self.matrices[i] = self._matrix(i)
            for name, (q, var) in state_probes.items():
                rec[name].append(np.asarray(self.steps[q].state[var], dtype=np.int64).copy())
            for name, (i, var) in learn_probes.items():
                rec[name].append(self.states[i].probe(var))
        self.hist[0] = ext[0][ext[0].shape[0] - self.din:].copy()
        for q in range(len(self.pops)):
            self.hist[1 + q] = ext[1 + q][ext[1 + q].shape[0] - self.dmax:].copy()
        self.t += t_n
        by_pop = {pop.name: np.moveaxis(ext[1 + q][self.dmax:], 0, 1) for q, pop in enumerate(self.pops)}
        probed: dict[str, I64] = {}
        for name, (pop, var) in probes.items():
            if var == "spikes":
                probed[name] = np.ascontiguousarray(by_pop[pop], dtype=np.int64)
            elif t_n:
                probed[name] = np.ascontiguousarray(np.moveaxis(np.stack(rec[name]), 0, 1))
            elif pop in self.pop_index:
                probed[name] = np.zeros((b_n, 0, self.pops[self.pop_index[pop]].size), dtype=np.int64)
            else:
                probed[name] = np.zeros((b_n, 0, *self.states[self.by_name[pop]].probe(var).shape[1:]), dtype=np.int64)
        return by_pop, probed, np.ascontiguousarray(synops.T)
