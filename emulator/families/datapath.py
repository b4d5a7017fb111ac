"""What every family's ``datapath`` module provides, and the types it shares with the engines.

A family datapath module (``emulator.families.<name>.datapath``) is the one place where a chip's
neuron arithmetic is written. It exports:

``SUPPORT: Mapping[str, Support]``
    per state register (the spec's ``[state]`` keys), the widths and overflow policies the
    datapath honours exactly; ``hw_specs.load`` refuses a spec outside them.
``HIDDEN: tuple[str, ...]``
    per-neuron registers the update keeps besides the spec's states (Loihi's refractory
    counter); engines allocate them, probes cannot name them.
``ORDERED: bool``
    whether the chip's delivery order can change the result (a saturating addition per
    synapse): the fast engine then gives the step the positive and negative parts of the drive,
    and an in-order fallback for the rare neurons whose partial sums could saturate.
``slot(params) -> int``
    which synaptic state of the post neuron a projection with ``params`` feeds (Xylo's
    ``synapse``; 0 elsewhere); ``slots(readout) -> int`` how many a neuron has.
``increments(syn, params, registers, spec) -> int64[n_syn]``
    the synaptic increment each stored synapse adds per arriving spike (:class:`Synapses`).
``stepwise(registers) -> bool[n]``
    neurons that integrate their synapses one at a time inside the step (TrueNorth's stochastic
    synapses); the fast engine leaves them out of its crossbar products.
``reference_step(wiring, seed) -> ReferenceStep``
    the plain per-neuron update on Python integers, in the chip's order: the definition.
``population(net, q, batch, seed) -> PopulationStep``
    the same update over ``[batch, n]`` arrays for population ``q`` of a lowered network
    (:class:`emulator.fast.Lowered`), for the fast engine; tested against the reference.
``compiled(wiring, batch) -> Runner | None``
    optionally, a whole-program compiled runner (Xylo's numba kernel) that replaces the fast
    engine's step loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["Support", "Synapses", "Delivery", "PopulationStep", "ReferenceStep", "uniform"]

#: arrays of exact integers: int64, or integer-valued float32/float64 in the fast engine
Array = NDArray[Any]

#: ``step(state, counts, t) -> spikes``: one step of every neuron for one batch element; ``state``
#: maps each state (and hidden) register to its per-neuron Python list, updated in place;
#: ``counts`` are the spikes arriving at every axon; ``t`` is the global step.
ReferenceStep = Callable[[dict[str, list[int]], list[int], int], list[int]]


@dataclass(frozen=True)
class Support:
    """What a datapath can hold exactly in one state register: ``bits`` an inclusive range of
    widths, ``overflow`` the policies it implements."""

    bits: tuple[int, int]
    overflow: tuple[str, ...]


@dataclass(frozen=True)
class Synapses:
    """Stored synapses, flat ``int64 [n_syn]``: crossbar ``weight``, projection index ``proj``,
    global ``post`` neuron and the ``axon_type`` of the axon that carries it."""

    weight: NDArray[np.int64]
    proj: NDArray[np.int64]
    post: NDArray[np.int64]
    axon_type: NDArray[np.int64]


class Delivery(Protocol):
    """What the fast engine offers a family step that must follow the chip's delivery order."""

    def in_order(self, q: int, b: int, start: NDArray[np.int64], add: NDArray[np.int64], t: int,
                 lo: int, hi: int, slot: int) -> NDArray[np.int64]:
        """Population ``q``'s synaptic state ``slot`` for batch element ``b`` after this step's
        deliveries, each spike a saturating addition into ``[lo, hi]`` in ascending axon order,
        from ``start`` ``[n]``. ``add`` is the plain sum, used when the network has no axon order
        (a lowered netlist: the sum saturates once)."""
        ...

    def arrivals(self, axon: int, b: int, t: int) -> int:
        """Spike count arriving at ``axon`` (global id) at chunk step ``t`` for batch element ``b``."""
        ...


class PopulationStep:
    """One population's state and its vectorised update (``[batch, n]``), as the fast engine
    drives it. ``state`` maps every state and hidden register to its array (probes read it)."""

    state: dict[str, Array]

    def reset(self) -> None:
        """All registers back to 0."""
        raise NotImplementedError

    def current(self, sums: Mapping[int, Array]) -> Array | None:
        """Unordered families: the drive of the step from per-projection sums ``{proj: [t, B, n]}``
        of ``count · increment``; ``None`` when there are none."""
        raise NotImplementedError

    def step(self, drive: Any, delivery: Delivery, t: int, t_global: int) -> Array:
        """Advance one step and return the spike counts ``[B, n]``. ``drive``: unordered families
        get :meth:`current`'s ``[B, n]`` slice (or None); ordered ones ``(pos, neg)`` ``[B, S, n]``
        (or ``(None, None)``). ``t`` is the step within the chunk, ``t_global`` since reset."""
        raise NotImplementedError


def uniform(values: NDArray[Any]) -> NDArray[Any]:
    """A register equal for every neuron becomes a 0-d array: numpy broadcasts a scalar operand
    (a shift, a threshold) much faster than an element-wise one, with identical results."""
    if values.ndim == 1 and values.size and (values == values[0]).all():
        return np.asarray(values[0])
    return values
