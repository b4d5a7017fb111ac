"""Random small graphs either compile or raise a CompileError subclass — never another exception;
when they compile for a Loihi-family target, the emulated Program equals its quantised netlist."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compiler
from compiler import ir
from spikeforge.errors import CompileError


@st.composite
def graphs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    analog = draw(st.booleans())
    conv = draw(st.booleans())
    g = ir.Graph()
    if conv:
        c, h = draw(st.integers(1, 2)), draw(st.integers(3, 6))
        g.add(ir.Input("input", (), shape=(c, h, h)))
        k = draw(st.integers(1, 3))
        g.add(ir.Conv2d("conv", ("input",), weight=rng.normal(size=(draw(st.integers(1, 3)), c, k, k)),
                        padding=(draw(st.integers(0, 1)),) * 2))
        prev = "conv"
        if analog:
            g.add(ir.ReLU("act_c", (prev,)))
        else:
            g.add(ir.Neuron("act_c", (prev,), kind="IF", threshold=1.0))
        prev = "act_c"
        if g.shape(prev)[1] >= 2 and draw(st.booleans()):
            g.add(ir.Pool("pool", (prev,), kernel=(2, 2), stride=(2, 2), mode=draw(st.sampled_from(["avg", "sum"]))))
            prev = "pool"
        g.add(ir.Flatten("flat", (prev,)))
        prev = "flat"
    else:
        g.add(ir.Input("input", (), shape=(draw(st.integers(1, 24)),)))
        prev = "input"
    for i in range(draw(st.integers(1, 3))):
        n_in = g.size(prev)
        n_out = draw(st.one_of(st.just(n_in), st.integers(1, 40)))
        scale = 10.0 ** draw(st.floats(-4, 3))
        w = rng.normal(0, scale, (n_out, n_in)) * (rng.random((n_out, n_in)) < draw(st.floats(0.0, 1.0)))
        bias = rng.normal(0, scale, n_out) if draw(st.booleans()) else None
        g.add(ir.Dense(f"fc{i}", (prev,), weight=w, bias=bias))
        pre_act = f"fc{i}"
        if n_out == n_in and draw(st.booleans()):  # a residual connection around the layer
            pre_act = g.add(ir.Add(f"res{i}", (prev, f"fc{i}"))).name
        if analog:
            g.add(ir.ReLU(f"act{i}", (pre_act,)))
        else:
            kind = draw(st.sampled_from(ir.NEURON_KINDS))
            g.add(ir.Neuron(f"act{i}", (pre_act,), kind=kind, threshold=10.0 ** draw(st.floats(-4, 5)),
                            tau_mem=draw(st.sampled_from([None, 2e-3, 20e-3])) if kind != "IF" else None,
                            tau_syn=draw(st.sampled_from([None, 5e-3])) if kind == "CUBA" else None))
        prev = f"act{i}"
    g.add(ir.Output("output", (prev,)))
    return g


def check_then_compile(graph: ir.Graph, target, seed: int):
    """Check, then compile ``graph`` on random calibration data: ``None`` when compiling raised a
    CompileError, else the Program and report. Check and compile agree on whether it fits."""
    shape = graph.of_type(ir.Input)[0].shape
    x = np.random.default_rng(seed).random((4, *shape))
    cal = x if graph.of_type(ir.ReLU) else (x[:, None] > 0.5).repeat(5, axis=1).astype(np.int64)
    try:
        fits = compiler.check(graph, target, cal).fits
    except CompileError:
        fits = False
    try:
        program, report = compiler.compile_with_report(graph, target, cal, steps=10, verify_samples=4)
    except CompileError as exc:
        assert not fits, f"check said it fits, compile raised: {exc}"
        return None
    assert fits, "it compiled, check said it does not fit"
    return program, report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs(), target=st.sampled_from(["loihi", "tiny", "xylo", "truenorth"]), seed=st.integers(0, 99))
def test_compile_or_compile_error(graph, target, seed):
    result = check_then_compile(graph, target, seed)
    if result is None:
        return
    program, report = result
    assert program.n_neurons >= 1
    if target != "xylo":  # Xylo: exact unless a 16-bit state saturates (delivery order then matters)
        assert report.verification["exact"], report.verification


LAYERS = ("linear", "relu", "lif", "if", "dropout", "identity", "tanh", "bn")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(LAYERS), min_size=1, max_size=5), width=st.integers(1, 12),
       target=st.sampled_from(["loihi", "xylo"]))
def test_random_torch_sequentials(kinds, width, target):
    """Random stacks of torch modules (some unsupported) compile or raise a CompileError subclass."""
    import torch
    from torch import nn

    from compiler import nn as snn

    torch.manual_seed(0)
    mods: list[nn.Module] = [nn.Linear(6, width)]
    for k in kinds:
        mods.append({"linear": lambda: nn.Linear(width, width), "relu": nn.ReLU,
                     "lif": lambda: snn.LIF(tau_mem=5e-3, threshold=0.3, datapath=target),
                     "if": lambda: snn.IF(threshold=0.5, datapath=target), "dropout": nn.Dropout,
                     "identity": nn.Identity, "tanh": nn.Tanh, "bn": lambda: nn.BatchNorm1d(width)}[k]())
    model = nn.Sequential(*mods).eval()
    try:
        compiler.compile(model, target, torch.rand(4, 6), steps=8, verify_samples=4)
    except CompileError:
        pass
