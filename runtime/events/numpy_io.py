"""NumPy files: ``.npy`` (one structured array) and ``.npz`` (a structured array or x/y/t/p columns).

Reading accepts any structured dtype whose fields are named as in ``FIELD_ALIASES`` (x; y;
t/ts/timestamp; p/pol/polarity/on), in any order and of compatible dtypes (e.g. tonic's packed
``[x i2, y i2, t i8, p bool]``); see ``dtype.from_columns`` for the value checks. ``.npy`` files are
memory-mapped and streamed; a truncated ``.npy`` yields its complete records, then raises.
``.npz`` members are read whole (zip members cannot be streamed).

Writing: ``.npy`` gets ``EVENT_DTYPE`` itself (``[t <i8, x <u2, y <u2, p i1]`` plus 3 padding bytes,
16 bytes per event, readable by ``np.load``), streamed with the header's shape patched on close, and
read back with one copy; ``.npz`` gets columns x, y, t, p.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from runtime.events.dtype import EVENT_DTYPE, alloc_events, as_events, concat_events, copy_events, from_columns
from runtime.events.reader import Header, format_error

BYTES_PER_EVENT = 16
#: what the writer stores: EVENT_DTYPE itself (16 bytes, aligned), so reading back is one copy
NPY_DTYPE = EVENT_DTYPE
_HEADER_BYTES = 192  # fixed so that the shape can be patched in place


def _npy_layout(path: str | os.PathLike[str]) -> tuple[np.dtype[Any], int, int]:
    """(dtype, number of records the header declares, data offset) of a ``.npy`` file."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except (ValueError, SyntaxError, OSError) as exc:
            raise format_error(f"npy: unreadable header: {exc}", 0) from None
        offset = fh.tell()
    if dtype.names is None:
        raise format_error(
            f"npy: array of dtype {dtype} shape {shape}; expected a structured array with fields x, y, t, p",
            0,
        )
    if dtype.hasobject:
        raise format_error("npy: structured array with object fields cannot be read safely", 0)
    if len(shape) != 1:
        raise format_error(f"npy: structured array of shape {shape}; expected one dimension", 0)
    return dtype, int(shape[0]), offset


def read_file_header(path: str | os.PathLike[str], fmt: str) -> Header:
    if fmt == "npz":
        return Header("npz", 0)
    _, _, offset = _npy_layout(path)
    return Header("npy", offset)


def open_blocks(path: str | os.PathLike[str], fmt: str, block_bytes: int) -> tuple[Header, Iterator[np.ndarray]]:
    if fmt == "npz":
        return Header("npz", 0), _npz_blocks(path)
    dtype, declared, offset = _npy_layout(path)
    available = max(0, (os.path.getsize(path) - offset) // dtype.itemsize)
    return Header("npy", offset), _npy_blocks(path, dtype, declared, available, offset, block_bytes)


def _npy_blocks(
    path: str | os.PathLike[str],
    dtype: np.dtype[Any],
    declared: int,
    available: int,
    offset: int,
    block_bytes: int,
) -> Iterator[np.ndarray]:
    n = min(declared, available)
    per_block = max(1, block_bytes // 16)
    if n:
        mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(n,))
        native = dtype == EVENT_DTYPE
        for start in range(0, n, per_block):
            part = np.asarray(mm[start : start + per_block])
            if native:
                if len(part) and int(part["p"].view(np.uint8).max()) > 1:
                    raise format_error("npy: polarity values other than 0 and 1", offset + start * 16)
                out = alloc_events(len(part))
                copy_events(out, part)
                yield out
            else:
                yield as_events(part, source=os.fspath(path))
        del mm
    if available < declared:
        raise format_error(
            f"npy: file truncated: header declares {declared} records of {dtype.itemsize} bytes, "
            f"only {available} are complete",
            offset + available * dtype.itemsize,
        )


def _npz_blocks(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    source = os.fspath(path)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            names = list(npz.files)
            structured = [k for k in names if npz[k].dtype.names is not None]
            if "events" in structured:
                yield as_events(npz["events"], source=source)
            elif len(structured) == 1:
                yield as_events(npz[structured[0]], source=source)
            else:
                yield from_columns({k: npz[k] for k in names}, source=source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, ValueError) and hasattr(exc, "offset"):
            raise
        raise format_error(f"npz: unreadable archive: {exc}", None) from None


def _header(n: int) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(NPY_DTYPE), "fortran_order": False, "shape": (n,)})
    body = text.encode("latin-1")
    pad = _HEADER_BYTES - 10 - len(body) - 1
    return b"\x93NUMPY\x01\x00" + (_HEADER_BYTES - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


class NpyWriter:
    """Stream events into a ``.npy`` file of ``NPY_DTYPE``; the record count is patched on close."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.n = 0
        self.fh.write(_header(0))

    def write(self, events: np.ndarray) -> None:
        arr = np.zeros(len(events), dtype=NPY_DTYPE)  # zeroed: padding bytes are deterministic
        copy_events(arr, events)
        arr["p"] = events["p"] != 0
        self.fh.write(arr.tobytes())
        self.n += len(events)

    def close(self) -> None:
        try:
            self.fh.seek(0)
            self.fh.write(_header(self.n))
        finally:
            self.fh.close()


class NpzWriter:
    """Collect events and write them as columns x, y, t, p of a compressed ``.npz`` on close."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.parts: list[np.ndarray] = []

    def write(self, events: np.ndarray) -> None:
        self.parts.append(np.array(events, copy=True))

    def close(self) -> None:
        ev = concat_events(self.parts)
        with open(self.path, "wb") as fh:
            np.savez_compressed(fh, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"])


Writer = NpyWriter  # marks the format as writable for ``api.open_writer``


def open_writer(path: str | os.PathLike[str], fmt: str, width: int | None, height: int | None) -> Any:
    return NpzWriter(path) if fmt == "npz" else NpyWriter(path)
