"""The Program file: exact round trip, byte-identical for identical builds, and every defect (truncation,
corruption, wrong magic/version/target, garbage manifest, bad paths) a ProgramFormatError."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

import emulator
from emulator.program import INT_ARRAYS
from emulator.program_file import FORMAT_VERSION, MAGIC
from spikeforge.errors import ProgramFormatError

HEADER = struct.Struct("<8sII")


def build(target: str = "loihi"):
    b = emulator.ProgramBuilder(target)
    if target == "loihi":
        x = b.input("in", 3)
        l1 = b.population("l1", 4, du=[0, 1024, 2047, 4095], dv=512, vth=3, bias_mant=-7, bias_exp=2, refractory=1)
        l2 = b.population("l2", 2, du=100, vth=1)
        b.connect(x, l1, weights=[[10, -20, 0], [255, 0, 3], [0, 0, -256], [1, 2, 3]], weight_exp=1,
                  num_weight_bits=6)
        b.connect(l1, l2, weights=[[50, 60, 0, 0], [0, 0, 70, 80]], delay=3)
        b.connect(l2, l1, weights=[[9, 0], [0, 9], [9, 9], [0, 0]], name="back")
        b.output("out", l2)
        b.output("hidden", l1)
    else:
        x = b.input("in", 2)
        h = b.population("h", 3, threshold=20, bias=3)
        r = b.population("r", 2, readout=True, threshold=30)
        b.connect(x, h, weights=[[10, 0], [0, 20], [5, 5]], weight_shift=2)
        b.connect(h, h, weights=[[0, 1, 0], [0, 0, 1], [1, 0, 0]], synapse=1)
        b.connect(h, r, weights=[[30, 0, 10], [0, 40, 0]])
        b.output("out", r)
    return b.build(metadata={"note": "test"})


def spikes(n_in: int, steps: int = 30):
    rng = np.random.default_rng(0)
    return (rng.random((2, steps, n_in)) < 0.5).astype(np.int64)


def assert_programs_equal(a, b):
    assert a.to_bytes() == b.to_bytes()
    for key in INT_ARRAYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.registers.keys() == b.registers.keys()
    for key in a.registers:
        np.testing.assert_array_equal(a.registers[key], b.registers[key], err_msg=key)
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert dict(a.output_ports) == dict(b.output_ports)
    assert list(a.populations) == list(b.populations)
    for name in a.populations:
        np.testing.assert_array_equal(a.populations[name].neurons, b.populations[name].neurons)
        assert a.populations[name].readout == b.populations[name].readout
    assert a.projections == b.projections
    assert dict(a.metadata) == dict(b.metadata)
    assert a.spec.digest == b.spec.digest and a.spec.name == b.spec.name
    assert a.digest == b.digest


@pytest.mark.parametrize("target", ["loihi", "xylo"])
def test_round_trip(tmp_path, target):
    p = build(target)
    path = p.save(tmp_path / "net.sfp")
    assert path.read_bytes() == p.to_bytes()
    q = emulator.Program.load(path)
    assert_programs_equal(p, q)
    assert q.to_bytes() == path.read_bytes()
    # the spec travels with the program and the target check accepts the right name
    emulator.Program.load(path, target=target)
    for name in p.projections:
        np.testing.assert_array_equal(p.weights(name.name), q.weights(name.name))


@pytest.mark.parametrize("target", ["loihi", "xylo"])
def test_loaded_program_emulates_identically(tmp_path, target):
    p = build(target)
    q = emulator.Program.load(p.save(tmp_path / "net.sfp"))
    s = spikes(p.inputs["in"])
    probes = [f"{pop}.{var}" for pop in p.populations for var in (*p.spec.state, "spikes")]
    for engine in ("reference", "fast"):
        a = emulator.run(p, s, probes=probes, engine=engine)
        b = emulator.run(q, s, probes=probes, engine=engine)
        for k in a.spikes:
            np.testing.assert_array_equal(a.spikes[k], b.spikes[k])
        for k in a.probes:
            np.testing.assert_array_equal(a.probes[k], b.probes[k])
        np.testing.assert_array_equal(a.synaptic_ops, b.synaptic_ops)
        assert sum(v.sum() for v in a.spikes.values()) > 0  # the comparison is not vacuous


def test_two_builds_are_byte_identical(tmp_path):
    a, b = build(), build()
    assert a is not b
    assert a.to_bytes() == b.to_bytes()
    a.save(tmp_path / "a.sfp")
    b.save(tmp_path / "b.sfp")
    assert (tmp_path / "a.sfp").read_bytes() == (tmp_path / "b.sfp").read_bytes()
    # and a different register gives different bytes
    c = emulator.ProgramBuilder("loihi")
    x = c.input("in", 1)
    l1 = c.population("l1", 1, vth=4)
    c.connect(x, l1, weights=[[1]])
    d = emulator.ProgramBuilder("loihi")
    x = d.input("in", 1)
    l1 = d.population("l1", 1, vth=5)
    d.connect(x, l1, weights=[[1]])
    assert c.build().to_bytes() != d.build().to_bytes()


def test_file_layout():
    data = build().to_bytes()
    magic, version, mlen = HEADER.unpack_from(data)
    assert magic == MAGIC and version == FORMAT_VERSION
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    manifest = json.loads(data[HEADER.size:HEADER.size + mlen])
    assert manifest["format"] == "spikeforge-program"
    assert manifest["spec"]["name"] == "loihi"
    assert len(data) % 8 == 4  # 8-byte aligned body + CRC


def _load_bytes(tmp_path, data, **kw):
    path = tmp_path / "bad.sfp"
    path.write_bytes(data)
    with pytest.raises(ProgramFormatError) as err:
        emulator.Program.load(path, **kw)
    assert str(path) in str(err.value)
    return str(err.value)


def test_every_truncation_is_detected(tmp_path):
    data = build().to_bytes()
    cuts = sorted(set(range(0, 64)) | set(range(64, len(data), max(1, len(data) // 150))) | {len(data) - 1})
    for cut in cuts:
        with pytest.raises(ProgramFormatError):
            emulator.Program.from_bytes(data[:cut], source="cut")
    msg = _load_bytes(tmp_path, data[:10])
    assert "too short" in msg
    msg = _load_bytes(tmp_path, data[:-1])
    assert "checksum" in msg


def test_any_flipped_byte_is_detected():
    data = build().to_bytes()
    rng = np.random.default_rng(1)
    positions = sorted(set(rng.integers(0, len(data), 200).tolist()) | {0, 8, 12, 16, len(data) - 1})
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ProgramFormatError):
            emulator.Program.from_bytes(bytes(bad), source="flip")


def test_wrong_magic(tmp_path):
    data = bytearray(build().to_bytes())
    data[:8] = b"NOTSFP\0\0"
    assert "magic" in _load_bytes(tmp_path, bytes(data))


def _patch(data: bytes, *, version: int | None = None, manifest: bytes | None = None) -> bytes:
    magic, ver, mlen = HEADER.unpack_from(data)
    body = data[:-4]
    if manifest is not None:
        body = HEADER.pack(magic, ver, len(manifest)) + manifest + body[HEADER.size + mlen:]
        magic, ver, mlen = HEADER.unpack_from(body)
    if version is not None:
        body = HEADER.pack(magic, version, mlen) + body[HEADER.size:]
    return body + struct.pack("<I", zlib.crc32(body))


def test_wrong_format_version(tmp_path):
    data = _patch(build().to_bytes(), version=FORMAT_VERSION + 1)
    msg = _load_bytes(tmp_path, data)
    assert f"version {FORMAT_VERSION + 1}" in msg and "rebuild" in msg


def test_patched_file_with_fixed_crc_still_loads_when_valid():
    # the patch helper itself: an identical manifest with a recomputed CRC loads
    data = build().to_bytes()
    _, _, mlen = HEADER.unpack_from(data)
    same = _patch(data, manifest=data[HEADER.size:HEADER.size + mlen])
    assert same == data
    emulator.Program.from_bytes(same)


@pytest.mark.parametrize(
    "garbage",
    [
        b"{not json at all" + b" " * 7,
        b"[]" + b" " * 6,
        b'{"format": "spikeforge-program"}' + b" " * 4,
        b"\xff\xfe\xfd\xfc" * 4,
    ],
    ids=["not-json", "list", "missing-keys", "binary"],
)
def test_manifest_garbage_with_fixed_crc(tmp_path, garbage):
    data = _patch(build().to_bytes(), manifest=garbage)
    msg = _load_bytes(tmp_path, data)
    assert "manifest" in msg or "invalid" in msg


def test_manifest_with_wrong_values(tmp_path):
    data = build().to_bytes()
    _, _, mlen = HEADER.unpack_from(data)
    manifest = json.loads(data[HEADER.size:HEADER.size + mlen])
    # an array table pointing past the end of the file
    m1 = json.loads(json.dumps(manifest))
    m1["arrays"][0]["offset"] = 10**9
    msg = _load_bytes(tmp_path, _patch(data, manifest=json.dumps(m1).encode()))
    assert "past the end" in msg
    # a register edited out of range: a checksum-valid file that is not a valid program
    m2 = json.loads(json.dumps(manifest))
    m2["projections"][0]["params"]["weight_exp"] = 99
    msg = _load_bytes(tmp_path, _patch(data, manifest=json.dumps(m2).encode()))
    assert "weight_exp" in msg
    # an embedded spec that is not a spec
    m3 = json.loads(json.dumps(manifest))
    m3["spec"]["toml"] = "[target]\nname = 3\n"
    msg = _load_bytes(tmp_path, _patch(data, manifest=json.dumps(m3).encode()))
    assert "target.name" in msg


def test_wrong_target(tmp_path):
    path = build().save(tmp_path / "net.sfp")
    with pytest.raises(ProgramFormatError) as err:
        emulator.Program.load(path, target="xylo")
    msg = str(err.value)
    assert "'loihi'" in msg and "'xylo'" in msg and str(path) in msg


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(ProgramFormatError, match="directory"):
        emulator.Program.load(tmp_path)
    with pytest.raises(ProgramFormatError, match="does not exist"):
        emulator.Program.load(tmp_path / "missing.sfp")


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "net.sfp"
    path.write_bytes(b"old")
    p = build()
    p.save(path)
    assert path.read_bytes() == p.to_bytes()
    assert not (tmp_path / "net.sfp.tmp").exists()
    assert emulator.Program.from_bytes(path.read_bytes()).digest == p.digest
