"""The emulated STDP window: Δw against ``t_post − t_pre``, measured by driving one synapse with
one spike pair per batch element (the test of the ready-made rules and the example's plot).

One input channel ``pre`` reaches the post neuron through the plastic synapse (initial weight
``w0``, too weak to make it spike); a second channel ``teach`` makes it spike (weight 255, one
step after its spike). A pair is the pre spike at step ``t0`` and the post spike at ``t0 + Δt``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..builder import ProgramBuilder
from ..engine import Simulator
from .plasticity import LearningRule

__all__ = ["stdp_window"]


def stdp_window(rule: LearningRule, lags: NDArray[np.int64] | list[int], *, repeats: int = 8, w0: int = 100,
                target: str = "loihi", seed: int = 0, engine: str = "fast") -> NDArray[np.float64]:
    """Mean weight change (weight units) for every lag ``Δt = t_post − t_pre`` in ``lags``, over
    ``repeats`` batch elements (each its own random draws), float64 ``[len(lags)]``."""
    lags = np.asarray(lags, dtype=np.int64)
    b = ProgramBuilder(target)
    x = b.input("pre", 1)
    teach = b.input("teach", 1)
    post = b.population("post", 1, du=4095, dv=4095, vth=w0 + 1)
    b.connect(x, post, weights=[[w0]], name="syn", plasticity=rule)
    b.connect(teach, post, weights=[[255]], name="teacher")
    b.output("out", post)
    program = b.build()
    span = int(np.abs(lags).max(initial=0))
    t0 = span + 2 * rule.epoch
    steps = t0 + span + 4 * rule.epoch + 2
    n = lags.size * repeats
    pre = np.zeros((n, steps, 1), dtype=np.int64)
    teacher = np.zeros((n, steps, 1), dtype=np.int64)
    pre[:, t0, 0] = 1
    teacher[np.arange(n), t0 + np.repeat(lags, repeats) - 1, 0] = 1  # the post neuron spikes one step later
    sim = Simulator(program, engine=engine, batch=n, seed=seed, probes=["syn.w"])
    trace = sim.run({"pre": pre, "teach": teacher})
    dw = trace.probes["syn.w"][:, -1, 0, 0] - w0
    return dw.reshape(lags.size, repeats).mean(axis=1)
