"""Neuron replication: one route per neuron (TrueNorth), by identical copies of the neurons.

A TrueNorth neuron sends its spike to exactly one axon of one core (Cassidy et al. 2013;
Merolla et al. 2014: each neuron has one target ``(core, axon)``). A network neuron whose spike is
needed in several places — its targets span several cores, or a target population reads it on two
axons (a positive- and a negative-type copy, see :mod:`compiler.passes.truenorth`) — is therefore
built as ``c_u`` identical neurons, one per place ("route"):

    c_u = max(1, Σ_projections |{cores holding a target of u in that projection}|)

Copies of a neuron have the same registers and the same incoming synapses, so they hold the same
membrane potential and spike on the same ticks: the network computes exactly what it computed
before (unlike splitter/relay neurons, no tick of delay is added). This holds because the compiler
emits deterministic neurons only (no stochastic synapse, leak or threshold modes), which is
checked. The price is neurons and crossbar columns: copies of ``u`` sit next to each other and
share ``u``'s input axons on their core.

The pass runs over populations in reverse topological order, so that when a population is
processed the cut of every population it feeds is known:

1. its neurons are replicated: ``c_u`` adjacent copies of neuron ``u``, each with all of ``u``'s
   incoming synapses, neurons ordered by their lowest input (a convolution's channels at one
   position together, see :func:`_locality_order`; an output population keeps its order);
2. the replicated population is cut into cores greedily, in order: as many neurons as fit
   ``neurons_per_core``, ``axons_in_per_core`` (distinct ``(projection, pre unit)`` pairs) and
   ``synapse_memory_bits_per_core``;
3. for every projection from a hidden population into it, each pre neuron's distinct target
   cores are numbered: copy ``r`` of the pre neuron will carry route ``r``.

Cores are then packed next-fit in topological order (small populations share a core when all
limits allow) and laid along :func:`compiler.backend.placement.mesh_order`. The result is the
replicated graph and the core of every neuron (``placement`` for ``ProgramBuilder.build``).
Host inputs are not limited: the host writes an input event to every axon that listens to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from emulator import families
from hw_specs import HwSpec
from spikeforge.errors import DoesNotFit, UnsupportedOperator

from .. import ir
from ..backend.placement import mesh_order

__all__ = ["Replicated", "replicate"]

#: registers that make a TrueNorth neuron stochastic: its copies would draw different numbers
_STOCHASTIC = ("stochastic_synapse", "stochastic_leak", "threshold_mask_bits")


@dataclass(frozen=True)
class Replicated:
    """The replicated quantised ``graph`` and where its neurons go.

    ``placement``: core of every neuron, ``{population: int64 [size after replication]}``;
    ``owner``: the original neuron of every replicated neuron, ``{population: int64 [size after]}``;
    ``copies``: copies of every original neuron, ``{population: int64 [original size]}``;
    ``n_cores``: cores used in all (after packing).
    """

    graph: ir.Graph
    placement: dict[str, NDArray[np.int64]]
    owner: dict[str, NDArray[np.int64]]
    copies: dict[str, NDArray[np.int64]]
    n_cores: int

    def neurons_added(self) -> int:
        """Neurons the replication added to the network."""
        return int(sum(int(c.sum()) - c.size for c in self.copies.values()))


@dataclass
class _Rows:
    """A projection's synapses after replication of its post population, sorted by post.

    ``post`` / ``pre`` / ``values`` int64 ``[nnz']``; ``ptr`` CSR row starts ``[n_post' + 1]``;
    ``rank`` (projections from hidden populations): route number of each synapse's pre neuron.
    """

    syn: ir.Synapses
    post: NDArray[np.int64]
    pre: NDArray[np.int64]
    values: NDArray[np.int64]
    ptr: NDArray[np.int64]
    rank: NDArray[np.int64] | None = None


def replicate(graph: ir.Graph, spec: HwSpec, *, check_cores: bool = True) -> Replicated:
    """Replicate neurons of the quantised ``graph`` so that every neuron has at most one route.

    Raises :class:`DoesNotFit` when one neuron's inputs alone exceed a core, or (``check_cores``)
    the replicated network needs more cores than the target has; :class:`UnsupportedOperator` for
    an output population that must also reach other cores, or stochastic neurons.
    """
    ir.validate(graph, "quantized")
    pops = _topological(graph)
    outputs = {o.inputs[0] for o in graph.of_type(ir.Output)}
    routes = {p.name: np.zeros(p.size, dtype=np.int64) for p in pops}
    rows: dict[str, _Rows] = {}
    copies: dict[str, NDArray[np.int64]] = {}
    owner: dict[str, NDArray[np.int64]] = {}
    first: dict[str, NDArray[np.int64]] = {}  # replicated index of every original neuron's first copy
    chunks: dict[str, list[tuple[int, int, int, int]]] = {}  # pop → [(start, end, axons, bits)]
    core_of: dict[str, NDArray[np.int64]] = {}
    for pop in reversed(pops):
        _check_deterministic(pop)
        c = np.maximum(routes[pop.name], 1)
        if pop.name in outputs and c.max() > 1:
            j = int(c.argmax())
            raise UnsupportedOperator(
                f"population {pop.name!r} is an output and also feeds other layers: neuron {j} would need {int(c[j])} "
                f"routes, but a {spec.family} neuron has {spec.chip.fan_out_per_neuron} ({spec.where()}: "
                "chip.fan_out_per_neuron) and the output port reads the population as it is; add a separate output "
                "layer, or choose another target")
        order = np.arange(pop.size, dtype=np.int64) if pop.name in outputs else _locality_order(graph, pop)
        copies[pop.name] = c
        owner[pop.name] = np.repeat(order, c[order])
        starts = np.zeros(pop.size, dtype=np.int64)
        starts[order] = np.cumsum(c[order]) - c[order]
        first[pop.name] = starts
        for s in pop.inputs:
            syn = graph[s]
            assert isinstance(syn, ir.Synapses)
            rows[s] = _replicate_rows(syn, owner[pop.name])
        incoming = [rows[s] for s in pop.inputs]
        counters = [routes.get(r.syn.inputs[0]) for r in incoming]  # None: a host input (no route limit)
        chunks[pop.name], core_of[pop.name] = _cut(pop.name, owner[pop.name].size, incoming, counters, spec)
        for syn in graph.users(pop.name):  # its targets were processed: their route ranks are known
            if isinstance(syn, ir.Synapses):
                r = rows[syn.name]
                assert r.rank is not None
                r.pre = first[pop.name][r.pre] + r.rank
    placement, n_cores = _pack(pops, chunks, core_of, spec, check_cores)
    return Replicated(_rebuild(graph, rows, owner), placement, owner, copies, n_cores)


# ------------------------------------------------------------------------------- steps
def _topological(graph: ir.Graph) -> list[ir.Neuron]:
    import networkx as nx

    nodes = [graph[n] for n in nx.topological_sort(graph.to_networkx())]
    return [n for n in nodes if isinstance(n, ir.Neuron)]


def _check_deterministic(pop: ir.Neuron) -> None:
    for key in _STOCHASTIC:
        reg = pop.registers.get(key)
        if reg is not None and np.any(reg != 0):
            raise UnsupportedOperator(f"population {pop.name!r}: register {key} is set (stochastic mode); copies of a "
                                      "stochastic neuron would not spike together, so it cannot be replicated to "
                                      "reach several cores: use deterministic neurons")


def _locality_order(graph: ir.Graph, pop: ir.Neuron) -> NDArray[np.int64]:
    """Neurons ordered by their lowest input (stable): a convolution's output channels at one
    position read the same window, so they come together and a core holds a spatial patch of all
    channels (Esser et al. 2016 group TrueNorth cores by patches) instead of a strip of one
    channel; the patch's input axons are shared. A dense layer keeps its order."""
    syns = [n for n in (graph[s] for s in pop.inputs) if isinstance(n, ir.Synapses)]
    if not syns:
        return np.arange(pop.size, dtype=np.int64)
    main = max(syns, key=lambda x: x.post_idx.size)
    key = np.full(pop.size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(key, main.post_idx, main.pre_idx)
    return np.argsort(key, kind="stable").astype(np.int64)


def _replicate_rows(syn: ir.Synapses, owner: NDArray[np.int64]) -> _Rows:
    """Replicated neuron ``i`` (a copy of ``owner[i]``) gets every synapse of ``owner[i]``.

    The rows of the post-sorted synapse list are concatenated in replicated order: one
    ``repeat`` plus an ``arange`` (no loop per neuron).
    """
    post, pre, values = syn.post_idx, syn.pre_idx, syn.values
    if post.size > 1 and (post[1:] < post[:-1]).any():
        order = np.argsort(post, kind="stable")
        post, pre, values = post[order], pre[order], values[order]
    length = np.bincount(post, minlength=syn.shape[0]).astype(np.int64)  # synapses per original post neuron
    ptr = np.zeros(length.size + 1, dtype=np.int64)
    np.cumsum(length, out=ptr[1:])
    if owner.size == length.size and (owner == np.arange(owner.size)).all():
        return _Rows(syn, post.astype(np.int64), pre.astype(np.int64), values.astype(np.int64), ptr)
    new_len = length[owner]
    new_ptr = np.zeros(owner.size + 1, dtype=np.int64)
    np.cumsum(new_len, out=new_ptr[1:])
    src = np.repeat(ptr[owner] - new_ptr[:-1], new_len)
    src += np.arange(src.size, dtype=np.int64)
    new_post = np.repeat(np.arange(owner.size, dtype=np.int64), new_len)
    return _Rows(syn, new_post, pre[src].astype(np.int64), values[src].astype(np.int64), new_ptr)


def _cut(name: str, size: int, incoming: list[_Rows], counters: list[NDArray[np.int64] | None], spec: HwSpec
         ) -> tuple[list[tuple[int, int, int, int]], NDArray[np.int64]]:
    """Greedy contiguous cut of a replicated population into cores; returns the chunks
    ``(start, end, axons, bits)`` and the chunk number of every neuron (int64 ``[size]``).

    For a projection from a hidden population (``counters[i]``: routes its pre neurons have taken
    so far, int64 ``[n_pre]``, updated in place) each synapse's ``rank`` is set: the route number
    of its pre neuron that reaches this chunk. Chunks are made in order, so a pre neuron's routes
    are numbered by target core. Cost: linear in the synapses (no sort).
    """
    chip = spec.chip
    cap = chip.neurons_per_core
    ax_lim, bit_lim = chip.axons_in_per_core, chip.synapse_memory_bits_per_core
    index_bits = int(spec.synapse.get("synapse_index_bits", 0))
    weight_bits = families.get(spec.family).hardware.weight_bits  # TrueNorth: one crossbar bit per synapse
    entry = [int(weight_bits(r.syn.params)) + index_bits for r in incoming]
    header = int(spec.synapse.get("synapse_row_header_bits", 0))
    big = np.iinfo(np.int64).max
    seen = [np.full(r.syn.shape[1], big, dtype=np.int64) for r in incoming]  # scratch per pre unit, kept at big
    for r, cnt in zip(incoming, counters, strict=True):
        if cnt is not None:
            r.rank = np.empty(r.pre.size, dtype=np.int64)
    chunks = []
    chunk_of = np.empty(size, dtype=np.int64)
    s = 0
    while s < size:
        e = min(size, s + cap)
        new_axons = np.zeros(e - s, dtype=np.int64)
        entry_bits = np.zeros(e - s, dtype=np.int64)  # synapse entries, weighted by their bits
        firsts = []
        for r, f, bits in zip(incoming, seen, entry, strict=True):
            a, b = int(r.ptr[s]), int(r.ptr[e])
            pre, post = r.pre[a:b], r.post[a:b]
            # first synapse of every pre unit in the window (rows are sorted by post)
            pos = np.arange(a, b, dtype=np.int64)
            np.minimum.at(f, pre, pos)
            is_first = f[pre] == pos
            f[pre] = big
            firsts.append(is_first)
            new_axons += np.bincount(post[is_first] - s, minlength=e - s)
            entry_bits += np.diff(r.ptr[s:e + 1]) * bits
        cum_ax = np.cumsum(new_axons)
        cum_bits = np.cumsum(new_axons * header + entry_bits)
        k = min(int(np.searchsorted(cum_ax, ax_lim, side="right")),
                int(np.searchsorted(cum_bits, bit_lim, side="right")), e - s)
        if k == 0:
            what, value, limit = (("input axons", int(cum_ax[0]), ax_lim) if cum_ax[0] > ax_lim else
                                  ("synapse memory bits", int(cum_bits[0]), bit_lim))
            raise DoesNotFit(f"population {name!r}: one neuron alone needs {value} {what} > {limit} per core "
                             f"({spec.where()}) by {value - limit}; reduce its fan-in (prune inputs, or split the "
                             "layer's inputs over an extra layer)")
        for r, f, is_first, cnt in zip(incoming, seen, firsts, counters, strict=True):
            a, b = int(r.ptr[s]), int(r.ptr[s + k])
            pre = r.pre[a:b]
            if cnt is not None and r.rank is not None and a < b:
                first_pre = pre[is_first[:b - a]]  # each pre unit of the chunk once
                f[first_pre] = cnt[first_pre]  # its route number for this chunk
                cnt[first_pre] += 1
                r.rank[a:b] = f[pre]
                f[first_pre] = big
        chunks.append((s, s + k, int(cum_ax[k - 1]), int(cum_bits[k - 1])))
        chunk_of[s:s + k] = len(chunks) - 1
        s += k
    return chunks, chunk_of


def _pack(pops: list[ir.Neuron], chunks: dict[str, list[tuple[int, int, int, int]]],
          chunk_of: dict[str, NDArray[np.int64]], spec: HwSpec, check_cores: bool
          ) -> tuple[dict[str, NDArray[np.int64]], int]:
    """Next-fit packing of the chunks (topological order) into cores, laid along the mesh curve."""
    chip = spec.chip
    lim = np.array([chip.neurons_per_core, chip.axons_in_per_core, chip.synapse_memory_bits_per_core,
                    chip.axons_out_per_core], dtype=np.int64)
    used = np.zeros(4, dtype=np.int64)
    bin_of: dict[str, NDArray[np.int64]] = {}
    n_bins = 0
    for pop in pops:
        ids = np.empty(len(chunks[pop.name]), dtype=np.int64)
        for i, (s, e, axons, bits) in enumerate(chunks[pop.name]):
            need = np.array([e - s, axons, bits, e - s], dtype=np.int64)  # ≤ one route per neuron
            if n_bins and ((used + need) <= lim).all():
                used += need
            else:
                n_bins += 1
                used = need
            ids[i] = n_bins - 1
        bin_of[pop.name] = ids
    if n_bins > spec.total_cores and check_cores:
        added = sum(int(chunk_of[p.name].size) - p.size for p in pops)
        raise DoesNotFit(
            f"the network needs {n_bins} cores > {spec.total_cores} ({chip.cores_per_chip} cores_per_chip x "
            f"{chip.max_chips} max_chips, {spec.where()}) by {n_bins - spec.total_cores}, of which copies of neurons "
            f"for one route per neuron add {added} neurons; reduce layer widths, keep each layer's targets on fewer "
            "cores, or choose another target")
    slots = mesh_order(spec)
    if n_bins > slots.size:  # only when not checking: core numbers past the last chip, for statistics
        slots = np.arange(n_bins, dtype=np.int64)
    return {p.name: slots[bin_of[p.name][chunk_of[p.name]]] for p in pops}, n_bins


def _rebuild(graph: ir.Graph, rows: dict[str, _Rows], owner: dict[str, NDArray[np.int64]]) -> ir.Graph:
    """The replicated graph: populations with their owners' registers, projections with new indices."""
    out = ir.Graph(meta=graph.meta)
    for node in graph:
        if isinstance(node, ir.Neuron):
            own = owner[node.name]
            regs = {k: np.asarray(v)[own] for k, v in node.registers.items()}
            out.add(ir.Neuron(node.name, node.inputs, kind=node.kind, threshold=node.threshold,
                              tau_mem=node.tau_mem, tau_syn=node.tau_syn, datapath=node.datapath,
                              readout=node.readout, size=int(own.size),
                              bias=None if node.bias is None else node.bias[own],
                              registers=MappingProxyType(regs), scale=node.scale))
        elif isinstance(node, ir.Synapses):
            r = rows[node.name]
            pre_node = graph[node.inputs[0]]
            if isinstance(pre_node, ir.Neuron):
                n_pre = int(owner[pre_node.name].size)
                types = None if node.axon_types is None else node.axon_types[owner[pre_node.name]]
            else:
                n_pre, types = node.shape[1], node.axon_types
            out.add(ir.Synapses(node.name, node.inputs, post=node.post, shape=(int(r.ptr.size - 1), n_pre),
                                post_idx=r.post, pre_idx=r.pre, values=r.values, params=node.params,
                                delay=node.delay, source=node.source, axon_types=types))
        else:
            out.add(node)
    return ir.validate(out, "quantized")
