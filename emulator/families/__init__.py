"""Chip families: everything a neuron datapath *is*, one small folder per family.

A family (``loihi``, ``xylo``, ``truenorth``) is a package ``emulator.families.<name>`` with
three modules, each one concern:

* ``datapath``  — the per-step neuron update, written once over arrays, beside the plain
  per-neuron form that is the definition (the reference engine); the synaptic increment;
  the state registers and their widths, read from the spec's ``[state]``, and the widths and
  overflow policies it holds exactly (``SUPPORT``, which ``hw_specs.load`` enforces). The names
  every datapath module exports are listed in :mod:`emulator.families.datapath`.
* ``hardware``  — how registers and projection fields are checked against a spec, how a
  projection's weights are stored (truncation, sign modes, axon types) and what they cost in
  synapse memory; how fan-out is counted.
* ``compiling`` — the compiler's hooks: time constants → registers, quantisation formats,
  family-specific design rules.

The registry below maps a family name to a :class:`Family`; engines, builder, Program,
quantiser and rules ask the family (``families.get(spec.family).hardware.weight_bits(...)``)
instead of comparing its name. Each module is imported on first use, so ``import emulator``
stays cheap and a board-side user never loads the compiler hooks.

Adding a family: a folder with those three modules, its entry in :data:`REGISTRY`, a TOML
file in ``hw_specs/`` and its tests (``docs/architecture.md`` lists what each module provides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module
from types import MappingProxyType
from typing import Any

from spikeforge.errors import SpecError

__all__ = ["Family", "REGISTRY", "get", "names"]


@dataclass(frozen=True)
class Family:
    """One chip family: its declared names and, loaded on first use, its three modules.

    ``registers``: per-neuron registers a spec of this family must declare (``[registers]``);
    ``state``: state registers (``[state]``, each with ``bits`` and ``overflow``);
    ``synapse``: projection fields (``[synapse]`` ranges);
    ``columns``: registers that hold a row of values per neuron, with the row's length
    (TrueNorth ``type_weights``: one signed weight per axon type); every other register holds
    one value per neuron.
    ``learns``: the family has an on-chip learning engine, its ``learning`` module (trace and
    sum-of-products arithmetic, :mod:`emulator.learning` runs it).
    """

    name: str
    registers: tuple[str, ...]
    state: tuple[str, ...]
    synapse: tuple[str, ...]
    columns: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    learns: bool = False

    def register_shape(self, key: str, neurons: int) -> tuple[int, ...]:
        """Shape of register ``key`` for ``neurons`` neurons: ``[neurons]`` or ``[neurons, columns]``."""
        width = self.columns.get(key)
        return (neurons,) if width is None else (neurons, width)

    @property
    def package(self) -> str:
        return f"{__name__}.{self.name}"

    def _module(self, part: str) -> Any:
        return import_module(f"{self.package}.{part}")

    @cached_property
    def datapath(self) -> Any:
        """The family's ``datapath`` module (neuron update, synaptic increment, state widths)."""
        return self._module("datapath")

    @cached_property
    def hardware(self) -> Any:
        """The family's ``hardware`` module (register and weight storage, memory cost, fan-out)."""
        return self._module("hardware")

    @cached_property
    def compiling(self) -> Any:
        """The family's ``compiling`` module (compiler hooks: time constants, quantisation, rules)."""
        return self._module("compiling")

    @cached_property
    def learning(self) -> Any:
        """The family's ``learning`` module (its learning engine's arithmetic), or None without one."""
        return self._module("learning") if self.learns else None


REGISTRY: Mapping[str, Family] = MappingProxyType({
    "loihi": Family(
        "loihi",
        registers=("du", "dv", "vth", "bias_mant", "bias_exp", "refractory", "vmin_exp", "vmax_exp"),
        state=("u", "v"),
        synapse=("weight", "num_weight_bits", "weight_exp", "delay", "input_delay"),
        learns=True,  # Davies 2018: sum-of-products learning engine per core
    ),
    "xylo": Family(
        "xylo",
        registers=("dash_mem", "dash_syn", "dash_syn2", "threshold", "bias"),
        state=("vmem", "isyn", "isyn2"),
        synapse=("weight", "weight_shift", "synapse", "delay", "input_delay"),
    ),
    "truenorth": Family(
        "truenorth",
        registers=(
            "type_weights", "leak", "threshold", "neg_threshold", "reset_mode", "reset_value",
            "neg_saturate", "leak_reversal", "stochastic_synapse", "stochastic_leak", "threshold_mask_bits",
        ),
        state=("v",),
        synapse=("weight", "axon_types", "delay", "input_delay"),
        columns=MappingProxyType({"type_weights": 4}),  # s_j[G] for the 4 axon types (Cassidy 2013)
    ),
})


def names() -> tuple[str, ...]:
    """The families this emulator implements."""
    return tuple(REGISTRY)


def get(name: str) -> Family:
    """The family called ``name``; :class:`SpecError` listing the known ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise SpecError(f"unknown neuron family {name!r}; families: {', '.join(REGISTRY)}") from None
