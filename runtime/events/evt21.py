"""Prophesee EVT 2.1 (``.raw``): 64-bit vectorised words after a ``%`` header.

A word's "high" half (32 bits) has the type in bits 31..28 and, for CD words (type ``0x0`` OFF,
``0x1`` ON), t[5:0] in bits 27..22, x_base in bits 21..11 and y in bits 10..0; its "low" half is a
32-bit valid mask: one event at ``x_base + i`` for each set bit ``i``, in increasing ``i``.
Time-high words (``0x8``) carry t[33:6] in bits 27..0, exactly as in EVT 2.0 (same wrap rule).
Types ``0xA``, ``0xE``, ``0xF`` are skipped; others are corruption.

Byte order of the halves (Prophesee EVT 2.1 doc, openeb ``Evt21Raw``/``Evt21LegacyRaw``):

* standard (GenX320): one little-endian uint64, high half = bits 63..32, i.e. the mask comes first
  in the file;
* legacy (IMX636, header ``format EVT21;...;endianness=legacy``): two little-endian uint32, the high
  half first.

The header decides; ``format="evt21-legacy"`` forces the legacy layout.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events import prophesee_header
from runtime.events.dtype import alloc_events
from runtime.events.evt2 import _DEFINED_TYPES, TimeHighState
from runtime.events.reader import BaseDecoder, Header, format_error

NAME = "evt21"
GRANULE = 8
BYTES_PER_EVENT = 2.0

# EVT 2.1 does not define IMU words (0xD)
_DEFINED_21 = _DEFINED_TYPES & ~(1 << 0xD)


def read_header(fh: BinaryIO) -> Header:
    header = prophesee_header.parse(fh, NAME)
    if header.meta.get("format.endianness", "").lower() == "legacy":
        header.meta["layout"] = "legacy"
    return header


def max_events(nbytes: int) -> int:
    """Arena size for a whole-file read: four events per word (denser files fall back)."""
    return nbytes // 2


def expand_masks(masks: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and bit numbers of the set bits of ``masks`` (uint16 or uint32), row-major, bits ascending."""
    nbytes = masks.dtype.itemsize
    as_bytes = np.ascontiguousarray(masks, dtype=f"<u{nbytes}").view(np.uint8).reshape(-1, nbytes)
    unpacked = np.unpackbits(as_bytes, axis=1, bitorder="little")
    if bits < unpacked.shape[1]:
        unpacked = unpacked[:, :bits]
    nz = np.flatnonzero(unpacked)
    return nz // unpacked.shape[1], nz % unpacked.shape[1]


class Decoder(BaseDecoder):
    """Stateful EVT 2.1 decoder (time base carries across blocks, as in EVT 2.0)."""

    record = "64-bit EVT 2.1 word"

    def __init__(self, header: Header) -> None:
        super().__init__()
        self.time = TimeHighState(header)
        self.legacy = header.meta.get("layout") == "legacy"

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 8
        if n == 0:
            return alloc_events(0), 0
        halves = np.frombuffer(data, dtype="<u4", count=2 * n).reshape(n, 2)
        high, mask = (halves[:, 0], halves[:, 1]) if self.legacy else (halves[:, 1], halves[:, 0])
        return self._decode(np.ascontiguousarray(high), mask, offset), 8 * n

    def _decode(self, high: np.ndarray, mask: np.ndarray, offset: int) -> np.ndarray:
        other = np.flatnonzero(high >= 0x20000000)
        typ = high[other] >> 28
        odd = (np.right_shift(np.uint32(_DEFINED_21), typ) & 1) == 0
        bad = int(other[np.argmax(odd)]) if odd.any() else -1
        if bad < 0:
            is_cd, t_base, skip, bad = self.time.split(high)
        if bad >= 0:
            events = self._decode(high[:bad], mask[:bad], offset) if bad else alloc_events(0)
            raise format_error(f"EVT 2.1: undefined word type 0x{int(high[bad]) >> 28:X}", offset + 8 * bad, events)
        hw = high[is_cd][skip:]
        mw = mask[is_cd][skip:]
        row, col = expand_masks(mw, 32)
        out = self.alloc(len(row))
        hw_r = hw[row]
        out["x"] = ((hw_r >> 11) & 0x7FF) + col
        out["y"] = hw_r & 0x7FF
        out["p"] = hw_r >> 28
        out["t"] = t_base[row] + ((hw_r >> 22) & 63)
        return out
