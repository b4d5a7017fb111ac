"""Transforms: per-event reference semantics, tonic's pinned quirks, and chunked == whole for every one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.transforms import (
    EVENT_DTYPE,
    Crop,
    Denoise,
    Downsample,
    HotPixels,
    MergePolarity,
    Pipeline,
    Refractory,
    SplitPolarity,
    TimeBinner,
    ToAxons,
    Transform,
    parse_transforms,
)
from spikeforge.errors import ProgramError


def make_events(x, y, t, p=None) -> np.ndarray:
    ev = np.zeros(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"] = x, y, t
    ev["p"] = 0 if p is None else p
    return ev


@st.composite
def event_streams(draw, max_xy: int = 6, max_n: int = 80):
    n = draw(st.integers(0, max_n))
    x = draw(st.lists(st.integers(0, max_xy - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, max_xy - 1), min_size=n, max_size=n))
    dt = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    t0 = draw(st.integers(-50, 1000))
    ev = make_events(x, y, t0 + np.cumsum(np.asarray(dt, dtype=np.int64)), p)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5)))
    return ev, cuts


def run_chunked(make: type[Transform] | object, ev: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, dict]:
    tr = make() if callable(make) and not isinstance(make, Transform) else make
    assert isinstance(tr, Transform)
    parts = [tr(chunk) for chunk in np.split(ev, cuts)] + [tr.flush()]
    return np.concatenate(parts), tr.drop_counts()


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype.names:
        for f in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(a[f], b[f])
    else:
        np.testing.assert_array_equal(a, b)


FACTORIES = {
    "crop": lambda: Crop(1, 2, 3, 3),
    "downsample": lambda: Downsample(2, 3),
    "merge": MergePolarity,
    "split": SplitPolarity,
    "split_on": lambda: SplitPolarity(keep=1),
    "refractory": lambda: Refractory(30),
    "refractory_pp": lambda: Refractory(30, per_polarity=True),
    "refractory_tonic": lambda: Refractory(25, tonic_compat=True),
    "denoise4": lambda: Denoise(20),
    "denoise8": lambda: Denoise(20, neighbours=8),
    "denoise_tonic": lambda: Denoise(20, tonic_compat=True),
    "hot": lambda: HotPixels(max_rate_hz=40_000, window_us=100),
    "hot_t0": lambda: HotPixels(max_rate_hz=20_000, window_us=70, t0=-100, pixels=[(1, 1)]),
    "binner": lambda: TimeBinner(17, (6, 6, 2), t0=0),
    "binner_auto": lambda: TimeBinner(25, (4, 5, 1)),
    "pipeline": lambda: Pipeline(
        Refractory(10),
        Denoise(60, neighbours=8),
        Downsample(2),
        TimeBinner(20, (3, 3, 2)),
        ToAxons((3, 3, 2), 18),
    ),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
@settings(max_examples=15, deadline=None)
@given(data=event_streams())
def test_chunked_equals_whole(name: str, data) -> None:
    ev, cuts = data
    whole, whole_drops = run_chunked(FACTORIES[name](), ev, [])
    chunked, chunked_drops = run_chunked(FACTORIES[name](), ev, cuts)
    assert_same(whole, chunked)
    assert whole_drops == chunked_drops


# --- per-event references ------------------------------------------------------------------------
def refractory_ref(ev: np.ndarray, d: int, tonic: bool, per_pol: bool = False) -> np.ndarray:
    last: dict = {}
    keep = []
    for e in ev:
        key = (int(e["x"]), int(e["y"]), int(e["p"]) if per_pol else 0)
        t = int(e["t"])
        if tonic:
            prev = last.get(key, -d)
            keep.append(t - prev > d)
            last[key] = t
        else:
            ok = key not in last or t - last[key] >= d
            keep.append(ok)
            if ok:
                last[key] = t
    return ev[np.asarray(keep, dtype=bool)]


def denoise_ref(ev: np.ndarray, d: int, neighbours: int, tonic: bool) -> np.ndarray:
    last: dict = {}
    offs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if neighbours == 8:
        offs += [(-1, -1), (1, -1), (-1, 1), (1, 1)]
    keep = []
    for e in ev:
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        default = 0 if tonic else None
        ok = False
        for dx, dy in offs:
            tn = last.get((x + dx, y + dy), default if x + dx >= 0 and y + dy >= 0 else None)
            if tn is not None and t - tn < d:
                ok = True
        keep.append(ok)
        last[(x, y)] = t
    return ev[np.asarray(keep, dtype=bool)]


def hot_ref(ev: np.ndarray, rate: float, window: int, t0: int | None, pixels=()) -> np.ndarray:
    thr = rate * window / 1e6
    counts: dict = {}
    prev_counts: dict = {}
    cur = 0
    keep = []
    if t0 is None and ev.size:
        t0 = int(ev["t"][0])
    for e in ev:
        k = (int(e["t"]) - t0) // window
        if k != cur:
            prev_counts = counts if k == cur + 1 else {}
            counts, cur = {}, k
        key = (int(e["x"]), int(e["y"]))
        counts[key] = counts.get(key, 0) + 1
        ok = key not in pixels and prev_counts.get(key, 0) <= thr and counts[key] <= thr
        keep.append(ok)
    return ev[np.asarray(keep, dtype=bool)]


@settings(max_examples=30, deadline=None)
@given(data=event_streams(), d=st.integers(0, 60), tonic=st.booleans(), per_pol=st.booleans())
def test_refractory_matches_reference(data, d: int, tonic: bool, per_pol: bool) -> None:
    ev, _ = data
    assert_same(
        Refractory(d, per_polarity=per_pol, tonic_compat=tonic)(ev), refractory_ref(ev, d, tonic, per_pol)
    )


@settings(max_examples=30, deadline=None)
@given(data=event_streams(), d=st.integers(1, 60), n8=st.booleans(), tonic=st.booleans())
def test_denoise_matches_reference(data, d: int, n8: bool, tonic: bool) -> None:
    ev, _ = data
    nb = 8 if n8 else 4
    assert_same(Denoise(d, neighbours=nb, tonic_compat=tonic)(ev), denoise_ref(ev, d, nb, tonic))


@settings(max_examples=30, deadline=None)
@given(data=event_streams(max_xy=3), rate=st.sampled_from([10_000.0, 30_000.0, 55_000.0]))
def test_hot_pixels_match_reference(data, rate: float) -> None:
    ev, _ = data
    got = HotPixels(rate, window_us=100, pixels=[(2, 2)])(ev)
    assert_same(got, hot_ref(ev, rate, 100, None, pixels=[(2, 2)]))


def test_tonic_refractory_quirk_pinned() -> None:
    """tonic's RefractoryPeriod(600) on t = 0, 500, 900, 2000 at one pixel keeps only 2000."""
    ev = make_events([3] * 4, [4] * 4, [0, 500, 900, 2000])
    np.testing.assert_array_equal(Refractory(600, tonic_compat=True)(ev)["t"], [2000])
    # a dead time after kept events instead: 0 kept, 500 dead, 900 kept (>= 600 after 0), 2000 kept
    np.testing.assert_array_equal(Refractory(600)(ev)["t"], [0, 900, 2000])


def test_tonic_denoise_startup_quirk_pinned() -> None:
    """tonic's Denoise lets every event with t < filter_time pass; ours needs a neighbour."""
    ev = make_events([0, 10, 11], [0, 10, 10], [5, 20, 30])
    np.testing.assert_array_equal(Denoise(100, tonic_compat=True)(ev)["t"], [5, 20, 30])
    np.testing.assert_array_equal(Denoise(100)(ev)["t"], [30])


def test_crop_downsample_polarity() -> None:
    ev = make_events([0, 5, 9, 4], [0, 5, 9, 6], [1, 2, 3, 4], [1, 0, 1, 1])
    c = Crop.center((10, 10, 2), 4, 4)  # offset 3: keeps 3..6
    out = c(ev)
    np.testing.assert_array_equal(out["x"], [2, 1])
    np.testing.assert_array_equal(out["y"], [2, 3])
    assert c.dropped == {"crop": 2}
    assert c.output_size((10, 10, 2)) == (4, 4, 2)
    d = Downsample(3)
    np.testing.assert_array_equal(d(ev)["x"], [0, 1, 3, 1])
    assert d.output_size((10, 10, 2)) == (4, 4, 2)
    assert MergePolarity()(ev)["p"].tolist() == [0, 0, 0, 0]
    assert SplitPolarity(keep=0)(ev)["t"].tolist() == [2]


def test_time_binner_fixed_origin_and_flush() -> None:
    ev = make_events([0, 1, 1, 0], [0, 0, 1, 1], [-5, 3, 12, 25], [0, 1, 1, 0])
    tb = TimeBinner(10, (2, 2, 2), t0=0)
    out = tb(ev)
    assert out.shape == (2, 8)  # bins [0,10) and [10,20) complete; [20,30) pending
    assert tb.dropped == {"before_t0": 1}
    assert out[0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]  # (x=1, y=0, p=1) -> (1*2+0)*2+1 = 5
    assert out[1, (1 * 2 + 1) * 2 + 1] == 1
    last = tb.flush()
    assert last.shape == (1, 8) and last[0, (0 * 2 + 1) * 2 + 0] == 1
    assert tb.next_bin == 3
    # late event for an emitted bin is counted, never silently added
    tb(make_events([0], [0], [15]))
    assert tb.dropped["late"] == 1


def test_time_binner_emits_empty_bins_and_advance() -> None:
    tb = TimeBinner(100, (1, 1, 1), t0=1000)
    out = tb(make_events([0, 0], [0, 0], [1000, 1550]))
    assert out.sum(axis=1).tolist() == [1, 0, 0, 0, 0]
    closed = tb.advance_to(1899)  # bins 5, 6, 7 end at 1600, 1700, 1800 <= 1899
    assert closed.sum(axis=1).tolist() == [1, 0, 0]
    assert tb.flush().shape[0] == 0
    assert tb.dropped == {}


def test_to_axons_layouts_and_clip() -> None:
    size = (3, 2, 2)
    to = ToAxons(size, 12, layout="yxp", max_count=1)
    x, y, p = np.array([2]), np.array([1]), np.array([1])
    assert to.axon_index(x, y, p, "pyx")[0] == (1 * 2 + 1) * 3 + 2
    assert to.axon_index(x, y, p)[0] == (1 * 3 + 2) * 2 + 1
    counts = np.zeros((1, 12), dtype=np.int32)
    counts[0, (1 * 2 + 1) * 3 + 2] = 3  # binner channel of (2, 1, 1)
    out = to(counts)
    assert out[0, 11] == 1 and out.sum() == 1
    assert to.dropped == {"clipped": 2}
    with pytest.raises(ProgramError, match="port 'in' has 10 axons"):
        ToAxons(size, 10, port="in")
    padded = ToAxons((2, 2, 1), 10, pad=True)
    assert padded(np.ones((2, 4), dtype=np.int32)).shape == (2, 10)


def test_binner_then_axons_matches_direct_mapping() -> None:
    rng = np.random.default_rng(1)
    n = 500
    ev = make_events(
        rng.integers(0, 5, n), rng.integers(0, 4, n), np.sort(rng.integers(0, 1000, n)), rng.integers(0, 2, n)
    )
    size = (5, 4, 2)
    for layout in ("pyx", "yxp", "pxy"):
        pipe = Pipeline(TimeBinner(100, size, t0=0), ToAxons(size, 40, layout=layout))
        got = np.concatenate([pipe(ev), pipe.flush()])
        ax = pipe.stages[1].axon_index(ev["x"], ev["y"], ev["p"])  # type: ignore[attr-defined]
        want = np.zeros((10, 40), dtype=np.int64)
        np.add.at(want, (ev["t"] // 100, ax), 1)
        np.testing.assert_array_equal(got, want)


def test_parse_transforms() -> None:
    ts = parse_transforms(
        "crop=64x48,downsample=2,refractory=1000,denoise=5000,hot=500,merge-polarity", (128, 128, 2)
    )
    assert [type(t).__name__ for t in ts] == [
        "Crop",
        "Downsample",
        "Refractory",
        "Denoise",
        "HotPixels",
        "MergePolarity",
    ]
    assert (ts[0].x0, ts[0].y0) == (32, 40)  # type: ignore[attr-defined]
    assert Pipeline(*ts).output_size((128, 128, 2)) == (32, 24, 1)
    assert isinstance(parse_transforms("crop=1:2:3x4", (8, 8, 2))[0], Crop)
    with pytest.raises(ValueError, match="unknown transform 'blur'"):
        parse_transforms("blur=3", (8, 8, 2))
    with pytest.raises(ValueError, match="bad transform"):
        parse_transforms("crop=abc", (8, 8, 2))


@pytest.mark.slow
def test_filters_are_fast_on_a_million_events() -> None:
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    ev = make_events(
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        np.sort(rng.integers(0, 10**7, n)),
        rng.integers(0, 2, n),
    )
    for tr in (
        Refractory(1000),
        Denoise(5000),
        HotPixels(1000),
        Pipeline(Downsample(4), TimeBinner(1000, (32, 32, 2), t0=0)),
    ):
        t = time.perf_counter()
        tr(ev)
        assert time.perf_counter() - t < 5.0, tr
