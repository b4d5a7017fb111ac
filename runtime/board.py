"""SimBoard: a board made of software — protocol in, emulator, protocol out.

A :class:`SimBoard` serves the board side of the protocol (``docs/protocol.md``) on a
:class:`runtime.link.Link`: it accepts a Program upload (size, sha256 and target checked), runs it with
``emulator.Simulator(program, engine="fast", batch=1)`` as EVENTS frames complete steps, and sends the
output spikes back as SPIKES frames. Tests, the demo and ``spikeforge board`` use it in place of a chip::

    link = Link.pty(keep_slave_open=True).open()          # or Link("/dev/ttyUSB1", baudrate=...)
    board = SimBoard(link, target="loihi")
    with BoardThread(board):                              # serve() in a thread until the block ends
        ...                                               # a host talks to link.url

Steps run in chunks of at most ``max_chunk_steps``: whenever every input port's frames have completed
steps up to some horizon, all steps before it run in one ``Simulator.run`` call (state carries over).
EVENTS frames wait in a bounded queue of ``credits`` frames (drop-oldest, counted) and are granted back to
the host with CREDIT frames as they are consumed; lost EVENTS frames are counted from sequence gaps.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.faults import FaultInjector
from runtime.framing import FLAG_MORE, VERSION, Frame, encode_frame
from runtime.link import Link
from runtime.protocol import (
    DEFAULT_MAX_PAYLOAD,
    MESSAGES,
    REQUESTS,
    STATS_FIELDS,
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
)
from spikeforge.errors import LinkError, ProtocolError, SpikeforgeError

if TYPE_CHECKING:  # the emulator is imported when a program is uploaded, not with the runtime
    from emulator import Program, Simulator


class Refused(Exception):
    """Raised inside a request handler: answer with NACK ``reason`` and ``text``."""

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def _default_loader(data: bytes) -> Program:
    import emulator

    return emulator.Program.from_bytes(data, source="uploaded program")


class SimBoard:
    """The board side of the protocol over ``link``, emulating chip ``target`` (a spec name).

    ``credits``: EVENTS frames queued at most (the host's window). ``max_payload``: largest frame payload
    accepted, bytes. ``max_program``: largest program, bytes. ``max_inputs``: channels per input port at
    most. ``max_chunk_steps``: steps per emulator call at most. ``load_program(bytes) -> Program`` and
    ``make_simulator(program) -> Simulator`` default to the emulator's; tests may pass stand-ins.
    """

    def __init__(
        self,
        link: Link,
        target: str,
        *,
        credits: int = 32,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_program: int = 64 << 20,
        max_inputs: int = 1 << 16,
        max_chunk_steps: int = 256,
        engine: str = "fast",
        seed: int = 0,
        load_program: Callable[[bytes], Program] | None = None,
        make_simulator: Callable[[Program], Simulator] | None = None,
    ) -> None:
        self.link = link
        self.target = target
        self.max_payload = max_payload
        self.payload_limit = max_payload  # negotiated in HELLO
        self.max_program = max_program
        self.max_inputs = max_inputs
        self.max_chunk_steps = max_chunk_steps
        self.engine = engine
        self.seed = seed
        self._load = load_program or _default_loader
        self._make_sim = make_simulator or self._default_simulator
        self.program: Program | None = None
        self.sim: Simulator | None = None
        self.program_digest = bytes(32)
        self.in_ports: list[tuple[str, int]] = []
        self.out_ports: list[tuple[str, int]] = []
        self.running = False
        self.counters: Counter[str] = Counter()
        self.queue: DropQueue[tuple[Events, int]] = DropQueue(credits, "drop_oldest")
        self.gaps = GapCounter()
        self._upload: tuple[int, bytes, bytearray] | None = None  # size, sha256, bytes so far
        self._received = 0
        self._last: tuple[int, int, bytes] | None = None  # (seq, type, reply frame) of the last request
        self._spike_seq = 0
        self._notice_seq = 0
        self._credit_sent = credits
        self._run_from = 0
        self._horizons: list[int] = [0]
        self._pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._handlers: dict[type[Message], Callable[[Any], Message]] = {
            Hello: self._on_hello,
            ProgramBegin: self._on_begin,
            ProgramChunk: self._on_chunk,
            ProgramEnd: self._on_end,
            Start: self._on_start,
            Stop: self._on_stop,
            Reset: self._on_reset,
            Flush: self._on_flush,
            Ping: self._on_ping,
            GetStats: self._on_stats,
        }

    def _default_simulator(self, program: Program) -> Simulator:
        import emulator

        return emulator.Simulator(program, engine=self.engine, batch=1, seed=self.seed)

    # --- serving -----------------------------------------------------------------------------
    def serve(self, stop: threading.Event | None = None, poll: float = 0.05) -> None:
        """Answer the host until ``stop`` is set (checked every ``poll`` s); a LinkError ends it."""
        while stop is None or not stop.is_set():
            self.poll(poll)

    def poll(self, timeout: float | None = None) -> int:
        """Receive for up to ``timeout`` s and handle what arrived; returns the number of frames."""
        frames = self.link.receive(timeout)
        self.handle(frames)
        return len(frames)

    def handle(self, frames: list[Frame]) -> None:
        """Handle frames in arrival order, then run the steps they completed."""
        for frame in frames:
            self.counters["frames_rx"] += 1
            try:
                msg = decode_message(frame.type, frame.payload)
            except ProtocolError as exc:
                self.counters["bad_messages"] += 1
                if frame.type in REQUESTS or frame.type not in MESSAGES:
                    reason = Reason.BAD_PAYLOAD if frame.type in MESSAGES else Reason.UNKNOWN_TYPE
                    self._send_reply(frame, Nack(reason, frame.type, str(exc)))
                continue
            if isinstance(msg, Events):
                self._on_events(frame, msg)
            elif frame.type in REQUESTS:
                self._on_request(frame, msg)
            elif isinstance(msg, CreditRequest):
                self._drain()
                self._send_credit(force=True)
            else:
                self.counters["bad_messages"] += 1  # a board-to-host message sent to the board
        self._drain()

    def stats(self) -> dict[str, int]:
        """Every counter named in :data:`runtime.protocol.STATS_FIELDS`, and then some."""
        out = {name: 0 for name in STATS_FIELDS}
        out.update(self.counters)
        out.update({f"rejects_{reason}": n for reason, n in self.link.deframer.rejects.items()})
        out["event_frames_rx"] = self.gaps.accepted
        out["event_frames_lost"] = self.gaps.lost
        out["event_frames_stale"] = self.gaps.stale
        out["event_frames_overflow"] = self.queue.dropped
        out["queue_depth"] = len(self.queue)
        out["queue_capacity"] = self.queue.capacity
        out["step"] = self.step
        return out

    @property
    def step(self) -> int:
        """The next step the emulator will run."""
        return self._run_from

    # --- requests ----------------------------------------------------------------------------
    def _on_request(self, frame: Frame, msg: Message) -> None:
        self.counters["requests_rx"] += 1
        last = self._last
        if last is not None and last[0] == frame.seq and last[1] == frame.type and not isinstance(msg, Hello):
            # our reply was lost and the host retransmitted: answer again, do not execute twice
            self.counters["duplicate_requests"] += 1
            self._send(last[2])
            return
        self._drain()  # events sent before this request take effect first
        try:
            reply = self._handlers[type(msg)](msg)
        except Refused as exc:
            reply = Nack(exc.reason, frame.type, exc.text)
        self._send_reply(frame, reply)

    def _send_reply(self, frame: Frame, reply: Message) -> None:
        if isinstance(reply, Nack):
            self.counters["nacks_tx"] += 1
        data = encode_frame(reply.TYPE, frame.seq, reply.encode())
        self._last = (frame.seq, frame.type, data)
        self._send(data)

    def _on_hello(self, msg: Hello) -> Message:
        if msg.version != VERSION:
            raise Refused(Reason.VERSION, f"host speaks protocol version {msg.version}, this board {VERSION}")
        self.payload_limit = max(16, min(self.max_payload, msg.max_payload))
        self.gaps = GapCounter()
        self._spike_seq = 0
        self.queue.clear()
        self._credit_sent = self.queue.capacity
        self.counters.clear()
        state = (1 if self.program is not None else 0) | (2 if self.running else 0)
        return Capabilities(
            VERSION,
            state,
            self.payload_limit,
            self.queue.capacity,
            self.max_chunk_steps,
            self.max_program,
            self.max_inputs,
            self.program_digest,
            self.target,
        )

    def _on_begin(self, msg: ProgramBegin) -> Message:
        if self.running:
            raise Refused(Reason.BAD_STATE, "cannot load a program while running; send STOP first")
        if msg.size > self.max_program:
            raise Refused(Reason.TOO_LARGE, f"program of {msg.size} bytes > this board's {self.max_program}")
        self._upload = (msg.size, msg.digest, bytearray(msg.size))
        self._received = 0
        return Ack()

    def _on_chunk(self, msg: ProgramChunk) -> Message:
        if self._upload is None:
            raise Refused(Reason.BAD_STATE, "PROGRAM_CHUNK without PROGRAM_BEGIN")
        size, _, buf = self._upload
        end = msg.offset + len(msg.data)
        if msg.offset > self._received or end > size:
            raise Refused(
                Reason.BAD_OFFSET,
                f"chunk [{msg.offset}, {end}) does not continue the {self._received}/{size} bytes received",
            )
        buf[msg.offset : end] = msg.data
        self._received = max(self._received, end)
        return Ack()

    def _on_end(self, msg: ProgramEnd) -> Message:
        if self._upload is None:
            raise Refused(Reason.BAD_STATE, "PROGRAM_END without PROGRAM_BEGIN")
        size, digest, buf = self._upload
        if self._received != size:
            raise Refused(Reason.BAD_STATE, f"program incomplete: {self._received} of {size} bytes received")
        self._upload = None  # whatever happens next, a new upload starts from PROGRAM_BEGIN
        data = bytes(buf)
        actual = hashlib.sha256(data).digest()
        if actual != digest:
            raise Refused(
                Reason.DIGEST_MISMATCH,
                f"sha256 of the received bytes is {actual.hex()[:16]}…, PROGRAM_BEGIN announced "
                f"{digest.hex()[:16]}…; upload again",
            )
        try:
            program = self._load(data)
        except (SpikeforgeError, ValueError) as exc:
            raise Refused(Reason.BAD_PROGRAM, f"not a valid program: {exc}") from None
        if program.target != self.target:
            raise Refused(
                Reason.WRONG_TARGET,
                f"program was built for target {program.target!r}, this board is {self.target!r}; "
                f"recompile it with target={self.target!r}",
            )
        too_wide = {name: n for name, n in program.inputs.items() if n > self.max_inputs}
        if too_wide:
            raise Refused(Reason.TOO_LARGE, f"input ports {too_wide} exceed {self.max_inputs} channels each")
        try:
            sim = self._make_sim(program)
        except (SpikeforgeError, ValueError) as exc:
            raise Refused(Reason.BAD_PROGRAM, f"the emulator cannot run this program: {exc}") from None
        self.program, self.sim, self.program_digest = program, sim, digest
        self.in_ports = list(program.inputs.items())
        self.out_ports = list(program.outputs.items())
        self.running = False
        self._reset_steps()
        return Ack()

    def _on_start(self, msg: Start) -> Message:
        if self.program is None:
            raise Refused(Reason.NO_PROGRAM, "no program loaded; upload one first")
        self.running = True
        return Ack()

    def _on_stop(self, msg: Stop) -> Message:
        self.running = False
        return Ack()

    def _on_reset(self, msg: Reset) -> Message:
        if self.sim is not None:
            self.sim.reset()
        self._reset_steps()
        return Ack()

    def _on_flush(self, msg: Flush) -> Message:
        if not self.running:
            raise Refused(Reason.BAD_STATE, "FLUSH while stopped; send START first")
        self.gaps.close(msg.next_event_seq)
        self._horizons = [max(h, msg.end_step) for h in self._horizons]
        self._run_ready()
        if self.running is False:  # the emulator failed: an ERROR frame went out
            raise Refused(Reason.EMULATOR_FAILED, "the emulator failed while running; see the ERROR frame")
        return Ack(struct.pack("<H", self._spike_seq))

    def _on_ping(self, msg: Ping) -> Message:
        received = time.monotonic_ns()
        return Pong(msg.t_host, received, time.monotonic_ns())

    def _on_stats(self, msg: GetStats) -> Message:
        return Stats(self.stats())

    # --- events and steps --------------------------------------------------------------------
    def _on_events(self, frame: Frame, msg: Events) -> None:
        if not self.gaps.observe(frame.seq):
            return  # a duplicate, or older than a frame already counted: its steps may have run
        self.counters["events_rx"] += len(msg)
        dropped = self.queue.push((msg, frame.flags))
        if dropped is not None:
            self.counters["events_dropped"] += len(dropped[0])

    def _drain(self) -> None:
        while self.queue:
            msg, flags = self.queue.pop()
            self._apply(msg, flags)
        self._run_ready()
        self._send_credit()

    def _apply(self, msg: Events, flags: int) -> None:
        n = len(msg)
        if self.program is None or not self.running:
            self.counters["events_ignored"] += n
            return
        if msg.port >= len(self.in_ports):
            self.counters["events_invalid"] += n
            return
        if n:
            steps, ids, counts = msg.arrays()
            ok = (ids < self.in_ports[msg.port][1]) & (steps >= self._run_from)
            self.counters["events_invalid"] += int(np.count_nonzero(ids >= self.in_ports[msg.port][1]))
            self.counters["events_late"] += int(np.count_nonzero(steps < self._run_from))
            if not ok.all():
                steps, ids, counts = steps[ok], ids[ok], counts[ok]
            if steps.size:
                self._pending.append((msg.port, steps, ids, counts))
        end = msg.base_step + msg.n_steps - (1 if flags & FLAG_MORE and msg.n_steps else 0)
        if end > self._horizons[msg.port]:
            self._horizons[msg.port] = end

    def _reset_steps(self) -> None:
        self._run_from = 0
        self._horizons = [0] * max(1, len(self.in_ports))
        self._pending = []

    def _run_ready(self) -> None:
        if not self.running or self.sim is None:
            return
        end = min(self._horizons)
        if end <= self._run_from:
            return
        pending = self._pending
        self._pending = []
        while self._run_from < end:
            first = self._run_from
            count = min(end - first, self.max_chunk_steps)
            inputs = [np.zeros((1, count, n), dtype=np.int64) for _, n in self.in_ports]
            keep = []
            for port, steps, ids, counts in pending:
                inside = steps < first + count
                np.add.at(inputs[port][0], (steps[inside] - first, ids[inside]), counts[inside])
                if not inside.all():
                    rest = ~inside
                    keep.append((port, steps[rest], ids[rest], counts[rest]))
            pending = keep
            try:
                if len(inputs) == 1:
                    trace = self.sim.run(inputs[0])
                else:
                    trace = self.sim.run(
                        {name: arr for (name, _), arr in zip(self.in_ports, inputs, strict=True)}
                    )
            except Exception as exc:  # the board must report, not die: any emulator failure becomes ERROR
                self.running = False
                self._pending = pending
                self._send_notice(Error(Reason.EMULATOR_FAILED, f"step {first}: {type(exc).__name__}: {exc}"))
                return
            self._run_from = first + count
            self.counters["steps_run"] += count
            for index, (name, _) in enumerate(self.out_ports):
                self._send_spikes(index, first, count, np.asarray(trace.spikes[name])[0])
        self._pending = pending

    def _send_spikes(self, port: int, first: int, count: int, spikes: np.ndarray) -> None:
        t, neuron = np.nonzero(spikes)
        runs = pack_runs(
            Spikes, port, first, first + count, t + first, neuron, spikes[t, neuron], self.payload_limit
        )
        for msg, flags in runs:
            self._send(encode_frame(Spikes.TYPE, self._spike_seq, msg.encode(), flags))
            self._spike_seq = seq_add(self._spike_seq, 1)
            self.counters["spike_frames_tx"] += 1
            self.counters["spikes_tx"] += len(msg)

    def _send_credit(self, force: bool = False) -> None:
        limit = seq_add(self.gaps.expected, self.queue.capacity - len(self.queue))
        if force or limit != self._credit_sent:
            self._credit_sent = limit
            self._send_notice(Credit(limit))

    def _send_notice(self, msg: Message) -> None:
        self._send(encode_frame(msg.TYPE, self._notice_seq, msg.encode()))
        self._notice_seq = seq_add(self._notice_seq, 1)

    def _send(self, data: bytes) -> None:
        self.link.send(data)
        self.counters["frames_tx"] += 1


class BoardThread:
    """Run ``board.serve()`` in a daemon thread for the duration of a ``with`` block.

    ``error`` holds what ended the thread early (a LinkError when the host side closed), else None.
    """

    def __init__(self, board: SimBoard, poll: float = 0.02) -> None:
        self.board = board
        self.poll = poll
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simboard", daemon=True)

    def _run(self) -> None:
        try:
            self.board.serve(self.stop_event, self.poll)
        except LinkError as exc:
            self.error = exc

    def start(self) -> BoardThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> BoardThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def sim_board_link(
    target: str,
    *,
    baudrate: int = 3_000_000,
    pace: bool = False,
    host_faults: FaultInjector | None = None,
    board_faults: FaultInjector | None = None,
    **board_options: Any,
) -> Iterator[tuple[Link, SimBoard, BoardThread]]:
    """A SimBoard serving the master side of a new pty, and an open host Link on its slave path.

    Yields ``(host_link, board, board_thread)``; on exit the board stops and both ends close. ``pace``
    makes both sides transmit at ``baudrate`` like a UART; the fault injectors damage what the host
    (``host_faults``) or the board (``board_faults``) transmits.
    """
    board_link = Link.pty(baudrate=baudrate, pace=pace, faults=board_faults).open()
    try:
        host_link = Link(board_link.url, baudrate=baudrate, pace=pace, faults=host_faults).open()
    except BaseException:
        board_link.close()
        raise
    board_link.peer_attached()
    board = SimBoard(board_link, target, **board_options)
    thread = BoardThread(board).start()
    try:
        yield host_link, board, thread
    finally:
        thread.stop()
        host_link.close()
        board_link.close()
