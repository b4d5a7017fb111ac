"""Every design rule: a model that triggers it, and the message (what, where, by how much, what to do)."""

from __future__ import annotations

import numpy as np
from compiler_helpers import mlp_graph

import compiler
from compiler import ir
from compiler.passes.rules import RULES


def _violations(report, rule):
    found = [v for v in report.violations if v.rule == rule]
    assert found, f"rule {rule} not triggered; got {[str(v) for v in report.violations]}"
    return found


def test_every_rule_has_a_test():
    tested = {"neurons_per_core", "fan_in", "fan_out", "synapse_memory", "cores", "input_channels", "readout_size",
              "weight_bits", "registers", "overflow", "quantisation", "readout_inputs"}
    assert set(RULES) == tested


def test_neurons_per_core_xylo():
    r = compiler.check(mlp_graph([8, 700, 600, 4]), "xylo", build=False)
    (v,) = _violations(r, "neurons_per_core")
    assert not r.fits and v.limit == 1000 and v.value == 1300 and v.over == 300
    assert "hw_specs/xylo.toml" in str(v) and "chip.neurons_per_core" in str(v) and "reduce the width" in str(v)


def test_fan_in_tiny():
    r = compiler.check(mlp_graph([300, 10]), "tiny", build=False)
    (v,) = _violations(r, "fan_in")
    assert v.layer == "n0" and v.limit == 256 and 290 <= v.value <= 300 and v.over == v.value - 256  # 0-weights dropped
    assert "axons_in_per_core" in str(v) and "split the layer" in str(v)


def test_fan_out_xylo():
    r = compiler.check(mlp_graph([8, 10, 100, 4]), "xylo", build=False)
    vs = _violations(r, "fan_out")
    assert any(v.layer == "n0" and v.value == 100 and v.limit == 64 for v in vs)
    assert "fan_out_per_neuron" in str(vs[0]) and "prune" in str(vs[0])


def test_synapse_memory_tiny():
    r = compiler.check(mlp_graph([1500, 2]), "tiny", build=False)
    (v,) = _violations(r, "synapse_memory")
    assert v.value > v.limit == 65536 and "synapse_memory_bits_per_core" in str(v) and "weight bits" in str(v)


def test_cores_tiny():
    r = compiler.check(mlp_graph([16, 1100, 4]), "tiny", build=False)
    (v,) = _violations(r, "cores")
    assert v.limit == 16 and v.value >= 18 and "cores_per_chip x chip.max_chips" in str(v)
    assert "more cores or chips" in str(v)


def test_input_channels_and_readout_size_xylo():
    r = compiler.check(mlp_graph([20, 30, 12]), "xylo", build=False)
    (vi,) = _violations(r, "input_channels")
    (vr,) = _violations(r, "readout_size")
    assert (vi.value, vi.limit, vi.over) == (20, 16, 4) and "pool or crop" in str(vi)
    assert (vr.value, vr.limit, vr.over) == (12, 8, 4) and "readout_neurons" in str(vr)


def test_readout_inputs_xylo():
    r = compiler.check(mlp_graph([10, 4]), "xylo", build=False)
    (v,) = _violations(r, "readout_inputs")
    assert v.layer == "n0" and v.value == 10 and "add a hidden spiking layer" in str(v)
    assert not [v for v in compiler.check(mlp_graph([10, 6, 4]), "xylo", build=False).violations
                if v.rule == "readout_inputs"]


def test_fan_in_hint_for_folded_pooling():
    g = ir.Graph()
    g.add(ir.Input("input", (), shape=(4, 16, 16)))
    g.add(ir.Conv2d("conv", ("input",), weight=np.ones((8, 4, 3, 3)), padding=(1, 1)))
    g.add(ir.Neuron("c", ("conv",), kind="IF"))
    g.add(ir.Pool("pool", ("c",), kernel=(2, 2), stride=(2, 2)))
    g.add(ir.Flatten("flat", ("pool",)))
    g.add(ir.Dense("fc", ("flat",), weight=np.random.default_rng(0).normal(size=(3, 8 * 8 * 8))))
    g.add(ir.Neuron("out", ("fc",), kind="IF"))
    g.add(ir.Output("output", ("out",)))
    r = compiler.check(g, "tiny", build=False)
    (v,) = [v for v in _violations(r, "fan_in") if v.layer == "out"]
    assert 1900 < v.value <= 2048 and "average pooling folded into this layer" in str(v)


def _residual(small: float) -> ir.Graph:
    rng = np.random.default_rng(0)
    g = ir.Graph()
    g.add(ir.Input("input", (), shape=(6,)))
    g.add(ir.Dense("a", ("input",), weight=rng.normal(size=(6, 6))))
    g.add(ir.Neuron("h", ("a",), kind="IF", threshold=1.0))
    g.add(ir.Dense("b", ("h",), weight=rng.normal(size=(4, 6))))
    g.add(ir.Dense("skip", ("input",), weight=small * rng.normal(size=(4, 6))))
    g.add(ir.Add("sum", ("b", "skip")))
    g.add(ir.Neuron("out", ("sum",), kind="IF", threshold=1.0))
    g.add(ir.Output("output", ("out",)))
    return g


def test_weight_bits_exponent_headroom():
    r = compiler.check(_residual(1e-7), "loihi", build=False)
    vs = _violations(r, "weight_bits")
    assert vs[0].layer == "out" and "input->out" in str(vs[0]) and "weight_exp" in str(vs[0])
    assert not r.fits


def test_registers_threshold_not_representable():
    r = compiler.check(mlp_graph([4, 3], threshold=1e7, scale=1e-3), "loihi", build=False)
    (v,) = _violations(r, "registers")
    assert "vth" in str(v) and "registers.vth" in str(v) and "rescale" in str(v)


def test_overflow_warning_does_not_block():
    r = compiler.check(mlp_graph([200, 3], threshold=1e-4, scale=1.0), "loihi", build=False)
    (v,) = _violations(r, "overflow")
    assert v.severity == "warning" and "state.u" in str(v) and "wrap" in str(v)
    assert v.over > 0


def test_quantisation_failure_becomes_a_violation(monkeypatch):
    import compiler.pipeline
    from spikeforge.errors import DoesNotFit

    def failing(*args, **kwargs):
        raise DoesNotFit("layer 'n0': every weight rounds to 0 at 8 weight bits; use more num_weight_bits")

    monkeypatch.setattr(compiler.pipeline, "quantize", failing)
    r = compiler.check(mlp_graph([4, 3]), "loihi", build=False)
    (v,) = _violations(r, "quantisation")
    assert not r.fits and "rounds to 0" in str(v)


def test_all_violations_reported_at_once_and_table():
    r = compiler.check(mlp_graph([20, 1200, 100, 12]), "xylo", build=False)
    rules = {v.rule for v in r.violations}
    assert {"input_channels", "neurons_per_core", "readout_size", "fan_out"} <= rules
    text = r.table()
    assert "DOES NOT FIT" in text and "input_channels" in text and "n0" in text


def test_check_reports_per_core_utilisation_when_it_fits():
    r = compiler.check(mlp_graph([30, 100, 5]), "tiny")
    assert r.fits and len(r.cores) >= 2
    assert all(c["neurons"] <= 64 and c["axons_in"] <= 256 for c in r.cores)
    assert "cores used" in r.table() and "%)" in r.table()
