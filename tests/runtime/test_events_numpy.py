"""Other tools' event arrays: any field order, aliases, compatible dtypes; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.events import EVENT_DTYPE, as_events, read_events, write_events
from spikeforge.errors import EventFormatError


def reference() -> np.ndarray:
    ev = np.zeros(4, EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = [1, 2, 3, 4], [5, 6, 7, 8], [10, 20, 30, 40], [1, 0, 1, 0]
    return ev


def test_event_dtype_contract():
    assert set(EVENT_DTYPE.names) == {"x", "y", "t", "p"}
    assert EVENT_DTYPE["x"] == np.uint16 and EVENT_DTYPE["y"] == np.uint16
    assert EVENT_DTYPE["t"] == np.int64 and EVENT_DTYPE["p"] == np.int8


@pytest.mark.parametrize(
    "dtype",
    [
        [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")],  # tonic events_struct
        [("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")],  # tonic DVSGesture order
        [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")],  # neuromorphic_drivers
        [("ts", "<i4"), ("x", "<i4"), ("y", "<i4"), ("pol", "<i4")],
        [("timestamp", "<i8"), ("x", "<u2"), ("y", "<u2"), ("polarity", "i1")],
    ],
)
def test_foreign_npy_files(tmp_path, dtype):
    ref = reference()
    arr = np.zeros(4, dtype=dtype)
    for name in arr.dtype.names:
        canonical = {"ts": "t", "timestamp": "t", "on": "p", "pol": "p", "polarity": "p"}.get(name, name)
        arr[name] = ref[canonical]
    path = tmp_path / "f.npy"
    np.save(path, arr)
    np.testing.assert_array_equal(read_events(path), ref)


def test_minus_one_polarity_and_columns_npz(tmp_path):
    ref = reference()
    path = tmp_path / "c.npz"
    np.savez(path, x=ref["x"], y=ref["y"], ts=ref["t"], p=np.where(ref["p"] == 1, 1, -1))
    np.testing.assert_array_equal(read_events(path), ref)
    np.savez(path, events=ref)
    np.testing.assert_array_equal(read_events(path), ref)


def test_write_accepts_foreign_arrays(tmp_path):
    ref = reference()
    foreign = np.zeros(4, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    for f in ("t", "x", "y", "p"):
        foreign[f] = ref[f]
    path = tmp_path / "w.raw"
    write_events(path, foreign, format="evt2")
    np.testing.assert_array_equal(read_events(path), ref)
    write_events(path, {"x": ref["x"], "y": ref["y"], "t": ref["t"], "p": ref["p"]}, format="evt3")
    np.testing.assert_array_equal(read_events(path), ref)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"x": [-1], "y": [0], "t": [0], "p": [0]}, "field 'x'"),
        ({"x": [0], "y": [70000], "t": [0], "p": [0]}, "field 'y'"),
        ({"x": [0], "y": [0], "t": [0.5], "p": [0]}, "integer microseconds"),
        ({"x": [0], "y": [0], "t": [0], "p": [2]}, "field 'p'"),
        ({"x": [0], "y": [0], "t": [0]}, "no field for 'p'"),
        ({"x": [0, 1], "y": [0], "t": [0], "p": [0]}, "shape"),
    ],
)
def test_bad_columns(columns, message):
    with pytest.raises(EventFormatError, match=message):
        as_events({k: np.asarray(v) for k, v in columns.items()})


def test_np_save_of_event_arrays_reads_back(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, reference())
    np.testing.assert_array_equal(read_events(path), reference())


def test_plain_arrays_are_refused():
    with pytest.raises(EventFormatError, match="structured array"):
        as_events(np.zeros((3, 4)))
