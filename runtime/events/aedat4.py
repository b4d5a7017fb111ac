"""iniVation AEDAT 4.0: magic, an IOHeader flatbuffer, then packets of flatbuffers.

File layout (all little-endian):

* ``b"#!AER-DAT4.0\\r\\n"`` (14 bytes), ``u32 n``, then an ``n``-byte IOHeader flatbuffer (file id
  ``IOHE``): field 0 ``compression`` (i32: 0 none, 1 LZ4, 2 LZ4 high, 3 Zstd, 4 Zstd high),
  field 1 ``dataTablePosition`` (i64, -1 if absent: the byte offset where packets end), field 2
  ``infoNode`` (string: dv XML naming each stream's ``typeIdentifier`` and ``sizeX``/``sizeY``).
* packets: ``i32 streamID, i32 size``, then ``size`` bytes, compressed as the header says. Once
  decompressed, a packet is a size-prefixed flatbuffer (``u32 size, u32 root, 4-byte file id``);
  event packets have id ``EVTS`` and one field, a vector of 16-byte ``Event`` structs
  ``i64 t (µs), i16 x, i16 y, bool on, 3 padding bytes`` -- the layout of ``EVENT_DTYPE``, so an
  uncompressed packet decodes with one copy.

Packets of other streams (frames, IMU, triggers) are skipped; the first ``EVTS`` stream is read.
LZ4 and Zstd need the optional packages ``lz4`` / ``zstandard`` (``pip install "spikeforge[events]"``).
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from runtime.events.dtype import EVENT_DTYPE, alloc_events, concat_events, copy_events
from runtime.events.reader import BaseDecoder, Header, format_error
from spikeforge.errors import MissingCodec

NAME = "aedat4"
GRANULE = 1
BYTES_PER_EVENT = 16
MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSIONS = {0: "none", 1: "lz4", 2: "lz4-high", 3: "zstd", 4: "zstd-high"}
MAX_PACKET_BYTES = 1 << 30
EVENTS_PER_PACKET = 1 << 16


def _missing_codec(feature: str, package: str) -> MissingCodec:
    """The error for a compressed file whose codec package (the ``events`` extra) is not installed."""
    err = MissingCodec.needs(feature, package, "events")
    err.events = alloc_events(0)  # type: ignore[attr-defined]  # like every EventFormatError: nothing decoded
    return err


# --- flatbuffer reading ------------------------------------------------------------------------
class _Table:
    """A flatbuffer table at ``pos`` of ``buf``; bounds are checked, defects raise ValueError."""

    def __init__(self, buf: bytes | memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos
        vt = pos - self._i32(pos)
        self.vt = vt
        self.vt_size = self._u16(vt)
        if self.vt_size < 4 or vt + self.vt_size > len(buf):
            raise ValueError("vtable out of bounds")

    def _check(self, pos: int, size: int) -> None:
        if pos < 0 or pos + size > len(self.buf):
            raise ValueError(f"offset {pos} + {size} beyond the {len(self.buf)}-byte buffer")

    def _i32(self, pos: int) -> int:
        self._check(pos, 4)
        return int(struct.unpack_from("<i", self.buf, pos)[0])

    def _u16(self, pos: int) -> int:
        self._check(pos, 2)
        return int(struct.unpack_from("<H", self.buf, pos)[0])

    def field(self, index: int) -> int | None:
        """Absolute position of field ``index``, or None if absent (default value)."""
        slot = 4 + 2 * index
        if slot + 2 > self.vt_size:
            return None
        off = self._u16(self.vt + slot)
        return self.pos + off if off else None

    def scalar(self, index: int, fmt: str, default: int) -> int:
        at = self.field(index)
        if at is None:
            return default
        self._check(at, struct.calcsize(fmt))
        return int(struct.unpack_from(fmt, self.buf, at)[0])

    def indirect(self, index: int) -> int | None:
        at = self.field(index)
        if at is None:
            return None
        self._check(at, 4)
        return at + int(struct.unpack_from("<I", self.buf, at)[0])

    def string(self, index: int) -> str | None:
        at = self.indirect(index)
        if at is None:
            return None
        n = self._i32(at)
        self._check(at + 4, n)
        return bytes(self.buf[at + 4 : at + 4 + n]).decode("utf-8", "replace")


def _root(buf: bytes | memoryview, base: int = 0) -> _Table:
    if len(buf) < base + 8:
        raise ValueError("buffer too short for a flatbuffer")
    return _Table(buf, base + int(struct.unpack_from("<I", buf, base)[0]))


# --- header ------------------------------------------------------------------------------------
def _streams(xml: str) -> dict[int, dict[str, Any]]:
    """Stream id -> {type, width, height} from the dv XML description."""
    streams: dict[int, dict[str, Any]] = {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"description is not XML: {exc}") from None
    for out in root.iter("node"):
        if out.get("name") != "outInfo":
            continue
        for node in out.findall("node"):
            attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
            info = node.find("node[@name='info']")
            size = {a.get("key"): (a.text or "") for a in info.findall("attr")} if info is not None else {}
            try:
                sid = int(node.get("name", ""))
                streams[sid] = {
                    "type": attrs.get("typeIdentifier", ""),
                    "width": int(size["sizeX"]) if "sizeX" in size else None,
                    "height": int(size["sizeY"]) if "sizeY" in size else None,
                }
            except ValueError:
                raise ValueError(f"stream node {node.get('name')!r} has a non-integer id or size") from None
    return streams


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    if fh.read(len(MAGIC)) != MAGIC:
        raise format_error("AEDAT 4.0: wrong magic (expected '#!AER-DAT4.0\\r\\n')", 0)
    raw = fh.read(4)
    if len(raw) < 4:
        raise format_error("AEDAT 4.0: file ends before the IOHeader length", len(MAGIC))
    (n,) = struct.unpack("<I", raw)
    body = fh.read(n)
    if len(body) < n or n > MAX_PACKET_BYTES:
        raise format_error(f"AEDAT 4.0: IOHeader of {n} bytes but only {len(body)} in the file", len(MAGIC) + 4)
    try:
        table = _root(body)
        compression = table.scalar(0, "<i", 0)
        table_pos = table.scalar(1, "<q", -1)
        description = table.string(2) or ""
        streams = _streams(description) if description else {}
    except (ValueError, struct.error) as exc:
        raise format_error(f"AEDAT 4.0: corrupt IOHeader: {exc}", len(MAGIC) + 4) from None
    if compression not in COMPRESSIONS:
        raise format_error(f"AEDAT 4.0: unknown compression code {compression}", len(MAGIC) + 4)
    events = [sid for sid, s in streams.items() if s["type"] == "EVTS"]
    sid = min(events) if events else 0
    width = streams.get(sid, {}).get("width")
    height = streams.get(sid, {}).get("height")
    meta = {
        "compression": COMPRESSIONS[compression],
        "data_table_position": str(table_pos),
        "event_stream": str(sid),
        "streams": ",".join(f"{k}:{v['type']}" for k, v in sorted(streams.items())),
    }
    return Header(NAME, len(MAGIC) + 4 + n, width, height, meta)


def max_events(nbytes: int) -> int:
    """Arena size for a whole-file read: 16 bytes per event uncompressed; compressed files
    usually shrink 2-5x, and a denser file falls back to concatenation."""
    return nbytes // 4


def decompressor(name: str) -> Callable[[bytes], bytes]:
    """A function decompressing one packet of ``name`` compression; a clear error if unavailable."""
    if name == "none":
        return bytes
    if name.startswith("lz4"):
        try:
            import lz4.frame
        except ImportError:
            raise _missing_codec("reading an LZ4-compressed AEDAT 4.0 file", "lz4") from None
        return lz4.frame.decompress
    try:
        import zstandard
    except ImportError:
        raise _missing_codec("reading a Zstd-compressed AEDAT 4.0 file", "zstandard") from None

    def unzstd(data: bytes) -> bytes:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)

    return unzstd


class Decoder(BaseDecoder):
    """AEDAT 4.0 packet decoder; a packet split between blocks waits for the next block."""

    record = "AEDAT 4.0 packet"

    def __init__(self, header: Header) -> None:
        super().__init__()
        self.compression = header.meta["compression"]
        self.inflate = decompressor(self.compression)
        self.stream = int(header.meta["event_stream"])
        self.end = int(header.meta["data_table_position"])
        self.done = False

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]:
        parts: list[np.ndarray] = []
        pos = 0
        self.need = 0
        view = memoryview(data)

        def so_far() -> np.ndarray:
            return concat_events([np.array(p) for p in parts])

        while not self.done and len(data) - pos >= 8:
            if self.end >= 0 and offset + pos >= self.end:
                self.done = True
                break
            sid, size = struct.unpack_from("<ii", data, pos)
            if size < 0 or size > MAX_PACKET_BYTES:
                raise format_error(
                    f"AEDAT 4.0: corrupt packet header (stream {sid}, size {size})", offset + pos, so_far()
                )
            if len(data) - pos < 8 + size:
                self.need = 8 + size
                break
            if sid == self.stream:
                try:
                    parts.append(self._events(view[pos + 8 : pos + 8 + size]))
                except ValueError as exc:
                    raise format_error(f"AEDAT 4.0: corrupt event packet: {exc}", offset + pos, so_far()) from None
            pos += 8 + size
        if self.done:
            pos = len(data)  # the file data table and anything after it are not packets
        # parts may be views of ``data``: copy each once, straight into the output
        out = self.alloc(sum(len(p) for p in parts))
        at = 0
        for part in parts:
            copy_events(out[at : at + len(part)], part)
            at += len(part)
        return out, pos

    def _events(self, payload: memoryview) -> np.ndarray:
        if self.compression != "none":
            try:
                buf: bytes | memoryview = self.inflate(bytes(payload))
            except Exception as exc:  # the codecs raise their own error types
                raise ValueError(f"{self.compression} decompression failed ({exc})") from None
        else:
            buf = payload
        if len(buf) < 12 or bytes(buf[8:12]) != b"EVTS":
            raise ValueError(f"packet of the event stream lacks the 'EVTS' identifier (got {bytes(buf[8:12])!r})")
        (size,) = struct.unpack_from("<I", buf, 0)
        if size + 4 > len(buf):
            raise ValueError(f"size prefix {size} exceeds the {len(buf) - 4} bytes of the packet")
        table = _root(buf, 4)
        table.pos += 0
        vec = table.indirect(0)
        if vec is None:
            return np.zeros(0, EVENT_DTYPE)
        table._check(vec, 4)
        (n,) = struct.unpack_from("<I", buf, vec)
        table._check(vec + 4, 16 * n)
        events = np.frombuffer(buf, dtype=EVENT_DTYPE, count=n, offset=vec + 4)
        if n and int(events["p"].view(np.uint8).max()) > 1:
            raise ValueError("an event's 'on' byte is neither 0 nor 1")
        return events

    def finish(self, rest: bytes, offset: int) -> None:
        if rest and not self.done:
            raise format_error(
                f"file truncated: the last packet needs {self.need or 8} bytes but only {len(rest)} remain",
                offset,
            )


# --- writing -----------------------------------------------------------------------------------
def _ioheader(compression: int, description: str) -> bytes:
    """IOHeader flatbuffer: vtable at 8, table at 24 (i64 field aligned), string after the table."""
    desc = description.encode("utf-8")
    buf = bytearray(48 + len(desc) + 1)
    struct.pack_into("<I4s", buf, 0, 24, b"IOHE")
    struct.pack_into("<HHHHH", buf, 8, 10, 20, 16, 8, 4)  # vtable: size, table size, field offsets
    struct.pack_into("<i", buf, 24, 24 - 8)
    struct.pack_into("<I", buf, 28, 44 - 28)  # description string at 44
    struct.pack_into("<q", buf, 32, -1)
    struct.pack_into("<i", buf, 40, compression)
    struct.pack_into("<I", buf, 44, len(desc))
    buf[48 : 48 + len(desc)] = desc
    buf.extend(b"\0" * (-len(buf) % 8))
    return bytes(buf)


def _description(width: int | None, height: int | None, compression: str) -> str:
    size = (
        f'<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr></node>'
        if width is not None and height is not None
        else ""
    )
    return (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
        f'<attr key="compression" type="string">{compression.upper()}</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        f"{size}</node></node></dv>"
    )


def event_packet(events: np.ndarray) -> bytes:
    """A size-prefixed ``EVTS`` flatbuffer: prefix, root, id, vtable at 12, table at 20, vector at 28."""
    n = len(events)
    head = bytearray(32)
    struct.pack_into("<I", head, 0, 28 + 16 * n)
    struct.pack_into("<I4s", head, 4, 16, b"EVTS")
    struct.pack_into("<HHH", head, 12, 6, 8, 4)
    struct.pack_into("<iI", head, 20, 8, 4)
    struct.pack_into("<I", head, 28, n)
    body = np.zeros(n, dtype=EVENT_DTYPE)
    body["t"], body["x"], body["y"], body["p"] = events["t"], events["x"], events["y"], events["p"] != 0
    return bytes(head) + body.tobytes()


class Writer:
    """Stream events into an AEDAT 4.0 file, one event stream (id 0), packets of 65536 events."""

    def __init__(
        self, fh: BinaryIO, width: int | None = None, height: int | None = None, compression: str = "none"
    ) -> None:
        codes = {v: k for k, v in COMPRESSIONS.items()}
        if compression not in ("none", "lz4", "zstd"):
            raise ValueError(f"AEDAT 4.0 writer: compression {compression!r}; expected none, lz4 or zstd")
        self.fh = fh
        self.compress: Callable[[bytes], bytes] = bytes
        if compression == "lz4":
            try:
                import lz4.frame
            except ImportError:
                raise _missing_codec("writing LZ4-compressed AEDAT 4.0", "lz4") from None
            self.compress = lz4.frame.compress
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise _missing_codec("writing Zstd-compressed AEDAT 4.0", "zstandard") from None
            self.compress = zstandard.ZstdCompressor().compress
        header = _ioheader(codes[compression], _description(width, height, compression))
        fh.write(MAGIC + struct.pack("<I", len(header)) + header)

    def write(self, events: np.ndarray) -> None:
        if len(events):
            top = max(int(events["x"].max()), int(events["y"].max()))
            if top > 0x7FFF:
                raise format_error(f"AEDAT 4.0 stores x and y as int16; the events reach {top}", None)
        for start in range(0, len(events), EVENTS_PER_PACKET):
            payload = self.compress(event_packet(events[start : start + EVENTS_PER_PACKET]))
            self.fh.write(struct.pack("<ii", 0, len(payload)) + payload)

    def close(self) -> None:
        pass


class _OwnedWriter:
    def __init__(self, path: str | os.PathLike[str], width: int | None, height: int | None, compression: str) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        try:
            self.writer = Writer(self.fh, width, height, compression)
        except BaseException:
            self.fh.close()
            raise

    def write(self, events: np.ndarray) -> None:
        self.writer.write(events)

    def close(self) -> None:
        self.fh.close()


def open_writer(path: str | os.PathLike[str], fmt: str, width: int | None, height: int | None) -> _OwnedWriter:
    """Writer for ``aedat4`` (uncompressed), ``aedat4-lz4`` or ``aedat4-zstd``."""
    compression = fmt.split("-", 1)[1] if "-" in fmt else "none"
    return _OwnedWriter(path, width, height, compression)
