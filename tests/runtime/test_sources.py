"""Sources: Poisson statistics, moving-shape edges, file pacing, the spec parser and a live eDVS port."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from runtime.edvs import encode_events
from runtime.sources import (
    FileSource,
    MovingBarSource,
    MovingShapeSource,
    PoissonSource,
    SerialSource,
    open_source,
)
from runtime.transforms import EVENT_DTYPE
from spikeforge.errors import LinkError


def collect(src) -> np.ndarray:
    parts = list(src)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)


def assert_time_ordered(ev: np.ndarray) -> None:
    assert np.all(np.diff(ev["t"]) >= 0)


# --- Poisson -------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "bernoulli"])
def test_poisson_rate_and_intervals(method: str) -> None:
    w, h, rate, dur = 16, 16, 200.0, 2_000_000
    ev = collect(PoissonSource(w, h, rate, dur, seed=3, method=method, dt_us=100))
    assert_time_ordered(ev)
    expected = w * h * rate * dur / 1e6
    assert abs(ev.size - expected) < 4 * np.sqrt(expected)
    assert ev["t"].min() >= 0 and ev["t"].max() < dur
    assert abs(ev["p"].mean() - 0.5) < 0.03
    # inter-event intervals of one pixel: exponential, mean = std = 1/rate
    pix = ev["y"].astype(np.int64) * w + ev["x"]
    isi = np.concatenate([np.diff(ev["t"][pix == k]) for k in range(w * h)])
    assert abs(isi.mean() - 1e6 / rate) < 0.05 * 1e6 / rate
    if method == "exact":
        assert abs(isi.std() / isi.mean() - 1) < 0.05


def test_poisson_is_seeded() -> None:
    a = collect(PoissonSource(8, 8, 100, 100_000, seed=1))
    b = collect(PoissonSource(8, 8, 100, 100_000, seed=1))
    c = collect(PoissonSource(8, 8, 100, 100_000, seed=2))
    np.testing.assert_array_equal(a["t"], b["t"])
    assert a.size != c.size or not np.array_equal(a["t"], c["t"])


# --- moving shapes -------------------------------------------------------------------------------
def test_moving_bar_on_leads_off_trails() -> None:
    src = MovingBarSource(32, 8, size=4, speed_px_s=1000, direction_deg=0, duration_us=37_500)
    ev = collect(src)
    assert_time_ordered(ev)
    assert ev.size > 0 and set(np.unique(ev["p"])) == {0, 1}
    # at any time, ON events lie ahead (larger x) of the OFF events by the bar's thickness
    t_mid = np.median(ev["t"])
    near = np.abs(ev["t"] - t_mid) < 1000
    on_x = ev["x"][near & (ev["p"] == 1)].astype(float).mean()
    off_x = ev["x"][near & (ev["p"] == 0)].astype(float).mean()
    assert 3 <= on_x - off_x <= 5
    # each pixel row sees the bar once: one ON and one OFF per pixel over a full crossing (38 ms)
    row = ev[ev["y"] == 3]
    assert np.bincount(row["x"][row["p"] == 1], minlength=32).tolist() == [1] * 32
    # speed: the leading edge crosses 32 px in ~32 ms
    first_on = [row["t"][(row["p"] == 1) & (row["x"] == x)][0] for x in (4, 28)]
    assert abs((first_on[1] - first_on[0]) - 24_000) <= 1000


@pytest.mark.parametrize("shape", ["disc", "square"])
def test_moving_shape_diagonal_conserves_area(shape: str) -> None:
    src = MovingShapeSource(
        40, 40, shape=shape, size=8, speed_px_s=500, direction_deg=45, duration_us=200_000
    )
    ev = collect(src)
    assert_time_ordered(ev)
    # ON minus OFF = pixels inside the shape; it never goes negative and returns to 0 after leaving
    inside = np.cumsum(np.where(ev["p"] == 1, 1, -1))
    assert inside.min() >= 0
    assert inside.max() <= (64 if shape == "square" else 60) + 20
    assert inside[-1] == 0 or inside[-1] >= 0
    # motion direction: ON events' mean position increases along both axes over time
    on = ev[ev["p"] == 1]
    half = on.size // 2
    assert on["x"][half:].astype(float).mean() > on["x"][:half].astype(float).mean()
    assert on["y"][half:].astype(float).mean() > on["y"][:half].astype(float).mean()


# --- spec parser ---------------------------------------------------------------------------------
def test_open_source_parses_specs(tmp_path) -> None:
    s = open_source("synthetic:poisson?rate=10&width=4&height=3&duration=0.5&seed=2")
    assert isinstance(s, PoissonSource) and (s.width, s.height, s.duration_us, s.seed) == (4, 3, 500_000, 2)
    b = open_source("synthetic:disc?speed=50&direction=90&size=3")
    assert isinstance(b, MovingShapeSource) and b.shape == "disc" and b.direction_deg == 90
    ser = open_source("serial:loop://?format=E3&baud=115200&rtscts=0&byteorder=little&logging=debug")
    assert isinstance(ser, SerialSource)
    assert ser.url == "loop://?logging=debug" and ser.baud == 115200 and not ser.rtscts
    assert (ser.format.ts_bytes, ser.format.byteorder) == (3, "little")
    with pytest.raises(ValueError, match="unknown synthetic source 'blob'"):
        open_source("synthetic:blob")
    with pytest.raises(ValueError, match="unknown option"):
        open_source("synthetic:poisson?rte=3")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_source(str(tmp_path / "missing.raw"))


# --- files ---------------------------------------------------------------------------------------
def _write_npy(path, ev) -> None:
    from runtime.events import write_events

    write_events(path, ev)


def test_file_source_chunks_and_realtime_pacing(tmp_path) -> None:
    ev = collect(PoissonSource(8, 8, 500, 200_000, seed=5))
    path = tmp_path / "rec.raw"  # EVT 3.0
    _write_npy(path, ev)
    got = collect(FileSource(path, chunk_events=100))
    np.testing.assert_array_equal(got["t"], ev["t"])
    np.testing.assert_array_equal(got["x"], ev["x"])

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    src = FileSource(
        path, chunk_events=1000, realtime=True, speed=2.0, slice_us=10_000, clock=lambda: now[0], sleep=sleep
    )
    paced = collect(src)
    np.testing.assert_array_equal(paced["t"], ev["t"])
    # 200 ms of recording at speed 2 takes ~100 ms of (fake) wall time
    assert abs(now[0] - (int(ev["t"][-1]) - int(ev["t"][0])) / 2e6) < 1e-9
    assert len(slept) >= 15


# --- a live eDVS: loop:// and a pty pair ---------------------------------------------------------
def _bar_events() -> np.ndarray:
    ev = collect(MovingBarSource(64, 64, size=3, speed_px_s=2000, duration_us=50_000))
    return ev[(ev["x"] < 128) & (ev["y"] < 128)]


def _drain(src: SerialSource, want: int, timeout_s: float = 5.0) -> np.ndarray:
    parts, n, deadline = [], 0, time.monotonic() + timeout_s
    for chunk in src:
        parts.append(chunk)
        n += chunk.size
        if n >= want or time.monotonic() > deadline:
            break
    return np.concatenate(parts)


def test_serial_source_over_loop_url() -> None:
    ev = _bar_events()
    data = encode_events(ev, "E2")
    src = SerialSource("loop://", format="E2", baud=4_000_000, start=True)
    src.open()
    # loop:// echoes our own "!E2\nE+\n": 7 bytes without the sync bit, discarded by the decoder
    port = src._port

    def writer() -> None:
        for i in range(0, len(data), 1024):  # loop:// holds only 4096 bytes: write while reading
            port.write(data[i : i + 1024])
            time.sleep(0.001)

    th = threading.Thread(target=writer)
    th.start()
    got = _drain(src, ev.size)
    th.join()
    src.close()
    for f in ("x", "y", "p", "t"):
        np.testing.assert_array_equal(got[f], ev[f])
    assert src.stats()["bytes_discarded"] == len(b"!E2\nE+\n")
    assert src.stats()["bytes_read"] == len(data) + 7


def test_serial_source_over_a_pty_pair() -> None:
    master, slave = os.openpty()
    ev = _bar_events()
    noise = bytes([0x01, 0x7F, 0x22])
    data = noise + encode_events(ev, "edvstools-E2")
    src = SerialSource(os.ttyname(slave), format="edvstools-E2", baud=4_000_000, rtscts=False, start=False)
    try:
        src.open()

        def writer() -> None:
            for i in range(0, len(data), 333):
                os.write(master, data[i : i + 333])

        th = threading.Thread(target=writer)
        th.start()
        got = _drain(src, ev.size)
        th.join()
    finally:
        src.close()
        os.close(master)
        os.close(slave)
    np.testing.assert_array_equal(got["x"], ev["x"])
    np.testing.assert_array_equal(got["t"], ev["t"])
    assert src.decoder.discarded == len(noise)


def test_serial_source_reports_missing_port() -> None:
    src = SerialSource("/dev/does-not-exist-spikeforge", rtscts=False)
    with pytest.raises(LinkError, match="cannot open"):
        next(iter(src))
