"""Xylo hardware: how projections are stored and what they cost (see :mod:`emulator.families`).

A projection's stored format: ``synapse`` (0 or 1: which synaptic state of a hidden neuron it
feeds; a readout neuron has one) and ``weight_shift`` (the weights' left shift). Weights are int8
(XyloSim) and are stored as given. Fan-out counts target synapses (XyloSim: a neuron's outgoing
synapses, at most ``fan_out_per_neuron``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spikeforge.errors import RegisterError

if TYPE_CHECKING:
    from emulator.program import Program

__all__ = ["weight_bits", "store", "untruncated", "WEIGHT_HINT", "FAN_OUT_UNIT", "FAN_OUT_REMEDY",
           "COPIES_REMEDY", "ONE_ROUTE_PER_NEURON", "FORMAT_FIELDS"]

#: remedy for a weight outside the target's range
WEIGHT_HINT = "scale the weights down and raise weight_shift"
#: fan-out per neuron counts the synapses its spikes reach
FAN_OUT_UNIT = "target synapses"
#: extra remedies for a neuron over ``fan_out_per_neuron`` (the Program's check, the placer's)
FAN_OUT_REMEDY = ""
COPIES_REMEDY = ""
#: a neuron may have several routes
ONE_ROUTE_PER_NEURON = False
#: fields of the stored format that the spec's ``[synapse]`` does not range
FORMAT_FIELDS: Mapping[str, tuple[int, ...]] = {}


def weight_bits(params: Mapping[str, int]) -> int:
    """Bits per stored weight in the synapse-memory cost model: XyloSim weights are int8."""
    return 8


def store(name: str, post_idx: NDArray[np.integer[Any]], pre_idx: NDArray[np.integer[Any]],
          w: NDArray[np.integer[Any]], fields: Mapping[str, Any], *, pre_size: int, post: str, post_readout: bool,
          check_field: Callable[[ArrayLike, tuple[int, ...], str], NDArray[np.int64]]
          ) -> tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]], dict[str, int],
                     NDArray[np.int64] | None]:
    """The projection as the chip stores it: ``(post_idx, pre_idx, w, params, axon_types)``.

    ``fields``: ``connect``'s keywords (``synapse``, ``weight_shift``). A readout population has one
    synaptic state: a projection into it must use ``synapse=0``.
    """
    synapse = fields["synapse"]
    params = {"synapse": int(synapse), "weight_shift": int(fields["weight_shift"])}
    if post_readout and synapse != 0:
        raise RegisterError(f"projection {name!r}: readout population {post!r} has one synapse; use synapse=0")
    return post_idx, pre_idx, w, params, None


def untruncated(program: Program) -> tuple[int, str] | None:
    """Stored weights are kept whole: never a projection."""
    return None
