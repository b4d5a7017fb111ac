"""Helpers for formats that split time into a stateful "time high" word plus per-event low bits.

Writers must emit a time-high word whenever the high part changes, and extra "keep-alive" words when
consecutive events are so far apart that a reader could not tell a forward jump from a wrap of the
counter. These functions compute where those words go, vectorised.
"""

from __future__ import annotations

import numpy as np

from spikeforge.errors import EventFormatError


def check_writable(events: np.ndarray, what: str, max_x: int, max_y: int) -> None:
    """Raise ``EventFormatError`` unless ``t`` is non-decreasing and non-negative and x/y fit."""
    if not len(events):
        return
    t = events["t"]
    if len(t) > 1 and bool(np.any(t[1:] < t[:-1])):
        i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
        raise EventFormatError(
            f"{what} needs events sorted by time: event {i} has t={t[i]} < t={t[i - 1]} of event {i - 1}; "
            "sort with events[np.argsort(events['t'], kind='stable')]"
        )
    if int(t[0]) < 0:
        raise EventFormatError(f"{what} cannot store negative timestamps (first t={t[0]})")
    for field, limit in (("x", max_x), ("y", max_y)):
        top = int(events[field].max())
        if top > limit:
            raise EventFormatError(f"{what} stores {field} up to {limit}; the events reach {field}={top}")


def high_words(high: np.ndarray, prev: int | None, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan time-high words for events whose time-high values are ``high`` (int64, non-decreasing).

    ``prev`` is the last time-high value already written (None at the start of a file). Before event
    ``i`` come ``count[i]`` words; their values, in file order, are ``values``: intermediate steps of
    at most ``step`` then ``high[i]``. Returns ``(count, values, group)`` where ``count`` is int64 of
    shape ``(n,)``, and ``values``/``group`` (the event index each word precedes) have one entry per word.
    """
    n = len(high)
    change = np.empty(n, dtype=bool)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    change[0] = prev is None or high[0] != prev
    np.not_equal(high[1:], high[:-1], out=change[1:])
    at = np.flatnonzero(change)
    before = np.empty(len(at), dtype=np.int64)
    if len(at):
        before[1:] = high[at[1:] - 1]
        before[0] = high[at[0] - 1] if at[0] > 0 else (prev if prev is not None else high[0])
    gap = high[at] - before
    k = np.maximum(1, (gap + step - 1) // step)
    total = int(k.sum())
    group_of_word = np.repeat(np.arange(len(at)), k)
    first_word = np.cumsum(k) - k
    within = np.arange(total, dtype=np.int64) - np.repeat(first_word, k)
    values = np.minimum(before[group_of_word] + step * (within + 1), high[at][group_of_word])
    count = np.zeros(n, dtype=np.int64)
    count[at] = k
    return count, values, at[group_of_word]


def interleave(event_words: np.ndarray, count: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """Merge ``extra`` words (``count[i]`` of them before event ``i``, in order) with ``event_words``."""
    n = len(event_words)
    out = np.empty(n + len(extra), dtype=event_words.dtype)
    pos = np.arange(n, dtype=np.int64)
    pos += np.cumsum(count)
    out[pos] = event_words
    mask = np.ones(len(out), dtype=bool)
    mask[pos] = False
    out[mask] = extra
    return out
