"""Partitioning and placement: every per-core limit holds, chips split, errors name the limit, placement
beats the naive order on traffic, and placement never changes what the program computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emulator
import hw_specs
from compiler.passes.partition import mesh_order, mesh_position, partition, traffic
from spikeforge.errors import DoesNotFit


def layered(target, sizes, fan_in, *, seed=0, local=False, recurrent=False, delays=False):
    """Input + layers of random (or local, conv-like) fan-in, 8-bit mixed weights, COO."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder(target)
    prev = b.input("in", sizes[0])
    for i, n in enumerate(sizes[1:]):
        pop = b.population(f"l{i}", n, vth=40)
        k = min(fan_in, prev.size)
        post = np.repeat(np.arange(n), k)
        if local:
            centre = (np.arange(n) * prev.size) // n
            pre = (np.repeat(centre, k) + np.tile(np.arange(k), n)) % prev.size
        else:
            pre = np.concatenate([rng.choice(prev.size, k, replace=False) for _ in range(n)])
        w = rng.integers(-120, 120, post.size)
        w[w == 0] = 7
        delay = int(rng.integers(1, 4)) if delays else None
        b.connect(prev, pop, weights=(post, pre, w), delay=delay)
        if recurrent:
            b.connect(pop, pop, weights=np.where(np.eye(n, k=1) > 0, -30, 0), name=f"rec{i}")
        prev = pop
    b.output("out", prev)
    return b


def assert_within_limits(program):
    chip = program.spec.chip
    for row in program.core_usage():
        assert row["neurons"] <= chip.neurons_per_core
        assert row["axons_in"] <= chip.axons_in_per_core
        assert row["synapse_bits"] <= chip.synapse_memory_bits_per_core
        assert row["axons_out"] <= chip.axons_out_per_core


def small_spec(tmp_path: Path, **chip) -> hw_specs.HwSpec:
    """tiny.toml with some [chip] numbers changed (for one-limit error tests)."""
    text = (hw_specs.SPEC_DIR / "tiny.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {chip[key]}" if key in chip else line)
    path = tmp_path / "small.toml"
    path.write_text("\n".join(lines) + "\n")
    return hw_specs.load(str(path))


# ------------------------------------------------------------------------------ limits
@pytest.mark.parametrize("target,sizes,fan_in", [
    ("tiny", [50, 150, 100, 30], 40),
    ("loihi", [784, 3000, 2000, 10], 300),
])
def test_limits_respected_and_every_neuron_placed(target, sizes, fan_in):
    b = layered(target, sizes, fan_in)
    placement = partition(b)
    assert set(placement) == {f"l{i}" for i in range(len(sizes) - 1)}
    for name, cores in placement.items():
        assert cores.dtype == np.int64 and cores.shape == (b.netlist().population(name).size,)
    program = b.build(placement=placement)  # Program validation re-checks every limit
    assert_within_limits(program)


def test_memory_bound_layer_uses_memory_not_neuron_count():
    # loihi: 8-bit weights + 10 index bits per synapse, 32 bits per axon: fan-in 300 from 784 inputs
    b = layered("loihi", [784, 2048], 300)
    program = b.build(placement=partition(b))
    bits = program.synapse_bits()
    used = bits[program.core_neurons > 0]
    assert (used <= 1 << 20).all()
    assert used.max() > 0.9 * (1 << 20)  # cores are filled, not half-empty


def test_small_layers_share_a_core():
    b = layered("tiny", [10, 20, 20, 5], 5)
    placement = partition(b)
    cores = {int(c) for v in placement.values() for c in v}
    assert len(cores) == 1
    emulator_program = b.build(placement=placement)
    assert emulator_program.core_neurons.max() == 45


def test_network_needing_several_chips_is_split_across_chips():
    # tiny: 8 cores of 64 neurons per chip, 2 chips
    b = layered("tiny", [30, 300, 300], 8, local=True)
    placement = partition(b)
    program = b.build(placement=placement)
    t = traffic(program)
    assert t["chips_used"] == 2
    assert t["inter_chip_routes"] > 0
    chip, _, _ = mesh_position(program.spec, np.concatenate(list(placement.values())))
    assert set(chip.tolist()) == {0, 1}
    assert_within_limits(program)


def test_routes_out_limit_splits_the_source_layer(tmp_path):
    # 2 output axons per core: every l0 neuron targets all 3 cores of l1, so l0 needs 3 routes per neuron
    spec = small_spec(tmp_path, axons_out_per_core=8, fan_out_per_neuron=0)
    b = layered(spec, [4, 6, 150], 6)
    program = b.build(placement=partition(b))
    assert_within_limits(program)
    assert max(r["axons_out"] for r in program.core_usage()) <= 8


def test_mesh_order_visits_every_core_once_through_neighbours():
    for target in ("tiny", "loihi", "truenorth"):
        spec = hw_specs.load(target)
        order = mesh_order(spec)
        assert np.array_equal(np.sort(order), np.arange(spec.total_cores))
        first = order[:spec.chip.cores_per_chip]
        _, r, c = mesh_position(spec, first)
        assert (np.abs(np.diff(r)) + np.abs(np.diff(c)) == 1).all()


# ----------------------------------------------------------------------------- errors
def test_fan_in_over_axons_in_names_population_limit_and_amount():
    b = emulator.ProgramBuilder("tiny")
    x = b.input("in", 300)
    p = b.population("wide", 2)
    b.connect(x, p, weights=np.ones((2, 300), dtype=np.int64))
    with pytest.raises(DoesNotFit, match=r"population 'wide': neuron 0 alone needs 300 input axons > "
                                         r"axons_in_per_core 256 \(hw_specs/tiny.toml\) by 44; reduce its fan-in"):
        partition(b)


def test_synapse_memory_of_one_neuron(tmp_path):
    spec = small_spec(tmp_path, synapse_memory_bits_per_core=4096)
    b = emulator.ProgramBuilder(spec)
    x = b.input("in", 100)
    p = b.population("dense", 3)
    b.connect(x, p, weights=np.ones((3, 100), dtype=np.int64))
    # 100 axons x 32 header bits + 100 synapses x (8 weight + 6 index) bits = 4600
    with pytest.raises(DoesNotFit, match=r"population 'dense': neuron 0 alone needs 4600 bits of synapse memory > "
                                         r"synapse_memory_bits_per_core 4096 \(.*small.toml\) by 504 bits; "
                                         r"reduce its fan-in or use fewer weight bits"):
        partition(b)


def test_output_routes_of_one_neuron(tmp_path):
    spec = small_spec(tmp_path, axons_out_per_core=2, fan_out_per_neuron=0)
    b = emulator.ProgramBuilder(spec)
    x = b.input("in", 1)
    hub = b.population("hub", 1)
    wide = b.population("wide", 150)  # three cores of 64
    b.connect(x, hub, weights=[[1]])
    b.connect(hub, wide, weights=np.ones((150, 1), dtype=np.int64))
    with pytest.raises(DoesNotFit, match=r"population 'hub': neuron 0 alone needs 3 output routes > "
                                         r"axons_out_per_core 2 \(.*small.toml\) by 1; reduce its fan-out"):
        partition(b)


def test_fan_out_per_neuron_on_truenorth_suggests_neuron_copies():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 1)
    hub = b.population("hub", 1)
    wide = b.population("wide", 300)  # two cores of 256: two routes, TrueNorth allows one
    b.connect(x, hub, weights=[[1]])
    b.connect(hub, wide, weights=np.ones((300, 1), dtype=np.int64))
    with pytest.raises(DoesNotFit, match=r"population 'hub': neuron 0 needs 2 routes .* > fan_out_per_neuron 1 "
                                         r"\(hw_specs/truenorth.toml\) by 1; .*copies, one per target core"):
        partition(b)


def test_chips_run_out():
    b = emulator.ProgramBuilder("tiny")  # 2 chips x 8 cores x 64 neurons = 1024 neurons
    b.population("huge", 1100)
    with pytest.raises(DoesNotFit, match=r"network needs 18 cores > 16 \(8 cores_per_chip x 2 max_chips, "
                                         r"hw_specs/tiny.toml\) by 2; population\(s\) 'huge' find no core; "
                                         r"choose a larger target"):
        partition(b)


@pytest.mark.parametrize("what,pops,match", [
    ("hidden", [("h", 1001, False)], r"1001 hidden neurons > neurons_per_core 1000 \(hw_specs/xylo.toml\) by 1"),
    ("readout", [("h", 10, False), ("r", 9, True)], r"9 readout neurons > readout_neurons 8 .* by 1"),
])
def test_single_core_target_totals(what, pops, match):
    b = emulator.ProgramBuilder("xylo")
    for name, size, readout in pops:
        b.population(name, size, readout=readout)
    with pytest.raises(DoesNotFit, match=r"populations 'h'.* on the one core of xylo: " + match):
        partition(b)


def test_single_core_target_input_channels():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 20)
    h = b.population("h", 4)
    b.connect(x, h, weights=np.ones((4, 20), dtype=np.int64))
    with pytest.raises(DoesNotFit, match=r"20 input channels > input_channels 16 \(hw_specs/xylo.toml\) by 4; "
                                         r"reduce the input size"):
        partition(b)


def test_single_core_target_fits():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 16)
    h = b.population("h", 50)
    r = b.population("r", 4, readout=True)
    b.connect(x, h, weights=np.ones((50, 16), dtype=np.int64))
    b.connect(h, r, weights=np.ones((4, 50), dtype=np.int64))
    placement = partition(b)
    assert all((v == 0).all() for v in placement.values())
    b.build(placement=placement)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        partition(layered("tiny", [4, 4], 2), strategy="magic")


# ----------------------------------------------------------------------------- traffic
def test_placement_beats_naive_on_traffic():
    b = layered("loihi", [500, 4000, 4000, 3000, 10], 24, local=True)
    greedy = traffic(b.build(placement=partition(b)))
    naive = traffic(b.build(placement=partition(b, strategy="sequential")))
    rng = np.random.default_rng(0)
    seq = partition(b, strategy="sequential")
    used = np.unique(np.concatenate(list(seq.values())))
    shuffle = np.arange(128)
    shuffle[used] = rng.permutation(128)[:used.size]
    randomised = traffic(b.build(placement={k: shuffle[v] for k, v in seq.items()}))
    assert greedy["routes"] == naive["routes"] == randomised["routes"]
    assert greedy["hops"] < naive["hops"] < randomised["hops"]
    assert greedy["synapse_hops"] < naive["synapse_hops"]


def test_traffic_counts_hops_by_hand():
    b = emulator.ProgramBuilder("tiny")
    x = b.input("in", 1)
    a = b.population("a", 1)
    c = b.population("c", 2)
    b.connect(x, a, weights=[[1]])
    b.connect(a, c, weights=[[1], [1]])
    # a on core 0 (0, 0); c[0] on core 7 (row 1, col 3), c[1] on chip 1's core 8 (row 0, col 0)
    program = b.build(placement={"a": [0], "c": [7, 8]})
    t = traffic(program)
    assert t["routes"] == 2
    # 1 + 3 = 4 hops on chip; chip 1 sits to the right: col 0 + 4 = 4 hops
    assert t["hops"] == 8
    assert t["inter_chip_routes"] == 1 and t["inter_chip_hops"] == 1
    assert t["cores_used"] == 3 and t["chips_used"] == 2


# ------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("target", ["tiny", "loihi"])
def test_partitioned_program_emulates_like_auto_placed(target):
    sizes = [20, 90, 70, 12] if target == "tiny" else [64, 1500, 900, 10]
    b = layered(target, sizes, 12, recurrent=True, delays=True, seed=3)
    placed = b.build(placement=partition(b))
    auto = b.build()
    spikes = (np.random.default_rng(5).random((2, 25, sizes[0])) < 0.4).astype(np.int64)
    probes = [f"l{i}.v" for i in range(len(sizes) - 1)]
    ta = emulator.run(placed, spikes, probes=probes, engine="fast")
    tb = emulator.run(auto, spikes, probes=probes, engine="fast")
    assert tb.spikes["out"].sum() > 0
    np.testing.assert_array_equal(ta.spikes["out"], tb.spikes["out"])
    for key in probes:
        np.testing.assert_array_equal(ta.probes[key], tb.probes[key])
    for i in range(len(sizes) - 1):
        name = "in->l0" if i == 0 else f"l{i - 1}->l{i}"
        np.testing.assert_array_equal(placed.weights(name), auto.weights(name))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 200), st.integers(1, 300), st.integers(0, 3)), min_size=1, max_size=4),
       st.integers(0, 2**31 - 1))
def test_random_graphs_fit_or_raise_does_not_fit(layers, seed):
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("tiny")
    prev = [b.input("in", int(rng.integers(1, 300)))]
    for i, (size, fan, back) in enumerate(layers):
        pop = b.population(f"p{i}", size)
        for j, src in enumerate([prev[-1], *prev[-1 - back:-1]]):
            k = min(fan, src.size)
            post = np.repeat(np.arange(size), k)
            pre = np.concatenate([rng.choice(src.size, k, replace=False) for _ in range(size)])
            b.connect(src, pop, weights=(post, pre, np.full(post.size, 3)), name=f"c{i}_{j}")
        prev.append(pop)
    try:
        placement = partition(b)
    except DoesNotFit:
        return
    assert_within_limits(b.build(placement=placement))


def test_progress_reports_neurons_done():
    b = layered("tiny", [20, 90, 70, 12], 8)
    calls = []
    partition(b, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (172, 172)
    assert all(t == 172 for _, t in calls) and len(calls) >= 3


def test_cores_of_a_population_are_contiguous_runs():
    # every core holds one contiguous range of a population's neurons (what build's fast path uses)
    b = layered("loihi", [256, 3000, 3000, 100], 64, local=True)
    for cores in partition(b).values():
        runs = cores[np.r_[0, np.flatnonzero(np.diff(cores)) + 1]]
        assert np.unique(runs).size == runs.size


@pytest.mark.slow
def test_large_network_fits_and_builds():
    # ~5 M synapses over several loihi chips
    b = layered("loihi", [1000, 20000, 20000, 10000], 100, local=True)
    program = b.build(placement=partition(b))
    assert_within_limits(program)
    assert traffic(program)["chips_used"] >= 1


def test_compile_benchmark_runs_at_a_small_size(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compile.py"
    spec = importlib.util.spec_from_file_location("compile_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--min-synapses", "2e4", "--max-synapses", "2e4", "--fan-in", "20"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "s/M syn" in lines[1] and "x first" in lines[1] and len(lines) == 4
    assert lines[2].split()[12] == "1.00"  # the first size is its own baseline
    assert lines[3].startswith("largest size:") and "target < 60 s: met" in lines[3]


def test_projection_without_synapses_builds():
    b = emulator.ProgramBuilder("tiny")
    x = b.input("in", 3)
    a = b.population("a", 4)
    c = b.population("c", 2)
    b.connect(x, a, weights=np.ones((4, 3), dtype=np.int64))
    b.connect(a, c, weights=np.zeros((2, 4), dtype=np.int64))
    program = b.build(placement=partition(b))
    assert program.route_src.size == 0 and program.route_src.dtype == np.int32


@pytest.mark.parametrize("local,recurrent", [(False, False), (True, False), (False, True)])
def test_pairs_found_while_cutting_are_the_distinct_pre_chunk_pairs(local, recurrent):
    # the (pre unit, chunk) pairs recorded from the cutting windows equal the distinct pairs of the cut
    from compiler.backend import placement as part

    b = layered("tiny", [60, 200, 150, 40], 12, local=local, recurrent=recurrent)
    model = part._Model(b.netlist(), b.spec)
    for name in model.order:
        routes = np.ones(model.sizes[name], dtype=np.int64)
        chunks, pairs = part._chunk_population(model, name, routes)
        chunk_of = np.repeat(np.arange(len(chunks)), [c.end - c.start for c in chunks])
        incoming = model.incoming(name)
        assert set(pairs) == {e.name for e in incoming if not e.pre_is_input}
        for e in incoming:
            pre, chunk = part._axon_pairs(e, chunk_of[e.post_idx])
            axons = np.bincount(chunk, minlength=len(chunks))
            if e.name in pairs:
                got = sorted(zip(pairs[e.name].chunk.tolist(), pairs[e.name].pre.tolist(), strict=True))
                assert got == sorted(zip(chunk.tolist(), pre.tolist(), strict=True))
            if len(incoming) == 1:
                np.testing.assert_array_equal([c.axons for c in chunks], axons)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_sorted_unique_equals_np_unique(dtype):
    from compiler.backend.placement import _sorted_unique

    rng = np.random.default_rng(3)
    key = rng.integers(0, 1000, 5000).astype(dtype)
    np.testing.assert_array_equal(_sorted_unique(key), np.unique(key))
    assert _sorted_unique(key[:0]).size == 0


@pytest.mark.parametrize("n_pre", [50, 1 << 25, 1 << 29])  # marker, int32 sort, int64 sort
def test_axon_pairs_equal_np_unique(n_pre):
    from compiler.backend.placement import _axon_pairs, _Edge

    rng = np.random.default_rng(4)
    pre = rng.integers(0, n_pre, 3000)
    post = np.sort(rng.integers(0, 40, 3000))
    core = rng.integers(3, 12, 40)[post]
    edge = _Edge("e", "a", False, n_pre, "b", post, pre, np.zeros(41, dtype=np.int64), 18, 32)
    got_pre, got_core = _axon_pairs(edge, core)
    want = np.unique(core * n_pre + pre)
    np.testing.assert_array_equal(got_core, want // n_pre)
    np.testing.assert_array_equal(got_pre, want % n_pre)


def test_traffic_in_blocks_equals_the_whole_route_list(monkeypatch):
    from compiler.backend import placement as part

    b = layered("tiny", [50, 150, 100, 30], 40)
    program = b.build(placement=partition(b))
    spec, cols = program.spec, int(program.spec.chip.mesh[1])
    ca, ra, cola = mesh_position(spec, program.neuron_core[program.route_src])
    cb, rb, colb = mesh_position(spec, program.axon_core[program.route_dst])
    hops = np.abs(ra - rb) + np.abs((ca * cols + cola) - (cb * cols + colb))
    syn = np.bincount(program.syn_axon, minlength=program.n_axons)[program.route_dst]
    monkeypatch.setattr(part, "_TRAFFIC_BLOCK", 7)
    t = traffic(program)
    assert t["hops"] == hops.sum() and t["synapse_hops"] == (hops * syn).sum()
    assert t["mean_hops"] == float(hops.mean()) and t["routes"] == hops.size
    assert t["inter_chip_routes"] == (ca != cb).sum() and t["inter_chip_hops"] == np.abs(ca - cb).sum()
