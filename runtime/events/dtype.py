"""The one in-memory event type, and coercion of other tools' event arrays into it.

``EVENT_DTYPE`` is a structured dtype with fields ``x`` (uint16, pixels), ``y`` (uint16, pixels),
``t`` (int64, microseconds) and ``p`` (int8, polarity 0 = OFF, 1 = ON). Consumers must access fields
by name: the memory layout is an implementation detail. It is 16 bytes per event with ``t`` at offset 0,
``x`` at 8, ``y`` at 10, ``p`` at 12 and 3 padding bytes -- the byte layout of an AEDAT 4.0 event, so
aligned 64-bit time stores are cheap and AEDAT 4.0 packets decode with one copy. Fields are declared
in memory order (``t, x, y, p``) so that ``np.save`` and ``dtype.descr`` work on these arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spikeforge.errors import EventFormatError

EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": [np.int64, np.uint16, np.uint16, np.int8],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

#: names accepted for each field of an input array, in order of preference
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "x": ("x",),
    "y": ("y",),
    "t": ("t", "ts", "timestamp"),
    "p": ("p", "pol", "polarity", "on"),
}


def alloc_events(n: int) -> np.ndarray:
    """An uninitialised array of ``n`` events (``EVENT_DTYPE``, shape ``(n,)``) for a decoder to fill."""
    return np.empty(n, dtype=EVENT_DTYPE)


def _words(events: np.ndarray) -> np.ndarray | None:
    """``events`` as uint64 words (2 per event) if it is a contiguous ``EVENT_DTYPE`` array."""
    if events.dtype == EVENT_DTYPE and events.flags.c_contiguous:
        return events.view(np.uint64)
    return None


def copy_events(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for event arrays, as a plain memory copy when both are contiguous.

    numpy copies structured arrays with padding field by field, several times slower than memcpy.
    """
    a, b = _words(dst), _words(src)
    if a is not None and b is not None:
        np.copyto(a, b)
    else:
        dst[...] = src


def concat_events(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate event arrays (as raw memory when possible); an empty list gives an empty array."""
    if not parts:
        return alloc_events(0)
    if len(parts) == 1:
        return parts[0]
    out = alloc_events(sum(len(p) for p in parts))
    at = 0
    for part in parts:
        copy_events(out[at : at + len(part)], part)
        at += len(part)
    return out


def find_field(names: tuple[str, ...] | list[str], field: str) -> str | None:
    """The name in ``names`` that stands for canonical ``field`` (see ``FIELD_ALIASES``), or None."""
    lowered = {n.lower(): n for n in names}
    for alias in FIELD_ALIASES[field]:
        if alias in lowered:
            return lowered[alias]
    return None


def from_columns(columns: dict[str, Any], *, source: str = "input") -> np.ndarray:
    """Build an ``EVENT_DTYPE`` array from 1-D columns keyed by field name or alias.

    Accepted: x, y as non-negative integers < 65536; t as integers (microseconds); p as bool, or
    integers in {0, 1} or {-1, 1} (-1 means OFF). Anything else raises ``EventFormatError`` naming
    the field and what was found.
    """
    names = list(columns)
    picked: dict[str, np.ndarray] = {}
    for field in ("x", "y", "t", "p"):
        name = find_field(names, field)
        if name is None:
            raise EventFormatError(
                f"{source}: no field for {field!r} (accepted names: {', '.join(FIELD_ALIASES[field])}); "
                f"found fields {names}"
            )
        picked[field] = np.asarray(columns[name])
    n = len(picked["x"])
    for field, col in picked.items():
        if col.ndim != 1 or len(col) != n:
            raise EventFormatError(f"{source}: field {field!r} has shape {col.shape}, expected ({n},)")
    out = alloc_events(n)
    for field in ("x", "y"):
        col = picked[field]
        if col.dtype.kind not in "iub":
            raise EventFormatError(f"{source}: field {field!r} has dtype {col.dtype}, expected integers")
        if n and (int(col.min()) < 0 or int(col.max()) > 0xFFFF):
            raise EventFormatError(
                f"{source}: field {field!r} has values in [{col.min()}, {col.max()}], expected 0..65535"
            )
        out[field] = col
    t = picked["t"]
    if t.dtype.kind not in "iu":
        hint = " (seconds? convert with (t * 1e6).astype(np.int64))" if t.dtype.kind == "f" else ""
        raise EventFormatError(f"{source}: field 't' has dtype {t.dtype}, expected integer microseconds{hint}")
    if t.dtype == np.uint64 and n and int(t.max()) > np.iinfo(np.int64).max:
        raise EventFormatError(f"{source}: field 't' has values beyond int64")
    out["t"] = t
    p = picked["p"]
    if p.dtype.kind == "b":
        out["p"] = p
    elif p.dtype.kind in "iu":
        if n:
            lo, hi = int(p.min()), int(p.max())
            if lo < -1 or hi > 1 or (lo == -1 and np.any(p == 0)):
                raise EventFormatError(
                    f"{source}: field 'p' has values in [{lo}, {hi}], expected {{0, 1}} or {{-1, 1}}"
                )
        out["p"] = p > 0
    else:
        raise EventFormatError(f"{source}: field 'p' has dtype {p.dtype}, expected bool or integers")
    return out


def as_events(events: Any, *, source: str = "events") -> np.ndarray:
    """Return ``events`` as an ``EVENT_DTYPE`` array (no copy if it already is one).

    Accepts any structured array whose fields are named as in ``FIELD_ALIASES`` in any order and
    of compatible dtypes (e.g. tonic's packed ``[x i2, y i2, t i8, p bool]`` or ``[t, x, y, p]``),
    or a dict of columns.
    """
    if isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE:
        return events
    if isinstance(events, dict):
        return from_columns(events, source=source)
    arr = np.asarray(events)
    if arr.dtype.names is None:
        raise EventFormatError(
            f"{source}: expected a structured array with fields x, y, t, p; got dtype {arr.dtype} shape {arr.shape}"
        )
    arr = arr.reshape(-1)
    return from_columns({name: arr[name] for name in arr.dtype.names or ()}, source=source)
