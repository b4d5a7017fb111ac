"""TrueNorth hardware: how projections are stored and what they cost (see :mod:`emulator.families`).

A synapse is one crossbar bit (weight 0/1); the weight a neuron adds is its ``type_weights`` entry
for the axon's type, so a projection stores ``axon_types`` (one per pre unit, 0..3). A neuron has
one route (Cassidy et al. 2013: one target axon).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from emulator.program import Program

__all__ = ["weight_bits", "store", "untruncated", "WEIGHT_HINT", "FAN_OUT_UNIT", "FAN_OUT_REMEDY",
           "COPIES_REMEDY", "ONE_ROUTE_PER_NEURON", "FORMAT_FIELDS"]

#: remedy for a weight outside the target's range
WEIGHT_HINT = "use 0/1 crossbar bits and put magnitudes in type_weights"
#: fan-out per neuron counts routes
FAN_OUT_UNIT = "routes"
#: extra remedies for a neuron over ``fan_out_per_neuron`` (the Program's check, the placer's)
FAN_OUT_REMEDY = " or insert splitter neurons"
COPIES_REMEDY = (" or build the neuron as copies, one per target core (compiler.passes.replicate does it for "
                 "compiled models)")
#: one route per neuron: the compiler builds a neuron needed on several cores as copies
ONE_ROUTE_PER_NEURON = True
#: fields of the stored format that the spec's ``[synapse]`` does not range
FORMAT_FIELDS: Mapping[str, tuple[int, ...]] = {}


def weight_bits(params: Mapping[str, int]) -> int:
    """Bits per stored weight in the synapse-memory cost model: one crossbar bit (Merolla 2014)."""
    return 1


def store(name: str, post_idx: NDArray[np.integer[Any]], pre_idx: NDArray[np.integer[Any]],
          w: NDArray[np.integer[Any]], fields: Mapping[str, Any], *, pre_size: int, post: str, post_readout: bool,
          check_field: Callable[[ArrayLike, tuple[int, ...], str], NDArray[np.int64]]
          ) -> tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]], dict[str, int],
                     NDArray[np.int64] | None]:
    """The projection as the chip stores it: ``(post_idx, pre_idx, w, params, axon_types)``.

    ``fields``: ``connect``'s keywords (``axon_types``: ``[pre_size]`` values, default all 0), each
    checked by ``check_field(values, shape, key)`` against the spec's ``[synapse]`` range.
    """
    raw = fields["axon_types"]
    types = check_field(np.zeros(pre_size, dtype=np.int64) if raw is None else raw, (pre_size,), "axon_types")
    return post_idx, pre_idx, w, {}, types


def untruncated(program: Program) -> tuple[int, str] | None:
    """Crossbar bits are kept whole: never a projection."""
    return None
