"""The learning pass: which projections of a compiled network learn on chip, and with which rule.

A rule is given per layer, by the compile option ``plasticity={"fc1": "dw = ..."}``, on the command
line (``--plasticity fc1=RULE``) or as a module attribute (``model.fc1.plasticity = "dw = ..."``; the
option wins for a layer named in both). A layer name matches a projection of the quantised graph
by its name, its post population or a source layer it was composed from. Each rule is checked
against the target's learning engine here (:func:`emulator.learning.compile_plasticity`); a target
without one, an unknown layer or a rule the engine cannot run is a :class:`CompileError`.

A plastic projection keeps every (post, pre) pair of its dense weight matrix as a synapse (a zero
weight can grow): meant for fully connected layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.learning import LearningRule, as_rule, compile_plasticity
from hw_specs import HwSpec
from spikeforge.errors import CompileError, LearningRuleError

from .. import ir

__all__ = ["ATTRIBUTE", "module_rules", "attach", "parse_option"]

#: the module attribute that carries a layer's rule
ATTRIBUTE = "plasticity"


def module_rules(model: Any) -> dict[str, str | LearningRule]:
    """``{layer name: rule}`` for every submodule of a torch module with a ``plasticity`` attribute
    (no torch import: any object with ``named_modules``)."""
    named = getattr(model, "named_modules", None)
    if named is None:
        return {}
    out: dict[str, str | LearningRule] = {}
    for name, module in named():
        rule = getattr(module, ATTRIBUTE, None)
        if rule is not None and name:
            out[name] = rule
    return out


def attach(graph: ir.Graph, rules: Mapping[str, str | LearningRule], spec: HwSpec) -> dict[str, LearningRule]:
    """``{projection name: rule}`` for the quantised ``graph`` (module docstring)."""
    out: dict[str, LearningRule] = {}
    synapses = [n for n in graph if isinstance(n, ir.Synapses)]
    for layer, raw in rules.items():
        hits = [n for n in synapses if layer in _names(n)]
        if not hits:
            names = sorted({name for n in synapses for name in _names(n)})
            raise CompileError(f"plasticity for layer {layer!r}: no projection of the network matches; layers: "
                               f"{', '.join(names)}")
        try:
            rule = as_rule(raw)
            compile_plasticity(rule, spec)
        except LearningRuleError as exc:
            raise CompileError(f"plasticity for layer {layer!r}: {exc}") from None
        for n in hits:
            out[n.name] = rule
    return out


def _names(node: ir.Synapses) -> set[str]:
    """The names a layer option may give a projection: its own, its post population's, its source
    layers' (``"fc1 (Dense)"`` is ``fc1``)."""
    return {node.name, node.post, *(s.split(" (")[0] for s in node.source)}


def parse_option(items: list[str]) -> dict[str, str]:
    """``["fc1=dw = 2^-2*x1*y0", ...]`` (the command line's ``--plasticity LAYER=RULE``) as a mapping."""
    out: dict[str, str] = {}
    for item in items:
        layer, sep, rule = item.partition("=")
        if not sep or not layer.strip() or not rule.strip():
            raise CompileError(f"--plasticity {item!r}: expected LAYER=RULE, e.g. fc1='dw = 2^-2*x1*y0 - 2^-2*y1*x0'")
        out[layer.strip()] = rule.strip()
    return out
