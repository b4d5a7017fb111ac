"""TrueNorth weight fitting: binary crossbars × four axon-type weights per neuron.

(Named ``test_truenorth_weights`` so as not to clash with ``tests/emulator/test_truenorth.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import emulator
import hw_specs
from compiler.passes.truenorth import connect_truenorth, truenorth_weights
from spikeforge.errors import CompileError

SPEC = hw_specs.load("truenorth")


def shared_type_matrix(seed, n_post=40, n_pre=60):
    """w[j, i] = b[j, i] · S[j, T[i]]: one type per input, four integer levels per neuron."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 4, n_pre)
    levels = rng.integers(-255, 256, (n_post, 4))
    bits = rng.random((n_post, n_pre)) < 0.5
    return bits * levels[:, types]


def assert_valid(fit, n_post, n_pre):
    tw = SPEC.registers["type_weights"]
    assert fit.crossbar.shape == (n_post, fit.copies * n_pre)
    assert set(np.unique(fit.crossbar)) <= {0, 1}
    assert fit.axon_types.shape == (fit.copies * n_pre,)
    assert fit.axon_types.min() >= 0 and fit.axon_types.max() <= 3
    assert fit.type_weights.shape == (n_post, 4)
    assert fit.type_weights.min() >= tw.lo and fit.type_weights.max() <= tw.hi
    np.testing.assert_array_equal(fit.pre_map, np.tile(np.arange(n_pre), fit.copies))
    assert fit.scale.shape == (n_post,) and (fit.scale > 0).all()


@pytest.mark.parametrize("seed", range(3))
def test_shared_type_structure_is_exact(seed):
    w = shared_type_matrix(seed)
    fit = truenorth_weights(w, copies=1)
    assert_valid(fit, *w.shape)
    assert fit.error < 1e-12
    np.testing.assert_allclose(fit.reconstruct(), w, atol=1e-9)


def test_four_levels_per_neuron_are_exact_with_four_copies():
    rng = np.random.default_rng(1)
    levels = rng.normal(size=(30, 4)) * 3.0
    pick = rng.integers(0, 5, (30, 50))  # 4: no synapse
    w = np.where(pick < 4, np.take_along_axis(levels, np.minimum(pick, 3), axis=1), 0.0)
    fit = truenorth_weights(w, copies=4)
    assert_valid(fit, *w.shape)
    # real levels are rounded to 8-bit type weights: exact up to that rounding (< 1 / 255 of the peak level)
    assert fit.error < 2e-3
    hit = np.abs(fit.reconstruct() - w) <= np.abs(levels).max(axis=1, keepdims=True) / 255
    assert hit.all()


def test_integer_levels_are_exact_with_four_copies():
    rng = np.random.default_rng(2)
    levels = rng.integers(-100, 100, (20, 4))
    pick = rng.integers(0, 5, (20, 40))
    w = np.where(pick < 4, np.take_along_axis(levels, np.minimum(pick, 3), axis=1), 0)
    fit = truenorth_weights(w, copies=4)
    assert fit.error < 1e-12
    np.testing.assert_allclose(fit.reconstruct(), w, atol=1e-9)


def test_error_decreases_with_freedom():
    w = np.random.default_rng(3).normal(size=(64, 96))
    errors = [truenorth_weights(w, copies=c).error for c in (1, 2, 4)]
    assert 0 < errors[2] < errors[1] < errors[0] < 1
    by_levels = [truenorth_weights(w, copies=1, levels=k).error for k in (1, 2, 4)]
    assert by_levels[2] < by_levels[1] < by_levels[0]
    assert truenorth_weights(w, copies=2, iterations=30).error <= truenorth_weights(w, copies=2, iterations=1).error
    for c in (1, 2, 4):
        assert_valid(truenorth_weights(w, copies=c), *w.shape)


def test_error_is_relative_rms_of_the_reconstruction():
    w = np.random.default_rng(4).normal(size=(10, 20))
    fit = truenorth_weights(w)
    expect = np.sqrt(((w - fit.reconstruct()) ** 2).sum() / (w ** 2).sum())
    assert fit.error == pytest.approx(expect)
    # the reconstruction is the chip's integer sum scaled per neuron
    np.testing.assert_allclose(fit.reconstruct(), fit.scale[:, None] * fit.integer())


def test_zero_rows_and_columns():
    w = np.zeros((5, 6))
    w[1, 2] = 3.0
    fit = truenorth_weights(w)
    assert fit.error == pytest.approx(0.0, abs=1e-12)
    assert truenorth_weights(np.zeros((3, 3))).error == 0.0


@pytest.mark.parametrize("copies", [1, 2, 4])
def test_emulated_program_adds_the_integer_weights(copies, engine):
    rng = np.random.default_rng(5)
    n_in, n_out, steps = 12, 9, 6
    w = rng.normal(size=(n_out, n_in))
    fit = truenorth_weights(w, copies=copies)
    w_int = fit.integer()
    b = emulator.ProgramBuilder("truenorth")
    x = b.input("in", n_in)
    big = (1 << 19) - 1
    p = b.population("p", n_out, type_weights=fit.type_weights, threshold=big, neg_threshold=big)
    names = connect_truenorth(b, x, p, fit, name="fc")
    assert len(names) == copies
    b.output("out", p)
    program = b.build()
    spikes = (rng.random((2, steps, n_in)) < 0.3).astype(np.int64)
    v = emulator.run(program, spikes, probes=["p.v"], engine=engine).probes["p.v"]
    # no leak, no threshold reached: V after step t is the integer input of steps 0..t-1 (input delay 1)
    drive = np.einsum("bti,ji->btj", spikes, w_int)
    expect = np.concatenate([np.zeros((2, 1, n_out), dtype=np.int64), np.cumsum(drive, axis=1)[:, :-1]], axis=1)
    assert np.abs(expect).max() < big
    np.testing.assert_array_equal(v, expect)


def test_bad_arguments():
    w = np.ones((2, 2))
    with pytest.raises(CompileError, match="levels=5; truenorth has 4 axon types"):
        truenorth_weights(w, levels=5)
    with pytest.raises(CompileError, match="copies=3"):
        truenorth_weights(w, copies=3)
    with pytest.raises(CompileError, match="finite"):
        truenorth_weights(np.array([[np.nan]]))


def conv_matrix(seed, c_in=2, c_out=8, size=16, k=3):
    """A 'same' k×k convolution as a [c_out·size², c_in·size²] matrix: 2048 × 512 and ≤ 9·c_in synapses per row."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(c_out, c_in, k, k))
    o, i, dy, dx, y, x = np.meshgrid(*(np.arange(n) for n in (c_out, c_in, k, k, size, size)), indexing="ij")
    sy, sx = y + dy - k // 2, x + dx - k // 2
    ok = (sy >= 0) & (sy < size) & (sx >= 0) & (sx < size)
    post = ((o * size + y) * size + x)[ok]
    pre = ((i * size + sy) * size + sx)[ok]
    return sp.coo_array((kernel[o, i, dy, dx][ok], (post, pre)), shape=(c_out * size * size, c_in * size * size))


def assert_same_fit(a, b):
    np.testing.assert_array_equal(a.bit_post, b.bit_post)
    np.testing.assert_array_equal(a.bit_axon, b.bit_axon)
    np.testing.assert_array_equal(a.axon_types, b.axon_types)
    np.testing.assert_array_equal(a.type_weights, b.type_weights)
    np.testing.assert_array_equal(a.scale, b.scale)
    assert a.error == pytest.approx(b.error, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("copies", [1, 2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_sparse_input_fits_as_dense(copies, seed):
    rng = np.random.default_rng(10 + seed)
    n_post, n_pre = rng.integers(20, 80, 2)
    w = rng.normal(size=(n_post, n_pre)) * (rng.random((n_post, n_pre)) < 0.15)
    if seed == 2:
        w = np.round(w * 10)  # integer weights: exact ties between candidates
    dense = truenorth_weights(w, copies=copies)
    assert_valid(dense, n_post, n_pre)
    assert_same_fit(dense, truenorth_weights(sp.csr_array(w), copies=copies))
    j, i = np.nonzero(w)
    order = rng.permutation(j.size)  # any entry order
    assert_same_fit(dense, truenorth_weights((j[order], i[order], w[j, i][order], w.shape), copies=copies))
    # bits only on synapses; the sparse accessors agree with the dense crossbar
    xbar = dense.crossbar
    assert not (xbar.reshape(n_post, copies, n_pre).any(axis=1) & (w == 0)).any()
    for lo, hi in ((0, n_pre), (n_pre // 3, 2 * n_pre), (0, copies * n_pre)):
        for got, want in zip(dense.bits(lo, hi), np.nonzero(xbar[:, lo:hi]), strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(dense.reconstruct_at(j, i), dense.reconstruct()[j, i])
    np.testing.assert_array_equal(dense.reconstruct_at([0, n_post - 1], [0, n_pre - 1]),
                                  dense.reconstruct()[[0, n_post - 1], [0, n_pre - 1]])
    post, pre, val = dense.integer_coo()
    np.testing.assert_array_equal(np.nonzero(dense.integer())[0], post[val != 0])
    np.testing.assert_array_equal(dense.integer()[post, pre], val)


def test_coo_input_sums_duplicates_and_checks_indices():
    w = np.zeros((4, 5))
    w[1, 2], w[3, 0] = 3.0, -1.0
    fit = truenorth_weights(([1, 1, 3, 2], [2, 2, 0, 4], [1.0, 2.0, -1.0, 0.0], (4, 5)))
    assert_same_fit(truenorth_weights(w), fit)
    with pytest.raises(CompileError, match="outside"):
        truenorth_weights(([0], [5], [1.0], (4, 5)))
    with pytest.raises(CompileError, match="finite"):
        truenorth_weights(([0], [1], [np.inf], (4, 5)))
    assert truenorth_weights(sp.coo_array((3, 3))).error == 0.0


def test_conv_matrix_fit_stays_on_its_synapses():
    """A 2048 × 512 convolution (sparse input, ~0.3 s; the dense fit took ~10 s): bits only where
    synapses are, two axon copies at most per synapse."""
    w = conv_matrix(0)
    assert w.shape == (2048, 512) and w.nnz < 2048 * 18
    fit = truenorth_weights(w, copies=2)
    assert fit.bit_post.size <= 2 * w.nnz and 0 < fit.error < 0.5
    assert fit.shape == (2048, 512) and fit.type_weights.shape == (2048, 4)
