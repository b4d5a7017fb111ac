"""Messages of the spikeforge board protocol and their payload encodings. Pure functions over bytes.

Every message is one frame (:mod:`runtime.framing`); the frame's type byte selects the payload layout
below, all little-endian. ``docs/protocol.md`` is the full specification (sequencing, acknowledgement,
retries, credits, worked examples); this module is its executable form.

Classes of messages and what their frame ``seq`` means:

* **requests** (host → board; HELLO, PROGRAM_*, START, STOP, RESET, FLUSH, PING, GET_STATS): reliable.
  ``seq`` is the host's control sequence; the board answers each with exactly one **reply** (ACK, NACK,
  CAPABILITIES, PONG, STATS) carrying the same ``seq``. The host retransmits the identical frame on
  timeout; the board executes a given ``seq`` once and repeats its cached reply for duplicates.
* **streams** (EVENTS host → board, SPIKES board → host): never acknowledged nor retransmitted; ``seq`` is
  the stream's own counter, and every gap is counted (:class:`GapCounter`).
* **notices** (CREDIT, CREDIT_REQUEST, ERROR): unreliable and idempotent; ``seq`` is informative only.

Event and spike records are packed 4 bytes each: u32 ``id | count << 16 | dstep << 24`` (id = axon or
neuron index within the port, count 1..255, dstep = step - base_step, 0..255).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Generic, TypeVar

import numpy as np

from runtime.framing import FLAG_MORE, VERSION
from spikeforge.errors import ProtocolError

#: payload bytes a board accepts unless it says otherwise in CAPABILITIES
DEFAULT_MAX_PAYLOAD = 1024
RECORD_SIZE = 4
#: bytes before the records of an EVENTS or SPIKES payload
RUN_HEADER = struct.Struct("<IHBB")
MAX_RECORD_DSTEP = 0xFF
MAX_RECORD_COUNT = 0xFF
MAX_RECORD_ID = 0xFFFF
SEQ_MOD = 1 << 16
SEQ_HALF = 1 << 15


class MsgType(IntEnum):
    """Frame type byte. Requests 0x01–0x2F and 0x60/0x70, replies echo the request's seq."""

    HELLO = 0x01
    CAPABILITIES = 0x02
    PROGRAM_BEGIN = 0x10
    PROGRAM_CHUNK = 0x11
    PROGRAM_END = 0x12
    START = 0x20
    STOP = 0x21
    RESET = 0x22
    FLUSH = 0x23
    EVENTS = 0x30
    SPIKES = 0x31
    CREDIT = 0x40
    CREDIT_REQUEST = 0x41
    ACK = 0x50
    NACK = 0x51
    PING = 0x60
    PONG = 0x61
    GET_STATS = 0x70
    STATS = 0x71
    ERROR = 0x7F


REQUESTS = frozenset(
    {
        MsgType.HELLO,
        MsgType.PROGRAM_BEGIN,
        MsgType.PROGRAM_CHUNK,
        MsgType.PROGRAM_END,
        MsgType.START,
        MsgType.STOP,
        MsgType.RESET,
        MsgType.FLUSH,
        MsgType.PING,
        MsgType.GET_STATS,
    }
)
REPLIES = frozenset({MsgType.CAPABILITIES, MsgType.ACK, MsgType.NACK, MsgType.PONG, MsgType.STATS})


class Reason(IntEnum):
    """NACK reason (u8) and ERROR code (u16): one code space."""

    UNKNOWN_TYPE = 1  # the type byte is not a request this board serves
    BAD_PAYLOAD = 2  # the payload does not decode
    BAD_STATE = 3  # not allowed now (e.g. START before a program, upload while running)
    VERSION = 4  # protocol version not supported
    TOO_LARGE = 5  # program or input larger than the board's limits
    BAD_OFFSET = 6  # PROGRAM_CHUNK outside [0, received] or past the announced size
    DIGEST_MISMATCH = 7  # the uploaded bytes do not hash to PROGRAM_BEGIN's sha256
    BAD_PROGRAM = 8  # the bytes are not a valid Program
    WRONG_TARGET = 9  # the Program was compiled for another chip
    NO_PROGRAM = 10  # START before any program was loaded
    EMULATOR_FAILED = 11  # ERROR only: running the program failed; the board stopped
    INTERNAL = 12  # anything else; the text says what


# --- sequence arithmetic ----------------------------------------------------------------------
def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MOD


def seq_distance(a: int, b: int) -> int:
    """How far ``b`` is ahead of ``a`` modulo 2**16, in [0, 65535]."""
    return (b - a) % SEQ_MOD


def seq_before(a: int, b: int) -> bool:
    """``a`` precedes ``b`` in serial-number arithmetic (RFC 1982): 0 < b - a < 2**15 modulo 2**16."""
    return 0 < seq_distance(a, b) < SEQ_HALF


class GapCounter:
    """Counts accepted, lost and stale frames of one unreliable stream from their 16-bit sequence numbers.

    ``observe(seq)`` returns True when the frame is new (in order or after a gap; the gap size is added to
    ``lost``) and False for a duplicate or a frame older than one already seen (``stale``, to be dropped).
    ``close(next_seq)`` accounts for frames lost at the end of a stream, given the sender's next seq.
    Exact as long as fewer than 2**15 consecutive frames are lost.
    """

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected
        self.accepted = 0
        self.lost = 0
        self.stale = 0

    def observe(self, seq: int) -> bool:
        gap = seq_distance(self.expected, seq)
        if gap >= SEQ_HALF:
            self.stale += 1
            return False
        self.lost += gap
        self.accepted += 1
        self.expected = seq_add(seq, 1)
        return True

    def close(self, next_seq: int) -> int:
        """Count the frames before ``next_seq`` that never arrived; returns how many were added."""
        gap = seq_distance(self.expected, next_seq)
        if gap >= SEQ_HALF:
            return 0
        self.lost += gap
        self.expected = next_seq
        return gap


T = TypeVar("T")


class DropQueue(Generic[T]):
    """A bounded FIFO with a declared policy when full: ``"drop_oldest"`` evicts and counts the oldest item
    (live streams: fresh data beats stale data), ``"reject"`` refuses and counts the new item (the caller
    blocks or gives up)."""

    POLICIES = ("drop_oldest", "reject")

    def __init__(self, capacity: int, policy: str = "drop_oldest") -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity {capacity} < 1")
        if policy not in self.POLICIES:
            raise ValueError(f"drop policy {policy!r} is not one of {self.POLICIES}")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        self._items: deque[T] = deque()

    def push(self, item: T) -> T | None:
        """Append ``item``; returns the item that was dropped to make room (or ``item`` itself), else None."""
        if len(self._items) < self.capacity:
            self._items.append(item)
            return None
        self.dropped += 1
        if self.policy == "reject":
            return item
        old = self._items.popleft()
        self._items.append(item)
        return old

    def pop(self) -> T:
        return self._items.popleft()

    def peek(self) -> T:
        return self._items[0]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.capacity


# --- payload helpers --------------------------------------------------------------------------
def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes < the {size} its layout needs")


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes, its layout is {size} bytes")


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what}: text is not UTF-8 ({exc.reason} at byte {exc.start})") from None


# --- messages ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """Base of every message; ``TYPE`` is its frame type byte."""

    TYPE: ClassVar[MsgType]

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, payload: bytes) -> Message:
        _exact(payload, 0, cls.TYPE.name)
        return cls()


@dataclass(frozen=True)
class Hello(Message):
    """HELLO: ``u8 version | u8 reserved | u16 host max payload``. Starts a session: the board resets its
    stream sequence counters and statistics and answers CAPABILITIES."""

    TYPE = MsgType.HELLO
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBH")
    version: int = VERSION
    max_payload: int = DEFAULT_MAX_PAYLOAD

    def encode(self) -> bytes:
        return self.STRUCT.pack(self.version, 0, self.max_payload)

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        _need(payload, cls.STRUCT.size, "HELLO")
        version, _, max_payload = cls.STRUCT.unpack_from(payload)
        return cls(version, max_payload)


@dataclass(frozen=True)
class Capabilities(Message):
    """CAPABILITIES, the reply to HELLO::

    u8  version          protocol version of the board
    u8  state            bit 0: a program is loaded, bit 1: running
    u16 max_payload      largest frame payload the board accepts, bytes
    u16 credits          EVENTS frames the board queues (the credit window)
    u16 max_chunk_steps  steps the board runs per emulator call at most
    u32 max_program      largest program it accepts, bytes
    u32 max_inputs       largest number of input channels per port
    32B program_digest   sha256 of the loaded program's bytes, zeros if none
    u8  target_len, then the target name in UTF-8 (e.g. "loihi")
    """

    TYPE = MsgType.CAPABILITIES
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBHHHII32sB")
    version: int = VERSION
    state: int = 0
    max_payload: int = DEFAULT_MAX_PAYLOAD
    credits: int = 32
    max_chunk_steps: int = 256
    max_program: int = 0
    max_inputs: int = 0
    program_digest: bytes = bytes(32)
    target: str = ""

    def encode(self) -> bytes:
        name = self.target.encode("utf-8")
        return (
            self.STRUCT.pack(
                self.version,
                self.state,
                self.max_payload,
                self.credits,
                self.max_chunk_steps,
                self.max_program,
                self.max_inputs,
                self.program_digest,
                len(name),
            )
            + name
        )

    @classmethod
    def decode(cls, payload: bytes) -> Capabilities:
        _need(payload, cls.STRUCT.size, "CAPABILITIES")
        version, state, max_payload, credits, chunk, max_program, max_inputs, digest, n = (
            cls.STRUCT.unpack_from(payload)
        )
        name = payload[cls.STRUCT.size :]
        _exact(name, n, "CAPABILITIES target name")
        target = _text(name, "CAPABILITIES target")
        return cls(version, state, max_payload, credits, chunk, max_program, max_inputs, digest, target)

    @property
    def loaded(self) -> bool:
        return bool(self.state & 1)

    @property
    def running(self) -> bool:
        return bool(self.state & 2)


@dataclass(frozen=True)
class ProgramBegin(Message):
    """PROGRAM_BEGIN: ``u32 size | 32B sha256 digest`` of the program file bytes about to be sent."""

    TYPE = MsgType.PROGRAM_BEGIN
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<I32s")
    size: int = 0
    digest: bytes = bytes(32)

    def encode(self) -> bytes:
        return self.STRUCT.pack(self.size, self.digest)

    @classmethod
    def decode(cls, payload: bytes) -> ProgramBegin:
        _exact(payload, cls.STRUCT.size, "PROGRAM_BEGIN")
        return cls(*cls.STRUCT.unpack(payload))


@dataclass(frozen=True)
class ProgramChunk(Message):
    """PROGRAM_CHUNK: ``u32 offset | data``; chunks are sent in order, each acknowledged."""

    TYPE = MsgType.PROGRAM_CHUNK
    offset: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        return struct.pack("<I", self.offset) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> ProgramChunk:
        _need(payload, 4, "PROGRAM_CHUNK")
        return cls(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))


@dataclass(frozen=True)
class ProgramEnd(Message):
    """PROGRAM_END: empty. The board checks size, digest, format and target, then ACKs or NACKs."""

    TYPE = MsgType.PROGRAM_END


@dataclass(frozen=True)
class Start(Message):
    """START: empty. Run steps as their events complete."""

    TYPE = MsgType.START


@dataclass(frozen=True)
class Stop(Message):
    """STOP: empty. Stop running; queued events wait, state is kept."""

    TYPE = MsgType.STOP


@dataclass(frozen=True)
class Reset(Message):
    """RESET: empty. Neuron state, step counter and pending events back to zero; the program stays."""

    TYPE = MsgType.RESET


@dataclass(frozen=True)
class Flush(Message):
    """FLUSH: ``u32 end_step | u16 next_event_seq``. Every step < end_step is complete on every port: run
    them, send their SPIKES, count EVENTS frames before ``next_event_seq`` that never arrived, then ACK
    (the ACK carries the board's next SPIKES seq)."""

    TYPE = MsgType.FLUSH
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<IH")
    end_step: int = 0
    next_event_seq: int = 0

    def encode(self) -> bytes:
        return self.STRUCT.pack(self.end_step, self.next_event_seq)

    @classmethod
    def decode(cls, payload: bytes) -> Flush:
        _exact(payload, cls.STRUCT.size, "FLUSH")
        return cls(*cls.STRUCT.unpack(payload))


@dataclass(frozen=True)
class _Run(Message):
    """EVENTS / SPIKES payload::

        u32 base_step   first step this frame covers
        u16 n_steps     the frame covers steps [base_step, base_step + n_steps)
        u8  port        input (EVENTS) or output (SPIKES) port index, in the program's port order
        u8  reserved    0
        n × u32 record  id | count << 16 | dstep << 24; dstep < n_steps, count ≥ 1

    With frame flag MORE the last covered step continues in the next frame of the same port; otherwise
    every covered step is complete once this frame is processed.
    """

    base_step: int = 0
    n_steps: int = 0
    port: int = 0
    records: bytes = b""

    def encode(self) -> bytes:
        return RUN_HEADER.pack(self.base_step, self.n_steps, self.port, 0) + self.records

    @classmethod
    def decode(cls, payload: bytes) -> _Run:
        name = cls.TYPE.name
        _need(payload, RUN_HEADER.size, name)
        base, n_steps, port, _ = RUN_HEADER.unpack_from(payload)
        records = bytes(payload[RUN_HEADER.size :])
        if len(records) % RECORD_SIZE:
            raise ProtocolError(f"{name}: {len(records)} record bytes is not a multiple of {RECORD_SIZE}")
        if records:
            raw = np.frombuffer(records, dtype="<u4")
            worst = int((raw >> 24).max())
            if worst >= n_steps:
                raise ProtocolError(
                    f"{name}: a record at dstep {worst} lies outside the {n_steps} steps covered"
                )
        return cls(base, n_steps, port, records)

    def __len__(self) -> int:
        return len(self.records) // RECORD_SIZE

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, ids, counts)`` as int64 arrays, in record order."""
        raw = np.frombuffer(self.records, dtype="<u4").astype(np.int64)
        return self.base_step + (raw >> 24), raw & 0xFFFF, (raw >> 16) & 0xFF


@dataclass(frozen=True)
class Events(_Run):
    """EVENTS (host → board): input spikes, ``id`` = axon (input channel) of ``port``."""

    TYPE = MsgType.EVENTS


@dataclass(frozen=True)
class Spikes(_Run):
    """SPIKES (board → host): output spikes, ``id`` = neuron of output ``port``."""

    TYPE = MsgType.SPIKES


@dataclass(frozen=True)
class Credit(Message):
    """CREDIT: ``u16 limit``. The host may send EVENTS frames whose seq precedes ``limit``
    (:func:`seq_before`). Absolute, so a lost CREDIT is repaired by the next one."""

    TYPE = MsgType.CREDIT
    limit: int = 0

    def encode(self) -> bytes:
        return struct.pack("<H", self.limit)

    @classmethod
    def decode(cls, payload: bytes) -> Credit:
        _exact(payload, 2, "CREDIT")
        return cls(struct.unpack("<H", payload)[0])


@dataclass(frozen=True)
class CreditRequest(Message):
    """CREDIT_REQUEST: empty. A host that has waited for credit asks the board to repeat its CREDIT."""

    TYPE = MsgType.CREDIT_REQUEST


@dataclass(frozen=True)
class Ack(Message):
    """ACK: empty, or for FLUSH ``u16 next_spike_seq``. The frame seq is the acknowledged request's seq."""

    TYPE = MsgType.ACK
    info: bytes = b""

    def encode(self) -> bytes:
        return self.info

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        return cls(bytes(payload))


@dataclass(frozen=True)
class Nack(Message):
    """NACK: ``u8 reason | u8 request type | UTF-8 text``. The frame seq is the refused request's seq."""

    TYPE = MsgType.NACK
    reason: int = Reason.INTERNAL
    request: int = 0
    text: str = ""

    def encode(self) -> bytes:
        return struct.pack("<BB", self.reason, self.request) + self.text.encode("utf-8")[:900]

    @classmethod
    def decode(cls, payload: bytes) -> Nack:
        _need(payload, 2, "NACK")
        reason, request = struct.unpack_from("<BB", payload)
        return cls(reason, request, _text(payload[2:], "NACK"))


@dataclass(frozen=True)
class Ping(Message):
    """PING: ``u64 t_host_ns`` (host clock, any epoch)."""

    TYPE = MsgType.PING
    t_host: int = 0

    def encode(self) -> bytes:
        return struct.pack("<Q", self.t_host)

    @classmethod
    def decode(cls, payload: bytes) -> Ping:
        _exact(payload, 8, "PING")
        return cls(struct.unpack("<Q", payload)[0])


@dataclass(frozen=True)
class Pong(Message):
    """PONG: ``u64 t_host_ns | u64 t_board_rx_ns | u64 t_board_tx_ns``; host and board clocks, ns."""

    TYPE = MsgType.PONG
    STRUCT: ClassVar[struct.Struct] = struct.Struct("<QQQ")
    t_host: int = 0
    t_board_rx: int = 0
    t_board_tx: int = 0

    def encode(self) -> bytes:
        return self.STRUCT.pack(self.t_host, self.t_board_rx, self.t_board_tx)

    @classmethod
    def decode(cls, payload: bytes) -> Pong:
        _exact(payload, cls.STRUCT.size, "PONG")
        return cls(*cls.STRUCT.unpack(payload))


@dataclass(frozen=True)
class GetStats(Message):
    """GET_STATS: empty; answered by STATS."""

    TYPE = MsgType.GET_STATS


#: board counters in STATS order; a newer board appends, an older host names the extras counter_<i>
STATS_FIELDS = (
    "frames_rx",
    "frames_tx",
    "rejects_cobs",
    "rejects_crc",
    "rejects_length",
    "rejects_version",
    "bad_messages",
    "requests_rx",
    "duplicate_requests",
    "nacks_tx",
    "event_frames_rx",
    "event_frames_lost",
    "event_frames_stale",
    "event_frames_overflow",
    "events_rx",
    "events_late",
    "events_invalid",
    "events_ignored",
    "steps_run",
    "spike_frames_tx",
    "spikes_tx",
    "queue_depth",
    "queue_capacity",
)


@dataclass(frozen=True)
class Stats(Message):
    """STATS: ``u8 n | n × u64`` counters in :data:`STATS_FIELDS` order."""

    TYPE = MsgType.STATS
    counters: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        values = [int(self.counters.get(name, 0)) & 0xFFFFFFFFFFFFFFFF for name in STATS_FIELDS]
        return struct.pack(f"<B{len(values)}Q", len(values), *values)

    @classmethod
    def decode(cls, payload: bytes) -> Stats:
        _need(payload, 1, "STATS")
        n = payload[0]
        _exact(payload, 1 + 8 * n, "STATS")
        values = struct.unpack_from(f"<{n}Q", payload, 1)
        names = [STATS_FIELDS[i] if i < len(STATS_FIELDS) else f"counter_{i}" for i in range(n)]
        return cls(dict(zip(names, values, strict=True)))


@dataclass(frozen=True)
class Error(Message):
    """ERROR (board → host, unsolicited): ``u16 code`` (:class:`Reason`) ``| UTF-8 text``."""

    TYPE = MsgType.ERROR
    code: int = Reason.INTERNAL
    text: str = ""

    def encode(self) -> bytes:
        return struct.pack("<H", self.code) + self.text.encode("utf-8")[:900]

    @classmethod
    def decode(cls, payload: bytes) -> Error:
        _need(payload, 2, "ERROR")
        return cls(struct.unpack_from("<H", payload)[0], _text(payload[2:], "ERROR"))


MESSAGES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Capabilities,
        ProgramBegin,
        ProgramChunk,
        ProgramEnd,
        Start,
        Stop,
        Reset,
        Flush,
        Events,
        Spikes,
        Credit,
        CreditRequest,
        Ack,
        Nack,
        Ping,
        Pong,
        GetStats,
        Stats,
        Error,
    )
}


def decode_message(type_: int, payload: bytes | bytearray) -> Message:
    """The message of a frame's type byte and payload; raises ProtocolError and nothing else."""
    cls = MESSAGES.get(type_)
    if cls is None:
        known = ", ".join(f"{t.name}={t.value:#04x}" for t in MsgType)
        raise ProtocolError(f"unknown message type {type_:#04x}; known: {known}")
    try:
        return cls.decode(bytes(payload))
    except ProtocolError:
        raise
    except (struct.error, ValueError, IndexError, OverflowError) as exc:  # belt and braces: never leak these
        raise ProtocolError(f"{cls.TYPE.name}: malformed payload ({exc})") from None


# --- packing event runs -----------------------------------------------------------------------
def records_per_frame(max_payload: int) -> int:
    """Records that fit one EVENTS/SPIKES frame under ``max_payload``."""
    n = (max_payload - RUN_HEADER.size) // RECORD_SIZE
    if n < 1:
        raise ValueError(f"max_payload {max_payload} leaves no room for a record")
    return n


def split_counts(steps: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop zero counts and split counts > 255 into several records (the receiver adds them up)."""
    keep = counts > 0
    steps, ids, counts = steps[keep], ids[keep], counts[keep]
    if counts.size and int(counts.max()) > MAX_RECORD_COUNT:
        reps = -(-counts // MAX_RECORD_COUNT)
        steps, ids = np.repeat(steps, reps), np.repeat(ids, reps)
        last = np.cumsum(reps) - 1
        full = np.full(int(reps.sum()), MAX_RECORD_COUNT, dtype=np.int64)
        full[last] = counts - MAX_RECORD_COUNT * (reps - 1)
        counts = full
    return steps, ids, counts


def pack_runs(
    cls: type[_Run],
    port: int,
    start: int,
    end: int,
    steps: Iterable[int] | np.ndarray,
    ids: Iterable[int] | np.ndarray,
    counts: Iterable[int] | np.ndarray | None = None,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> list[tuple[_Run, int]]:
    """Pack the events of steps [start, end) into ``(message, flags)`` frames of at most ``max_payload``.

    ``steps``, ``ids`` and ``counts`` (default 1) are equal-length; steps must lie in [start, end) and ids
    in [0, 65535]. Events are sorted by step (stable). The frames cover [start, end) without holes, so the
    receiver learns which steps are complete even when they carry no event.
    """
    steps_a = np.asarray(steps, dtype=np.int64).reshape(-1)
    ids_a = np.asarray(ids, dtype=np.int64).reshape(-1)
    counts_a = np.ones_like(steps_a) if counts is None else np.asarray(counts, dtype=np.int64).reshape(-1)
    if not steps_a.shape == ids_a.shape == counts_a.shape:
        raise ValueError(
            f"steps, ids, counts differ in length: {steps_a.size}, {ids_a.size}, {counts_a.size}"
        )
    if end < start:
        raise ValueError(f"end step {end} < start step {start}")
    if steps_a.size:
        if int(steps_a.min()) < start or int(steps_a.max()) >= end:
            raise ValueError(
                f"event steps span [{int(steps_a.min())}, {int(steps_a.max())}], outside [{start}, {end}); "
                "steps already sent cannot be sent again"
            )
        if int(ids_a.min()) < 0 or int(ids_a.max()) > MAX_RECORD_ID:
            raise ValueError(
                f"ids span [{int(ids_a.min())}, {int(ids_a.max())}], outside [0, {MAX_RECORD_ID}]"
            )
        if int(counts_a.min()) < 0:
            raise ValueError("negative spike counts")
        if steps_a.size > 1 and bool(np.any(np.diff(steps_a) < 0)):
            order = np.argsort(steps_a, kind="stable")
            steps_a, ids_a, counts_a = steps_a[order], ids_a[order], counts_a[order]
        steps_a, ids_a, counts_a = split_counts(steps_a, ids_a, counts_a)
    per_frame = records_per_frame(max_payload)
    out: list[tuple[_Run, int]] = []
    n = steps_a.size
    i = 0
    base = start
    while i < n or base < end or not out:
        if i == n:
            span = min(end - base, 0xFFFF)
            out.append((cls(base, span, port, b""), 0))
            base += span
            if base >= end:
                break
            continue
        first = int(steps_a[i])
        if first - base > MAX_RECORD_DSTEP:  # a quiet stretch: cover it with an empty frame
            span = min(first - base, 0xFFFF)
            out.append((cls(base, span, port, b""), 0))
            base += span
            continue
        limit = int(np.searchsorted(steps_a, base + MAX_RECORD_DSTEP + 1, side="left"))
        j = min(i + per_frame, limit, n)
        last = int(steps_a[j - 1])
        if j < n and int(steps_a[j]) == last:
            span, flags, next_base = last - base + 1, FLAG_MORE, last
        else:
            stop = int(steps_a[j]) if j < n else end
            span = min(stop - base, 0xFFFF)
            flags, next_base = 0, base + span
        rec = ids_a[i:j] | (counts_a[i:j] << 16) | ((steps_a[i:j] - base) << 24)
        out.append((cls(base, span, port, rec.astype("<u4").tobytes()), flags))
        i, base = j, next_base
    return out
