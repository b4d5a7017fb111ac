"""Loihi hardware: how projections are stored and what they cost (see :mod:`emulator.families`)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["weight_bits"]


def weight_bits(params: Mapping[str, int]) -> int:
    """Bits per stored weight in the synapse-memory cost model: the projection's ``num_weight_bits``
    (Lava Dense, default 8)."""
    return int(params.get("num_weight_bits", 8))
