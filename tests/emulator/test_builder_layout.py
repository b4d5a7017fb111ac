"""The layout pass (axon numbering, synapse and route order) against a plain per-synapse reference,
its three sorting paths against each other, and the Program's blockwise validation helpers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import emulator
from compiler.backend import crossbar as layout_mod
from emulator import program as program_mod
from emulator import program_file
from emulator.families.loihi import hardware as loihi_hardware
from emulator.program import Program
from spikeforge.errors import RegisterError


def network(target="loihi", seed=0, shuffle=True):
    """Two input ports, three populations, a recurrent and (not on TrueNorth, one route per neuron) a
    self projection; COO in random order unless not ``shuffle``."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder(target)
    x = b.input("in", 40)
    y = b.input("in2", 9)
    l1 = b.population("l1", 70)
    l2 = b.population("l2", 50)
    l3 = b.population("l3", 20)

    def coo(n_post, n_pre, n, signed=True):
        key = np.unique(rng.integers(0, n_post * n_pre, n))
        if shuffle:
            key = rng.permutation(key)
        w = rng.integers(1, 100, key.size) * 2 if target == "loihi" else np.ones(key.size, dtype=np.int64)
        if signed and target == "loihi":
            w[rng.random(key.size) < 0.5] *= -1
        return key // n_pre, key % n_pre, w

    types = {"axon_types": rng.integers(0, 4, 40)} if target == "truenorth" else {}
    b.connect(x, l1, weights=coo(70, 40, 900), **types)
    b.connect(y, l1, weights=coo(70, 9, 200, signed=False), delay=3,
              **({"axon_types": rng.integers(0, 4, 9)} if target == "truenorth" else {}))
    b.connect(l1, l2, weights=coo(50, 70, 1200), **({"num_weight_bits": 6} if target == "loihi" else {}))
    b.connect(l2, l3, weights=coo(20, 50, 400), delay=2)
    b.connect(l3, l1, weights=coo(70, 20, 300))
    if target != "truenorth":
        b.connect(l2, l2, weights=coo(50, 50, 300), name="self")
    b.output("out", l3)
    return b


def placements(b, kind, seed=0):
    """Contiguous runs of neurons per core (``runs``), cores scattered over each population, or one
    core per population (``single``)."""
    rng = np.random.default_rng(seed)
    out, core = {}, 0
    for pop in b.netlist().populations:
        name = pop.name
        if kind == "single":
            out[name] = np.full(pop.size, core)
            core += 1
        elif kind == "runs":
            out[name] = core + np.arange(pop.size) // 16
            core = int(out[name].max()) + 1
        else:
            out[name] = rng.integers(0, 9, pop.size)
    return out


def reference_layout(b, placement):
    """The layout by its definition, one synapse at a time (dicts and sorted lists)."""
    net = b.netlist()
    pops = list(net.populations)
    flat = [(int(placement[p.name][i]), k, i) for k, p in enumerate(pops) for i in range(p.size)]
    gid = {(k, i): g for g, (_, k, i) in enumerate(sorted(flat))}
    index = {p.name: k for k, p in enumerate(pops)}
    conns = [c for c in net.projections if c.pre_is_input] + [c for c in net.projections if not c.pre_is_input]
    pairs = sorted({(int(placement[c.post][q]), j, int(p))
                    for j, c in enumerate(conns) for q, p in zip(c.post_idx, c.pre_idx, strict=True)})
    axon = {pair: a for a, pair in enumerate(pairs)}
    syn = sorted((axon[(int(placement[c.post][q]), j, int(p))], gid[(index[c.post], int(q))], int(w))
                 for j, c in enumerate(conns) for q, p, w in zip(c.post_idx, c.pre_idx, c.weight, strict=True))
    ports = [port.name for port in net.inputs]
    routes = sorted((gid[(index[conns[j].pre], p)], a, conns[j].delay)
                    for (_, j, p), a in axon.items() if not conns[j].pre_is_input)
    inputs = sorted(((j, a), (ports.index(conns[j].pre), p, a, conns[j].delay))
                    for (_, j, p), a in axon.items() if conns[j].pre_is_input)
    return {
        "syn": np.array(syn, dtype=np.int64).reshape(-1, 3),
        "routes": np.array(routes, dtype=np.int64).reshape(-1, 3),
        "inputs": np.array([v for _, v in inputs], dtype=np.int64).reshape(-1, 4),
        "axon_projection": np.array([j for _, j, _ in pairs], dtype=np.int64),
        "pre": np.array([p for _, _, p in pairs], dtype=np.int64),
    }


@pytest.mark.parametrize("target,kind", [("loihi", "runs"), ("loihi", "scattered"), ("truenorth", "single")])
def test_layout_matches_the_per_synapse_definition(target, kind):
    b = network(target)
    placement = placements(b, kind)
    program = b.build(placement=placement)
    ref = reference_layout(b, placement)
    got = np.stack([program.syn_axon, program.syn_neuron, program.syn_weight], axis=1)
    np.testing.assert_array_equal(got, ref["syn"])
    np.testing.assert_array_equal(np.stack([program.route_src, program.route_dst, program.route_delay], axis=1),
                                  ref["routes"])
    np.testing.assert_array_equal(np.stack([program.in_port, program.in_channel, program.in_dst, program.in_delay],
                                           axis=1), ref["inputs"])
    np.testing.assert_array_equal(program.axon_projection, ref["axon_projection"])
    if target == "truenorth":
        net = b.netlist()
        conns = [c for c in net.projections if c.pre_is_input] + [c for c in net.projections if not c.pre_is_input]
        want = [conns[j].axon_types[p] for j, p in zip(ref["axon_projection"], ref["pre"], strict=True)]
        np.testing.assert_array_equal(program.axon_type, want)
    assert program.syn_axon.dtype == program.route_src.dtype == program.in_channel.dtype == np.int32


@pytest.mark.parametrize("kind", ["runs", "scattered"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sort_paths_and_block_sizes_give_the_same_bytes(monkeypatch, kind, shuffle):
    # segments sorted in place (runs, post-sorted COO), one global sort, lexsort (keys over 63 bits)
    b = network(shuffle=shuffle)
    placement = placements(b, kind)
    want = b.build(placement=placement).to_bytes()
    segments = layout_mod._segments(list(b.netlist().projections), placement)
    assert (segments is not None) == (kind == "runs" and not shuffle)
    with monkeypatch.context() as m:
        m.setattr(layout_mod, "_BLOCK", 7)
        m.setattr(program_mod, "_BLOCK", 5)
        assert b.build(placement=placement).to_bytes() == want
    with monkeypatch.context() as m:
        m.setattr(layout_mod, "_segments", lambda conns, core_of: None)
        assert b.build(placement=placement).to_bytes() == want
    with monkeypatch.context() as m:
        m.setattr(layout_mod._KeyFields, "total", property(lambda self: 64))
        assert b.build(placement=placement).to_bytes() == want


def test_segments_need_one_run_per_core_and_connection():
    b = network(shuffle=False)
    placement = placements(b, "runs")
    segments = layout_mod._segments(list(b.netlist().projections), placement)
    assert segments is not None
    lengths = segments[:, 2] - segments[:, 1]
    np.testing.assert_array_equal(segments[:, 3], np.cumsum(lengths) - lengths)
    assert lengths.sum() == sum(c.weight.size for c in b.netlist().projections)
    placement["l2"] = placement["l2"].copy()
    placement["l2"][-1] = placement["l2"][0]  # core of l2's first run comes back at its end
    assert layout_mod._segments(list(b.netlist().projections), placement) is None


def test_non_decreasing_across_blocks(monkeypatch):
    monkeypatch.setattr(layout_mod, "_BLOCK", 4)
    a = np.arange(30)
    assert layout_mod._non_decreasing(a) and layout_mod._non_decreasing(a[:1])
    for i in (1, 4, 5, 29):
        bad = a.copy()
        bad[i] = -1
        assert not layout_mod._non_decreasing(bad)


# ------------------------------------------------------------------- Program helpers
@pytest.mark.parametrize("sort", [True, False])
def test_blockwise_bincount_equals_bincount(monkeypatch, sort):
    monkeypatch.setattr(program_mod, "_BLOCK", 16)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 500, 1000).astype(np.int32)
    if sort:
        ids.sort()
    np.testing.assert_array_equal(program_mod._bincount(ids, 600), np.bincount(ids, minlength=600))
    np.testing.assert_array_equal(program_mod._bincount(ids[:0], 3), np.zeros(3, dtype=np.int64))


def test_blockwise_run_sums_equal_cumsum_differences(monkeypatch):
    monkeypatch.setattr(program_mod, "_BLOCK", 8)
    rng = np.random.default_rng(2)
    v = rng.integers(0, 1000, 100)
    offset = np.concatenate([[0, 0], np.sort(rng.integers(0, 100, 12)), [100, 100]])
    cs = np.concatenate([[0], np.cumsum(v)])
    np.testing.assert_array_equal(program_mod._run_sums(lambda lo, hi: v[lo:hi], offset),
                                  cs[offset[1:]] - cs[offset[:-1]])
    np.testing.assert_array_equal(program_mod._run_sums(lambda lo, hi: v[lo:hi], np.zeros(3, dtype=np.int64)),
                                  np.zeros(2, dtype=np.int64))


def rebuilt(program, **arrays):
    """``program`` with some arrays replaced (validation runs again)."""
    keys = program_mod.INT_ARRAYS
    return Program(program.spec, arrays={k: arrays.get(k, getattr(program, k)) for k in keys},
                   registers=program.registers, inputs=program.inputs, populations=list(program.populations.values()),
                   projections=list(program.projections), output_ports=program.output_ports,
                   metadata=program.metadata)


@pytest.mark.parametrize("block", [3, 1 << 16])
def test_untruncated_weight_names_its_projection(monkeypatch, block):
    monkeypatch.setattr(loihi_hardware, "_BLOCK", block)
    program = network(shuffle=False).build(placement=placements(network(), "runs"))
    assert rebuilt(program).to_bytes() == program.to_bytes()
    proj = program.axon_projection[program.syn_axon]
    w = program.syn_weight.copy()
    last = np.flatnonzero(proj == program.projection_index("l2->l3"))[-1]
    w[last] += 1  # odd: not a multiple of 2 (mixed-sign 8-bit)
    with pytest.raises(RegisterError, match=r"projection 'l2->l3': stored weights are not truncated"):
        rebuilt(program, syn_weight=w)
    first = np.flatnonzero(proj == program.projection_index("l1->l2"))[0]
    w[first] += 2  # even but not a multiple of 8 (num_weight_bits=6): the earlier projection is named
    with pytest.raises(RegisterError, match=r"projection 'l1->l2': stored weights are not truncated"):
        rebuilt(program, syn_weight=w)
    w = program.syn_weight.copy()
    w[np.flatnonzero(proj == program.projection_index("in2->l1"))] += 1  # excitatory 8-bit: no truncation
    rebuilt(program, syn_weight=w)


def test_usage_per_core_matches_direct_sums(monkeypatch):
    monkeypatch.setattr(program_mod, "_BLOCK", 7)
    b = network()
    program = b.build(placement=placements(b, "scattered"))
    spec = program.spec
    per_axon = np.bincount(program.syn_axon, minlength=program.n_axons)
    bits_of = np.array([p.params.get("num_weight_bits", 8) for p in program.projections])
    row = (per_axon > 0) * int(spec.synapse["synapse_row_header_bits"]) + per_axon * (
        bits_of[program.axon_projection] + int(spec.synapse["synapse_index_bits"]))
    core = program.axon_core
    usage = program.core_usage()
    np.testing.assert_array_equal([u["synapse_bits"] for u in usage], np.bincount(core, weights=row,
                                                                                   minlength=program.n_cores))
    np.testing.assert_array_equal([u["synapses"] for u in usage], np.bincount(core, weights=per_axon,
                                                                               minlength=program.n_cores))
    np.testing.assert_array_equal([u["axons_out"] for u in usage],
                                  np.bincount(program.neuron_core[program.route_src], minlength=program.n_cores))


@pytest.mark.parametrize("sizes", [(0, 5), (5, 0), (1, 1), (123, 4567), (70000, 3)])
def test_crc32_combine_equals_crc_of_the_concatenation(sizes):
    rng = np.random.default_rng(sum(sizes))
    a, b = (rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes)
    assert program_file._crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("split", [1, 10, 1 << 26])
def test_crc32_of_pieces_split_in_two_threads(monkeypatch, split):
    monkeypatch.setattr(program_file, "_CRC_SPLIT", split)
    rng = np.random.default_rng(5)
    pieces = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (3, 100, 7, 64, 1)]
    pieces.append(np.arange(9, dtype=np.int32).view(np.uint8).data)
    assert program_file._crc32(pieces) == zlib.crc32(b"".join(bytes(p) for p in pieces))
