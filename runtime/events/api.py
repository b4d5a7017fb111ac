"""Public entry points: read, stream, write and convert event files of any supported format."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from runtime.events import detect
from runtime.events.dtype import alloc_events, as_events
from runtime.events.reader import (
    Arena,
    Header,
    check_on_error,
    collect,
    decode_chunks,
    decode_file,
    rechunk,
    stop_or_raise,
)
from spikeforge.errors import EventFormatError

PathLike = str | os.PathLike[str]

_MODULES = {
    "npy": "numpy_io",
    "npz": "numpy_io",
    "evt21-legacy": "evt21_legacy",
    "aedat4-lz4": "aedat4",
    "aedat4-zstd": "aedat4",
}

#: events encoded at a time by writers
WRITE_PIECE = 1 << 18

#: bytes per block when reading a whole file: small enough that temporaries stay in cache
READ_BLOCK_BYTES = 512 << 10


def format_module(fmt: str) -> ModuleType:
    """The module implementing canonical format ``fmt``."""
    return importlib.import_module(f"runtime.events.{_MODULES.get(fmt, fmt)}")


def resolve_format(path: PathLike, format: str | None) -> str:
    return detect.normalise(format) if format is not None else detect.detect(path)


def open_blocks(
    path: PathLike, format: str | None, block_bytes: int, arena: Arena | None = None
) -> tuple[Header, Iterator[np.ndarray]]:
    """Read the header of ``path`` and return it with a generator of decoded blocks.

    With ``arena``, the decoder fills slices of it when they fit (``read_events`` sizes it from
    the format's bound on events per byte).
    """
    fmt = resolve_format(path, format)
    mod = format_module(fmt)
    if hasattr(mod, "open_blocks"):
        opened: tuple[Header, Iterator[np.ndarray]] = mod.open_blocks(path, fmt, block_bytes)
        return opened
    fh = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    try:
        header = mod.read_header(fh)
        decoder = mod.Decoder(header)
        if arena is not None:
            decoder.alloc = arena.alloc
    except BaseException:
        fh.close()
        raise

    def decoded() -> Iterator[np.ndarray]:
        with fh:
            yield from decode_file(fh, header, decoder, block_bytes, mod.GRANULE)

    return header, decoded()


def _with_events(err: EventFormatError) -> EventFormatError:
    if not hasattr(err, "events"):
        err.events = alloc_events(0)  # type: ignore[attr-defined]
    return err


def read_header(path: PathLike, format: str | None = None) -> Header:
    """Only the header of ``path``: format, data offset, sensor size if the file states it."""
    fmt = resolve_format(path, format)
    mod = format_module(fmt)
    if hasattr(mod, "read_file_header"):
        header: Header = mod.read_file_header(path, fmt)
        return header
    with open(path, "rb") as fh:
        header = mod.read_header(fh)
    return header


def read_events(path: PathLike, *, format: str | None = None, on_error: str = "raise") -> np.ndarray:
    """Decode a whole event file into an ``EVENT_DTYPE`` array of shape ``(n,)``.

    ``format`` overrides detection (names in ``runtime.events.detect.FORMATS``). On a corrupt or
    truncated file, ``on_error="raise"`` raises ``EventFormatError`` (``.offset`` = byte offset of the
    defect, ``.events`` = everything decoded before it); ``"stop"`` warns
    (``EventFormatWarning``) and returns those events.
    """
    check_on_error(on_error)
    try:
        fmt = resolve_format(path, format)
        mod = format_module(fmt)
        arena = None
        if hasattr(mod, "max_events"):
            size = os.path.getsize(path)
            arena = Arena(max(0, mod.max_events(size)))
        # NumPy files are memory-mapped: one block, one copy
        block = os.path.getsize(path) if hasattr(mod, "open_blocks") else getattr(mod, "READ_BLOCK", READ_BLOCK_BYTES)
        _, blocks = open_blocks(path, fmt, block, arena)
        return collect(blocks, arena)
    except EventFormatError as err:
        return stop_or_raise(_with_events(err), on_error, path)


def iter_events(
    path: PathLike,
    *,
    chunk_events: int = 1_000_000,
    format: str | None = None,
    on_error: str = "raise",
) -> Iterator[np.ndarray]:
    """Yield the events of ``path`` in ``EVENT_DTYPE`` arrays of ``chunk_events`` (the last may be short).

    Memory stays bounded: the file is read in blocks of at most ``READ_BLOCK_BYTES`` (per-format
    ``READ_BLOCK``) decoded straight into the chunk arrays. State that spans blocks (time-high
    words, vector bases, wrap counts, split packets) carries over, so the concatenated chunks equal
    ``read_events(path)``. On a defect, every complete chunk before it is yielded, then
    ``EventFormatError`` is raised with ``.events`` = the decoded events not yet yielded
    (``on_error="stop"``: those are yielded and a warning is issued instead).
    """
    check_on_error(on_error)
    if chunk_events < 1:
        raise ValueError(f"chunk_events={chunk_events}: must be >= 1")
    fmt = resolve_format(path, format)
    per_event = float(getattr(format_module(fmt), "BYTES_PER_EVENT", 8))
    block = int(min(64 << 20, max(64 << 10, chunk_events * per_event)))
    return _iter(path, fmt, chunk_events, block, on_error)


def _iter(path: PathLike, fmt: str, chunk_events: int, block: int, on_error: str) -> Iterator[np.ndarray]:
    try:
        mod = format_module(fmt)
        if hasattr(mod, "open_blocks"):
            _, blocks = open_blocks(path, fmt, block)
            yield from rechunk(blocks, chunk_events)
            return
        with open(path, "rb") as fh:
            header = mod.read_header(fh)
            decoder = mod.Decoder(header)
            per_byte = mod.max_events(1 << 20) / (1 << 20) if hasattr(mod, "max_events") else 1 / 8
            max_block = getattr(mod, "READ_BLOCK", READ_BLOCK_BYTES)
            yield from decode_chunks(fh, header, decoder, chunk_events, per_byte, mod.GRANULE, max_block)
    except EventFormatError as err:
        rest = stop_or_raise(_with_events(err), on_error, path)
        if len(rest):
            yield rest


def open_writer(path: PathLike, format: str | None, width: int | None, height: int | None) -> Any:
    """A streaming writer (``write(events)``, ``close()``) for ``path``; the caller closes it."""
    fmt = detect.for_writing(path, format)
    mod = format_module(fmt)
    if not hasattr(mod, "Writer"):
        raise EventFormatError(
            f"format {fmt!r} can be read but not written; writable: evt2, evt3, aedat4, aedat4-lz4, "
            "aedat4-zstd, npy, npz"
        )
    return (
        mod.open_writer(path, fmt, width, height)
        if hasattr(mod, "open_writer")
        else _FileWriter(path, mod, width, height)
    )


class _FileWriter:
    """Owns the file of a format writer that works on an open binary file."""

    def __init__(self, path: PathLike, mod: ModuleType, width: int | None, height: int | None) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.writer = mod.Writer(self.fh, width, height)

    def write(self, events: np.ndarray) -> None:
        # encoders make several temporaries per event: bounded pieces keep them small and reused
        for start in range(0, len(events), WRITE_PIECE):
            self.writer.write(events[start : start + WRITE_PIECE])

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.fh.close()


def write_events(
    path: PathLike,
    events: Any,
    *,
    format: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """Write events (any structured array with x, y, t, p fields or aliases) to ``path``.

    ``format`` defaults from the extension (``.raw`` means EVT 3.0). ``width``/``height`` go into
    the header when the format has a place for them. Prophesee and AEDAT formats need events sorted
    by ``t``; a violation raises ``EventFormatError`` naming the first unsorted event.
    """
    arr = as_events(events)
    writer = open_writer(path, format, width, height)
    try:
        writer.write(arr)
    finally:
        writer.close()


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    format: str | None = None,
    out_format: str | None = None,
    width: int | None = None,
    height: int | None = None,
    chunk_events: int = 1_000_000,
) -> int:
    """Stream ``src`` into ``dst`` chunk by chunk; return the number of events written.

    The sensor size comes from ``src``'s header unless ``width``/``height`` are given.
    """
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise EventFormatError(f"convert: input and output are the same file ({os.fspath(src)})")
    fmt = resolve_format(src, format)
    header = read_header(src, fmt)
    w = width if width is not None else header.width
    h = height if height is not None else header.height
    writer = open_writer(dst, out_format, w, h)
    n = 0
    try:
        for chunk in iter_events(src, chunk_events=chunk_events, format=fmt):
            writer.write(chunk)
            n += len(chunk)
    finally:
        writer.close()
    return n
