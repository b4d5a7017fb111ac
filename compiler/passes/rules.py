"""Design rules: named functions, each reading its limit from the spec, each returning violations.

A rule takes a :class:`RuleContext` (the lowered population graph, the spec and, when available,
the quantisation report) and returns a list of :class:`Violation` — every offending layer, not
the first. A violation says what (rule and layer), the limit with its spec file, the amount
over, and what to do. :func:`run_rules` runs all of :data:`RULES`.

Per-layer figures (``layer_stats``): neurons, largest fan-in (synapses into one neuron = input
axons it needs), largest fan-out (Loihi: routes, one per destination core; Xylo: target
synapses; TrueNorth: target axons), synapses, synapse memory bits by the spec's cost model
(``row_header_bits`` per input axon + ``synapses × (weight_bits + index_bits)``), and an estimate
of the cores the layer needs (neurons, synapse memory).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emulator import families
from hw_specs import HwSpec
from spikeforge.errors import DoesNotFit

from .. import ir
from .quantize import QuantReport, readouts
from .replicate import Replicated, replicate

__all__ = ["Violation", "RuleContext", "RULES", "run_rules", "layer_stats"]


@dataclass(frozen=True)
class Violation:
    """One broken limit: ``rule``, ``layer``, ``limit`` name and value (from ``spec_file``), ``value``
    found, ``over`` = value − limit, and a concrete ``suggestion``."""

    rule: str
    layer: str
    limit_name: str
    limit: float
    value: float
    spec_file: str
    suggestion: str
    severity: str = "error"  # "error": does not fit; "warning": fits, but read the suggestion

    @property
    def over(self) -> float:
        return self.value - self.limit

    def __str__(self) -> str:
        def fmt(x: float) -> str:
            return f"{int(x)}" if float(x).is_integer() else f"{x:.4g}"

        tag = self.rule if self.severity == "error" else f"{self.rule}, warning"
        return (f"[{tag}] layer {self.layer!r}: {self.limit_name} {fmt(self.value)} > {fmt(self.limit)} "
                f"({self.spec_file}) by {fmt(self.over)}; {self.suggestion}")


@dataclass
class RuleContext:
    """What the rules read: the lowered ``graph``, the ``spec``, the quantisation report if any."""

    graph: ir.Graph
    spec: HwSpec
    quant: QuantReport | None = None
    quant_error: str | None = None
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    qgraph: ir.Graph | None = None  # the quantised graph (exact synapses, TrueNorth axon copies) if any
    #: TrueNorth: the quantised graph with neurons replicated for one route each, and its placement
    layout: Replicated | None = None

    def __post_init__(self) -> None:
        if self.stats:
            return
        graph = self.qgraph if self.qgraph is not None else self.graph
        one_route = families.get(self.spec.family).hardware.ONE_ROUTE_PER_NEURON
        if one_route and self.qgraph is not None and self.layout is None:
            try:
                self.layout = replicate(self.qgraph, self.spec, check_cores=False)
            except DoesNotFit:  # one neuron's inputs exceed a core: the fan-in rule reports it
                self.layout = None
        if self.layout is not None:
            self.stats = layer_stats(self.layout.graph, self.spec, placement=self.layout.placement)
            for name, c in self.layout.copies.items():
                self.stats[name]["copies"] = round(float(c.mean()), 2)
        else:
            self.stats = layer_stats(graph, self.spec)


def _hooks(spec: HwSpec) -> Any:
    """The target family's compile hooks (its facts for the rules)."""
    return families.get(spec.family).compiling


def _distinct(idx: NDArray[np.int64], n: int) -> int:
    """How many distinct values ``idx`` (in ``[0, n)``) holds."""
    return int(np.count_nonzero(np.bincount(idx, minlength=n)))


def _cores_per_source(pre: NDArray[np.int64], core: NDArray[np.int64], n_pre: int) -> NDArray[np.int64]:
    """Per source neuron, how many distinct cores its synapses (``pre[k] → core[k]``) reach."""
    span = int(core.max(initial=0)) + 1
    key = pre.astype(np.int64) * span + core
    if n_pre * span <= max(1 << 24, 4 * key.size):  # a flag per (source, core): linear time
        hit = np.zeros(n_pre * span, dtype=bool)
        hit[key] = True
        return hit.reshape(n_pre, span).sum(axis=1)
    return np.bincount(np.unique(key) // span, minlength=n_pre)


def layer_stats(graph: ir.Graph, spec: HwSpec, placement: dict[str, NDArray[np.int64]] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Per population: neurons, fan-in, fan-out, synapses, synapse bits, cores.

    Without ``placement`` cores are estimated (neurons, synapse memory) and a neuron's routes
    assume its targets' population is spread evenly over those cores; with ``placement`` (core
    of every neuron) both are exact.
    """
    chip = spec.chip
    header = int(spec.synapse["synapse_row_header_bits"])
    index = int(spec.synapse["synapse_index_bits"])
    pops = graph.of_type(ir.Neuron)
    readout = readouts(graph, spec)
    hardware = families.get(spec.family).hardware
    per_core = _hooks(spec).FAN_OUT_PER_CORE
    stats: dict[str, dict[str, Any]] = {}
    for p in pops:
        fan_in = np.zeros(p.size, dtype=np.int64)
        bits = 0
        per_neuron_bits = np.zeros(p.size, dtype=np.int64)
        synapses = 0
        for s in p.inputs:
            syn = graph[s]
            assert isinstance(syn, ir.Synapses)
            cnt = np.bincount(syn.post_idx, minlength=p.size)
            fan_in += cnt
            wb = hardware.weight_bits(syn.params) + index
            per_neuron_bits += cnt * (wb + header)
            bits += _distinct(syn.pre_idx, syn.shape[1]) * header + int(syn.values.size) * wb
            synapses += int(syn.values.size)
        cores = max(math.ceil(p.size / chip.neurons_per_core),
                    math.ceil(bits / chip.synapse_memory_bits_per_core) if chip.synapse_memory_bits_per_core else 1)
        if placement is not None:
            cores = int(np.unique(placement[p.name]).size)
        stats[p.name] = {"layer": p.name, "neurons": p.size, "fan_in": int(fan_in.max(initial=0)),
                         "fan_out": 0, "synapses": synapses, "synapse_bits": bits,
                         "neuron_bits_max": int(per_neuron_bits.max(initial=0)), "cores": cores,
                         "readout": p.name in readout}
    for p in pops:
        fan = np.zeros(p.size, dtype=np.int64)
        for syn in graph.of_type(ir.Synapses):
            if syn.inputs[0] != p.name:
                continue
            if per_core:
                if placement is not None:
                    core = placement[syn.post][syn.post_idx]
                else:
                    core = syn.post_idx // max(1, math.ceil(syn.shape[0] / stats[syn.post]["cores"]))
                fan += _cores_per_source(syn.pre_idx, core, p.size)
            else:
                fan += np.bincount(syn.pre_idx, minlength=p.size)
        stats[p.name]["fan_out"] = int(fan.max(initial=0))
    return stats


def _where(spec: HwSpec, key: str) -> str:
    return f"{spec.where()}: {key}"


# ------------------------------------------------------------------------------------ rules
def neurons_per_core(ctx: RuleContext) -> list[Violation]:
    """Single-core targets (Xylo): all hidden neurons share one core."""
    spec = ctx.spec
    if spec.total_cores != 1:
        return []
    hidden = [s for s in ctx.stats.values() if not s["readout"]]
    total = sum(s["neurons"] for s in hidden)
    if total <= spec.chip.neurons_per_core:
        return []
    biggest = max(hidden, key=lambda s: s["neurons"])
    return [Violation("neurons_per_core", biggest["layer"], "hidden neurons", spec.chip.neurons_per_core, total,
                      _where(spec, "chip.neurons_per_core"),
                      f"reduce the width of hidden layers by {total - spec.chip.neurons_per_core} neurons in total "
                      f"(largest: {biggest['layer']!r}, {biggest['neurons']}) or choose a multi-core target (loihi)")]


def fan_in(ctx: RuleContext) -> list[Violation]:
    """A neuron's inputs (one axon each) must fit one core's input axons."""
    spec = ctx.spec
    limit = spec.chip.axons_in_per_core
    pooled = {syn.post for syn in ctx.graph.of_type(ir.Synapses) if any("(Pool)" in src for src in syn.source)}
    tip = ("split the layer's inputs into groups summed by an extra layer, prune inputs, or use a smaller "
           "convolution kernel / fewer input channels")
    return [Violation("fan_in", s["layer"], "fan-in (input axons of one neuron)", limit, s["fan_in"],
                      _where(spec, "chip.axons_in_per_core"),
                      tip + ("; an average pooling folded into this layer multiplies its fan-in by the window "
                             "area: pool with a spiking layer or a strided convolution instead"
                             if s["layer"] in pooled else ""))
            for s in ctx.stats.values() if limit and s["fan_in"] > limit]


def fan_out(ctx: RuleContext) -> list[Violation]:
    """A neuron's outgoing routes (Loihi, TrueNorth) or target synapses (Xylo)."""
    spec = ctx.spec
    limit = spec.chip.fan_out_per_neuron
    hooks = _hooks(spec)
    if families.get(spec.family).hardware.ONE_ROUTE_PER_NEURON and ctx.layout is None:
        return []  # replication gives every neuron one route; it failed on a rule reported elsewhere (fan-in)
    return [Violation("fan_out", s["layer"], hooks.FAN_OUT_LABEL, limit, s["fan_out"],
                      _where(spec, "chip.fan_out_per_neuron"), hooks.FAN_OUT_FIX)
            for s in ctx.stats.values() if limit and s["fan_out"] > limit]


def synapse_memory(ctx: RuleContext) -> list[Violation]:
    """One neuron's synapses alone must fit a core's synapse memory (else no split helps)."""
    spec = ctx.spec
    limit = spec.chip.synapse_memory_bits_per_core
    return [Violation("synapse_memory", s["layer"], "synapse memory of one neuron (bits)", limit,
                      s["neuron_bits_max"], _where(spec, "chip.synapse_memory_bits_per_core"),
                      "use fewer weight bits (num_weight_bits) or prune the layer's inputs")
            for s in ctx.stats.values() if limit and s["neuron_bits_max"] > limit]


def cores(ctx: RuleContext) -> list[Violation]:
    """The cores of all layers (estimated; TrueNorth: counted on the replicated layout) must fit
    cores_per_chip × max_chips."""
    spec = ctx.spec
    total = ctx.layout.n_cores if ctx.layout is not None else sum(s["cores"] for s in ctx.stats.values())
    if spec.total_cores == 1 or total <= spec.total_cores:
        return []
    biggest = max(ctx.stats.values(), key=lambda s: s["cores"])
    copies = ""
    if ctx.layout is not None and ctx.layout.neurons_added():
        copies = (f"; {ctx.layout.neurons_added()} of the neurons are copies for one route per neuron (fewer when each "
                  "layer's targets sit on fewer cores: narrower layers, smaller fan-out)")
    what = "cores (all layers)" if ctx.layout is not None else "cores (estimated, all layers)"
    return [Violation("cores", biggest["layer"], what, spec.total_cores, total,
                      f"{spec.where()}: chip.cores_per_chip x chip.max_chips",
                      f"reduce the network (largest: {biggest['layer']!r}, {biggest['cores']} cores) or choose a "
                      f"target with more cores or chips{copies}")]


def input_channels(ctx: RuleContext) -> list[Violation]:
    """Host input channels (Xylo: 16)."""
    spec = ctx.spec
    limit = spec.chip.input_channels
    out = []
    for node in ctx.graph.of_type(ir.Input):
        n = ctx.graph.size(node.name)
        if limit and n > limit:
            out.append(Violation("input_channels", node.name, "input channels", limit, n,
                                 _where(spec, "chip.input_channels"),
                                 f"reduce the input to {limit} channels (pool or crop the events, or add a "
                                 "first layer on the host)"))
    return out


def readout_size(ctx: RuleContext) -> list[Violation]:
    """Output (readout) layer size (Xylo: 8)."""
    spec = ctx.spec
    limit = spec.chip.readout_neurons
    if not limit:
        return []
    out = []
    for o in ctx.graph.of_type(ir.Output):
        n = ctx.graph.size(o.inputs[0])
        if n > limit:
            out.append(Violation("readout_size", o.inputs[0], "readout neurons", limit, n,
                                 _where(spec, "chip.readout_neurons"),
                                 f"use at most {limit} output classes/neurons, or choose another target"))
    return out


def readout_inputs(ctx: RuleContext) -> list[Violation]:
    """Targets with a readout layer (Xylo): the readout listens to hidden neurons only, not to inputs."""
    spec = ctx.spec
    if not spec.chip.readout_neurons:
        return []
    graph = ctx.graph
    out = []
    for o in graph.of_type(ir.Output):
        pop = graph[o.inputs[0]]
        direct = [s for s in pop.inputs if isinstance(graph[graph[s].inputs[0]], ir.Input)]
        if direct:
            n = sum(graph.size(graph[s].inputs[0]) for s in direct)
            out.append(Violation("readout_inputs", pop.name, "input channels wired straight to the readout", 0, n,
                                 _where(spec, "chip.readout_neurons"),
                                 "the readout layer only receives hidden-neuron spikes: add a hidden spiking layer "
                                 "between the input and the output"))
    return out


def weight_bits(ctx: RuleContext) -> list[Violation]:
    """Weights must keep precision at the chosen exponent: relative RMS error ≤ 25 %."""
    if ctx.quant is None:
        return []
    spec = ctx.spec
    hooks = _hooks(spec)
    exponent = hooks.WEIGHT_EXPONENT
    if exponent is None:  # no per-projection exponent to trade: the family's fix, as a warning
        return [Violation("weight_bits", p.layer, f"relative weight error of {p.projection!r}", 0.25, p.weight_error,
                          _where(spec, hooks.WEIGHT_ERROR_KEYS), hooks.WEIGHT_ERROR_FIX, severity="warning")
                for p in ctx.quant.projections if p.weight_error > 0.25]
    rng = spec.synapse_range(exponent)
    return [Violation("weight_bits", p.layer, f"relative weight error of {p.projection!r}", 0.25, p.weight_error,
                      _where(spec, f"synapse.{exponent}"),
                      f"its weights are much smaller than the layer's largest projection; with exponent "
                      f"{p.exponent} in {rng} they keep few bits: rescale the inputs of this projection, use more "
                      "num_weight_bits, or balance the branches of the residual")
            for p in ctx.quant.projections if p.weight_error > 0.25]


def registers(ctx: RuleContext) -> list[Violation]:
    """Threshold and bias registers must be representable at some exponent."""
    if ctx.quant is None:
        return []
    spec = ctx.spec
    key = _hooks(spec).REGISTER_KEYS
    return [Violation("registers", q.layer, q.problem_register, q.problem_limit, q.problem_value,
                      _where(spec, key),
                      f"{q.problem}; rescale the layer's weights relative to its threshold and biases, or choose "
                      "another target")
            for q in ctx.quant.populations if not q.feasible]


def overflow(ctx: RuleContext) -> list[Violation]:
    """Worst-case input current per step (all inputs spiking) must fit the state register."""
    if ctx.quant is None:
        return []
    spec = ctx.spec
    hooks = _hooks(spec)
    state, fix = hooks.OVERFLOW_STATE, hooks.OVERFLOW_FIX
    return [Violation("overflow", q.layer, f"worst-case |input| to state {state}", q.state_limit, q.max_input,
                      _where(spec, f"state.{state}"),
                      f"the state may {spec.state[state].overflow}: use {fix}; sparse activity usually stays far "
                      "below this bound", severity="warning")
            for q in ctx.quant.populations if q.overflow_risk]


def quantisation(ctx: RuleContext) -> list[Violation]:
    """Quantisation itself failed (e.g. every weight of a layer rounds to zero)."""
    if not ctx.quant_error:
        return []
    return [Violation("quantisation", "-", "quantisable layers", 0, 1, ctx.spec.where(), ctx.quant_error)]


RULES: dict[str, Callable[[RuleContext], list[Violation]]] = {
    "neurons_per_core": neurons_per_core,
    "fan_in": fan_in,
    "fan_out": fan_out,
    "synapse_memory": synapse_memory,
    "cores": cores,
    "input_channels": input_channels,
    "readout_size": readout_size,
    "readout_inputs": readout_inputs,
    "weight_bits": weight_bits,
    "registers": registers,
    "overflow": overflow,
    "quantisation": quantisation,
}


def run_rules(ctx: RuleContext) -> list[Violation]:
    """Every violation of every rule in :data:`RULES`."""
    out: list[Violation] = []
    for rule in RULES.values():
        out += rule(ctx)
    return out
