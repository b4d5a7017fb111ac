"""iniVation AEDAT 2.0 (jAER): ``#!AER-DAT2.0\\r\\n``, ``#`` header lines, then big-endian 8-byte records.

Record: ``u32 address``, ``u32 timestamp`` (µs, wraps at 2^32: a decrease of more than 2^31 µs
counts as one wrap). Two address layouts, chosen from the header (a header line naming ``DVS128``
selects the second; the default is DAVIS):

* DAVIS (jAER): bit 31 set = APS/IMU sample (skipped); y = bits 30..22, x = bits 21..12,
  polarity = bit 11.
* DVS128: bit 15 set = external event (skipped); y = bits 14..8, x = bits 7..1, polarity = bit 0.

Coordinates are reported as stored: jAER's display flips (e.g. ``127 - x``) are not applied.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from runtime.events.dtype import alloc_events
from runtime.events.reader import BaseDecoder, Header, format_error

NAME = "aedat2"
GRANULE = 8
BYTES_PER_EVENT = 8
MAGIC = b"#!AER-DAT2.0"


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    if fh.read(len(MAGIC)) != MAGIC:
        raise format_error("AEDAT 2.0: wrong magic (expected '#!AER-DAT2.0')", 0)
    fh.seek(0)
    offset = 0
    lines: list[str] = []
    while True:
        first = fh.read(1)
        if first != b"#":
            break
        line = first + fh.readline(1 << 16)
        if not line.endswith(b"\n"):
            raise format_error("AEDAT 2.0: header line without end of line", offset)
        offset += len(line)
        lines.append(line[1:].decode("latin-1").strip())
    layout = "dvs128" if any("DVS128" in line.upper() for line in lines) else "davis"
    width, height = (128, 128) if layout == "dvs128" else (None, None)
    return Header(NAME, offset, width, height, {"layout": layout, "header": "\n".join(lines)})


def max_events(nbytes: int) -> int:
    return nbytes // 8


class Decoder(BaseDecoder):
    """Stateful AEDAT 2.0 decoder: the previous timestamp and wrap count carry across blocks."""

    record = "8-byte AEDAT 2.0 record"

    def __init__(self, header: Header) -> None:
        super().__init__()
        self.dvs128 = header.meta.get("layout") == "dvs128"
        self.prev = -1
        self.loops = 0

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        n = len(data) // 8
        if n == 0:
            return alloc_events(0), 0
        words = np.frombuffer(data, dtype=">u4", count=2 * n).reshape(n, 2)
        t32 = words[:, 1].astype(np.int64)
        back = np.empty(n, dtype=bool)
        back[0] = self.prev >= 0 and t32[0] < self.prev - (1 << 31)
        np.less(t32[1:], t32[:-1] - (1 << 31), out=back[1:])
        loops = np.cumsum(back) + self.loops
        self.loops = int(loops[-1])
        self.prev = int(t32[-1])
        addr = words[:, 0].astype(np.uint32)
        keep = (addr & (0x8000 if self.dvs128 else 0x80000000)) == 0
        addr = addr[keep]
        out = self.alloc(len(addr))
        if self.dvs128:
            out["x"] = (addr >> 1) & 0x7F
            out["y"] = (addr >> 8) & 0x7F
            out["p"] = addr & 1
        else:
            out["x"] = (addr >> 12) & 0x3FF
            out["y"] = (addr >> 22) & 0x1FF
            out["p"] = (addr >> 11) & 1
        out["t"] = (t32 + (loops << 32))[keep]
        return out, 8 * n
