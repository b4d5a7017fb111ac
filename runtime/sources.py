"""Event sources: iterables of time-ordered event chunks from files, synthetic scenes and an eDVS port.

A source yields :data:`runtime.events.EVENT_DTYPE` arrays (``x, y`` uint16 px, ``t`` int64 µs, ``p``
int8 0/1), each time-ordered, chunks in time order; a chunk may be empty (a live source with nothing
to say lets the consumer look at its clock). Every source has ``width``, ``height`` (px, None if
unknown), ``live`` (True when chunks arrive in real time), ``stats()`` (its own counters) and
``close()``; sources are context managers.

:func:`open_source` turns a CLI string into a source::

    rec.raw                                 a file (any format runtime.events reads)
    file:rec.raw?realtime=1&speed=2         a file paced to real time (speed × real time)
    serial:/dev/ttyUSB0?format=E2&baud=4000000      a live eDVS on a serial port (any pyserial URL)
    synthetic:poisson?rate=50&width=64&height=64&duration=2&seed=1
    synthetic:bar?speed=200&direction=30&size=4     (also disc, square)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np

from runtime.edvs import EDVS_HEIGHT, EDVS_WIDTH, EdvsDecoder, EdvsFormat, get_format
from runtime.events import EVENT_DTYPE, iter_events, read_header
from spikeforge.errors import LinkError

__all__ = [
    "EventSource",
    "FileSource",
    "MovingBarSource",
    "MovingShapeSource",
    "PoissonSource",
    "SerialSource",
    "open_source",
]


class EventSource:
    """Base of all sources: iterate for chunks; ``close()`` releases what the source holds."""

    width: int | None = None
    height: int | None = None
    live: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Source-side counters (e.g. bytes discarded by a decoder)."""
        return {}

    def close(self) -> None:
        """Release files and ports (idempotent)."""

    def __enter__(self) -> EventSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- files ---------------------------------------------------------------------------------------
class FileSource(EventSource):
    """Events of a recording via ``runtime.events.iter_events``, in chunks of ``chunk_events``.

    ``realtime=True`` paces the chunks to the recording's own clock divided by ``speed`` (2.0 = twice
    as fast): each slice of ``slice_us`` µs of sensor time is released when the wall clock reaches its
    end, so a streaming consumer sees the delays a live camera would give. ``width``/``height``
    default to the file header's sensor size when the format states one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_events: int = 65_536,
        realtime: bool = False,
        speed: float = 1.0,
        format: str | None = None,
        slice_us: int = 10_000,
        width: int | None = None,
        height: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"file source speed={speed}: must be > 0")
        self.path = os.fspath(path)
        self.chunk_events = int(chunk_events)
        self.realtime = realtime
        self.live = realtime
        self.speed = float(speed)
        self.format = format
        self.slice_us = int(slice_us)
        self._clock, self._sleep = clock, sleep
        self.width, self.height = width, height
        if width is None or height is None:
            header = read_header(self.path, format)
            self.width = width if width is not None else header.width
            self.height = height if height is not None else header.height

    def __iter__(self) -> Iterator[np.ndarray]:
        chunks = iter_events(self.path, chunk_events=self.chunk_events, format=self.format)
        if not self.realtime:
            yield from chunks
            return
        start_wall: float | None = None
        start_t = 0
        for chunk in chunks:
            if chunk.size == 0:
                continue
            if start_wall is None:
                start_wall, start_t = self._clock(), int(chunk["t"][0])
            rel = chunk["t"].astype(np.int64) - start_t
            slice_id = rel // self.slice_us
            edges = np.flatnonzero(np.diff(slice_id)) + 1
            for piece in np.split(chunk, edges):
                due = start_wall + (int(piece["t"][-1]) - start_t) / 1e6 / self.speed
                wait = due - self._clock()
                if wait > 0:
                    self._sleep(wait)
                yield piece


# --- synthetic -----------------------------------------------------------------------------------
def _chunk_bounds(t0: int, duration_us: int, chunk_us: int) -> Iterator[tuple[int, int]]:
    start = t0
    end = t0 + duration_us
    while start < end:
        stop = min(start + chunk_us, end)
        yield start, stop
        start = stop


class PoissonSource(EventSource):
    """Homogeneous Poisson noise: every pixel fires at ``rate_hz`` Hz (both polarities together).

    ``method="exact"`` (default) draws, per chunk of ``chunk_us`` µs and pixel, a Poisson number of
    events with mean ``rate_hz · chunk_us / 1e6`` at uniform times (floored to µs); each event is ON or
    OFF with probability 1/2, so each polarity is a Poisson process of ``rate_hz / 2``.
    ``method="bernoulli"`` is the textbook discretisation (Heeger 2000): per step of ``dt_us`` µs, a
    pixel fires iff ``u ≤ rate_hz · dt_us / 1e6`` for a uniform ``u``; it needs ``rate · dt < 1`` and
    converges to the exact process as ``dt → 0`` (the exact method is that limit without drawing
    ``W·H·T/dt`` numbers). Seeded with ``seed``: the same arguments give the same events.
    """

    def __init__(
        self,
        width: int,
        height: int,
        rate_hz: float,
        duration_us: int,
        seed: int = 0,
        chunk_us: int = 10_000,
        t0: int = 0,
        method: str = "exact",
        dt_us: int = 1000,
    ) -> None:
        if rate_hz < 0 or duration_us < 0 or chunk_us < 1:
            raise ValueError("poisson source: rate_hz, duration_us must be >= 0 and chunk_us >= 1")
        if method not in ("exact", "bernoulli"):
            raise ValueError(f"poisson method {method!r}: use 'exact' or 'bernoulli'")
        if method == "bernoulli" and rate_hz * dt_us / 1e6 >= 1:
            raise ValueError(
                f"poisson bernoulli: rate {rate_hz} Hz x dt {dt_us} µs = {rate_hz * dt_us / 1e6:.3g} >= 1; "
                "lower dt_us or use method='exact'"
            )
        self.width, self.height = int(width), int(height)
        self._w, self._h = int(width), int(height)
        self.rate_hz, self.duration_us, self.seed = float(rate_hz), int(duration_us), seed
        self.chunk_us, self.t0, self.method, self.dt_us = int(chunk_us), int(t0), method, int(dt_us)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        npix = self._w * self._h
        for start, stop in _chunk_bounds(self.t0, self.duration_us, self.chunk_us):
            if self.method == "exact":
                counts = rng.poisson(self.rate_hz * (stop - start) / 1e6, size=npix)
                pix = np.repeat(np.arange(npix), counts)
                t = rng.integers(start, stop, size=pix.size)
            else:
                steps = np.arange(start, stop, self.dt_us)
                fired = rng.random((steps.size, npix)) <= self.rate_hz * self.dt_us / 1e6
                k, pix = np.nonzero(fired)
                t = steps[k]
            order = np.argsort(t, kind="stable")
            ev = np.zeros(pix.size, dtype=EVENT_DTYPE)
            ev["t"] = t[order]
            ev["y"], ev["x"] = np.divmod(pix[order], self._w)
            ev["p"] = rng.integers(0, 2, size=pix.size)
            yield ev


class MovingShapeSource(EventSource):
    """A bright ``shape`` (``"bar"``, ``"disc"`` or ``"square"``) moving over a dark sensor.

    It moves at ``speed_px_s`` px/s towards ``direction_deg`` (0° = +x, 90° = +y, i.e. down the rows
    of a sensor whose y grows downwards) along a line through the sensor centre, entering and leaving
    fully and then starting over. ``size`` (px) is the bar's thickness (it spans the whole sensor),
    the disc's diameter or the square's side (axis-aligned). The scene is sampled every ``step_us`` µs
    (default: the time to move 0.5 px); a pixel entering the shape gives an ON event (p = 1, leading
    edge), a pixel leaving it an OFF event (p = 0, trailing edge), at the sample time.
    """

    SHAPES = ("bar", "disc", "square")

    def __init__(
        self,
        width: int = 64,
        height: int = 64,
        shape: str = "bar",
        size: float = 4.0,
        speed_px_s: float = 100.0,
        direction_deg: float = 0.0,
        duration_us: int = 1_000_000,
        chunk_us: int = 10_000,
        t0: int = 0,
        step_us: int | None = None,
    ) -> None:
        if shape not in self.SHAPES:
            raise ValueError(f"unknown shape {shape!r}; known: {', '.join(self.SHAPES)}")
        if speed_px_s <= 0 or size <= 0:
            raise ValueError(f"moving {shape}: speed {speed_px_s} px/s and size {size} px must be > 0")
        self.width, self.height, self.shape, self.size = int(width), int(height), shape, float(size)
        self._w, self._h = int(width), int(height)
        self.speed_px_s, self.direction_deg = float(speed_px_s), float(direction_deg)
        self.duration_us, self.chunk_us, self.t0 = int(duration_us), int(chunk_us), int(t0)
        self.step_us = int(step_us) if step_us else max(1, int(0.5e6 / self.speed_px_s))
        theta = math.radians(self.direction_deg)
        self._u = (math.cos(theta), math.sin(theta))
        self._half_path = (abs(self._u[0]) * width + abs(self._u[1]) * height) / 2 + self.size / 2 + 1

    def masks(self, t_rel_us: np.ndarray) -> np.ndarray:
        """Inside-the-shape masks ``bool [len(t), H, W]`` at times ``t_rel_us`` (µs after ``t0``)."""
        ux, uy = self._u
        travel = self.speed_px_s * np.asarray(t_rel_us, dtype=np.float64) / 1e6
        s = np.mod(travel, 2 * self._half_path) - self._half_path
        cx = (self._w - 1) / 2 + s * ux
        cy = (self._h - 1) / 2 + s * uy
        dx = np.arange(self._w)[None, None, :] - cx[:, None, None]
        dy = np.arange(self._h)[None, :, None] - cy[:, None, None]
        r = self.size / 2
        if self.shape == "bar":
            inside: np.ndarray = np.abs(dx * ux + dy * uy) <= r
        elif self.shape == "disc":
            inside = dx * dx + dy * dy <= r * r
        else:
            inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        return inside

    def __iter__(self) -> Iterator[np.ndarray]:
        n_steps = self.duration_us // self.step_us + 1
        per_chunk = max(1, self.chunk_us // self.step_us)
        prev = self.masks(np.array([0]))[0]  # the shape starts off-sensor
        for k0 in range(1, n_steps, per_chunk):
            ks = np.arange(k0, min(k0 + per_chunk, n_steps))
            cur = self.masks(ks * self.step_us)
            before = np.concatenate([prev[None], cur[:-1]])
            on = cur & ~before
            off = before & ~cur
            prev = cur[-1]
            k_on, y_on, x_on = np.nonzero(on)
            k_off, y_off, x_off = np.nonzero(off)
            k = np.concatenate([k_on, k_off])
            order = np.argsort(k, kind="stable")
            ev = np.zeros(k.size, dtype=EVENT_DTYPE)
            ev["t"] = self.t0 + ks[k[order]] * self.step_us
            ev["x"] = np.concatenate([x_on, x_off])[order]
            ev["y"] = np.concatenate([y_on, y_off])[order]
            ev["p"] = np.concatenate([np.ones(k_on.size), np.zeros(k_off.size)])[order]
            yield ev


class MovingBarSource(MovingShapeSource):
    """:class:`MovingShapeSource` with ``shape="bar"``."""

    def __init__(self, width: int = 64, height: int = 64, **kwargs: Any) -> None:
        super().__init__(width, height, shape="bar", **kwargs)


# --- a live eDVS on a serial port ------------------------------------------------------------------
class SerialSource(EventSource):
    """Events from an eDVS-family sensor on a serial port (any pyserial URL: a device, ``loop://``,
    ``socket://host:port``, a pty path).

    Opens the port at ``baud`` with RTS/CTS (as eDVS boards expect), optionally sends the format
    command and ``E+`` to start streaming (``E-`` on close), and decodes with :class:`EdvsDecoder`.
    Each read waits at most ``read_timeout_s``; an empty read yields an empty chunk so that the
    consumer can keep its clock. Events without device time (E0) get host time since open (µs).
    A failing port raises :class:`LinkError`. This class is the only place the runtime opens a serial
    port itself outside ``runtime.link``.
    """

    live = True

    def __init__(
        self,
        url: str,
        format: str | EdvsFormat = "E2",
        baud: int = 4_000_000,
        rtscts: bool = True,
        start: bool = True,
        read_timeout_s: float = 0.02,
        max_read: int = 1 << 16,
        width: int = EDVS_WIDTH,
        height: int = EDVS_HEIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.format = get_format(format)
        self.baud, self.rtscts, self.start = int(baud), rtscts, start
        self.read_timeout_s, self.max_read = read_timeout_s, int(max_read)
        self.width, self.height = width, height
        self._clock = clock
        self.decoder = EdvsDecoder(self.format)
        self.bytes_read = 0
        self._port: Any = None
        self._stopped = False

    def open(self) -> None:
        """Open the port and start the sensor (called by iteration if needed)."""
        if self._port is not None:
            return
        import serial  # pyserial: imported here so that offline users never need it

        try:
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baud, rtscts=self.rtscts, timeout=self.read_timeout_s
            )
            if self.start:
                cmd = (f"{self.format.command}\n" if self.format.command else "") + "E+\n"
                self._port.write(cmd.encode("ascii"))
                self._port.flush()
        except (serial.SerialException, OSError, ValueError) as exc:
            self._port = None
            raise LinkError(f"serial source {self.url!r}: cannot open at {self.baud} baud: {exc}") from exc
        self._t_open = self._clock()

    def stop(self) -> None:
        """Make a running iteration end after its current read (thread-safe)."""
        self._stopped = True

    def __iter__(self) -> Iterator[np.ndarray]:
        import serial

        self.open()
        port = self._port
        while not self._stopped:
            try:
                waiting = port.in_waiting
                data = port.read(min(self.max_read, max(1, waiting)))
            except (serial.SerialException, OSError) as exc:
                raise LinkError(
                    f"serial source {self.url!r}: read failed after {self.bytes_read} bytes: {exc}"
                ) from exc
            self.bytes_read += len(data)
            t_host = int((self._clock() - self._t_open) * 1e6)
            yield self.decoder.feed(data, t_host_us=t_host) if data else np.zeros(0, dtype=EVENT_DTYPE)

    def stats(self) -> dict[str, int]:
        return {
            "bytes_read": self.bytes_read,
            "bytes_discarded": self.decoder.discarded,
            "resyncs": self.decoder.resyncs,
        }

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        try:
            if self.start:
                port.write(b"E-\n")
                port.flush()
        except Exception:  # noqa: BLE001 - the port may already be gone; closing must not fail
            pass
        finally:
            port.close()


# --- the CLI spec parser ---------------------------------------------------------------------------
def _split_query(spec: str) -> tuple[str, dict[str, str]]:
    base, _, query = spec.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True))


def _num(params: dict[str, str], key: str, default: float) -> float:
    return float(params.pop(key)) if key in params else default


def _check_empty(params: dict[str, str], what: str, known: str) -> None:
    if params:
        raise ValueError(f"{what}: unknown option(s) {', '.join(sorted(params))}; known: {known}")


#: eDVS format fields settable from a ``serial:`` URL query
_EDVS_KEYS = (
    "ts_bytes",
    "ts_mode",
    "byteorder",
    "sync_bit",
    "sync_value",
    "y_first",
    "polarity_bit",
    "on_value",
    "ts_tick_us",
)


def open_source(spec: str, **kwargs: Any) -> EventSource:
    """A source from a CLI string (see the module docstring); ``kwargs`` go to the source class."""
    if spec.startswith("serial:"):
        url, params = _split_query(spec[len("serial:") :])
        fmt_name = params.pop("format", "E2")
        overrides = {k: params.pop(k) for k in _EDVS_KEYS if k in params}
        fmt = get_format(fmt_name, **overrides)
        baud = int(_num(params, "baud", 4_000_000))
        rtscts = params.pop("rtscts", "1").lower() not in ("0", "false", "no", "off")
        start = params.pop("start", "1").lower() not in ("0", "false", "no", "off")
        # anything else belongs to the pyserial URL itself (e.g. loop://?logging=debug)
        if params:
            url = f"{url}?{urlencode(params)}"
        return SerialSource(url, format=fmt, baud=baud, rtscts=rtscts, start=start, **kwargs)
    if spec.startswith("synthetic:"):
        name, params = _split_query(spec[len("synthetic:") :])
        name = name.lower()
        width = int(_num(params, "width", 64))
        height = int(_num(params, "height", 64))
        duration_us = int(_num(params, "duration", 1.0) * 1e6)
        chunk_us = int(_num(params, "chunk_us", 10_000))
        if name == "poisson":
            src: EventSource = PoissonSource(
                width,
                height,
                _num(params, "rate", 20.0),
                duration_us,
                seed=int(_num(params, "seed", 0)),
                chunk_us=chunk_us,
                **kwargs,
            )
            _check_empty(params, spec, "width, height, duration (s), chunk_us, rate (Hz), seed")
            return src
        if name in MovingShapeSource.SHAPES:
            src = MovingShapeSource(
                width,
                height,
                shape=name,
                size=_num(params, "size", 4.0),
                speed_px_s=_num(params, "speed", 100.0),
                direction_deg=_num(params, "direction", 0.0),
                duration_us=duration_us,
                chunk_us=chunk_us,
                **kwargs,
            )
            _check_empty(
                params,
                spec,
                "width, height, duration (s), chunk_us, size (px), speed (px/s), direction (deg)",
            )
            return src
        raise ValueError(
            f"unknown synthetic source {name!r}; known: poisson, {', '.join(MovingShapeSource.SHAPES)}"
        )
    if spec.startswith("file:"):
        path, params = _split_query(spec[len("file:") :])
        realtime = params.pop("realtime", "0").lower() in ("1", "true", "yes", "on")
        speed = _num(params, "speed", 1.0)
        chunk = int(_num(params, "chunk", 65_536))
        file_format = params.pop("format", None)
        _check_empty(params, spec, "realtime, speed, chunk, format")
        return FileSource(
            path, chunk_events=chunk, realtime=realtime, speed=speed, format=file_format, **kwargs
        )
    if not os.path.exists(spec):
        raise FileNotFoundError(
            f"source {spec!r}: no such file; use a path, file:PATH?realtime=1, serial:URL?format=E2 or "
            "synthetic:poisson|bar|disc|square?..."
        )
    return FileSource(spec, **kwargs)
