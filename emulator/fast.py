"""The fast engine: vectorised over neurons and batch, layer-major where the graph allows.

It computes exactly what :mod:`emulator.reference` defines, bit for bit, by three facts:

* Spikes are small counts and weights small integers, so a crossbar product is an exact
  integer in float32 while ``Σ|w|·count < 2^24`` and in float64 while ``< 2^53``; the bound is
  proved per projection when the program is loaded and decides the dtype (DESIGN.md,
  "Performance notes"). numpy's integer matmul has no BLAS and would be ~400× slower. A
  projection with few non-zero entries (a convolution expanded into a crossbar) is kept as a CSR
  matrix instead of a dense one: the same integers are added, exact under the same bound.
* A projection whose source population is computed earlier (no cycle back) has its input for
  every step of a chunk known at once: one matrix product over ``[batch·time, pre]``. Only
  projections inside a strongly connected group of populations (recurrence) are multiplied
  step by step.
* Where a datapath saturates on every addition in a set order (Xylo's synaptic states,
  TrueNorth's V), the order only matters if some partial sum could leave the register. With
  the sums of the positive and of the negative contributions, ``x + Σ⁺ <= hi`` and
  ``x + Σ⁻ >= lo`` prove that no ordering saturates; the (rare) neurons where that proof fails
  are re-accumulated one synapse at a time in the chip's order.

The Loihi neuron update runs on integer-valued float64: ``trunc(u · (4096 - d) / 4096)``
equals ``sign(p)·(|p| >> 12)`` for ``p = u·(4096 - d)`` because every operand fits in 53 bits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from . import fixed, xylo_jit
from .engine import Wiring

__all__ = ["FastEngine"]

# The engine keeps exact integers in float64 (Loihi) or int64 (Xylo, TrueNorth) arrays; the
# aliases name the intent, numpy's stubs cannot follow the mixed arithmetic.
F64 = NDArray[Any]
I64 = NDArray[Any]


@dataclass
class _Edge:
    """All synapses of one projection from one source, with one delay, as a matrix (dense, or CSR
    when sparse: see :func:`_edge_matrices`)."""

    src: int            # source index: 0 = the input channels, 1 + i = population i
    post: int           # population index
    proj: int           # projection index
    delay: int
    # pre-major ``[src_n, post_n]`` (C order): a step's active sources gather contiguous rows.
    # Order-insensitive families (Loihi) keep the increments; order-sensitive ones (Xylo, TrueNorth)
    # keep the positive and negative parts, whose sum is the increment.
    mats: tuple[NDArray[Any], ...]
    synapse: int = 0    # Xylo synaptic state


class FastEngine:
    name = "fast"

    def __init__(self, wiring: Wiring, batch: int, seed: int) -> None:
        self.w = wiring
        self.batch = batch
        self.seed = seed
        p = wiring.program
        self.family = wiring.family
        self.pops = list(p.populations.values())
        self.pop_index = {pop.name: i for i, pop in enumerate(self.pops)}
        n = wiring.n_neurons
        self.pop_of = np.zeros(n, dtype=np.int64)
        self.local_of = np.zeros(n, dtype=np.int64)
        for i, pop in enumerate(self.pops):
            self.pop_of[pop.neurons] = i
            self.local_of[pop.neurons] = np.arange(pop.size)
        self.src_sizes = [wiring.n_channels] + [pop.size for pop in self.pops]
        self.dmax = wiring.max_delay
        self.din = wiring.max_input_delay
        self._regs: list[dict[str, Any]] = [
            {k: _uniform(v[pop.neurons]) for k, v in wiring.reg_np.items()} for pop in self.pops
        ]
        self._stochastic = np.zeros(n, dtype=bool)
        if self.family == "truenorth":
            self._stochastic = wiring.reg_np["stochastic_synapse"] != 0
        self._n_syn = [1] * len(self.pops)
        if self.family == "xylo":
            self._n_syn = [1 if pop.size and wiring.readout_np[pop.neurons[0]] else 2 for pop in self.pops]
            for q, r in enumerate(self._regs):
                r["dash_each"] = [r["dash_syn"], r["dash_syn2"]][: self._n_syn[q]]
                r["has_bias"] = bool(np.any(r["bias"] != 0))
                r["max_spikes"] = _uniform(wiring.max_spikes_np[self.pops[q].neurons])
                # one shift for all synaptic states: [1, S, 1] when each state's dash is uniform
                r["dash_stack"] = np.stack([np.broadcast_to(d, (self.pops[q].size,)) for d in r["dash_each"]])[None]
                if all(np.ndim(d) == 0 for d in r["dash_each"]):
                    r["dash_stack"] = r["dash_stack"][:, :, :1]
        # the optional compiled Xylo datapath (numba, the [fast] extra) replaces the numpy step loop
        self._jit = self.family == "xylo" and xylo_jit.load()
        if self._jit:
            self._jit_tables = xylo_jit.tables(wiring)
        self._build_edges()
        self._build_schedule()
        self._build_synops()
        self.reset()

    # ----------------------------------------------------------------- lowering
    def _compose(self) -> tuple[I64, I64, I64, I64, I64, I64]:
        """Every (source unit → route → axon → synapse → neuron) path as flat arrays:
        source kind-index (0 inputs, 1+pop), source local index, delay, projection, post neuron, axon."""
        w = self.w
        p = w.program
        src_ids = np.concatenate([w.in_channel_global, p.route_src.astype(np.int64)])
        src_kind = np.concatenate([np.zeros(p.in_dst.size, dtype=np.int64),
                                   1 + self.pop_of[p.route_src]])
        src_local = np.where(src_kind == 0, src_ids, self.local_of[np.where(src_kind == 0, 0, src_ids)])
        dst = np.concatenate([p.in_dst, p.route_dst]).astype(np.int64)
        delay = np.concatenate([p.in_delay, p.route_delay]).astype(np.int64)
        start = np.searchsorted(p.syn_axon, dst, side="left")
        stop = np.searchsorted(p.syn_axon, dst, side="right")
        counts = stop - start
        route = np.repeat(np.arange(dst.size), counts)
        offs = np.arange(route.size) - np.repeat(np.cumsum(counts) - counts, counts)
        syn = start[route] + offs
        return (src_kind[route], src_local[route], delay[route], self.w.axon_projection_np[dst[route]],
                p.syn_neuron[syn].astype(np.int64), syn)

    def _build_edges(self) -> None:
        w = self.w
        p = w.program
        kind, local, delay, proj, post, syn = self._compose()
        inc = w.syn_increment[syn].astype(np.float64)
        if self.family == "truenorth":
            axon = p.syn_axon[syn].astype(np.int64)
            inc = w.reg_np["type_weights"][post, p.axon_type[axon].astype(np.int64)].astype(np.float64)
            keep = ~self._stochastic[post]  # stochastic-synapse neurons integrate one synapse at a time
            kind, local, delay, proj, post, inc = (a[keep] for a in (kind, local, delay, proj, post, inc))
        post_pop = self.pop_of[post]
        post_local = self.local_of[post]
        max_count = np.array([p.spec.chip.max_input_count]
                             + [int(w.max_spikes_np[pop.neurons].max()) for pop in self.pops], dtype=np.float64)
        dims = np.array([len(self.src_sizes), len(self.pops), max(1, len(p.projections)),
                         max(self.dmax, self.din) + 1], dtype=np.int64)
        flat = ((kind * dims[1] + post_pop) * dims[2] + proj) * dims[3] + delay
        order = np.argsort(flat, kind="stable")
        sorted_keys = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if flat.size else np.zeros(0, int)
        bounds = np.r_[starts, flat.size]
        uniq = []
        for g in range(starts.size):
            key = int(sorted_keys[starts[g]])
            d = key % dims[3]
            key //= dims[3]
            j = key % dims[2]
            key //= dims[2]
            uniq.append((key // dims[1], key % dims[1], j, d))
        ordered = self.family in ("xylo", "truenorth")
        self.edges: list[_Edge] = []
        for g, (k, q, j, d) in enumerate(uniq):
            sel = order[bounds[g]:bounds[g + 1]]
            shape = (self.src_sizes[k], self.pops[q].size)  # pre-major
            mats = _edge_matrices(local[sel], post_local[sel], inc[sel], shape, max_count[k], ordered)
            synapse = int(p.projections[j].params.get("synapse", 0)) if self.family == "xylo" else 0
            self.edges.append(_Edge(k, q, j, d, mats, synapse))

    @property
    def _syn_by_neuron(self) -> list[list[tuple[int, int]]]:
        """Per-neuron incoming (axon, weight) lists for the in-order fallback (built on first use)."""
        return self.w.neuron_synapses

    def _build_schedule(self) -> None:
        """Strongly connected groups of populations, in dependency order (Tarjan's algorithm)."""
        n = len(self.pops)
        succ: list[set[int]] = [set() for _ in range(n)]
        for e in self.edges:
            if e.src > 0:
                succ[e.src - 1].add(e.post)
        if self.family == "truenorth" and self._stochastic.any():
            # stochastic-synapse neurons read sources outside the edge list
            p = self.w.program
            stoch_syn = self._stochastic[p.syn_neuron]
            axons = np.unique(p.syn_axon[stoch_syn])
            for a in axons.tolist():
                targets = {int(q) for q in self.pop_of[p.syn_neuron[(p.syn_axon == a) & stoch_syn]]}
                for src in np.unique(self.pop_of[p.route_src[p.route_dst == a]]).tolist():
                    succ[int(src)] |= targets
        index: dict[int, int] = {}
        low: dict[int, int] = {}
        stack: list[int] = []
        on: set[int] = set()
        comps: list[list[int]] = []
        counter = [0]

        def visit(v: int) -> None:
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for x in succ[v]:
                if x not in index:
                    visit(x)
                    low[v] = min(low[v], low[x])
                elif x in on:
                    low[v] = min(low[v], index[x])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                comps.append(sorted(comp))

        for v in range(n):
            if v not in index:
                visit(v)
        comps.reverse()  # Tarjan emits components in reverse topological order
        self.blocks = comps
        block_of = {q: b for b, comp in enumerate(comps) for q in comp}
        self.internal = [e for e in self.edges if e.src > 0 and block_of[e.src - 1] == block_of[e.post]]
        self.external = [e for e in self.edges if not (e.src > 0 and block_of[e.src - 1] == block_of[e.post])]
        self.block_of = block_of

    def _build_synops(self) -> None:
        """Synapses reached per source unit and delay: synops(t) = Σ_d spikes(t - d) · fan_d."""
        w = self.w
        p = w.program
        fan = w.axon_fanout_np
        self.synops_terms: list[tuple[int, int, NDArray[np.int64]]] = []
        for kind, units, dst, delays in (
            (0, w.in_channel_global, p.in_dst.astype(np.int64), p.in_delay.astype(np.int64)),
            (1, p.route_src.astype(np.int64), p.route_dst.astype(np.int64), p.route_delay.astype(np.int64)),
        ):
            for d in np.unique(delays).tolist():
                m = delays == d
                if kind == 0:
                    vec = np.bincount(units[m], weights=fan[dst[m]], minlength=w.n_channels).astype(np.int64)
                    self.synops_terms.append((0, d, vec))
                else:
                    for q, pop in enumerate(self.pops):
                        mm = m & (self.pop_of[units] == q)
                        if mm.any():
                            vec = np.bincount(self.local_of[units[mm]], weights=fan[dst[mm]],
                                              minlength=pop.size).astype(np.int64)
                            self.synops_terms.append((1 + q, d, vec))

    @cached_property
    def axon_src(self) -> dict[int, list[tuple[int, int, int]]]:
        """Sources of every axon, ``{axon: [(source index, local unit, delay)]}``, for the in-order
        fallback and stochastic synapses (built on first use: a Python table, slow for big programs)."""
        per_axon: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for axon, kind, src, delay in self.w.axon_sources:
            if kind == 0:
                per_axon[axon].append((0, src, delay))
            else:
                per_axon[axon].append((1 + int(self.pop_of[src]), int(self.local_of[src]), delay))
        return per_axon

    # -------------------------------------------------------------------- state
    def reset(self) -> None:
        b = self.batch
        self.t = 0
        self.state: list[dict[str, NDArray[Any]]] = [
            {k: np.zeros((b, pop.size), dtype=np.float64 if self.family == "loihi" else np.int64)
             for k in self.w.state_names} for pop in self.pops]
        if self.family == "xylo":
            # both synaptic states as one [B, S, n] array (S = 1 for a readout): one numpy call
            # updates both; "isyn"/"isyn2" stay as views for probes
            for q, st in enumerate(self.state):
                syn = np.zeros((b, self._n_syn[q], self.pops[q].size), dtype=np.int64)
                st["syn"] = syn
                st["isyn"] = syn[:, 0]
                if self._n_syn[q] == 2:
                    st["isyn2"] = syn[:, 1]
        self.refractory = [np.zeros((b, pop.size), dtype=np.int64) for pop in self.pops]
        if self._jit:
            n = self.w.n_neurons
            self._jit_syn = np.zeros((b, 2, n), dtype=np.int64)
            self._jit_vmem = np.zeros((b, n), dtype=np.int64)
            self._jit_in = np.zeros((b, self.din, self.w.n_channels), dtype=np.int64)
            self._jit_sp = np.zeros((b, self.dmax, n), dtype=np.int64)
        # spike history, time-major [delay, batch, n]: the last steps' spikes still travelling on routes
        self.hist = [np.zeros((self.din, b, self.w.n_channels), dtype=np.float32)]
        self.hist += [np.zeros((self.dmax, b, pop.size), dtype=np.float32) for pop in self.pops]

    # ---------------------------------------------------------------------- run
    def run(self, inputs: I64, probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[Any]], dict[str, I64], I64]:
        """Spikes per population ``{pop: [B, T, n]}`` (float32 views holding exact counts), probed
        values ``{probe: [B, T, n]}`` and synaptic operations ``[B, T]``.

        Internally every spike array is time-major ``[history + T, B, n]`` so that a delayed
        window over all steps is one contiguous block for one matrix product.
        """
        if self._jit:
            return self._run_jit(inputs, probes)
        b_n, t_n, _ = inputs.shape
        w = self.w
        x_now = np.ascontiguousarray(np.moveaxis(inputs[:, :, : w.n_channels], 1, 0), dtype=np.float32)
        x_in = np.concatenate([self.hist[0], x_now], axis=0)
        ext: list[NDArray[np.float32]] = [x_in]
        ext += [np.concatenate([self.hist[1 + q], np.zeros((t_n, b_n, pop.size), dtype=np.float32)], axis=0)
                for q, pop in enumerate(self.pops)]
        offsets = [self.din] + [self.dmax] * len(self.pops)
        want: dict[int, set[str]] = defaultdict(set)
        for pop, var in probes.values():
            want[self.pop_index[pop]].add(var)
        recorded: dict[tuple[int, str], I64] = {
            (q, var): np.zeros((t_n, b_n, self.pops[q].size), dtype=np.int64)
            for q, vars_ in want.items() for var in vars_ if var != "spikes"
        }
        for comp in self.blocks:
            self._run_block(comp, ext, offsets, t_n, recorded)
        synops = np.zeros((t_n, b_n), dtype=np.int64)
        for src, d, vec in self.synops_terms:
            off = offsets[src] - d
            window = ext[src][off:off + t_n]
            synops += np.rint(window.astype(np.float64) @ vec.astype(np.float64)).astype(np.int64)
        # keep the last delays' worth of spikes for the next chunk
        self.hist[0] = x_in[x_in.shape[0] - self.din:].copy()
        for q in range(len(self.pops)):
            arr = ext[1 + q]
            self.hist[1 + q] = arr[arr.shape[0] - self.dmax:].copy()
        self.t += t_n
        by_pop = {pop.name: np.moveaxis(ext[1 + q][self.dmax:], 0, 1) for q, pop in enumerate(self.pops)}
        probed: dict[str, I64] = {}
        for name, (pop, var) in probes.items():
            q = self.pop_index[pop]
            arr = by_pop[pop] if var == "spikes" else np.moveaxis(recorded[(q, var)], 0, 1)
            probed[name] = np.ascontiguousarray(arr, dtype=np.int64)
        return by_pop, probed, np.ascontiguousarray(synops.T)

    def _run_jit(self, inputs: I64, probes: dict[str, tuple[str, str]]
                 ) -> tuple[dict[str, NDArray[Any]], dict[str, I64], I64]:
        """:meth:`run` through the compiled Xylo kernel of :mod:`emulator.xylo_jit`."""
        assert xylo_jit.kernel is not None
        b_n, t_n, _ = inputs.shape
        w = self.w
        in_ext = np.concatenate([self._jit_in, inputs[:, :, : w.n_channels].astype(np.int64)], axis=1)
        sp_ext = np.zeros((b_n, self.dmax + t_n, w.n_neurons), dtype=np.int64)
        sp_ext[:, : self.dmax] = self._jit_sp
        record = bool(probes) and any(var != "spikes" for _, var in probes.values())
        rec = np.zeros((3, b_n, t_n, w.n_neurons) if record else (3, 1, 1, 1), dtype=np.int64)
        synops = np.zeros((b_n, t_n), dtype=np.int64)
        tb = self._jit_tables
        xylo_jit.kernel(in_ext, sp_ext, self.din, self.dmax, tb["ax_ptr"], tb["ax_kind"], tb["ax_src"],
                        tb["ax_delay"], tb["syn_ptr"], tb["syn_neuron"], tb["syn_inc"], tb["axon_syn"],
                        tb["dash_syn"], tb["dash_syn2"], tb["dash_mem"], tb["bias"], tb["threshold"],
                        tb["max_spikes"], tb["readout"], self._jit_syn, self._jit_vmem, rec, record, synops)
        self._jit_in = in_ext[:, in_ext.shape[1] - self.din:].copy()
        self._jit_sp = sp_ext[:, sp_ext.shape[1] - self.dmax:].copy()
        self.t += t_n
        spikes = sp_ext[:, self.dmax:]
        by_pop = {pop.name: spikes[:, :, pop.neurons] for pop in self.pops}
        index = {"isyn": 0, "isyn2": 1, "vmem": 2}
        probed: dict[str, I64] = {}
        for name, (pop, var) in probes.items():
            ids = self.pops[self.pop_index[pop]].neurons
            probed[name] = by_pop[pop] if var == "spikes" else rec[index[var]][:, :, ids]
        return by_pop, probed, synops

    def _drive(self, edges: list[_Edge], ext: list[NDArray[np.float32]], offsets: list[int], t0: int, t_n: int
               ) -> dict[str, dict[tuple[int, int, int], NDArray[np.floating]]]:
        """Σ over edges of delayed source spikes × matrix, for steps t0 .. t0+t_n-1, per
        (post population, projection, synapse) → time-major ``[t_n, B, post_n]`` (exact integers).

        Returns ``{"sum": ...}`` for Loihi and ``{"sum", "pos", "neg"}`` for order-sensitive families.
        """
        ordered = self.family != "loihi"
        names = ("pos", "neg") if ordered else ("sum",)
        out: dict[str, dict[tuple[int, int, int], NDArray[np.floating]]] = {n: {} for n in names}
        for e in edges:
            off = offsets[e.src] + t0 - e.delay
            window = ext[e.src][off:off + t_n]
            if e.mats[0].dtype == np.float64:
                window = window.astype(np.float64)
            b_n = window.shape[1]
            key = (e.post, e.proj, e.synapse)
            if t_n == 1 and b_n == 1:
                x = window[0, 0]
                nz = np.flatnonzero(x)
                if not nz.size:
                    continue
                xs = x[nz]
                prods = [_matmul(xs, m[nz])[None, None, :] for m in e.mats]
            else:
                flat = window.reshape(t_n * b_n, -1)
                prods = [_matmul(flat, m).reshape(t_n, b_n, -1) for m in e.mats]
            for name, prod in zip(names, prods, strict=True):
                acc = out[name]
                if key in acc:
                    acc[key] = acc[key] + prod if acc[key].dtype == prod.dtype else acc[key] + prod.astype(np.float64)
                else:
                    acc[key] = prod
        if ordered:
            out["sum"] = {k: out["pos"][k] + out["neg"][k] for k in out["pos"]}
        return out

    def _ordered_drive(self, edges: list[_Edge], ext: list[NDArray[np.float32]], offsets: list[int], t0: int,
                       t_n: int) -> dict[int, tuple[F64, F64]]:
        """Positive and negative parts of the drive per population, ``[t_n, B, S, n]`` float64
        (S synaptic states: Xylo 2, or 1 for a readout; TrueNorth 1). Exact integers."""
        out: dict[int, tuple[F64, F64]] = {}
        for e in edges:
            off = offsets[e.src] + t0 - e.delay
            window = ext[e.src][off:off + t_n]
            b_n = window.shape[1]
            if t_n == 1 and b_n == 1:
                x = window[0, 0]
                nz = np.flatnonzero(x)
                if not nz.size:
                    continue
                xs = x[nz].astype(e.mats[0].dtype)
                pp, nn = _matmul(xs, e.mats[0][nz]), _matmul(xs, e.mats[1][nz])
            else:
                flat = window.reshape(t_n * b_n, -1).astype(e.mats[0].dtype)
                pp, nn = _matmul(flat, e.mats[0]), _matmul(flat, e.mats[1])
            if e.post not in out:
                shape = (t_n, b_n, self._n_syn[e.post], self.pops[e.post].size)
                out[e.post] = (np.zeros(shape), np.zeros(shape))
            pos, neg = out[e.post]
            pos[:, :, e.synapse, :] += pp.reshape(t_n, b_n, -1)
            neg[:, :, e.synapse, :] += nn.reshape(t_n, b_n, -1)
        return out

    def _run_block(self, comp: list[int], ext: list[NDArray[np.float32]], offsets: list[int], t_n: int,
                   recorded: dict[tuple[int, str], I64]) -> None:
        members = set(comp)
        ext_edges = [e for e in self.external if e.post in members]
        int_edges = [e for e in self.internal if e.post in members]
        if self.family == "loihi":
            pre_current = self._loihi_current(self._drive(ext_edges, ext, offsets, 0, t_n)["sum"], comp, t_n)
        else:
            pre_ord = self._ordered_drive(ext_edges, ext, offsets, 0, t_n)
        rec = [(q, var, arr) for (q, var), arr in recorded.items() if q in members]
        for t in range(t_n):
            if int_edges:
                if self.family == "loihi":
                    step = self._drive(int_edges, ext, offsets, t, 1)
                else:
                    step_ord = self._ordered_drive(int_edges, ext, offsets, t, 1)
            for q in comp:
                if self.family == "loihi":
                    a = pre_current[q][t] if q in pre_current else np.zeros((self.batch, self.pops[q].size))
                    if int_edges:
                        extra = self._loihi_current(step["sum"], [q], 1)
                        if q in extra:
                            a = a + extra[q][0]
                    spikes = self._loihi_step(q, a)
                else:
                    pos, neg = _at(pre_ord.get(q), t)
                    if int_edges and q in step_ord:
                        spos, sneg = step_ord[q]
                        pos = spos[0] if pos is None else pos + spos[0]
                        neg = sneg[0] if neg is None else neg + sneg[0]
                    if self.family == "xylo":
                        spikes = self._xylo_step(q, pos, neg, ext, offsets, t)
                    else:
                        spikes = self._truenorth_step(q, pos, neg, ext, offsets, t)
                ext[1 + q][offsets[1 + q] + t] = spikes
            for q, var, arr in rec:
                arr[t] = self.state[q][var]

    # -------------------------------------------------------------------- loihi
    def _loihi_current(self, sums: dict[tuple[int, int, int], NDArray[np.floating]], comp: list[int], t_n: int
                       ) -> dict[int, NDArray[np.floating]]:
        """a · 2^6 with a = Σ_projections shift(Σ w·count, weight_exp), per population, time-major
        ``[t_n, B, n]`` (the 6-bit MSB alignment of the input is folded in here, once per chunk).

        Scaling by a power of two keeps float32 exact, so a single exponent-0 projection stays float32."""
        out: dict[int, NDArray[np.floating]] = {}
        for (q, j, _s), total in sums.items():
            if q not in comp:
                continue
            exp = self.w.weight_exp[j]
            term = total if exp == 0 else fixed.shift_float(total.astype(np.float64), exp)
            out[q] = term if q not in out else out[q].astype(np.float64) + term
        for q in out:
            out[q] = out[q] * 64.0
        return out

    def _loihi_step(self, q: int, a64: F64) -> F64:
        """One Loihi step of population ``q``; ``a64`` is the synaptic input already shifted by 6."""
        r = self._regs[q]
        st = self.state[q]
        u, v = st["u"], st["v"]
        cache = self._loihi_consts(q)
        np.trunc(np.multiply(u, cache["ku"], out=u), out=u)  # == sign(p)(|p| >> 12), see module doc
        u += a64
        if u.max() > 8388608.0 or u.min() <= -8388608.0:
            u[:] = fixed.wrap_float(u, 24)
        np.trunc(np.multiply(v, cache["kv"], out=v), out=v)
        v += u
        if cache["has_bias"]:
            v += cache["bias"]
        np.minimum(v, cache["vmax"], out=v)
        np.maximum(v, cache["vmin"], out=v)
        spikes = v > cache["vth"]
        if cache["has_refractory"]:
            ref = self.refractory[q]
            held = ref > 0
            spikes &= ~held
            v[held] = 0.0
            ref[held] -= 1
            ref[spikes] = np.broadcast_to(r["refractory"], spikes.shape)[spikes]
        np.copyto(v, 0.0, where=spikes)
        return spikes

    def _loihi_consts(self, q: int) -> dict[str, F64 | bool]:
        key = f"_loihi_{q}"
        cached = self.__dict__.get(key)
        if cached is None:
            r = self._regs[q]
            idx = self.pops[q].neurons
            cached = {
                # (4096 - d)/4096 is exact in float64, and so is u times it (< 2^36 significant bits)
                "ku": (4096.0 - (r["du"] + 1)) / 4096.0,
                "kv": (4096.0 - r["dv"]) / 4096.0,
                "bias": np.left_shift(r["bias_mant"], r["bias_exp"]).astype(np.float64),
                "vth": np.left_shift(r["vth"], 6).astype(np.float64),
                "vmin": self.w.vmin_np[idx].astype(np.float64),
                "vmax": self.w.vmax_np[idx].astype(np.float64),
                "has_refractory": bool((r["refractory"] > 0).any()),
                "has_bias": bool((r["bias_mant"] != 0).any()),
            }
            self.__dict__[key] = cached
        return cached

    # --------------------------------------------------------------------- xylo
    def _arrivals(self, axon: int, b: int, ext: list[NDArray[np.float32]], offsets: list[int], t: int) -> int:
        total = 0
        for src, local, delay in self.axon_src.get(axon, ()):
            total += int(ext[src][offsets[src] + t - delay, b, local])
        return total

    def _axon_counts(self, b: int, ext: list[NDArray[np.float32]], offsets: list[int], t: int) -> I64:
        """Spike count arriving at every axon at step ``t`` for batch element ``b``: ``[A]``."""
        if not hasattr(self, "_axsrc"):
            rows = [(axon, src, local, delay) for axon, lst in self.axon_src.items() for src, local, delay in lst]
            arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
            self._axsrc = [(src, delay, arr[(arr[:, 1] == src) & (arr[:, 3] == delay)][:, [0, 2]])
                           for src, delay in {(int(r[1]), int(r[3])) for r in arr}]
        counts = np.zeros(self.w.n_axons, dtype=np.int64)
        for src, delay, pairs in self._axsrc:
            row = ext[src][offsets[src] + t - delay, b]
            np.add.at(counts, pairs[:, 0], row[pairs[:, 1]].astype(np.int64))
        return counts

    def _ordered_vector(self, q: int, b: int, start: I64, ext: list[NDArray[np.float32]], offsets: list[int],
                        t: int, lo: int, hi: int, synapse: int | None = None) -> I64:
        """Accumulate population ``q`` (batch ``b``) one axon at a time in ascending axon order,
        each spike a saturating addition: the chip's order, vectorised over the neurons."""
        w = self.w
        p = w.program
        x = start.copy()
        counts = self._axon_counts(b, ext, offsets, t)
        if not hasattr(self, "_ax_bounds"):
            axes = np.arange(w.n_axons)
            self._ax_bounds = np.stack([np.searchsorted(p.syn_axon, axes, side="left"),
                                        np.searchsorted(p.syn_axon, axes, side="right")], axis=1).tolist()
        for axon in np.flatnonzero(counts).tolist():
            if synapse is not None and w.synapse_index_np[axon] != synapse:
                continue
            lo_i, hi_i = self._ax_bounds[axon]
            nids = p.syn_neuron[lo_i:hi_i].astype(np.int64)
            keep = (self.pop_of[nids] == q) & ~self._stochastic[nids]
            nids = nids[keep]
            if not nids.size:
                continue
            if self.family == "truenorth":
                inc = w.reg_np["type_weights"][nids, int(p.axon_type[axon])]
            else:
                inc = w.syn_increment[lo_i:hi_i][keep]
            idx = self.local_of[nids]
            for _ in range(int(counts[axon])):
                x[idx] = np.minimum(np.maximum(x[idx] + inc, lo), hi)
        return x

    def _xylo_step_small(self, q: int, pos: F64 | None, neg: F64 | None, ext: list[NDArray[np.float32]],
                         offsets: list[int], t: int) -> I64:
        """:meth:`_xylo_step` on Python integers, for populations so small (a readout layer) that
        numpy's per-call cost would dominate; same equations, same fallback."""
        pop = self.pops[q]
        regs = self.__dict__.get(f"_small_{q}")
        if regs is None:
            r = self._regs[q]
            n = pop.size
            regs = {k: np.broadcast_to(r[k], (n,)).tolist() for k in ("dash_mem", "bias", "threshold")}
            regs["dash_each"] = [np.broadcast_to(d, (n,)).tolist() for d in r["dash_each"]]
            regs["max_spikes"] = self.w.max_spikes_np[pop.neurons].tolist()
            self.__dict__[f"_small_{q}"] = regs
        st = self.state[q]
        syn, vmem = st["syn"], st["vmem"]
        lo, hi = -(1 << 15), (1 << 15) - 1
        b_n, s_n, n = syn.shape
        sy = syn.tolist()
        vm = vmem.tolist()
        pl = pos.tolist() if pos is not None else None
        nl = neg.tolist() if neg is not None else None
        out = [[0] * n for _ in range(b_n)]
        dash_each, dash_mem = regs["dash_each"], regs["dash_mem"]
        bias, thresholds, max_spikes = regs["bias"], regs["threshold"], regs["max_spikes"]
        for b in range(b_n):
            for s_ in range(s_n):
                row = sy[b][s_]
                if pl is not None and nl is not None:
                    prow, nrow = pl[b][s_], nl[b][s_]
                    if any(row[i] + prow[i] > hi or row[i] + nrow[i] < lo for i in range(n)):
                        row = self._ordered_vector(q, b, syn[b, s_], ext, offsets, t, lo, hi, synapse=s_).tolist()
                    else:
                        row = [row[i] + int(prow[i] + nrow[i]) for i in range(n)]
                dashes = dash_each[s_]
                for i in range(n):
                    x = row[i]
                    d = x >> dashes[i]  # fixed.shift_decay, inlined: this loop is the hot path
                    if d == 0 and x > 0:
                        d = 1
                    row[i] = x - d
                sy[b][s_] = row
            for i in range(n):
                total = sy[b][0][i] + sy[b][1][i] if s_n > 1 else sy[b][0][i]
                x = vm[b][i]
                d = x >> dash_mem[i]
                if d == 0 and x > 0:
                    d = 1
                dv = min(hi, max(lo, total - d))  # fixed.sat_add, inlined
                dv = min(hi, max(lo, dv + bias[i]))
                v = min(hi, max(lo, x + dv))
                theta = thresholds[i]
                k = min(max(v // theta, 0), max_spikes[i])
                vm[b][i] = v - k * theta
                out[b][i] = k
        syn[...] = sy
        vmem[...] = vm
        return np.array(out, dtype=np.int64)

    def _xylo_step(self, q: int, pos: F64 | None, neg: F64 | None, ext: list[NDArray[np.float32]],
                   offsets: list[int], t: int) -> I64:
        """One Xylo step of population ``q``; ``pos``/``neg`` ``[B, S, n]`` drive parts or None."""
        if self.state[q]["syn"].size <= 32:
            return self._xylo_step_small(q, pos, neg, ext, offsets, t)
        r = self._regs[q]
        st = self.state[q]
        lo, hi = -(1 << 15), (1 << 15) - 1
        syn = st["syn"]
        if pos is not None and neg is not None:
            add = (pos + neg).astype(np.int64)
            # no ordering of the additions can saturate: the plain sum is the chip's result.
            # Cheap conservative test first (4 reductions), the element-wise one only if it fails.
            risky = syn.max() + pos.max() > hi or syn.min() + neg.min() < lo
            if risky:
                up, down = syn + pos, syn + neg
                risky = up.max() > hi or down.min() < lo
            if risky:
                bad = ((up > hi) | (down < lo)).any(axis=2)
                new = syn + add
                for b, s_ in zip(*np.nonzero(bad), strict=True):
                    new[b, s_] = self._ordered_vector(q, int(b), syn[b, s_], ext, offsets, t, lo, hi,
                                                      synapse=int(s_))
                syn[...] = new
            else:
                syn += add
        syn -= _xylo_decay(syn, r["dash_stack"])
        total = syn[:, 0] + syn[:, 1] if syn.shape[1] > 1 else syn[:, 0].copy()
        vmem = st["vmem"]
        dv = _sat16(total - _xylo_decay(vmem, r["dash_mem"]))
        if r["has_bias"]:
            dv += r["bias"]
            _sat16(dv)
        vmem += dv
        _sat16(vmem)
        theta = r["threshold"]
        k = vmem // theta
        np.maximum(k, 0, out=k)
        np.minimum(k, r["max_spikes"], out=k)
        vmem -= k * theta
        return k

    # ---------------------------------------------------------------- truenorth
    def _truenorth_step(self, q: int, pos: F64 | None, neg: F64 | None, ext: list[NDArray[np.float32]],
                        offsets: list[int], t: int) -> I64:
        w = self.w
        r = self._regs[q]
        pop = self.pops[q]
        v = self.state[q]["v"]
        lo, hi = w.v_lo, w.v_hi
        step = self.t + t
        if pos is not None and neg is not None:
            add = (pos[:, 0] + neg[:, 0]).astype(np.int64)
            up = v + pos[:, 0]
            down = v + neg[:, 0]
            bad = (up > hi) | (down < lo)
            new = v + add
            for b in np.flatnonzero(bad.any(axis=1)).tolist():
                new[b] = self._ordered_vector(q, b, v[b], ext, offsets, t, lo, hi)
            v[:] = new
        stoch = np.flatnonzero(self._stochastic[pop.neurons])
        for i in stoch.tolist():
            nid = int(pop.neurons[i])
            tw = w.reg_np["type_weights"][nid]
            mask = int(w.reg_np["stochastic_synapse"][nid])
            for b in range(self.batch):
                x = int(v[b, i])
                for axon, _bit in self._syn_by_neuron[nid]:
                    c = self._arrivals(axon, b, ext, offsets, t)
                    if not c:
                        continue
                    g = int(w.program.axon_type[axon])
                    s = int(tw[g])
                    for _ in range(c):
                        if mask >> g & 1:
                            rho = fixed.draw(self.seed, step, nid, int(w.axon_local_np[axon]), w.rng_bits)
                            x = fixed.saturate(x + (fixed.sign(s) if rho < abs(s) else 0), lo, hi)
                        else:
                            x = fixed.saturate(x + s, lo, hi)
                v[b, i] = x
        lam = r["leak"]
        omega = np.where(r["leak_reversal"] != 0, np.sign(v), 1)
        if (r["stochastic_leak"] != 0).any():
            rho_leak = fixed.draw_array(self.seed, step, pop.neurons.astype(np.int64), 256, w.rng_bits)
            stoch_leak = np.where(rho_leak < np.abs(lam), np.sign(lam), 0)
            leak = np.where(r["stochastic_leak"] != 0, stoch_leak, lam)
        else:
            leak = lam
        v[:] = np.clip(v + omega * leak, lo, hi)
        mask = np.left_shift(1, r["threshold_mask_bits"]) - 1
        eta: NDArray[Any] | int
        if mask.any():
            eta = fixed.draw_array(self.seed, step, pop.neurons.astype(np.int64), 257, w.rng_bits) & mask
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


def _at(parts: tuple[F64, F64] | None, t: int) -> tuple[F64 | None, F64 | None]:
    return (None, None) if parts is None else (parts[0][t], parts[1][t])


def _uniform(values: I64) -> I64:
    """A register equal for every neuron becomes a 0-d array: numpy broadcasts a scalar operand
    (a shift, a threshold) much faster than an element-wise one, with identical results."""
    if values.ndim == 1 and values.size and (values == values[0]).all():
        return np.asarray(values[0])
    return values


def _xylo_decay(x: I64, dash: I64) -> I64:
    """:func:`fixed.shift_decay_array` in three passes: ``x >> dash`` is 0 for a non-zero x only
    when ``0 < x < 2^dash`` (an arithmetic shift of a negative number is at most -1), then 1."""
    d = np.right_shift(x, dash)
    d += (d == 0) & (x > 0)
    return d


def _sat16(x: I64) -> I64:
    """Saturate a 16-bit signed register in place (XyloSim ``safe_add``)."""
    np.maximum(x, -(1 << 15), out=x)
    np.minimum(x, (1 << 15) - 1, out=x)
    return x


def _slice(parts: dict[tuple[int, int, int], NDArray[np.floating]], q: int, t: int) -> dict[int, F64]:
    """Per synaptic state of population ``q`` at step ``t``: the drive summed over projections."""
    out: dict[int, F64] = {}
    for (qq, _j, s), arr in parts.items():
        if qq == q:
            val = arr[t].astype(np.float64)
            out[s] = out[s] + val if s in out else val.copy()
    return out


#: an edge matrix is kept sparse (CSR, pre-major) when at most this share of its entries is non-zero
SPARSE_DENSITY = 0.05
#: ... and it has at least this many entries (small matrices are fastest dense)
SPARSE_MIN_ENTRIES = 1 << 18


def _edge_matrices(pre: I64, post: I64, inc: F64, shape: tuple[int, int], max_count: float, ordered: bool
                   ) -> tuple[Any, ...]:
    """The matrices of one edge: pre-major ``[pre_n, post_n]`` increments (repeated pairs summed),
    or (order-sensitive families) their positive and negative parts.

    dtype: float32 while the exactness bound ``max_post Σ_pre |w| · max_count < 2^24`` holds, else
    float64 (exact below 2^53). Dense C-order arrays, or CSR matrices when sparse (conv layers):
    a product over CSR adds the same integers, exact under the same bound.
    """
    n = shape[0] * shape[1]
    if pre.size < SPARSE_DENSITY * n and n >= SPARSE_MIN_ENTRIES:
        m = sp.csr_matrix((inc, (pre, post)), shape=shape, dtype=np.float64)
        m.sum_duplicates()
        col_abs = np.bincount(m.indices, weights=np.abs(m.data), minlength=shape[1])
        dtype = np.float32 if float(col_abs.max(initial=0.0)) * max_count < 2**24 else np.float64
        m = m.astype(dtype)
        if not ordered:
            return (m,)
        pos, neg = m.copy(), m.copy()
        pos.data = np.maximum(pos.data, 0)
        neg.data = np.minimum(neg.data, 0)
        pos.eliminate_zeros()
        neg.eliminate_zeros()
        return (pos, neg)
    # bincount sums repeated (pre, post) pairs like np.add.at, an order of magnitude faster
    dense = np.bincount(pre * shape[1] + post, weights=inc, minlength=n).reshape(shape)
    bound = float(np.abs(dense).sum(axis=0).max(initial=0.0)) * max_count
    dtype = np.float32 if bound < 2**24 else np.float64
    if ordered:
        return (np.maximum(dense, 0).astype(dtype), np.minimum(dense, 0).astype(dtype))
    return (dense.astype(dtype),)


def _matmul(x: NDArray[Any], m: Any) -> NDArray[Any]:
    """``x @ m`` as a dense array (``m`` dense or CSR; ``x`` 1-D or 2-D)."""
    if sp.issparse(m):
        if x.ndim == 1:
            return np.asarray(m.T @ x)
        return np.asarray((m.T @ x.T).T)
    return x @ m
