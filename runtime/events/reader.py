"""The chunked file reader shared by every binary event format: read blocks of bytes, decode, re-chunk.

A format supplies a header reader and a stateful ``Decoder``; this module owns the file, feeds the
decoder blocks of bytes (so memory stays bounded by the block size, not the file size), carries the
bytes of an incomplete record over to the next block, and turns the stream of decoded arrays into
chunks of a fixed number of events. Errors keep what was decoded before them in ``.events``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from runtime.events.dtype import alloc_events, concat_events, copy_events
from spikeforge.errors import EventFormatError, MissingExtra


class EventFormatWarning(UserWarning):
    """A file was decoded only up to a defect because ``on_error="stop"`` was asked for."""


@dataclass
class Header:
    """What a format's header says: where the data starts, the sensor size and raw key/values."""

    format: str
    data_offset: int
    width: int | None = None
    height: int | None = None
    meta: dict[str, str] = field(default_factory=dict)


class Decoder(Protocol):
    """A stateful decoder of one format's data bytes.

    ``decode(data, offset)`` decodes as many whole records of ``data`` (which starts at byte
    ``offset`` of the file) as it can and returns ``(events, bytes_consumed)``; state such as the
    current time base carries over to the next call. ``need`` is how many bytes, counted from the
    first unconsumed byte, the next record needs (0 if unknown). ``finish(rest, offset)`` is called at
    the end of the file with the unconsumed bytes and raises if they are not empty. Defects raise
    ``EventFormatError`` whose ``.events`` holds the events of ``data`` decoded before the defect.
    """

    need: int

    def decode(self, data: bytes, offset: int) -> tuple[np.ndarray, int]: ...

    def finish(self, rest: bytes, offset: int) -> None: ...


def format_error(message: str, offset: int | None, events: np.ndarray | None = None) -> EventFormatError:
    """An ``EventFormatError`` carrying the events decoded before the defect in ``.events``."""
    err = EventFormatError(f"{message} (at byte offset {offset})" if offset is not None else message, offset)
    err.events = events if events is not None else alloc_events(0)  # type: ignore[attr-defined]
    return err


def truncated_error(what: str, rest: int, offset: int) -> EventFormatError:
    """The error for a file that ends inside a record."""
    return format_error(f"file truncated: {rest} trailing byte(s) do not form a whole {what}", offset)


def decode_file(
    fh: BinaryIO,
    header: Header,
    decoder: Decoder,
    block_bytes: int,
    granule: int = 1,
) -> Iterator[np.ndarray]:
    """Yield decoded arrays, block by block, from ``fh`` starting at ``header.data_offset``.

    ``block_bytes`` is rounded down to a multiple of ``granule`` (the word size) so that word
    formats never split a word between blocks.
    """
    block = max(granule, block_bytes - block_bytes % granule)
    reader = _BlockReader(fh, header.data_offset, decoder)
    while True:
        events = reader.step(max(block, decoder.need - reader.pending_bytes))
        if events is None:
            break
        if len(events):
            yield events
    reader.finish()


class _BlockReader:
    """Reads a file block by block into one reused buffer and feeds the decoder.

    The block goes into an uninitialised buffer behind the carried-over bytes: no zero-fill and no
    concatenation copy of the whole block. The buffer is reused between blocks, which is safe
    because decoders never return views of their input.
    """

    def __init__(self, fh: BinaryIO, offset: int, decoder: Decoder) -> None:
        fh.seek(offset)
        self.fh, self.offset, self.decoder = fh, offset, decoder
        self.pending = np.zeros(0, dtype=np.uint8)
        self.store = np.empty(0, dtype=np.uint8)

    @property
    def pending_bytes(self) -> int:
        return len(self.pending)

    def step(self, want: int) -> np.ndarray | None:
        """Read up to ``want`` more bytes and decode; the events, or None at the end of the file."""
        n_pending = len(self.pending)
        if len(self.store) < n_pending + want:
            self.store = np.empty(n_pending + want, dtype=np.uint8)
        buf = self.store[: n_pending + want]
        buf[:n_pending] = self.pending
        got = self.fh.readinto(buf[n_pending:].data)  # type: ignore[attr-defined]
        if not got:
            return None
        data = buf[: n_pending + got]
        events, used = self.decoder.decode(data, self.offset)  # type: ignore[arg-type]
        self.offset += used
        self.pending = data[used:].copy()
        return events

    def finish(self) -> None:
        """Hand the bytes left at the end of the file to the decoder (it reports truncation)."""
        self.decoder.finish(self.pending.tobytes(), self.offset)


def decode_chunks(
    fh: BinaryIO,
    header: Header,
    decoder: Decoder,
    chunk_events: int,
    events_per_byte: float,
    granule: int = 1,
    max_block: int = 2 << 20,
) -> Iterator[np.ndarray]:
    """Yield arrays of exactly ``chunk_events`` events (the last may be short), decoded in place.

    Each chunk is one preallocated array that the decoder fills directly: reads are sized so that
    the events they can produce (``events_per_byte`` bound) fit the room left, so no chunk is ever
    assembled by concatenation. Events that do not fit (formats without a strict bound) are
    copied over. On ``EventFormatError`` the complete chunks are yielded first and ``.events``
    holds the rest.
    """
    arena = Arena(chunk_events)
    decoder.alloc = arena.alloc  # type: ignore[attr-defined]
    spill: list[np.ndarray] = []

    def take(events: np.ndarray) -> Iterator[np.ndarray]:
        """Account for decoded ``events``; yield every chunk they complete."""
        nonlocal arena
        if len(events) and events.base is arena.buf:
            pass  # decoded in place
        elif len(events):
            spill.append(events)
        while spill or arena.used == chunk_events:
            if arena.used == chunk_events:
                yield arena.buf
                arena = Arena(chunk_events)
                decoder.alloc = arena.alloc  # type: ignore[attr-defined]
                continue
            head = spill.pop(0)
            room = chunk_events - arena.used
            copy_events(arena.buf[arena.used : arena.used + min(room, len(head))], head[:room])
            arena.used += min(room, len(head))
            if len(head) > room:
                spill.insert(0, head[room:])

    reader = _BlockReader(fh, header.data_offset, decoder)
    try:
        while True:
            room = max(1, chunk_events - arena.used)
            # at least 16 KiB per read: tiny reads near the end of a chunk cost more than copying
            # the few events that spill over into the next chunk
            want = int(min(max_block, max(16 << 10, room / events_per_byte)))
            want -= want % granule
            events = reader.step(max(want, granule, decoder.need - reader.pending_bytes))
            if events is None:
                break
            yield from take(events)
        reader.finish()
    except EventFormatError as err:
        partial = getattr(err, "events", None)
        if partial is not None and len(partial):
            yield from take(partial)
        err.events = concat_events([arena.buf[: arena.used], *spill])  # type: ignore[attr-defined]
        raise
    if arena.used:
        yield arena.buf[: arena.used]


def rechunk(blocks: Iterator[np.ndarray], chunk_events: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of event arrays into arrays of exactly ``chunk_events`` (the last may be short).

    If ``blocks`` raises ``EventFormatError``, every complete chunk is yielded first and the error's
    ``.events`` is extended with the events not yet yielded.
    """
    parts: list[np.ndarray] = []
    held = 0
    try:
        for arr in blocks:
            if held + len(arr) < chunk_events:
                parts.append(arr)
                held += len(arr)
                continue
            # only the events carried over are copied; whole chunks are views of the block
            need = chunk_events - held
            yield concat_events([*parts, arr[:need]]) if parts else arr[:need]
            pos = need
            while len(arr) - pos >= chunk_events:
                yield arr[pos : pos + chunk_events]
                pos += chunk_events
            parts = [arr[pos:]] if pos < len(arr) else []
            held = len(arr) - pos
    except EventFormatError as err:
        partial = getattr(err, "events", None)
        if partial is not None and len(partial):
            parts.append(partial)
        joined = concat_events(parts)
        cut = len(joined) - len(joined) % chunk_events
        for start in range(0, cut, chunk_events):
            yield joined[start : start + chunk_events]
        err.events = joined[cut:]  # type: ignore[attr-defined]
        raise
    if held:
        yield concat_events(parts)


def collect(blocks: Iterator[np.ndarray], arena: Arena | None = None) -> np.ndarray:
    """Concatenate every block; on ``EventFormatError`` its ``.events`` becomes everything decoded.

    If every block was allocated in order from ``arena``, the result is a view of it (no copy).
    """
    parts: list[np.ndarray] = []

    def join() -> np.ndarray:
        if arena is not None and parts and arena.owns_in_order(parts):
            return arena.buf[: arena.used]
        return concat_events(parts)

    try:
        for arr in blocks:
            parts.append(arr)
    except EventFormatError as err:
        partial = getattr(err, "events", None)
        if partial is not None and len(partial):
            parts.append(partial)
        err.events = join()  # type: ignore[attr-defined]
        raise
    return join()


def stop_or_raise(err: EventFormatError, on_error: str, path: str | os.PathLike[str]) -> np.ndarray:
    """Apply the ``on_error`` policy: re-raise, or warn and hand back the events decoded so far.

    A missing codec (``MissingCodec``) is raised under either policy: the file is not defective, this
    installation cannot read it.
    """
    if on_error == "raise" or isinstance(err, MissingExtra):
        raise err
    warnings.warn(f"{os.fspath(path)}: {err}; kept the events decoded before it", EventFormatWarning, stacklevel=3)
    return getattr(err, "events", alloc_events(0))


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "stop"):
        raise ValueError(f"on_error={on_error!r}: expected 'raise' or 'stop'")


OpenFn = Callable[[BinaryIO], tuple[Header, Decoder]]


class BaseDecoder:
    """Defaults for decoders: no size hint, fresh output arrays, no trailing bytes allowed.

    ``alloc(n)`` returns the array a decoder fills with ``n`` events; ``read_events`` swaps in an
    ``Arena`` so that blocks land in one preallocated array and need no final concatenation.
    """

    need = 0
    record = "record"

    def __init__(self, header: Header | None = None) -> None:
        self.alloc: Callable[[int], np.ndarray] = alloc_events
        self._scratch: dict[str, np.ndarray] = {}

    def scratch(self, key: str, n: int, dtype: npt.DTypeLike) -> np.ndarray:
        """A reusable uninitialised work array of ``n`` items, kept per decoder under ``key``.

        Decoders write their per-block intermediates into these (``out=`` arguments) instead of
        allocating fresh temporaries, so a block touches memory that is already mapped and warm in
        cache; nothing returned to callers may be a view of one.
        """
        buf = self._scratch.get(key)
        if buf is None or len(buf) < n or buf.dtype != dtype:
            buf = np.empty(max(n, 1), dtype=dtype)
            self._scratch[key] = buf
        return buf[:n]

    def finish(self, rest: bytes, offset: int) -> None:
        if rest:
            raise truncated_error(self.record, len(rest), offset)


class Arena:
    """Hands out consecutive slices of one preallocated event array while it has room."""

    def __init__(self, capacity: int) -> None:
        self.buf = alloc_events(capacity)
        self.used = 0

    def alloc(self, n: int) -> np.ndarray:
        if self.used + n <= len(self.buf):
            view = self.buf[self.used : self.used + n]
            self.used += n
            return view
        return alloc_events(n)

    def owns_in_order(self, parts: list[np.ndarray]) -> bool:
        """True if ``parts`` are exactly ``buf[:used]`` cut in order (then no copy is needed)."""
        pos = 0
        start = self.buf.ctypes.data
        for part in parts:
            if not len(part):
                continue
            if part.base is not self.buf or part.ctypes.data != start + pos * self.buf.itemsize:
                return False
            pos += len(part)
        return pos == self.used
