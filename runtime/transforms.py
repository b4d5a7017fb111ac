"""Event transforms that keep their state across chunks, ending in a Program's input axons.

Every transform is a small object with ``__call__(x) -> x`` and ``flush() -> x``: feeding a recording
chunk by chunk and then flushing gives exactly what feeding it whole and flushing gives (the tests
check this property for every transform). Event transforms take and return event arrays (fields
``x, y`` uint16 px, ``t`` int64 µs, ``p`` int8 0/1, accessed by name; time-ordered); :class:`TimeBinner`
turns events into counts ``int32 [T, P*H*W]`` and :class:`ToAxons` maps those onto the input axons of
a Program port, ``int32 [T, channels]``. :class:`Pipeline` composes them.

Sizes are ``(W, H, P)`` tuples as in tonic (width px, height px, polarities). Per-pixel state maps
grow on demand, so filters need no sensor size. Each transform counts what it removes in
``dropped`` (reason → events), which the streaming statistics report.

Relation to tonic (``tonic.transforms``, commit d0cb6df), whose per-call versions keep no state:

- :class:`Crop` = ``CenterCrop``/``RandomCrop`` without randomness (keeps ``x0 ≤ x < x0+w``, shifts).
- :class:`Downsample` = ``Downsample(spatial_factor=1/f)`` (truncating division, duplicates kept).
- :class:`Refractory` differs by default (dead time after a *kept* event, ``t − t_kept ≥ d``);
  ``tonic_compat=True`` reproduces ``RefractoryPeriod`` (memory of every event, strict ``>``, start −d).
- :class:`Denoise` matches ``Denoise`` (4 neighbours, not the pixel itself, strict ``<``) except that
  memory starts empty; ``tonic_compat=True`` reproduces tonic's start-up pass of ``t < filter_time``.
- :class:`TimeBinner` is ``ToFrame(time_window=dt)`` with a user-fixed origin, never dropping the
  trailing partial window (emitted by ``flush``), always emitting empty bins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from runtime.events import EVENT_DTYPE
from spikeforge.errors import ProgramError

__all__ = [
    "EVENT_DTYPE",
    "Crop",
    "Denoise",
    "Downsample",
    "HotPixels",
    "MergePolarity",
    "Pipeline",
    "Refractory",
    "SplitPolarity",
    "TimeBinner",
    "ToAxons",
    "Transform",
    "no_events",
    "parse_transforms",
]

Size = tuple[int, int, int]

#: "never fired": far in the past but safe to subtract from any µs time without overflow
_NEVER = np.iinfo(np.int64).min // 4


def no_events() -> np.ndarray:
    """A zero-length event array (``EVENT_DTYPE``, shape ``(0,)``): what a stage emits when it has nothing."""
    return np.zeros(0, dtype=EVENT_DTYPE)


def _grow(arr: np.ndarray, shape: tuple[int, ...], fill: Any) -> np.ndarray:
    """``arr`` enlarged to at least ``shape`` (old values kept at the same indices)."""
    if all(a >= s for a, s in zip(arr.shape, shape, strict=True)):
        return arr
    new_shape = tuple(max(a, s) for a, s in zip(arr.shape, shape, strict=True))
    out = np.full(new_shape, fill, dtype=arr.dtype)
    out[tuple(slice(0, a) for a in arr.shape)] = arr
    return out


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable sort of ``keys``: returns ``(order, starts, ends)`` of the runs of equal keys."""
    order = np.argsort(keys, kind="stable")
    ks = keys[order]
    first = np.ones(ks.size, dtype=bool)
    first[1:] = ks[1:] != ks[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], ks.size)
    return order, starts, ends


class Transform:
    """Base class: a stateful, chunk-invariant transform with drop counters."""

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def __call__(self, events: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def flush(self) -> np.ndarray:
        """Whatever the transform still holds at the end of the stream (nothing for filters)."""
        return no_events()

    def reset(self) -> None:
        """Forget all state and counters."""
        self.dropped = {}

    def output_size(self, size: Size) -> Size:
        """The ``(W, H, P)`` of the output for an input of ``size``."""
        return size

    def drop_counts(self) -> dict[str, int]:
        """Events removed so far, by reason."""
        return dict(self.dropped)

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    def __repr__(self) -> str:
        shown = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "dropped"}
        params = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({params})"


# --- stateless geometry --------------------------------------------------------------------------
class Crop(Transform):
    """Keep ``x0 ≤ x < x0 + width`` and ``y0 ≤ y < y0 + height`` (px), shifted to start at 0.

    Same as tonic's ``CenterCrop`` for ``Crop.center``; dropped events count as ``"crop"``.
    """

    def __init__(self, x0: int, y0: int, width: int, height: int) -> None:
        super().__init__()
        if min(x0, y0) < 0 or min(width, height) < 1:
            raise ValueError(f"crop x0={x0}, y0={y0}, {width}x{height}: offsets >= 0 and sizes >= 1 px")
        self.x0, self.y0, self.width, self.height = int(x0), int(y0), int(width), int(height)

    @classmethod
    def center(cls, sensor: Size | tuple[int, int], width: int, height: int) -> Crop:
        """The centred ``width × height`` crop of a sensor (offset ``(W − w)//2`` as in tonic)."""
        return cls((sensor[0] - width) // 2, (sensor[1] - height) // 2, width, height)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        x = events["x"].astype(np.int64) - self.x0
        y = events["y"].astype(np.int64) - self.y0
        keep = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        out = events[keep]
        out["x"] = x[keep]
        out["y"] = y[keep]
        self._drop("crop", events.size - out.size)
        return out

    def output_size(self, size: Size) -> Size:
        return (self.width, self.height, size[2])


class Downsample(Transform):
    """Spatial pooling of addresses: ``x ← x // fx``, ``y ← y // fy`` (px); nothing is dropped.

    Events of one ``fx × fy`` block share an address, so counting them in :class:`TimeBinner` is sum
    pooling. Equals tonic's ``Downsample(spatial_factor=1/f)``; a width not divisible by ``fx`` leaves
    a partial last block (output width ``ceil(W / fx)``).
    """

    def __init__(self, fx: int, fy: int | None = None) -> None:
        super().__init__()
        self.fx, self.fy = int(fx), int(fx if fy is None else fy)
        if self.fx < 1 or self.fy < 1:
            raise ValueError(f"downsample factors must be >= 1, got {self.fx}x{self.fy}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        out = events.copy()
        out["x"] //= self.fx
        out["y"] //= self.fy
        return out

    def output_size(self, size: Size) -> Size:
        return (-(-size[0] // self.fx), -(-size[1] // self.fy), size[2])


class MergePolarity(Transform):
    """Set every polarity to 0 (one channel), as tonic's ``MergePolarities``."""

    def __call__(self, events: np.ndarray) -> np.ndarray:
        out = events.copy()
        out["p"] = 0
        return out

    def output_size(self, size: Size) -> Size:
        return (size[0], size[1], 1)


class SplitPolarity(Transform):
    """Keep polarity as a channel (P = 2); with ``keep=0|1`` keep only that polarity (P = 1, p = 0).

    Dropped events of the other polarity count as ``"polarity"``.
    """

    def __init__(self, keep: int | None = None) -> None:
        super().__init__()
        if keep not in (None, 0, 1):
            raise ValueError(f"split-polarity keep={keep!r}: use 0 (OFF), 1 (ON) or None (both)")
        self.keep = keep

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if self.keep is None:
            out = events.copy()
            out["p"] = (out["p"] != 0).astype(np.int8)
            return out
        sel = (events["p"] != 0) == bool(self.keep)
        out = events[sel]
        out["p"] = 0
        self._drop("polarity", events.size - out.size)
        return out

    def output_size(self, size: Size) -> Size:
        return (size[0], size[1], 2 if self.keep is None else 1)


# --- per-pixel filters ---------------------------------------------------------------------------
class Refractory(Transform):
    """Per-pixel dead time of ``dead_time_us`` µs.

    Default: an event is kept iff ``t − t_kept ≥ dead_time_us``, ``t_kept`` the last *kept* event of
    its pixel (a real dead time: dropped events do not extend it); memory starts empty, so a pixel's
    first event is always kept. ``per_polarity=True`` keeps one memory per (pixel, polarity).

    ``tonic_compat=True`` reproduces ``tonic.transforms.RefractoryPeriod``: kept iff
    ``t − t_prev > dead_time_us`` with ``t_prev`` the previous event of the pixel *whether kept or not*,
    memory starting at ``−dead_time_us`` (so events at ``t ≤ 0`` are dropped). Drops count as
    ``"refractory"``.
    """

    def __init__(self, dead_time_us: int, per_polarity: bool = False, tonic_compat: bool = False) -> None:
        super().__init__()
        if dead_time_us < 0:
            raise ValueError(f"refractory dead time {dead_time_us} µs must be >= 0")
        self.dead_time_us = int(dead_time_us)
        self.per_polarity = per_polarity
        self.tonic_compat = tonic_compat
        self.reset()

    def reset(self) -> None:
        super().reset()
        start = -self.dead_time_us if self.tonic_compat else _NEVER
        self._start = start
        self._last = np.full((2 if self.per_polarity else 1, 1, 1), start, dtype=np.int64)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if events.size == 0 or self.dead_time_us == 0 and not self.tonic_compat:
            return events.copy()
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64)
        c = (events["p"] != 0).astype(np.int64) if self.per_polarity else np.zeros_like(x)
        self._last = _grow(self._last, (self._last.shape[0], int(y.max()) + 1, int(x.max()) + 1), self._start)
        _, h, w = self._last.shape
        flat = self._last.reshape(-1)
        pix = (c * h + y) * w + x
        order, starts, ends = _groups(pix)
        ps, ts = pix[order], t[order]
        keep_sorted = np.zeros(ts.size, dtype=bool)
        d = self.dead_time_us
        if self.tonic_compat:
            prev = np.empty_like(ts)
            prev[1:] = ts[:-1]
            prev[starts] = flat[ps[starts]]
            keep_sorted = ts - prev > d
            flat[ps[ends - 1]] = ts[ends - 1]
        else:
            keep_sorted = self._greedy(ps, ts, starts, ends, flat)
        keep = np.empty_like(keep_sorted)
        keep[order] = keep_sorted
        self._drop("refractory", events.size - int(keep.sum()))
        return events[keep]

    def _greedy(
        self, ps: np.ndarray, ts: np.ndarray, starts: np.ndarray, ends: np.ndarray, flat: np.ndarray
    ) -> np.ndarray:
        """Per pixel run (times non-decreasing), keep each event at least ``d`` after the last kept."""
        d = self.dead_time_us
        keep = np.zeros(ts.size, dtype=bool)
        tmin = int(ts.min())
        span = int(ts.max()) - tmin + 2  # offsets >= span - 1 lie beyond every event of a run
        gid = np.repeat(np.arange(starts.size, dtype=np.int64), ends - starts)
        # a composite key makes one searchsorted serve every pixel run at once
        key = gid * span + (ts - tmin)

        def target(g: np.ndarray, t_next: np.ndarray) -> np.ndarray:
            off = np.clip(t_next - tmin, 0, span - 1)
            return np.searchsorted(key, g * span + off, side="left")

        groups = np.arange(starts.size, dtype=np.int64)
        cand = target(groups, flat[ps[starts]] + d)
        live = cand < ends
        groups, cand, gend = groups[live], cand[live], ends[live]
        while groups.size:
            keep[cand] = True
            cand = target(groups, ts[cand] + d)
            live = cand < gend
            groups, cand, gend = groups[live], cand[live], gend[live]
        kept = np.flatnonzero(keep)
        if kept.size:
            # the last kept event of each pixel run is the largest kept index of that run
            last_of_run = np.maximum.reduceat(np.where(keep, np.arange(ts.size), -1), starts)
            has = last_of_run >= 0
            flat[ps[last_of_run[has]]] = ts[last_of_run[has]]
        return keep


class Denoise(Transform):
    """Background-activity filter: keep an event iff a neighbouring pixel fired less than ``dt_us`` µs before.

    Kept iff ``t − t_n < dt_us`` for some neighbour n (4-neighbourhood by default, 8 with
    ``neighbours=8``; never the pixel itself; any polarity), where ``t_n`` is the neighbour's latest
    event before this one, kept or not. This is tonic's ``Denoise(filter_time=dt_us)`` rule; tonic's
    memory starts at ``filter_time`` so every event with ``t < filter_time`` passes, which
    ``tonic_compat=True`` reproduces; by default memory starts empty. Drops count as ``"noise"``.
    """

    def __init__(self, dt_us: int, neighbours: int = 4, tonic_compat: bool = False) -> None:
        super().__init__()
        if dt_us < 1:
            raise ValueError(f"denoise dt {dt_us} µs must be >= 1")
        if neighbours not in (4, 8):
            raise ValueError(f"denoise neighbours={neighbours}: use 4 or 8")
        self.dt_us = int(dt_us)
        self.neighbours = neighbours
        self.tonic_compat = tonic_compat
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._start = 0 if self.tonic_compat else _NEVER
        # padded by one pixel on every side so neighbours never leave the map
        self._last = np.full((3, 3), self._start, dtype=np.int64)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if events.size == 0:
            return events.copy()
        x = events["x"].astype(np.int64) + 1
        y = events["y"].astype(np.int64) + 1
        t = events["t"].astype(np.int64)
        self._last = _grow(self._last, (int(y.max()) + 2, int(x.max()) + 2), self._start)
        hp, wp = self._last.shape
        flat = self._last.reshape(-1)
        n = t.size
        pix = y * wp + x
        order, starts, ends = _groups(pix)
        keys = pix[order] * (n + 1) + order  # (pixel, index) sorted: predecessor by searchsorted
        offsets = [-1, 1, -wp, wp]
        if self.neighbours == 8:
            offsets += [-wp - 1, -wp + 1, wp - 1, wp + 1]
        idx = np.arange(n, dtype=np.int64)
        support = np.full(n, _NEVER, dtype=np.int64)
        for off in offsets:
            q = pix + off
            pos = np.searchsorted(keys, q * (n + 1) + idx) - 1
            posc = np.maximum(pos, 0)
            inside = (pos >= 0) & (keys[posc] // (n + 1) == q)
            np.maximum(support, np.where(inside, t[order[posc]], flat[q]), out=support)
        keep = t - support < self.dt_us
        last_idx = order[ends - 1]
        flat[pix[last_idx]] = t[last_idx]
        self._drop("noise", n - int(keep.sum()))
        return events[keep]


class HotPixels(Transform):
    """Remove pixels firing faster than ``max_rate_hz`` Hz, judged per window of ``window_us`` µs.

    Windows are ``[t0 + k·window_us, t0 + (k+1)·window_us)`` (``t0`` = first event if not given). In
    window k an event is dropped if its pixel (any polarity) had more than
    ``max_rate_hz · window_us / 1e6`` events in window k − 1, or already has that many in window k
    (counting itself and dropped events), or is listed in ``pixels``. Drops count as ``"hot_pixel"``
    and ``"listed_pixel"``. tonic's ``DropPixel(hot_pixel_frequency=...)`` judges a whole recording at
    once; this is its causal, streaming equivalent.
    """

    def __init__(
        self,
        max_rate_hz: float,
        window_us: int = 1_000_000,
        t0: int | None = None,
        pixels: Iterable[tuple[int, int]] = (),
    ) -> None:
        super().__init__()
        if max_rate_hz <= 0 or window_us < 1:
            raise ValueError(f"hot pixels: max_rate_hz={max_rate_hz} and window_us={window_us} must be > 0")
        self.max_rate_hz = float(max_rate_hz)
        self.window_us = int(window_us)
        self.t0 = t0
        self.pixels = tuple((int(px), int(py)) for px, py in pixels)
        self._t0_fixed = t0
        self.reset()

    @property
    def max_count(self) -> float:
        """Events allowed per pixel and window."""
        return self.max_rate_hz * self.window_us / 1e6

    def reset(self) -> None:
        super().reset()
        self.t0 = self._t0_fixed
        self._window = 0
        self._counts = np.zeros((1, 1), dtype=np.int64)
        self._hot_prev = np.zeros((1, 1), dtype=bool)

    def hot(self) -> list[tuple[int, int]]:
        """Pixels ``(x, y)`` judged hot in the last complete window."""
        ys, xs = np.nonzero(self._hot_prev)
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if events.size == 0:
            return events.copy()
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64)
        if self.t0 is None:
            self.t0 = int(t[0])
        shape = (int(y.max()) + 1, int(x.max()) + 1)
        self._counts = _grow(self._counts, shape, 0)
        self._hot_prev = _grow(self._hot_prev, shape, False)
        w = self._counts.shape[1]
        pix = y * w + x
        win = (t - self.t0) // self.window_us
        keep = np.ones(t.size, dtype=bool)
        for px, py in self.pixels:
            listed = (x == px) & (y == py)
            keep &= ~listed
            self._drop("listed_pixel", int(listed.sum()))
        # time-ordered input: each window is one contiguous run
        bounds = np.flatnonzero(np.diff(win)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, t.size], strict=True):
            k = int(win[lo])
            if k != self._window:
                # a skipped window had no events, so nothing was hot in the window before k
                follows = k == self._window + 1
                self._hot_prev = self._counts > (self.max_count if follows else np.inf)
                self._counts = np.zeros_like(self._counts)
                self._window = k
            seg = pix[lo:hi]
            order, starts, ends = _groups(seg)
            rank = np.empty(seg.size, dtype=np.int64)
            rank[order] = np.arange(seg.size) - np.repeat(starts, ends - starts)
            running = self._counts.reshape(-1)[seg] + rank + 1
            hot = self._hot_prev.reshape(-1)[seg] | (running > self.max_count)
            self._drop("hot_pixel", int((hot & keep[lo:hi]).sum()))
            keep[lo:hi] &= ~hot
            self._counts.reshape(-1)[:] += np.bincount(seg, minlength=self._counts.size)
        return events[keep]


# --- events to counts to axons -------------------------------------------------------------------
class TimeBinner(Transform):
    """Count events into steps of ``dt_us`` µs: events → ``int32 [T, P*H*W]``.

    Bin k covers ``[t0 + k·dt_us, t0 + (k+1)·dt_us)`` (half-open, as tonic's ``ToFrame``); ``t0`` is
    fixed by the user, or the first event's time if None. A call returns only *complete* bins (those
    before the latest event's bin), empty ones included, so the program sees a constant step rate;
    :meth:`flush` returns the last partial bin; :meth:`advance_to` closes bins by a clock when no
    events arrive. Channel of an event: ``(p·H + y)·W + x`` (tonic's ``(T, P, H, W)`` flattened); with
    P = 1 the polarity is ignored. Events outside ``size`` count as ``"out_of_bounds"``, events before
    ``t0`` as ``"before_t0"``, events for a bin already emitted as ``"late"``.
    """

    def __init__(self, dt_us: int, size: Size, t0: int | None = None) -> None:
        super().__init__()
        if dt_us < 1:
            raise ValueError(f"time bin dt {dt_us} µs must be >= 1")
        self.dt_us = int(dt_us)
        self.size = (int(size[0]), int(size[1]), int(size[2]))
        self._t0_fixed = t0
        self.reset()

    @property
    def channels(self) -> int:
        w, h, p = self.size
        return w * h * p

    def reset(self) -> None:
        super().reset()
        self.t0 = self._t0_fixed
        self.next_bin = 0  # index of the first bin not emitted yet
        self._pending: np.ndarray = np.zeros(
            (0, self.channels), dtype=np.int32
        )  # bins next_bin, next_bin+1, ...

    def bin_start_us(self, k: int) -> int:
        """Start time (µs) of bin ``k``."""
        return int(self.t0 or 0) + k * self.dt_us

    def _emit(self, upto: int) -> np.ndarray:
        """Emit bins ``next_bin .. upto-1`` (empty ones included)."""
        n = upto - self.next_bin
        if n <= 0:
            return np.zeros((0, self.channels), dtype=np.int32)
        if self._pending.shape[0] < n:
            self._pending = np.concatenate(
                [self._pending, np.zeros((n - self._pending.shape[0], self.channels), dtype=np.int32)]
            )
        out, self._pending = self._pending[:n], self._pending[n:]
        self.next_bin = upto
        return out

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if events.size == 0:
            return np.zeros((0, self.channels), dtype=np.int32)
        t = events["t"].astype(np.int64)
        if self.t0 is None:
            self.t0 = int(t.min())
        w, h, p = self.size
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        pol = (events["p"] != 0).astype(np.int64) if p > 1 else np.zeros_like(x)
        inside = (x < w) & (y < h)
        before = t < self.t0
        k = (t - self.t0) // self.dt_us
        late = ~before & (k < self.next_bin)
        self._drop("out_of_bounds", int((~inside).sum()))
        self._drop("before_t0", int((inside & before).sum()))
        self._drop("late", int((inside & late).sum()))
        ok = inside & ~before & ~late
        if ok.any():
            rel = k[ok] - self.next_bin
            nbins = int(rel.max()) + 1
            ch = (pol[ok] * h + y[ok]) * w + x[ok]
            flat = np.bincount(rel * self.channels + ch, minlength=nbins * self.channels)
            counts: np.ndarray = flat.reshape(nbins, self.channels).astype(np.int32)
            if self._pending.shape[0] < nbins:
                counts[: self._pending.shape[0]] += self._pending
                self._pending = counts
            else:
                self._pending[:nbins] += counts
        newest = self.next_bin + self._pending.shape[0] - 1
        return self._emit(newest)

    def advance_to(self, t_us: int) -> np.ndarray:
        """Emit every bin that ends at or before ``t_us`` (µs), e.g. by the host clock in a quiet scene."""
        if self.t0 is None:
            return np.zeros((0, self.channels), dtype=np.int32)
        return self._emit(max(self.next_bin, (int(t_us) - self.t0) // self.dt_us))

    def flush(self) -> np.ndarray:
        return self._emit(self.next_bin + self._pending.shape[0])

    def output_size(self, size: Size) -> Size:
        return self.size


#: axon layouts of :class:`ToAxons`: name → axon of (x, y, p) for a (W, H, P) input
LAYOUTS = {
    "pyx": "axon = (p·H + y)·W + x   (channels-first, torch/tonic (P, H, W) flattened)",
    "yxp": "axon = (y·W + x)·P + p   (channels-last, (H, W, P) flattened)",
    "pxy": "axon = (p·W + x)·H + y   (x-major, (P, W, H) flattened)",
}


class ToAxons(Transform):
    """Map counts ``[T, P*H*W]`` (from :class:`TimeBinner`) onto a port's axons: ``int32 [T, channels]``.

    ``layout`` is a name from :data:`LAYOUTS` (default ``"pyx"``: ``axon = (p·H + y)·W + x``) or an
    int array of length P*H*W giving each binner channel's axon (−1: not connected). The mapped
    axons must exist on the port: ``P*H*W`` must equal ``channels`` (or be smaller with ``pad=True``).
    Counts above ``max_count`` (what the target accepts per axon and step, e.g. 1 for binary spikes,
    15 on xylo) are clipped; the excess counts as ``"clipped"``.
    """

    def __init__(
        self,
        size: Size,
        channels: int,
        layout: str | np.ndarray = "pyx",
        max_count: int | None = None,
        pad: bool = False,
        port: str = "input",
    ) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]), int(size[2]))
        self.channels = int(channels)
        self.max_count = max_count
        self.port = port
        w, h, p = self.size
        n = w * h * p
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                raise ValueError(f"unknown axon layout {layout!r}; known: {', '.join(LAYOUTS)}")
            yy, xx = np.divmod(np.arange(h * w), w)
            pp = np.repeat(np.arange(p), h * w)
            xx, yy = np.tile(xx, p), np.tile(yy, p)
            self._map = self.axon_index(xx, yy, pp, layout)
            self.layout = layout
        else:
            self._map = np.asarray(layout, dtype=np.int64).reshape(-1)
            if self._map.size != n:
                raise ValueError(f"axon layout array has {self._map.size} entries; expected P*H*W = {n}")
            self.layout = "custom"
        top = int(self._map.max()) + 1 if self._map.size else 0
        if (isinstance(layout, str) and n != self.channels and not (pad and n < self.channels)) or (
            top > self.channels
        ):
            raise ProgramError(
                f"input port {port!r} has {self.channels} axons but the events after the transforms are "
                f"{p}x{h}x{w} (P x H x W) = {n} channels; crop, downsample or merge polarities so that they "
                f"match{' (or pad)' if n < self.channels else ''}"
            )
        self._src = np.flatnonzero(self._map >= 0)
        self._dst = self._map[self._src]
        self._injective = np.unique(self._dst).size == self._dst.size

    def axon_index(
        self, x: np.ndarray, y: np.ndarray, p: np.ndarray, layout: str | None = None
    ) -> np.ndarray:
        """Axon of events at ``(x, y, p)`` for a named layout (int64 arrays)."""
        w, h, pp = self.size
        x, y = np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64)
        p = (np.asarray(p) != 0).astype(np.int64) if pp > 1 else np.zeros_like(x)
        name = layout or self.layout
        if name == "pyx":
            return (p * h + y) * w + x
        if name == "yxp":
            return (y * w + x) * pp + p
        if name == "pxy":
            return (p * w + x) * h + y
        ch = (p * h + y) * w + x
        return self._map[ch]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts)
        out = np.zeros((counts.shape[0], self.channels), dtype=np.int32)
        if self._injective:
            out[:, self._dst] = counts[:, self._src]
        else:
            for j, axon in enumerate(self._dst.tolist()):  # rare: custom layouts merging channels
                out[:, axon] += counts[:, self._src[j]]
        if self.max_count is not None:
            excess = out - self.max_count
            self._drop("clipped", int(excess[excess > 0].sum()))
            np.minimum(out, self.max_count, out=out)
        return out

    def flush(self) -> np.ndarray:
        return np.zeros((0, self.channels), dtype=np.int32)

    def output_size(self, size: Size) -> Size:
        return (self.channels, 1, 1)


class Pipeline(Transform):
    """Transforms applied in order; ``flush`` pushes each stage's remainder through the later stages."""

    def __init__(self, *stages: Transform) -> None:
        super().__init__()
        self.stages: list[Transform] = list(stages)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            x = stage(x)
        return x

    def flush(self) -> np.ndarray:
        out: np.ndarray | None = None
        for stage in self.stages:
            parts = [] if out is None else [stage(out)]
            parts.append(stage.flush())
            out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return no_events() if out is None else out

    def reset(self) -> None:
        super().reset()
        for stage in self.stages:
            stage.reset()

    def output_size(self, size: Size) -> Size:
        for stage in self.stages:
            size = stage.output_size(size)
        return size

    def drop_counts(self) -> dict[str, int]:
        """Dropped events of every stage, by reason (summed over stages)."""
        total: dict[str, int] = {}
        for stage in self.stages:
            for reason, n in stage.drop_counts().items():
                total[reason] = total.get(reason, 0) + n
        return total


def _parse_crop(value: str, size: Size) -> Transform:
    """``WxH`` (centred in ``size``) or ``X0:Y0:WxH``."""
    origin, _, wh = value.rpartition(":")
    cw, ch = (int(v) for v in wh.lower().split("x"))
    if origin:
        ox, oy = (int(v) for v in origin.split(":"))
        return Crop(ox, oy, cw, ch)
    return Crop.center(size, cw, ch)


def _parse_downsample(value: str, size: Size) -> Transform:
    f = [int(v) for v in value.lower().split("x")]
    return Downsample(f[0], f[-1])


def _parse_split(value: str, size: Size) -> Transform:
    return SplitPolarity({"": None, "on": 1, "off": 0}[value.strip().lower()])


#: CLI transform name → parser of its value (``value``, input ``size``) → Transform
_TRANSFORM_PARSERS: dict[str, Callable[[str, Size], Transform]] = {
    "crop": _parse_crop,
    "downsample": _parse_downsample,
    "pool": _parse_downsample,
    "refractory": lambda value, size: Refractory(int(value)),
    "denoise": lambda value, size: Denoise(int(value)),
    "hot": lambda value, size: HotPixels(float(value)),
    "hot-pixels": lambda value, size: HotPixels(float(value)),
    "merge-polarity": lambda value, size: MergePolarity(),
    "merge": lambda value, size: MergePolarity(),
    "split-polarity": _parse_split,
    "split": _parse_split,
}
_KNOWN_TRANSFORMS = "crop, downsample, refractory, denoise, hot, merge-polarity, split-polarity"


def parse_transforms(spec: str | Sequence[str], size: Size) -> list[Transform]:
    """Event transforms from a CLI string such as ``"crop=32x32,downsample=2,refractory=1000"``.

    Items (comma-separated): ``crop=WxH`` (centred) or ``crop=X0:Y0:WxH``; ``downsample=F`` or ``FXxFY``;
    ``refractory=US``; ``denoise=US``; ``hot=HZ``; ``merge-polarity``; ``split-polarity[=on|off]``.
    ``size`` is the sensor ``(W, H, P)`` (needed for centred crops).
    """
    items = spec if not isinstance(spec, str) else [s for s in spec.split(",") if s.strip()]
    out: list[Transform] = []
    cur = size
    for item in items:
        name, _, value = item.strip().partition("=")
        name = name.strip().lower().replace("_", "-")
        make = _TRANSFORM_PARSERS.get(name)
        if make is None:
            raise ValueError(f"unknown transform {name!r}; known: {_KNOWN_TRANSFORMS}")
        try:
            t = make(value, cur)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"bad transform {item!r}: {exc}") from None
        cur = t.output_size(cur)
        out.append(t)
    return out
