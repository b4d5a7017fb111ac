"""Which format a file is in: from its magic bytes or header first, then its extension.

Format names: ``evt2``, ``evt21``, ``evt3`` (Prophesee ``.raw``), ``dat`` (Prophesee CD ``.dat``),
``aedat2``, ``aedat31``, ``aedat4`` (iniVation), ``npy``, ``npz``. ``normalise`` also accepts common
spellings such as ``"EVT3.0"``, ``"evt_2_1"``, ``"aedat3"``, ``"aedat4.0"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.events import prophesee_header
from spikeforge.errors import EventFormatError

FORMATS = ("evt2", "evt21", "evt21-legacy", "evt3", "dat", "aedat2", "aedat31", "aedat4", "npy", "npz")
#: writer-only variants
WRITE_VARIANTS = ("aedat4-lz4", "aedat4-zstd")

_ALIASES = {
    "evt20": "evt2",
    "evt2": "evt2",
    "evt21": "evt21",
    "evt21legacy": "evt21-legacy",
    "evt3": "evt3",
    "evt30": "evt3",
    "dat": "dat",
    "aedat2": "aedat2",
    "aedat20": "aedat2",
    "aedat3": "aedat31",
    "aedat31": "aedat31",
    "aedat4": "aedat4",
    "aedat4lz4": "aedat4-lz4",
    "aedat4zstd": "aedat4-zstd",
    "aedat40": "aedat4",
    "npy": "npy",
    "npz": "npz",
}

_MAGIC = (
    (b"#!AER-DAT4.0", "aedat4"),
    (b"#!AER-DAT3.1", "aedat31"),
    (b"#!AER-DAT2.0", "aedat2"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
)

_EXTENSIONS = {".aedat4": "aedat4", ".dat": "dat", ".npy": "npy", ".npz": "npz"}


def normalise(name: str) -> str:
    """The canonical format name for ``name``; raises ``EventFormatError`` listing the known formats."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    if key in _ALIASES:
        return _ALIASES[key]
    raise EventFormatError(f"unknown event format {name!r}; known formats: {', '.join(FORMATS + WRITE_VARIANTS)}")


def for_writing(path: str | os.PathLike[str], format: str | None) -> str:
    """The format to write ``path`` in: ``format`` if given, else from the extension."""
    if format is not None:
        return normalise(format)
    ext = Path(path).suffix.lower()
    table = {".raw": "evt3", ".aedat4": "aedat4", ".npy": "npy", ".npz": "npz", ".dat": "dat"}
    if ext in table:
        return table[ext]
    raise EventFormatError(
        f"{os.fspath(path)}: cannot tell the format from extension {ext!r}; pass format= one of "
        "evt2, evt3, aedat4, npy, npz (.raw defaults to evt3)"
    )


def detect(path: str | os.PathLike[str]) -> str:
    """The format of an existing file, from its first bytes, then its extension."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        for magic, name in _MAGIC:
            if head.startswith(magic):
                return name
        ext = Path(path).suffix.lower()
        if head.startswith(b"%"):
            items, _ = prophesee_header.read_lines(fh)
            meta = {k.lower(): v for k, v in items}
            version = prophesee_header.evt_version(meta)
            if version is not None:
                return version
            if ext == ".dat" or "version" in meta:
                return "dat"
            raise EventFormatError(
                f"{os.fspath(path)}: Prophesee header without '% evt' or '% format' line; "
                "pass format='evt2', 'evt21' or 'evt3'",
                0,
            )
    if head.startswith(b"#!AER-DAT"):
        version = head[9:12].decode("latin-1", "replace")
        raise EventFormatError(
            f"{os.fspath(path)}: AEDAT version {version!r} is not supported (supported: 2.0, 3.1, 4.0)", 0
        )
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    raise EventFormatError(
        f"{os.fspath(path)}: unknown event file (first bytes {head[:12]!r}); pass format= one of {', '.join(FORMATS)}",
        0,
    )
