"""The placement pass: the core of every neuron of a netlist, and the cores laid on the chip mesh.

``place(netlist, spec, strategy=...) -> Placement``. Placement never changes behaviour, only where
neurons sit. Strategies:

* ``greedy`` (the compiler's default): the partitioner below — small chunks packed together, cores
  laid along a space-filling curve;
* ``sequential``: the same cuts, one population per core range, cores in row-major order (the naive
  baseline, for comparison);
* ``per_population`` (:meth:`emulator.ProgramBuilder.build`'s default): each population in turn on
  cores of its own, after the cores of the populations before it, cut into the largest chunks that
  respect input axons and synapse memory; populations in ``fixed`` keep the cores given there. On a
  one-core target every population shares core 0 (the Program's validation checks the core).

Per-core limits (all read from ``hw_specs/<target>.toml`` ``[chip]`` and ``[synapse]``):

* ``neurons_per_core`` hidden neurons, ``readout_neurons`` readout neurons;
* ``axons_in_per_core``: distinct (projection, pre unit) pairs with a target on the core;
* ``synapse_memory_bits_per_core``, by the Program's cost model
  ``bits = Σ_axons (row_header_bits + synapses · (weight_bits + index_bits))`` (``weight_bits`` from
  the family: ``emulator.families.get(family).hardware.weight_bits``);
* ``axons_out_per_core``: routes leaving the core, one per (neuron, projection, target core);
* ``fan_out_per_neuron``: routes of one neuron (or target synapses, as the family counts fan-out).

Algorithm of ``greedy`` and ``sequential`` (linear in synapses; numpy per core, never per synapse):

1. populations are cut in reverse topological order into contiguous neuron ranges ("chunks"),
   greedily as large as the core limits allow: a chunk's input axons come from the first
   occurrence of every pre unit in the post-sorted synapse list (``np.minimum.at`` over the
   window), its memory from prefix sums, its output routes from the cut of its (already cut)
   target populations; projections that close a cycle use the previous pass's cut, and the
   passes repeat until every core respects ``axons_out_per_core``. The first uses found in a
   chunk's window are its distinct (pre unit, chunk) pairs: they are kept (``_Pairs``) and give
   the pre population's route counts, so no pass sorts the synapses;
2. chunks are ordered either layer by layer or by "flow" (each chunk next to the chunks that feed
   it, which interleaves convolution-like layers), packed next-fit into cores (small layers share
   a core when everything fits), and the order with fewer estimated route hops is kept;
3. cores are laid along a generalised Hilbert curve over each chip's mesh (chips in order), so
   that consecutive cores are mesh neighbours and runs of cores form compact blocks: spike
   traffic, estimated as the hop count of every route (:func:`traffic`), stays short.

Every core holds one contiguous run of each of its populations' neurons (the layout pass relies
on it for its linear-time path, and falls back to a general one otherwise).

Core index ↔ (chip, row, col): ``core = chip · cores_per_chip + row · mesh_cols + col``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emulator import families
from spikeforge.errors import DoesNotFit, ProgramError

from .netlist import Netlist

if TYPE_CHECKING:  # only needed for types; no import cost at run time
    from emulator.program import Program
    from hw_specs import HwSpec

__all__ = ["place", "Placement", "traffic", "mesh_position", "mesh_order", "STRATEGIES"]

#: ``greedy``: pack small chunks together and lay cores along a space-filling curve (default);
#: ``sequential``: one population per core range, cores in row-major order (the naive baseline);
#: ``per_population``: each population on cores of its own, in declaration order (the builder's).
STRATEGIES = ("greedy", "sequential", "per_population")

#: above this many routes per neuron on average, flow ordering is skipped (layer order is kept)
_SPREAD = 8
#: routes per block in :func:`traffic`
_TRAFFIC_BLOCK = 1 << 14
Progress = Callable[[int, int], Any]


@dataclass
class _Edge:
    """One projection as the partitioner sees it: synapses sorted by post (``ptr``: CSR row starts)."""

    name: str
    pre: str
    pre_is_input: bool
    n_pre: int
    post: str
    post_idx: NDArray[np.integer[Any]]  # the netlist's dtype: int32 (int64 only for huge populations)
    pre_idx: NDArray[np.integer[Any]]
    ptr: NDArray[np.int64]  # [n_post + 1]
    entry_bits: int
    header_bits: int


@dataclass
class _Chunk:
    """Neurons ``[start, end)`` of population ``pop`` and the resources they need on one core."""

    pop: str
    start: int
    end: int
    readout: bool
    axons: int
    bits: int
    routes: int
    cid: int = -1  # chunk number in the current pass


@dataclass
class _Pairs:
    """Distinct (pre unit, chunk) pairs of one edge, found while its post population was cut: the
    edge's axons and, from a population, its routes. ``pre`` int32 ``[pairs]``; ``chunk`` int32
    ``[pairs]``, the chunk's position in its population (chunk id minus the population's first)."""

    pre: NDArray[np.int32]
    chunk: NDArray[np.int32]


@dataclass
class _Flow:
    """Routes of one projection: pre unit ``pre`` of population ``pop`` → chunk ``target``."""

    pop: str
    pre: NDArray[np.integer[Any]]
    target: NDArray[np.integer[Any]]


@dataclass(frozen=True)
class Placement:
    """The core of every neuron: ``cores[population]``, int64 ``[size]`` (non-negative)."""

    cores: Mapping[str, NDArray[np.int64]]

    @property
    def n_cores(self) -> int:
        """Cores spanned: one more than the highest core index (0 without neurons)."""
        return max((int(c.max()) + 1 for c in self.cores.values() if c.size), default=0)


class _Model:
    """The netlist as the placer reads it: populations in topological order and sorted edges."""

    def __init__(self, netlist: Netlist, spec: HwSpec) -> None:
        self.spec = spec
        self.sizes = {p.name: p.size for p in netlist.populations}
        self.readout = {p.name: p.readout for p in netlist.populations}
        self.inputs = netlist.input_sizes
        hardware = families.get(spec.family).hardware
        self.fan_out_unit: str = hardware.FAN_OUT_UNIT
        self.fan_out_remedy: str = hardware.COPIES_REMEDY
        index_bits = int(spec.synapse.get("synapse_index_bits", 0))
        header = int(spec.synapse.get("synapse_row_header_bits", 0))
        self.edges: list[_Edge] = []
        for c in netlist.projections:
            post, pre = c.post_idx, c.pre_idx
            if post.size > 1 and (post[1:] < post[:-1]).any():
                order = np.argsort(post, kind="stable")
                post, pre = post[order], pre[order]
            n_post = self.sizes[c.post]
            # row pointers of the sorted rows (a binary search per row: no index-sized count copy)
            ptr = np.searchsorted(post, np.arange(n_post + 1, dtype=post.dtype)).astype(np.int64, copy=False)
            self.edges.append(_Edge(c.name, c.pre, c.pre_is_input, c.pre_size, c.post, post, pre,
                                    ptr, int(hardware.weight_bits(c.params)) + index_bits, header))
        self.order = _topological(list(self.sizes), [(e.pre, e.post) for e in self.edges if not e.pre_is_input])

    def incoming(self, pop: str) -> list[_Edge]:
        return [e for e in self.edges if e.post == pop]


def place(netlist: Netlist, spec: HwSpec, *, strategy: str = "greedy",
          fixed: Mapping[str, ArrayLike] | None = None, progress: Progress | None = None) -> Placement:
    """Core index of every neuron of ``netlist`` on ``spec``'s chips (see the module doc).

    ``strategy`` is one of :data:`STRATEGIES`; ``fixed`` (``per_population`` only) maps a population
    to the core of each of its neurons (``[size]``, non-negative). ``progress(done, total)`` is called
    with neurons placed so far (``greedy`` and ``sequential``). Raises :class:`DoesNotFit` naming the
    population, the limit, the spec file, the amount over and a remedy when one neuron cannot fit on
    a core, or (``greedy``, ``sequential``) when the target's chips run out; :class:`ProgramError`
    for a malformed ``fixed`` entry.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"place: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if fixed and strategy != "per_population":
        raise ValueError(f"place: fixed cores are taken by the per_population strategy, not {strategy!r}")
    if strategy == "per_population":
        return Placement(MappingProxyType(_per_population(netlist, spec, fixed or {})))
    return Placement(MappingProxyType(_partition(netlist, spec, strategy, progress)))


def _per_population(netlist: Netlist, spec: HwSpec, fixed: Mapping[str, ArrayLike]) -> dict[str, NDArray[np.int64]]:
    """Each population on consecutive cores after those used so far (``fixed`` ones as given)."""
    core_of: dict[str, NDArray[np.int64]] = {}
    next_core = 0
    single = spec.total_cores == 1
    model: _Model | None = None
    for pop in netlist.populations:
        if pop.name in fixed:
            cores = np.asarray(fixed[pop.name], dtype=np.int64)
            if cores.shape != (pop.size,) or (cores < 0).any():
                raise ProgramError(f"placement[{pop.name!r}]: expected {pop.size} non-negative core indices")
        elif single:
            cores = np.zeros(pop.size, dtype=np.int64)
        else:
            if model is None:
                model = _Model(netlist, spec)
            chunks, _ = _chunk_population(model, pop.name, None, cap=spec.chip.neurons_per_core)
            cores = next_core + np.repeat(np.arange(len(chunks), dtype=np.int64), [c.end - c.start for c in chunks])
        core_of[pop.name] = cores
        next_core = max(next_core, int(cores.max()) + 1)
    return core_of


def _partition(netlist: Netlist, spec: HwSpec, strategy: str, progress: Progress | None
               ) -> dict[str, NDArray[np.int64]]:
    """The ``greedy`` and ``sequential`` strategies."""
    if not netlist.populations:
        return {}
    model = _Model(netlist, spec)
    total = sum(model.sizes.values())
    if spec.total_cores == 1:
        placement = {name: np.zeros(size, dtype=np.int64) for name, size in model.sizes.items()}
        _check_single_core(model, placement, model.inputs)
        if progress is not None:
            progress(total, total)
        return placement

    # Output routes of a layer depend on how its targets are cut: cut populations in reverse
    # topological order, so that (without cycles) every neuron's route count is exact when its own
    # population is cut; projections that close a cycle use the previous pass's cut.
    chunk_id: dict[str, NDArray[np.int64]] = {}
    first_id: dict[str, int] = {}  # id of each population's first chunk (at its latest cut)
    pairs: dict[str, _Pairs] = {}  # by edge name, at the latest cut of its post population
    per_pop: dict[str, list[_Chunk]] = {}
    for _ in range(8):
        done = 0
        next_id = 0
        exact = True
        flows: list[_Flow] | None = []
        n_routes = 0
        for name in reversed(model.order):
            routes, known, fresh = _routes_of(model, name, pairs, first_id, flows)
            exact &= known
            n_routes += fresh
            if n_routes > _SPREAD * total:
                flows = None  # too spread out for flow ordering (see _best_order): keep no routes
            per_pop[name], found = _chunk_population(model, name, routes)
            pairs.update(found)
            first_id[name] = next_id
            ids = np.empty(model.sizes[name], dtype=np.int64)
            for c in per_pop[name]:
                ids[c.start:c.end] = next_id
                c.cid = next_id
                next_id += 1
            chunk_id[name] = ids
            done += model.sizes[name]
            if progress is not None:
                progress(done, total)
        chunks = [c for name in model.order for c in per_pop[name]]
        if strategy == "greedy":
            bins = _best_order(model, chunks, chunk_id, flows or [], spec)
        else:
            bins = [[c] for c in chunks]
        local = _local_placement(model, bins)
        if exact:
            break
        new_routes = _route_counts(model, local)
        _check_fan_out(model, new_routes)
        if not _routes_over(bins, new_routes, spec):
            break
    else:  # pragma: no cover - the route estimate converges in a pass or two in practice
        raise DoesNotFit(
            f"partition: could not meet axons_out_per_core {spec.chip.axons_out_per_core} ({spec.where()}); "
            "reduce fan-out"
        )
    if len(bins) > spec.total_cores:
        chip = spec.chip
        left = list(dict.fromkeys(c.pop for b in bins[spec.total_cores:] for c in b))
        raise DoesNotFit(
            f"network needs {len(bins)} cores > {spec.total_cores} ({chip.cores_per_chip} cores_per_chip x "
            f"{chip.max_chips} max_chips, {spec.where()}) by {len(bins) - spec.total_cores}; population(s) "
            f"{', '.join(repr(n) for n in left)} find no core; choose a larger target, reduce layer widths or "
            "use fewer weight bits"
        )
    slots = mesh_order(spec) if strategy == "greedy" else np.arange(spec.total_cores, dtype=np.int64)
    return {name: slots[core] for name, core in local.items()}


# ------------------------------------------------------------------------------ chunking
def _chunk_population(model: _Model, name: str, routes: NDArray[np.int64] | None, cap: int | None = None
                      ) -> tuple[list[_Chunk], dict[str, _Pairs]]:
    """Cut population ``name`` into maximal contiguous chunks that fit one core each.

    For a chunk ``[s, s + k)``: ``axons(k) = Σ_edges |{pre : ∃ synapse (post, pre), s ≤ post < s + k}|``,
    ``bits(k) = Σ_edges header · axons_e(k) + entry_e · synapses_e(k)``, ``routes(k) = Σ routes[post]``;
    all three are non-decreasing in ``k``, so the largest fitting ``k`` is a ``searchsorted``.
    Also returns the (pre unit, chunk) pairs of every incoming edge from a population, by edge name.
    ``cap``: neurons per chunk at most (default: the core's readout or hidden neurons).
    """
    chip = model.spec.chip
    size = model.sizes[name]
    readout = model.readout[name]
    if cap is None:
        cap = chip.readout_neurons if readout else chip.neurons_per_core
    edges = model.incoming(name)
    ax_lim, bit_lim, out_lim = chip.axons_in_per_core, chip.synapse_memory_bits_per_core, chip.axons_out_per_core
    # lower bound on memory from synapse entries alone, to size the window
    entry_prefix = np.zeros(size + 1, dtype=np.int64)
    for e in edges:
        entry_prefix += e.ptr * e.entry_bits
    route_prefix = None
    if routes is not None:
        route_prefix = np.concatenate([[0], np.cumsum(routes)])
    # in post_idx's dtype: ufunc.at's fast path needs equal dtypes (int32 values into int64: ~25x slower)
    first = [np.full(e.n_pre, np.iinfo(e.post_idx.dtype).max, dtype=e.post_idx.dtype) for e in edges]
    keep = [not e.pre_is_input for e in edges]
    found: list[list[NDArray[np.int64]]] = [[] for _ in edges]  # pre units new in each chunk, per edge
    per_chunk: list[list[int]] = [[] for _ in edges]
    chunks: list[_Chunk] = []
    s = 0
    guess = cap
    out_room = size
    while s < size:
        room = min(cap, size - s)
        syn_room = int(entry_prefix.searchsorted(entry_prefix[s] + bit_lim, side="right")) - 1 - s
        room = max(1, min(room, syn_room))
        if route_prefix is not None:
            out_room = int(route_prefix.searchsorted(route_prefix[s] + out_lim, side="right")) - 1 - s
            room = max(1, min(room, out_room))
        w = max(1, min(room, guess))
        while True:
            cum_ax, cum_bits, firsts = _window(edges, first, s, w, entry_prefix, keep)
            k = min(int(cum_ax.searchsorted(ax_lim, side="right")), int(cum_bits.searchsorted(bit_lim, side="right")),
                    w)
            if k < w or w >= room:
                break
            w = min(room, 2 * w)
        k = min(k, out_room)  # the chunk's routes fit axons_out_per_core (out_room before the floor of 1)
        if k == 0:
            _raise_single_neuron(model, name, s, edges, int(cum_ax[0]), int(cum_bits[0]),
                                 0 if routes is None else int(routes[s]))
        for i, (pre, post) in enumerate(firsts):
            cut = int(np.searchsorted(post, s + k))  # the window's first uses that fall in the chunk
            found[i].append(pre[:cut])
            per_chunk[i].append(cut)
        n_routes = 0 if route_prefix is None else int(route_prefix[s + k] - route_prefix[s])
        chunks.append(_Chunk(name, s, s + k, readout, int(cum_ax[k - 1]), int(cum_bits[k - 1]), n_routes))
        s += k
        guess = max(8, 2 * k)
    ranks = np.arange(len(chunks), dtype=np.int32)
    pairs = {e.name: _Pairs(np.concatenate(found[i], dtype=np.int32, casting="same_kind"),
                            np.repeat(ranks, per_chunk[i]))
             for i, e in enumerate(edges) if keep[i]}
    return chunks, pairs


def _window(edges: list[_Edge], first: list[NDArray[np.integer[Any]]], s: int, w: int, entry_prefix: NDArray[np.int64],
            keep: list[bool]
            ) -> tuple[NDArray[np.int64], NDArray[np.int64], list[tuple[NDArray[np.int64], NDArray[np.int64]]]]:
    """Cumulative input axons and synapse bits of chunks ``[s, s + k)`` for ``k = 1..w`` (int64 ``[w]``).

    Also, per edge, the pre units used in the window and the first post neuron that uses each
    (``post_idx``'s dtype, by post; empty unless ``keep``): a chunk's distinct pre units are those first used in it.
    """
    cum_ax = np.zeros(w, dtype=np.int64)
    cum_bits = entry_prefix[s + 1:s + w + 1] - entry_prefix[s]  # synapse entries of [s, s + k)
    firsts: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
    empty = np.zeros(0, dtype=np.int64)
    for e, f, k in zip(edges, first, keep, strict=True):
        a, b = int(e.ptr[s]), int(e.ptr[s + w])
        if a == b:
            firsts.append((empty, empty))
            continue
        pre, post = e.pre_idx[a:b].astype(np.intp), e.post_idx[a:b]  # pre indexes thrice: widened once
        np.minimum.at(f, pre, post)  # first post (in this window) that needs each pre unit's axon
        is_first = f[pre] == post
        f[pre] = np.iinfo(f.dtype).max
        post_first = post[is_first]
        firsts.append((pre[is_first], post_first) if k else (empty, empty))
        axons = np.bincount(post_first - s, minlength=w).cumsum()
        cum_ax += axons
        cum_bits += axons * e.header_bits
    return cum_ax, cum_bits, firsts


def _raise_single_neuron(model: _Model, name: str, j: int, edges: list[_Edge], axons: int, bits: int,
                         routes: int) -> None:
    spec, chip = model.spec, model.spec.chip
    where = spec.where()
    if axons > chip.axons_in_per_core:
        raise DoesNotFit(
            f"population {name!r}: neuron {j} alone needs {axons} input axons > axons_in_per_core "
            f"{chip.axons_in_per_core} ({where}) by {axons - chip.axons_in_per_core}; reduce its fan-in "
            "(split the layer's inputs over an extra layer, or prune inputs)"
        )
    if bits > chip.synapse_memory_bits_per_core:
        raise DoesNotFit(
            f"population {name!r}: neuron {j} alone needs {bits} bits of synapse memory > "
            f"synapse_memory_bits_per_core {chip.synapse_memory_bits_per_core} ({where}) by "
            f"{bits - chip.synapse_memory_bits_per_core} bits; reduce its fan-in or use fewer weight bits"
        )
    raise DoesNotFit(
        f"population {name!r}: neuron {j} alone needs {routes} output routes > axons_out_per_core "
        f"{chip.axons_out_per_core} ({where}) by {routes - chip.axons_out_per_core}; reduce its fan-out "
        "(its targets span too many cores)"
    )


# ------------------------------------------------------------------------------- packing
def _pack(chunks: list[_Chunk], spec: HwSpec) -> list[list[_Chunk]]:
    """Next-fit packing of chunks (in order) into cores: all resources add up on a shared core."""
    chip = spec.chip
    bins: list[list[_Chunk]] = []
    used: tuple[int, ...] = (0, 0, 0, 0, 0)
    lim = (chip.neurons_per_core, chip.readout_neurons, chip.axons_in_per_core, chip.synapse_memory_bits_per_core,
           chip.axons_out_per_core)
    for c in chunks:
        n = c.end - c.start
        need = (0 if c.readout else n, n if c.readout else 0, c.axons, c.bits, c.routes)
        both = tuple(u + x for u, x in zip(used, need, strict=True))
        if bins and all(x <= m for x, m in zip(both, lim, strict=True)):
            bins[-1].append(c)
            used = both
        else:
            bins.append([c])
            used = need
    return bins


def _local_placement(model: _Model, bins: list[list[_Chunk]]) -> dict[str, NDArray[np.int64]]:
    """Neuron → position in the bin list (before the mesh mapping)."""
    out = {name: np.empty(size, dtype=np.int64) for name, size in model.sizes.items()}
    for i, b in enumerate(bins):
        for c in b:
            out[c.pop][c.start:c.end] = i
    return out


# --------------------------------------------------------------------------- ordering
def _best_order(model: _Model, chunks: list[_Chunk], chunk_id: dict[str, NDArray[np.int64]], flows: list[_Flow],
                spec: HwSpec) -> list[list[_Chunk]]:
    """Pack chunks in layer order or in "flow" order, whichever gives fewer estimated route hops.

    Flow order: a chunk's coordinate is its relative position in its population for populations
    fed only by inputs, else the route-weighted mean coordinate of the chunks feeding it (one
    sweep in topological order); chunks sorted by coordinate (ties: layer order). For local
    (convolution-like) connectivity this interleaves the layers, so that chunk k of every layer
    sits next to chunk k of the next; for dense layers it changes little, and the estimate keeps
    whichever order is better. Cost: ``Σ_routes |Δrow| + |Δcol|`` over the mesh slots. With more
    than ``_SPREAD`` routes per neuron (targets spread over many cores) layer order is kept
    without the estimate, whose chunk graph would be dense.
    """
    n = len(chunks)
    by_id = {c.cid: i for i, c in enumerate(chunks)}
    remap = np.array([by_id[k] for k in range(n)], dtype=np.int64)  # chunk id → index in ``chunks``
    routes = sum(int(f.pre.size) for f in flows)
    if routes == 0 or routes > _SPREAD * sum(model.sizes.values()):
        # no routes, or so spread out (random wide fan-in) that no order keeps them local
        return _pack(chunks, spec)
    a, b, weight = _chunk_edges(flows, chunk_id, remap)
    coord = np.array([(c.start + c.end) / 2 / model.sizes[c.pop] for c in chunks])
    fed = np.bincount(b, weights=weight, minlength=n) > 0
    pop_of = np.array([model.order.index(c.pop) for c in chunks])
    for level in range(len(model.order)):
        into = pop_of[b] == level
        if not into.any():
            continue
        num = np.bincount(b[into], weights=weight[into] * coord[a[into]], minlength=n)
        den = np.bincount(b[into], weights=weight[into], minlength=n)
        sel = (pop_of == level) & fed & (den > 0)
        coord[sel] = num[sel] / den[sel]
    flow_order = np.lexsort((np.arange(n), coord))
    slots = mesh_order(spec)
    best: list[list[_Chunk]] | None = None
    best_cost = np.inf
    for order in (np.arange(n), flow_order):
        bins = _pack([chunks[i] for i in order], spec)
        where = np.empty(n, dtype=np.int64)
        for i, group in enumerate(bins):
            for c in group:
                where[by_id[c.cid]] = i
        if len(bins) > slots.size:
            return bins
        cost = _hop_cost(spec, slots[where], a, b, weight)
        if cost < best_cost:
            best, best_cost = bins, cost
    assert best is not None
    return best


def _chunk_edges(flows: list[_Flow], chunk_id: dict[str, NDArray[np.int64]], remap: NDArray[np.int64]
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Chunk → chunk route counts ``(a, b, routes)``: per flow a ``bincount`` over the two populations'
    chunk ranges (small: chunks × chunks), so that millions of routes reduce without a sort."""
    parts_a, parts_b, parts_w = [], [], []
    for f in flows:
        src = chunk_id[f.pop][f.pre]
        if src.size == 0:
            continue
        s0, s1 = int(src.min()), int(src.max()) + 1
        t0, t1 = int(f.target.min()), int(f.target.max()) + 1
        width = t1 - t0
        key = (src - s0) * width + (f.target - t0)
        if (s1 - s0) * width <= 8 * key.size + (1 << 24):
            counts = np.bincount(key, minlength=(s1 - s0) * width)
            hit = np.flatnonzero(counts)
            key, w = hit, counts[hit]
        else:
            key = np.sort(key)
            first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
            key, w = key[first], np.diff(np.concatenate([first, [key.size]]))
        parts_a.append(remap[key // width + s0])
        parts_b.append(remap[key % width + t0])
        parts_w.append(w)
    return np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_w)


def _hop_cost(spec: HwSpec, core: NDArray[np.int64], a: NDArray[np.int64], b: NDArray[np.int64],
              weight: NDArray[np.int64]) -> float:
    """``Σ weight · (|Δrow| + |Δcol|)`` of chunk pairs ``(a, b)``, chunk ``k`` on core ``core[k]``."""
    chip, row, col = mesh_position(spec, core)
    gcol = chip * int(spec.chip.mesh[1]) + col
    return float(((np.abs(row[a] - row[b]) + np.abs(gcol[a] - gcol[b])) * weight).sum())


# ---------------------------------------------------------------------------- routes
def _axon_pairs(e: _Edge, post_core: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Distinct (pre unit, post core) pairs of an edge: its axons (and, for a population, its routes).

    A marker over ``cores × pre`` when that is not much larger than the edge, else ``np.unique``.
    """
    if post_core.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(post_core.min()), int(post_core.max())
    span = (hi - lo + 1) * e.n_pre
    key = (post_core - lo) * e.n_pre + e.pre_idx
    if span <= 8 * key.size + (1 << 26):  # one byte per possible pair
        mark = np.zeros(span, dtype=bool)
        mark[key] = True
        uniq = np.flatnonzero(mark)
    else:  # a sort, of int32 keys (twice as fast) when the span allows
        uniq = _sorted_unique(key.astype(np.int32) if span < 1 << 31 else key).astype(np.int64, copy=False)
    return uniq % e.n_pre, uniq // e.n_pre + lo


def _sorted_unique(key: NDArray[np.integer[Any]]) -> NDArray[np.integer[Any]]:
    """Distinct values of ``key`` (any integer dtype), ascending, same dtype (a sort: faster than
    ``np.unique``'s hashing at this size)."""
    key = np.sort(key)
    keep = np.ones(key.size, dtype=bool)
    np.not_equal(key[1:], key[:-1], out=keep[1:])
    return key[keep]


def _route_counts(model: _Model, core_of: dict[str, NDArray[np.int64]]) -> dict[str, NDArray[np.int64]]:
    """Routes (and hence output axons) of every neuron: Σ over its projections of distinct target cores."""
    out = {name: np.zeros(size, dtype=np.int64) for name, size in model.sizes.items()}
    for e in model.edges:
        if e.pre_is_input:
            continue
        pre, _ = _axon_pairs(e, core_of[e.post][e.post_idx])
        out[e.pre] += np.bincount(pre, minlength=e.n_pre)
    return out


def _routes_of(model: _Model, name: str, pairs: dict[str, _Pairs], first_id: dict[str, int],
               flows: list[_Flow] | None) -> tuple[NDArray[np.int64], bool, int]:
    """Routes of each neuron of ``name`` given the cut of its targets (``pairs``, by edge name).

    Returns the counts (int64 ``[size]``), whether every target population was cut already in
    this pass (else the previous pass's cut, or none, was used) and the number of routes into
    populations cut in this pass, which are appended to ``flows`` (pre unit → target chunk) unless
    it is None. Checks ``fan_out_per_neuron``.
    """
    routes = np.zeros(model.sizes[name], dtype=np.int64)
    known = True
    fresh_routes = 0
    for e in model.edges:
        if e.pre != name or e.pre_is_input:
            continue
        if e.post not in first_id:
            known = False
            continue
        fresh = model.order.index(e.post) > model.order.index(name)
        known &= fresh
        p = pairs[e.name]
        routes += np.bincount(p.pre, minlength=e.n_pre)
        if fresh:
            fresh_routes += p.pre.size
            if flows is not None:
                flows.append(_Flow(e.pre, p.pre, p.chunk + first_id[e.post]))
            del pairs[e.name]  # the next pass cuts the target again first
    _check_fan_out(model, {name: routes})
    return routes, known, fresh_routes


def _check_fan_out(model: _Model, routes: dict[str, NDArray[np.int64]]) -> None:
    spec, chip = model.spec, model.spec.chip
    if not chip.fan_out_per_neuron:
        return
    for name, r in routes.items():
        if r.size and int(r.max()) > chip.fan_out_per_neuron:
            j = int(r.argmax())
            worst = int(r[j])
            hint = model.fan_out_remedy
            raise DoesNotFit(
                f"population {name!r}: neuron {j} needs {worst} routes (one per target core) > fan_out_per_neuron "
                f"{chip.fan_out_per_neuron} ({spec.where()}) by {worst - chip.fan_out_per_neuron}; its targets "
                f"do not fit on {chip.fan_out_per_neuron} core(s): reduce its fan-out or the target layer's "
                f"width{hint}"
            )


def _routes_over(bins: list[list[_Chunk]], routes: dict[str, NDArray[np.int64]], spec: HwSpec) -> bool:
    lim = spec.chip.axons_out_per_core
    for b in bins:
        if sum(int(routes[c.pop][c.start:c.end].sum()) for c in b) > lim:
            return True
    return False


def _check_single_core(model: _Model, placement: dict[str, NDArray[np.int64]], inputs: dict[str, int]
                       ) -> None:
    """A one-core target: every total must fit the core (the error names the populations)."""
    spec, chip = model.spec, model.spec.chip
    where = spec.where()
    names = ", ".join(repr(n) for n in model.sizes)
    hidden = sum(s for n, s in model.sizes.items() if not model.readout[n])
    readout = sum(s for n, s in model.sizes.items() if model.readout[n])
    axons = bits = 0
    fan = {name: np.zeros(size, dtype=np.int64) for name, size in model.sizes.items()}
    routes = 0
    for e in model.edges:
        pre, _ = _axon_pairs(e, np.zeros(e.post_idx.size, dtype=np.int64))
        axons += pre.size
        bits += pre.size * e.header_bits + e.post_idx.size * e.entry_bits
        if not e.pre_is_input:
            routes += pre.size
            # the family counts fan-out in target synapses (each synapse) or routes (each axon)
            per = np.bincount(e.pre_idx if model.fan_out_unit == "target synapses" else pre, minlength=e.n_pre)
            fan[e.pre] += per
    checks = [
        ("hidden neurons", hidden, chip.neurons_per_core, "neurons_per_core", "reduce the layer widths"),
        ("readout neurons", readout, chip.readout_neurons, "readout_neurons", "reduce the output layer"),
        ("input axons", axons, chip.axons_in_per_core, "axons_in_per_core", "reduce fan-in or the input size"),
        ("synapse memory bits", bits, chip.synapse_memory_bits_per_core, "synapse_memory_bits_per_core",
         "prune synapses"),
        ("output routes", routes, chip.axons_out_per_core, "axons_out_per_core", "reduce fan-out"),
    ]
    if chip.input_channels:
        channels = sum(inputs.values())
        checks.append(("input channels", channels, chip.input_channels, "input_channels",
                       "reduce the input size (pool or crop the events)"))
    for what, amount, limit, key, hint in checks:
        if amount > limit:
            raise DoesNotFit(
                f"populations {names} on the one core of {spec.name}: {amount} {what} > {key} {limit} ({where}) "
                f"by {amount - limit}; {hint}"
            )
    if chip.fan_out_per_neuron:
        for name, f in fan.items():
            if f.size and int(f.max()) > chip.fan_out_per_neuron:
                j = int(f.argmax())
                raise DoesNotFit(
                    f"population {name!r}: neuron {j} has fan-out {int(f[j])} > fan_out_per_neuron "
                    f"{chip.fan_out_per_neuron} ({where}) by {int(f[j]) - chip.fan_out_per_neuron}; prune its "
                    "outgoing connections"
                )


# ------------------------------------------------------------------------------- mesh
def mesh_position(spec: HwSpec, cores: NDArray[np.int64]) -> tuple[NDArray[np.int64], ...]:
    """``(chip, row, col)`` of core indices (row-major in ``chip.mesh``), each int64 like ``cores``."""
    cpc = spec.chip.cores_per_chip
    cols = int(spec.chip.mesh[1])
    cores = np.asarray(cores, dtype=np.int64)
    chip, pos = np.divmod(cores, cpc)
    row, col = np.divmod(pos, cols)
    return chip, row, col


def mesh_order(spec: HwSpec) -> NDArray[np.int64]:
    """Core indices in placement order: a generalised Hilbert curve over each chip's mesh, chip by chip.

    Consecutive slots are mesh neighbours, and any run of slots covers a compact block, so layers
    placed one after another sit in adjacent blocks. int64 ``[total_cores]``.
    """
    rows, cols = (int(x) for x in spec.chip.mesh)
    cpc = spec.chip.cores_per_chip
    if rows * cols != cpc:
        curve = np.arange(cpc, dtype=np.int64)
    else:
        curve = np.array([r * cols + c for c, r in _gilbert(cols, rows)], dtype=np.int64)
    return (np.arange(spec.chip.max_chips, dtype=np.int64)[:, None] * cpc + curve[None, :]).ravel()


def _gilbert(width: int, height: int) -> Iterator[tuple[int, int]]:
    """Generalised Hilbert curve over a ``width × height`` grid: ``(x, y)`` cells, each once."""
    if width >= height:
        yield from _gilbert_rect(0, 0, width, 0, 0, height)
    else:
        yield from _gilbert_rect(0, 0, 0, width, height, 0)


def _gilbert_rect(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> Iterator[tuple[int, int]]:
    # (ax, ay): the major axis of the rectangle, (bx, by): the minor axis; split it in two (long) or three
    w, h = abs(ax + ay), abs(bx + by)
    dax, day = int(np.sign(ax)), int(np.sign(ay))
    dbx, dby = int(np.sign(bx)), int(np.sign(by))
    if h == 1:
        for _ in range(w):
            yield x, y
            x, y = x + dax, y + day
        return
    if w == 1:
        for _ in range(h):
            yield x, y
            x, y = x + dbx, y + dby
        return
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:
        if w2 % 2 and w > 2:  # prefer an even split so that the halves join at neighbours
            ax2, ay2 = ax2 + dax, ay2 + day
        yield from _gilbert_rect(x, y, ax2, ay2, bx, by)
        yield from _gilbert_rect(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
    else:
        if h2 % 2 and h > 2:
            bx2, by2 = bx2 + dbx, by2 + dby
        yield from _gilbert_rect(x, y, bx2, by2, ax2, ay2)
        yield from _gilbert_rect(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
        yield from _gilbert_rect(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                                 -bx2, -by2, -(ax - ax2), -(ay - ay2))


# ----------------------------------------------------------------------------- traffic
def traffic(program: Program) -> dict[str, float]:
    """Spike-traffic estimate of a placed program (for reports and for comparing placements).

    Chips are taken side by side along the mesh columns. Per route ``r`` from core ``a`` to core
    ``b``: ``hops_r = |row_a − row_b| + |gcol_a − gcol_b|`` with ``gcol = chip · cols + col``.
    Returns ``routes``, ``hops = Σ_r hops_r`` (mesh hops if every neuron spiked once),
    ``synapse_hops = Σ_r hops_r · synapses_r`` (weighted by the synapses the route feeds),
    ``mean_hops``, ``inter_chip_routes``, ``inter_chip_hops = Σ_r |chip_a − chip_b|``,
    ``cores_used`` and ``chips_used``.
    """
    spec = program.spec
    cols = int(spec.chip.mesh[1])
    neuron_core = program.neuron_core
    axon_offset = program.axon_offset
    per_axon = program.synapses_per_axon()  # cached by the Program's validation
    hops = synapse_hops = inter_routes = inter_hops = 0
    for lo in range(0, program.route_src.size, _TRAFFIC_BLOCK):  # blocks: no route-sized temporaries
        dst = program.route_dst[lo:lo + _TRAFFIC_BLOCK]
        ca, ra, cola = mesh_position(spec, neuron_core[program.route_src[lo:lo + _TRAFFIC_BLOCK]])
        cb, rb, colb = mesh_position(spec, axon_offset.searchsorted(dst, side="right") - 1)
        h = np.abs(ra - rb) + np.abs((ca * cols + cola) - (cb * cols + colb))
        hops += int(h.sum())
        synapse_hops += int((h * per_axon[dst]).sum())
        inter_routes += int((ca != cb).sum())
        inter_hops += int(np.abs(ca - cb).sum())
    used = np.flatnonzero(program.core_neurons)
    chips = np.unique(used // spec.chip.cores_per_chip)
    n = int(program.route_src.size)
    return {
        "routes": n,
        "hops": hops,
        "mean_hops": hops / n if n else 0.0,
        "synapse_hops": synapse_hops,
        "inter_chip_routes": inter_routes,
        "inter_chip_hops": inter_hops,
        "cores_used": int(used.size),
        "chips_used": int(chips.size),
    }


# ----------------------------------------------------------------------------- helpers
def _topological(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Populations in topological order (ties and cycles: declaration order)."""
    indeg = {n: 0 for n in names}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        if a != b:
            succ[a].append(b)
            indeg[b] += 1
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(names):
        ready = [n for n in names if n not in placed and indeg[n] == 0]
        pick = ready[0] if ready else next(n for n in names if n not in placed)  # a cycle: break it in order
        order.append(pick)
        placed.add(pick)
        for m in succ[pick]:
            indeg[m] -= 1
    return order
