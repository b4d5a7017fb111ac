"""The fast engine's set-up (a Program's synapse paths grouped by edge, each edge's matrix filled in
place) builds exactly the edges of the straightforward construction it replaces: every path as flat
int64 arrays, one stable sort over all of them, one float64 bincount per edge, then the dtype from
the summed matrix. Pinned on random programs of every family (multi-core ``tiny`` placements with
several populations per core, recurrence, delays, several projections between the same
populations, Xylo's two synaptic states, TrueNorth's axon types), on sparse (CSR) edges, on edges
whose path bound needs float64, on axons fed by several routes, and on flat path arrays given in
any order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_engines_agree import draw_inputs, draw_registers, draw_weights

import emulator
import hw_specs
from emulator import crossbar
from emulator.engine import Wiring
from emulator.fast import FastEngine, Lowered, LoweredSynapses, SynapseBlock, synops_terms
from spikeforge.errors import DoesNotFit

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TARGETS = ("loihi", "tiny", "xylo", "truenorth")


# ----------------------------------------------------------------- the straightforward construction
def flat_paths(w: Wiring) -> tuple[tuple[np.ndarray, ...], set[tuple[int, int]]]:
    """Every (route, synapse of its axon) path as 7 flat int64 arrays (src, pre, delay, proj,
    post_pop, post, increment) and the stepwise dependencies: the definition, route by route."""
    p = w.program
    pops = list(p.populations.values())
    pop_of = np.zeros(w.n_neurons, dtype=np.int64)
    local_of = np.zeros(w.n_neurons, dtype=np.int64)
    for i, pop in enumerate(pops):
        pop_of[pop.neurons] = i
        local_of[pop.neurons] = np.arange(pop.size)
    stepwise = w.datapath.stepwise(w.registers)
    rows, deps = [], set()
    routes = [(0, int(c), int(a), int(d)) for c, a, d in zip(w.in_channel_global, p.in_dst, p.in_delay, strict=True)]
    routes += [(1 + int(pop_of[s]), int(local_of[s]), int(a), int(d))
               for s, a, d in zip(p.route_src, p.route_dst, p.route_delay, strict=True)]
    for src, unit, axon, delay in routes:
        for s in np.flatnonzero(p.syn_axon == axon).tolist():
            n = int(p.syn_neuron[s])
            if stepwise[n]:
                if src >= 1:
                    deps.add((src - 1, int(pop_of[n])))
                continue
            rows.append((src, unit, delay, int(w.axon_projection[axon]), int(pop_of[n]), int(local_of[n]),
                         int(w.syn_increment[s])))
    cols = np.array(rows, dtype=np.int64).reshape(-1, 7).T
    return tuple(np.ascontiguousarray(c) for c in cols), deps


def reference_edges(net: Lowered, flat: tuple[np.ndarray, ...], ordered: bool) -> list[tuple]:
    """``[(src, post_pop, proj, delay, mats)]`` in that order, by the straightforward construction."""
    src, pre, delay, proj, post_pop, post, inc = flat
    sizes = [net.n_channels] + [pop.size for pop in net.populations]
    max_count = [net.spec.chip.max_input_count] + [int(pop.max_spikes.max(initial=0)) for pop in net.populations]
    out = []
    keys = sorted({(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(src, post_pop, proj, delay, strict=True)})
    for k, q, j, d in keys:
        m = (src == k) & (post_pop == q) & (proj == j) & (delay == d)
        shape = (sizes[k], sizes[1 + q])
        n = shape[0] * shape[1]
        if crossbar.keep_sparse(int(m.sum()), n):
            mat = sp.csr_matrix((inc[m].astype(np.float64), (pre[m], post[m])), shape=shape)
            mat.sum_duplicates()
            dense = mat.toarray()
            kind = "csr"
        else:
            dense = np.bincount(pre[m] * shape[1] + post[m], weights=inc[m].astype(np.float64),
                                minlength=n).reshape(shape)
            kind = "dense"
        bound = float(np.abs(dense).sum(axis=0).max(initial=0.0)) * max_count[k]
        dtype = np.float32 if bound < 2**24 else np.float64
        parts = (np.maximum(dense, 0), np.minimum(dense, 0)) if ordered else (dense,)
        out.append((k, q, j, d, kind, tuple(x.astype(dtype) for x in parts)))
    return out


def assert_same_edges(engine: FastEngine, want: list[tuple]) -> None:
    got = [(e.src, e.post, e.proj, e.delay) for e in engine.edges]
    assert got == [w[:4] for w in want]
    for e, (*_, kind, mats) in zip(engine.edges, want, strict=True):
        assert len(e.crossbars) == len(mats)
        for xb, ref in zip(e.crossbars, mats, strict=True):
            np.testing.assert_array_equal(xb.dense(), np.rint(ref).astype(np.int64))
            if xb.kind == "int8":  # the exact int8 digits replace either form (emulator.crossbar)
                assert xb.dtype == np.int32
                continue
            assert (xb.kind == "sparse") == (kind == "csr"), (kind, xb.kind)
            assert xb.dtype == ref.dtype, (xb.dtype, ref.dtype)


def check_program(program: emulator.Program) -> None:
    """The engine's edges, paths, dependencies and synaptic-op terms equal the definition's."""
    w = Wiring(program)
    flat, deps = flat_paths(w)
    net = Lowered.from_wiring(w)
    assert net.dependencies == frozenset(deps)
    got = np.stack([c for c in (net.synapses.src, net.synapses.pre, net.synapses.delay, net.synapses.proj,
                                net.synapses.post_pop, net.synapses.post, net.synapses.increment)], axis=1)
    want = np.stack(flat, axis=1)
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(want, axis=0))
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))  # with multiplicity
    for blk in net.synapses.blocks:
        assert blk.size and blk.pre.dtype.kind == blk.post.dtype.kind == blk.increment.dtype.kind == "i"
    ordered = bool(w.datapath.ORDERED)
    ref = reference_edges(net, flat, ordered)
    sizes = [net.n_channels] + [pop.size for pop in net.populations]
    saved = crossbar.KERNELS
    try:
        for kernels in (saved, ("dense", "sparse")):  # int8 digits where exact, and the float forms
            crossbar.KERNELS = kernels
            assert_same_edges(FastEngine(w, 1, 0), ref)
            # the same paths given flat, in edge order and shuffled, build the same edges
            for order in (np.arange(flat[0].size), np.random.default_rng(0).permutation(flat[0].size)):
                paths = LoweredSynapses(*(c[order] for c in flat))
                assert_same_edges(FastEngine(dataclasses.replace(net, synapses=paths), 1, 0), ref)
    finally:
        crossbar.KERNELS = saved
    for order in (np.arange(flat[0].size), np.random.default_rng(0).permutation(flat[0].size)):
        paths = LoweredSynapses(*(c[order] for c in flat))
        assert [(s, d, v.tolist()) for s, d, v in synops_terms(paths, sizes)] == [
            (s, d, v.tolist()) for s, d, v in synops_terms(net.synapses, sizes)]


# ------------------------------------------------------------------------------ random programs
def draw_program(data, target: str) -> emulator.Program:
    """A random program of ``target``'s family: up to 3 populations, recurrence, delays, and up to
    two projections between the same pair (other formats: delay, synaptic state, axon types)."""
    spec = hw_specs.load(target)
    fam = spec.family
    b = emulator.ProgramBuilder(target)
    x = b.input("in", data.draw(st.integers(1, 5), label="n_in"))
    n_pops = data.draw(st.integers(1, 3), label="n_pops")
    sizes = [data.draw(st.integers(1, 6), label="size") for _ in range(n_pops)]
    readout = fam == "xylo" and n_pops >= 2 and data.draw(st.booleans(), label="readout")
    pops = [b.population(f"p{i}", s, readout=readout and i == n_pops - 1,
                         **draw_registers(data, spec, s, readout and i == n_pops - 1)) for i, s in enumerate(sizes)]
    pairs: list[tuple[str | int, int]] = [("in", 0)]
    pairs += [("in", j) for j in range(1, n_pops) if data.draw(st.booleans(), label=f"in->p{j}")]
    for i in range(n_pops):
        if readout and i == n_pops - 1:
            continue
        if fam == "truenorth":  # fan-out 1: at most one projection per population
            if data.draw(st.booleans(), label=f"p{i} projects"):
                pairs.append((i, data.draw(st.integers(0, n_pops - 1), label="target")))
            continue
        pairs += [(i, j) for j in range(n_pops) if data.draw(st.booleans(), label=f"p{i}->p{j}")]
    if readout and not any(j == n_pops - 1 and i != "in" for i, j in pairs):
        pairs.append((0, n_pops - 1))
    if fam != "truenorth" and data.draw(st.booleans(), label="repeat a pair"):
        pairs.append(data.draw(st.sampled_from(pairs), label="repeated"))
    for n, (i, j) in enumerate(pairs):
        pre = x if i == "in" else pops[i]
        post = pops[j]
        kw: dict = {}
        if fam == "xylo":
            kw["weight_shift"] = data.draw(st.integers(0, 8), label="weight_shift")
            kw["synapse"] = 0 if readout and j == n_pops - 1 else data.draw(st.integers(0, 1), label="synapse")
        else:
            rng = spec.synapse_range("input_delay" if i == "in" else "delay")
            kw["delay"] = data.draw(st.one_of(st.integers(rng.lo, min(rng.hi, 3)), st.just(rng.hi)), label="delay")
            if fam == "truenorth":
                kw["axon_types"] = data.draw(st.lists(st.integers(0, 3), min_size=pre.size, max_size=pre.size),
                                             label="axon_types")
            else:
                kw["weight_exp"] = data.draw(st.integers(-8, 7), label="weight_exp")
        b.connect(pre, post, weights=draw_weights(data, spec, post.size, pre.size), name=f"c{n}", **kw)
    b.output("out", pops[-1])
    placement = None
    if target == "tiny":  # several small cores, several populations on a core
        placement = {f"p{i}": np.array(data.draw(st.lists(st.integers(0, 3), min_size=s, max_size=s),
                                                 label="cores"), dtype=np.int64) for i, s in enumerate(sizes)}
    try:
        return b.build(placement=placement)
    except DoesNotFit:
        assume(False)
        raise


@pytest.mark.parametrize("target", TARGETS)
def test_edges_equal_the_straightforward_construction(target):
    @SETTINGS
    @given(data=st.data())
    def check(data):
        check_program(draw_program(data, target))

    check()


@pytest.mark.parametrize("target", TARGETS)
def test_engines_agree_on_programs_with_repeated_pairs(target):
    """Repeated projections between the same populations run alike on both engines."""
    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        program = draw_program(data, target)
        spikes = draw_inputs(data, program, 2, 4)
        probes = [f"{p}.{s}" for p in program.populations for s in (*program.spec.state, "spikes")]
        fast = emulator.run(program, spikes, probes=probes, engine="fast")
        ref = emulator.run(program, spikes, probes=probes, engine="reference")
        for name in probes:
            np.testing.assert_array_equal(fast.probes[name], ref.probes[name], err_msg=name)
        np.testing.assert_array_equal(fast.synaptic_ops, ref.synaptic_ops)

    check()


# ------------------------------------------------------------------------------ special edges
def test_sparse_edges_equal_the_straightforward_construction():
    """Edges of few non-zero entries are CSR (Loihi unordered, Xylo ordered: two parts)."""
    rng = np.random.default_rng(3)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 1024)
    h = b.population("h", 512, vth=100)
    post = rng.integers(0, 512, 2000)
    pre = rng.integers(0, 1024, 2000)
    keep = np.unique(post * 1024 + pre)
    b.connect(x, h, weights=(keep // 1024, keep % 1024, rng.integers(1, 100, keep.size)))
    b.output("out", h)
    check_program(b.build())
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 4)
    h = b.population("h", 600, threshold=1000)
    b.connect(x, h, weights=rng.integers(-5, 5, (600, 4)))
    post = np.repeat(np.arange(600), 15)
    pre = (post + rng.integers(1, 600, post.size)) % 600
    keep = np.unique(post * 600 + pre)
    b.connect(h, h, weights=(keep // 600, keep % 600, rng.integers(-128, 128, keep.size)), weight_shift=3)
    b.output("out", h)
    check_program(b.build())


def test_wide_edges_equal_the_straightforward_construction():
    """Large increments and fan-ins: the path bound fails and the matrix is summed in float64; its
    dtype is then float32 when the summed matrix is small (cancelling paths), else float64."""
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 16)
    h = b.population("h", 64, threshold=1000)
    b.connect(x, h, weights=np.full((64, 16), 127), weight_shift=8)
    b.connect(h, h, weights=np.random.default_rng(1).choice([-128, 127], (64, 64)), weight_shift=8)
    b.output("out", h)
    check_program(b.build())
    # cancelling repeated paths, each beyond float32's exact integers (2^25 + 1): their sums, 0 and 1,
    # make a float32 matrix, but only a float64 sum gets them right
    net = Lowered.from_wiring(Wiring(b.build()))
    big = (1 << 25) + 1
    flat = [np.array(v, dtype=np.int64) for v in (
        [1] * 6, [0, 0, 0, 0, 1, 1], [1] * 6, [1] * 6, [0] * 6, [5] * 6, [big, big, -big, -big, 3, -2])]
    ref = reference_edges(net, tuple(flat), ordered=True)
    pos, neg = ref[0][5]
    assert pos.dtype == np.float32 and (pos + neg)[:, 5].tolist() == [0, 1] + [0] * 62
    engine = FastEngine(dataclasses.replace(net, synapses=LoweredSynapses(*flat)), 1, 0)
    assert_same_edges(engine, ref)


def test_blocks_of_one_edge_add_up():
    """Several blocks of one edge, repeated pairs within and across them, int32 or int64 arrays."""
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 3)
    h = b.population("h", 2)
    b.connect(x, h, weights=np.ones((2, 3), dtype=np.int64))
    b.output("out", h)
    net = Lowered.from_wiring(Wiring(b.build()))
    i32 = np.int32
    blocks = [SynapseBlock(0, 1, 0, 0, np.array([0, 0, 2], dtype=i32), np.array([1, 1, 0], dtype=i32),
                           np.array([5, -2, 7], dtype=i32)),
              SynapseBlock(0, 1, 0, 0, np.array([0, 1]), np.array([1, 1]), np.array([4, -9])),
              SynapseBlock(0, 1, 0, 0, np.zeros(0, dtype=i32), np.zeros(0, dtype=i32), np.zeros(0, dtype=i32))]
    engine = FastEngine(dataclasses.replace(net, synapses=LoweredSynapses(blocks=blocks)), 1, 0)
    (edge,) = engine.edges
    np.testing.assert_array_equal(edge.crossbars[0].dense(), [[0, 7], [0, -9], [7, 0]])
    assert edge.crossbars[0].dtype == (np.int32 if crossbar.int8_available() else np.float32)
    syn = LoweredSynapses(blocks=blocks)
    assert syn.size == 5 and syn.pre.tolist() == [0, 0, 2, 0, 1] and syn.increment.dtype == np.int64
    assert syn.src.tolist() == [0] * 5 and syn.delay.tolist() == [1] * 5
    with pytest.raises(TypeError):
        LoweredSynapses(np.zeros(1), blocks=blocks)


def test_hand_made_program_paths():
    """A Program beyond what the builder makes: an axon fed by two routes of the same source and
    delay and by an input route, and an axon whose synapses reach two populations of one core."""
    b = emulator.ProgramBuilder("tiny")
    x = b.input("in", 2)
    h = b.population("h", 3, vth=50)
    o = b.population("o", 2, vth=50)
    b.connect(x, h, weights=np.array([[3, 0], [5, 7], [0, -2]]))
    b.connect(h, o, weights=np.array([[1, 2, 3], [-4, 0, 6]]), delay=2)
    b.output("out", o)
    p = b.build(placement={"h": np.zeros(3, dtype=np.int64), "o": np.zeros(2, dtype=np.int64)})
    arrays = {k: np.array(getattr(p, k)) for k in emulator.program.INT_ARRAYS}
    h0, h2 = (int(n) for n in p.populations["h"].neurons[[0, 2]])
    axon = int(arrays["route_dst"][arrays["route_src"] == h2][0])
    for key, value in (("route_src", h0), ("route_dst", axon), ("route_delay", 2)):
        arrays[key] = np.append(arrays[key], value)
    for key, value in (("in_port", 0), ("in_channel", 1), ("in_dst", axon), ("in_delay", 1)):
        arrays[key] = np.append(arrays[key], value)
    # input channel 0's axon (onto h) also reaches o's neuron 1 (same core)
    in_axon = int(arrays["in_dst"][arrays["in_channel"] == 0][0])
    o1 = int(p.populations["o"].neurons[1])
    keys = arrays["syn_axon"].astype(np.int64) * p.n_neurons + arrays["syn_neuron"]
    keys = np.append(keys, in_axon * p.n_neurons + o1)
    order = np.argsort(keys, kind="stable")
    for key, value in (("syn_axon", in_axon), ("syn_neuron", o1), ("syn_weight", 10)):
        arrays[key] = np.append(arrays[key], value)[order]
    program = emulator.Program(p.spec, arrays=arrays, registers=dict(p.registers), inputs=dict(p.input_ports),
                               populations=list(p.populations.values()), projections=list(p.projections),
                               output_ports=dict(p.output_ports))
    assert program.n_cores == 1
    check_program(program)
    net = Lowered.from_wiring(Wiring(program))
    assert {(blk.src, blk.post_pop) for blk in net.synapses.blocks} >= {(0, 0), (0, 1), (1, 1)}
    spikes = np.random.default_rng(0).integers(0, 2, (2, 6, 2))
    probes = ["h.u", "o.u", "o.v", "h.spikes"]
    fast = emulator.run(program, spikes, probes=probes, engine="fast")
    ref = emulator.run(program, spikes, probes=probes, engine="reference")
    for name in probes:
        np.testing.assert_array_equal(fast.probes[name], ref.probes[name], err_msg=name)


def test_truenorth_stochastic_neurons_are_left_out_of_the_edges():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 3)
    p = b.population("p", 4, stochastic_synapse=np.array([0, 1, 0, 1]))
    q = b.population("q", 2)
    b.connect(x, p, weights=np.ones((4, 3), dtype=np.int64), axon_types=[0, 1, 2])
    b.connect(p, q, weights=np.ones((2, 4), dtype=np.int64))
    b.output("out", q)
    check_program(b.build())
