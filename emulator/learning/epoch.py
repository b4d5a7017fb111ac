"""Learning epochs, the definition: traces and sum-of-products updates on Python integers.

The reference engine calls :meth:`ReferenceLearning.observe` after every step of every batch
element; the fast engine (:mod:`emulator.learning.vectorised`) computes the same integers over
arrays. The arithmetic is the family's learning module (Loihi: ``emulator/families/loihi/learning.py``,
whose docstring gives the fixed-point chain and its sources); this module is the schedule.

Per plastic projection and batch element, with epoch length ``T`` (steps ``g`` counted from 0
since reset; within-epoch time ``s = g mod T + 1``):

* every step, a unit that emits a spike records ``s`` as its spike time (``tx`` for a pre unit,
  ``ty`` for a post neuron, ``tr`` for the post neurons a reward unit drives): the chip keeps one
  spike time per unit and epoch (6 bits). A unit that spiked before in the same epoch first adds
  its impulse to its traces at once (as Lava's ``_process_pre_spikes`` / ``_process_post_spikes``).
  Spike times are those of emission: a pre spike is seen in the step it is sent (it reaches the
  post neuron one step later by the default delay), as in Lava's learning Dense.
* at the last step of epoch ``e`` (``s = T``), after the neuron updates: each trace's history over
  the epoch is rebuilt from its value at the epoch's start, ``h[0]``; for ``s = 1..T``:
  ``h[s] = decay(h[s−1])``, then the impulse if the unit's spike time is ``s``. The dependencies
  are ``x0 = tx > 0``, ``y0 = ty > 0``, ``u_k = ((e + 1) mod 2^k == 0)``; a product gated by ``x0``
  reads every trace at ``h[tx]`` (the pre spike's time), one gated by ``y0`` at ``h[ty]``, one gated
  by ``u_k`` at ``h[T]``. Every rule (``dw``, ``dd``, ``dt``) reads the synaptic variables as they
  were before the epoch's update. Then traces become ``h[T]`` and spike times 0.
* the new weights act from the next step on.

Random numbers are drawn per (seed, batch element, projection, step — or epoch for the weight
rounding —, purpose, unit) by the family's counter-based ``draw``; the purposes are numbered below.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..families.datapath import ReferenceStep, Synapses
from .lava import LavaRandom, LavaStep
from .plasticity import TRACES
from .wiring import PlasticProjection, plastic_projections

__all__ = ["ReferenceLearning", "ProjectionState", "observe", "end_epoch", "PURPOSE_REPEAT", "PURPOSE_DECAY",
           "PURPOSE_IMPULSE", "PURPOSE_ROUND"]

#: draw purposes (plus the trace's index in TRACES, or the target's in "wdt"): a repeated spike's
#: impulse, a decay step, an impulse in the epoch's history, a synaptic variable's rounding
PURPOSE_REPEAT, PURPOSE_DECAY, PURPOSE_IMPULSE, PURPOSE_ROUND = 0, 8, 16, 24
_VARS = "wdt"


class ProjectionState:
    """One plastic projection's learning state for one batch element, Python lists: traces
    ``trace[name][unit]``, spike times ``tx [pre]``, ``ty [post]``, ``tr [post]`` (0: none this
    epoch), synaptic variables ``z["w" | "d" | "t"][synapse]``."""

    def __init__(self, pp: PlasticProjection, weights: list[int]) -> None:
        self.trace = {name: [0] * (pp.n_pre if name[0] == "x" else pp.n_post) for name in TRACES}
        self.tx = [0] * pp.n_pre
        self.ty = [0] * pp.n_post
        self.tr = [0] * pp.n_post
        n = len(weights)
        self.z = {"w": list(weights), "d": [0] * n, "t": [0] * n}


def observe(st: ProjectionState, pp: PlasticProjection, seed: int, b: int, g: int, pre: list[int],
            post: list[int], reward: list[int], lava: LavaRandom | None = None) -> bool:
    """Record step ``g``'s spikes (local unit indices) and, at an epoch's last step, learn.
    Returns whether the synaptic variables were updated. ``lava``: the projection's Lava generators
    (``random="lava"``), else None."""
    pl = pp.plasticity
    eng, T = pl.engine, pl.epoch
    s = g % T + 1
    near, hi = pl.rule.nearest, pl.trace_hi
    j = pp.index
    ls = lava.step(g) if lava is not None else None
    y_traces = ("y1", "y2") if pp.reward_units is not None else ("y1", "y2", "y3")
    groups = ((st.tx, pre, ("x1", "x2")), (st.ty, post, y_traces), (st.tr, _reward_targets(pp, reward), ("y3",)))
    for times, units, names in groups:
        for u in units:
            if times[u]:
                for name in names:
                    k = TRACES.index(name)
                    if ls is not None:  # Lava: a repeated pre spike rounds with 0, a post spike with its number
                        r = 0 if name[0] == "x" else ls.post_impulse
                        st.trace[name][u] = eng.lava_add_impulse(st.trace[name][u], pl.impulse[k], r, hi)
                        continue
                    r = eng.draw(seed, b, j, g, PURPOSE_REPEAT + k, u, eng.IMPULSE_FRACTION_BITS)
                    st.trace[name][u] = eng.add_impulse(st.trace[name][u], pl.impulse[k], r, hi, near)
            times[u] = s
    if s < T:
        return False
    end_epoch(st, pp, seed, b, g // T, ls)
    return True


def _reward_targets(pp: PlasticProjection, reward: list[int]) -> list[int]:
    out: set[int] = set()
    for r in reward:
        out.update(pp.reward_targets(r))
    return sorted(out)


def _history(st: ProjectionState, pp: PlasticProjection, name: str, times: list[int], seed: int, b: int,
             e: int, ls: LavaStep | None) -> list[list[int]]:
    """``h[s][unit]`` for ``s = 0..T`` (module docstring; Lava's numbers when ``ls`` is given)."""
    pl = pp.plasticity
    eng, T = pl.engine, pl.epoch
    k = TRACES.index(name)
    decay, impulse = pl.decay[k], pl.impulse[k]
    h = [list(st.trace[name])]
    for s in range(1, T + 1):
        g = e * T + s - 1
        cur = []
        for u, x in enumerate(h[-1]):
            if ls is not None:
                x = eng.lava_decay(x, pl.lava_decay[k], ls.x_decay if name[0] == "x" else ls.y_decay)
                if times[u] == s:
                    x = eng.lava_add_impulse(x, impulse, ls.x_impulse if name[0] == "x" else ls.y_impulse,
                                             pl.trace_hi)
                cur.append(x)
                continue
            x = eng.decay(x, decay, eng.draw(seed, b, pp.index, g, PURPOSE_DECAY + k, u, eng.DECAY_BITS))
            if times[u] == s:
                r = eng.draw(seed, b, pp.index, g, PURPOSE_IMPULSE + k, u, eng.IMPULSE_FRACTION_BITS)
                x = eng.add_impulse(x, impulse, r, pl.trace_hi, pl.rule.nearest)
            cur.append(x)
        h.append(cur)
    return h


def end_epoch(st: ProjectionState, pp: PlasticProjection, seed: int, b: int, e: int, ls: LavaStep | None = None
              ) -> None:
    """Apply the rule at the end of epoch ``e`` (module docstring) and start the next epoch; ``ls``:
    Lava's numbers of the epoch's last step (``random="lava"``)."""
    pl = pp.plasticity
    eng, T = pl.engine, pl.epoch
    acc_lo = eng.LAVA_ACCUMULATOR_LO if ls is not None else -(1 << (eng.ACCUMULATOR_BITS - 1))
    times = {"x1": st.tx, "x2": st.tx, "y1": st.ty, "y2": st.ty,
             "y3": st.tr if pp.reward_units is not None else st.ty}
    hist = {name: _history(st, pp, name, times[name], seed, b, e, ls) for name in TRACES}
    old = {v: list(vals) for v, vals in st.z.items()}
    post, pre = pp.post.tolist(), pp.pre.tolist()
    for eq in pl.equations:
        var = eq.target[1]
        lo, hi, k = eng.variable_bounds(var, pp.params)
        u_on = 1
        for p in eq.products:
            if p.dependency == "u":
                u_on = 1 if (e + 1) % (1 << p.decimate) == 0 else 0
        new = st.z[var]
        for si, (n, i) in enumerate(zip(post, pre, strict=True)):
            acc = old[var][si] << eng.SYNAPSE_SHIFT
            for p in eq.products:
                if p.dependency == "x0":
                    dep, at = int(st.tx[i] > 0), st.tx[i]
                elif p.dependency == "y0":
                    dep, at = int(st.ty[n] > 0), st.ty[n]
                else:
                    dep, at = u_on, T
                if not dep:
                    continue  # the term is 0
                values, width = [], 0
                for f in p.factors:
                    if f.var == "x0":
                        raw = int(st.tx[i] > 0)
                    elif f.var == "y0":
                        raw = int(st.ty[n] > 0)
                    elif f.var in ("w", "d", "t"):
                        raw = old[f.var][si]
                    else:
                        raw = hist[f.var][at][i if f.var[0] == "x" else n]
                    bits = pl.widths[f.var]
                    width += bits
                    values.append(eng.factor(raw, f.const, f.sgn, bits))
                acc = eng.accumulate(acc, eng.term(dep, values, p.mantissa, p.exponent, width, acc_lo), acc_lo)
            if ls is not None:
                assert ls.conn is not None
                new[si] = eng.lava_finish(acc, var, pp.params, ls.conn)
                continue
            r = eng.draw(seed, b, pp.index, e, PURPOSE_ROUND + _VARS.index(var), si, eng.SYNAPSE_SHIFT + k)
            new[si] = eng.finish(acc, lo, hi, k, r)
    for name in TRACES:
        st.trace[name] = hist[name][T]
    for times_list in (st.tx, st.ty, st.tr):
        times_list[:] = [0] * len(times_list)


class ReferenceLearning:
    """The reference engine's learning: per batch element, the state of every plastic projection
    and the family's reference step over the current weights (rebuilt after an epoch changes them)."""

    def __init__(self, wiring: Any, batch: int, seed: int) -> None:
        self.wiring = wiring
        self.batch = batch
        self.seed = seed
        self.projections = plastic_projections(wiring.program)
        self.by_name = {pp.name: pp for pp in self.projections}
        self.reset()

    def reset(self) -> None:
        w0 = self.wiring.program.syn_weight.astype(np.int64)
        self.states = [[ProjectionState(pp, w0[pp.synapses].tolist()) for pp in self.projections]
                       for _ in range(self.batch)]
        self.lava = [LavaRandom(pp.plasticity.rule.rng_seed, pp.plasticity.epoch)
                     if pp.plasticity.rule.random == "lava" else None for pp in self.projections]
        self.steps: list[ReferenceStep | None] = [None] * self.batch

    def step(self, b: int) -> ReferenceStep:
        """The family's reference step for batch element ``b`` over its current weights."""
        step = self.steps[b]
        if step is None:
            w = self.wiring
            wb = copy.copy(w)
            vars(wb).pop("lists", None)  # the per-neuron tables are rebuilt from the new increments
            wb.syn_increment = _increments(w, self.weights(b))
            step = self.steps[b] = w.datapath.reference_step(wb, self.seed)
        return step

    def weights(self, b: int) -> NDArray[np.int64]:
        """Every stored weight of the Program as learned so far by batch element ``b``, int64 ``[n_syn]``."""
        w = self.wiring.program.syn_weight.astype(np.int64)
        for pp, st in zip(self.projections, self.states[b], strict=True):
            w[pp.synapses] = st.z["w"]
        return w

    def observe(self, b: int, inputs: list[int], spikes: list[int], g: int) -> None:
        """Step ``g`` of batch element ``b``: input channel counts ``inputs`` and neuron spike counts
        ``spikes`` (global ids)."""
        for pp, st, lava in zip(self.projections, self.states[b], self.lava, strict=True):
            src = inputs if pp.pre_is_input else spikes
            pre = [i for i, u in enumerate(pp.pre_units.tolist()) if src[u]]
            post = [n for n, u in enumerate(pp.post_units.tolist()) if spikes[u]]
            reward: list[int] = []
            if pp.reward_units is not None:
                rsrc = inputs if pp.reward_is_input else spikes
                reward = [r for r, u in enumerate(pp.reward_units.tolist()) if rsrc[u]]
            if observe(st, pp, self.seed, b, g, pre, post, reward, lava):
                self.steps[b] = None

    def probe_shape(self, name: str, var: str) -> tuple[int, ...]:
        """The shape of learning probe ``name.var`` per step: ``(post, pre)`` or ``(units,)``."""
        pp = self.by_name[name]
        if var in ("w", "d", "t"):
            return (pp.n_post, pp.n_pre)
        return (pp.n_pre if var[0] == "x" else pp.n_post,)

    def probe(self, b: int, name: str, var: str) -> list[int]:
        """The value of learning probe ``name.var`` for batch element ``b``: synaptic variables as a
        flat ``[post, pre]`` list (0 where no synapse), traces per unit."""
        pp = self.by_name[name]
        st = self.states[b][self.projections.index(pp)]
        if var in st.trace:
            return list(st.trace[var])
        out = [0] * (pp.n_post * pp.n_pre)
        for si, (n, i) in enumerate(zip(pp.post.tolist(), pp.pre.tolist(), strict=True)):
            out[n * pp.n_pre + i] = st.z[var][si]
        return out

    def learned_weights(self, b: int) -> dict[int, NDArray[np.int64]]:
        """Per plastic projection index, its synapses' learned weights (batch element ``b``)."""
        return {pp.index: np.array(st.z["w"], dtype=np.int64)
                for pp, st in zip(self.projections, self.states[b], strict=True)}


def _increments(w: Any, weights: NDArray[np.int64]) -> Any:
    """The family's synaptic increments of every stored synapse for ``weights`` (as ``Wiring.syn_increment``)."""
    p = w.program
    syn_axon = p.syn_axon.astype(np.int64)
    synapses = Synapses(weight=weights, proj=w.axon_projection[syn_axon], post=p.syn_neuron.astype(np.int64),
                        axon_type=p.axon_type.astype(np.int64)[syn_axon])
    return w.datapath.increments(synapses, w.projection_params, w.registers, p.spec)
