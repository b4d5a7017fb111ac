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
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

import hw_specs
from spikeforge.errors import CompileError

if TYPE_CHECKING:
    from emulator.builder import Node, ProgramBuilder
    from hw_specs import HwSpec

__all__ = ["TrueNorthWeights", "truenorth_weights", "connect_truenorth"]

_BLOCK = 256  # neurons per block in the assignment step: [block, pre, 2^copies] float64 temporaries


@dataclass(frozen=True)
class TrueNorthWeights:
    """Binary crossbar + axon types + per-neuron type weights approximating ``w`` ``[post, pre]``.

    ``crossbar`` int64 ``[post, pre']`` (0/1), ``axon_types`` int64 ``[pre']`` (0..3),
    ``type_weights`` int64 ``[post, 4]`` (in the spec's range), ``pre_map`` int64 ``[pre']``
    (input of every axon copy), ``copies`` axons per input (``pre' = copies · pre``, copy ``c`` of
    input ``i`` at ``c · pre + i``), ``scale`` float64 ``[post]`` (real weight per integer unit) and
    ``error`` (relative RMS of ``w − scale·W_int``).
    """

    crossbar: NDArray[np.int64]
    axon_types: NDArray[np.int64]
    type_weights: NDArray[np.int64]
    pre_map: NDArray[np.int64]
    copies: int
    scale: NDArray[np.float64]
    error: float

    def integer(self) -> NDArray[np.int64]:
        """``W_int[j, i] = Σ_{i'→i} b[j, i'] · s_j[G_i']``: the integer weights the chip adds, ``[post, pre]``."""
        per_copy = self.crossbar * np.take_along_axis(
            self.type_weights, np.broadcast_to(self.axon_types, self.crossbar.shape), axis=1)
        n_pre = self.crossbar.shape[1] // self.copies
        return per_copy.reshape(per_copy.shape[0], self.copies, n_pre).sum(axis=1)

    def reconstruct(self) -> NDArray[np.float64]:
        """``scale[j] · W_int[j, i]``: the real matrix the chip implements, float64 ``[post, pre]``."""
        return self.scale[:, None] * self.integer()

    def expand(self, spikes: ArrayLike) -> NDArray[np.int64]:
        """Input spikes ``[..., pre]`` → axon spikes ``[..., pre']`` (each copy sees its input)."""
        return np.asarray(spikes)[..., self.pre_map]


def truenorth_weights(w: ArrayLike, *, levels: int = 4, copies: int = 2, iterations: int = 30,
                      spec: str | HwSpec = "truenorth") -> TrueNorthWeights:
    """Fit ``w`` (real or integer ``[post, pre]``) with TrueNorth crossbars and type weights.

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
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise CompileError(f"truenorth_weights: expected a finite [post, pre] matrix, got shape {w.shape}")
    n_post, n_pre = w.shape
    best_fit: tuple[float, NDArray[np.float64], NDArray[np.int64]] | None = None
    starts = ("quantile",) if copies == 4 else ("quantile", "seeded")
    for how in starts:  # two initialisations of the input types; the lower error wins
        types = _initial_types(w, copies, levels, how)
        s = _initial_levels(w, types, copies, levels)
        best = np.inf
        for _ in range(iterations):
            bits, err = _assign(w, s, types)
            s = _fit_levels(w, bits, types, levels, s)
            if copies < 4:
                types = _choose_types(w, s, copies, levels)
            bits, err = _assign(w, s, types)
            if err >= best * (1 - 1e-9):
                break
            best = err
        if best_fit is None or best < best_fit[0]:
            best_fit = (best, s, types)
    assert best_fit is not None
    _, s, types = best_fit
    scale, ints = _integer_levels(w, s, types, tw.lo, tw.hi)
    bits, _ = _assign(w / scale[:, None], ints.astype(np.float64), types)
    type_weights = np.zeros((n_post, 4), dtype=np.int64)
    type_weights[:, :levels] = ints
    crossbar = bits.transpose(0, 2, 1).reshape(n_post, copies * n_pre).astype(np.int64)
    axon_types = types.T.reshape(-1).astype(np.int64) + t_rng.lo
    pre_map = np.tile(np.arange(n_pre, dtype=np.int64), copies)
    result = TrueNorthWeights(crossbar, axon_types, type_weights, pre_map, copies, scale, 0.0)
    norm = float(np.sqrt((w ** 2).sum()))
    diff = float(np.sqrt(((w - result.reconstruct()) ** 2).sum()))
    return TrueNorthWeights(crossbar, axon_types, type_weights, pre_map, copies, scale,
                            diff / norm if norm else diff)


def connect_truenorth(builder: ProgramBuilder, pre: Node | str, post: Node | str, fit: TrueNorthWeights, *,
                      name: str, delay: int | None = None) -> list[str]:
    """Add ``fit`` to ``builder`` as one projection per copy, ``{name}`` / ``{name}.c1`` / ...

    The population ``post`` must hold ``fit.type_weights`` (pass them to ``builder.population``).
    Copies of a neuron population need a route each: on TrueNorth (one route per neuron) that
    means duplicating the pre neurons upstream; host inputs have no such limit.
    """
    n_pre = fit.crossbar.shape[1] // fit.copies
    names = []
    for c in range(fit.copies):
        cols = slice(c * n_pre, (c + 1) * n_pre)
        label = name if c == 0 else f"{name}.c{c}"
        builder.connect(pre, post, weights=fit.crossbar[:, cols], axon_types=fit.axon_types[cols], name=label,
                        delay=delay)
        names.append(label)
    return names


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


def _initial_types(w: NDArray[np.float64], copies: int, levels: int, how: str) -> NDArray[np.int64]:
    """``types[i, c]``: inputs grouped by quantiles of their mean (positive, negative) weight, or
    (``seeded``) by the seed column whose non-zero weights they match best."""
    n_pre = w.shape[1]
    if copies == 4:
        return np.tile(np.arange(4), (n_pre, 1))
    group = _quantile_groups if how == "quantile" else _seeded_groups
    if copies == 1:
        return group(w, levels)[:, None]
    half = max(1, levels // 2)
    pos = group(np.where(w > 0, w, 0), half)
    neg = half + group(np.where(w < 0, w, 0), levels - half)
    return np.stack([pos, neg], axis=1)


def _quantile_groups(w: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    key = w.mean(axis=0)
    ranks = np.argsort(np.argsort(key, kind="stable"), kind="stable")
    return (ranks * k // max(1, key.size)).astype(np.int64)


def _seeded_groups(w: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Farthest-point seeds over columns; distance = mean squared difference where both are non-zero.

    Columns of one type share each neuron's level wherever both have a synapse, so their distance
    is ~0: the seeds land in distinct types and every column joins its own type's seed.
    """
    nz = (w != 0).astype(np.float64)

    def dist(c: int) -> NDArray[np.float64]:
        both = nz * nz[:, c:c + 1]
        n = both.sum(axis=0)
        d = (both * (w - w[:, c:c + 1]) ** 2).sum(axis=0) / np.maximum(n, 1)
        return np.where(n > 0, d, np.inf)

    start = int(np.argmax(nz.sum(axis=0)))
    dists = [dist(start)]
    for _ in range(1, k):
        nearest = np.min(np.where(np.isinf(dists), -1.0, dists), axis=0)
        dists.append(dist(int(np.argmax(nearest))))
    return np.argmin(np.stack(dists), axis=0).astype(np.int64)


def _initial_levels(w: NDArray[np.float64], types: NDArray[np.int64], copies: int, levels: int) -> NDArray[np.float64]:
    """Per-neuron starting levels ``[post, levels]``."""
    n_post = w.shape[0]
    s = np.zeros((n_post, levels))
    if copies == 4:
        # distinct values when a neuron has at most four, else quantiles of its non-zero weights
        for j in range(n_post):
            nz = w[j][w[j] != 0]
            if nz.size == 0:
                continue
            vals = np.unique(nz)
            s[j, :min(4, vals.size)] = vals[:4] if vals.size <= 4 else np.quantile(nz, [0.125, 0.375, 0.625, 0.875])
        return s
    for t in range(levels):
        cols = (types == t).any(axis=1)
        if not cols.any():
            continue
        sub = w[:, cols]
        sign = 1.0 if copies == 1 or t < max(1, levels // 2) else -1.0
        if copies == 1:
            nz = sub != 0
            s[:, t] = np.where(nz.any(axis=1), (sub * nz).sum(axis=1) / np.maximum(nz.sum(axis=1), 1), 0.0)
        else:
            part = np.where(sign * sub > 0, sub, 0.0)
            cnt = (part != 0).sum(axis=1)
            s[:, t] = np.where(cnt > 0, part.sum(axis=1) / np.maximum(cnt, 1), 0.0)
    return s


def _assign(w: NDArray[np.float64], s: NDArray[np.float64], types: NDArray[np.int64]
            ) -> tuple[NDArray[np.int8], float]:
    """Nearest representable value per weight: bits ``[post, pre, copies]`` and the squared error."""
    n_post, n_pre = w.shape
    copies = types.shape[1]
    combos = _combos(copies)
    bits = np.zeros((n_post, n_pre, copies), dtype=np.int8)
    err = 0.0
    for lo in range(0, n_post, _BLOCK):
        hi = min(n_post, lo + _BLOCK)
        lv = s[lo:hi][:, types]  # [block, pre, copies]
        values = lv @ combos.T  # [block, pre, 2^copies]
        d = (values - w[lo:hi, :, None]) ** 2
        k = d.argmin(axis=2)
        bits[lo:hi] = combos[k].astype(np.int8)
        err += float(np.take_along_axis(d, k[..., None], axis=2).sum())
    return bits, err


def _fit_levels(w: NDArray[np.float64], bits: NDArray[np.int8], types: NDArray[np.int64], levels: int,
                s_old: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares levels per neuron: ``min_s Σ_i (w_ji − x_ji · s_j)²``, ``x_ji[t]`` = bits on type t."""
    n_post, n_pre = w.shape
    onehot = np.zeros((n_pre, types.shape[1], levels))
    np.put_along_axis(onehot, types[..., None], 1.0, axis=2)
    x = np.einsum("jic,ict->jit", bits.astype(np.float64), onehot)  # [post, pre, levels]
    a = np.einsum("jit,jiu->jtu", x, x)
    b = np.einsum("jit,ji->jt", x, w)
    # a small ridge towards the old levels: an unused level keeps its value, collinear ones stay finite
    ridge = 1e-6 * (np.einsum("jtt->j", a)[:, None, None] / levels + 1.0)
    a = a + ridge * np.eye(levels)
    b = b + ridge[:, :, 0] * s_old
    return np.linalg.solve(a, b[..., None])[..., 0]


def _choose_types(w: NDArray[np.float64], s: NDArray[np.float64], copies: int, levels: int) -> NDArray[np.int64]:
    """Per input, the type choice minimising Σ_j min_bits (w_ji − value)² over all neurons."""
    cand = _candidates(copies, levels)
    combos = _combos(copies)
    cost = np.zeros((cand.shape[0], w.shape[1]))
    for k, choice in enumerate(cand):
        for lo in range(0, w.shape[0], _BLOCK):
            hi = min(w.shape[0], lo + _BLOCK)
            values = s[lo:hi][:, choice] @ combos.T  # [block, 2^copies]
            d = (values[:, None, :] - w[lo:hi, :, None]) ** 2
            cost[k] += d.min(axis=2).sum(axis=0)
    return cand[cost.argmin(axis=0)]


def _integer_levels(w: NDArray[np.float64], s: NDArray[np.float64], types: NDArray[np.int64], lo: int, hi: int
                    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per-neuron ``scale`` and integer levels ``round(s / scale)`` within ``[lo, hi]``.

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
        e_best = _row_errors(w, best_scale, best_int, types)
        e_alt = _row_errors(w, alt_scale, alt_int, types)
        take = ok & (e_alt <= e_best)
        best_scale = np.where(take, alt_scale, best_scale)
        best_int = np.where(take[:, None], alt_int, best_int)
    return best_scale, best_int


def _row_errors(w: NDArray[np.float64], scale: NDArray[np.float64], ints: NDArray[np.int64],
                types: NDArray[np.int64]) -> NDArray[np.float64]:
    out = np.zeros(w.shape[0])
    combos = _combos(types.shape[1])
    for lo in range(0, w.shape[0], _BLOCK):
        hi = min(w.shape[0], lo + _BLOCK)
        values = (ints[lo:hi][:, types] @ combos.T) * scale[lo:hi, None, None]
        out[lo:hi] = ((values - w[lo:hi, :, None]) ** 2).min(axis=2).sum(axis=1)
    return out
