"""The serial link: the only module of spikeforge that touches a port.

A :class:`Link` moves whole frames (:mod:`runtime.framing`) over anything pyserial's
``serial.serial_for_url`` opens — a device (``/dev/ttyUSB0``, ``COM3``), a pty slave path
(``/dev/pts/7``), ``loop://``, ``socket://host:port`` — or over the master side of a pseudo-terminal it
creates itself (:meth:`Link.pty`), which is how a :class:`runtime.board.SimBoard` poses as a device.

* ``pace=True`` limits what this side transmits to ``baudrate / 10`` bytes per second (8N1: a start bit,
  8 data bits, a stop bit), so a pty, which is as fast as memory, behaves like a UART. The model is a
  driver's transmit buffer of ``tx_buffer`` bytes (Linux serial: 4096) in front of the line: the line
  shifts bytes back to back while the buffer holds any, and idles only when it runs empty; a write
  returns once what is left to shift fits the buffer. Bytes therefore reach the peer up to
  ``tx_buffer`` bytes' wire time early (13.7 ms at 3 Mbaud); throughput is exact.
* ``faults=FaultInjector(...)`` damages what this side transmits (:mod:`runtime.faults`).
* Every failure of the port — missing device, permissions, the other side of a pty closing, a USB
  adapter unplugged — is raised as :class:`~spikeforge.errors.LinkError` (``LinkTimeout`` for a write that
  cannot drain, ``LinkClosed`` when the other side of a pty closed it), with the port's name and what to
  check.

Threading: one thread may call :meth:`Link.receive` while others call :meth:`Link.send` (sends are
serialised by a lock). Stop the receiving thread before :meth:`Link.close`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import select
import termios
import threading
import time
import tty
from types import TracebackType
from typing import Any, Protocol

import serial

from runtime.faults import FaultInjector
from runtime.framing import MAX_PAYLOAD_LIMIT, Deframer, Frame, encode_frame
from spikeforge.errors import LinkClosed, LinkError, LinkTimeout

#: bits on a UART line per byte with 8N1 framing
BITS_PER_BYTE = 10
_PORT_ERRORS = (OSError, queue.Full, ValueError)


class Port(Protocol):
    """What a Link needs of a port: pyserial's ``Serial`` API subset."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


class PtyPort:
    """The master side of a pseudo-terminal as a port; the slave's path (``.path``) is what a peer opens.

    With ``keep_slave_open`` this side holds the slave open too, so peers may come and go (a device
    waiting for hosts); without it, the peer closing the slave ends the link with a LinkError (unplug).
    """

    def __init__(
        self, keep_slave_open: bool = False, timeout: float = 0.02, write_timeout: float = 5.0
    ) -> None:
        self._master, slave = os.openpty()
        tty.setraw(slave)  # a binary link: no echo, no line editing, no CR/LF translation
        self.path = os.ttyname(slave)
        # until the peer opens the path we hold the slave: with no slave open, reads on the master see EIO
        self._slave: int | None = slave
        self._keep = keep_slave_open
        os.set_blocking(self._master, False)
        self.timeout = timeout
        self.write_timeout = write_timeout
        self._closed = False

    def release_slave(self) -> None:
        """Drop our handle on the slave once the peer has opened it, so the peer closing it is seen."""
        if self._slave is not None and not self._keep:
            os.close(self._slave)
            self._slave = None

    @property
    def in_waiting(self) -> int:
        buf = fcntl.ioctl(self._master, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little")

    def read(self, size: int = 1) -> bytes:
        ready, _, _ = select.select([self._master], [], [], self.timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, max(size, 1 << 16))
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise LinkClosed(f"pty {self.path}: the other side closed it (EIO)") from None
            raise

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout
        while view:
            _, ready, _ = select.select([], [self._master], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise LinkTimeout(
                    f"pty {self.path}: {len(view)} bytes still unsent after {self.write_timeout} s; "
                    "the peer stopped reading"
                )
            try:
                sent = os.write(self._master, view)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise LinkClosed(f"pty {self.path}: the other side closed it (EIO)") from None
                raise
            view = view[sent:]
        return len(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None


class Link:
    """Frames over a serial port; a context manager. See the module docstring.

    ``port`` is a pyserial URL or device path. ``timeout`` is how long one port read may block, s (the
    granularity of :meth:`receive`). ``max_payload`` bounds the frames accepted (others count as rejects
    in :attr:`deframer`).
    """

    def __init__(
        self,
        port: str | None = None,
        *,
        baudrate: int = 115200,
        pace: bool = False,
        tx_buffer: int = 4096,
        faults: FaultInjector | None = None,
        max_payload: int = MAX_PAYLOAD_LIMIT,
        timeout: float = 0.02,
        write_timeout: float = 5.0,
        _port: Any = None,
    ) -> None:
        if baudrate <= 0:
            raise ValueError(f"baud rate {baudrate} ≤ 0")
        self.url = port if port is not None else getattr(_port, "path", "<port>")
        self.baudrate = baudrate
        self.pace = pace
        self.tx_buffer = tx_buffer
        self.faults = faults
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.deframer = Deframer(max_payload)
        self._port: Any = _port
        self._send_lock = threading.Lock()
        self._tx_free = 0.0  # monotonic time at which the paced line is idle again
        self.bytes_tx = 0
        self.frames_tx = 0
        self.lost: LinkError | None = None

    @classmethod
    def pty(cls, *, keep_slave_open: bool = False, **kwargs: Any) -> Link:
        """A link on the master side of a new pseudo-terminal; ``link.url`` is the slave path to give a peer.

        Without ``keep_slave_open``, call :meth:`peer_attached` once the peer has opened the path.
        """
        port = PtyPort(keep_slave_open, timeout=kwargs.get("timeout", 0.02))
        return cls(None, _port=port, **kwargs)

    def peer_attached(self) -> None:
        """For a :meth:`pty` link: the peer has the slave open; from now on its closing ends this link."""
        if isinstance(self._port, PtyPort):
            self._port.release_slave()

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> Link:
        if self._port is None:
            try:
                self._port = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=self.timeout, write_timeout=self.write_timeout
                )
            except _PORT_ERRORS as exc:
                raise LinkError(
                    f"cannot open serial port {self.url!r}: {exc}. Check the device path or URL "
                    "(e.g. /dev/ttyUSB0, COM3, loop://, socket://host:port), that no other program holds it, "
                    "and your permissions (Linux: the dialout group)"
                ) from exc
        self._write(b"\x00")  # ends any partial frame the peer holds from before we arrived
        return self

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except _PORT_ERRORS:
                pass  # already gone: closing is all we wanted

    def __enter__(self) -> Link:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- traffic -----------------------------------------------------------------------------
    def wire_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` occupy a UART at this link's baud rate."""
        return nbytes * BITS_PER_BYTE / self.baudrate

    def send(self, frame: bytes) -> None:
        """Transmit one encoded frame (from :func:`runtime.framing.encode_frame`)."""
        if self.faults is not None:
            with self._send_lock:
                data = self.faults.apply(frame)
            if not data:
                self.frames_tx += 1
                return
        else:
            data = frame
        self._write(data)
        self.frames_tx += 1

    def send_frame(self, type: int, seq: int, payload: bytes = b"", flags: int = 0) -> int:
        """Encode and transmit a frame; returns its size on the wire in bytes."""
        frame = encode_frame(type, seq, payload, flags)
        self.send(frame)
        return len(frame)

    def receive(self, timeout: float | None = None) -> list[Frame]:
        """The frames that arrive within ``timeout`` seconds (default: one port read), as soon as there is
        at least one; an empty list on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            port = self._require_open()
            try:
                data = port.read(max(1, min(port.in_waiting, 1 << 16)))
            except LinkError as exc:
                raise self._lost(exc) from None
            except _PORT_ERRORS as exc:
                raise self._lost(
                    LinkError(f"serial port {self.url!r}: link lost while receiving: {exc}")
                ) from exc
            if data:
                frames = self.deframer.feed(data)
                if frames:
                    return frames
            if time.monotonic() >= deadline:
                return []

    def stats(self) -> dict[str, int]:
        """Transmit and receive counters, including frame rejects by reason."""
        out = {
            "bytes_tx": self.bytes_tx,
            "frames_tx": self.frames_tx,
            "bytes_rx": self.deframer.bytes_in,
            "frames_rx": self.deframer.frames,
        }
        out.update({f"rejects_{reason}": n for reason, n in self.deframer.rejects.items()})
        return out

    # --- internals ---------------------------------------------------------------------------
    def _require_open(self) -> Any:
        if self.lost is not None:
            raise self.lost
        port = self._port
        if port is None:
            raise LinkError(f"serial port {self.url!r} is not open; call open() or use 'with Link(...)'")
        return port

    def _lost(self, exc: LinkError) -> LinkError:
        """Remember that the link is gone; later calls raise the same error.

        A ``LinkClosed`` already says the peer went away; any other port failure gets the likely cause.
        """
        message = str(exc)
        if not isinstance(exc, LinkClosed):
            message += "; the other end closed the link or the device was unplugged"
        self.lost = type(exc)(message)
        return self.lost

    def _write(self, data: bytes) -> None:
        with self._send_lock:
            port = self._require_open()
            if self.pace:
                now = time.monotonic()
                self._tx_free = max(now, self._tx_free) + self.wire_time(len(data))
                wait = self._tx_free - self.wire_time(self.tx_buffer) - now
                if wait > 0:
                    time.sleep(wait)  # the transmit buffer is full: the UART is still shifting out
            try:
                port.write(data)
            except LinkError as exc:
                raise self._lost(exc) from None
            except serial.SerialTimeoutException as exc:
                raise self._lost(
                    LinkTimeout(
                        f"serial port {self.url!r}: write did not drain in {self.write_timeout} s ({exc})"
                    )
                ) from exc
            except _PORT_ERRORS as exc:
                raise self._lost(
                    LinkError(f"serial port {self.url!r}: link lost while sending: {exc}")
                ) from exc
            self.bytes_tx += len(data)
