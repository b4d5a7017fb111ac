"""Prophesee DAT (``.dat``, CD events): ``%`` header, 2 bytes ``[event type][event size]``, 8-byte records.

Record (little-endian): ``u32 t`` (µs), then ``u32`` with x in bits 13..0, y in bits 27..14 and
polarity in bits 31..28 (any non-zero value is ON). ``t`` wraps after 2^32 µs (71.6 min): a decrease
of more than 2^31 µs between consecutive records counts as one wrap (smaller decreases are kept as
they are, since recordings may be slightly out of order). Only event size 8 is accepted.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events import cd_jit, prophesee_header
from runtime.events.dtype import alloc_events
from runtime.events.reader import BaseDecoder, Header, format_error

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

    def __init__(self, header: Header, jit: bool | None = None) -> None:
        super().__init__()
        self.t_offset = prophesee_header.t_offset(header)
        self.prev = -1
        self.loops = 0
        #: use the compiled loop of ``cd_jit`` (default: when numba is installed and not disabled;
        #: ``jit=True`` without numba raises ``MissingExtra``)
        self.jit = False if jit is False else cd_jit.load(required=jit is True)

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 8
        if n == 0:
            return alloc_events(0), 0
        # each record as one little-endian uint64: t in bits 31..0, x 45..32, y 59..46, p 63..60;
        # contiguous 64-bit passes, stored through the uint64 view of the 16-byte output records
        rec = np.frombuffer(data, dtype="<u8", count=n)
        out = self.alloc(n)
        if self.jit:
            assert cd_jit.dat_decode is not None
            state = np.array([self.prev, self.loops, self.t_offset], dtype=np.int64)
            cd_jit.dat_decode(rec, state, out.view(np.int64).reshape(n, 2))
            self.prev, self.loops = int(state[0]), int(state[1])
            return out, 8 * n
        o64 = out.view(np.uint64).reshape(n, 2)
        a = self.scratch("a", n, np.uint64)
        b = self.scratch("b", n, np.uint64)
        np.right_shift(rec, 32, out=a)
        np.bitwise_and(a, 0x3FFF, out=b)
        np.right_shift(rec, 30, out=a)
        np.bitwise_and(a, 0x3FFF0000, out=a)
        np.bitwise_or(a, b, out=o64[:, 1])  # x | y << 16; zeroes p and the padding
        np.greater_equal(rec, 1 << 60, out=out["p"].view(np.bool_))
        t = o64[:, 0]
        np.bitwise_and(rec, 0xFFFFFFFF, out=t)
        t32 = np.frombuffer(data, dtype="<u4", count=2 * n)[::2]
        first = int(t32[0])
        back = bool(first < self.prev - (1 << 31)) if self.prev >= 0 else False
        # a wrap is a decrease of more than 2^31: impossible when the block spans at most 2^31, so
        # the wrap bookkeeping only runs on the rare block that does (or that starts with a wrap)
        t64 = t.view(np.int64)
        base = self.loops * (1 << 32) + self.t_offset
        if back or int(t32.max()) - int(t32.min()) > (1 << 31):
            wraps = self.scratch("wraps", n, np.bool_)
            wraps[0] = back
            np.less(t64[1:], t64[:-1] - (1 << 31), out=wraps[1:])
            loops = np.cumsum(wraps, dtype=np.int64)
            self.loops += int(loops[-1])
            loops <<= 32
            t64 += loops
        if base:
            t64 += base
        self.prev = int(t32[-1])
        return out, 8 * n
