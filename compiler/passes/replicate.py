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

1. its neurons are replicated (``c_u`` copies of neuron ``u`` at ``offset_u .. offset_u + c_u − 1``),
   each copy with all of ``u``'s incoming synapses;
2. the replicated population is cut into cores greedily, in order: as many neurons as fit
   ``neurons_per_core``, ``axons_in_per_core`` (distinct ``(projection, pre unit)`` pairs) and
   ``synapse_memory_bits_per_core``;
3. for every projection from a hidden population into it, each pre neuron's distinct target
   cores are numbered: copy ``r`` of the pre neuron will carry route ``r``.

Cores are then packed next-fit in topological order (small populations share a core when all
limits allow) and laid along :func:`compiler.passes.partition.mesh_order`. The result is the
replicated graph and the core of every neuron (``placement`` for ``ProgramBuilder.build``).
Host inputs are not limited: the host writes an input event to every axon that listens to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from hw_specs import HwSpec
from spikeforge.errors import CompileError, DoesNotFit, UnsupportedOperator

from .. import ir

__all__ = ["Replicated", "replicate"]

#: registers that make a TrueNorth neuron stochastic: its copies would draw different numbers
_STOCHASTIC = ("stochastic_synapse", "stochastic_leak", "threshold_mask_bits")


@dataclass(frozen=True)
class Replicated:
    """The replicated quantised ``graph`` and where its neurons go.

    ``placement``: core of every neuron, ``{population: int64 [size after replication]}``;
    ``copies``: copies of every original neuron, ``{population: int64 [original size]}``;
    ``cores``: distinct cores per population; ``n_cores``: cores used in all (after packing).
    """

    graph: ir.Graph
    placement: dict[str, NDArray[np.int64]]
    copies: dict[str, NDArray[np.int64]]
    cores: dict[str, int]
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
    offset: dict[str, NDArray[np.int64]] = {}
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
        copies[pop.name] = c
        offset[pop.name] = np.concatenate([[0], np.cumsum(c)]).astype(np.int64)
        for s in pop.inputs:
            syn = graph[s]
            assert isinstance(syn, ir.Synapses)
            rows[s] = _replicate_rows(syn, c, offset[pop.name])
        incoming = [rows[s] for s in pop.inputs]
        chunks[pop.name], core_of[pop.name] = _cut(pop.name, int(offset[pop.name][-1]), incoming, spec)
        for r in incoming:
            if isinstance(graph[r.syn.inputs[0]], ir.Neuron):
                r.rank = _route_ranks(r, core_of[pop.name], routes[r.syn.inputs[0]])
        for syn in graph.users(pop.name):  # its targets were processed: their route ranks are known
            if isinstance(syn, ir.Synapses):
                r = rows[syn.name]
                assert r.rank is not None
                r.pre = offset[pop.name][r.pre] + r.rank
    placement, n_cores = _pack(pops, chunks, core_of, spec, check_cores)
    return Replicated(_rebuild(graph, rows, copies, offset), placement, copies,
                      {p: len(ch) for p, ch in chunks.items()}, n_cores)


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


def _replicate_rows(syn: ir.Synapses, c: NDArray[np.int64], offset: NDArray[np.int64]) -> _Rows:
    """Every synapse into post ``j`` once per copy of ``j``, ordered by (copy index, original order)."""
    order = np.argsort(syn.post_idx, kind="stable")
    post, pre, values = syn.post_idx[order], syn.pre_idx[order], syn.values[order].astype(np.int64)
    n = c.size
    length = np.bincount(post, minlength=n).astype(np.int64)  # synapses per original post neuron
    ptr = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    block = length * c  # synapses of all copies of j
    j = np.repeat(np.arange(n, dtype=np.int64), block)
    p = np.arange(j.size, dtype=np.int64) - np.repeat(np.cumsum(block) - block, block)
    copy, k = np.divmod(p, np.maximum(length[j], 1))
    src = ptr[j] + k
    new_post = offset[j] + copy
    n_new = int(offset[-1])
    new_ptr = np.concatenate([[0], np.cumsum(np.bincount(new_post, minlength=n_new))]).astype(np.int64)
    return _Rows(syn, new_post, pre[src], values[src], new_ptr)


def _cut(name: str, size: int, incoming: list[_Rows], spec: HwSpec
         ) -> tuple[list[tuple[int, int, int, int]], NDArray[np.int64]]:
    """Greedy contiguous cut of a replicated population into cores; returns the chunks
    ``(start, end, axons, bits)`` and the chunk number of every neuron (int64 ``[size]``)."""
    chip = spec.chip
    cap = chip.neurons_per_core
    ax_lim, bit_lim = chip.axons_in_per_core, chip.synapse_memory_bits_per_core
    entry = 1 + int(spec.synapse.get("synapse_index_bits", 0))  # one crossbar bit per synapse
    header = int(spec.synapse.get("synapse_row_header_bits", 0))
    chunks = []
    chunk_of = np.empty(size, dtype=np.int64)
    s = 0
    while s < size:
        e = min(size, s + cap)
        new_axons = np.zeros(e - s, dtype=np.int64)
        synapses = np.zeros(e - s, dtype=np.int64)
        for r in incoming:
            a, b = int(r.ptr[s]), int(r.ptr[e])
            if a == b:
                continue
            _, first = np.unique(r.pre[a:b], return_index=True)  # rows are sorted by post: first = first user
            new_axons += np.bincount(r.post[a:b][first] - s, minlength=e - s)
            synapses += np.diff(r.ptr[s:e + 1])
        cum_ax = np.cumsum(new_axons)
        cum_bits = np.cumsum(new_axons * header + synapses * entry)
        k = min(int(np.searchsorted(cum_ax, ax_lim, side="right")),
                int(np.searchsorted(cum_bits, bit_lim, side="right")), e - s)
        if k == 0:
            what, value, limit = (("input axons", int(cum_ax[0]), ax_lim) if cum_ax[0] > ax_lim else
                                  ("synapse memory bits", int(cum_bits[0]), bit_lim))
            raise DoesNotFit(f"population {name!r}: one neuron alone needs {value} {what} > {limit} per core "
                             f"({spec.where()}) by {value - limit}; reduce its fan-in (prune inputs, or split the "
                             "layer's inputs over an extra layer)")
        chunks.append((s, s + k, int(cum_ax[k - 1]), int(cum_bits[k - 1])))
        chunk_of[s:s + k] = len(chunks) - 1
        s += k
    return chunks, chunk_of


def _route_ranks(r: _Rows, chunk_of: NDArray[np.int64], routes: NDArray[np.int64]) -> NDArray[np.int64]:
    """Route number of every synapse's pre neuron: routes already taken by the pre neuron (earlier
    projections) + the rank of this synapse's target core among the pre neuron's target cores.
    Adds this projection's routes to ``routes`` (int64 ``[n_pre]``, in place)."""
    core = chunk_of[r.post]
    n_core = int(chunk_of.max(initial=0)) + 1
    key = r.pre * n_core + core
    pairs, inverse = np.unique(key, return_inverse=True)
    pair_pre = pairs // n_core
    first = np.searchsorted(pair_pre, pair_pre, side="left")  # pairs are sorted: first pair of each pre
    rank = np.arange(pairs.size, dtype=np.int64) - first + routes[pair_pre]
    np.add.at(routes, pair_pre, 1)
    return rank[inverse.ravel()]


def _pack(pops: list[ir.Neuron], chunks: dict[str, list[tuple[int, int, int, int]]],
          chunk_of: dict[str, NDArray[np.int64]], spec: HwSpec, check_cores: bool
          ) -> tuple[dict[str, NDArray[np.int64]], int]:
    """Next-fit packing of the chunks (topological order) into cores, laid along the mesh curve."""
    from .partition import mesh_order

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


def _rebuild(graph: ir.Graph, rows: dict[str, _Rows], copies: dict[str, NDArray[np.int64]],
             offset: dict[str, NDArray[np.int64]]) -> ir.Graph:
    """The replicated graph: populations with repeated registers, projections with new indices."""
    out = ir.Graph(meta=graph.meta)
    for node in graph:
        if isinstance(node, ir.Neuron):
            c = copies[node.name]
            regs = {k: np.repeat(np.asarray(v), c, axis=0) for k, v in node.registers.items()}
            out.add(ir.Neuron(node.name, node.inputs, kind=node.kind, threshold=node.threshold,
                              tau_mem=node.tau_mem, tau_syn=node.tau_syn, datapath=node.datapath,
                              readout=node.readout, size=int(offset[node.name][-1]),
                              bias=None if node.bias is None else np.repeat(node.bias, c),
                              registers=MappingProxyType(regs), scale=node.scale))
        elif isinstance(node, ir.Synapses):
            r = rows[node.name]
            pre_node = graph[node.inputs[0]]
            if isinstance(pre_node, ir.Neuron):
                n_pre = int(offset[pre_node.name][-1])
                types = None if node.axon_types is None else np.repeat(node.axon_types, copies[pre_node.name])
            else:
                n_pre, types = node.shape[1], node.axon_types
            out.add(ir.Synapses(node.name, node.inputs, post=node.post, shape=(int(r.ptr.size - 1), n_pre),
                                post_idx=r.post, pre_idx=r.pre, values=r.values, params=node.params,
                                delay=node.delay, source=node.source, axon_types=types))
        else:
            out.add(node)
    if any(not isinstance(n, (ir.Input, ir.Neuron, ir.Synapses, ir.Output)) for n in out):  # pragma: no cover
        raise CompileError("replicate: unexpected node in a quantised graph")
    return ir.validate(out, "quantized")
