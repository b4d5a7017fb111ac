"""The fast engine: the family-agnostic driver, vectorised over neurons and batch, layer-major where
the graph allows. The neuron updates are the families' (``families.get(family).datapath``); this
module lowers a network to edges, schedules strongly connected blocks, computes drives over whole
chunks, keeps spike histories and counts synaptic operations.

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
* Where a datapath saturates on every addition in a set order (``datapath.ORDERED``: Xylo's
  synaptic states, TrueNorth's V), the order only matters if some partial sum could leave the
  register. With the sums of the positive and of the negative contributions, ``x + Σ⁺ <= hi``
  and ``x + Σ⁻ >= lo`` prove that no ordering saturates; the (rare) neurons where that proof
  fails are re-accumulated one synapse at a time in the chip's order (:meth:`FastEngine.in_order`).

The driver runs a :class:`Lowered` network: populations with their registers, synapse paths
grouped by edge (:class:`LoweredSynapses`: COO blocks of local pre index, local post index and
increment per source, delay, projection and post population), synaptic-operation terms and, for
a Program, the axon order of the chip (:meth:`Lowered.from_wiring`). Loading is linear in the
synapses: a Program's paths are composed piece by piece in axon order, and each edge's matrix is
filled in place (:func:`_dense_matrices`), with no sort over all paths. A network that was not
made from a Program (a quantised netlist) is lowered by building the same value with
``order=None``: every family step then runs on it unchanged, and an ordered family saturates the
step's summed drive once instead of following an axon order it does not have.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from hw_specs import HwSpec

from . import families
from .crossbar import Crossbar, crossbar, keep_sparse
from .crossbar import kernels as crossbar_kernels
from .engine import Wiring
from .families.datapath import PopulationStep, Synapses
from .learning.vectorised import plastic_runner
from .program import Program

__all__ = ["FastEngine", "Prepared", "prepare", "Lowered", "LoweredPopulation", "LoweredSynapses", "SynapseBlock",
           "synops_terms"]

# The engine keeps exact integers in float32/float64 or int64 arrays; the aliases name the intent,
# numpy's stubs cannot follow the mixed arithmetic.
F64 = NDArray[Any]
I64 = NDArray[Any]


@dataclass(frozen=True, eq=False)
class LoweredPopulation:
    """A population of a lowered network.

    ``neurons``: global neuron ids ``int64 [n]`` (the keys of the stochastic draws);
    ``registers``: per-neuron register values, first axis ``n`` (the family's registers);
    ``readout``: a readout population (Xylo: one synaptic state, its own spike limit);
    ``max_spikes``: spikes a neuron may emit per step ``int64 [n]`` (bounds the exact dtype).
    """

    name: str
    neurons: NDArray[np.int64]
    registers: Mapping[str, NDArray[np.int64]]
    readout: bool
    max_spikes: NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.neurons.size)


#: paths per block when a Program's synapse paths are composed, and per slice when an edge's
#: matrix is filled: the int64 temporaries of one block stay a few MiB
PATH_BLOCK = 1 << 20


@dataclass(frozen=True, eq=False)
class SynapseBlock:
    """Synapse paths of one edge — one source, one delay, one projection, one post population — as
    COO: ``pre`` the unit's index in its source (``src`` 0 = the input channels, ``1 + q`` =
    population ``q``), ``post`` the neuron's index in population ``post_pop``, ``increment`` what
    one spike adds (the family's synaptic increment); integer arrays ``[n]`` (int32 or int64).
    Repeated ``(pre, post)`` pairs add, within a block and across blocks of the same edge."""

    src: int
    delay: int
    proj: int
    post_pop: int
    pre: NDArray[np.integer[Any]]
    post: NDArray[np.integer[Any]]
    increment: NDArray[np.integer[Any]]

    @property
    def edge(self) -> tuple[int, int, int, int]:
        """The edge the block belongs to, ``(src, post_pop, proj, delay)`` (the engine's order)."""
        return (self.src, self.post_pop, self.proj, self.delay)

    @property
    def size(self) -> int:
        return int(self.pre.size)


class LoweredSynapses:
    """Every (source unit → post neuron) synapse path of a lowered network, repeated pairs allowed
    (they add), in either of two forms of one value:

    * flat ``int64 [n_paths]`` arrays, ``LoweredSynapses(src, pre, delay, proj, post_pop, post,
      increment)``: ``src`` 0 = the input channels, ``1 + q`` = population ``q``; ``pre`` the
      unit's index in its source; ``delay`` in steps; ``proj`` the projection index; ``post_pop``
      and ``post`` the post population and the neuron's index in it; ``increment`` what one spike
      adds (the family's synaptic increment);
    * :class:`SynapseBlock` s, ``LoweredSynapses(blocks=...)``: the paths grouped by edge, several
      blocks per edge allowed. This is what the fast engine reads; a big network should be built in
      this form (a block's arrays may be views of the network's own, int32 indices: no per-path
      int64 copies).

    Each form is derived from the other on first use: flat paths are cut into runs of one edge (no
    sort when they come edge by edge, e.g. projection by projection), blocks are concatenated.
    """

    FIELDS = ("src", "pre", "delay", "proj", "post_pop", "post", "increment")

    def __init__(self, *flat: NDArray[Any], blocks: Iterable[SynapseBlock] | None = None) -> None:
        if len(flat) != (7 if blocks is None else 0):
            raise TypeError("LoweredSynapses takes the 7 flat path arrays or blocks=..., not both")
        self._flat = tuple(np.asarray(a) for a in flat) if blocks is None else None
        self._blocks = None if blocks is None else tuple(b for b in blocks if b.size)

    @classmethod
    def empty(cls) -> LoweredSynapses:
        """No synapses."""
        return cls(blocks=())

    @property
    def blocks(self) -> tuple[SynapseBlock, ...]:
        """The paths grouped by edge (see the class docstring)."""
        if self._blocks is None:
            assert self._flat is not None
            self._blocks = _group_paths(*self._flat)
        return self._blocks

    @property
    def size(self) -> int:
        """Number of paths."""
        return int(self._flat[0].size) if self._flat is not None else sum(b.size for b in self.blocks)

    def _column(self, i: int) -> NDArray[np.int64]:
        if self._flat is None:
            per_block = ("src", "delay", "proj", "post_pop")
            columns = []
            for name in self.FIELDS:
                parts = [np.full(b.size, getattr(b, name), dtype=np.int64) if name in per_block
                         else np.asarray(getattr(b, name), dtype=np.int64) for b in self.blocks]
                columns.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
            self._flat = tuple(columns)
        return self._flat[i]

    @property
    def src(self) -> NDArray[np.int64]:
        return self._column(0)

    @property
    def pre(self) -> NDArray[np.int64]:
        return self._column(1)

    @property
    def delay(self) -> NDArray[np.int64]:
        return self._column(2)

    @property
    def proj(self) -> NDArray[np.int64]:
        return self._column(3)

    @property
    def post_pop(self) -> NDArray[np.int64]:
        return self._column(4)

    @property
    def post(self) -> NDArray[np.int64]:
        return self._column(5)

    @property
    def increment(self) -> NDArray[np.int64]:
        return self._column(6)


def _group_paths(*flat: NDArray[Any]) -> tuple[SynapseBlock, ...]:
    """Flat paths as blocks: runs of one edge become blocks of views (paths that come edge by edge
    are not copied); paths in no such order are sorted by edge first (one stable argsort)."""
    src, pre, delay, proj, post_pop, post, inc = flat
    n = int(src.size)
    if not n:
        return ()
    keys = (src, post_pop, proj, delay)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(change)
    del change
    if starts.size > max(64, n >> 8):
        # short runs: gather each edge's paths once (sorted by edge, stable)
        order = np.lexsort(keys[::-1])
        src, pre, delay, proj, post_pop, post, inc = (a[order] for a in flat)
        del order
        keys = (src, post_pop, proj, delay)
        change = np.zeros(n, dtype=bool)
        change[0] = True
        for k in keys:
            change[1:] |= k[1:] != k[:-1]
        starts = np.flatnonzero(change)
    bounds = np.r_[starts, n].tolist()
    return tuple(SynapseBlock(int(src[lo]), int(delay[lo]), int(proj[lo]), int(post_pop[lo]),
                              pre[lo:hi], post[lo:hi], inc[lo:hi])
                 for lo, hi in zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True, eq=False)
class Lowered:
    """A network as the fast engine runs it; see the module docstring.

    ``projections``: each projection's parameters (``weight_exp``, ``synapse``, ...), indexed by
    ``LoweredSynapses.proj``. ``n_channels``: input channels, all ports concatenated.
    ``synops``: ``(source, delay, vec)`` terms, ``synaptic_ops(t) = Σ spikes_source(t - delay) · vec``.
    ``dependencies``: extra (source population → post population) orderings for neurons whose
    synapses the family step reads itself (``datapath.stepwise``). ``order``: the Program's
    :class:`Wiring` (axon order for the in-order fallback and stepwise neurons), or None.

    A network that is not a Program (a quantised netlist) is built directly: per population its
    register arrays, readout flag, spike limit and distinct neuron ids; per projection its
    params; its synapse paths with ``increment = families.get(family).datapath.increments(...)``
    (leaving out neurons the family's ``stepwise`` marks), best as one :class:`SynapseBlock` per
    projection (``LoweredSynapses(blocks=...)``, views of the projection's COO arrays);
    ``synops=synops_terms(synapses, sizes)``; and ``order=None``.
    """

    family: str
    spec: HwSpec
    populations: tuple[LoweredPopulation, ...]
    projections: tuple[Mapping[str, int], ...]
    n_channels: int
    synapses: LoweredSynapses
    synops: tuple[tuple[int, int, NDArray[np.int64]], ...]
    max_delay: int
    max_input_delay: int
    dependencies: frozenset[tuple[int, int]] = frozenset()
    order: Wiring | None = field(default=None, compare=False)

    @classmethod
    def from_wiring(cls, wiring: Wiring) -> Lowered:
        """A Program's :class:`Wiring` lowered: every (source unit → route → axon → synapse →
        neuron) path, grouped by edge (:func:`_program_paths`), with the axon order kept for the
        exact in-order fallback."""
        w = wiring
        pops = list(w.program.populations.values())
        pop_of, local_of = _neuron_maps([pop.neurons for pop in pops], w.n_neurons)
        lowered_pops = tuple(
            LoweredPopulation(pop.name, pop.neurons.astype(np.int64),
                              {k: v[pop.neurons] for k, v in w.registers.items()},
                              bool(pop.readout), w.max_spikes[pop.neurons])
            for pop in pops
        )
        synapses, dependencies = _program_paths(w, pop_of, local_of)
        return cls(w.family, w.spec, lowered_pops, tuple(w.projection_params), w.n_channels, synapses,
                   _synops_terms(w, pop_of, local_of, len(pops)), w.max_delay, w.max_input_delay,
                   frozenset(dependencies), w)


def _neuron_maps(populations: list[NDArray[Any]], n: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Global neuron → (population index, index in the population), int32 ``[n]`` each."""
    pop_of = np.zeros(n, dtype=np.int32)
    local_of = np.zeros(n, dtype=np.int32)
    for i, neurons in enumerate(populations):
        pop_of[neurons] = i
        local_of[neurons] = np.arange(neurons.size)
    return pop_of, local_of


def _core_population(p: Program, pop_of: NDArray[np.int32]) -> NDArray[np.int64]:
    """Per core, the population of all its neurons, or -1 when it holds several (or none)."""
    out = np.full(p.n_cores, -1, dtype=np.int64)
    offset = p.neuron_offset
    full = np.flatnonzero(p.core_neurons > 0)
    if full.size:
        lo = np.minimum.reduceat(pop_of, offset[full])
        hi = np.maximum.reduceat(pop_of, offset[full])
        out[full] = np.where(lo == hi, lo, -1)
    return out


def _program_paths(w: Wiring, pop_of: NDArray[np.int32], local_of: NDArray[np.int32]
                   ) -> tuple[LoweredSynapses, set[tuple[int, int]]]:
    """A Program's synapse paths as blocks, and the (source → post population) orderings of the
    neurons the family integrates stepwise (left out of the paths).

    A path is a route (input routes first; ``source unit → axon`` after ``delay``) followed by one
    synapse of its axon. The synapses are sorted by axon, so an axon's synapses are one range; the
    routes are taken in axon order and cut into pieces of one (source, delay, projection, post
    population) of at most about :data:`PATH_BLOCK` paths. A piece whose routes reach consecutive
    axons reads its synapses as one slice; its post population is its axons' core's when that
    core holds one population (else each path's). Every piece is one pass over its synapses in
    cache: no per-synapse int64 array of the whole Program and no sort over all paths. The
    increments are the family's (``datapath.increments``), computed piece by piece.
    """
    p = w.program
    fan = w.axon_fanout
    first = np.zeros(fan.size + 1, dtype=np.int64)
    np.cumsum(fan, out=first[1:])  # axon a's synapses are [first[a], first[a + 1])
    n_in = p.in_dst.size
    dst = np.concatenate([p.in_dst, p.route_dst]).astype(np.int64)
    src = np.concatenate([np.zeros(n_in, dtype=np.int64), 1 + pop_of[p.route_src].astype(np.int64)])
    unit = np.concatenate([w.in_channel_global, local_of[p.route_src]]).astype(np.int32)
    delay = np.concatenate([p.in_delay, p.route_delay]).astype(np.int64)
    live = fan[dst] > 0
    if not live.all():
        dst, src, unit, delay = dst[live], src[live], unit[live], delay[live]
    if dst.size > 1 and (dst[1:] < dst[:-1]).any():
        order = np.argsort(dst, kind="stable")
        dst, src, unit, delay = dst[order], src[order], unit[order], delay[order]
    count = fan[dst]
    start = first[dst]
    proj = w.axon_projection[dst]
    axon_type = p.axon_type[dst].astype(np.int64)
    post_pop = _core_population(p, pop_of)[p.axon_core[dst]]
    # pieces: runs of one (source, delay, projection, post population), cut every ~PATH_BLOCK paths
    before = np.cumsum(count) - count
    cut = np.zeros(dst.size, dtype=bool)
    if dst.size:
        cut[0] = True
        for key in (src, delay, proj, post_pop, before // PATH_BLOCK):
            cut[1:] |= key[1:] != key[:-1]
    bounds = np.r_[np.flatnonzero(cut), dst.size].tolist()
    stepwise = w.datapath.stepwise(w.registers)
    any_stepwise = bool(stepwise.any())
    dependencies: set[tuple[int, int]] = set()
    blocks: list[SynapseBlock] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ct, st = count[a:b], start[a:b]
        n = int(ct.sum())
        if b - a == 1 or (st[1:] == st[:-1] + ct[:-1]).all():
            syn: slice | NDArray[np.int64] = slice(int(st[0]), int(st[0]) + n)
        else:  # repeated or skipped axons: the synapse index of every path
            syn = np.repeat(st - (np.cumsum(ct) - ct), ct) + np.arange(n)
        neuron = p.syn_neuron[syn]
        pre = np.repeat(unit[a:b], ct)
        types = axon_type[a:b]
        k, d, j, q = int(src[a]), int(delay[a]), int(proj[a]), int(post_pop[a])
        synapses = Synapses(
            weight=p.syn_weight[syn].astype(np.int64),
            proj=np.broadcast_to(np.int64(j), (n,)),
            post=neuron.astype(np.int64),
            axon_type=(np.broadcast_to(types[0], (n,)) if (types == types[0]).all() else np.repeat(types, ct)))
        inc = w.datapath.increments(synapses, w.projection_params, w.registers, p.spec)
        del synapses
        if any_stepwise:
            # neurons that integrate synapse by synapse read their sources outside the edges
            marked = stepwise[neuron]
            if marked.any():
                if k >= 1:
                    dependencies |= {(k - 1, int(x)) for x in np.unique(pop_of[neuron[marked]])}
                keep = ~marked
                neuron, pre, inc = neuron[keep], pre[keep], inc[keep]
        inc = _narrow(inc)
        local = local_of[neuron]
        if q >= 0:
            blocks.append(SynapseBlock(k, d, j, q, pre, local, inc))
            continue
        pops = pop_of[neuron]
        for x in np.flatnonzero(np.bincount(pops)).tolist():
            m = pops == x
            blocks.append(SynapseBlock(k, d, j, int(x), pre[m], local[m], inc[m]))
    return LoweredSynapses(blocks=blocks), dependencies


def _narrow(values: NDArray[np.int64]) -> NDArray[np.integer[Any]]:
    """int64 integers as int32 when every one fits (half the memory of a big program's paths)."""
    if values.size and (int(values.min()) < -(1 << 31) or int(values.max()) >= 1 << 31):
        return values
    return values.astype(np.int32)


def synops_terms(synapses: LoweredSynapses, sizes: list[int]) -> tuple[tuple[int, int, NDArray[np.int64]], ...]:
    """Synaptic-operation terms of a lowered network from its synapse paths: a spike of source unit
    ``i`` (``sizes[src]`` units per source) reaches every path leaving it, so ``vec[i]`` counts
    the paths per ``(source, delay)``, in ascending ``(source, delay)``. For a netlist built without
    a Program (each path one synapse), this is the crossbar's count; a Program's
    :meth:`Lowered.from_wiring` counts its axons' synapses instead (the same, plus synapses its
    family integrates stepwise)."""
    terms: dict[tuple[int, int], NDArray[np.int64]] = {}
    for blk in synapses.blocks:
        vec = terms.setdefault((blk.src, blk.delay), np.zeros(sizes[blk.src], dtype=np.int64))
        vec += np.bincount(blk.pre, minlength=sizes[blk.src])
    return tuple((src, d, terms[(src, d)]) for src, d in sorted(terms))


def _synops_terms(w: Wiring, pop_of: I64, local_of: I64, n_pops: int) -> tuple[tuple[int, int, I64], ...]:
    """Synapses reached per source unit and delay: synops(t) = Σ_d spikes(t - d) · fan_d."""
    p = w.program
    fan = w.axon_fanout
    terms: list[tuple[int, int, I64]] = []
    for kind, units, dst, delays in (
        (0, w.in_channel_global, p.in_dst.astype(np.int64), p.in_delay.astype(np.int64)),
        (1, p.route_src.astype(np.int64), p.route_dst.astype(np.int64), p.route_delay.astype(np.int64)),
    ):
        for d in np.unique(delays).tolist():
            m = delays == d
            if kind == 0:
                vec = np.bincount(units[m], weights=fan[dst[m]], minlength=w.n_channels).astype(np.int64)
                terms.append((0, d, vec))
            else:
                for q in range(n_pops):
                    mm = m & (pop_of[units] == q)
                    if mm.any():
                        size = int((pop_of == q).sum())
                        vec = np.bincount(local_of[units[mm]], weights=fan[dst[mm]],
                                          minlength=size).astype(np.int64)
                        terms.append((1 + q, d, vec))
    return tuple(terms)


@dataclass
class _Edge:
    """All synapses of one projection from one source, with one delay, as exact products
    (:mod:`emulator.crossbar`)."""

    src: int            # source index: 0 = the input channels, 1 + i = population i
    post: int           # population index
    proj: int           # projection index
    delay: int
    # pre-major ``[src_n, post_n]``. Order-insensitive families keep the increments;
    # order-sensitive ones (``datapath.ORDERED``) the positive and negative parts, whose sum is
    # the increment.
    crossbars: tuple[Crossbar, ...]
    synapse: int = 0    # the post neuron's synaptic state (``datapath.slot``)


class Prepared:
    """What the fast engine builds once per network, whatever the batch: the populations' sizes
    and spike limits, the edges' exact products (:func:`_edge_crossbars`), the schedule of
    strongly connected groups and the synaptic-operation products. Made by :func:`prepare`,
    which keeps one per Program (a Program is immutable) so that running a Program again pays
    none of this."""

    def __init__(self, net: Lowered) -> None:
        self.datapath = families.get(net.family).datapath
        self.ordered = bool(self.datapath.ORDERED)
        self.pops = list(net.populations)
        self.pop_index = {pop.name: i for i, pop in enumerate(self.pops)}
        self.src_sizes = [net.n_channels] + [pop.size for pop in self.pops]
        self.dmax = net.max_delay
        self.din = net.max_input_delay
        self.n_slots = [self.datapath.slots(pop.readout) for pop in self.pops]
        #: per source, the most spikes a unit sends in one step (inputs: the chip's input limit)
        self.max_count = [int(net.spec.chip.max_input_count)] + [int(pop.max_spikes.max(initial=0))
                                                                  for pop in self.pops]
        self.spike_dtype = _spike_dtype(max(self.max_count))
        self.edges = self._build_edges(net)
        # a projection fed by several edges sums their products in a dtype its summed bound fits
        bound: dict[tuple[int, int], int] = defaultdict(int)
        kinds: dict[tuple[int, int], set[np.dtype[Any]]] = defaultdict(set)
        for e in self.edges:
            bound[(e.post, e.proj)] += e.crossbars[0].bound
            kinds[(e.post, e.proj)].add(e.crossbars[0].dtype)
        self.sum_dtype = {key: _sum_dtype(kinds[key], b) for key, b in bound.items()}
        # synaptic operations: Σ spikes(t - d) · fan-out, one exact product per (source, delay)
        self.synops = [(src, d, crossbar(vec[:, None], self.max_count[src])) for src, d, vec in net.synops]
        # the edge products hold the synapses now: drop the paths
        self.net = replace(net, synapses=LoweredSynapses.empty())
        self._build_schedule()

    def _build_edges(self, net: Lowered) -> list[_Edge]:
        """One :class:`_Edge` per (source, post population, projection, delay), in that order, from
        the network's synapse blocks (:func:`_edge_crossbars`)."""
        by_edge: dict[tuple[int, int, int, int], list[SynapseBlock]] = defaultdict(list)
        for blk in net.synapses.blocks:
            by_edge[blk.edge].append(blk)
        edges: list[_Edge] = []
        for k, q, j, d in sorted(by_edge):
            shape = (self.src_sizes[k], self.pops[q].size)  # pre-major
            xbars = _edge_crossbars(by_edge.pop((k, q, j, d)), shape, self.max_count[k], self.ordered)
            edges.append(_Edge(k, q, j, d, xbars, self.datapath.slot(net.projections[j])))
        return edges

    def _build_schedule(self) -> None:
        """Strongly connected groups of populations, in dependency order (Tarjan's algorithm)."""
        n = len(self.pops)
        succ: list[set[int]] = [set() for _ in range(n)]
        for e in self.edges:
            if e.src > 0:
                succ[e.src - 1].add(e.post)
        for src, post in self.net.dependencies:
            succ[src].add(post)
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



#: one :class:`Prepared` per Program and kernel choice, while the Program lives
_PREPARED: weakref.WeakKeyDictionary[Program, dict[tuple[str, ...], Prepared]] = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()


def prepare(network: Wiring | Lowered) -> Prepared:
    """The :class:`Prepared` form of ``network``; a Program's (given as its :class:`Wiring`) is
    built once and shared by every engine that runs that Program."""
    if isinstance(network, Lowered):
        return Prepared(network)
    program = network.program
    key = tuple(crossbar_kernels())
    with _PREPARED_LOCK:
        found = _PREPARED.get(program, {}).get(key)
    if found is not None:
        return found
    made = Prepared(Lowered.from_wiring(network))
    with _PREPARED_LOCK:
        return _PREPARED.setdefault(program, {}).setdefault(key, made)


class FastEngine:
    """Runs a :class:`Lowered` network (or a Program's :class:`Wiring`) over ``[batch, n]`` arrays;
    keeps state between :meth:`run` calls. Implements :class:`emulator.families.datapath.Delivery`
    for the family steps. What does not depend on the batch is :func:`prepare` d once per Program."""

    name = "fast"

    def __init__(self, network: Wiring | Lowered, batch: int, seed: int) -> None:
        prep = prepare(network)
        self.prepared = prep
        self.batch = batch
        self.seed = seed
        self.net = prep.net
        self.datapath = prep.datapath
        self.ordered = prep.ordered
        self.pops = prep.pops
        self.pop_index = prep.pop_index
        self.src_sizes = prep.src_sizes
        self.dmax, self.din = prep.dmax, prep.din
        self.n_slots = prep.n_slots
        self.max_count = prep.max_count
        self.spike_dtype = prep.spike_dtype
        self.edges, self.sum_dtype, self.synops = prep.edges, prep.sum_dtype, prep.synops
        self.blocks, self.block_of = prep.blocks, prep.block_of
        self.internal, self.external = prep.internal, prep.external
        self.steps: list[PopulationStep] = [self.datapath.population(self.net, q, batch, seed)
                                            for q in range(len(self.pops))]
        # a family's compiled whole-program runner (Xylo's numba kernel) replaces the step loop
        self.runner = self.datapath.compiled(network, batch) if isinstance(network, Wiring) else None
        # on-chip learning: a Program with plastic projections runs on emulator/learning's step loop
        self.learning = plastic_runner(network, batch, seed) if isinstance(network, Wiring) else None
        self.runner = self.learning or self.runner
        self.reset()

    @property
    def compiled(self) -> bool:
        """Whether a compiled runner (not the numpy step loop) runs this network."""
        return self.runner is not None

    def step_bytes(self, probes: dict[str, tuple[str, str]]) -> int:
        """Working memory of :meth:`run` per step and sample, bytes (an upper estimate): the
        input and spike histories, the largest strongly connected group's drives (each edge's
        product, the population's summed drive in float64; order-sensitive families keep
        positive and negative parts per synaptic state), the probed records and their copies."""
        if self.runner is not None:
            return int(self.runner.step_bytes(probes))
        spike = self.spike_dtype.itemsize
        total = self.src_sizes[0] * (spike + 8) + sum(self.src_sizes[1:]) * spike
        edges_into: dict[int, int] = defaultdict(int)
        for e in self.edges:
            edges_into[e.post] += 8 * len(e.crossbars)
        per_neuron = [edges_into[q] + (16 * self.n_slots[q] if self.ordered else 8) + 8
                      for q in range(len(self.pops))]
        total += max((sum(per_neuron[q] * self.pops[q].size for q in comp) for comp in self.blocks), default=0)
        total += sum(16 * self.pops[self.pop_index[pop]].size for pop, _ in probes.values())
        return int(total) + 16

    # ----------------------------------------------------- the chip's axon order
    @cached_property
    def _order_maps(self) -> tuple[I64, I64]:
        """Global neuron → (population index, local index), for the axon tables of ``net.order``."""
        assert self.net.order is not None
        n = self.net.order.n_neurons
        pop_of = np.zeros(n, dtype=np.int64)
        local_of = np.zeros(n, dtype=np.int64)
        for i, pop in enumerate(self.pops):
            pop_of[pop.neurons] = i
            local_of[pop.neurons] = np.arange(pop.size)
        return pop_of, local_of

    @cached_property
    def axon_src(self) -> dict[int, list[tuple[int, int, int]]]:
        """Sources of every axon, ``{axon: [(source index, local unit, delay)]}``, for the in-order
        fallback and stepwise neurons (built on first use: a Python table, slow for big programs)."""
        assert self.net.order is not None
        pop_of, local_of = self._order_maps
        per_axon: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for axon, kind, src, delay in self.net.order.lists.axon_sources:
            if kind == 0:
                per_axon[axon].append((0, src, delay))
            else:
                per_axon[axon].append((1 + int(pop_of[src]), int(local_of[src]), delay))
        return per_axon

    @cached_property
    def _axon_src_groups(self) -> list[tuple[int, int, I64]]:
        rows = [(axon, src, local, delay) for axon, lst in self.axon_src.items() for src, local, delay in lst]
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return [(src, delay, arr[(arr[:, 1] == src) & (arr[:, 3] == delay)][:, [0, 2]])
                for src, delay in {(int(r[1]), int(r[3])) for r in arr}]

    @cached_property
    def _axon_tables(self) -> tuple[list[list[int]], I64, I64]:
        """Per axon its synapse range, the synaptic state each axon feeds, the stepwise neurons."""
        w = self.net.order
        assert w is not None
        p = w.program
        axes = np.arange(w.n_axons)
        bounds = np.stack([np.searchsorted(p.syn_axon, axes, side="left"),
                           np.searchsorted(p.syn_axon, axes, side="right")], axis=1).tolist()
        slot = np.array([self.datapath.slot(pr) for pr in w.projection_params] or [0], dtype=np.int64)
        return bounds, slot[np.maximum(w.axon_projection, 0)], self.datapath.stepwise(w.registers)

    def arrivals(self, axon: int, b: int, t: int) -> int:
        """Spike count arriving at ``axon`` at chunk step ``t`` for batch element ``b``."""
        ext, offsets = self._ext, self._offsets
        total = 0
        for src, local, delay in self.axon_src.get(axon, ()):
            total += int(ext[src][offsets[src] + t - delay, b, local])
        return total

    def _axon_counts(self, b: int, t: int) -> I64:
        """Spike count arriving at every axon at step ``t`` for batch element ``b``: ``[A]``."""
        assert self.net.order is not None
        ext, offsets = self._ext, self._offsets
        counts = np.zeros(self.net.order.n_axons, dtype=np.int64)
        for src, delay, pairs in self._axon_src_groups:
            row = ext[src][offsets[src] + t - delay, b]
            np.add.at(counts, pairs[:, 0], row[pairs[:, 1]].astype(np.int64))
        return counts

    def in_order(self, q: int, b: int, start: I64, add: I64, t: int, lo: int, hi: int, slot: int) -> I64:
        """Accumulate population ``q``'s synaptic state ``slot`` (batch ``b``) one axon at a time in
        ascending axon order, each spike a saturating addition: the chip's order, vectorised over
        the neurons. Without an axon order (a lowered netlist) the summed drive saturates once."""
        w = self.net.order
        if w is None:
            return np.clip(start + add, lo, hi)
        p = w.program
        pop_of, local_of = self._order_maps
        bounds, axon_slot, stepwise = self._axon_tables
        x = start.copy()
        counts = self._axon_counts(b, t)
        for axon in np.flatnonzero(counts).tolist():
            if axon_slot[axon] != slot:
                continue
            lo_i, hi_i = bounds[axon]
            nids = p.syn_neuron[lo_i:hi_i].astype(np.int64)
            keep = (pop_of[nids] == q) & ~stepwise[nids]
            nids = nids[keep]
            if not nids.size:
                continue
            inc = w.syn_increment[lo_i:hi_i][keep]
            idx = local_of[nids]
            for _ in range(int(counts[axon])):
                x[idx] = np.minimum(np.maximum(x[idx] + inc, lo), hi)
        return x

    # -------------------------------------------------------------------- state
    @property
    def state(self) -> list[dict[str, NDArray[Any]]]:
        """Per population, its registers (``{name: [B, n]}``)."""
        return [s.state for s in self.steps]

    def reset(self) -> None:
        self.t = 0
        for s in self.steps:
            s.reset()
        if self.runner is not None:
            self.runner.reset()
        b = self.batch
        # spike history, time-major [delay, batch, n]: the last steps' spikes still travelling on routes
        self.hist = [np.zeros((self.din, b, self.net.n_channels), dtype=self.spike_dtype)]
        self.hist += [np.zeros((self.dmax, b, pop.size), dtype=self.spike_dtype) for pop in self.pops]

    # ---------------------------------------------------------------------- run
    def run(self, inputs: I64, probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[Any]], dict[str, I64], I64]:
        """Spikes per population ``{pop: [B, T, n]}`` (views in :attr:`spike_dtype`), probed
        values ``{probe: [B, T, n]}`` and synaptic operations ``[B, T]``.

        ``inputs`` ``[B, T, channels]``. Internally every spike array is time-major
        ``[history + T, B, n]`` so that a delayed window over all steps is one contiguous block
        for one matrix product.
        """
        if self.runner is not None:
            out = self.runner.run(inputs, probes)
            self.t += inputs.shape[1]
            return out
        b_n, t_n, _ = inputs.shape
        if t_n == 0:  # nothing to run: empty records of the right shapes
            by_pop = {pop.name: np.zeros((b_n, 0, pop.size), dtype=self.spike_dtype) for pop in self.pops}
            return by_pop, {name: np.zeros((b_n, 0, self.pops[self.pop_index[pop]].size), dtype=np.int64)
                            for name, (pop, _) in probes.items()}, np.zeros((b_n, 0), dtype=np.int64)
        net = self.net
        sd = self.spike_dtype
        x_in = np.empty((self.din + t_n, b_n, net.n_channels), dtype=sd)
        x_in[: self.din] = self.hist[0]
        x_in[self.din:] = np.moveaxis(inputs[:, :, : net.n_channels], 1, 0)
        ext: list[NDArray[Any]] = [x_in]
        for q, size in enumerate(self.src_sizes[1:]):
            arr = np.empty((self.dmax + t_n, b_n, size), dtype=sd)
            arr[: self.dmax] = self.hist[1 + q]
            ext.append(arr)
        offsets = [self.din] + [self.dmax] * len(self.pops)
        self._ext, self._offsets = ext, offsets
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
        for src, d, fan in self.synops:
            off = offsets[src] - d
            window = ext[src][off:off + t_n]
            synops += fan(window.reshape(t_n * b_n, -1)).reshape(t_n, b_n).astype(np.int64)
        # keep the last delays' worth of spikes for the next chunk
        self.hist[0] = x_in[x_in.shape[0] - self.din:].copy()
        for q in range(len(self.pops)):
            arr = ext[1 + q]
            self.hist[1 + q] = arr[arr.shape[0] - self.dmax:].copy()
        self.t += t_n
        self._ext, self._offsets = [], []
        by_pop = {pop.name: np.moveaxis(ext[1 + q][self.dmax:], 0, 1) for q, pop in enumerate(self.pops)}
        probed: dict[str, I64] = {}
        for name, (pop, var) in probes.items():
            q = self.pop_index[pop]
            arr = by_pop[pop] if var == "spikes" else np.moveaxis(recorded[(q, var)], 0, 1)
            probed[name] = np.ascontiguousarray(arr, dtype=np.int64)
        return by_pop, probed, np.ascontiguousarray(synops.T)

    def _sum_drive(self, edges: list[_Edge], ext: list[NDArray[Any]], offsets: list[int], t0: int,
                   t_n: int) -> dict[int, dict[int, NDArray[Any]]]:
        """Σ over edges of delayed source spikes × matrix, for steps t0 .. t0+t_n-1, per post
        population and projection → time-major ``[t_n, B, post_n]`` exact integers (int32 or
        integer-valued float; a projection fed by several edges is summed in the dtype its summed
        bound allows, :attr:`sum_dtype`)."""
        out: dict[int, dict[int, NDArray[Any]]] = {}
        for e in edges:
            off = offsets[e.src] + t0 - e.delay
            window = ext[e.src][off:off + t_n]
            b_n = window.shape[1]
            xb = e.crossbars[0]
            if t_n == 1 and b_n == 1:
                x = window[0, 0]
                nz = np.flatnonzero(x)
                if not nz.size:
                    continue
                prod = xb.rows(nz, x[nz])[None, None, :]
            else:
                prod = xb(window.reshape(t_n * b_n, -1)).reshape(t_n, b_n, -1)
            acc = out.setdefault(e.post, {})
            if e.proj in acc:
                dtype = self.sum_dtype[(e.post, e.proj)]
                old = acc[e.proj]
                acc[e.proj] = old.astype(dtype, copy=False) + prod.astype(dtype, copy=False)
            else:
                acc[e.proj] = prod
        return out

    def _ordered_drive(self, edges: list[_Edge], ext: list[NDArray[Any]], offsets: list[int], t0: int,
                       t_n: int) -> dict[int, tuple[F64, F64]]:
        """Positive and negative parts of the drive per population, ``[t_n, B, S, n]`` float64
        (S synaptic states, ``datapath.slots``). Exact integers."""
        out: dict[int, tuple[F64, F64]] = {}
        for e in edges:
            off = offsets[e.src] + t0 - e.delay
            window = ext[e.src][off:off + t_n]
            b_n = window.shape[1]
            up, down = e.crossbars
            if t_n == 1 and b_n == 1:
                x = window[0, 0]
                nz = np.flatnonzero(x)
                if not nz.size:
                    continue
                pp, nn = up.rows(nz, x[nz]), down.rows(nz, x[nz])
            else:
                flat = window.reshape(t_n * b_n, -1)
                pp, nn = up(flat), down(flat)
            if e.post not in out:
                shape = (t_n, b_n, self.n_slots[e.post], self.pops[e.post].size)
                out[e.post] = (np.zeros(shape), np.zeros(shape))
            pos, neg = out[e.post]
            pos[:, :, e.synapse, :] += pp.reshape(t_n, b_n, -1)
            neg[:, :, e.synapse, :] += nn.reshape(t_n, b_n, -1)
        return out

    def _run_block(self, comp: list[int], ext: list[NDArray[Any]], offsets: list[int], t_n: int,
                   recorded: dict[tuple[int, str], I64]) -> None:
        members = set(comp)
        ext_edges = [e for e in self.external if e.post in members]
        int_edges = [e for e in self.internal if e.post in members]
        steps = self.steps
        rec = [(q, var, arr) for (q, var), arr in recorded.items() if q in members]
        t_global = self.t
        if self.ordered:
            pre_ord = self._ordered_drive(ext_edges, ext, offsets, 0, t_n)
            for t in range(t_n):
                step_ord = self._ordered_drive(int_edges, ext, offsets, t, 1) if int_edges else {}
                for q in comp:
                    pos, neg = _at(pre_ord.get(q), t)
                    if q in step_ord:
                        spos, sneg = step_ord[q]
                        pos = spos[0] if pos is None else pos + spos[0]
                        neg = sneg[0] if neg is None else neg + sneg[0]
                    ext[1 + q][offsets[1 + q] + t] = steps[q].step((pos, neg), self, t, t_global + t)
                for q, var, arr in rec:
                    arr[t] = steps[q].state[var]
            return
        sums = self._sum_drive(ext_edges, ext, offsets, 0, t_n)
        pre_current = {q: steps[q].current(sums[q]) for q in comp if q in sums}
        for t in range(t_n):
            step_sums = self._sum_drive(int_edges, ext, offsets, t, 1) if int_edges else {}
            for q in comp:
                pre = pre_current.get(q)
                a = pre[t] if pre is not None else np.zeros((self.batch, self.pops[q].size))
                if q in step_sums:
                    extra = steps[q].current(step_sums[q])
                    if extra is not None:
                        a = a + extra[0]
                ext[1 + q][offsets[1 + q] + t] = steps[q].step(a, self, t, t_global + t)
            for q, var, arr in rec:
                arr[t] = steps[q].state[var]


def _at(parts: tuple[F64, F64] | None, t: int) -> tuple[F64 | None, F64 | None]:
    return (None, None) if parts is None else (parts[0][t], parts[1][t])


def _spike_dtype(max_count: int) -> np.dtype[Any]:
    """The dtype of the engine's spike arrays: the narrowest that holds ``max_count`` exactly
    (int8 for the chips' 0/1 spikes and Xylo's up to 31: the int8 products read it directly)."""
    for dtype in (np.int8, np.int16, np.int32):
        if max_count <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _sum_dtype(dtypes: set[np.dtype[Any]], bound: int) -> np.dtype[Any]:
    """The dtype in which products of ``dtypes`` add exactly up to ``bound``: their own when
    they agree and the sum fits (int32 < 2^31, float32 < 2^24), else float64 (< 2^53) or int64."""
    if len(dtypes) == 1:
        (dtype,) = dtypes
        if (dtype == np.int32 and bound < 1 << 31) or (dtype == np.float32 and bound < 1 << 24):
            return dtype
    return np.dtype(np.float64 if bound < 1 << 53 else np.int64)


def _edge_crossbars(blocks: list[SynapseBlock], shape: tuple[int, int], max_count: int, ordered: bool
                    ) -> tuple[Crossbar, ...]:
    """The exact products of one edge from its synapse blocks (:func:`emulator.crossbar.crossbar`):
    its pre-major ``[pre_n, post_n]`` increments (repeated pairs summed), or (order-sensitive
    families) their positive and negative parts. A big edge with few non-zero entries (a
    convolution expanded into a crossbar) is summed as a CSR matrix, any other densely."""
    if keep_sparse(sum(b.size for b in blocks), shape[0] * shape[1]):
        m: Any = _sparse_sum(blocks, shape)
        if ordered:
            pos, neg = m.copy(), m.copy()
            pos.data = np.maximum(pos.data, 0)
            neg.data = np.minimum(neg.data, 0)
            pos.eliminate_zeros()
            neg.eliminate_zeros()
            return (crossbar(pos, max_count), crossbar(neg, max_count))
        return (crossbar(m, max_count),)
    dense = _dense_sum(blocks, shape, max_count)
    if ordered:
        return (crossbar(np.maximum(dense, 0), max_count), crossbar(np.minimum(dense, 0), max_count))
    return (crossbar(dense, max_count),)


def _sparse_sum(blocks: list[SynapseBlock], shape: tuple[int, int]) -> sp.csr_matrix:
    """An edge's increments as a CSR matrix, float64, duplicates summed."""
    pre = np.concatenate([b.pre for b in blocks]).astype(np.int64)
    post = np.concatenate([b.post for b in blocks]).astype(np.int64)
    inc = np.concatenate([b.increment for b in blocks]).astype(np.float64)
    m = sp.csr_matrix((inc, (pre, post)), shape=shape, dtype=np.float64)
    m.sum_duplicates()
    return m


def _dense_sum(blocks: list[SynapseBlock], shape: tuple[int, int], max_count: int) -> NDArray[Any]:
    """An edge's increments as a dense array, filled by one unbuffered addition per path
    (``np.add.at``, slice by slice): in float32 when a bound over the paths,
    ``max_post (paths into post) · max|w| · max(1, max_count) < 2^24`` (:func:`_paths_bound`), proves
    every partial sum exact, else in float64 (exact below 2^53)."""
    exact32 = _paths_bound(blocks, shape[1]) * max(1, max_count) < 2**24
    acc = np.zeros(shape[0] * shape[1], dtype=np.float32 if exact32 else np.float64)
    for b in blocks:
        for lo in range(0, b.size, PATH_BLOCK):
            sl = slice(lo, lo + PATH_BLOCK)
            index = b.pre[sl].astype(np.int64)
            index *= shape[1]
            index += b.post[sl]
            np.add.at(acc, index, b.increment[sl].astype(acc.dtype))
    return acc.reshape(shape)


def _paths_bound(blocks: list[SynapseBlock], post_n: int) -> int:
    """``max_post (paths into post) · max |increment|`` over an edge's blocks: at least every
    column's ``Σ |increment|`` over its paths, so at least every partial sum of the matrix."""
    fan_in = np.zeros(post_n, dtype=np.int64)
    top = 0
    for b in blocks:
        fan_in += np.bincount(b.post, minlength=post_n)
        top = max(top, abs(int(b.increment.min())), abs(int(b.increment.max())))
    return int(fan_in.max(initial=0)) * top
