"""TrueNorth hardware: how projections are stored and what they cost (see :mod:`emulator.families`)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["weight_bits"]


def weight_bits(params: Mapping[str, int]) -> int:
    """Bits per stored weight in the synapse-memory cost model: one crossbar bit (Merolla 2014)."""
    return 1
