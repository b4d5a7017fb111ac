"""Summary statistics of an event file, computed in one streaming pass."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from runtime.events.api import iter_events, read_header, resolve_format


@dataclass(frozen=True)
class EventInfo:
    """What ``event_info`` reports. Times in µs, rate in events per second.

    ``width``/``height`` come from the header when it states them (``resolution_source="header"``),
    else from ``max(x) + 1``/``max(y) + 1`` (``"events"``). ``on_fraction`` is ON events / all events
    (polarity balance; NaN for an empty file).
    """

    path: str
    format: str
    file_bytes: int
    count: int
    t_start: int | None
    t_end: int | None
    duration_us: int
    width: int | None
    height: int | None
    resolution_source: str
    mean_rate_hz: float
    on_count: int
    off_count: int
    on_fraction: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def event_info(path: str | os.PathLike[str], *, format: str | None = None, chunk_events: int = 4_000_000) -> EventInfo:
    """Count, time span, sensor size, mean rate and polarity balance of an event file (one pass)."""
    fmt = resolve_format(path, format)
    header = read_header(path, fmt)
    count = on = 0
    t_start: int | None = None
    t_end: int | None = None
    max_x = max_y = -1
    for chunk in iter_events(path, chunk_events=chunk_events, format=fmt):
        if not len(chunk):
            continue
        t = chunk["t"]
        lo, hi = int(t.min()), int(t.max())
        t_start = lo if t_start is None else min(t_start, lo)
        t_end = hi if t_end is None else max(t_end, hi)
        count += len(chunk)
        on += int(np.count_nonzero(chunk["p"]))
        max_x = max(max_x, int(chunk["x"].max()))
        max_y = max(max_y, int(chunk["y"].max()))
    if header.width is not None and header.height is not None:
        width, height, source = header.width, header.height, "header"
    elif count:
        width, height, source = max_x + 1, max_y + 1, "events"
    else:
        width, height, source = None, None, "unknown"
    duration = (t_end - t_start) if t_start is not None and t_end is not None else 0
    rate = count / (duration * 1e-6) if duration > 0 else 0.0
    return EventInfo(
        path=os.fspath(path),
        format=fmt,
        file_bytes=os.path.getsize(path),
        count=count,
        t_start=t_start,
        t_end=t_end,
        duration_us=duration,
        width=width,
        height=height,
        resolution_source=source,
        mean_rate_hz=rate,
        on_count=on,
        off_count=count - on,
        on_fraction=on / count if count else float("nan"),
    )
