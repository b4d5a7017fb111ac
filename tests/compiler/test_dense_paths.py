"""Dense layers take direct paths through conversion, lowering, quantisation and verification (no
CSR copies, no COO detours, in-place or integer arithmetic): each gives exactly, bit for bit, what
the general sparse form gives, zeros, scales, residual sums and repeated positions included."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from compiler import ir
from compiler.passes import quantize as quantize_module
from compiler.passes.convert import evaluate_analog
from compiler.passes.lower import csr_of_dense, lower
from compiler.passes.quantize import _projection_errors, _rel_rms, _worst_input
from compiler.simulate import _dense_of
from emulator.families.loihi import compiling as loihi


def _weights(rng: np.random.Generator, shape: tuple[int, int], zeros: float) -> np.ndarray:
    w = rng.standard_normal(shape)
    w[rng.random(shape) < zeros] = 0.0
    return w


@pytest.mark.parametrize("zeros", [0.0, 0.001, 0.3, 1.0])
def test_csr_of_dense_is_scipys_matrix(zeros: float) -> None:
    w = _weights(np.random.default_rng(1), (37, 53), zeros)
    got, want = csr_of_dense(w), sp.csr_matrix(w)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    x = np.random.default_rng(2).random((53, 9))
    kept = csr_of_dense(w, keep_zeros=True)
    assert kept.nnz == w.size
    assert np.array_equal(kept @ x, want @ x)  # stored zeros change no sum
    assert np.array_equal((kept @ x)[np.signbit(kept @ x)], (want @ x)[np.signbit(want @ x)])


def _mlp(rng: np.random.Generator, zeros: float, bias_shift: bool) -> ir.Graph:
    """Input → rate Affine → Dense → IF → value Affine → Dense → Dense (no spike between) → IF, and a
    residual Add of two Dense layers; optionally an Affine shift (a bias entering a Dense)."""
    g = ir.Graph()
    g.add(ir.Input("x", (), shape=(20,)))
    g.add(ir.Affine("x_rate", ("x",), scale=np.array([0.37]), shift=np.zeros(1)))
    g.add(ir.Dense("d1", ("x_rate",), weight=_weights(rng, (30, 20), zeros), bias=rng.standard_normal(30)))
    g.add(ir.Neuron("n1", ("d1",), kind="IF", threshold=1.3))
    shift = rng.standard_normal(1) if bias_shift else np.zeros(1)
    g.add(ir.Affine("n1_value", ("n1",), scale=np.array([1.7]), shift=shift))
    g.add(ir.Dense("d2", ("n1_value",), weight=_weights(rng, (25, 30), zeros)))
    g.add(ir.Dense("d3", ("d2",), weight=_weights(rng, (25, 25), zeros), bias=rng.standard_normal(25)))
    g.add(ir.Dense("d4", ("n1_value",), weight=_weights(rng, (25, 30), zeros)))
    g.add(ir.Add("sum", ("d3", "d4")))
    g.add(ir.Neuron("n2", ("sum",), kind="IF", threshold=0.9))
    g.add(ir.Output("out", ("n2",)))
    return g


def _sparse_reference(graph: ir.Graph) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The projections and biases composed entirely with scipy sparse matrices (the general route)."""
    d1, d2, d3, d4 = (graph[n] for n in ("d1", "d2", "d3", "d4"))
    rate, value = graph["x_rate"], graph["n1_value"]

    def scaled(w: np.ndarray, s: float) -> sp.csr_matrix:
        m = sp.csr_matrix(w, copy=True)
        m.data *= np.full(w.shape[1], s)[m.indices]
        return m

    def coo(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = sp.csr_matrix(m)
        m.eliminate_zeros()
        c = m.tocoo()
        o = np.lexsort((c.col, c.row))
        return c.row[o].astype(np.int64), c.col[o].astype(np.int64), c.data[o]

    m1 = scaled(d1.weight, float(rate.scale[0]))
    b1 = sp.csr_matrix(d1.weight) @ np.zeros(20) + d1.bias
    m2 = scaled(d2.weight, float(value.scale[0]))
    b2 = sp.csr_matrix(d2.weight) @ np.full(30, float(value.shift[0])) + np.zeros(25)
    m3 = (sp.csr_matrix(d3.weight) @ m2).tocsr()
    b3 = sp.csr_matrix(d3.weight) @ b2 + d3.bias
    m4 = scaled(d4.weight, float(value.scale[0]))
    b4 = sp.csr_matrix(d4.weight) @ np.full(30, float(value.shift[0])) + np.zeros(25)
    return {"x->n1": (*coo(m1), b1), "n1->n2": (*coo(m3 + m4), b3 + b4)}


@pytest.mark.parametrize("zeros", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("bias_shift", [False, True])
def test_lowered_dense_layers_equal_the_sparse_composition(zeros: float, bias_shift: bool) -> None:
    graph = _mlp(np.random.default_rng(3), zeros, bias_shift)
    low = lower(graph)
    want = _sparse_reference(graph)
    for name, (rows, cols, vals, bias) in want.items():
        post = name.split("->")[1]
        np.testing.assert_array_equal(low[post].bias, bias)
        if not rows.size:
            assert name not in low.nodes
            continue
        syn = low[name]
        np.testing.assert_array_equal(syn.post_idx, rows)
        np.testing.assert_array_equal(syn.pre_idx, cols)
        np.testing.assert_array_equal(syn.values, vals)
        assert syn.post_idx.dtype == syn.pre_idx.dtype == np.int32 and syn.values.dtype == np.float64


@pytest.mark.parametrize("zeros", [0.0, 0.05])
def test_analog_evaluation_sums_as_the_sparse_product(zeros: float) -> None:
    graph = _mlp(np.random.default_rng(4), zeros, bias_shift=False)
    ann = ir.Graph()
    for node in graph:  # the spiking stages back to ReLUs: the analog network
        ann.add(ir.ReLU(node.name, node.inputs) if isinstance(node, ir.Neuron) else node)
    x = np.random.default_rng(5).random((11, 20))
    acts = evaluate_analog(ann, x)
    h = np.maximum(np.asarray(sp.csr_matrix(graph["d1"].weight) @ (x * 0.37).T).T + graph["d1"].bias, 0.0)
    np.testing.assert_array_equal(acts["n1"], h)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("block", [7, 1 << 20])
def test_worst_input_sums_rows_as_bincount(seed: int, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantize_module, "_BLOCK", block)  # several blocks of rows, or one
    rng = np.random.default_rng(seed)
    n_post, n = 40, 500
    post = np.sort(rng.integers(0, n_post, n)) if seed % 2 == 0 else rng.integers(0, n_post, n)
    post[post == 7] = 8  # an empty row
    index = np.int32 if seed < 2 else np.int64  # lowering's indices, or another graph's
    syn = ir.Synapses("s", ("x",), post="p", shape=(n_post, 60), post_idx=post.astype(index),
                      pre_idx=rng.integers(0, 60, n).astype(np.int64), values=np.zeros(n))
    q = rng.integers(-255, 256, n).astype(np.int64)
    for count in (1, 3):
        want = np.bincount(post, weights=np.abs(q) * float(count), minlength=n_post).astype(np.float64)
        got = _worst_input(syn, q, 1.0, count)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_projection_errors_equal_the_direct_expressions() -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal(1000) * 0.01
    s, unit, step, qmax = 3.7e4, 2.0 ** 5, 2, 254
    q = loihi.mantissas(w, s, -1, step, qmax)
    err, clipped = _projection_errors(w, q, unit, s, qmax + step / 2)
    assert err == _rel_rms(q * unit / s - w, w)
    assert clipped == np.count_nonzero(np.abs(w * s / unit) > qmax + step / 2) / w.size


@pytest.mark.parametrize("block", [13, 1 << 20])
def test_mantissas_and_geometry_equal_the_direct_expressions(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loihi, "_BLOCK", block)
    rng = np.random.default_rng(7)
    for w in (rng.standard_normal(777), np.abs(rng.standard_normal(50)), -np.abs(rng.standard_normal(50))):
        step, qmax, wmax = loihi.weight_geometry(w, 255, 8)
        mixed = bool((w > 0).any() and (w < 0).any())
        assert (step, qmax, wmax) == (1 << int(mixed), (255 >> int(mixed)) << int(mixed), float(np.abs(w).max()))
        s = loihi.state_scale(qmax, wmax, 0)
        want = np.clip(np.round(w * s / (2.0 ** loihi.INPUT_SHIFT * step)) * step, -qmax, qmax).astype(np.int64)
        np.testing.assert_array_equal(loihi.mantissas(w, s, 0, step, qmax), want)
        w32 = w.astype(np.float32)  # another dtype computes in its own precision
        want32 = np.clip(np.round(w32 * s / (2.0 ** loihi.INPUT_SHIFT * step)) * step, -qmax, qmax).astype(np.int64)
        np.testing.assert_array_equal(loihi.mantissas(w32, s, 0, step, qmax), want32)


def _synapses(post: np.ndarray, pre: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> ir.Synapses:
    return ir.Synapses("s", ("x",), post="p", shape=shape, post_idx=post.astype(np.int64),
                       pre_idx=pre.astype(np.int64), values=values)


def test_float_dense_matrix_equals_the_coo_conversion() -> None:
    rng = np.random.default_rng(8)
    n_post, n_pre = 12, 9
    full = _synapses(np.repeat(np.arange(n_post), n_pre), np.tile(np.arange(n_pre), n_post),
                     rng.standard_normal(n_post * n_pre), (n_post, n_pre))
    keep = rng.random(n_post * n_pre) < 0.7
    gaps = _synapses(full.post_idx[keep], full.pre_idx[keep], full.values[keep], (n_post, n_pre))
    for syn in (full, gaps):
        got = _dense_of(syn)
        assert got is not None
        want = sp.coo_matrix((syn.values, (syn.post_idx, syn.pre_idx)), shape=syn.shape).toarray()
        np.testing.assert_array_equal(got, want)
    repeated = _synapses(np.array([0, 1, 1]), np.array([2, 3, 3]), np.ones(3), (2, 4))
    unsorted = _synapses(np.array([1, 0]), np.array([0, 0]), np.ones(2), (2, 4))
    assert _dense_of(repeated) is None and _dense_of(unsorted) is None
