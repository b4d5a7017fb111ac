"""Every writer round-trips through its reader, whole and chunked, including time wraps and offsets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.events import EVENT_DTYPE, event_info, iter_events, read_events, read_header, write_events

WRITABLE = [
    ("evt2", "raw"),
    ("evt3", "raw"),
    ("aedat4", "aedat4"),
    ("aedat4-lz4", "aedat4"),
    ("aedat4-zstd", "aedat4"),
    ("npy", "npy"),
    ("npz", "npz"),
]


def make_events(n: int, seed: int = 0, t0: int = 0, span: int = 5_000_000, width: int = 640) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, 480, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = t0 + np.sort(rng.integers(0, span, n))
    # runs of neighbouring pixels firing together exercise EVT 3.0 vectors
    run = slice(1, n, 3)
    ev["t"][run] = ev["t"][0 : n - 1 : 3][: len(ev[run])]
    ev["y"][run] = ev["y"][0 : n - 1 : 3][: len(ev[run])]
    ev["p"][run] = ev["p"][0 : n - 1 : 3][: len(ev[run])]
    ev["x"][run] = np.minimum(ev["x"][0 : n - 1 : 3][: len(ev[run])] + 1, width - 1)
    return ev


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert len(a) == len(b)
    for f in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)


@pytest.mark.parametrize("chunk", [1_234, 9_000])
@pytest.mark.parametrize(("fmt", "ext"), WRITABLE)
def test_round_trip_whole_and_chunked(tmp_path, fmt, ext, chunk):
    if fmt.endswith("lz4"):
        pytest.importorskip("lz4")
    if fmt.endswith("zstd"):
        pytest.importorskip("zstandard")
    ev = make_events(20_000)
    path = tmp_path / f"a.{ext}"
    write_events(path, ev, format=fmt, width=640, height=480)
    got = read_events(path)
    assert got.dtype == EVENT_DTYPE
    assert_same(got, ev)
    chunks = list(iter_events(path, chunk_events=chunk))
    assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
    assert_same(np.concatenate(chunks), ev)


@pytest.mark.parametrize(("fmt", "ext"), WRITABLE[:3] + WRITABLE[5:])
def test_empty_round_trip(tmp_path, fmt, ext):
    path = tmp_path / f"e.{ext}"
    write_events(path, np.zeros(0, EVENT_DTYPE), format=fmt)
    assert len(read_events(path)) == 0
    assert list(iter_events(path)) == []
    assert event_info(path).count == 0


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "aedat4", "npy"])
def test_unix_time_and_long_gaps(tmp_path, fmt):
    """Absolute µs timestamps (beyond every counter) and hour-long silences survive."""
    ev = make_events(3_000, t0=1_700_000_000_000_000, span=10_000_000)
    ev["t"][1500:] += 3600 * 10**6  # 1 h gap: several EVT 3.0 wraps
    path = tmp_path / f"u.{fmt}"
    write_events(path, ev, format=fmt)
    assert_same(read_events(path, format=fmt), ev)
    assert_same(np.concatenate(list(iter_events(path, chunk_events=100, format=fmt))), ev)


@pytest.mark.parametrize("fmt", ["evt2", "evt3"])
def test_counter_wraps_inside_a_file(tmp_path, fmt):
    wrap = 1 << (34 if fmt == "evt2" else 24)
    ev = make_events(2_000, t0=wrap - 1_000_000, span=2_000_000)
    path = tmp_path / "w.raw"
    write_events(path, ev, format=fmt)
    got = read_events(path)
    assert_same(got, ev)
    assert got["t"].max() > wrap


def test_header_records_geometry_and_info(tmp_path):
    ev = make_events(5_000)
    path = tmp_path / "g.raw"
    write_events(path, ev, format="evt3", width=1280, height=720)
    header = read_header(path)
    assert (header.format, header.width, header.height) == ("evt3", 1280, 720)
    info = event_info(path)
    assert (info.width, info.height, info.resolution_source) == (1280, 720, "header")
    assert info.count == 5_000
    assert info.on_count == int(ev["p"].sum())
    assert info.duration_us == int(ev["t"][-1] - ev["t"][0])
    assert info["format"] == "evt3"
    npy = tmp_path / "g.npy"
    write_events(npy, ev)
    info = event_info(npy)
    assert (info.width, info.height, info.resolution_source) == (
        ev["x"].max() + 1,
        ev["y"].max() + 1,
        "events",
    )


def test_writers_reject_what_they_cannot_store(tmp_path):
    from spikeforge.errors import EventFormatError

    ev = make_events(10)
    unsorted = ev[::-1].copy()
    with pytest.raises(EventFormatError, match="sorted by time"):
        write_events(tmp_path / "a.raw", unsorted, format="evt2")
    wide = ev.copy()
    wide["x"][3] = 4000
    with pytest.raises(EventFormatError, match="x up to 2047"):
        write_events(tmp_path / "b.raw", wide, format="evt3")
    with pytest.raises(ValueError, match="cannot tell the format"):
        write_events(tmp_path / "c.bin", ev)
    with pytest.raises(ValueError, match="can be read but not written"):
        write_events(tmp_path / "d.dat", ev, format="dat")


event_lists = st.lists(
    st.tuples(
        st.integers(0, 2047),
        st.integers(0, 2047),
        st.integers(0, 1),
        st.integers(0, 40_000_000),
    ),
    max_size=60,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=event_lists, t0=st.integers(0, 1 << 40), chunk=st.integers(1, 17))
def test_property_round_trip(tmp_path, items, t0, chunk):
    ev = np.zeros(len(items), EVENT_DTYPE)
    if items:
        arr = np.array(items, dtype=np.int64)
        ev["x"], ev["y"], ev["p"], ev["t"] = arr[:, 0], arr[:, 1], arr[:, 2], t0 + np.sort(arr[:, 3])
    for fmt in ("evt2", "evt3", "aedat4", "npy"):
        path = tmp_path / f"h.{fmt}"
        write_events(path, ev, format=fmt)
        assert_same(read_events(path, format=fmt), ev)
        parts = list(iter_events(path, chunk_events=chunk, format=fmt))
        assert_same(np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE), ev)


@pytest.mark.parametrize("fmt", ["evt2", "evt3"])
def test_writer_state_across_pieces(tmp_path, monkeypatch, fmt):
    """Writers encode in pieces; time-high, row and vector state must carry across them."""
    from runtime.events import api

    monkeypatch.setattr(api, "WRITE_PIECE", 7)
    ev = make_events(500)
    path = tmp_path / "p.raw"
    write_events(path, ev, format=fmt)
    assert_same(read_events(path), ev)
