"""A netlist run by the fast engine (:mod:`emulator.lowering`) computes what the Program built from it
computes: on random builder networks of every family — deterministic TrueNorth, no partial sum
leaving a saturating register — every population's spikes, every probed state and every
synaptic-op count are equal, in one run and across chunks, however placement spreads the
populations over cores. Without axons a netlist saturates a step's summed drive once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_engines_agree import draw_registers, draw_weights, extreme, only_kernels

import emulator
from emulator.fast import FastEngine, synops_terms
from emulator.lowering import NetlistSimulator, NetlistTrace, lower
from spikeforge.errors import DoesNotFit, EmulatorError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.filter_too_much])
#: TrueNorth registers that draw random numbers (per axon, per neuron id): a compiled network has none
STOCHASTIC = ("stochastic_synapse", "stochastic_leak", "threshold_mask_bits")


def draw_network(data, target: str) -> tuple[emulator.ProgramBuilder, dict | None]:
    """A random builder network (recurrence, delays, several ports) and a placement (``tiny``:
    neurons spread over cores at random; else the builder's own)."""
    b = emulator.ProgramBuilder(target)
    spec = b.spec
    fam = spec.family
    ports = [b.input(f"in{k}", data.draw(st.integers(1, 4), label="n_in"))
             for k in range(data.draw(st.integers(1, 2), label="ports"))]
    n_pops = data.draw(st.integers(1, 3), label="n_pops")
    sizes = [data.draw(st.integers(1, 5), label="size") for _ in range(n_pops)]
    readout = fam == "xylo" and n_pops >= 2 and data.draw(st.booleans(), label="readout")
    pops = []
    for i, size in enumerate(sizes):
        ro = readout and i == n_pops - 1
        regs = draw_registers(data, spec, size, ro)
        if fam == "truenorth":
            regs.update({k: 0 for k in STOCHASTIC})
        pops.append(b.population(f"p{i}", size, readout=ro, **regs))
    pairs = [(ports[0], 0)] + [(port, j) for port in ports for j in range(n_pops)
                               if (port, j) != (ports[0], 0) and data.draw(st.booleans(), label="in->p")]
    for i in range(n_pops):
        if readout and i == n_pops - 1:
            continue
        if fam == "truenorth":  # one target per neuron: each population feeds at most one projection
            if data.draw(st.booleans(), label="projects"):
                pairs.append((i, data.draw(st.integers(0, n_pops - 1), label="target")))
            continue
        pairs += [(i, j) for j in range(n_pops) if data.draw(st.booleans(), label=f"p{i}->p{j}")]
    if readout and not any(j == n_pops - 1 and not isinstance(i, emulator.Node) for i, j in pairs):
        pairs.append((0, n_pops - 1))
    for k, (i, j) in enumerate(pairs):
        is_input = isinstance(i, emulator.Node)
        pre = i if is_input else pops[i]
        post = pops[j]
        kw: dict = {}
        rng = spec.synapse_range("input_delay" if is_input else "delay")
        if fam == "loihi":
            kw["weight_exp"] = data.draw(extreme(-8, 7), label="weight_exp")
            kw["num_weight_bits"] = data.draw(extreme(1, 8), label="num_weight_bits")
        elif fam == "xylo":
            kw["weight_shift"] = data.draw(st.one_of(st.integers(0, 2), st.integers(0, 8)), label="weight_shift")
            kw["synapse"] = 0 if readout and j == n_pops - 1 else data.draw(st.integers(0, 1), label="synapse")
        else:
            kw["axon_types"] = data.draw(st.lists(st.integers(0, 3), min_size=pre.size, max_size=pre.size),
                                         label="axon_types")
        if fam != "xylo" or rng.lo != rng.hi:
            kw["delay"] = data.draw(st.one_of(st.integers(rng.lo, min(rng.hi, 4)), st.just(rng.hi)), label="delay")
        b.connect(pre, post, weights=draw_weights(data, spec, post.size, pre.size), name=f"c{k}", **kw)
    b.output("out", pops[-1])
    placement = None
    if target == "tiny":
        placement = {f"p{i}": np.array(data.draw(st.lists(st.integers(0, 3), min_size=s, max_size=s),
                                                 label="cores"), dtype=np.int64) for i, s in enumerate(sizes)}
    return b, placement


def draw_spikes(data, b: emulator.ProgramBuilder, batch: int, steps: int) -> dict[str, np.ndarray]:
    most = b.spec.chip.max_input_count
    top = data.draw(st.sampled_from(sorted({1, min(2, most), most})), label="top")
    out = {}
    for port in b.netlist().inputs:
        shape = (batch, steps, port.size)
        rate = data.draw(st.sampled_from([0.1, 0.5, 0.9]), label="rate")
        seed = data.draw(st.integers(0, 2**16), label="seed")
        rng = np.random.default_rng(seed)
        out[port.name] = np.where(rng.random(shape) < rate, rng.integers(1, top + 1, shape), 0)
    return out


class Watching(FastEngine):
    """The fast engine, noting whether some step's partial sums could leave a saturating register
    (the engine then asks for the chip's delivery order, which a netlist does not have)."""

    risky = False

    def in_order(self, *args, **kwargs):
        self.risky = True
        return super().in_order(*args, **kwargs)


def saturates(b: emulator.ProgramBuilder, spikes: dict[str, np.ndarray]) -> bool:
    net = lower(b.netlist(), b.spec)
    engine = Watching(net, next(iter(spikes.values())).shape[0], seed=0)
    inputs = np.concatenate([spikes[p.name] for p in b.netlist().inputs], axis=2)
    engine.run(inputs, {})
    return engine.risky


def all_probes(b: emulator.ProgramBuilder) -> list[str]:
    return [f"{p.name}.{var}" for p in b.netlist().populations for var in (*b.spec.state, "spikes")]


def joined(parts: list[emulator.Trace]) -> dict[str, np.ndarray]:
    """Every array of consecutive traces, concatenated over time."""
    out = {f"spikes/{k}": np.concatenate([p.spikes[k] for p in parts], axis=1) for k in parts[0].spikes}
    out |= {f"probes/{k}": np.concatenate([p.probes[k] for p in parts], axis=1) for k in parts[0].probes}
    out["synaptic_ops"] = np.concatenate([p.synaptic_ops for p in parts], axis=1)
    for part in parts:
        if isinstance(part, NetlistTrace):
            out |= {f"pop/{k}": np.concatenate([p.populations[k] for p in parts], axis=1)  # type: ignore[attr-defined]
                    for k in part.populations}
            break
    return out


def check_agreement(data, target: str) -> None:
    b, placement = draw_network(data, target)
    try:
        program = b.build(placement=placement)
    except DoesNotFit:
        assume(False)
    batch = data.draw(st.integers(1, 3), label="batch")
    steps = data.draw(st.integers(2, 12), label="steps")
    spikes = draw_spikes(data, b, batch, steps)
    assume(not saturates(b, spikes))
    net = lower(b.netlist(), b.spec)
    sizes = [net.n_channels] + [p.size for p in net.populations]
    assert [(s, d, v.tolist()) for s, d, v in net.synops] == [
        (s, d, v.tolist()) for s, d, v in synops_terms(net.synapses, sizes)]
    probes = all_probes(b)
    want = emulator.run(program, spikes, probes=probes, engine="fast")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, steps - 1), max_size=2), label="cuts")))
    sim = NetlistSimulator(b.netlist(), b.spec, batch=batch, probes=probes)
    parts = [sim.run({k: v[:, lo:hi] for k, v in spikes.items()})
             for lo, hi in zip([0, *cuts], [*cuts, steps], strict=True)]
    got = joined(parts)
    expected = joined([want])
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    for pop in program.populations:  # every population's spikes, as a probe of the Program reads them
        np.testing.assert_array_equal(got[f"pop/{pop}"], want.probes[f"{pop}.spikes"], err_msg=pop)
    sim.reset()
    again = joined([sim.run(spikes)])
    for key, value in got.items():
        np.testing.assert_array_equal(again[key], value, err_msg=f"after reset: {key}")


@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo", "truenorth"])
@SETTINGS
@given(data=st.data())
def test_netlist_equals_its_program(target, data):
    check_agreement(data, target)


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.filter_too_much])
@given(data=st.data())
def test_netlist_equals_its_program_with_sparse_products(target, data):
    """Sparse (CSR) crossbar products, as for convolutions, on both sides."""
    with only_kernels("sparse"):
        check_agreement(data, target)


def test_a_population_over_several_cores():
    """The automatic placement splits a population over the small cores of ``tiny``: the mapping
    changes, the computation does not."""
    rng = np.random.default_rng(3)
    b = emulator.ProgramBuilder("tiny")
    x = b.input("in", 40)
    h = b.population("h", 150, du=rng.integers(0, 4096, 150), dv=300, vth=rng.integers(1, 40, 150))
    o = b.population("o", 10, du=500, dv=500, vth=20)
    b.connect(x, h, weights=rng.integers(-60, 90, (150, 40)) * (rng.random((150, 40)) < 0.3))
    b.connect(h, o, weights=rng.integers(-40, 60, (10, 150)), delay=2)
    b.connect(o, h, weights=rng.integers(-20, 20, (150, 10)))
    b.output("out", o)
    program = b.build()
    assert len(np.unique(program.neuron_core[program.populations["h"].neurons])) > 1
    spikes = (rng.random((2, 40, 40)) < 0.3).astype(np.int64)
    probes = all_probes(b)
    want = emulator.run(program, spikes, probes=probes)
    sim = NetlistSimulator(b.netlist(), b.spec, batch=2, probes=probes)
    got = joined([sim.run(spikes[:, :17]), sim.run(spikes[:, 17:])])
    for key, value in joined([want]).items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert want.spikes["out"].any() and want.probes["h.spikes"].any()


@pytest.mark.parametrize(("target", "state", "regs", "weight"), [
    ("loihi", {"u": (20, "wrap"), "v": (20, "saturate")}, {"du": 4095, "dv": 4095, "vth": 131071}, 100),
    ("xylo", {"isyn": (12, "saturate"), "isyn2": (12, "saturate"), "vmem": (12, "saturate")},
     {"dash_syn": 15, "dash_mem": 15, "threshold": 30000}, 15),
    ("truenorth", {"v": (12, "saturate")}, {"type_weights": [255, 0, 0, 0], "threshold": 100000,
                                            "neg_threshold": 100000}, 1),
])
def test_a_narrower_state_in_a_user_spec_narrows_the_netlist_too(tmp_path, target, state, regs, weight):
    """The widths come from the spec: a user TOML with narrower states wraps or saturates the
    netlist's states where its Program's do (one input synapse: no delivery order involved)."""
    from test_widths import user_spec

    def network(spec: str) -> emulator.ProgramBuilder:
        b = emulator.ProgramBuilder(spec)
        x = b.input("in", 1)
        h = b.population("h", 1, **regs)
        kw = {"loihi": {"weight_exp": 7}, "xylo": {"weight_shift": 7}, "truenorth": {"axon_types": [0]}}[target]
        b.connect(x, h, weights=[[weight]], **kw)
        b.output("out", h)
        return b

    b = network(str(user_spec(tmp_path, target, state)))
    spikes = np.ones((1, 12, 1), dtype=np.int64)
    probes = [f"h.{k}" for k in b.spec.state]
    want = emulator.run(b.build(), spikes, probes=probes)
    got = NetlistSimulator(b.netlist(), b.spec, probes=probes).run(spikes)
    for key in probes:
        np.testing.assert_array_equal(got.probes[key], want.probes[key], err_msg=key)
    for key, (bits, _) in state.items():
        assert np.abs(got.probes[f"h.{key}"]).max() <= 1 << (bits - 1), key
    shipped = network(target)
    wide = NetlistSimulator(shipped.netlist(), shipped.spec, probes=probes).run(spikes)
    assert any((got.probes[k] != wide.probes[k]).any() for k in probes)


def test_lowered_netlist_shape():
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 3)
    y = b.input("aux", 2)
    h = b.population("h", 4)
    o = b.population("o", 2, readout=True)
    b.connect(x, h, weights=np.ones((4, 3), dtype=int), weight_shift=2)
    b.connect(y, h, weights=np.ones((4, 2), dtype=int), synapse=1)
    b.connect(h, o, weights=np.full((2, 4), -3))
    b.output("out", o)
    netlist = b.netlist()
    net = lower(netlist, b.spec)
    assert net.order is None and net.n_channels == 5
    # one block of paths per projection: (source, delay, projection, post population), its indices
    # views of the netlist's COO (the second port's channels are offset: a copy)
    blocks = net.synapses.blocks
    assert [(blk.src, blk.delay, blk.proj, blk.post_pop) for blk in blocks] == [(0, 0, 0, 0), (0, 0, 1, 0),
                                                                               (1, 1, 2, 1)]
    assert np.shares_memory(blocks[2].pre, netlist.projections[2].pre_idx)
    assert np.shares_memory(blocks[0].post, netlist.projections[0].post_idx)
    assert sorted(set(blocks[1].pre.tolist())) == [3, 4]
    assert [p.name for p in net.populations] == ["h", "o"]
    np.testing.assert_array_equal(np.concatenate([p.neurons for p in net.populations]), np.arange(6))
    assert [p.readout for p in net.populations] == [False, True]
    assert net.populations[1].max_spikes.tolist() == [b.spec.chip.readout_max_spikes_per_step] * 2
    syn = net.synapses
    assert syn.src.size == 12 + 8 + 8
    # the second port's channels follow the first's; increments are w << weight_shift
    assert sorted(set(syn.pre[syn.proj == 1].tolist())) == [3, 4]
    assert set(syn.increment[syn.proj == 0].tolist()) == {4}
    assert set(syn.increment[syn.proj == 2].tolist()) == {-3}
    # every input channel's spike reaches its 4 synapses, every h spike o's 2
    ops = {(s, d): v.tolist() for s, d, v in net.synops}
    assert ops == {(0, 0): [4] * 5, (1, 1): [2] * 4}


def test_netlist_saturates_the_summed_drive_once():
    """Without axons there is no delivery order: +30720, +30720, -30720 into a 16-bit synaptic state
    saturate once as a sum (30720), where the chip, in ascending axon order, first saturates at
    32767 and ends at 2047 (then the step's decay takes 1 from both). The fast engine reports the
    case as risky."""
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 3)
    h = b.population("h", 1, dash_syn=15, threshold=2**15 - 1)
    b.connect(x, h, weights=[[120, 120, -120]], weight_shift=8)  # 30720 each
    b.output("out", h)
    spikes = np.ones((1, 1, 3), dtype=np.int64)
    program = b.build()
    chip = emulator.run(program, spikes, probes=["h.isyn"]).probes["h.isyn"]
    net = NetlistSimulator(b.netlist(), b.spec, probes=["h.isyn"]).run(spikes).probes["h.isyn"]
    assert chip[0, 0, 0] == 32767 - 30720 - 1
    assert net[0, 0, 0] == 30720 - 1
    assert saturates(b, {"in": spikes})


def test_stochastic_synapses_need_a_program():
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", 2)
    h = b.population("h", 2, stochastic_synapse=1)
    b.connect(x, h, weights=np.ones((2, 2), dtype=int), axon_types=[0, 0])
    b.output("out", h)
    with pytest.raises(EmulatorError, match="axon order"):
        NetlistSimulator(b.netlist(), b.spec)


def test_keep_and_probes():
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 2)
    h = b.population("h", 3, du=0, dv=0, vth=0)
    o = b.population("o", 1, du=0, dv=0, vth=0)
    b.connect(x, h, weights=np.full((3, 2), 100))
    b.connect(h, o, weights=np.full((1, 3), 100))
    b.output("out", o)
    net = b.netlist()
    trace = NetlistSimulator(net, b.spec, keep=("h",)).run(np.ones((1, 5, 2), dtype=np.int64))
    assert list(trace.populations) == ["h"] and trace.populations["h"].shape == (1, 5, 3)
    assert trace.spikes["out"].dtype == np.int16 and trace.spikes["out"].shape == (1, 5, 1)
    assert NetlistSimulator(net, b.spec, keep=()).run(steps=3).populations == {}
    with pytest.raises(EmulatorError, match="no population 'x'"):
        NetlistSimulator(net, b.spec, keep=("x",))
    with pytest.raises(EmulatorError, match="not a state"):
        NetlistSimulator(net, b.spec, probes=["h.vmem"])
    with pytest.raises(EmulatorError, match="no population"):
        NetlistSimulator(net, b.spec, probes=["z.v"])
    sim = NetlistSimulator(net, b.spec)
    with pytest.raises(EmulatorError, match="accepts at most 1"):
        sim.run(np.full((1, 2, 2), 2))
    with pytest.raises(EmulatorError, match="shape"):
        sim.run(np.zeros((1, 2, 3)))
    with pytest.raises(EmulatorError, match="negative"):
        sim.run(-np.ones((1, 2, 2)))
    with pytest.raises(EmulatorError, match="unknown input"):
        sim.run({"nope": np.zeros((1, 2, 2))})


def test_import_emulator_lowering_keeps_the_compiler_out():
    import subprocess
    import sys

    code = "import sys, emulator.lowering; assert 'compiler' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
