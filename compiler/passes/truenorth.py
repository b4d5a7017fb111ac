"""TrueNorth weights: a real ``[post, pre]`` matrix as binary crossbars × four axon-type weights.

On TrueNorth a synapse is one bit ``b[j, i']`` of the core's crossbar; the weight it adds is
``s_j[G_i']``, the neuron's signed type weight for the axon's type ``G_i' ∈ {0..3}``, and the
type belongs to the axon, so it is shared by every neuron of the core. An input may enter a core
on several axons ("copies", ``pre_map[i'] = i``), which lets a neuron combine type weights:

    W_int[j, i] = Σ_{i' : pre_map[i'] = i} b[j, i'] · s_j[G_i']          (integers, what the chip adds)
    w[j, i]    ≈ scale[j] · W_int[j, i]                                  (scale: float64 [post])

``copies`` chooses the scheme:

* ``1`` (shared types): one axon per input, type ``G_i`` per input shared by all neurons; each
  neuron has four levels ``s_j[0..3]``; ``w[j, i] ∈ {0, s_j[G_i]}``.
* ``2`` (default, signed copies): a positive-type axon (type 0 or 1) and a negative-type axon
  (type 2 or 3) per input, types chosen per input; ``w[j, i] ∈ {0, s_j[G⁺_i], s_j[G⁻_i], sum}``.
* ``4`` (per-neuron code): one axon of each type per input, so every neuron picks any subset of
  its four levels for every input: up to 16 levels per neuron (``s = Δ·(1, 2, 4, −8)`` is a
  4-bit two's complement code), at 4× the input axons.

Fitting is Lloyd-Max style alternating least squares, all neurons at once: (1) every weight takes
the nearest representable value (per neuron, per input); (2) each neuron's four levels are the
least-squares solution for those assignments; (3) for ``copies < 4`` every input takes the type
(pair) that minimises the summed squared error over all neurons. Finally each neuron's levels are
scaled into the spec's ``type_weights`` range (``scale[j] = max|s_j| / 255`` or an integer multiple
when the levels are integers already) and rounded, and the bits re-assigned for the integer levels.
The result reports the relative RMS error ``‖w − scale·W_int‖ / ‖w‖``.

Only the synapses are fitted: a weight that is exactly zero (no synapse) always takes bits 0 and
adds no error, so every step runs on the non-zero entries (COO ``post``, ``pre``, ``values``; per
neuron a segment sum over its entries, per input one over its column's), in chunks of
``_CHUNK`` entries. The cost scales with the synapse count, not ``post × pre`` (a convolution
expanded to a ``[post, pre]`` projection is mostly zeros). A dense ``w`` is fitted through its
non-zero entries the same way; the crossbar is kept as the COO list of its set bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

import hw_specs
from spikeforge.errors import CompileError

if TYPE_CHECKING:
    from emulator.builder import Node, ProgramBuilder
    from hw_specs import HwSpec

__all__ = ["TrueNorthWeights", "truenorth_weights", "connect_truenorth"]

_CHUNK = 1 << 16  # synapses per chunk in the per-synapse steps: [chunk, 2^copies] float64 temporaries
_DENSE_SUM = 1 << 22  # error sums of a matrix up to this size, ≥ 1/8 non-zero, run over dense rows (_dense_order)
_BLOCK = 256  # neurons per block of those dense sums


class _Coo(NamedTuple):
    """The non-zero weights of a ``[post, pre]`` matrix, row-major (sorted by ``post``, then ``pre``).

    ``post``, ``pre`` int64 ``[nnz]``, ``values`` float64 ``[nnz]`` (all non-zero), ``shape`` ``(post, pre)``.
    """

    post: NDArray[np.int64]
    pre: NDArray[np.int64]
    values: NDArray[np.float64]
    shape: tuple[int, int]

    def where(self, keep: NDArray[np.bool_]) -> _Coo:
        return _Coo(self.post[keep], self.pre[keep], self.values[keep], self.shape)


@dataclass(frozen=True)
class TrueNorthWeights:
    """Binary crossbar + axon types + per-neuron type weights approximating ``w`` ``[post, pre]``.

    The crossbar ``[post, pre']`` is stored sparse, as its set bits: ``bit_post`` and ``bit_axon``
    int64 ``[bits]`` (row-major: sorted by neuron, then axon; bits sit only where ``w`` is
    non-zero); ``crossbar`` gives it dense (small matrices), ``bits(lo, hi)`` a column range's.
    ``axon_types`` int64 ``[pre']`` (0..3), ``type_weights`` int64 ``[post, 4]`` (in the spec's
    range), ``pre_map`` int64 ``[pre']`` (input of every axon copy), ``copies`` axons per input
    (``pre' = copies · pre``, copy ``c`` of input ``i`` at ``c · pre + i``), ``scale`` float64
    ``[post]`` (real weight per integer unit) and ``error`` (relative RMS of ``w − scale·W_int``).
    """

    bit_post: NDArray[np.int64]
    bit_axon: NDArray[np.int64]
    axon_types: NDArray[np.int64]
    type_weights: NDArray[np.int64]
    pre_map: NDArray[np.int64]
    copies: int
    scale: NDArray[np.float64]
    error: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(post, pre)`` of the fitted matrix."""
        return self.type_weights.shape[0], self.pre_map.size // self.copies

    @property
    def crossbar(self) -> NDArray[np.int64]:
        """The dense crossbar, int64 ``[post, pre']`` (0/1): for small matrices; ``bits`` for large ones."""
        out = np.zeros((self.type_weights.shape[0], self.pre_map.size), dtype=np.int64)
        out[self.bit_post, self.bit_axon] = 1
        return out

    def bits(self, lo: int = 0, hi: int | None = None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Set bits of crossbar columns ``lo:hi``: ``(post, axon − lo)`` int64 ``[n]``, row-major.

        The same arrays as ``np.nonzero(crossbar[:, lo:hi])``.
        """
        hi = self.pre_map.size if hi is None else hi
        keep = (self.bit_axon >= lo) & (self.bit_axon < hi)
        return self.bit_post[keep], self.bit_axon[keep] - lo

    def integer_coo(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """``W_int`` sparse: ``(post, pre, value)`` int64 ``[n]``, row-major, at every position with a set
        bit (copies summed; a value may be 0 where copies cancel)."""
        n_pre = self.shape[1]
        key = self.bit_post * n_pre + self.pre_map[self.bit_axon]
        add = self.type_weights[self.bit_post, self.axon_types[self.bit_axon]]
        uniq, inv = np.unique(key, return_inverse=True)
        val = np.zeros(uniq.size, dtype=np.int64)
        np.add.at(val, inv, add)
        return uniq // n_pre, uniq % n_pre, val

    def integer(self) -> NDArray[np.int64]:
        """``W_int[j, i] = Σ_{i'→i} b[j, i'] · s_j[G_i']``: the integer weights the chip adds, ``[post, pre]``."""
        post, pre, val = self.integer_coo()
        out = np.zeros(self.shape, dtype=np.int64)
        out[post, pre] = val
        return out

    def reconstruct(self) -> NDArray[np.float64]:
        """``scale[j] · W_int[j, i]``: the real matrix the chip implements, float64 ``[post, pre]``."""
        return self.scale[:, None] * self.integer()

    def reconstruct_at(self, post: ArrayLike, pre: ArrayLike) -> NDArray[np.float64]:
        """``scale[j] · W_int[j, i]`` at the positions ``(post, pre)`` (int ``[n]``), float64 ``[n]``
        (0 where no bit is set): the sparse counterpart of ``reconstruct()[post, pre]``."""
        post = np.asarray(post, dtype=np.int64)
        pre = np.asarray(pre, dtype=np.int64)
        n_pre = self.shape[1]
        i_post, i_pre, val = self.integer_coo()
        key = i_post * n_pre + i_pre
        want = post * n_pre + pre
        at = np.minimum(np.searchsorted(key, want), max(key.size - 1, 0))
        hit = key[at] == want if key.size else np.zeros(want.size, dtype=bool)
        return np.where(hit, self.scale[post] * val[at] if key.size else 0.0, 0.0)

    def expand(self, spikes: ArrayLike) -> NDArray[np.int64]:
        """Input spikes ``[..., pre]`` → axon spikes ``[..., pre']`` (each copy sees its input)."""
        return np.asarray(spikes)[..., self.pre_map]


def truenorth_weights(w: Any, *, levels: int = 4, copies: int = 2, iterations: int = 30,
                      spec: str | HwSpec = "truenorth") -> TrueNorthWeights:
    """Fit ``w`` (real or integer ``[post, pre]``) with TrueNorth crossbars and type weights.

    ``w``: a dense array, a ``scipy.sparse`` matrix or array, or COO arrays ``(post, pre, values,
    shape)`` (int ``[nnz]``, int ``[nnz]``, real ``[nnz]``, ``(n_post, n_pre)``; duplicates are
    summed, as scipy does). Only the non-zero weights are fitted (see the module docstring), so a
    sparse ``w`` costs its synapse count; the fit is the same whichever form ``w`` comes in.
    ``levels``: axon types used (≤ the spec's ``axon_types`` count, 4 on TrueNorth); ``copies``:
    1, 2 or 4 axons per input (see the module docstring); ``iterations``: alternating steps at most.
    """
    spec = hw_specs.load(spec)
    t_rng = spec.synapse_range("axon_types")
    n_types = t_rng.hi - t_rng.lo + 1
    tw = spec.registers["type_weights"]
    if not 1 <= levels <= n_types:
        raise CompileError(f"truenorth_weights: levels={levels}; {spec.name} has {n_types} axon types ({spec.where()})")
    if copies not in (1, 2, 4) or (copies == 4 and levels < 4) or (copies == 2 and levels < 2):
        raise CompileError(f"truenorth_weights: copies={copies} with levels={levels}; use copies 1, 2 (levels >= 2) "
                           "or 4 (levels 4)")
    m = _as_coo(w)
    n_post, n_pre = m.shape
    best_fit: tuple[float, NDArray[np.float64], NDArray[np.int64]] | None = None
    starts = ("quantile",) if copies == 4 else ("quantile", "seeded")
    for how in starts:  # two initialisations of the input types; the lower error wins
        types = _initial_types(m, copies, levels, how)
        s = _initial_levels(m, types, copies, levels)
        best = np.inf
        for _ in range(iterations):
            bits, err = _assign(m, s, types)
            s = _fit_levels(m, bits, types, levels, s)
            if copies < 4:
                types = _choose_types(m, s, copies, levels)
            bits, err = _assign(m, s, types)
            if err >= best * (1 - 1e-9):
                break
            best = err
        if best_fit is None or best < best_fit[0]:
            best_fit = (best, s, types)
    assert best_fit is not None
    _, s, types = best_fit
    scale, ints = _integer_levels(m, s, types, tw.lo, tw.hi)
    bits, _ = _assign(m._replace(values=m.values / scale[m.post]), ints.astype(np.float64), types)
    type_weights = np.zeros((n_post, 4), dtype=np.int64)
    type_weights[:, :levels] = ints
    # set bits, copy by copy (each row-major), then stably by neuron: row-major over [post, copies · pre]
    on = [np.flatnonzero(bits[:, c]) for c in range(copies)]
    bit_post = np.concatenate([m.post[e] for e in on])
    bit_axon = np.concatenate([c * n_pre + m.pre[e] for c, e in enumerate(on)])
    order = np.argsort(bit_post, kind="stable")
    axon_types = types.T.reshape(-1).astype(np.int64) + t_rng.lo
    pre_map = np.tile(np.arange(n_pre, dtype=np.int64), copies)
    w_int = np.zeros(m.values.size)
    for c in range(copies):
        w_int += bits[:, c] * ints[m.post, types[m.pre, c]]
    norm = float(np.sqrt((m.values ** 2).sum()))
    diff = float(np.sqrt(((m.values - scale[m.post] * w_int) ** 2).sum()))
    return TrueNorthWeights(bit_post[order], bit_axon[order], axon_types, type_weights, pre_map, copies, scale,
                            diff / norm if norm else diff)


def connect_truenorth(builder: ProgramBuilder, pre: Node | str, post: Node | str, fit: TrueNorthWeights, *,
                      name: str, delay: int | None = None) -> list[str]:
    """Add ``fit`` to ``builder`` as one projection per copy, ``{name}`` / ``{name}.c1`` / ...

    The population ``post`` must hold ``fit.type_weights`` (pass them to ``builder.population``).
    Copies of a neuron population need a route each: on TrueNorth (one route per neuron) that
    means duplicating the pre neurons upstream; host inputs have no such limit.
    """
    n_pre = fit.shape[1]
    names = []
    for c in range(fit.copies):
        cols = slice(c * n_pre, (c + 1) * n_pre)
        label = name if c == 0 else f"{name}.c{c}"
        j, i = fit.bits(c * n_pre, (c + 1) * n_pre)
        builder.connect(pre, post, weights=(j, i, np.ones(j.size, dtype=np.int64)), axon_types=fit.axon_types[cols],
                        name=label, delay=delay)
        names.append(label)
    return names


# ------------------------------------------------------------------------------- input
def _as_coo(w: Any) -> _Coo:
    """``w`` (dense, scipy.sparse or ``(post, pre, values, shape)``) → its non-zero entries, row-major."""
    if sp.issparse(w):
        c = sp.coo_array(w)
        c.sum_duplicates()
        post, pre, values, shape = c.row, c.col, c.data, c.shape
    elif isinstance(w, tuple) and len(w) == 4:
        post, pre, values, shape = w
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2:
            raise CompileError(f"truenorth_weights: expected a [post, pre] shape, got {shape}")
        post = np.asarray(post, dtype=np.int64).ravel()
        pre = np.asarray(pre, dtype=np.int64).ravel()
        values = np.asarray(values).ravel()
        if not post.size == pre.size == values.size:
            raise CompileError("truenorth_weights: COO post, pre and values differ in length")
        if post.size and (min(post.min(), pre.min()) < 0 or post.max() >= shape[0] or pre.max() >= shape[1]):
            raise CompileError(f"truenorth_weights: COO index outside the shape {shape}")
        c = sp.coo_array((values, (post, pre)), shape=shape)
        c.sum_duplicates()
        post, pre, values = c.row, c.col, c.data
    else:
        dense = np.asarray(w)
        if dense.ndim != 2:
            raise CompileError(f"truenorth_weights: expected a finite [post, pre] matrix, got shape {dense.shape}")
        shape = dense.shape
        post, pre = np.nonzero(dense)
        values = dense[post, pre]
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise CompileError(f"truenorth_weights: expected a finite [post, pre] matrix, got shape {tuple(shape)}")
    post = np.asarray(post, dtype=np.int64)
    pre = np.asarray(pre, dtype=np.int64)
    if post.size > 1 and not (np.diff(post * max(1, shape[1]) + pre) > 0).all():
        order = np.lexsort((pre, post))
        post, pre, values = post[order], pre[order], values[order]
    m = _Coo(post, pre, values, (int(shape[0]), int(shape[1])))
    return m.where(values != 0)


def _dense_order(m: _Coo) -> bool:
    """Whether error sums run over the dense ``[post, pre]`` matrix, zeros included, as the dense fit
    always summed them (numpy's pairwise order; blocks of ``_BLOCK`` neurons): a small matrix, or a
    not too sparse one, where that costs little. Two candidates whose errors tie exactly (integer
    weights) then compare as they always have; otherwise the sums are segment sums over synapses."""
    size = m.shape[0] * m.shape[1]
    return size <= _DENSE_SUM and (size <= 1 << 16 or size <= 8 * m.values.size)


def _chunks(n: int) -> list[slice]:
    return [slice(lo, min(n, lo + _CHUNK)) for lo in range(0, n, _CHUNK)] or [slice(0, 0)]


# ------------------------------------------------------------------------------- steps
def _combos(copies: int) -> NDArray[np.float64]:
    """All bit patterns of ``copies`` axons, ``[2^copies, copies]``."""
    return np.array(list(product((0, 1), repeat=copies)), dtype=np.float64)


def _candidates(copies: int, levels: int) -> NDArray[np.int64]:
    """Type choices for one input's copies, ``[k, copies]``: 1 copy any type; 2 copies (pos, neg) types."""
    if copies == 1:
        return np.arange(levels)[:, None]
    if copies == 2:
        half = max(1, levels // 2)
        return np.array([(a, b) for a in range(half) for b in range(half, levels)], dtype=np.int64)
    return np.arange(4)[None, :]


def _initial_types(m: _Coo, copies: int, levels: int, how: str) -> NDArray[np.int64]:
    """``types[i, c]`` int64 ``[pre, copies]``: inputs grouped by quantiles of their mean (positive,
    negative) weight, or (``seeded``) by the seed column whose non-zero weights they match best."""
    n_pre = m.shape[1]
    if copies == 4:
        return np.tile(np.arange(4), (n_pre, 1))
    group = _quantile_groups if how == "quantile" else _seeded_groups
    if copies == 1:
        return group(m, levels)[:, None]
    half = max(1, levels // 2)
    pos = group(m.where(m.values > 0), half)
    neg = half + group(m.where(m.values < 0), levels - half)
    return np.stack([pos, neg], axis=1)


def _quantile_groups(m: _Coo, k: int) -> NDArray[np.int64]:
    """Group ``[pre]`` of every input: ``k`` quantiles of its column mean (over all ``post`` rows)."""
    key = np.bincount(m.pre, weights=m.values, minlength=m.shape[1]) / max(1, m.shape[0])
    ranks = np.argsort(np.argsort(key, kind="stable"), kind="stable")
    return (ranks * k // max(1, key.size)).astype(np.int64)


def _seeded_groups(m: _Coo, k: int) -> NDArray[np.int64]:
    """Farthest-point seeds over columns; distance = mean squared difference where both are non-zero.

    Columns of one type share each neuron's level wherever both have a synapse, so their distance
    is ~0: the seeds land in distinct types and every column joins its own type's seed.
    """
    n_post, n_pre = m.shape
    by_col = np.argsort(m.pre, kind="stable")
    col_ptr = np.concatenate([[0], np.cumsum(np.bincount(m.pre, minlength=n_pre))])

    def dist(c: int) -> NDArray[np.float64]:
        e = by_col[col_ptr[c]:col_ptr[c + 1]]
        seed = np.zeros(n_post)
        seed[m.post[e]] = m.values[e]
        other = seed[m.post]
        both = (other != 0).astype(np.float64)
        n = np.bincount(m.pre, weights=both, minlength=n_pre)
        d = np.bincount(m.pre, weights=both * (m.values - other) ** 2, minlength=n_pre) / np.maximum(n, 1)
        return np.where(n > 0, d, np.inf)

    start = int(np.argmax(col_ptr[1:] - col_ptr[:-1]))
    dists = [dist(start)]
    for _ in range(1, k):
        nearest = np.min(np.where(np.isinf(dists), -1.0, dists), axis=0)
        dists.append(dist(int(np.argmax(nearest))))
    return np.argmin(np.stack(dists), axis=0).astype(np.int64)


def _initial_levels(m: _Coo, types: NDArray[np.int64], copies: int, levels: int) -> NDArray[np.float64]:
    """Per-neuron starting levels float64 ``[post, levels]``."""
    n_post, n_pre = m.shape
    s = np.zeros((n_post, levels))
    if copies == 4:
        return _distinct_or_quantiles(m, s)
    for t in range(levels):
        cols = (types == t).any(axis=1)
        if not cols.any():
            continue
        sign = 1.0 if copies == 1 or t < max(1, levels // 2) else -1.0
        sel = cols[m.pre] if copies == 1 else cols[m.pre] & (sign * m.values > 0)
        total = np.bincount(m.post[sel], weights=m.values[sel], minlength=n_post)
        cnt = np.bincount(m.post[sel], minlength=n_post)
        s[:, t] = np.where(cnt > 0, total / np.maximum(cnt, 1), 0.0)
    return s


def _distinct_or_quantiles(m: _Coo, s: NDArray[np.float64]) -> NDArray[np.float64]:
    """``s[j]`` (``[post, 4]``, filled in place): neuron ``j``'s distinct non-zero weights when it has at
    most four, else the 1/8, 3/8, 5/8, 7/8 quantiles of its non-zero weights."""
    if not m.values.size:
        return s
    order = np.lexsort((m.values, m.post))  # by neuron, then value
    rows, vals = m.post[order], m.values[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (vals[1:] != vals[:-1])  # first entry of a distinct value
    distinct = np.bincount(rows[first], minlength=s.shape[0])
    few = first & (distinct[rows] <= 4)
    d_rows, d_vals = rows[few], vals[few]
    row_start = np.concatenate([[0], np.cumsum(np.bincount(d_rows, minlength=s.shape[0]))])
    s[d_rows, np.arange(d_rows.size) - row_start[d_rows]] = d_vals
    cnt = np.bincount(rows, minlength=s.shape[0])
    ptr = np.concatenate([[0], np.cumsum(cnt)])
    many = np.flatnonzero(distinct > 4)
    for n in np.unique(cnt[many]):  # neurons with the same synapse count at once
        js = many[cnt[many] == n]
        sorted_vals = vals[ptr[js][:, None] + np.arange(n)]
        s[js] = np.quantile(sorted_vals, [0.125, 0.375, 0.625, 0.875], axis=1).T
    return s


def _assign(m: _Coo, s: NDArray[np.float64], types: NDArray[np.int64]) -> tuple[NDArray[np.int8], float]:
    """Nearest representable value per synapse: bits int8 ``[nnz, copies]`` and the squared error."""
    copies = types.shape[1]
    combos = _combos(copies)
    bits = np.zeros((m.values.size, copies), dtype=np.int8)
    err = 0.0
    dense_order = _dense_order(m)
    per_synapse = np.zeros(m.values.size if dense_order else 0)
    flat = s.ravel()
    t_cols = np.ascontiguousarray(types.T)  # [copies, pre]
    for ch in _chunks(m.values.size):
        post, pre, w = m.post[ch], m.pre[ch], m.values[ch]
        lv = np.stack([flat[post * s.shape[1] + t[pre]] for t in t_cols])  # s[post, types[pre, c]]: [copies, chunk]
        values = combos @ lv  # [2^copies, chunk]
        best = (values[0] - w) ** 2
        pick = np.zeros(w.size, dtype=np.int64)
        for q in range(1, combos.shape[0]):  # the first nearest pattern, as argmin
            d = (values[q] - w) ** 2
            closer = d < best
            best = np.where(closer, d, best)
            pick[closer] = q
        for c in range(copies):  # pattern q = Σ_c bit_c 2^(copies − 1 − c), the order of _combos
            bits[ch, c] = (pick >> (copies - 1 - c)) & 1
        if not dense_order:
            err += float(best.sum())
        else:
            per_synapse[ch] = best
    if dense_order:
        dense = np.zeros(m.shape)
        dense[m.post, m.pre] = per_synapse
        for lo in range(0, m.shape[0], _BLOCK):
            err += float(dense[lo:lo + _BLOCK].sum())
    return bits, err


def _fit_levels(m: _Coo, bits: NDArray[np.int8], types: NDArray[np.int64], levels: int,
                s_old: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares levels per neuron: ``min_s Σ_i (w_ji − x_ji · s_j)²``, ``x_ji[t]`` = bits on type t.

    The normal equations ``a[j] = Σ_i x_ji x_jiᵀ`` ``[post, levels, levels]`` and ``b[j] = Σ_i x_ji w_ji``
    ``[post, levels]`` are segment sums over each neuron's synapses.
    """
    n_post = m.shape[0]
    # x_ji is 0/1 (a type appears once among an input's copies): a[j] counts the patterns p = Σ_t x[t] 2^t
    patterns = np.array([[(p >> t) & 1 for t in range(levels)] for p in range(1 << levels)], dtype=np.float64)
    counts = np.zeros((n_post, 1 << levels))
    b = np.zeros((n_post, levels))
    for ch in _chunks(m.values.size):
        post = m.post[ch]
        pattern = np.zeros(post.size, dtype=np.int64)
        for c in range(types.shape[1]):
            pattern |= bits[ch, c].astype(np.int64) << types[m.pre[ch], c]
        counts += np.bincount(post * (1 << levels) + pattern, minlength=n_post << levels).reshape(n_post, -1)
        for t in range(levels):
            on = (pattern >> t) & 1 == 1
            b[:, t] += np.bincount(post[on], weights=m.values[ch][on], minlength=n_post)
    a = np.einsum("jp,pt,pu->jtu", counts, patterns, patterns)  # integer counts: exact
    # a small ridge towards the old levels: an unused level keeps its value, collinear ones stay finite
    ridge = 1e-6 * (np.einsum("jtt->j", a)[:, None, None] / levels + 1.0)
    a = a + ridge * np.eye(levels)
    b = b + ridge[:, :, 0] * s_old
    return np.linalg.solve(a, b[..., None])[..., 0]


def _choose_types(m: _Coo, s: NDArray[np.float64], copies: int, levels: int) -> NDArray[np.int64]:
    """Per input, the type choice minimising Σ_j min_bits (w_ji − value)² over its synapses: ``[pre, copies]``."""
    cand = _candidates(copies, levels)
    combos = _combos(copies)
    cost = np.zeros((cand.shape[0], m.shape[1]))
    for k, choice in enumerate(cand):
        values = (s[:, choice] @ combos.T).T.copy()  # [2^copies, post]
        for ch in _chunks(m.values.size):
            post, w = m.post[ch], m.values[ch]
            best = (values[0][post] - w) ** 2
            for v in values[1:]:
                np.minimum(best, (v[post] - w) ** 2, out=best)
            cost[k] += np.bincount(m.pre[ch], weights=best, minlength=m.shape[1])
    return cand[cost.argmin(axis=0)]


def _integer_levels(m: _Coo, s: NDArray[np.float64], types: NDArray[np.int64], lo: int, hi: int
                    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per-neuron ``scale`` float64 ``[post]`` and integer levels ``round(s / scale)`` int64
    ``[post, levels]`` within ``[lo, hi]``.

    Two candidates per neuron, the lower error wins: the full range ``scale = max|s| / hi``, and
    the largest integer multiple ``scale = 1 / floor(hi / max|s|)`` (exact when ``s`` is integral).
    """
    peak = np.abs(s).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)
    bound = min(hi, -lo)
    best_scale = peak / bound
    best_int = np.clip(np.round(s / best_scale[:, None]), lo, hi).astype(np.int64)
    mult = np.floor(bound / peak)
    ok = mult >= 1
    if ok.any():
        alt_scale = np.where(ok, 1.0 / np.maximum(mult, 1), best_scale)
        alt_int = np.clip(np.round(s / alt_scale[:, None]), lo, hi).astype(np.int64)
        e_best = _row_errors(m, best_scale, best_int, types)
        e_alt = _row_errors(m, alt_scale, alt_int, types)
        take = ok & (e_alt <= e_best)
        best_scale = np.where(take, alt_scale, best_scale)
        best_int = np.where(take[:, None], alt_int, best_int)
    return best_scale, best_int


def _row_errors(m: _Coo, scale: NDArray[np.float64], ints: NDArray[np.int64],
                types: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per neuron ``[post]``: Σ over its synapses of the squared error of the nearest ``scale · ints`` value."""
    combos = _combos(types.shape[1])
    err = np.zeros(m.values.size)
    for ch in _chunks(m.values.size):
        post = m.post[ch]
        values = (ints[post[:, None], types[m.pre[ch]]] @ combos.T) * scale[post, None]
        err[ch] = ((values - m.values[ch, None]) ** 2).min(axis=1)
    if _dense_order(m):
        dense = np.zeros(m.shape)
        dense[m.post, m.pre] = err
        out: NDArray[np.float64] = dense.sum(axis=1)
        return out
    return np.bincount(m.post, weights=err, minlength=m.shape[0]).astype(np.float64)
