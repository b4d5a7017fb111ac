"""The back end as passes: the builder's netlist, ``place`` (one placer, three strategies) and ``layout``;
``build`` is exactly ``place(per_population)`` then ``layout``; importing the emulator stays cheap."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_partition import layered

import emulator
import hw_specs
from compiler.backend import STRATEGIES, Netlist, Placement, layout, place
from compiler.passes.partition import partition
from spikeforge.errors import DoesNotFit, ProgramError


def small(target="loihi"):
    b = emulator.ProgramBuilder(target)
    x = b.input("in", 3)
    h = b.population("h", 4)
    o = b.population("o", 2)
    b.connect(x, h, weights=np.arange(12).reshape(4, 3) % 3 * 2)
    b.connect(h, o, weights=(np.array([0, 1]), np.array([3, 0]), np.array([-4, 6])),
              delay=2 if target == "loihi" else None)
    b.output("out", o)
    return b


def test_netlist_holds_the_declared_network_read_only():
    b = small()
    net = b.netlist()
    assert isinstance(net, Netlist)
    assert [(p.name, p.size) for p in net.inputs] == [("in", 3)]
    assert [(p.name, p.size, p.readout) for p in net.populations] == [("h", 4, False), ("o", 2, False)]
    assert dict(net.outputs) == {"out": "o"}
    a, c = net.projections
    assert (a.name, a.pre, a.pre_is_input, a.pre_size, a.post, a.post_size) == ("in->h", "in", True, 3, "h", 4)
    assert (c.pre_is_input, c.delay, dict(c.params)) == (False, 2, {"weight_exp": 0, "num_weight_bits": 8,
                                                                    "sign_mode": 0})
    assert c.post_idx.tolist() == [0, 1] and c.pre_idx.tolist() == [3, 0] and c.weight.tolist() == [-4, 6]
    assert net.n_synapses == int(np.count_nonzero(np.arange(12) % 3)) + 2
    with pytest.raises(ValueError):
        c.weight[0] = 1
    with pytest.raises(ValueError):
        net.population("h").registers["vth"][0] = 1
    with pytest.raises(TypeError):
        net.outputs["x"] = "h"  # type: ignore[index]
    assert net.population("o").size == 2
    with pytest.raises(KeyError):
        net.population("nope")


@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo", "truenorth"])
def test_build_is_place_then_layout(target):
    if target in ("loihi", "tiny"):
        b = layered(target, [30, 40, 20], 6)
    elif target == "xylo":
        b = small(target)
    else:  # truenorth: 0/1 weights, one route per neuron
        b = emulator.ProgramBuilder("truenorth")
        x = b.input("in", 5)
        h = b.population("h", 3)
        b.connect(x, h, weights=np.eye(3, 5, dtype=np.int64), axon_types=[0, 1, 2, 3, 0])
        b.output("out", h)
    net = b.netlist()
    where = place(net, b.spec, strategy="per_population")
    assert isinstance(where, Placement)
    program = layout(net, where, b.spec, metadata={"builder": "emulator.ProgramBuilder"})
    assert program.to_bytes() == b.build().to_bytes()


def _naive_cores(b, pop_name, first_core):
    """The builder's placement by its definition: the largest prefix of the remaining neurons whose
    distinct input axons and synapse memory fit a core, found by bisection with ``np.unique``."""
    spec, net = b.spec, b.netlist()
    size = net.population(pop_name).size
    incoming = [c for c in net.projections if c.post == pop_name]

    def fits(start, end):
        axons = bits = 0
        for c in incoming:
            m = (c.post_idx >= start) & (c.post_idx < end)
            pres = np.unique(c.pre_idx[m])
            axons += pres.size
            bits += pres.size * int(spec.synapse["synapse_row_header_bits"])
            bits += int(m.sum()) * (int(c.params.get("num_weight_bits", 8)) + int(spec.synapse["synapse_index_bits"]))
        return axons <= spec.chip.axons_in_per_core and bits <= spec.chip.synapse_memory_bits_per_core

    cores = np.empty(size, dtype=np.int64)
    start, core = 0, first_core
    while start < size:
        lo, hi = start + 1, min(size, start + spec.chip.neurons_per_core)
        assert fits(start, lo)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(start, mid) else (lo, mid - 1)
        cores[start:lo] = core
        start, core = lo, core + 1
    return cores


@pytest.mark.parametrize("local", [False, True])
def test_per_population_is_the_greedy_prefix_cut(local):
    b = layered("tiny", [60, 300, 200, 40], 30, local=local, recurrent=local)
    got = place(b.netlist(), b.spec, strategy="per_population").cores
    first = 0
    for name in ("l0", "l1", "l2"):
        want = _naive_cores(b, name, first)
        np.testing.assert_array_equal(got[name], want)
        first = int(want.max()) + 1
    assert int(got["l0"].max()) > 0  # the network spans several cores per layer


def test_per_population_places_the_others_after_fixed_cores():
    b = layered("tiny", [20, 30, 10], 5)
    fixed = {"l1": np.full(10, 5)}
    got = place(b.netlist(), b.spec, strategy="per_population", fixed=fixed).cores
    assert (got["l0"] == 0).all() and (got["l1"] == 5).all()
    assert Placement(got).n_cores == 6
    for bad in (np.zeros(9), -np.ones(10)):
        with pytest.raises(ProgramError, match=r"placement\['l1'\]: expected 10 non-negative core indices"):
            place(b.netlist(), b.spec, strategy="per_population", fixed={"l1": bad})


def test_strategy_errors():
    b = small()
    assert STRATEGIES == ("greedy", "sequential", "per_population")
    with pytest.raises(ValueError, match="unknown strategy"):
        place(b.netlist(), b.spec, strategy="magic")
    with pytest.raises(ValueError, match="fixed cores"):
        place(b.netlist(), b.spec, fixed={"h": np.zeros(4)})
    with pytest.raises(TypeError, match="needs its spec"):
        partition(b.netlist())
    assert partition(b.netlist(), spec=b.spec).keys() == partition(b).keys()


def test_per_population_error_names_the_neuron_that_fits_no_core(tmp_path):
    from test_partition import small_spec

    spec = small_spec(tmp_path, axons_in_per_core=64)
    b = emulator.ProgramBuilder(spec)
    x = b.input("in", 100)
    p = b.population("wide", 4)
    b.connect(x, p, weights=np.ones((4, 100), dtype=np.int64) * 2)
    with pytest.raises(DoesNotFit, match=r"population 'wide': neuron 0 alone needs 100 input axons > axons_in_per"):
        b.build()


def test_importing_and_building_need_neither_torch_nor_the_compiler_front_end():
    code = ("import sys, emulator; loaded = 'compiler' in sys.modules; "
            "b = emulator.ProgramBuilder('loihi'); x = b.input('in', 2); p = b.population('p', 1); "
            "b.connect(x, p, weights=[[2, 4]]); b.build(); "
            "print(loaded, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_layout_refuses_a_placement_that_misses_neurons():
    b = small()
    net = b.netlist()
    h = np.zeros(4, dtype=np.int64)
    for cores in ({"h": h}, {"h": h, "o": np.zeros(3, dtype=np.int64)}, {"h": h, "o": -np.ones(2, dtype=np.int64)}):
        with pytest.raises(ProgramError, match="layout: the placement has no non-negative core"):
            layout(net, Placement(cores), b.spec)
    with pytest.raises(ProgramError, match="no population"):
        layout(emulator.ProgramBuilder("loihi").netlist(), Placement({}), b.spec)


def _quantised(target):
    from compiler_helpers import mlp_graph

    from compiler.passes.lower import lower
    from compiler.passes.quantize import quantize

    graph, _ = quantize(lower(mlp_graph([6, 5, 3])), hw_specs.load(target))
    return graph


def test_emission_keeps_the_class_of_a_resource_fault(monkeypatch):
    from compiler.passes.emit import emit
    from spikeforge.errors import CompileError

    graph = _quantised("loihi")
    spec = hw_specs.load("loihi")
    assert emit(graph, spec).to_bytes() == emit(graph, spec).to_bytes()

    def over(self, placement=None, metadata=None):
        raise DoesNotFit("synapse memory over the limit")  # no "core" in the text: the class decides

    monkeypatch.setattr(emulator.ProgramBuilder, "build", over)
    with pytest.raises(DoesNotFit, match="synapse memory over the limit"):
        emit(graph, spec)

    def bad(self, placement=None, metadata=None):
        raise ProgramError("core 3 > something")  # a malformed program, whatever its text

    monkeypatch.setattr(emulator.ProgramBuilder, "build", bad)
    with pytest.raises(CompileError, match="building the program: core 3") as err:
        emit(graph, spec)
    assert not isinstance(err.value, DoesNotFit)


def test_emission_places_with_the_greedy_placer():
    from compiler.passes.emit import emit, to_builder

    graph = _quantised("tiny")
    spec = hw_specs.load("tiny")
    b = to_builder(graph, spec)
    want = b.build(placement=place(b.netlist(), spec).cores)
    assert emit(graph, spec).to_bytes() == want.to_bytes()
