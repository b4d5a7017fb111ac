"""Partition a network over cores: :func:`compiler.backend.place` on a builder's or a netlist's network.

``partition(network)`` returns the core of every neuron, ``{population: int64 [size]}``, which the
caller hands to ``builder.build(placement=...)``; the algorithm, its limits and strategies are
documented in :mod:`compiler.backend.placement`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from compiler.backend.netlist import Netlist
from compiler.backend.placement import STRATEGIES as _ALL_STRATEGIES
from compiler.backend.placement import Progress, mesh_order, mesh_position, place, traffic

if TYPE_CHECKING:
    from emulator.builder import ProgramBuilder
    from hw_specs import HwSpec

__all__ = ["partition", "traffic", "mesh_position", "mesh_order", "STRATEGIES"]

#: the partitioner's strategies (``place`` also has the builder's ``per_population``)
STRATEGIES = tuple(s for s in _ALL_STRATEGIES if s != "per_population")


def partition(network: ProgramBuilder | Netlist, *, strategy: str = "greedy", progress: Progress | None = None,
              spec: HwSpec | None = None) -> dict[str, NDArray[np.int64]]:
    """Core index of every neuron, ``{population: int64 [size]}``, respecting every per-core limit.

    ``network``: a :class:`emulator.ProgramBuilder` (its netlist and spec are read) or a
    :class:`~compiler.backend.netlist.Netlist` with its ``spec``. ``strategy`` is one of
    :data:`STRATEGIES`. ``progress(done, total)`` is called with neurons partitioned so far.
    Raises :class:`spikeforge.errors.DoesNotFit` as :func:`compiler.backend.place` does.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"partition: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if isinstance(network, Netlist):
        if spec is None:
            raise TypeError("partition: a Netlist needs its spec (spec=...)")
        netlist = network
    else:
        netlist, spec = network.netlist(), network.spec
    return dict(place(netlist, spec, strategy=strategy, progress=progress).cores)
