"""Quantisation: float populations and projections → the target family's registers and weights.

Every population gets one **state scale** ``s``: integer state = float state × ``s``. Thresholds,
biases and weights are expressed in that scale, so the spiking dynamics are unchanged up to
rounding. Every limit is read from the spec.

**loihi** (Lava / NengoLoihi number formats). A projection's weights are stored as mantissas
``q`` with a shared exponent ``e`` (``weight_exp``): the chip adds ``(q · s_pre) << e`` to ``u``
after a further ``<< 6``, so ``W · s = q · 2^(e+6)``. Mantissas are multiples of ``2^k``,
``k = 8 − num_weight_bits + is_mixed`` (Lava's truncation) and at most the spec's weight range.
The population's exponent is searched over the spec's ``weight_exp`` range (as NengoLoihi's
``discretize_weights`` searches): for each candidate the largest-magnitude projection uses the
full mantissa range, ``s = q_max · 2^(e+6) / max|W|``, the others the smallest exponent that
fits; ``vth = round(θ·s / 64)`` (the chip compares ``v > vth << 6``), ``bias = b·g·s`` as
``bias_mant << bias_exp`` (per neuron, the smallest exponent that fits the mantissa). Among
candidates whose registers fit and whose worst-case input current cannot wrap ``u`` (all inputs
spiking, ``u`` settled at ``input / δu``), the one with the least expected threshold + bias
rounding error (realised error + half a ``vth`` step) wins (ties: the smaller exponent).
Decays: ``du = round(4096·(1 − e^(−dt/τ_syn))) − 1`` (the chip adds the 1 back), ``dv =
round(4096·(1 − e^(−dt/τ_mem)))``; no τ: ``du = 4095`` (no current state), ``dv = 0`` (no leak).

A Linear bias enters the neuron as a constant current; the chip adds its bias register to ``v``,
so ``g = compiler.neurons.bias_gain`` (the synaptic state's steady-state gain) scales it.

**xylo** (Rockpool ``global_quantize`` style): 8-bit weights ``q`` with one ``weight_shift`` per
matrix (input, recurrent, readout: XyloSim has one shift per matrix), ``W · s = q << shift``;
``threshold = round(θ·s)``, ``bias = round(b·g·s)`` (16-bit); the three shifts are searched by
coordinate descent for the least error with registers in range. ``dash = round(log2(τ/dt))``
(``dash_syn = 1`` without τ_syn: a 0 shift would clear the current before it is used).

**truenorth**: binary crossbar × 4 axon-type weights per neuron, fitted by the partitioner's
``compiler.passes.truenorth.truenorth_weights`` on all of a population's inputs at once (the type
weights belong to the neuron), as one sparse ``[post, Σ pre]`` COO matrix (the fit and the error
figures run on the synapses only): ``w[j, i] ≈ scale_j · Σ b[j, i'] s_j[G_i']``. The state scale is
per neuron, ``1/scale_j``: ``threshold α_j = round(θ/scale_j)``, ``leak λ_j = round(b_j/scale_j)``
(the leak is TrueNorth's constant bias), reset by subtraction (γ = 1), κ = 1 with the floor
``−β`` as deep as the 20-bit V allows less one step of worst-case input, so that V may go negative
but never saturates. Every input enters on two axons (a positive- and a negative-type copy,
projections ``name`` and ``name.c1``) when twice the largest fan-in fits ``axons_in_per_core``, else on one.
A TrueNorth neuron has a single route: :mod:`compiler.passes.replicate` then builds every neuron
whose spikes go to several cores or axon copies as identical copies (emission does it). Only IF neurons: the leak
is linear, so membrane/current time constants have no counterpart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emulator import families
from hw_specs import HwSpec
from spikeforge.errors import CompileError, UnsupportedOperator

from .. import ir

__all__ = ["quantize", "QuantReport", "ProjectionQuant", "PopulationQuant"]


@dataclass
class ProjectionQuant:
    """Quantisation of one projection: exponent or shift, relative RMS weight error, clipped share."""

    projection: str
    layer: str
    exponent: int
    num_weight_bits: int
    weight_error: float
    clipped: float
    max_mantissa: int


@dataclass
class PopulationQuant:
    """Quantisation of one population: state scale, threshold register and errors, worst-case input."""

    layer: str
    scale: float
    threshold: int
    threshold_error: float
    bias_error: float
    max_input: float
    state_limit: int
    feasible: bool = True
    problem: str = ""
    problem_register: str = ""  # when not feasible: which register, the value it needed, its limit
    problem_value: float = 0.0
    problem_limit: float = 0.0

    @property
    def overflow_risk(self) -> bool:
        return self.max_input > self.state_limit


@dataclass
class QuantReport:
    """Per-layer quantisation report (``projections``, ``populations``); ``table()`` prints it."""

    family: str
    projections: list[ProjectionQuant] = field(default_factory=list)
    populations: list[PopulationQuant] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'projection':32} {'exp/shift':>9} {'bits':>4} {'w err':>8} {'clipped':>8}"]
        for p in self.projections:
            lines.append(f"{p.projection[:32]:32} {p.exponent:>9} {p.num_weight_bits:>4} {p.weight_error:>8.2%} "
                         f"{p.clipped:>8.2%}")
        lines.append(f"{'population':32} {'scale':>10} {'threshold':>9} {'thr err':>8} {'bias err':>8} "
                     f"{'max input':>10} {'limit':>9}")
        for q in self.populations:
            flag = "  OVERFLOW RISK" if q.overflow_risk else ""
            lines.append(f"{q.layer[:32]:32} {q.scale:>10.4g} {q.threshold:>9} {q.threshold_error:>8.2%} "
                         f"{q.bias_error:>8.2%} {q.max_input:>10.4g} {q.state_limit:>9}{flag}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family,
                "projections": [vars(p) for p in self.projections],
                "populations": [{**vars(q), "overflow_risk": q.overflow_risk} for q in self.populations]}


def _rel_rms(err: NDArray[Any], ref: NDArray[Any]) -> float:
    den = float(np.sqrt(np.mean(ref ** 2))) if ref.size else 0.0
    return float(np.sqrt(np.mean(err ** 2))) / den if den > 0 else 0.0


def _incoming(graph: ir.Graph, pop: ir.Neuron) -> list[ir.Synapses]:
    out = []
    for s in pop.inputs:
        syn = graph[s]
        assert isinstance(syn, ir.Synapses)
        out.append(syn)
    return out


def _max_count(graph: ir.Graph, syn: ir.Synapses, spec: HwSpec) -> int:
    """Spikes a pre unit can send per step (worst case): input counts, else one."""
    return int(spec.chip.max_input_count) if isinstance(graph[syn.inputs[0]], ir.Input) else 1


#: synapses per block of the per-row integer sums (a block's temporaries stay small)
_BLOCK = 1 << 20


def _worst_input(syn: ir.Synapses, q: NDArray[Any], factor: float, count: int) -> NDArray[np.float64]:
    """``Σ_i |q_ji| · factor · count`` per post neuron ``j`` (float64 ``[n_post]``): the input when
    every pre unit sends ``count`` spikes.

    Integer-valued terms: the sum is exact in any order. Projections in (post, pre) order (as
    lowering makes them) with integer mantissas sum per row in int64, a block of rows at a time
    (no projection-sized temporary), else ``bincount`` scatters the float terms."""
    n = syn.shape[0]
    scale = float(factor * count)
    post = syn.post_idx
    if (q.dtype.kind in "iu" and q.size and scale == int(scale) and 0 <= scale
            and bool(np.all(post[1:] >= post[:-1]))):
        peak = max(int(np.max(q)), -int(np.min(q)))
        if float(peak) * max(scale, 1.0) * q.size < 2.0 ** 53:  # every float sum is exact
            bounds = np.searchsorted(post, np.arange(n + 1, dtype=post.dtype))  # (no cast of the indices)
            rows = np.flatnonzero(bounds[1:] > bounds[:-1])  # rows with synapses
            sums = np.zeros(n, dtype=np.int64)
            group = max(1, _BLOCK * rows.size // q.size)
            for g in range(0, rows.size, group):
                part = rows[g:g + group]
                lo, hi = int(bounds[part[0]]), int(bounds[part[-1] + 1])
                sums[part] = np.add.reduceat(np.abs(q[lo:hi]).astype(np.int64, copy=False), bounds[part] - lo)
            out: NDArray[np.float64] = sums.astype(np.float64) * scale
            return out
    return np.bincount(post, weights=np.abs(q) * scale, minlength=n).astype(np.float64, copy=False)


def _projection_errors(values: NDArray[Any], q: NDArray[Any], unit: float, s: float, clip_at: float
                       ) -> tuple[float, float]:
    """``(relative RMS of q·unit/s − w, share of |w·s/unit| > clip_at)`` over a projection's
    weights ``w``, with one float64 buffer the size of the projection (the same arithmetic as
    :func:`_rel_rms` and the direct expressions, in place)."""
    if values.dtype != np.float64:  # other dtypes: the direct expressions, in their own precision
        scaled = np.abs(values * s / unit)
        over = np.count_nonzero(scaled > clip_at)
        return _rel_rms(q * unit / s - values, values), (over / scaled.size if scaled.size else float(np.mean(scaled)))
    buf = np.multiply(values, s)
    buf /= unit
    np.abs(buf, out=buf)
    over = np.count_nonzero(buf > clip_at)
    clipped = over / buf.size if buf.size else float(np.mean(buf))
    np.square(values, out=buf)
    ref = float(np.sqrt(np.mean(buf))) if buf.size else 0.0
    np.multiply(q, unit, out=buf)
    buf /= s
    buf -= values
    np.square(buf, out=buf)
    err = float(np.sqrt(np.mean(buf))) if buf.size else 0.0
    return (err / ref if ref > 0 else 0.0), clipped


def readouts(graph: ir.Graph, spec: HwSpec) -> set[str]:
    """Populations the target runs as its readout layer: those feeding an Output (Xylo), else none."""
    if not spec.chip.readout_neurons:
        return set()
    return {o.inputs[0] for o in graph.of_type(ir.Output)}


def quantize(graph: ir.Graph, spec: HwSpec, *, dt: float = 1e-3, num_weight_bits: int | None = None
             ) -> tuple[ir.Graph, QuantReport]:
    """Quantise the lowered ``graph`` for ``spec``; return the quantised graph and the report."""
    ir.validate(graph, "lowered")
    hooks = families.get(spec.family).compiling
    scheme = _QUANTISERS.get(getattr(hooks, "QUANTISER", ""))
    if scheme is None:
        raise UnsupportedOperator(f"target {spec.name}: family {spec.family!r} has no quantiser")
    return scheme(graph, spec, dt, num_weight_bits, hooks)


# ----------------------------------------------------------------------------------- loihi
def _mantissa_exponent(graph: ir.Graph, spec: HwSpec, dt: float, nwb: int | None, fam: Any
                       ) -> tuple[ir.Graph, QuantReport]:
    """Mantissas with a shared exponent per projection, one exponent search per population (Loihi)."""
    wr = spec.synapse_range("weight")
    e_rng = spec.synapse_range("weight_exp")
    b_rng = spec.synapse_range("num_weight_bits")
    bits = b_rng.hi if nwb is None else int(nwb)
    if bits not in b_rng:
        raise CompileError(f"num_weight_bits={bits} outside {b_rng} of target {spec.name} ({spec.where()})")
    vth_rng = spec.registers["vth"]
    bm_rng, be_rng = spec.registers["bias_mant"], spec.registers["bias_exp"]
    u_limit = (1 << (spec.state["u"].bits - 1)) - 1
    report = QuantReport(spec.family)
    out = ir.Graph(meta=graph.meta)
    for node in graph:
        if isinstance(node, ir.Synapses):
            continue  # emitted with its post population
        if not isinstance(node, ir.Neuron):
            out.add(node)
            continue
        syns = _incoming(graph, node)
        decays = fam.decay_registers(node.tau_mem, node.tau_syn, dt)
        du = decays["du"]
        geom = [fam.weight_geometry(syn.values, wr.hi, bits) for syn in syns]  # per projection: step, q_max, max|w|
        # no input projection (every weight was 0): scale as if one weight equalled the threshold
        ref_geom = max(geom, key=lambda g: g[2] / g[1]) if geom else (1, wr.hi, node.threshold)
        bias = (node.bias if node.bias is not None else np.zeros(node.size)) * fam.bias_gain(node.tau_syn, dt)
        best: tuple[Any, ...] | None = None
        # mantissas depend on e only through e − e_j (s ∝ 2^e), so most candidates reuse them
        cache: dict[tuple[int, int], tuple[NDArray[np.int64], NDArray[np.float64]]] = {}
        for e in range(e_rng.lo, e_rng.hi + 1):
            s = fam.state_scale(ref_geom[1], ref_geom[2], e)
            exps, qs, units = [], [], []
            for j, ((step, qmax, wmax), syn) in enumerate(zip(geom, syns, strict=True)):
                ej = fam.exponent_for(wmax, s, qmax, e_rng.lo, e_rng.hi)
                if (j, e - ej) not in cache:
                    qi = fam.mantissas(syn.values, s, ej, step, qmax)
                    cache[(j, e - ej)] = (qi, _worst_input(syn, qi, 1.0, _max_count(graph, syn, spec)))
                qi, unit = cache[(j, e - ej)]
                exps.append(ej)
                qs.append(qi)
                units.append(unit)
            vth, vth_raw = fam.threshold_register(node.threshold, s)
            ok = vth_rng.lo <= vth <= vth_rng.hi and vth >= 1
            why: tuple[str, float, float] = ("", 0.0, 0.0)
            if vth > vth_rng.hi:
                why = ("vth register", vth, vth_rng.hi)
            elif vth < max(1, vth_rng.lo):
                why = ("minimum vth vs θ·s/64", max(1, vth_rng.lo), vth_raw)
            thr_err = abs(vth * 2.0 ** fam.INPUT_SHIFT / s - node.threshold) / node.threshold
            bmant, bexp = fam.bias_registers(bias * s, bm_rng.hi, be_rng.lo, be_rng.hi)
            if ok and not (np.abs(bmant) <= bm_rng.hi).all():
                ok = False
                why = (f"|bias_mant| at bias_exp {be_rng.hi}", float(np.abs(bmant).max()), bm_rng.hi)
            bmant_int = np.clip(bmant, bm_rng.lo, bm_rng.hi).astype(np.int64)
            bias_err = _rel_rms(bmant_int * 2.0 ** bexp / s - bias, np.full(1, node.threshold)) if bias.any() else 0.0
            worst = np.zeros(node.size)
            for unit, ej in zip(units, exps, strict=True):
                worst += unit * 2.0 ** (ej + fam.INPUT_SHIFT)
            max_in = float(worst.max() / fam.settling(du))  # u settles at input / (1 − keep factor)
            safe = max_in <= u_limit
            # expected rounding error: the realised one plus half a step of the threshold register, so that a
            # lucky rounding at a coarse exponent does not beat a fine one
            key = (not ok, not safe, round(thr_err + bias_err + 0.5 / max(vth, 1), 6), e)
            if best is None or key < best[0]:
                best = (key, e, s, exps, qs, vth, thr_err, bmant_int, bexp, bias_err, max_in, ok, why)
        assert best is not None
        _, e, s, exps, qs, vth, thr_err, bmant, bexp, bias_err, max_in, ok, why = best
        problem = "" if ok else (f"threshold {node.threshold:.4g} / bias cannot be represented at any weight_exp "
                                 f"in {e_rng} (vth in {vth_rng}, bias_mant in {bm_rng})")
        vth = min(max(vth, max(vth_rng.lo, 1)), vth_rng.hi)
        names = []
        for syn, q, ej, (step, qmax, _) in zip(syns, qs, exps, geom, strict=True):
            w_err, clipped = _projection_errors(syn.values, q, 2.0 ** (ej + fam.INPUT_SHIFT), s, qmax + step / 2)
            report.projections.append(ProjectionQuant(syn.name, node.name, int(ej), bits, w_err, clipped, int(qmax)))
            nonzero = q != 0
            if nonzero.all():  # every weight kept: the positions are the lowered ones (read-only alike)
                post_idx, pre_idx, values = syn.post_idx, syn.pre_idx, q
            else:
                post_idx, pre_idx, values = syn.post_idx[nonzero], syn.pre_idx[nonzero], q[nonzero]
            qsyn = ir.Synapses(syn.name, syn.inputs, post=syn.post, shape=syn.shape, post_idx=post_idx,
                               pre_idx=pre_idx, values=values.astype(np.int64, copy=False),
                               params=MappingProxyType({"weight_exp": int(ej), "num_weight_bits": bits}),
                               delay=syn.delay, source=syn.source)
            if qsyn.values.size == 0:
                continue
            out.add(qsyn)
            names.append(qsyn.name)
        regs = {**{k: np.full(node.size, v) for k, v in decays.items()}, "vth": np.full(node.size, vth),
                "bias_mant": bmant, "bias_exp": bexp}
        qn = ir.Neuron(node.name, tuple(names), kind=node.kind, threshold=node.threshold, tau_mem=node.tau_mem,
                       tau_syn=node.tau_syn, datapath=node.datapath, readout=False, size=node.size,
                       bias=node.bias, registers=MappingProxyType({k: np.asarray(v, dtype=np.int64)
                                                                   for k, v in regs.items()}), scale=s)
        out.add(qn)
        report.populations.append(PopulationQuant(node.name, s, int(vth), thr_err, bias_err, max_in, u_limit,
                                                  feasible=ok, problem=problem, problem_register=why[0],
                                                  problem_value=why[1], problem_limit=why[2]))
    return ir.validate(out, "quantized"), report


# ------------------------------------------------------------------------------------ xylo
def _matrix_class(graph: ir.Graph, syn: ir.Synapses, readouts: set[str]) -> str:
    if syn.post in readouts:
        return "readout"
    return "input" if isinstance(graph[syn.inputs[0]], ir.Input) else "recurrent"


def _xylo_pop(node: ir.Neuron, syns: list[ir.Synapses], shifts: list[int], spec: HwSpec,
              counts: list[int], dt: float, fam: Any) -> tuple[float, Any]:
    """Error (inf when a register does not fit) and the quantised values for one population."""
    return fam.population([(syn.values, syn.post_idx) for syn in syns], shifts, counts, size=node.size,
                          threshold=node.threshold, bias=node.bias, tau_syn=node.tau_syn, dt=dt, spec=spec)


def _shift_per_matrix(graph: ir.Graph, spec: HwSpec, dt: float, nwb: int | None, fam: Any
                      ) -> tuple[ir.Graph, QuantReport]:
    """8-bit weights with one shift per matrix class (input, recurrent, readout), searched by
    coordinate descent over the whole graph (Xylo)."""
    ro = readouts(graph, spec)
    pops = graph.of_type(ir.Neuron)
    syns_of = {p.name: _incoming(graph, p) for p in pops}
    classes = sorted({_matrix_class(graph, s, ro) for p in pops for s in syns_of[p.name]})
    sh_rng = spec.synapse_range("weight_shift")
    shifts = {c: sh_rng.lo for c in classes}

    def total(sh: dict[str, int]) -> float:
        err = 0.0
        for p in pops:
            syns = syns_of[p.name]
            e, _ = _xylo_pop(p, syns, [sh[_matrix_class(graph, s, ro)] for s in syns], spec,
                             [_max_count(graph, s, spec) for s in syns], dt, fam)
            err += e
        return err

    for _ in range(2):  # coordinate descent over the (at most three) matrix shifts
        for c in classes:
            scores = {v: total({**shifts, c: v}) for v in range(sh_rng.lo, sh_rng.hi + 1)}
            shifts[c] = min(scores, key=lambda v: (scores[v], v))
    report = QuantReport(spec.family)
    out = ir.Graph(meta=graph.meta)
    max_dash = spec.registers["dash_mem"].hi
    hardware = families.get(spec.family).hardware
    for node in graph:
        if isinstance(node, ir.Synapses):
            continue
        if not isinstance(node, ir.Neuron):
            out.add(node)
            continue
        syns = syns_of[node.name]
        sh = [shifts[_matrix_class(graph, s, ro)] for s in syns]
        err, (s, qs, thr, b, thr_err, bias_err, worst, limit) = _xylo_pop(
            node, syns, sh, spec, [_max_count(graph, x, spec) for x in syns], dt, fam)
        problem = ""
        why: tuple[str, float, float] = ("", 0.0, 0.0)
        if math.isinf(err):
            problem = (f"threshold {node.threshold:.4g} -> {thr} or its biases do not fit threshold "
                       f"{spec.registers['threshold']} / bias {spec.registers['bias']} at any weight_shift in {sh_rng}")
            t_rng, b_rng = spec.registers["threshold"], spec.registers["bias"]
            if thr > t_rng.hi:
                why = ("threshold register", thr, t_rng.hi)
            elif thr < t_rng.lo:
                why = ("minimum threshold vs θ·s", t_rng.lo, node.threshold * s)
            else:
                why = ("|bias| register", float(np.abs(b).max()), b_rng.hi)
            thr = min(max(thr, t_rng.lo), t_rng.hi)
            b = np.clip(b, b_rng.lo, b_rng.hi)
        names = []
        for syn, q, shift in zip(syns, qs, sh, strict=True):
            nz = q != 0
            params = MappingProxyType({"weight_shift": int(shift), "synapse": 0})
            report.projections.append(ProjectionQuant(syn.name, node.name, int(shift), hardware.weight_bits(params),
                                                      _rel_rms(q * 2.0 ** shift / s - syn.values, syn.values), 0.0,
                                                      int(np.abs(q).max())))
            if not nz.any():
                continue
            qsyn = ir.Synapses(syn.name, syn.inputs, post=syn.post, shape=syn.shape, post_idx=syn.post_idx[nz],
                               pre_idx=syn.pre_idx[nz], values=q[nz], params=params,
                               delay=syn.delay, source=syn.source)
            out.add(qsyn)
            names.append(qsyn.name)
        regs = {**fam.decay_registers(node.tau_mem, node.tau_syn, dt, max_dash), "threshold": thr}
        registers = {k: np.full(node.size, v, dtype=np.int64) for k, v in regs.items()}
        registers["bias"] = b
        out.add(ir.Neuron(node.name, tuple(names), kind=node.kind, threshold=node.threshold, tau_mem=node.tau_mem,
                          tau_syn=node.tau_syn, datapath=node.datapath, readout=node.name in ro,
                          size=node.size, bias=node.bias, registers=MappingProxyType(registers), scale=s))
        report.populations.append(PopulationQuant(node.name, s, int(thr), thr_err, bias_err, worst, limit,
                                                  feasible=not problem, problem=problem, problem_register=why[0],
                                                  problem_value=why[1], problem_limit=why[2]))
    return ir.validate(out, "quantized"), report


# ------------------------------------------------------------------------------- truenorth
def _binary_type_weights(graph: ir.Graph, spec: HwSpec, dt: float, nwb: int | None, fam: Any
                         ) -> tuple[ir.Graph, QuantReport]:
    """A binary crossbar × four axon-type weights per neuron, fitted per population (TrueNorth)."""
    from .truenorth import truenorth_weights

    def entries_of(syn: ir.Synapses) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """``syn``'s weights as ``syn.dense()`` holds them, sparse: ``(post, pre, values)`` int64, int64,
        float64 ``[n]``, row-major, zeros dropped (a repeated position keeps its last value, as in ``dense()``)."""
        n_pre = syn.shape[1]
        key = syn.post_idx.astype(np.int64) * n_pre + syn.pre_idx
        uniq, last = np.unique(key[::-1], return_index=True)
        values = np.asarray(syn.values, dtype=np.float64)[::-1][last]
        keep = values != 0
        return uniq[keep] // n_pre, uniq[keep] % n_pre, values[keep]

    report = QuantReport(spec.family)
    out = ir.Graph(meta=graph.meta)
    regs_rng = spec.registers
    v_limit = int(spec.state[fam.OVERFLOW_STATE].hi)
    bit_cost = families.get(spec.family).hardware.weight_bits({})
    for node in graph:
        if isinstance(node, ir.Synapses):
            continue
        if not isinstance(node, ir.Neuron):
            out.add(node)
            continue
        if not fam.TIME_CONSTANTS and node.kind != "IF" and (node.tau_mem is not None or node.tau_syn is not None):
            raise UnsupportedOperator(
                f"layer {node.name!r}: {node.kind} neurons with time constants have no TrueNorth counterpart (its leak "
                "is a constant, not a decay); use IF neurons (ReLU conversion) or another target"
            )
        syns = _incoming(graph, node)
        bias = node.bias if node.bias is not None else np.zeros(node.size)
        n = node.size
        fan_in = sum(np.bincount(s.post_idx, minlength=n) for s in syns) if syns else np.zeros(1, dtype=np.int64)
        copies = 2 if 2 * int(np.max(fan_in)) <= spec.chip.axons_in_per_core else 1
        n_pres = [s.shape[1] for s in syns]
        total_pre = sum(n_pres)
        entries = [entries_of(s) for s in syns]
        if syns:
            # all inputs side by side, [n, Σ pre], as COO: the fit runs on the synapses only
            offsets = np.cumsum([0, *n_pres[:-1]])
            coo = (np.concatenate([j for j, _, _ in entries]),
                   np.concatenate([i + o for (_, i, _), o in zip(entries, offsets, strict=True)]),
                   np.concatenate([v for _, _, v in entries]), (n, total_pre))
            fit = truenorth_weights(coo, copies=copies, spec=spec)
            scale = np.where(fit.scale > 0, fit.scale, 1.0)
            tw = fit.type_weights
        else:
            scale = np.full(node.size, node.threshold / 255.0)
            tw = np.zeros((node.size, 4), dtype=np.int64)
        coarse = fam.coarsen(bias, scale, regs_rng["leak"].hi)  # a bias beyond the leak range: coarser scale
        if syns and (coarse > 1).any():
            tw = np.round(tw / coarse[:, None]).astype(np.int64)
            scale = scale * coarse
            fit = dataclasses.replace(fit, type_weights=tw, scale=scale)
        names = []
        offset = 0
        worst = np.zeros(n)
        for syn, (e_post, e_pre, e_val) in zip(syns, entries, strict=True):
            n_pre = syn.shape[1]
            for c in range(copies):
                cols = slice(c * total_pre + offset, c * total_pre + offset + n_pre)
                post, pre = fit.bits(cols.start, cols.stop)
                worst += np.bincount(post, weights=np.abs(tw[post, fit.axon_types[cols][pre]]).astype(np.float64),
                                     minlength=n)  # integer-valued: exact in any order
                name = syn.name if c == 0 else f"{syn.name}.c{c}"
                q = ir.Synapses(name, syn.inputs, post=syn.post, shape=(n, n_pre), post_idx=post.astype(np.int64),
                                pre_idx=pre.astype(np.int64), values=np.ones(post.size, dtype=np.int64),
                                delay=syn.delay, source=syn.source, axon_types=fit.axon_types[cols].copy())
                if post.size:
                    out.add(q)
                    names.append(name)
            # relative RMS over the [n, n_pre] matrix; bits sit on synapses only, so the error does too
            recon = fit.reconstruct_at(e_post, e_pre + offset)
            size = n * n_pre
            ref = math.sqrt(float(np.sum(e_val ** 2)) / size) if size else 0.0
            rms = math.sqrt(float(np.sum((recon - e_val) ** 2)) / size) if size else 0.0
            report.projections.append(ProjectionQuant(syn.name, node.name, copies, bit_cost,
                                                      rms / ref if ref > 0 else 0.0,
                                                      0.0, int(np.abs(tw).max(initial=0))))
            offset += n_pre
        regs, why = fam.neuron_registers(node.threshold, bias, scale, tw, worst, spec)
        thr, leak = regs["threshold"], regs["leak"]
        thr_err = float(np.mean(np.abs(thr * scale - node.threshold))) / node.threshold
        bias_err = _rel_rms(leak * scale - bias, np.full(1, node.threshold)) if bias.any() else 0.0
        out.add(ir.Neuron(node.name, tuple(names), kind=node.kind, threshold=node.threshold, tau_mem=node.tau_mem,
                          tau_syn=node.tau_syn, datapath=node.datapath, readout=False, size=n, bias=node.bias,
                          registers=MappingProxyType(regs),
                          scale=float(np.mean(1.0 / scale))))
        problem = "" if not why[0] else f"{why[0]} {why[1]:.0f} outside its range at the fitted per-neuron scale"
        report.populations.append(PopulationQuant(node.name, float(np.mean(1.0 / scale)), int(thr.max()), thr_err,
                                                  bias_err, float(worst.max(initial=0)), v_limit,
                                                  feasible=not problem, problem=problem, problem_register=why[0],
                                                  problem_value=why[1], problem_limit=why[2]))
    return ir.validate(out, "quantized"), report


#: the quantisation schemes, by the name a family's compile hooks give (``QUANTISER``)
_QUANTISERS: dict[str, Callable[[ir.Graph, HwSpec, float, int | None, Any], tuple[ir.Graph, QuantReport]]] = {
    "mantissa_exponent": _mantissa_exponent,
    "shift_per_matrix": _shift_per_matrix,
    "binary_type_weights": _binary_type_weights,
}
