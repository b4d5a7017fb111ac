"""Emission: a quantised population graph → a netlist (through ``emulator.ProgramBuilder``) → a Program.

The one seam: the compiler declares the network with exactly the register-level API a user can call,
which checks every register against the spec; the builder's :class:`~compiler.backend.Netlist` then
goes through the back end: :func:`compiler.backend.place` (the partitioner) or, for a family with one
route per neuron (TrueNorth), :func:`compiler.passes.replicate.replicate`, which first builds neurons
needed on several cores as identical copies; then :func:`compiler.backend.layout`. Register errors
are re-raised as :class:`CompileError` naming the layer; a resource over a limit stays
:class:`DoesNotFit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import emulator
from emulator import families
from hw_specs import HwSpec
from spikeforge.errors import CompileError, DoesNotFit, ProgramError

from .. import ir
from ..backend import place
from .replicate import Replicated, replicate

__all__ = ["emit", "to_builder"]


def to_builder(graph: ir.Graph, spec: HwSpec, plasticity: Mapping[str, Any] | None = None
               ) -> emulator.ProgramBuilder:
    """Declare every input, population, projection and output of the quantised ``graph``;
    ``plasticity`` maps a projection name to its learning rule (:mod:`compiler.passes.learning`)."""
    plasticity = plasticity or {}
    ir.validate(graph, "quantized")
    b = emulator.ProgramBuilder(spec)
    try:
        for node in graph:
            if isinstance(node, ir.Input):
                b.input(node.name, graph.size(node.name))
            elif isinstance(node, ir.Neuron):
                b.population(node.name, node.size, readout=node.readout, **dict(node.registers))
        for node in graph:
            if isinstance(node, ir.Synapses):
                kw: dict[str, Any] = dict(node.params)
                if node.axon_types is not None:
                    kw["axon_types"] = node.axon_types
                if node.name in plasticity:  # every pair is a plastic synapse
                    kw["plasticity"] = plasticity[node.name]
                    weights: Any = node.dense()
                else:
                    weights = (node.post_idx, node.pre_idx, node.values)
                b.connect(node.inputs[0], node.post, weights=weights, delay=node.delay, name=node.name, **kw)
            elif isinstance(node, ir.Output):
                b.output(node.name, node.inputs[0])
    except ProgramError as exc:
        raise CompileError(f"emitting the program: {exc}") from None
    return b


def emit(graph: ir.Graph, spec: HwSpec, metadata: Mapping[str, Any] | None = None,
         layout: Replicated | None = None, plasticity: Mapping[str, Any] | None = None,
         builder: emulator.ProgramBuilder | None = None) -> emulator.Program:
    """Build the Program for the quantised ``graph`` (see the module doc). One route per neuron
    (TrueNorth): ``layout`` is ``replicate(graph, spec)`` when the caller has it already (the
    design rules compute it). Otherwise ``builder`` is ``to_builder(graph, spec, plasticity)`` when
    the caller has it already (the compiler verifies the Program against the same declaration's
    netlist). ``plasticity``: learning rules by projection name."""
    if families.get(spec.family).hardware.ONE_ROUTE_PER_NEURON:
        if layout is None:
            layout = replicate(graph, spec)
        builder = to_builder(layout.graph, spec, plasticity)
        placement: Mapping[str, Any] = layout.placement
    else:
        if builder is None:
            builder = to_builder(graph, spec, plasticity)
        placement = place(builder.netlist(), spec).cores
    try:
        return builder.build(placement=placement, metadata=metadata)
    except DoesNotFit:
        raise
    except ProgramError as exc:
        raise CompileError(f"building the program: {exc}") from None
