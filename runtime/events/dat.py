"""Prophesee DAT (``.dat``, CD events): ``%`` header, 2 bytes ``[event type][event size]``, 8-byte records.

Record (little-endian): ``u32 t`` (µs), then ``u32`` with x in bits 13..0, y in bits 27..14 and
polarity in bits 31..28 (any non-zero value is ON). ``t`` wraps after 2^32 µs (71.6 min): a decrease
of more than 2^31 µs between consecutive records counts as one wrap (smaller decreases are kept as
they are, since recordings may be slightly out of order). Only event size 8 is accepted.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events import prophesee_header
from runtime.events.dtype import empty_events
from runtime.events.stream import BaseDecoder, Header, format_error

NAME = "dat"
GRANULE = 8
BYTES_PER_EVENT = 8


def read_header(fh: BinaryIO) -> Header:
    header = prophesee_header.parse(fh, NAME)
    fh.seek(header.data_offset)
    kind = fh.read(2)
    if len(kind) < 2:
        raise format_error("DAT: file ends before the 2-byte event type/size after the header", header.data_offset)
    if kind[1] != 8:
        raise format_error(
            f"DAT: event size {kind[1]} (type {kind[0]}) is not supported; only 8-byte CD records are",
            header.data_offset + 1,
        )
    header.meta["event_type"] = str(kind[0])
    header.data_offset += 2
    return header


def max_events(nbytes: int) -> int:
    return nbytes // 8


class Decoder(BaseDecoder):
    """Stateful DAT decoder: the previous timestamp and wrap count carry across blocks."""

    record = "8-byte DAT record"

    def __init__(self, header: Header) -> None:
        super().__init__()
        self.t_offset = prophesee_header.t_offset(header)
        self.prev = -1
        self.loops = 0

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 8
        if n == 0:
            return empty_events(0), 0
        words = np.frombuffer(data, dtype="<u4", count=2 * n).reshape(n, 2)
        t32 = words[:, 0]
        d = words[:, 1]
        out = self.alloc(n)
        rec32 = out.view(np.uint32).reshape(n, 4)
        lo = d & 0x3FFF
        hi = np.left_shift(d, 2)
        hi &= 0x3FFF0000
        np.bitwise_or(lo, hi, out=rec32[:, 2])  # x | y << 16; also zeroes p and the padding
        np.greater_equal(d, 0x10000000, out=out["p"], casting="unsafe")
        first = int(t32[0])
        back = bool(first < self.prev - (1 << 31)) if self.prev >= 0 else False
        # one cheap test on the uint32 times; the wrap bookkeeping only runs if time ever goes back
        if back or bool(np.any(t32[1:] < t32[:-1])):
            t64 = t32.astype(np.int64)
            wraps = np.empty(n, dtype=bool)
            wraps[0] = back
            np.less(t64[1:], t64[:-1] - (1 << 31), out=wraps[1:])
            loops = np.cumsum(wraps) + self.loops
            np.add(t64, (loops << 32) + self.t_offset, out=out["t"])
            self.loops = int(loops[-1])
        else:
            np.add(t32, self.loops * (1 << 32) + self.t_offset, out=out["t"], dtype=np.int64)
        self.prev = int(t32[-1])
        return out, 8 * n
