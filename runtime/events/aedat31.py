"""iniVation AEDAT 3.1: ``#!AER-DAT3.1\\r\\n``, ``#`` header lines up to ``#!END-HEADER\\r\\n``, then packets.

Packet header, 28 bytes little-endian: ``i16 eventType, i16 eventSource, i32 eventSize,
i32 eventTSOffset, i32 eventTSOverflow, i32 eventCapacity, i32 eventNumber, i32 eventValid``,
followed by ``eventCapacity * eventSize`` bytes of events (the first ``eventNumber`` are used).

Polarity events (type 1, 8 bytes): ``u32 data`` (bit 0 = valid, bit 1 = polarity, y = bits 16..2,
x = bits 31..17), then ``i32 timestamp``; time (µs) = ``eventTSOverflow << 31 | timestamp``.
Invalid events (bit 0 clear) and packets of other types are skipped.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

from runtime.events.dtype import alloc_events, concat_events, copy_events
from runtime.events.reader import BaseDecoder, Header, format_error

NAME = "aedat31"
GRANULE = 1
BYTES_PER_EVENT = 8
MAGIC = b"#!AER-DAT3.1"
END = b"#!END-HEADER"
_PACKET = struct.Struct("<hhiiiiii")
#: a packet larger than this is taken as a corrupt header
MAX_PACKET_BYTES = 1 << 30


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    if fh.read(len(MAGIC)) != MAGIC:
        raise format_error("AEDAT 3.1: wrong magic (expected '#!AER-DAT3.1')", 0)
    fh.seek(0)
    offset = 0
    lines: list[str] = []
    while True:
        line = fh.readline(1 << 16)
        if not line.startswith(b"#") or not line.endswith(b"\n"):
            raise format_error("AEDAT 3.1: header does not end with '#!END-HEADER'", offset)
        offset += len(line)
        if line.startswith(END):
            break
        lines.append(line[1:].decode("latin-1").strip())
    return Header(NAME, offset, None, None, {"header": "\n".join(lines)})


class Decoder(BaseDecoder):
    """AEDAT 3.1 packet decoder; a packet split between blocks waits for the next block."""

    record = "AEDAT 3.1 packet"

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        parts: list[np.ndarray] = []
        pos = 0
        self.need = 0
        while len(data) - pos >= _PACKET.size:
            etype, _src, esize, _tsoff, overflow, capacity, number, valid = _PACKET.unpack_from(data, pos)
            if esize <= 0 or capacity < 0 or not 0 <= number <= capacity or not 0 <= valid <= number:
                raise format_error(
                    f"AEDAT 3.1: corrupt packet header (type {etype}, size {esize}, capacity {capacity}, "
                    f"number {number}, valid {valid})",
                    offset + pos,
                    concat_events(parts),
                )
            body = capacity * esize
            if body > MAX_PACKET_BYTES:
                raise format_error(
                    f"AEDAT 3.1: packet of {body} bytes is implausible", offset + pos, concat_events(parts)
                )
            if len(data) - pos < _PACKET.size + body:
                self.need = _PACKET.size + body
                break
            if etype == 1:
                if esize != 8:
                    raise format_error(
                        f"AEDAT 3.1: polarity packet with event size {esize} (expected 8)",
                        offset + pos + 4,
                        concat_events(parts),
                    )
                parts.append(_polarity(data, pos + _PACKET.size, number, overflow))
            pos += _PACKET.size + body
        events = concat_events(parts)
        out = self.alloc(len(events))
        copy_events(out, events)
        return out, pos

    def finish(self, rest: bytes, offset: int) -> None:
        if rest:
            raise format_error(
                f"file truncated: the last packet needs {self.need or _PACKET.size} bytes but only {len(rest)} remain",
                offset,
            )


def _polarity(data: bytes, start: int, number: int, overflow: int) -> np.ndarray:
    words = np.frombuffer(data, dtype="<u4", count=2 * number, offset=start).reshape(number, 2)
    d = words[:, 0][(words[:, 0] & 1) == 1]
    ts = words[:, 1][(words[:, 0] & 1) == 1].view(np.int32)
    out = alloc_events(len(d))
    out["x"] = d >> 17
    out["y"] = (d >> 2) & 0x7FFF
    out["p"] = (d >> 1) & 1
    out["t"] = ts.astype(np.int64) + (overflow << 31)
    return out
