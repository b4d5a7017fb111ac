"""Compile-time verification: the option, the data it names, and streaming in bounded memory.

The network-level simulation carries its state between ``run`` calls, so any split into time
chunks and sample batches gives the same spikes as one run; verification streams that way.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import compiler  # noqa: E402
import hw_specs  # noqa: E402
from compiler import ir  # noqa: E402
from compiler import nn as snn  # noqa: E402
from compiler.passes.convert import convert, encode_rate  # noqa: E402
from compiler.passes.emit import to_builder  # noqa: E402
from compiler.passes.lower import lower  # noqa: E402
from compiler.passes.quantize import quantize  # noqa: E402
from compiler.pipeline import capture, verification  # noqa: E402
from compiler.simulate import NetworkSimulation, chunks, simulate  # noqa: E402
from spikeforge.errors import CompileError  # noqa: E402


@pytest.fixture(scope="module")
def relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 4)).eval()
    return model, torch.rand(40, 10)


def test_modes(relu):
    model, x = relu
    _, rep = compiler.compile_with_report(model, "loihi", x, steps=30, verify="sample", verify_samples=7)
    assert rep.verification["samples"] == 7 and rep.verification["exact"]
    assert rep.verified_on.startswith("calibration samples 0..6 (first 7 of 40)")
    _, rep = compiler.compile_with_report(model, "loihi", x, steps=30, verify="full")
    assert rep.verification["samples"] == 40 and "(all)" in rep.verified_on
    _, rep = compiler.compile_with_report(model, "loihi", x, steps=30, test=x[:3], verify="full")
    assert rep.verification["samples"] == 3 and rep.verified_on.startswith("test samples 0..2")
    program, rep = compiler.compile_with_report(model, "loihi", x, steps=30, verify="off")
    assert rep.verification == {} and "verify='off'" in rep.verified_on and "verified on" in rep.summary()
    # verification does not change the Program
    assert program.to_bytes() == compiler.compile(model, "loihi", x, steps=30).to_bytes()
    with pytest.raises(CompileError, match="verify="):
        compiler.compile(model, "loihi", x, verify="some")


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
def test_streaming_equals_one_run(relu, target):
    """Any split into time chunks gives the spikes of one run, quantised and float."""
    model, x = relu
    spec = hw_specs.load(target)
    graph, conv = convert(capture(model, (10,), None), x.numpy())
    low = lower(graph)
    q, _ = quantize(low, spec)
    spikes = encode_rate(x.numpy()[:6], 25, conv.input_scale)
    for g, quantized in ((q, True), (low, False)):
        whole = simulate(g, spikes, spec, quantized=quantized)
        sim = NetworkSimulation(g, spec, quantized=quantized, batch=6)
        parts = [sim.run(spikes[:, lo:hi]) for lo, hi in ((0, 1), (1, 9), (9, 25))]
        for pop in sim.keep or [p.name for p in g.of_type(ir.Neuron)]:
            np.testing.assert_array_equal(np.concatenate([p[pop] for p in parts], axis=1), whole[pop])
        small = simulate(g, spikes, spec, quantized=quantized, elements=50)  # chunks of 2 steps
        for pop in whole:
            np.testing.assert_array_equal(small[pop], whole[pop])


def test_verification_in_small_chunks_gives_the_same_report(relu):
    model, x = relu
    spec = hw_specs.load("loihi")
    graph, conv = convert(capture(model, (10,), None), x.numpy())
    low = lower(graph)
    q, _ = quantize(low, spec)
    program = compiler.compile(model, "loihi", x, steps=20, verify="off")
    spikes = encode_rate(x.numpy()[:9], 20, conv.input_scale)
    labels = np.arange(9) % 4
    whole = verification(program, low, q, spec, spikes, labels, 1e-3)
    tiny = verification(program, low, q, spec, spikes, labels, 1e-3, elements=60)  # batches of 2, 2-3 steps
    assert whole == tiny and whole["exact"]
    # the netlist of emission's declaration (what compile passes on) instead of a new declaration
    assert verification(program, low, q, spec, spikes, labels, 1e-3, netlist=to_builder(q, spec).netlist()) == whole


def test_verification_on_calibration_reuses_the_ann_classes(relu):
    """The ANN's classes on calibration data come from conversion's evaluation; on test data (or
    when compiled piecewise) they are evaluated again: the same report either way."""
    model, x = relu
    labels = np.arange(40) % 4
    _, rep = compiler.compile_with_report(model, "loihi", x, steps=20, labels=labels, verify_samples=9)
    _, again = compiler.compile_with_report(model, "loihi", x, steps=20, labels=labels, verify_samples=9,
                                            test=(x[:9], labels[:9]))
    assert rep.verification == again.verification
    assert "agreement_ann" in rep.verification and "accuracy_ann" in rep.verification


def test_chunks_bound_the_array():
    assert chunks(64, 100, 4096, 1 << 23) == (64, 25)  # all samples, four equal chunks of steps
    assert chunks(4, 10, 5, 1 << 22) == (4, 10)  # small: one chunk
    assert chunks(100, 10, 1000, 30_000) == (25, 1)  # one step of all samples is too much: equal batches
    for batch, steps, width in ((128, 1000, 11524), (3, 7, 10**7), (1000, 1, 5000)):
        b, t = chunks(batch, steps, width, 1 << 23)
        assert 1 <= b <= batch and 1 <= t <= steps
        assert b * t * width <= max(1 << 23, width)


def test_spiking_model_verified_on_its_spikes():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 12), snn.LIF(tau_mem=8e-3, threshold=0.5), nn.Linear(12, 3),
                          snn.LIF(tau_mem=8e-3, threshold=0.5))
    spikes = (torch.rand(5, 30, 6) < 0.3).float()
    _, rep = compiler.compile_with_report(model, "loihi", spikes, verify="full")
    assert rep.verification["exact"] and rep.verification["samples"] == 5


@pytest.mark.parametrize("target", ["loihi", "xylo", "truenorth"])
def test_a_mapping_fault_is_caught(relu, target):
    """Verification compares the Program with the quantised network run without a mapping: a
    Program whose routes are crossed (the inputs of one hidden layer permuted, as a faulty route
    table would) is not exact."""
    import dataclasses

    from compiler.passes.emit import emit

    model, x = relu
    spec = hw_specs.load(target)
    graph, conv = convert(capture(model, (10,), None), x.numpy())
    low = lower(graph)
    q, _ = quantize(low, spec)
    spikes = encode_rate(x.numpy()[:8], 30, conv.input_scale)
    good = emit(q, spec)
    assert verification(good, low, q, spec, spikes, None, 1e-3)["exact"]
    faulty = q.copy()
    syn = max(faulty.of_type(ir.Synapses), key=lambda s: s.values.size)  # a hidden layer's projection
    crossed = np.random.default_rng(0).permutation(syn.shape[1])
    faulty.replace(dataclasses.replace(syn, pre_idx=crossed[syn.pre_idx]))
    res = verification(emit(faulty, spec), low, q, spec, spikes, None, 1e-3)
    assert not res["exact"] and res["spike_mismatch"] > 0
