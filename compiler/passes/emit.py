"""Emission: a quantised population graph → ``emulator.ProgramBuilder`` calls → a Program.

The one seam: the compiler's output stage is exactly the register-level API a user can call.
Placement comes from the partitioner (``compiler.passes.partition.partition``); on TrueNorth
(one route per neuron) from :func:`compiler.passes.replicate.replicate`, which first builds
neurons needed on several cores as identical copies. Builder errors (register out of range,
resources exceeded) are re-raised as :class:`CompileError` subclasses naming the layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import emulator
from hw_specs import HwSpec
from spikeforge.errors import CompileError, DoesNotFit, ProgramError

from .. import ir
from .replicate import Replicated, replicate

__all__ = ["emit", "to_builder"]


def to_builder(graph: ir.Graph, spec: HwSpec) -> emulator.ProgramBuilder:
    """Declare every input, population, projection and output of the quantised ``graph``."""
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
                b.connect(node.inputs[0], node.post, weights=(node.post_idx, node.pre_idx, node.values),
                          delay=node.delay, name=node.name, **kw)
            elif isinstance(node, ir.Output):
                b.output(node.name, node.inputs[0])
    except ProgramError as exc:
        raise CompileError(f"emitting the program: {exc}") from None
    return b


def _placement(builder: emulator.ProgramBuilder) -> Mapping[str, Any] | None:
    try:
        from .partition import partition  # the partitioner's pass, when it has landed
    except ImportError:
        return None
    return partition(builder)


def emit(graph: ir.Graph, spec: HwSpec, metadata: Mapping[str, Any] | None = None,
         layout: Replicated | None = None) -> emulator.Program:
    """Build the Program for the quantised ``graph`` (see the module doc). TrueNorth: ``layout`` is
    ``replicate(graph, spec)`` when the caller has it already (the design rules compute it)."""
    if spec.family == "truenorth":
        if layout is None:
            layout = replicate(graph, spec)
        builder = to_builder(layout.graph, spec)
        placement: Mapping[str, Any] | None = layout.placement
    else:
        builder = to_builder(graph, spec)
        placement = _placement(builder)
    try:
        return builder.build(placement=placement, metadata=metadata)
    except DoesNotFit:
        raise
    except ProgramError as exc:
        if "core" in str(exc) and ">" in str(exc):
            raise DoesNotFit(str(exc)) from None
        raise CompileError(f"building the program: {exc}") from None

