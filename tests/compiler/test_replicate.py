"""TrueNorth: one route per neuron by identical neuron copies (``compiler.passes.replicate``).

A small TrueNorth-like spec (16 neurons and 64 axons per core) makes every hidden layer span
several cores with small networks, so the tests stay fast and exercise every path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from compiler_helpers import mlp_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_random_graphs import check_then_compile, graphs

import emulator
import hw_specs
from compiler import ir
from compiler.passes.emit import emit
from compiler.passes.lower import lower
from compiler.passes.quantize import quantize
from compiler.passes.replicate import replicate
from compiler.passes.rules import RuleContext, run_rules
from compiler.simulate import simulate
from spikeforge.errors import DoesNotFit, UnsupportedOperator

TN = Path(hw_specs.__file__).with_name("truenorth.toml").read_text()


def small_truenorth(neurons: int = 16, axons: int = 64, cores: int = 64) -> hw_specs.HwSpec:
    """TrueNorth semantics with small cores (mesh 8 × cores/8)."""
    text = re.sub(r"(?m)^neurons_per_core = \d+", f"neurons_per_core = {neurons}", TN)
    text = re.sub(r"(?m)^axons_in_per_core = \d+", f"axons_in_per_core = {axons}", text)
    text = re.sub(r"(?m)^axons_out_per_core = \d+", f"axons_out_per_core = {neurons}", text)
    text = re.sub(r"(?m)^cores_per_chip = \d+", f"cores_per_chip = {cores}", text)
    text = re.sub(r"(?m)^max_chips = \d+", "max_chips = 1", text)
    text = re.sub(r"(?m)^mesh = \[.*?\]", f"mesh = [8, {cores // 8}]", text)
    return hw_specs.loads(text.encode(), path="small_truenorth.toml")


def quantized(sizes: list[int], spec: hw_specs.HwSpec, seed: int = 0) -> ir.Graph:
    qgraph, _ = quantize(lower(mlp_graph(sizes, seed=seed, scale=0.4)), spec)
    return qgraph


def routes_per_neuron(graph: ir.Graph, placement: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Σ over projections of the distinct cores each neuron's spikes must reach."""
    out = {p.name: np.zeros(p.size, dtype=np.int64) for p in graph.of_type(ir.Neuron)}
    for syn in graph.of_type(ir.Synapses):
        pre = syn.inputs[0]
        if pre not in out:
            continue
        pairs = np.unique(np.stack([syn.pre_idx, placement[syn.post][syn.post_idx]]), axis=1)
        out[pre] += np.bincount(pairs[0], minlength=out[pre].size)
    return out


@pytest.fixture(scope="module")
def spec() -> hw_specs.HwSpec:
    return small_truenorth()


@pytest.mark.parametrize("sizes", [[8, 20, 40, 6], [10, 30, 12, 30, 5], [6, 5, 50, 3]])
def test_every_neuron_has_one_route_and_copies_count_the_routes(spec, sizes):
    qgraph = quantized(sizes, spec)
    before = routes_per_neuron(qgraph, {p.name: np.zeros(p.size, dtype=np.int64) for p in qgraph.of_type(ir.Neuron)})
    assert max(r.max() for r in before.values()) == 2  # two axon copies per input: already two routes
    layout = replicate(qgraph, spec)
    after = routes_per_neuron(layout.graph, layout.placement)
    assert max(int(r.max()) for r in after.values()) == 1
    for pop in layout.graph.of_type(ir.Neuron):
        c = layout.copies[pop.name]
        assert pop.size == c.sum() and (c >= 1).all()
        # every copy is used: copies = routes the original neuron needs (one neuron when it needs none)
        used = np.bincount(layout.owner[pop.name], weights=after[pop.name], minlength=c.size)
        assert ((used == c) | ((c == 1) & (used == 0))).all()
        cores = layout.placement[pop.name]
        assert np.bincount(cores).max() <= spec.chip.neurons_per_core
    assert layout.neurons_added() > 0
    assert max(np.unique(c).size for c in layout.placement.values()) > 1  # small cores: multi-core layers


@pytest.mark.parametrize("sizes", [[8, 20, 40, 6], [10, 30, 12, 30, 5]])
def test_copies_spike_exactly_like_the_original_neuron(spec, sizes):
    qgraph = quantized(sizes, spec, seed=3)
    layout = replicate(qgraph, spec)
    x = (np.random.default_rng(1).random((6, 40, sizes[0])) < 0.3).astype(np.int64)
    orig = simulate(qgraph, x, spec, quantized=True)
    repl = simulate(layout.graph, x, spec, quantized=True)
    for pop in qgraph.of_type(ir.Neuron):
        owner = layout.owner[pop.name]
        assert orig[pop.name].any()
        np.testing.assert_array_equal(repl[pop.name], orig[pop.name][..., owner])


def test_emitted_program_equals_the_simulation_of_the_unreplicated_network(spec):
    qgraph = quantized([8, 20, 40, 6], spec, seed=5)
    program = emit(qgraph, spec)
    fan_out = np.bincount(program.route_src, minlength=program.n_neurons)
    assert fan_out.max() <= 1
    x = (np.random.default_rng(2).random((4, 30, 8)) < 0.4).astype(np.int64)
    out = qgraph.of_type(ir.Output)[0]
    expected = simulate(qgraph, x, spec, quantized=True)[out.inputs[0]]
    for engine in ("reference", "fast"):
        trace = emulator.run(program, x, engine=engine)
        np.testing.assert_array_equal(trace.spikes[out.name], expected)


def test_rules_see_the_replicated_layout(spec):
    qgraph = quantized([8, 20, 40, 6], spec)
    ctx = RuleContext(lower(mlp_graph([8, 20, 40, 6], scale=0.4)), spec, qgraph=qgraph)
    assert ctx.layout is not None
    assert not [v for v in run_rules(ctx) if v.rule == "fan_out"]
    assert all(s["fan_out"] <= 1 for s in ctx.stats.values())
    assert ctx.stats["n0"]["copies"] > 1 and ctx.stats["n0"]["neurons"] == ctx.layout.copies["n0"].sum()


def test_too_many_cores_names_the_copies():
    spec = small_truenorth(cores=8)
    qgraph = quantized([8, 40, 60, 6], spec)
    with pytest.raises(DoesNotFit, match=r"cores > 8 \(8 cores_per_chip x 1 max_chips, small_truenorth.toml\) by "
                                         r"\d+, of which copies of neurons for one route per neuron add \d+ neurons"):
        replicate(qgraph, spec)
    ctx = RuleContext(qgraph, spec, qgraph=qgraph)
    (v,) = [v for v in run_rules(ctx) if v.rule == "cores"]
    assert v.limit == 8 and v.value == replicate(qgraph, spec, check_cores=False).n_cores
    assert "copies for one route per neuron" in v.suggestion


def test_one_neuron_over_the_axon_limit(spec):
    qgraph = quantized([8, 70, 4], small_truenorth(axons=256))  # 70 inputs x 2 copies fit 256, not 64
    with pytest.raises(DoesNotFit, match=r"population 'n1': one neuron alone needs \d+ input axons > 64 per core"):
        replicate(qgraph, spec)


def test_stochastic_neurons_cannot_be_replicated(spec):
    qgraph = quantized([8, 20, 40, 6], spec)
    pop = qgraph["n0"]
    regs = dict(pop.registers)
    regs["stochastic_leak"] = np.ones(pop.size, dtype=np.int64)
    import dataclasses
    qgraph.replace(dataclasses.replace(pop, registers=regs))
    with pytest.raises(UnsupportedOperator, match="'n0': register stochastic_leak is set"):
        replicate(qgraph, spec)


def test_an_output_that_feeds_another_layer_must_not_need_copies(spec):
    g = mlp_graph([8, 20, 6], scale=0.4)
    g.add(ir.Output("hidden_out", ("n0",)))  # n0 is read by the host and feeds n1 on two axon copies
    qgraph, _ = quantize(lower(g), spec)
    with pytest.raises(UnsupportedOperator, match="'n0' is an output and also feeds other layers"):
        replicate(qgraph, spec)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs(), seed=st.integers(0, 99))
def test_random_graphs_on_small_truenorth_cores(graph, seed):
    """Random graphs (convolutions, pooling, residuals) on 16-neuron cores: what check says fits
    compiles, with one route per neuron and bit-exact against the unreplicated simulation."""
    result = check_then_compile(graph, small_truenorth(cores=256), seed)
    if result is None:
        return
    program, report = result
    assert report.verification["exact"], report.verification
    assert np.bincount(program.route_src, minlength=program.n_neurons).max() <= 1
