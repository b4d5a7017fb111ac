"""A netlist run by the fast engine: the network as declared, before placement — no cores, axons or
routes — computed by the same family update, the same crossbar products and the same drive as a
Program (:mod:`emulator.fast`).

:func:`lower` turns a :class:`compiler.backend.Netlist` (what :meth:`emulator.ProgramBuilder.netlist`
and the compiler's emission make) into the :class:`~emulator.fast.Lowered` value the fast engine
runs; :class:`NetlistSimulator` runs it in chunks with its state carried over, as
:class:`emulator.Simulator` runs a Program, and returns the spikes of every population.

What a Program adds is the chip's mapping: neurons on cores, axons, routes. Running both on the
same inputs therefore checks the mapping. They agree bit for bit (spikes, states, synaptic
operations) with one documented exception: without axons a netlist has no delivery order, so
where a family saturates on every addition (``datapath.ORDERED``: Xylo's synaptic states,
TrueNorth's V) the step's summed drive saturates once. That is the chip's result whenever no
partial sum leaves the register, which the fast engine proves per neuron and step. TrueNorth
neurons with stochastic synapses draw per axon and cannot run without a Program
(:class:`spikeforge.errors.EmulatorError`); stochastic leak and threshold draw per neuron id, and
a netlist numbers its neurons in population order (a Program numbers them core by core).

The netlist is read through its public attributes only; ``import emulator`` does not import the
compiler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hw_specs import HwSpec
from spikeforge.errors import EmulatorError

from . import families
from .engine import Trace
from .families.datapath import Synapses
from .fast import FastEngine, Lowered, LoweredPopulation, LoweredSynapses, SynapseBlock
from .inputs import check as check_inputs

if TYPE_CHECKING:
    from compiler.backend.netlist import Netlist

__all__ = ["lower", "NetlistSimulator", "NetlistTrace"]

#: synapses per block when the increments are computed (the block's temporaries stay in cache)
_BLOCK = 1 << 16


def lower(netlist: Netlist, spec: HwSpec) -> Lowered:
    """``netlist`` as the fast engine's :class:`~emulator.fast.Lowered` network for ``spec``.

    Populations keep their declaration order and register arrays (int64); neuron ids are
    ``0 .. N-1`` in that order. Every stored synapse is one path, and each projection one
    :class:`~emulator.fast.SynapseBlock` (its pre and post indices are views of the netlist's COO),
    the increment being the family's
    (``datapath.increments``: Loihi's stored weight, Xylo's ``w << weight_shift`` in the synaptic
    state's width, TrueNorth's ``s[G]`` of the axon's type); input channels are the ports'
    channels concatenated in declaration order. Synaptic operations count one per path and
    spike. ``order`` is None: see the module docstring.
    """
    family = families.get(spec.family)
    datapath = family.datapath
    chip = spec.chip
    index = {p.name: q for q, p in enumerate(netlist.populations)}
    pops: list[LoweredPopulation] = []
    first = 0
    for p in netlist.populations:
        limit = chip.readout_max_spikes_per_step if p.readout else chip.max_spikes_per_step
        pops.append(LoweredPopulation(
            p.name, np.arange(first, first + p.size, dtype=np.int64),
            {k: np.asarray(v, dtype=np.int64) for k, v in p.registers.items()},
            bool(p.readout), np.full(p.size, limit, dtype=np.int64)))
        first += p.size
    port_first: dict[str, int] = {}
    n_channels = 0
    for port in netlist.inputs:
        port_first[port.name] = n_channels
        n_channels += port.size
    params = tuple(pr.params for pr in netlist.projections)

    # one block of paths per projection, views of its COO (no per-synapse int64 copies but the
    # increments); neurons that integrate synapse by synapse (``stepwise``) are left out of the
    # blocks and read their sources outside the crossbar products
    blocks: list[SynapseBlock] = []
    dependencies: set[tuple[int, int]] = set()
    max_delay, max_input_delay = 1, 0
    for j, pr in enumerate(netlist.projections):
        q = index[pr.post]
        if pr.pre_is_input:
            src = 0
            pre = np.asarray(pr.pre_idx)
            if port_first[pr.pre]:
                pre = pre.astype(np.int64) + port_first[pr.pre]  # the port's channels among all ports'
            max_input_delay = max(max_input_delay, int(pr.delay))
        else:
            src = 1 + index[pr.pre]
            pre = np.asarray(pr.pre_idx)
            max_delay = max(max_delay, int(pr.delay))
        post = np.asarray(pr.post_idx)
        inc = _increments(datapath, pr, j, params, pops[q].registers, spec)
        stepwise = datapath.stepwise(pops[q].registers)
        if stepwise.any():
            keep = ~stepwise[post]
            if src and not keep.all():
                dependencies.add((src - 1, q))
            pre, post, inc = pre[keep], post[keep], inc[keep]
        blocks.append(SynapseBlock(src, int(pr.delay), j, q, pre, post, inc))
    paths = LoweredSynapses(blocks=blocks)
    synops = _synops(netlist, index, port_first, n_channels)
    return Lowered(spec.family, spec, tuple(pops), params, n_channels, paths, synops, max_delay,
                   max_input_delay, frozenset(dependencies), None)


def _increments(datapath: Any, pr: Any, j: int, params: tuple[Mapping[str, int], ...],
                registers: Mapping[str, NDArray[np.int64]], spec: HwSpec) -> NDArray[np.int64]:
    """The family's increment of every synapse of projection ``j`` (``pr``), read against its post
    population's ``registers`` (local ids); a block at a time, so that the temporaries stay small."""
    n = int(pr.weight.size)
    out = np.empty(n, dtype=np.int64)
    types = None if pr.axon_types is None else np.asarray(pr.axon_types, dtype=np.int64)
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        weight = out[a:b]
        weight[:] = pr.weight[a:b]  # the int64 weights, replaced by the increments below
        syn = Synapses(weight=weight, proj=np.full(b - a, j, dtype=np.int64),
                       post=np.asarray(pr.post_idx[a:b], dtype=np.int64),
                       axon_type=np.zeros(b - a, dtype=np.int64) if types is None else types[pr.pre_idx[a:b]])
        out[a:b] = datapath.increments(syn, params, registers, spec)
    return out


def _synops(netlist: Netlist, index: Mapping[str, int], port_first: Mapping[str, int], n_channels: int
            ) -> tuple[tuple[int, int, NDArray[np.int64]], ...]:
    """The synaptic-operation terms ``(source, delay, vec)``: ``vec[i]`` counts the stored synapses
    a spike of source unit ``i`` reaches after ``delay`` steps, those integrated stepwise too (as on
    a Program); the same terms as :func:`emulator.fast.synops_terms` of the paths, counted per
    projection (one pass over its pre indices)."""
    sizes = [n_channels] + [p.size for p in netlist.populations]
    terms: dict[tuple[int, int], NDArray[np.int64]] = {}
    for pr in netlist.projections:
        if not pr.weight.size:
            continue
        src = 0 if pr.pre_is_input else 1 + index[pr.pre]
        first = port_first[pr.pre] if pr.pre_is_input else 0
        vec = terms.setdefault((src, int(pr.delay)), np.zeros(sizes[src], dtype=np.int64))
        part = vec[first:first + pr.pre_size]
        for a in range(0, int(pr.pre_idx.size), _BLOCK * 16):  # blocks: no projection-sized index copy
            part += np.bincount(pr.pre_idx[a:a + _BLOCK * 16], minlength=pr.pre_size)
    return tuple((src, d, terms[(src, d)]) for src, d in sorted(terms))


@dataclass
class NetlistTrace(Trace):
    """A :class:`~emulator.engine.Trace` of a netlist run, plus ``populations[name]``: the spike
    counts of each population asked for, ``int16 [batch, time, n]``."""

    populations: dict[str, NDArray[np.int16]] = field(default_factory=dict)


class NetlistSimulator:
    """A netlist loaded into the fast engine (:func:`lower`), with state that carries over between
    :meth:`run` calls: stream it in chunks, as :class:`emulator.Simulator` streams a Program.

    ``spec``: the target the netlist was declared for. ``probes``: ``"pop.state"`` names (a state
    of the family, or ``spikes``). ``keep``: the populations whose spikes :meth:`run` returns in
    ``NetlistTrace.populations`` (default: every population; ``()`` for the output ports only).
    """

    def __init__(self, netlist: Netlist, spec: HwSpec, *, batch: int = 1, seed: int = 0,
                 probes: Iterable[str] = (), keep: Iterable[str] | None = None) -> None:
        if not isinstance(batch, int) or batch < 1:
            raise EmulatorError(f"batch = {batch!r}; expected a positive integer")
        self.spec = spec
        self.batch = batch
        self.ports = {p.name: p.size for p in netlist.inputs}
        self.outputs = dict(netlist.outputs)
        names = [p.name for p in netlist.populations]
        self.keep = tuple(names if keep is None else keep)
        unknown = [k for k in self.keep if k not in names]
        if unknown:
            raise EmulatorError(f"keep: no population {', '.join(map(repr, unknown))}; populations: {', '.join(names)}")
        self.probes = _parse_probes(probes, names, tuple(spec.state), spec.family)
        # the engine keeps its crossbar matrices, not the synapse paths (several GB for a big network)
        self.engine = FastEngine(lower(netlist, spec), batch, int(seed))

    def reset(self) -> None:
        """Back to the state before the first step (all registers 0, nothing in flight)."""
        self.engine.reset()

    def run(self, spikes: ArrayLike | Mapping[str, ArrayLike] | None = None, steps: int | None = None
            ) -> NetlistTrace:
        """Advance by ``steps`` (default: the input's length) and return what happened.

        ``spikes``: ``[batch, time, channels]`` counts for the only input port, or a mapping port →
        array; a 2-D ``[time, channels]`` array means batch 1. Missing steps are zeros.
        """
        inputs = check_inputs(spikes, steps, self.ports, self.batch, self.spec, owner="netlist")
        by_pop, probed, synops = self.engine.run(inputs.chunk(0, inputs.steps), self.probes)
        out = {name: by_pop[pop].astype(np.int16) for name, pop in self.outputs.items()}
        kept = {name: by_pop[name].astype(np.int16) for name in self.keep}
        return NetlistTrace(out, probed, synops, self.engine.name, kept)


def _parse_probes(probes: Iterable[str], populations: list[str], states: tuple[str, ...], family: str
                  ) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for name in probes:
        pop, _, var = str(name).partition(".")
        if pop not in populations:
            raise EmulatorError(f"probe {name!r}: no population {pop!r}; populations: {', '.join(populations)}")
        if var not in (*states, "spikes"):
            raise EmulatorError(f"probe {name!r}: {var!r} is not a state of family {family}; probe one of "
                                f"{', '.join((*states, 'spikes'))}")
        out[name] = (pop, var)
    return out
