"""Loihi hardware: how projections are stored and what they cost (see :mod:`emulator.families`).

A projection's stored format is Lava Dense's: ``weight_exp``, ``num_weight_bits`` and ``sign_mode``
(0 mixed, 1 excitatory, 2 inhibitory). The chip keeps ``num_weight_bits`` of each weight, so a
stored weight is truncated: ``w = (w >> k) << k`` with ``k = 8 - num_weight_bits + is_mixed``
(Lava ``weightutils``; an inhibitory weight is truncated as ``-((-w >> k) << k)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from spikeforge.errors import RegisterError

if TYPE_CHECKING:
    from emulator.program import Program

__all__ = ["weight_bits", "truncation_bits", "store", "untruncated", "WEIGHT_HINT", "FAN_OUT_UNIT",
           "FAN_OUT_REMEDY", "COPIES_REMEDY", "ONE_ROUTE_PER_NEURON", "FORMAT_FIELDS"]

#: remedy for a weight outside the target's range
WEIGHT_HINT = "scale the weights down and raise weight_exp"
#: fan-out per neuron counts routes (one per target core and projection)
FAN_OUT_UNIT = "routes"
#: extra remedies for a neuron over ``fan_out_per_neuron`` (the Program's check, the placer's)
FAN_OUT_REMEDY = ""
COPIES_REMEDY = ""
#: a neuron may have several routes
ONE_ROUTE_PER_NEURON = False
#: fields of the stored format that the spec's ``[synapse]`` does not range, and their values
FORMAT_FIELDS: Mapping[str, tuple[int, ...]] = {"sign_mode": (0, 1, 2)}

#: synapses per block in :func:`untruncated` (a block of temporaries stays in cache)
_BLOCK = 1 << 14


def weight_bits(params: Mapping[str, int]) -> int:
    """Bits per stored weight in the synapse-memory cost model: the projection's ``num_weight_bits``
    (Lava Dense, default 8)."""
    return int(params.get("num_weight_bits", 8))


def truncation_bits(params: Mapping[str, int]) -> int:
    """Weight truncation ``k = 8 - num_weight_bits + is_mixed`` (Lava weightutils)."""
    mixed = 1 if params.get("sign_mode", 0) == 0 else 0
    return max(0, 8 - int(params.get("num_weight_bits", 8)) + mixed)


def store(name: str, post_idx: NDArray[np.integer[Any]], pre_idx: NDArray[np.integer[Any]],
          w: NDArray[np.integer[Any]], fields: Mapping[str, Any], *, pre_size: int, post: str, post_readout: bool,
          check_field: Callable[[ArrayLike, tuple[int, ...], str], NDArray[np.int64]]
          ) -> tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]], NDArray[np.integer[Any]], dict[str, int],
                     NDArray[np.int64] | None]:
    """The projection as the chip stores it: ``(post_idx, pre_idx, w, params, axon_types)``.

    ``fields``: ``connect``'s keywords (``weight_exp``, ``num_weight_bits``, ``sign_mode``; None: from
    the weights' signs). Weights are truncated (see the module doc); synapses whose weight truncates
    to 0 are dropped. ``w``: integers in the target's range, in a dtype that holds ``-w``.
    """
    params = {"weight_exp": int(fields["weight_exp"]), "num_weight_bits": int(fields["num_weight_bits"])}
    sign_mode = fields["sign_mode"]
    if sign_mode is None:
        sign_mode = 1 if (w >= 0).all() else 2 if (w <= 0).all() else 0
    params["sign_mode"] = int(sign_mode)
    if sign_mode == 1 and (w < 0).any() or sign_mode == 2 and (w > 0).any():
        raise RegisterError(f"projection {name!r}: sign_mode={sign_mode} but weights of both signs")
    k = truncation_bits(params)
    if k:
        w = -(np.right_shift(-w, k) << k) if sign_mode == 2 else np.right_shift(w, k) << k
        keep = w != 0
        if not keep.all() and not fields.get("plastic"):  # a plastic synapse of weight 0 can learn
            post_idx, pre_idx, w = post_idx[keep], pre_idx[keep], w[keep]
    return post_idx, pre_idx, w, params, None


def untruncated(program: Program) -> tuple[int, str] | None:
    """The first projection (index, message) with a stored weight that ``num_weight_bits`` cannot
    hold — ``(w >> k) << k != w``, for ``w`` and ``-w`` exactly when ``w``'s low ``k`` bits are not
    0 — or None. Checked per synapse in blocks; with one mask for every projection no lookup is needed.
    """
    projections = program.projections
    if not program.syn_axon.size:
        return None
    low = np.array([(1 << min(30, truncation_bits(p.params))) - 1 for p in projections] + [0], dtype=np.int32)
    if not low.any():
        return None
    masks = np.unique(low[:-1])
    bad_j = len(projections)
    for lo in range(0, program.syn_weight.size, _BLOCK):
        w = program.syn_weight[lo:lo + _BLOCK]
        if masks.size == 1:
            if not (w & masks[0]).any():
                continue
        proj = program.axon_projection[program.syn_axon[lo:lo + _BLOCK]]
        bad = (w & low[proj]) != 0
        if bad.any():
            bad_j = min(bad_j, int(proj[bad].min()))
    if bad_j == len(projections):
        return None
    p = projections[bad_j]
    return bad_j, (f"projection {p.name!r}: stored weights are not truncated to num_weight_bits="
                   f"{p.params.get('num_weight_bits', 8)} (multiples of 2^{truncation_bits(p.params)})")
