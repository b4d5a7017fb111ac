"""Network-level simulation of a population graph, layer by layer (no cores, no routes).

Two modes:

* ``quantized=True`` runs the quantised network — the netlist the Program is built from
  (:func:`compiler.passes.emit.to_builder`), before placement — on the emulator's fast engine
  (:class:`emulator.lowering.NetlistSimulator`): the family's own update, crossbar products and
  widths, with no copy of the chip arithmetic here. What a Program adds is the mapping (cores,
  axons, routes; TrueNorth's neuron copies), so comparing the two checks what compiling can
  break. They agree bit for bit, except that without axons a netlist has no delivery order: where
  a family saturates on every addition (Xylo's synaptic states, TrueNorth's V) the step's summed
  drive saturates once, which is the chip's result whenever no partial sum leaves the register.
* ``quantized=False`` runs the float network (weights, thresholds, biases before rounding) with
  the chip's decay factors, spike test and reset — the model the quantised one approximates.
  The population update comes from the family's compile hooks
  (``emulator.families.get(spec.family).compiling.FloatNeurons``); biases add to ``v`` as on the
  chip, scaled by the family's ``bias_gain``.

Input ``spikes``: ``[batch, time, n_in]`` counts. Delays come from each projection (or the spec's
defaults): a spike emitted at step ``t`` is integrated at ``t + delay``.

:class:`NetworkSimulation` streams: its state (every population's registers, the spikes still
travelling on delayed projections) carries over between :meth:`~NetworkSimulation.run` calls, so
a long run goes in time chunks of bounded memory, and :func:`chunks` picks chunk sizes. Within a
chunk each layer's input for all its steps is one matrix product (feed-forward graphs): dense
BLAS for dense projections and sparse products for sparse ones, in both modes; then the cheap
per-step neuron update runs over the chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from emulator import families
from emulator.lowering import NetlistSimulator
from hw_specs import HwSpec

from . import ir
from .backend.netlist import Netlist

__all__ = ["simulate", "predictions", "NetworkSimulation", "chunks"]

#: a projection at least this dense (nonzeros / size) is multiplied as a dense matrix
DENSE_SHARE = 0.1
#: ... unless its dense form would exceed this many elements
DENSE_MAX = 1 << 27
#: default bound on the elements of one ``[steps, batch, neurons]`` chunk array
CHUNK_ELEMENTS = 1 << 23


def _delay(syn: ir.Synapses, graph: ir.Graph, spec: HwSpec) -> int:
    if syn.delay is not None:
        return int(syn.delay)
    key = "default_input_delay" if isinstance(graph[syn.inputs[0]], ir.Input) else "default_delay"
    return int(spec.synapse[key])


@dataclass
class _Projection:
    """One incoming projection of the float network: its weights in the form the product uses
    and its delay."""

    syn: ir.Synapses
    pre: str
    delay: int
    dense: NDArray[np.float64] | None  # [post, pre]
    sparse: sp.csr_matrix | None
    sparse_t: sp.csr_matrix | None = None  # [pre, post], for sparse activity
    history: NDArray[np.float32] | None = None  # [delay, batch, n_pre]: the source's last steps


#: synapses per block when a projection's positions are checked and scattered
_BLOCK = 1 << 20


def _dense_of(syn: ir.Synapses) -> NDArray[np.float64] | None:
    """``syn``'s weights as a float64 ``[post, pre]`` array when its positions are distinct and in
    row-major order (as lowering makes them), else None (then a repeated position must be summed).

    Every position once: a float64 view of ``values`` (no copy; the matrix is only read); else a
    scatter, block by block. The same matrix as the COO conversion: each entry is its one value."""
    n_post, n_pre = syn.shape
    values = syn.effective(None)
    n = values.size
    if n == n_post * n_pre:
        post = np.asarray(syn.post_idx).reshape(n_post, n_pre)
        pre = np.asarray(syn.pre_idx).reshape(n_post, n_pre)
        if (post == np.arange(n_post)[:, None]).all() and (pre == np.arange(n_pre)[None, :]).all():
            return np.asarray(values, dtype=np.float64).reshape(n_post, n_pre)
    dense = np.zeros((n_post, n_pre))
    flat = dense.reshape(-1)
    last = -1
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        key = np.multiply(syn.post_idx[lo:hi], n_pre, dtype=np.int64)
        key += syn.pre_idx[lo:hi]
        if key[0] <= last or not (key[1:] > key[:-1]).all():
            return None  # not strictly increasing: a position may repeat
        last = int(key[-1])
        flat[key] = values[lo:hi]
    return dense


def _projection(syn: ir.Synapses, graph: ir.Graph, spec: HwSpec) -> _Projection:
    n_post, n_pre = syn.shape
    size = n_post * n_pre
    dense = sparse = None
    dense_form = size and syn.values.size >= DENSE_SHARE * size and size <= DENSE_MAX
    if dense_form:
        dense = _dense_of(syn)
        if dense is not None:
            return _Projection(syn, syn.inputs[0], _delay(syn, graph, spec), dense, None)
    values = syn.effective(None).astype(np.float64)
    if dense_form:
        dense = sp.coo_matrix((values, (syn.post_idx, syn.pre_idx)), shape=syn.shape).toarray()  # sums repeats
    else:
        sparse = sp.csr_matrix((values, (syn.post_idx, syn.pre_idx)), shape=syn.shape)
    return _Projection(syn, syn.inputs[0], _delay(syn, graph, spec), dense, sparse)


class NetworkSimulation:
    """The population graph as a stream: ``run(spikes)`` advances by ``spikes.shape[1]`` steps.

    ``batch`` samples run side by side; :meth:`reset` returns to the state before the first step.
    ``netlist`` (quantised only): ``to_builder(graph, spec).netlist()`` when the caller has it.
    ``run`` returns ``{population: [batch, steps, n]}`` float32 spike counts of the chunk (the
    output of every population, or of those named in ``keep``). ``quantized``: the quantised
    network on the emulator's fast engine, or the float network (see the module doc).
    """

    def __init__(self, graph: ir.Graph, spec: HwSpec, *, quantized: bool, dt: float = 1e-3, batch: int = 1,
                 keep: tuple[str, ...] | None = None, netlist: Netlist | None = None) -> None:
        self.quantized = quantized
        self.batch = batch
        self.keep = keep
        (self.input,) = graph.of_type(ir.Input)
        neurons = graph.of_type(ir.Neuron)
        self.names = [pop.name for pop in neurons]
        self.sizes = {self.input.name: graph.size(self.input.name), **{p.name: p.size for p in neurons}}
        self.populations: list[tuple[ir.Neuron, Any, list[_Projection]]] = []
        self.netlist: NetlistSimulator | None = None
        if quantized:
            from .passes.emit import to_builder

            if netlist is None:
                netlist = to_builder(graph, spec).netlist()
            self.netlist = NetlistSimulator(netlist, spec, batch=batch, keep=self.names if keep is None else keep)
            netlist = None
        else:
            hooks = families.get(spec.family).compiling
            for pop in neurons:
                limit = spec.chip.readout_max_spikes_per_step if pop.readout else spec.chip.max_spikes_per_step
                model = hooks.FloatNeurons(size=pop.size, threshold=pop.threshold, bias=pop.bias,
                                           tau_mem=pop.tau_mem, tau_syn=pop.tau_syn, dt=dt, max_spikes=limit)
                projs = []
                for sname in pop.inputs:
                    syn = graph[sname]
                    assert isinstance(syn, ir.Synapses)
                    projs.append(_projection(syn, graph, spec))
                self.populations.append((pop, model, projs))
        self.reset()

    def reset(self) -> None:
        """Back to the state before the first step (all registers 0, nothing in flight)."""
        if self.netlist is not None:
            self.netlist.reset()
        self.states = {pop.name: model.state(self.batch) for pop, model, _ in self.populations}
        for _, _, projs in self.populations:
            for proj in projs:
                proj.history = np.zeros((proj.delay, self.batch, self.sizes[proj.pre]), dtype=np.float32)

    def run(self, spikes: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Advance by ``spikes.shape[1]`` steps; ``spikes`` ``[batch, steps, n_in]`` counts."""
        x = np.asarray(spikes)
        names = self.keep if self.keep is not None else self.names
        if self.netlist is not None:
            kept = self.netlist.run(x).populations
            return {name: kept[name].astype(np.float32) for name in names}
        steps = x.shape[1]
        acts: dict[str, NDArray[np.float32]] = {self.input.name: np.ascontiguousarray(
            x.transpose(1, 0, 2), dtype=np.float32)}  # time-major [steps, batch, n]: a step is contiguous
        for pop, model, projs in self.populations:
            a: NDArray[Any] | None = None
            for proj in projs:
                c = model.input(self._current(proj, acts[proj.pre], steps), proj.syn.params)
                a = c if a is None else a + c
            if a is None:
                a = np.zeros((steps, self.batch, pop.size), dtype=model.dtype)
            state = self.states[pop.name]
            out = np.empty((steps, self.batch, pop.size), dtype=np.float32)
            for t in range(steps):
                out[t] = model.step(state, a[t])
            acts[pop.name] = out
        return {name: acts[name].transpose(1, 0, 2) for name in names}

    def _current(self, proj: _Projection, pre: NDArray[np.float32], steps: int) -> NDArray[np.float64]:
        """The projection's weighted input at every step of the chunk, ``[steps, batch, n_post]``
        float64, its delay applied."""
        assert proj.history is not None
        d = proj.delay
        if d:
            ext = np.concatenate([proj.history, pre], axis=0)
            pre, proj.history = ext[:steps], ext[steps:]
        n_post = proj.syn.shape[0]
        flat64 = pre.reshape(-1, pre.shape[-1]).astype(np.float64)
        cur: NDArray[Any]
        if proj.dense is not None:
            cur = flat64 @ proj.dense.T
        else:
            assert proj.sparse is not None
            if np.count_nonzero(flat64) < 0.25 * flat64.size:  # sparse activity: sparse × sparse is cheaper
                if proj.sparse_t is None:
                    proj.sparse_t = proj.sparse.T.tocsr()
                cur = (sp.csr_matrix(flat64) @ proj.sparse_t).toarray()
            else:
                cur = np.asarray(proj.sparse @ flat64.T).T
        return np.asarray(cur.reshape(steps, self.batch, n_post), dtype=np.float64)


def chunks(batch: int, steps: int, width: int, elements: int = CHUNK_ELEMENTS) -> tuple[int, int]:
    """``(samples, steps)`` per chunk so that one ``[steps, samples, width]`` array holds at most
    ``elements`` values (at least one sample and one step).

    All samples side by side when one step of them fits (a step's update is then one array
    operation), else as few equal batches as fit; the steps in as few equal chunks as fit.
    """
    width = max(1, width)
    samples = min(batch, max(1, elements // width))
    samples = -(-batch // -(-batch // samples))  # equal batches: ceil(batch / number of batches)
    step_chunk = max(1, min(steps, elements // (samples * width)))
    step_chunk = -(-steps // -(-steps // step_chunk)) if steps else 1
    return samples, step_chunk


def spans(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive spans of ``size`` covering ``range(total)``."""
    for lo in range(0, total, size):
        yield lo, min(total, lo + size)


def simulate(graph: ir.Graph, spikes: NDArray[Any], spec: HwSpec, *, quantized: bool, dt: float = 1e-3,
             elements: int = CHUNK_ELEMENTS) -> dict[str, NDArray[np.float64]]:
    """Simulate the population graph on ``spikes`` ``[batch, time, n_in]`` (see the module doc);
    ``{population: [batch, time, n]}`` float64 spike counts. Runs in chunks of at most ``elements``
    values per population (the result itself is whole)."""
    x = np.asarray(spikes)
    b, t = x.shape[0], x.shape[1]
    sim = NetworkSimulation(graph, spec, quantized=quantized, dt=dt, batch=b)
    width = max(sim.sizes.values())
    step_chunk = max(1, elements // max(1, b * width))
    out = {name: np.zeros((b, t, sim.sizes[name])) for name in sim.names}
    for lo, hi in spans(t, step_chunk):
        for name, arr in sim.run(x[:, lo:hi]).items():
            out[name][:, lo:hi] = arr
    out = {graph.of_type(ir.Input)[0].name: x.astype(np.float64), **out}
    return out


def predictions(spikes: NDArray[Any]) -> NDArray[np.int64]:
    """Class per sample: the output neuron with the most spikes over time (``[B, T, n] → [B]``)."""
    counts = np.asarray(spikes).sum(axis=1)
    return counts.argmax(axis=1).astype(np.int64)
