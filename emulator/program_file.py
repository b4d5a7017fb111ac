"""The Program file format (``docs/program-format.md``): write, read and check a :class:`Program`.

Layout: ``magic, format version, manifest length`` (``<8sII``), the JSON manifest (sorted keys, no
whitespace, padded to 8 bytes), the arrays (little-endian, each padded to 8 bytes) in manifest
order, and a CRC-32 of everything before it (``<I``). Identical content gives identical bytes.
"""

from __future__ import annotations

import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import hw_specs
from spikeforge import __version__
from spikeforge.errors import ProgramError, ProgramFormatError

from .learning.plasticity import LearningRule
from .program import INT_ARRAYS, Population, Program, Projection

__all__ = ["to_bytes", "from_bytes", "save", "load", "MAGIC", "FORMAT_VERSION"]

MAGIC = b"\x89SFP\r\n\x1a\n"  # PNG-style: catches text-mode and 7-bit transfers
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, format version, manifest length


def _manifest_and_arrays(program: Program) -> tuple[dict[str, Any], list[tuple[str, NDArray[Any]]]]:
    """The manifest (without its array table) and the arrays, in file order, of ``program``."""
    arrays: list[tuple[str, NDArray[Any]]] = [(k, getattr(program, k)) for k in INT_ARRAYS]
    arrays += [(f"reg/{k}", v) for k, v in program.registers.items()]
    arrays += [(f"pop/{p.name}", p.neurons) for p in program.populations.values()]
    manifest: dict[str, Any] = {
        "format": "spikeforge-program",
        "format_version": FORMAT_VERSION,
        "spec": {"name": program.spec.name, "family": program.spec.family, "digest": program.spec.digest,
                 "toml": program.spec.text},
        "inputs": [[k, v] for k, v in program.input_ports.items()],
        "outputs": [[k, v] for k, v in program.output_ports.items()],
        "populations": [{"name": p.name, "readout": p.readout} for p in program.populations.values()],
        "projections": [
            {"name": p.name, "pre": p.pre, "post": p.post, "params": dict(sorted(p.params.items())),
             "plasticity": None if p.plasticity is None else p.plasticity.to_dict()}
            for p in program.projections
        ],
        "metadata": dict(program.metadata),
    }
    return manifest, arrays


def to_bytes(program: Program) -> bytes:
    """The file bytes of ``program``: identical content gives identical bytes (no timestamps, sorted
    keys). :meth:`Program.to_bytes` keeps them."""
    manifest, arrays = _manifest_and_arrays(program)
    table = []
    places: list[tuple[np.dtype[Any], int]] = []
    offset = 0
    for name, arr in arrays:
        dt = np.dtype(arr.dtype).newbyteorder("<")
        nbytes = arr.size * dt.itemsize
        table.append({"name": name, "dtype": dt.str, "shape": list(arr.shape), "offset": offset,
                      "nbytes": nbytes})
        places.append((dt, offset))
        offset += nbytes + (-nbytes) % 8
    manifest["arrays"] = table
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * ((-(len(text) + _HEADER.size)) % 8)
    # the arrays' own buffers are joined once into the file bytes (no per-array copies), the
    # checksum runs over the same pieces
    pieces: list[Any] = [_HEADER.pack(MAGIC, FORMAT_VERSION, len(text)), text]
    for (_, arr), (dt, _at) in zip(arrays, places, strict=True):
        data = np.ascontiguousarray(arr, dtype=dt)
        pieces.append(data.reshape(-1).view(np.uint8).data)
        pad = (-data.nbytes) % 8
        if pad:
            pieces.append(b"\0" * pad)
    pieces.append(struct.pack("<I", _crc32(pieces)))
    return b"".join(pieces)

def save(program: Program, path: str | Path) -> Path:
    """Write ``program`` to ``path`` (atomically: a partial file never replaces a good one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(program.to_bytes())
    tmp.replace(path)
    return path

def load(path: str | Path, target: str | None = None) -> Program:
    """Read a program file; ``target`` (a spec name) rejects a program built for another chip."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProgramFormatError(f"program file {path} does not exist") from None
    except IsADirectoryError:
        raise ProgramFormatError(f"{path} is a directory, not a program file") from None
    return from_bytes(data, target=target, source=str(path))

def from_bytes(data: bytes, target: str | None = None, source: str = "<bytes>") -> Program:
    """Parse program file bytes; every defect is a :class:`ProgramFormatError` naming ``source``."""
    data = bytes(data)
    if len(data) < _HEADER.size + 4:
        raise ProgramFormatError(f"{source}: {len(data)} bytes is too short for a spikeforge program (truncated?)")
    magic, version, mlen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProgramFormatError(f"{source}: not a spikeforge program (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ProgramFormatError(
            f"{source}: program format version {version}; this spikeforge ({__version__}) reads version "
            f"{FORMAT_VERSION}: rebuild the program or upgrade spikeforge"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise ProgramFormatError(f"{source}: checksum mismatch: the file is corrupted or truncated")
    start = _HEADER.size
    if start + mlen > len(data) - 4:
        raise ProgramFormatError(f"{source}: manifest length {mlen} runs past the end of the file")
    try:
        manifest = json.loads(data[start:start + mlen])
        base = start + mlen
        spec = hw_specs.loads(manifest["spec"]["toml"].encode(), path=f"{source} (embedded spec)")
        arrays: dict[str, NDArray[Any]] = {}
        for entry in manifest["arrays"]:
            lo = base + int(entry["offset"])
            hi = lo + int(entry["nbytes"])
            if hi > len(data) - 4:
                raise ProgramFormatError(f"{source}: array {entry['name']!r} runs past the end of the file")
            arr = np.frombuffer(data[lo:hi], dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])
            arrays[entry["name"]] = arr
        registers = {k[4:]: v for k, v in arrays.items() if k.startswith("reg/")}
        pops = [Population(p["name"], arrays[f"pop/{p['name']}"].astype(np.int32), bool(p["readout"]))
                for p in manifest["populations"]]
        projs = [Projection(p["name"], p["pre"], p["post"], {k: int(v) for k, v in p["params"].items()},
                            _plasticity(p.get("plasticity"))) for p in manifest["projections"]]
        program = Program(
            spec,
            arrays=arrays,
            registers=registers,
            inputs={k: int(v) for k, v in manifest["inputs"]},
            populations=pops,
            projections=projs,
            output_ports={k: v for k, v in manifest["outputs"]},
            metadata=manifest.get("metadata", {}),
        )
    except ProgramFormatError:
        raise
    except ProgramError as exc:
        raise ProgramFormatError(f"{source}: invalid program: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProgramFormatError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None
    if target is not None and spec.name != target:
        raise ProgramFormatError(
            f"{source}: program was built for target {spec.name!r}, not {target!r}; recompile it with "
            f"--target {target}"
        )
    return program


def _plasticity(entry: Any) -> LearningRule | None:
    """A projection's stored rule (untrusted data: types checked here, the rule against the target
    when the Program is validated)."""
    return None if entry is None else LearningRule.from_dict(entry)


#: above this many bytes the checksum runs in two threads (zlib.crc32 releases the GIL)
_CRC_SPLIT = 1 << 26


def _crc32(pieces: list[Any]) -> int:
    """``zlib.crc32`` of the concatenated ``pieces`` (bytes-like), without concatenating them; a large
    input is checksummed as two halves in parallel and the two CRCs combined."""
    views = [memoryview(p).cast("B") for p in pieces]
    total = sum(v.nbytes for v in views)
    if total < _CRC_SPLIT:
        return _crc32_of(views)
    first: list[memoryview] = []
    at = 0
    while at + views[0].nbytes <= total // 2:
        at += views[0].nbytes
        first.append(views.pop(0))
    cut = total // 2 - at  # split the piece that straddles the middle
    first.append(views[0][:cut])
    views[0] = views[0][cut:]
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(_crc32_of, views)
        crc = _crc32_of(first)
        return _crc32_combine(crc, second.result(), total - total // 2)


def _crc32_of(views: list[memoryview]) -> int:
    crc = 0
    for v in views:
        crc = zlib.crc32(v, crc)
    return crc


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc1 = crc32(A)``, ``crc2 = crc32(B)`` and ``len2 = len(B)`` (zlib's
    ``crc32_combine``: ``crc1`` advanced over ``len2`` zero bytes by squaring a GF(2) 32×32 operator)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first pass: one zero byte
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, row) for row in mat]
