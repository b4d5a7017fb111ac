"""Frames on the wire: COBS byte stuffing, CRC-32 and an incremental deframer. Pure functions over bytes.

A frame on the wire is ::

    COBS( header | payload | crc ) 0x00

    header (6 bytes, little-endian)
      off size field
      0   1    version (high 4 bits, currently 1) | flags (low 4 bits; bit 0 = MORE)
      1   1    message type (see runtime.protocol.MsgType)
      2   2    sequence number, u16, wraps at 2**16
      4   2    payload length in bytes, u16
    payload    `length` bytes
    crc        CRC-32 (IEEE 802.3, zlib.crc32) of header | payload, u32 little-endian

COBS (Cheshire & Baker 1999) removes every 0x00 from the frame so that 0x00 delimits frames: a receiver
that joins mid-stream or sees line noise loses at most the frame it is in. The overhead is 1 byte per
started 254 bytes, plus the delimiter.

The :class:`Deframer` takes bytes in arbitrary chunks (split anywhere, garbage in between) and returns the
frames that pass every check; it classifies and counts each reject and never raises on input bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass

from spikeforge.errors import ProtocolError

#: protocol version carried in the high nibble of every frame's first byte
VERSION = 1
#: frame flag: the last step of an EVENTS/SPIKES frame continues in the next frame
FLAG_MORE = 0x1

HEADER = struct.Struct("<BBHH")
HEADER_SIZE = HEADER.size  # 6
CRC_SIZE = 4
#: header + CRC bytes around every payload
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE
#: the largest payload the 16-bit length field can describe
MAX_PAYLOAD_LIMIT = 0xFFFF

#: reject classes counted by the Deframer
REJECT_REASONS = ("cobs", "crc", "length", "version")


class FrameRejected(ProtocolError):
    """A frame failed a check; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``seq`` is u16, ``flags`` 4 bits, ``payload`` at most 65535 bytes."""

    type: int
    seq: int
    payload: bytes = b""
    flags: int = 0
    version: int = VERSION


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32/ISO-HDLC (poly 0x04C11DB7 reflected, init/xorout 0xFFFFFFFF); ``b"123456789"`` → 0xCBF43926."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes | bytearray) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no 0x00 and is at most 1 + len//254 bytes longer.

    Standard COBS: a data run of exactly 254 bytes at the very end is not followed by a ``0x01`` code.
    """
    out = bytearray()
    blocks = bytes(data).split(b"\x00")
    last = len(blocks) - 1
    for index, block in enumerate(blocks):
        start = 0
        while len(block) - start >= 254:
            out.append(0xFF)
            out += block[start : start + 254]
            start += 254
        if index == last and start and start == len(block):
            break  # the run ended exactly on a 254-byte boundary: no implied zero to encode
        out.append(len(block) - start + 1)
        out += block[start:]
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Inverse of :func:`cobs_encode`; raises :class:`FrameRejected` (reason ``"cobs"``) on invalid input."""
    data = bytes(data)
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameRejected("cobs", f"COBS: zero byte at offset {i} inside a frame")
        end = i + code
        if end > n:
            raise FrameRejected(
                "cobs", f"COBS: code {code} at offset {i} runs {end - n} bytes past the frame end"
            )
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameRejected("cobs", f"COBS: zero byte inside the block starting at offset {i}")
        out += block
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(type: int, seq: int, payload: bytes | bytearray = b"", flags: int = 0) -> bytes:
    """The wire bytes of one frame, delimiter included. Raises ValueError for out-of-range fields."""
    if not 0 <= type <= 0xFF:
        raise ValueError(f"message type {type} does not fit one byte")
    if not 0 <= flags <= 0xF:
        raise ValueError(f"flags {flags:#x} do not fit 4 bits")
    if len(payload) > MAX_PAYLOAD_LIMIT:
        raise ValueError(
            f"payload of {len(payload)} bytes > {MAX_PAYLOAD_LIMIT}; split it over several frames"
        )
    body = HEADER.pack((VERSION << 4) | flags, type, seq & 0xFFFF, len(payload)) + bytes(payload)
    return cobs_encode(body + struct.pack("<I", crc32(body))) + b"\x00"


def frame_bytes(frame: Frame) -> bytes:
    """The wire bytes of ``frame`` (its ``version`` is ignored: we only speak :data:`VERSION`)."""
    return encode_frame(frame.type, frame.seq, frame.payload, frame.flags)


def decode_frame(data: bytes | bytearray | memoryview, max_payload: int = MAX_PAYLOAD_LIMIT) -> Frame:
    """Decode one frame from its COBS bytes (without the 0x00 delimiter).

    Checks, in this order, so that line damage is classified as ``crc`` rather than as whatever field it
    happened to hit: COBS structure, minimum size, CRC, length field against the actual size, version,
    ``max_payload``. Raises :class:`FrameRejected` (a ProtocolError) and nothing else.
    """
    body = cobs_decode(data)
    if len(body) < FRAME_OVERHEAD:
        raise FrameRejected("length", f"frame of {len(body)} bytes < the {FRAME_OVERHEAD} of header and CRC")
    (crc,) = struct.unpack_from("<I", body, len(body) - CRC_SIZE)
    if crc32(memoryview(body)[:-CRC_SIZE]) != crc:
        raise FrameRejected("crc", "CRC-32 mismatch: frame damaged on the line")
    vflags, type_, seq, length = HEADER.unpack_from(body)
    if length != len(body) - FRAME_OVERHEAD:
        raise FrameRejected(
            "length", f"length field says {length} payload bytes, frame carries {len(body) - FRAME_OVERHEAD}"
        )
    version = vflags >> 4
    if version != VERSION:
        raise FrameRejected("version", f"frame version {version}, this side speaks version {VERSION}")
    if length > max_payload:
        raise FrameRejected("length", f"payload of {length} bytes > negotiated maximum {max_payload}")
    return Frame(type_, seq, body[HEADER_SIZE:-CRC_SIZE], vflags & 0xF, version)


def max_encoded_size(max_payload: int) -> int:
    """Upper bound of a frame's COBS bytes (without delimiter) for payloads up to ``max_payload``."""
    raw = max_payload + FRAME_OVERHEAD
    return raw + raw // 254 + 1


def wire_size(payload_len: int) -> int:
    """Bytes on the wire for a payload of ``payload_len`` bytes in the worst case, delimiter included."""
    return max_encoded_size(payload_len) + 1


class Deframer:
    """Incremental frame splitter: ``feed(chunk)`` returns the valid frames completed by ``chunk``.

    Never raises on input bytes. Every damaged frame is dropped and counted in :attr:`rejects` under one of
    :data:`REJECT_REASONS`; a run of more than :func:`max_encoded_size` bytes without a delimiter counts
    once as ``length`` and is skipped up to the next 0x00. Empty segments (repeated 0x00) are idle fill and
    not counted. Memory is bounded by ``max_encoded_size(max_payload)``.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LIMIT) -> None:
        self.max_payload = max_payload
        self._limit = max_encoded_size(max_payload)
        self._buf = bytearray()
        self._skipping = False  # inside an overlong run: drop bytes up to the next delimiter
        self.rejects: Counter[str] = Counter()
        self.frames = 0
        self.bytes_in = 0
        self.last_reject: str | None = None

    @property
    def rejected(self) -> int:
        """Total number of rejected frames."""
        return sum(self.rejects.values())

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        chunk = bytes(chunk)
        self.bytes_in += len(chunk)
        if 0 not in chunk:
            if not self._skipping:
                self._buf += chunk
                self._check_overlong()
            return []
        segments = chunk.split(b"\x00")
        tail = segments.pop()
        segments[0] = bytes(self._buf) + segments[0]
        frames: list[Frame] = []
        for i, segment in enumerate(segments):
            if i == 0 and self._skipping:
                self._skipping = False
                continue
            if not segment:
                continue
            if len(segment) > self._limit:
                self._reject("length", f"{len(segment)} bytes without a delimiter > {self._limit}")
                continue
            try:
                frames.append(decode_frame(segment, self.max_payload))
            except FrameRejected as exc:
                self._reject(exc.reason, str(exc))
        self._buf = bytearray(tail)
        self._check_overlong()
        self.frames += len(frames)
        return frames

    def _check_overlong(self) -> None:
        if len(self._buf) > self._limit:
            self._reject("length", f"more than {self._limit} bytes without a delimiter")
            self._buf.clear()
            self._skipping = True

    def _reject(self, reason: str, message: str) -> None:
        self.rejects[reason] += 1
        self.last_reject = message
