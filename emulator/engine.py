"""What both engines share: the Program lowered to per-axon and per-neuron tables (``Wiring``,
and ``WiringLists`` for the reference engine), input checking, the ``Trace`` they return and the
``Simulator`` that carries state between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spikeforge.errors import EmulatorError

from . import families, memory
from .families.datapath import Synapses
from .inputs import Inputs
from .inputs import check as check_inputs
from .program import Program

__all__ = ["Wiring", "WiringLists", "Trace", "Simulator", "run", "ENGINES"]

ENGINES = ("fast", "reference")


class Wiring:
    """A Program lowered to the numpy tables both engines start from (global neuron/axon ids).

    Family-agnostic: the synaptic increment of each stored synapse comes from the family's
    datapath (``families.get(program.family).datapath.increments``). The Python-list forms the
    reference engine iterates over are on :attr:`lists` (built on first use).
    """

    def __init__(self, program: Program) -> None:
        p = program
        self.program = p
        self.spec = p.spec
        self.family = p.family
        self.datapath = families.get(p.family).datapath
        self.n_neurons = p.n_neurons
        self.n_axons = p.n_axons
        ports = list(p.input_ports.values())
        self.port_offset = np.concatenate([[0], np.cumsum(ports, dtype=np.int64)])
        self.n_channels = int(self.port_offset[-1])
        self.state_names = tuple(p.spec.state)
        self.max_delay = max(1, int(p.route_delay.max()) if p.route_delay.size else 1)
        self.max_input_delay = int(p.in_delay.max()) if p.in_delay.size else 0
        # sources of every axon: kind 0 = input channel (global channel index), 1 = neuron
        self.in_channel_global = (self.port_offset[p.in_port] + p.in_channel).astype(np.int64)
        self.axon_fanout = p.synapses_per_axon()
        self.axon_projection = p.axon_projection.astype(np.int64)
        self.axon_local = np.arange(self.n_axons) - p.axon_offset[p.axon_core]
        self.readout = p.readout_mask
        chip = p.spec.chip
        #: spikes a neuron may emit in one step, int64 [n_neurons]
        self.max_spikes = np.where(self.readout, chip.readout_max_spikes_per_step,
                                   chip.max_spikes_per_step).astype(np.int64)
        self.projection_params = [pr.params for pr in p.projections]
        self.registers = {k: v.astype(np.int64) for k, v in p.registers.items()}

    @cached_property
    def syn_increment(self) -> Any:  # int64 [n_synapses]; typed as the datapath's result
        """What each stored synapse adds to its post neuron per spike, int64 ``[n_synapses]`` (built
        on first use: the fast engine composes its paths piece by piece and does not need it)."""
        p = self.program
        syn_axon = p.syn_axon.astype(np.int64)
        synapses = Synapses(weight=p.syn_weight.astype(np.int64), proj=self.axon_projection[syn_axon],
                            post=p.syn_neuron.astype(np.int64), axon_type=p.axon_type.astype(np.int64)[syn_axon])
        return self.datapath.increments(synapses, self.projection_params, self.registers, p.spec)

    @cached_property
    def lists(self) -> WiringLists:
        """The same tables as Python lists, for the reference engine."""
        return WiringLists(self)


class WiringLists:
    """A :class:`Wiring`'s tables as Python lists (the reference engine's plain integers)."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring

    @cached_property
    def axon_sources(self) -> list[tuple[int, int, int, int]]:
        """Every (axon, kind, source, delay): kind 0 = global input channel, 1 = neuron."""
        w = self.wiring
        p = w.program
        out = [(int(a), 0, int(c), int(d)) for a, c, d in zip(p.in_dst, w.in_channel_global, p.in_delay,
                                                               strict=True)]
        out += [(int(a), 1, int(s), int(d)) for a, s, d in zip(p.route_dst, p.route_src, p.route_delay,
                                                               strict=True)]
        return out

    @cached_property
    def axon_fanout(self) -> list[int]:
        return self.wiring.axon_fanout.tolist()

    @cached_property
    def neuron_synapses(self) -> list[list[tuple[int, int]]]:
        """Per neuron, its (axon, increment) pairs in ascending axon order."""
        w = self.wiring
        p = w.program
        out: list[list[tuple[int, int]]] = [[] for _ in range(w.n_neurons)]
        for a, n, wt in zip(p.syn_axon.tolist(), p.syn_neuron.tolist(), w.syn_increment.tolist(), strict=True):
            out[n].append((a, wt))  # syn arrays are sorted by axon: each list ascends
        return out

    @cached_property
    def axon_synapses(self) -> list[list[tuple[int, int]]]:
        """Per axon, its (neuron, increment) pairs."""
        w = self.wiring
        p = w.program
        out: list[list[tuple[int, int]]] = [[] for _ in range(w.n_axons)]
        for a, n, wt in zip(p.syn_axon.tolist(), p.syn_neuron.tolist(), w.syn_increment.tolist(), strict=True):
            out[a].append((n, wt))
        return out

    @cached_property
    def reg(self) -> dict[str, list[int]]:
        """Per-neuron registers (one value per neuron; multi-valued registers are left out)."""
        return {k: v.tolist() for k, v in self.wiring.registers.items() if v.ndim == 1}

    @cached_property
    def axon_projection(self) -> list[int]:
        return self.wiring.axon_projection.tolist()

    @cached_property
    def axon_type(self) -> list[int]:
        return self.wiring.program.axon_type.astype(np.int64).tolist()

    @cached_property
    def axon_local(self) -> list[int]:
        return self.wiring.axon_local.tolist()


@dataclass
class Trace:
    """What a run produced, for ``[batch, time, ...]``.

    ``spikes[port]``: output spike counts ``int16 [batch, time, n]``; ``probes[name]``: recorded
    values ``int64 [batch, time, n]`` (state after step ``t`` at index ``t``; ``pop.spikes`` for a
    population's spikes); ``synaptic_ops``: crossbar synapses activated per step ``int64
    [batch, time]`` (a spike count c on an axon with k synapses counts c·k).
    """

    spikes: dict[str, NDArray[np.int16]]
    probes: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    synaptic_ops: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    engine: str = ""

    @property
    def steps(self) -> int:
        return int(self.synaptic_ops.shape[1])

    def spike_counts(self) -> dict[str, NDArray[np.int64]]:
        """Total spikes per output neuron, ``[batch, n]``."""
        return {k: v.sum(axis=1, dtype=np.int64) for k, v in self.spikes.items()}

    def save(self, path: str) -> None:
        """Write spikes, probes and synaptic-op counts to one ``.npz`` (keys ``spikes/<port>``, ...)."""
        arrays: dict[str, Any] = {f"spikes/{k}": v for k, v in self.spikes.items()}
        arrays.update({f"probes/{k}": v for k, v in self.probes.items()})
        arrays["synaptic_ops"] = self.synaptic_ops
        np.savez_compressed(path, allow_pickle=False, **arrays)


class EngineProtocol(Protocol):
    name: str

    def reset(self) -> None: ...

    def run(self, inputs: NDArray[np.int64], probes: dict[str, tuple[str, str]]
            ) -> tuple[dict[str, NDArray[Any]], dict[str, NDArray[np.int64]], NDArray[np.int64]]: ...

    def step_bytes(self, probes: dict[str, tuple[str, str]]) -> int:
        """Working memory of one step of one sample in :meth:`run`, bytes (an upper estimate)."""
        ...


class Simulator:
    """A Program loaded into an engine, with state that carries over between :meth:`run` calls
    (neuron states, refractory counters, spikes in flight on delayed routes): stream in chunks.

    ``engine``: ``"fast"`` (vectorised, batched) or ``"reference"`` (per neuron, the definition);
    both give identical integers. ``seed`` drives the stochastic modes (TrueNorth).
    ``probes``: ``"pop.state"`` names, e.g. ``"l1.v"``, ``"h.isyn"``, ``"l1.spikes"``; for a plastic
    projection ``"proj.w"`` (``"d"``, ``"t"``: ``[batch, time, post, pre]``) and its traces
    ``"proj.x1"`` (``x2``: ``[batch, time, pre]``; ``y1, y2, y3``: ``[batch, time, post]``).
    ``memory_budget``: bytes (or ``"512MiB"``) of working memory a :meth:`run` may take; default
    from :func:`emulator.memory.budget`.
    """

    def __init__(self, program: Program, *, engine: str = "fast", batch: int = 1, seed: int = 0,
                 probes: Iterable[str] = (), memory_budget: int | str | None = None) -> None:
        if engine not in ENGINES:
            raise EmulatorError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if not isinstance(batch, int) or batch < 1:
            raise EmulatorError(f"batch = {batch!r}; expected a positive integer")
        self.program = program
        self.batch = batch
        self.seed = int(seed)
        self.probes = self._parse_probes(probes)
        self.memory_budget = memory.budget(memory_budget)
        self.wiring = Wiring(program)
        if engine == "reference":
            from .reference import ReferenceEngine

            self.engine: EngineProtocol = ReferenceEngine(self.wiring, batch, self.seed)
        else:
            from .fast import FastEngine

            self.engine = FastEngine(self.wiring, batch, self.seed)

    def _parse_probes(self, probes: Iterable[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        states = tuple(self.program.spec.state)
        plastic = {p.name for p in self.program.projections if p.plasticity is not None}
        for name in probes:
            pop, _, var = str(name).partition(".")
            if pop not in self.program.populations and pop in plastic:
                from .learning import PROBES

                if var not in PROBES:
                    raise EmulatorError(f"probe {name!r}: {var!r} is not a learning variable; probe one of "
                                        f"{', '.join(PROBES)} of plastic projection {pop!r}")
                out[name] = (pop, var)
                continue
            if pop not in self.program.populations:
                raise EmulatorError(
                    f"probe {name!r}: no population {pop!r}; populations: {', '.join(self.program.populations)}"
                )
            if var not in (*states, "spikes"):
                raise EmulatorError(
                    f"probe {name!r}: {var!r} is not a state of family {self.program.family}; "
                    f"probe one of {', '.join((*states, 'spikes'))}"
                )
            out[name] = (pop, var)
        return out

    def reset(self) -> None:
        """Back to the state before the first step (all registers 0, nothing in flight)."""
        self.engine.reset()

    def learned(self, batch: int = 0) -> Program:
        """The Program with the weights batch element ``batch`` has learned so far (the Program itself
        when nothing is plastic): save it, load it, run it again."""
        learning = getattr(self.engine, "learning", None)
        if learning is None:
            return self.program
        if not 0 <= batch < self.batch:
            raise EmulatorError(f"batch = {batch!r}; this simulator runs {self.batch} batch element(s)")
        from .learning.wiring import learned_program

        return learned_program(self.program, learning.learned_weights(batch))

    def run(self, spikes: ArrayLike | Mapping[str, ArrayLike] | None = None, steps: int | None = None) -> Trace:
        """Advance by ``steps`` (default: the input's length) and return what happened.

        ``spikes``: ``[batch, time, channels]`` counts for the only input port, or a mapping
        port → array; a 2-D ``[time, channels]`` array means batch 1. Missing steps are zeros.
        The engine takes the run in time chunks that fit the memory budget
        (:mod:`emulator.memory`); the result is the same as in one piece.
        """
        p = self.program
        return self.run_checked(check_inputs(spikes, steps, p.input_ports, self.batch, p.spec))

    def run_checked(self, inputs: Inputs) -> Trace:
        """:meth:`run` on inputs already checked (:func:`emulator.inputs.check`) for this batch."""
        p = self.program
        if inputs.batch != self.batch:
            raise EmulatorError(f"inputs for batch {inputs.batch}; this simulator runs batch {self.batch}")
        per_step = self.engine.step_bytes(self.probes) * self.batch
        spans = memory.chunks(inputs.steps, per_step, self.memory_budget)
        if len(spans) <= 1:  # one piece (or no step at all)
            by_pop, probes, synops = self.engine.run(inputs.chunk(0, inputs.steps), self.probes)
            out = {name: by_pop[pop].astype(np.int16) for name, pop in p.output_ports.items()}
            return Trace(out, probes, synops, self.engine.name)
        b, t_n = self.batch, inputs.steps
        out = {name: np.zeros((b, t_n, p.populations[pop].size), dtype=np.int16)
               for name, pop in p.output_ports.items()}
        probed: dict[str, NDArray[np.int64]] = {}  # shaped by the first chunk (learning probes are 4-D)
        synops = np.zeros((b, t_n), dtype=np.int64)
        for t0, t1 in spans:
            by_pop, got, ops = self.engine.run(inputs.chunk(t0, t1), self.probes)
            for name, pop in p.output_ports.items():
                out[name][:, t0:t1] = by_pop[pop]
            for name, arr in got.items():
                if name not in probed:
                    probed[name] = np.zeros((b, t_n, *arr.shape[2:]), dtype=np.int64)
                probed[name][:, t0:t1] = arr
            synops[:, t0:t1] = ops
        return Trace(out, probed, synops, self.engine.name)


def run(program: Program, spikes: ArrayLike | Mapping[str, ArrayLike] | None = None, *, steps: int | None = None,
        probes: Iterable[str] = (), engine: str = "fast", seed: int = 0,
        memory_budget: int | str | None = None) -> Trace:
    """Run ``program`` from its initial state on ``spikes`` ``[batch, time, channels]``.

    The run is cut into batch and time chunks that fit ``memory_budget`` (:mod:`emulator.memory`;
    samples are independent, the state carries over time; a Program that learns is cut over time
    only): the result is the same as in one piece.

    >>> trace = run(program, spikes, probes=["l1.v"])      # doctest: +SKIP
    >>> trace.spikes["out"].shape                            # doctest: +SKIP
    (batch, time, n)
    """
    if spikes is None:
        batch = 1
    elif isinstance(spikes, Mapping):
        first = np.asarray(next(iter(spikes.values()))) if spikes else np.zeros((1, 0, 0))
        batch = first.shape[0] if first.ndim == 3 else 1
    else:
        arr = np.asarray(spikes)
        batch = arr.shape[0] if arr.ndim == 3 else 1
    limit = memory.budget(memory_budget)
    inputs = check_inputs(spikes, steps, program.input_ports, batch, program.spec)
    samples = batch
    # samples are independent, except that a learning Program's random draws are keyed by the
    # sample's index in its batch: that one is cut over time only
    learns = any(pr.plasticity is not None for pr in program.projections)
    if engine == "fast" and batch > 1 and not learns:
        # the working memory of one sample-step, from a one-sample engine (the Program's prepared
        # form is shared, so this costs no second setup)
        one = Simulator(program, engine=engine, batch=1, seed=seed, probes=probes, memory_budget=limit)
        per_sample = one.engine.step_bytes(one.probes) * max(1, min(inputs.steps, memory.MIN_CHUNK_ROWS))
        samples = max(1, min(batch, limit // max(1, per_sample)))
    if samples == batch:
        sim = Simulator(program, engine=engine, batch=batch, seed=seed, probes=probes, memory_budget=limit)
        return sim.run_checked(inputs)
    trace: Trace | None = None
    for b0, b1 in memory.chunks(batch, 1, samples):
        sim = Simulator(program, engine=engine, batch=b1 - b0, seed=seed, probes=probes, memory_budget=limit)
        part = sim.run_checked(inputs.samples(b0, b1))
        if trace is None:  # the whole result, allocated once
            trace = Trace({k: np.zeros((batch, *v.shape[1:]), dtype=np.int16) for k, v in part.spikes.items()},
                          {k: np.zeros((batch, *v.shape[1:]), dtype=np.int64) for k, v in part.probes.items()},
                          np.zeros((batch, inputs.steps), dtype=np.int64), part.engine)
        for k, counts in part.spikes.items():
            trace.spikes[k][b0:b1] = counts
        for k, values in part.probes.items():
            trace.probes[k][b0:b1] = values
        trace.synaptic_ops[b0:b1] = part.synaptic_ops
    assert trace is not None
    return trace
