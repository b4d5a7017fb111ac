"""Network-level simulation of a population graph, layer by layer (no cores, no routes).

Two modes, one loop per family:

* ``quantized=True`` runs the integer datapath of ``hw_specs`` on the registers and integer
  weights the quantiser chose (exact integers held in float64). It is an independent check of
  the compiler's back end: the emulated Program must give the same spikes (exactly, as long
  as no Xylo state saturates — saturation makes delivery order matter, which this network-level
  loop does not model).
* ``quantized=False`` runs the float network (weights, thresholds, biases before rounding) with
  the chip's decay factors, spike test and reset — the model the quantised one approximates.
  Biases add to ``v`` as on the chip, scaled by :func:`compiler.neurons.bias_gain`.

Input ``spikes``: ``[batch, time, n_in]`` counts. Returns ``{population: [batch, time, n]}``.
Delays come from each projection (or the spec's defaults): a spike emitted at step ``t`` is
integrated at ``t + delay``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from emulator import fixed
from hw_specs import HwSpec

from . import ir
from .decay import bias_gain, loihi_decay, xylo_dash

__all__ = ["simulate", "predictions"]


def _delay(syn: ir.Synapses, graph: ir.Graph, spec: HwSpec) -> int:
    if syn.delay is not None:
        return int(syn.delay)
    key = "default_input_delay" if isinstance(graph[syn.inputs[0]], ir.Input) else "default_delay"
    return int(spec.synapse[key])


def _currents(graph: ir.Graph, pop: ir.Neuron, out: dict[str, NDArray[np.float64]], spec: HwSpec,
              quantized: bool, steps: int) -> list[tuple[ir.Synapses, NDArray[np.float64]]]:
    """Per incoming projection, the weighted input of every step ``[B, T, n]`` (delays applied)."""
    res = []
    for sname in pop.inputs:
        syn = graph[sname]
        assert isinstance(syn, ir.Synapses)
        pre = out[syn.inputs[0]]
        tw = pop.registers.get("type_weights") if quantized else None
        w = sp.csr_matrix((syn.effective(tw).astype(np.float64), (syn.post_idx, syn.pre_idx)), shape=syn.shape)
        b, t, n = pre.shape
        flat = pre.reshape(b * t, n)
        if np.count_nonzero(flat) < 0.25 * flat.size:  # sparse activity: sparse × sparse is cheaper
            cur = (sp.csr_matrix(flat) @ w.T.tocsr()).toarray().reshape(b, t, -1)
        else:
            cur = np.asarray(w @ flat.T).T.reshape(b, t, -1)
        d = _delay(syn, graph, spec)
        shifted = np.zeros((b, steps, syn.shape[0]))
        if d < steps:
            shifted[:, d:] = cur[:, : steps - d]
        res.append((syn, shifted))
    return res


def simulate(graph: ir.Graph, spikes: NDArray[Any], spec: HwSpec, *, quantized: bool, dt: float = 1e-3
             ) -> dict[str, NDArray[np.float64]]:
    """Simulate the population graph on ``spikes`` ``[batch, time, n_in]`` (see the module doc)."""
    x = np.asarray(spikes, dtype=np.float64)
    (inp,) = graph.of_type(ir.Input)
    out: dict[str, NDArray[np.float64]] = {inp.name: x}
    steps = x.shape[1]
    for pop in graph.of_type(ir.Neuron):
        currents = _currents(graph, pop, out, spec, quantized, steps)
        if spec.family == "loihi":
            out[pop.name] = _loihi(pop, currents, quantized, dt, (x.shape[0], steps, pop.size))
        elif spec.family == "xylo":
            out[pop.name] = _xylo(pop, currents, quantized, dt, spec, (x.shape[0], steps, pop.size))
        elif spec.family == "truenorth":
            out[pop.name] = _truenorth(pop, currents, quantized, spec, (x.shape[0], steps, pop.size))
        else:
            raise NotImplementedError(f"simulate: family {spec.family}")
    return out


def _loihi(pop: ir.Neuron, currents: list[tuple[ir.Synapses, NDArray[np.float64]]], quantized: bool,
           dt: float, shape: tuple[int, int, int]) -> NDArray[np.float64]:
    b, t, n = shape
    spikes = np.zeros((b, t, n))
    u = np.zeros((b, n))
    v = np.zeros((b, n))
    if quantized:
        r = pop.registers
        keep_u = (4096.0 - (r["du"] + 1)).astype(np.float64)
        keep_v = (4096.0 - r["dv"]).astype(np.float64)
        bias = (r["bias_mant"] * 2.0 ** r["bias_exp"]).astype(np.float64)
        vth = r["vth"] * 64.0
        lim = float((1 << 23) - 1)
        for step in range(t):
            a = sum(fixed.shift_float(c[:, step], int(s.params["weight_exp"])) for s, c in currents)
            u = fixed.wrap_float(fixed.mul_shift_trunc_float(u, keep_u, 12) + a * 64.0, 24)
            v = np.clip(fixed.mul_shift_trunc_float(v, keep_v, 12) + u + bias, -lim, lim)
            s_ = v > vth
            v[s_] = 0.0
            spikes[:, step] = s_
        return spikes
    ku = (4096 - loihi_decay(pop.tau_syn, dt, offset=1) - 1) / 4096
    kv = (4096 - loihi_decay(pop.tau_mem, dt)) / 4096
    bias_f = (pop.bias if pop.bias is not None else np.zeros(n)) * bias_gain(pop.tau_syn, dt, "loihi")
    for step in range(t):
        a = sum(c[:, step] for _, c in currents)
        u = u * ku + a
        v = v * kv + u + bias_f
        s_ = v > pop.threshold
        v[s_] = 0.0
        spikes[:, step] = s_
    return spikes


def _xylo(pop: ir.Neuron, currents: list[tuple[ir.Synapses, NDArray[np.float64]]], quantized: bool,
          dt: float, spec: HwSpec, shape: tuple[int, int, int]) -> NDArray[np.float64]:
    b, t, n = shape
    spikes = np.zeros((b, t, n))
    limit = spec.chip.readout_max_spikes_per_step if pop.readout else spec.chip.max_spikes_per_step
    isyn = np.zeros((b, n))
    vmem = np.zeros((b, n))
    if quantized:
        r = pop.registers
        lo, hi = -32768.0, 32767.0
        theta = r["threshold"].astype(np.float64)

        def decay(x: NDArray[np.float64], dash: NDArray[np.int64]) -> NDArray[np.float64]:
            d = np.floor(x / 2.0 ** dash)
            return np.where((d == 0) & (x != 0), np.sign(x), d)

        for step in range(t):
            a = sum(c[:, step] * float(1 << int(s.params["weight_shift"])) for s, c in currents)
            isyn = np.clip(isyn + a, lo, hi)
            isyn = isyn - decay(isyn, r["dash_syn"])
            dv = np.clip(-decay(vmem, r["dash_mem"]) + isyn, lo, hi)
            dv = np.clip(dv + r["bias"], lo, hi)
            vmem = np.clip(vmem + dv, lo, hi)
            k = np.where(vmem >= theta, np.minimum(limit, np.floor(vmem / theta)), 0.0)
            vmem = vmem - k * theta
            spikes[:, step] = k
        return spikes
    ks = 1 - 2.0 ** -(xylo_dash(pop.tau_syn, dt) if pop.tau_syn is not None else 1)
    km = 1 - 2.0 ** -xylo_dash(pop.tau_mem, dt)
    bias_f = (pop.bias if pop.bias is not None else np.zeros(n)) * bias_gain(pop.tau_syn, dt, "xylo")
    for step in range(t):
        a = sum(c[:, step] for _, c in currents)
        isyn = (isyn + a) * ks
        vmem = vmem * km + isyn + bias_f
        k = np.where(vmem >= pop.threshold, np.minimum(limit, np.floor(vmem / pop.threshold)), 0.0)
        vmem = vmem - k * pop.threshold
        spikes[:, step] = k
    return spikes


def _truenorth(pop: ir.Neuron, currents: list[tuple[ir.Synapses, NDArray[np.float64]]], quantized: bool,
               spec: HwSpec, shape: tuple[int, int, int]) -> NDArray[np.float64]:
    """IF with linear leak, ``V ≥ α`` spikes and subtracts α, ``V < −β`` clamps at ``−β`` (the registers
    the quantiser sets; stochastic modes off). Integer mode saturates V to its width after the
    sum of the step (exact unless V saturates mid-step)."""
    b, t, n = shape
    spikes = np.zeros((b, t, n))
    v = np.zeros((b, n))
    if quantized:
        r = pop.registers
        alpha, beta, leak = (r["threshold"].astype(np.float64), r["neg_threshold"].astype(np.float64),
                             r["leak"].astype(np.float64))
        hi = float((1 << (spec.state["v"].bits - 1)) - 1)
        lo = -hi - 1
    else:
        alpha = np.full(n, pop.threshold)
        beta = np.full(n, np.inf)
        leak = pop.bias if pop.bias is not None else np.zeros(n)
        lo, hi = -np.inf, np.inf
    for step in range(t):
        a = sum(c[:, step] for _, c in currents)
        v = np.clip(np.clip(v + a, lo, hi) + leak, lo, hi)
        s_ = v >= alpha
        v = np.where(s_, v - alpha, np.where(v < -beta, -beta, v))
        spikes[:, step] = s_
    return spikes


def predictions(spikes: NDArray[Any]) -> NDArray[np.int64]:
    """Class per sample: the output neuron with the most spikes over time (``[B, T, n] → [B]``)."""
    counts = np.asarray(spikes).sum(axis=1)
    return counts.argmax(axis=1).astype(np.int64)
