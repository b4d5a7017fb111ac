"""BoardClient: the host side of the board protocol (``docs/protocol.md``).

Typical use — stream binned input spikes to a board and collect its output spikes::

    from runtime.link import Link
    from runtime.host import BoardClient

    with Link("/dev/ttyUSB0", baudrate=3_000_000) as link, BoardClient(link) as board:
        board.hello()                          # -> Capabilities (target, limits, credits)
        board.upload(program)                  # emulator.Program or its bytes; sha256 checked by the board
        board.start()
        for step, axons in bins:               # axons of input port 0 that spike at `step`
            board.send_events(np.full(len(axons), step), axons, end_step=step + 1)
        board.flush()                          # every step sent has run and its spikes arrived
        out = board.take_spikes()              # {port index: SpikeRun(steps, neurons, counts)}
        board.stop()

* Requests (hello, upload, start, stop, reset, flush, ping, stats) wait for the board's reply, retransmit
  after ``reply_timeout`` (``slow_timeout`` for PROGRAM_END and FLUSH, which make the board work), plus
  the frames' wire time, up to ``retries`` times, then raise ``LinkTimeout``;
  a NACK raises :class:`BoardRefused` (a ProtocolError) with the board's reason and text.
* ``send_events`` packs events into EVENTS frames (4 bytes per event) and queues them; a frame leaves as
  soon as the board has granted credit. When the queue (``queue_frames``) is full, ``drop_policy="block"``
  waits for credit (``LinkTimeout`` if the board grants none after ``retries`` credit requests), and
  ``"drop_oldest"`` drops the oldest queued frame and counts it (live input: fresh beats complete).
* SPIKES frames are collected by a reader thread into a bounded buffer (``max_spike_records``, oldest
  dropped and counted). Lost frames in either direction are counted exactly; see :meth:`counters`.
* If the link fails (the board unplugged), the reader stops; spikes received so far stay available from
  :meth:`take_spikes`, and the next call raises the LinkError.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from runtime.framing import FLAG_MORE, Frame, encode_frame
from runtime.link import Link
from runtime.protocol import (
    DEFAULT_MAX_PAYLOAD,
    REPLIES,
    Ack,
    Capabilities,
    Credit,
    CreditRequest,
    DropQueue,
    Error,
    Events,
    Flush,
    GapCounter,
    GetStats,
    Hello,
    Message,
    Nack,
    Ping,
    Pong,
    ProgramBegin,
    ProgramChunk,
    ProgramEnd,
    Reason,
    Reset,
    Spikes,
    Start,
    Stats,
    Stop,
    decode_message,
    pack_runs,
    seq_add,
    seq_before,
)
from spikeforge.errors import LinkError, LinkTimeout, ProtocolError

if TYPE_CHECKING:  # uploading needs only the Program's bytes; the emulator is not imported at run time
    from emulator import Program


class BoardRefused(ProtocolError):
    """The board answered NACK; ``reason`` is a :class:`runtime.protocol.Reason`."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SpikeRun(NamedTuple):
    """Output spikes of one port: parallel int64 arrays, sorted by step."""

    steps: np.ndarray
    neurons: np.ndarray
    counts: np.ndarray

    def dense(self, n_neurons: int, start: int = 0, end: int | None = None) -> np.ndarray:
        """As an int64 ``[end - start, n_neurons]`` array of counts."""
        end = int(self.steps.max()) + 1 if end is None and self.steps.size else (end or start)
        out = np.zeros((max(end - start, 0), n_neurons), dtype=np.int64)
        inside = (self.steps >= start) & (self.steps < end)
        np.add.at(out, (self.steps[inside] - start, self.neurons[inside]), self.counts[inside])
        return out


class BoardClient:
    """The host side of one board session over ``link``; see the module docstring for the API."""

    def __init__(
        self,
        link: Link,
        *,
        reply_timeout: float = 0.25,
        retries: int = 5,
        slow_timeout: float = 2.0,
        drop_policy: str = "block",
        queue_frames: int = 64,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_spike_records: int = 1 << 22,
    ) -> None:
        if drop_policy not in ("block", "drop_oldest"):
            raise ValueError(f"drop_policy {drop_policy!r} is not 'block' or 'drop_oldest'")
        self.link = link
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.slow_timeout = slow_timeout
        self.drop_policy = drop_policy
        self.max_payload = max_payload
        self.max_spike_records = max_spike_records
        self.capabilities: Capabilities | None = None
        self.errors: list[Error] = []
        self._failure: LinkError | None = None
        self.last_pong: Pong | None = None
        self._count: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._request_lock = threading.Lock()
        self._pump_lock = threading.Lock()
        self._queue: DropQueue[tuple[bytes, int, int]] = DropQueue(
            queue_frames, "drop_oldest" if drop_policy == "drop_oldest" else "reject"
        )
        self._ctrl_seq = 0
        self._awaiting: int | None = None
        self._reply: Message | None = None
        self._event_seq = 0
        self._limit = 0
        self._horizons: dict[int, int] = {}
        self._spike_gaps = GapCounter()
        self._spikes: dict[int, deque[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._spike_records = 0
        self.spike_horizons: dict[int, int] = {}
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> BoardClient:
        """Open the link if needed and start the reader thread."""
        if not self.link.is_open:
            self.link.open()
        if self._reader is None:
            self._stopping.clear()
            self._reader = threading.Thread(target=self._read_loop, name="board-client-reader", daemon=True)
            self._reader.start()
        return self

    def close(self) -> None:
        """Stop the reader thread (the link stays open: its owner closes it)."""
        self._stopping.set()
        if self._reader is not None:
            self._reader.join(5.0)
            self._reader = None

    def __enter__(self) -> BoardClient:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- requests ----------------------------------------------------------------------------
    def hello(self) -> Capabilities:
        """Start a session: stream sequence numbers restart at 0; returns the board's capabilities."""
        caps = self._request(Hello(max_payload=self.max_payload), session=False)
        assert isinstance(caps, Capabilities)
        with self._cond:
            self.capabilities = caps
            self._event_seq = 0
            self._limit = caps.credits
            self._spike_gaps = GapCounter()
            self._queue.clear()
        return caps

    def upload(self, program: Program | bytes | bytearray | memoryview, chunk_size: int | None = None) -> str:
        """Send a Program (or its file bytes) in acknowledged chunks; returns its sha256 hex digest.

        The board checks size, digest, format and target; a refusal raises :class:`BoardRefused` whose
        ``reason`` says why (``Reason.WRONG_TARGET``, ``DIGEST_MISMATCH``, ``BAD_PROGRAM``, ...).
        """
        data = bytes(program) if isinstance(program, bytes | bytearray | memoryview) else program.to_bytes()
        caps = self._session()
        chunk = min(chunk_size or caps.max_payload, caps.max_payload) - 4
        digest = hashlib.sha256(data).digest()
        self._request(ProgramBegin(len(data), digest))
        for offset in range(0, len(data), chunk):
            self._request(ProgramChunk(offset, data[offset : offset + chunk]))
        self._request(ProgramEnd(), timeout=self.slow_timeout)  # the board parses the program
        with self._cond:
            self._horizons.clear()
        return digest.hex()

    def start(self) -> None:
        """Run steps as their events arrive."""
        self._request(Start())

    def stop(self) -> None:
        """Stop running; the board keeps its state and queued events."""
        self._request(Stop())

    def reset(self) -> None:
        """Neuron state and step counter to 0 on the board; the next events start at step 0."""
        self._drain_queue()
        self._request(Reset())
        with self._cond:
            self._horizons.clear()

    def ping(self) -> float:
        """Round-trip time in seconds; the board's timestamps are in :attr:`last_pong`."""
        t0 = time.monotonic_ns()
        pong = self._request(Ping(t0))
        assert isinstance(pong, Pong)
        self.last_pong = pong
        return (time.monotonic_ns() - t0) / 1e9

    def stats(self) -> dict[str, int]:
        """The board's counters (``runtime.protocol.STATS_FIELDS``)."""
        reply = self._request(GetStats())
        assert isinstance(reply, Stats)
        return dict(reply.counters)

    def flush(self, end_step: int | None = None, timeout: float | None = None) -> int:
        """Barrier: send queued events, tell the board every step < ``end_step`` (default: the furthest
        step sent) is complete, and return once it has run them and their spikes have arrived.

        Raises :class:`BoardRefused` if the board is stopped or its emulator failed. Returns ``end_step``.
        """
        self._drain_queue()
        with self._cond:
            end = max(self._horizons.values(), default=0) if end_step is None else end_step
            for port in list(self._horizons):
                self._horizons[port] = max(self._horizons[port], end)
            next_seq = self._event_seq
        ack = self._request(Flush(end, next_seq), timeout=timeout or self.slow_timeout)
        if not isinstance(ack, Ack) or len(ack.info) < 2:
            raise ProtocolError("FLUSH: the board's ACK does not carry its next SPIKES sequence number")
        with self._cond:
            self._spike_gaps.close(struct.unpack_from("<H", ack.info)[0])
        return end

    # --- events out --------------------------------------------------------------------------
    def send_events(
        self,
        steps: Any,
        axons: Any,
        counts: Any = None,
        *,
        port: int = 0,
        end_step: int | None = None,
    ) -> int:
        """Queue input events of ``port`` and send what credit allows; returns the number of frames.

        ``steps``, ``axons`` (and ``counts``, default 1 each) are equal-length integer sequences; steps
        must not precede the end of the previous call on this port. ``end_step`` declares every step
        before it complete (default: last event step + 1), so empty steps run too.
        """
        steps_a = np.asarray(steps, dtype=np.int64).reshape(-1)
        caps = self._session()
        with self._cond:
            start = self._horizons.get(port, 0)
        end = end_step if end_step is not None else (int(steps_a.max()) + 1 if steps_a.size else start)
        runs = pack_runs(Events, port, start, end, steps_a, axons, counts, caps.max_payload)
        with self._cond:
            self._horizons[port] = end
        for msg, flags in runs:
            self._enqueue((msg.encode(), flags, len(msg)))
        return len(runs)

    def send_array(self, spikes: Any, *, port: int = 0) -> int:
        """Send a dense ``[T, channels]`` (or ``[1, T, channels]``) count array as the next T steps."""
        arr = np.asarray(spikes)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ValueError(f"spikes of shape {arr.shape}; expected [T, channels] or [1, T, channels]")
        with self._cond:
            start = self._horizons.get(port, 0)
        t, axon = np.nonzero(arr)
        return self.send_events(t + start, axon, arr[t, axon], port=port, end_step=start + arr.shape[0])

    # --- spikes in ---------------------------------------------------------------------------
    def take_spikes(self) -> dict[int, SpikeRun]:
        """Output spikes received since the last call, per output port index; clears the buffer."""
        with self._cond:
            out = {}
            for port, chunks in self._spikes.items():
                parts = list(chunks) or [(np.zeros(0, np.int64),) * 3]
                out[port] = SpikeRun(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
            self._spikes = {}
            self._spike_records = 0
        return out

    def counters(self) -> dict[str, int]:
        """Host-side counters: requests, retransmits, frames and events sent and dropped, spikes and
        SPIKES frames received, lost and stale, credit requests, queue depth."""
        with self._cond:
            out = dict(self._count)
            out["spike_frames_rx"] = self._spike_gaps.accepted
            out["spike_frames_lost"] = self._spike_gaps.lost
            out["spike_frames_stale"] = self._spike_gaps.stale
            out["queue_depth"] = len(self._queue)
            out["events_dropped_queue"] = out.get("events_dropped_queue", 0)
        return out

    # --- internals ---------------------------------------------------------------------------
    @property
    def failure(self) -> LinkError | None:
        """The LinkError that ended this session, if any (seen by the reader or by a send)."""
        return self._failure or self.link.lost

    def _session(self) -> Capabilities:
        return self.capabilities if self.capabilities is not None else self.hello()

    def _raise_failure(self) -> None:
        failure = self.failure
        if failure is not None:
            raise type(failure)(str(failure))

    def _request(self, msg: Message, *, timeout: float | None = None, session: bool = True) -> Message:
        if session:
            self._session()
        if self._reader is None:
            self.open()
        with self._request_lock:
            seq = self._ctrl_seq
            self._ctrl_seq = seq_add(seq, 1)
            frame = encode_frame(msg.TYPE, seq, msg.encode())
            reply_wire = self.link.wire_time(2 * self.max_payload)
            per_try = (timeout or self.reply_timeout) + self.link.wire_time(len(frame)) + reply_wire
            with self._cond:
                self._awaiting, self._reply = seq, None
            reply: Message | None = None
            try:
                for attempt in range(self.retries + 1):
                    self._raise_failure()
                    if attempt:
                        self._count["retransmits"] += 1
                    self.link.send(frame)
                    with self._cond:
                        self._cond.wait_for(
                            lambda: self._reply is not None or self.failure is not None, per_try
                        )
                        reply = self._reply
                    if reply is not None:
                        break
                self._raise_failure()
            finally:
                with self._cond:
                    self._awaiting = None
            self._count["requests"] += 1
        if reply is None:
            raise LinkTimeout(
                f"{msg.TYPE.name} (seq {seq}): no reply after {self.retries + 1} attempts over "
                f"{per_try * (self.retries + 1):.2f} s; check that a board is serving {self.link.url!r} at "
                f"{self.link.baudrate} baud"
            )
        if isinstance(reply, Nack):
            self._count["nacks"] += 1
            try:
                name = Reason(reply.reason).name
            except ValueError:
                name = f"reason {reply.reason}"
            raise BoardRefused(reply.reason, f"board refused {msg.TYPE.name}: {name}: {reply.text}")
        return reply

    def _enqueue(self, item: tuple[bytes, int, int]) -> None:
        if self.drop_policy == "drop_oldest":
            with self._cond:
                dropped = self._queue.push(item)
                if dropped is not None:
                    self._count["event_frames_dropped_queue"] += 1
                    self._count["events_dropped_queue"] += dropped[2]
            self._pump()
            return
        self._pump()
        self._wait_for(lambda: not self._queue.full, "room in the event queue")
        with self._cond:
            self._queue.push(item)
        self._pump()

    def _drain_queue(self) -> None:
        self._pump()
        self._wait_for(lambda: not self._queue, "the event queue to drain")

    def _wait_for(self, ready: Callable[[], bool], what: str) -> None:
        """Wait until ``ready()``, asking the board for credit whenever it stays silent for a timeout."""
        stalls = 0
        while True:
            with self._cond:
                limit = self._limit
                if self._cond.wait_for(lambda: ready() or self.failure is not None, self.reply_timeout):
                    self._raise_failure()
                    return
                progressed = self._limit != limit
            self._raise_failure()
            stalls = 0 if progressed else stalls + 1
            if stalls > self.retries:
                raise LinkTimeout(
                    f"waited {stalls * self.reply_timeout:.2f} s for {what}: the board granted no EVENTS "
                    f"credit after {self.retries} credit requests; is it running (START) and still connected?"
                )
            self._count["credit_requests"] += 1
            self.link.send(encode_frame(CreditRequest.TYPE, 0, b""))
            self._pump()

    def _pump(self) -> None:
        """Send queued EVENTS frames while the board's credit allows."""
        with self._pump_lock:
            while True:
                with self._cond:
                    if not self._queue or not seq_before(self._event_seq, self._limit):
                        break
                    payload, flags, n = self._queue.pop()
                    seq = self._event_seq
                    self._event_seq = seq_add(seq, 1)
                    self._cond.notify_all()
                self.link.send(encode_frame(Events.TYPE, seq, payload, flags))
                self._count["event_frames_tx"] += 1
                self._count["events_tx"] += n

    def _read_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                frames = self.link.receive(0.05)
                for frame in frames:
                    self._dispatch(frame)
            except LinkError as exc:
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                return

    def _dispatch(self, frame: Frame) -> None:
        try:
            msg = decode_message(frame.type, frame.payload)
        except ProtocolError:
            self._count["bad_messages"] += 1
            return
        if frame.type in REPLIES:
            with self._cond:
                if frame.seq == self._awaiting and self._reply is None:
                    self._reply = msg
                    self._cond.notify_all()
                else:
                    self._count["stale_replies"] += 1
        elif isinstance(msg, Spikes):
            self._on_spikes(frame, msg)
        elif isinstance(msg, Credit):
            with self._cond:
                if seq_before(self._limit, msg.limit):
                    self._limit = msg.limit
                    self._cond.notify_all()
            self._pump()
        elif isinstance(msg, Error):
            with self._cond:
                self.errors.append(msg)
                self._cond.notify_all()
        else:
            self._count["unexpected_messages"] += 1

    def _on_spikes(self, frame: Frame, msg: Spikes) -> None:
        with self._cond:
            if not self._spike_gaps.observe(frame.seq):
                return
            end = msg.base_step + msg.n_steps - (1 if frame.flags & FLAG_MORE and msg.n_steps else 0)
            self.spike_horizons[msg.port] = max(self.spike_horizons.get(msg.port, 0), end)
            if not len(msg):
                return
            chunks = self._spikes.setdefault(msg.port, deque())
            chunks.append(msg.arrays())
            self._spike_records += len(msg)
            self._count["spikes_rx"] += len(msg)
            while self._spike_records > self.max_spike_records:  # bounded memory: oldest spikes go first
                victim = max(self._spikes.values(), key=len)
                old = victim.popleft()
                self._spike_records -= old[0].size
                self._count["spikes_dropped"] += old[0].size
