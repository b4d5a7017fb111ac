"""``random="lava"``: the random numbers of lava-nc 0.10's fixed-point learning engine, in its order.

Lava's ``LearningConnectionModelBitApproximate`` (``lava/magma/core/model/py/connection.py``) keeps,
per learning connection, numpy generators (``lava/magma/core/learning/random.py``): a
``TraceRandom`` for the pre traces seeded ``(rng_seed, rng_seed + 1)``, one for the post traces
``(rng_seed + 2, rng_seed + 3)`` — each a float for decay rounding (``random()``) and an integer in
``[0, 2^7)`` for impulse rounding (``integers(0, 128)``) —, and a ``ConnVarRandom`` for the learned
variables' rounding, seeded 2 whatever the rule's seed. Each draws its first numbers when created.
Every step, ``recv_traces`` processes the pre spikes, advances both trace generators, processes
the post spikes (a repeated post spike's impulse rounds with the post generator's integer), and
advances them again; at an epoch's end ``run_lrn`` first advances the connection generator, then
rebuilds the traces' histories with the trace generators' current numbers (one float and one
integer for every trace, unit and step of the epoch) and rounds every synapse with the
connection generator's one float.

:class:`LavaRandom` replays that sequence; every batch element uses the same numbers (Lava has no
batch). Both engines hold one per plastic projection and ask it for step ``g``'s numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LavaRandom", "LavaStep"]


@dataclass(frozen=True)
class LavaStep:
    """The numbers of one step: ``post_impulse`` rounds a repeated post spike's impulse; at the end of
    an epoch the history uses ``x_decay, x_impulse, y_decay, y_impulse`` and the learned variables
    ``conn`` (None before an epoch's last step)."""

    post_impulse: int
    x_decay: float
    x_impulse: int
    y_decay: float
    y_impulse: int
    conn: float | None


class _TraceRandom:
    def __init__(self, seed_decay: int, seed_impulse: int) -> None:
        self.rng_decay = np.random.default_rng(seed=seed_decay)
        self.rng_impulse = np.random.default_rng(seed=seed_impulse)
        self.advance()

    def advance(self) -> None:
        self.decay = float(self.rng_decay.random(1)[0])
        self.impulse = int(self.rng_impulse.integers(0, 2 ** 7, size=1, dtype=int)[0])


class LavaRandom:
    """Lava's learning random numbers for one connection seeded ``rng_seed`` (module docstring);
    :meth:`step` must be asked for steps 0, 1, 2, … in order (a repeated step returns its numbers again)."""

    #: Lava's ConnVarRandom default seed (``seed_stochastic_rounding=2``)
    CONN_SEED = 2

    def __init__(self, rng_seed: int, epoch: int) -> None:
        self.epoch = epoch
        self.x = _TraceRandom(rng_seed, rng_seed + 1)
        self.y = _TraceRandom(rng_seed + 2, rng_seed + 3)
        self.rng_conn = np.random.default_rng(seed=self.CONN_SEED)
        self.rng_conn.random(1)  # the first number is drawn when the generator is made
        self.g = -1
        self.last: LavaStep | None = None

    def step(self, g: int) -> LavaStep:
        if g == self.g and self.last is not None:
            return self.last
        if g != self.g + 1:
            raise ValueError(f"LavaRandom: step {g} asked after step {self.g}; steps come in order")
        self.x.advance()
        self.y.advance()
        post_impulse = self.y.impulse
        self.x.advance()
        self.y.advance()
        conn = float(self.rng_conn.random(1)[0]) if (g + 1) % self.epoch == 0 else None
        self.g = g
        self.last = LavaStep(post_impulse, self.x.decay, self.x.impulse, self.y.decay, self.y.impulse, conn)
        return self.last
