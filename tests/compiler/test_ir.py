"""The IR: shapes, validation between passes."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import mlp_graph

from compiler import ir
from compiler.passes.lower import conv_matrix, lower, pool_matrix
from compiler.passes.quantize import quantize
from hw_specs import load
from spikeforge.errors import CompileError


def test_shapes_are_inferred():
    g = ir.Graph()
    g.add(ir.Input("x", (), shape=(2, 8, 8)))
    g.add(ir.Conv2d("c", ("x",), weight=np.ones((4, 2, 3, 3)), stride=(2, 2), padding=(1, 1)))
    g.add(ir.Pool("p", ("c",), kernel=(2, 2), stride=(2, 2)))
    g.add(ir.Flatten("f", ("p",)))
    assert g.shape("c") == (4, 4, 4) and g.shape("p") == (4, 2, 2) and g.shape("f") == (16,)


def test_bad_shapes_and_names_raise():
    g = ir.Graph()
    g.add(ir.Input("x", (), shape=(3,)))
    with pytest.raises(CompileError, match="Dense expects input"):
        g.add(ir.Dense("d", ("x",), weight=np.ones((2, 4))))
    with pytest.raises(CompileError, match="used twice"):
        g.add(ir.Input("x", (), shape=(3,)))
    with pytest.raises(CompileError, match="unknown node"):
        g.add(ir.Flatten("f", ("nope",)))


def test_validate_stages():
    g = mlp_graph([4, 3])
    ir.validate(g, "frontend")
    relu = ir.Graph([ir.Input("x", (), shape=(2,)), ir.ReLU("r", ("x",)), ir.Output("o", ("r",))])
    with pytest.raises(CompileError, match="ReLU"):
        ir.validate(relu, "spiking")
    with pytest.raises(CompileError, match="no Output"):
        ir.validate(ir.Graph([ir.Input("x", (), shape=(2,))]), "frontend")
    with pytest.raises(CompileError, match="unknown stage"):
        ir.validate(g, "bogus")


def test_after_quantize_no_float_weight_remains():
    spec = load("loihi")
    low = lower(mlp_graph([6, 5, 2]))
    with pytest.raises(CompileError, match="float64 weights"):
        ir.validate(low, "quantized")
    q, _ = quantize(low, spec)
    ir.validate(q, "quantized")
    for syn in q.of_type(ir.Synapses):
        assert syn.values.dtype.kind == "i"


def test_conv_and_pool_matrices_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2, 3, 3))
    node = ir.Conv2d("c", ("x",), weight=w, stride=(2, 1), padding=(1, 0))
    x = rng.normal(size=(2, 7, 6))
    want = torch.nn.functional.conv2d(torch.tensor(x[None]), torch.tensor(w), stride=(2, 1), padding=(1, 0))
    got = conv_matrix(node, x.shape) @ x.ravel()
    np.testing.assert_allclose(got, want.numpy().ravel(), atol=1e-12)
    pool = ir.Pool("p", ("x",), kernel=(2, 2), stride=(2, 2), mode="avg")
    want = torch.nn.functional.avg_pool2d(torch.tensor(x[None]), 2)
    np.testing.assert_allclose(pool_matrix(pool, x.shape) @ x.ravel(), want.numpy().ravel(), atol=1e-12)
