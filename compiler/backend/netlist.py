"""The netlist: a network as the chip sees it, before placement — what the back end consumes.

A :class:`Netlist` is a frozen value made by :meth:`emulator.ProgramBuilder.netlist` (which checks
every register and field against the spec): input ports, populations with their register values,
projections with integer COO weights and their stored format, and output ports. It holds no
placement and no axon numbering; :func:`compiler.backend.place` and :func:`compiler.backend.layout`
turn it into a :class:`emulator.Program`.

Arrays are read-only views (the builder's storage is not copied): a projection's COO is ``post_idx``,
``pre_idx`` (int32; int64 only for populations of 2**31 neurons or more) and ``weight`` (int16 or
int32, the narrowest holding the target's weight range), one entry per synapse, no zero weight and no
repeated ``(post, pre)`` pair, in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Netlist", "InputPort", "Population", "Projection", "read_only", "frozen_mapping"]


@dataclass(frozen=True)
class InputPort:
    """A host input port: ``size`` channels (the program's input axons)."""

    name: str
    size: int


@dataclass(frozen=True)
class Population:
    """``size`` neurons with the family's registers (int64 ``[size]``; TrueNorth ``type_weights``
    ``[size, 4]``), in the family's units; ``readout``: a readout layer (Xylo)."""

    name: str
    size: int
    registers: Mapping[str, NDArray[np.int64]]
    readout: bool = False


@dataclass(frozen=True)
class Projection:
    """Synapses ``pre`` (population or input port, ``pre_size`` units) → ``post`` population
    (``post_size`` neurons): COO ``weight[i]`` from pre unit ``pre_idx[i]`` to neuron ``post_idx[i]``,
    as stored on the chip; ``delay`` steps; ``params``: the stored format (Loihi ``weight_exp``,
    ``num_weight_bits``, ``sign_mode``; Xylo ``synapse``, ``weight_shift``); ``axon_types``: int64
    ``[pre_size]`` (TrueNorth) or None."""

    name: str
    pre: str
    pre_size: int
    pre_is_input: bool
    post: str
    post_size: int
    post_idx: NDArray[np.integer[Any]]
    pre_idx: NDArray[np.integer[Any]]
    weight: NDArray[np.integer[Any]]
    delay: int
    params: Mapping[str, int]
    axon_types: NDArray[np.int64] | None = None
    plasticity: Any = None  # an emulator.learning.LearningRule of a plastic projection


@dataclass(frozen=True)
class Netlist:
    """Input ports, populations and projections in declaration order; ``outputs``: output port →
    population name."""

    inputs: tuple[InputPort, ...]
    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    outputs: Mapping[str, str]

    def population(self, name: str) -> Population:
        """The population called ``name`` (KeyError otherwise)."""
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def input_sizes(self) -> dict[str, int]:
        """Input port name → channels, in declaration order."""
        return {p.name: p.size for p in self.inputs}

    @property
    def n_synapses(self) -> int:
        return sum(int(c.weight.size) for c in self.projections)


def read_only(a: NDArray[Any]) -> NDArray[Any]:
    """A read-only view of ``a`` (no copy; ``a`` itself stays writeable)."""
    v = a.view()
    v.flags.writeable = False
    return v


def frozen_mapping(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of the mapping ``d``."""
    return MappingProxyType(dict(d))
