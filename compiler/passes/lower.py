"""Lowering: a layer graph → a population graph (neurons and projections).

Between two spiking stages everything is linear (Dense, Conv2d, Pool, Flatten, Affine and
residual Add), so each stage is composed into one matrix per spike source::

    I_post = Σ_sources M_source · s_source + b,      M: float64 [post, pre] (CSR, or dense)

A Dense layer scaled by a diagonal (its source's spike value, an ``Affine``) stays a dense array,
``M = W · diag(d)`` (each entry the one product ``w_ij · d_j``): no sparse copy of a large layer;
every other composition is a scipy sparse product, and a dense form becomes CSR (zeros dropped)
before one. Either way a projection holds the nonzeros in (post, pre) order.

Convolutions are expanded into crossbar connectivity (one synapse per kernel tap that lands in
the input), average pooling becomes a ``1/(kh·kw)`` sum folded into the next layer's weights
(the chip pools by summation; the factor ends up in the weights and thereby in the threshold
scaling), BatchNorm leftovers (``Affine``) are diagonal matrices. Each source with a non-empty
matrix becomes one ``Synapses`` node; ``b`` becomes the population's bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from spikeforge.errors import CompileError

from .. import ir

__all__ = ["lower", "linear_matrix", "conv_matrix", "pool_matrix", "csr_of_dense"]

Form = tuple[dict[str, Any], NDArray[np.float64], tuple[str, ...]]  # {source: matrix}, bias, layer names


def csr_of_dense(weight: NDArray[Any], keep_zeros: bool = False) -> sp.csr_matrix:
    """``sp.csr_matrix(weight)`` of a 2-D array, laid out directly: row-major nonzeros, column
    indices sorted (the general conversion goes through COO, several passes over a large layer).
    ``keep_zeros``: every entry is stored, zeros too (the same products for finite operands:
    a zero adds ±0 to a sum that starts at +0, which changes no sum). Without zeros stored, a
    C-contiguous float64 ``weight`` is not copied: the matrix's ``data`` is a view of it
    (callers do not modify the matrices they get)."""
    w = np.asarray(weight)
    n, m = w.shape
    if w.size == 0 or w.size >= 1 << 31 or w.dtype.kind not in "fiu":
        return sp.csr_matrix(w)
    nonzero = None if keep_zeros else w != 0
    if nonzero is None or nonzero.all():
        data = w.ravel()
        indices = np.tile(np.arange(m, dtype=np.int32), n)
        indptr = np.arange(0, n * m + 1, m, dtype=np.int32)
    else:
        data = w[nonzero]
        indices = np.tile(np.arange(m, dtype=np.int32), n)[nonzero.ravel()]
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.count_nonzero(nonzero, axis=1), out=indptr[1:])
    out = sp.csr_matrix((data, indices, indptr), shape=(n, m))
    out.has_sorted_indices = True
    return out


def _sparse(m: Any) -> Any:
    """A form's matrix as a scipy sparse matrix (a composed Dense layer is kept as an array)."""
    return csr_of_dense(m) if isinstance(m, np.ndarray) else m


def conv_matrix(node: ir.Conv2d, in_shape: tuple[int, ...]) -> sp.csr_matrix:
    """The convolution as a sparse ``[O·H'·W', C·H·W]`` matrix (row-major, torch order)."""
    c_in, h, w = in_shape
    o_n, cg, kh, kw = node.weight.shape
    _, ho, wo = node.out_shape([in_shape])
    g = node.groups
    o, ci, ky, kx, y, x = np.meshgrid(np.arange(o_n), np.arange(cg), np.arange(kh), np.arange(kw),
                                      np.arange(ho), np.arange(wo), indexing="ij")
    iy = y * node.stride[0] - node.padding[0] + ky
    ix = x * node.stride[1] - node.padding[1] + kx
    c = (o // (o_n // g)) * cg + ci
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((o * ho + y) * wo + x)[ok]
    cols = ((c * h + iy) * w + ix)[ok]
    vals = node.weight[o, ci, ky, kx][ok]
    return sp.csr_matrix((vals, (rows, cols)), shape=(o_n * ho * wo, c_in * h * w))


def pool_matrix(node: ir.Pool, in_shape: tuple[int, ...]) -> sp.csr_matrix:
    """Sum (or average) pooling as a sparse ``[C·H'·W', C·H·W]`` matrix."""
    c_n, h, w = in_shape
    _, ho, wo = node.out_shape([in_shape])
    kh, kw = node.kernel
    c, ky, kx, y, x = np.meshgrid(np.arange(c_n), np.arange(kh), np.arange(kw), np.arange(ho), np.arange(wo),
                                  indexing="ij")
    iy = y * node.stride[0] + ky
    ix = x * node.stride[1] + kx
    rows = ((c * ho + y) * wo + x).ravel()
    cols = ((c * h + iy) * w + ix).ravel()
    value = 1.0 / (kh * kw) if node.mode == "avg" else 1.0
    return sp.csr_matrix((np.full(rows.size, value), (rows, cols)), shape=(c_n * ho * wo, c_n * h * w))


def _affine(node: ir.Affine, shape: tuple[int, ...]) -> tuple[Any, NDArray[np.float64]]:
    n = int(np.prod(shape))
    per = n // shape[0] if shape else n
    scale = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), (shape[0],)) if node.scale.size > 1 else (
        np.full(shape[0], float(node.scale.ravel()[0])))
    shift = np.broadcast_to(np.asarray(node.shift, dtype=np.float64), (shape[0],)) if node.shift.size > 1 else (
        np.full(shape[0], float(node.shift.ravel()[0])))
    return sp.diags(np.repeat(scale, per)).tocsr(), np.repeat(shift, per)


def linear_matrix(node: ir.Node, in_shape: tuple[int, ...]) -> tuple[Any, NDArray[np.float64]]:
    """``(M, b)`` of a linear layer node: ``y = M x + b`` on flattened per-sample tensors."""
    if isinstance(node, ir.Dense):
        b = node.bias if node.bias is not None else np.zeros(node.weight.shape[0])
        return csr_of_dense(node.weight), np.asarray(b, dtype=np.float64)
    if isinstance(node, ir.Conv2d):
        m = conv_matrix(node, in_shape)
        _, ho, wo = node.out_shape([in_shape])
        b = node.bias if node.bias is not None else np.zeros(node.weight.shape[0])
        return m, np.repeat(np.asarray(b, dtype=np.float64), ho * wo)
    if isinstance(node, ir.Pool):
        m = pool_matrix(node, in_shape)
        return m, np.zeros(m.shape[0])
    if isinstance(node, ir.Affine):
        return _affine(node, in_shape)
    if isinstance(node, ir.Flatten):
        n = int(np.prod(in_shape))
        return sp.identity(n, format="csr"), np.zeros(n)
    raise CompileError(f"layer {node.name!r}: {type(node).__name__} is not a linear layer")


def _diagonal(x: Any) -> NDArray[np.float64] | None:
    """The diagonal of ``x`` if ``x`` is a square CSR matrix with entries on its diagonal only, else None."""
    if not sp.issparse(x) or x.format != "csr" or x.shape[0] != x.shape[1]:
        return None
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    if not np.array_equal(rows, x.indices):
        return None
    return np.asarray(x.diagonal(), dtype=np.float64)


def _compose(m: Any, x: Any) -> Any:
    """``(m @ x)`` as CSR, or as a dense array when ``m`` is a Dense layer's float64 weights and
    ``x`` is diagonal. A diagonal ``x`` (an identity after a spiking stage, a per-unit scale)
    scales the columns of ``m``: every entry is the one product ``m_ij · x_jj`` the matrix product
    would sum alone, so the values are the same, without a sparse product over a large ``m``."""
    d = _diagonal(x)
    if isinstance(m, np.ndarray):
        if d is not None and x.dtype == np.float64 and m.dtype == np.float64:
            return m * d  # [post, pre]: zeros (also of w·d) are dropped when the projection is made
        m = csr_of_dense(m)
    if d is None or x.dtype != np.float64 or not (sp.issparse(m) and m.format == "csr" and m.has_canonical_format
                                                   and m.dtype == np.float64):
        return (m @ x).tocsr()  # (repeated entries would be multiplied one by one, then summed)
    out = sp.csr_matrix(m, copy=True)
    out.data *= d[out.indices]
    return out


def _layer_matrix(node: ir.Node, in_shape: tuple[int, ...], bias: NDArray[np.float64]
                  ) -> tuple[Any, NDArray[np.float64]]:
    """``(M, M @ bias + b)`` of a linear layer as lowering composes it: :func:`linear_matrix`, but a
    Dense layer's matrix is its weight array itself (composed densely, BLAS-free and without a
    sparse copy); ``M @ bias`` sums in the order of the CSR product either way."""
    if not isinstance(node, ir.Dense):
        m, b = linear_matrix(node, in_shape)
        return m, m @ bias + b
    b = np.asarray(node.bias if node.bias is not None else np.zeros(node.weight.shape[0]), dtype=np.float64)
    w = np.asarray(node.weight)
    if bias.any():
        return w, csr_of_dense(w) @ bias + b
    # a zero bias (the usual case: a spiking stage or the input before) gives +0.0 in the CSR product
    return w, np.zeros(w.shape[0]) + b


def _index_dtype(n_post: int, n_pre: int) -> type[np.signedinteger[Any]]:
    """Projection indices as int32 when both sizes allow (every real chip), else int64."""
    return np.int32 if max(n_post, n_pre) <= np.iinfo(np.int32).max else np.int64


def _coo(m: Any) -> tuple[NDArray[np.signedinteger[Any]], NDArray[np.signedinteger[Any]], NDArray[np.float64]]:
    """``(rows, cols, values)`` of the nonzeros of a form's matrix in (row, column) order: indices
    int32 (int64 beyond 2^31 neurons), values float64 (those of a dense form are a view of it)."""
    idx = _index_dtype(*m.shape)
    if isinstance(m, np.ndarray):
        n, k = m.shape
        flat = m.reshape(-1)
        nonzero = flat != 0
        if nonzero.all():
            return (np.repeat(np.arange(n, dtype=idx), k), np.tile(np.arange(k, dtype=idx), n),
                    flat.astype(np.float64, copy=False))
        counts = np.count_nonzero(nonzero.reshape(n, k), axis=1)
        return (np.repeat(np.arange(n, dtype=idx), counts), np.tile(np.arange(k, dtype=idx), n)[nonzero],
                flat[nonzero].astype(np.float64, copy=False))
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    coo = m.tocoo()
    if m.has_canonical_format:  # rows in order, columns sorted within: already (row, col) order
        rows, cols, vals = coo.row, coo.col, coo.data
    else:
        order = np.lexsort((coo.col, coo.row))
        rows, cols, vals = coo.row[order], coo.col[order], coo.data[order]
    return rows.astype(idx, copy=False), cols.astype(idx, copy=False), vals.astype(np.float64, copy=False)


def lower(graph: ir.Graph) -> ir.Graph:
    """Compose the linear layers between spiking stages; return the population graph."""
    ir.validate(graph, "spiking")
    out = ir.Graph(meta=graph.meta)
    forms: dict[str, Form] = {}
    for node in graph:
        name = node.name
        if isinstance(node, ir.Input):
            out.add(node)
            n = graph.size(name)
            forms[name] = ({name: sp.identity(n, format="csr")}, np.zeros(n), ())
        elif isinstance(node, ir.Neuron):
            srcs, bias, layers = forms[node.inputs[0]]
            n = graph.size(name)
            syn_names = []
            for src, m in srcs.items():
                rows, cols, vals = _coo(m)
                if not rows.size:
                    continue
                syn = ir.Synapses(f"{src}->{name}", (src,), post=name, shape=(n, m.shape[1]),
                                  post_idx=rows, pre_idx=cols, values=vals, source=layers)
                out.add(syn)
                syn_names.append(syn.name)
            out.add(ir.Neuron(name, tuple(syn_names), kind=node.kind, threshold=node.threshold,
                              tau_mem=node.tau_mem, tau_syn=node.tau_syn, datapath=node.datapath,
                              readout=node.readout, size=n, bias=np.asarray(bias, dtype=np.float64)))
            forms[name] = ({name: sp.identity(n, format="csr")}, np.zeros(n), ())
        elif isinstance(node, ir.Add):
            acc: dict[str, Any] = {}
            bias = np.zeros(graph.size(name))
            names: tuple[str, ...] = ()
            for i in node.inputs:
                s_i, b_i, l_i = forms[i]
                for src, m in s_i.items():
                    acc[src] = acc[src] + _sparse(m) if src in acc else _sparse(m)
                bias = bias + b_i
                names += l_i
            forms[name] = (acc, bias, names + (f"{name} (Add)",))
        elif isinstance(node, ir.Output):
            last = graph[node.inputs[0]]
            if not isinstance(last, ir.Neuron):
                raise CompileError(
                    f"the model's output {last.name!r} ({type(last).__name__}) is not spiking; end the model with a "
                    "compiler.nn neuron module (ReLU networks are converted, calibration=... needed)"
                )
            out.add(node)
        else:
            in_shape = graph.shape(node.inputs[0])
            srcs, bias, layers = forms[node.inputs[0]]
            m, b = _layer_matrix(node, in_shape, bias)
            forms[name] = ({s: _compose(m, _sparse(x)) for s, x in srcs.items()}, b,
                           layers + (f"{name} ({type(node).__name__})",))
    return ir.validate(out, "lowered")
