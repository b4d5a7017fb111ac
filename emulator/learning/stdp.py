"""Ready-made learning rules: pair-based additive STDP, its nearest-neighbour variant and
reward-modulated STDP.

Additive STDP (the seed text's form, Sboev et al. 2018; Lava ``STDPLoihi``)::

    Δw = +A₊ · e^(−(t_post − t_pre)/τ₊)   if t_pre < t_post
    Δw = −A₋ · e^(−(t_pre − t_post)/τ₋)   if t_pre > t_post

as the rule ``dw = a₊·y0·x1 − a₋·x0·y1`` with traces ``x1`` (τ₊) and ``y1`` (τ₋) of impulse ``I``:
``A₊ = a₊ · I`` in weight units. The weights stay in ``[0, w_max]``: a projection whose initial
weights are all ≥ 0 is excitatory (sign mode 1) and the learning engine clips its weights to
``[0, w_max]`` with ``w_max = 255`` at 8 weight bits (``(255 >> k) << k`` at fewer: :func:`w_max`);
the weight a spike delivers is ``w · 2^weight_exp``, so ``weight_exp`` sets the weight that
``w_max`` stands for.

Reward-modulated STDP (Frémaux & Gerstner 2016; Lava ``RewardModulatedSTDP``): the STDP pairing
charges the tag ``t`` (an eligibility trace decaying by ``2^−k`` per epoch); each epoch the weight
moves by the tag times the reward trace ``y3``, driven by the spikes of the ``reward`` source::

    dt = a₊·y0·x1 − a₋·x0·y1 − 2^−k·u0·t;   dw = η·u0·t·y3
"""

from __future__ import annotations

import math

from .plasticity import LearningRule

__all__ = ["stdp", "nearest_stdp", "reward_stdp", "scale", "w_max"]


def scale(value: float) -> str:
    """The rule literal ``m*2^e`` (``|m| <= 7``, ``−7 <= e <= 8``) nearest to ``value`` (> 0 or < 0)."""
    if value == 0 or not math.isfinite(value):
        raise ValueError(f"a scale must be finite and non-zero; got {value!r}")
    best = min(((m, e) for m in range(1, 8) for e in range(-7, 9)),
               key=lambda me: (abs(math.log2(me[0] * 2.0 ** me[1]) - math.log2(abs(value))), me[0]))
    m, e = best
    sign = "-" if value < 0 else ""
    return f"{sign}{m}*2^{e}" if m != 1 else f"{sign}2^{e}"


def w_max(num_weight_bits: int = 8) -> int:
    """The largest weight of an excitatory projection with ``num_weight_bits`` (Loihi: ``(255 >> k) << k``,
    ``k = 8 − num_weight_bits``)."""
    k = 8 - num_weight_bits
    return (255 >> k) << k


def stdp(a_plus: float = 0.25, a_minus: float = 0.25, tau_plus: int = 16, tau_minus: int = 16,
         impulse: float = 16.0, epoch: int = 1) -> LearningRule:
    """Pair-based additive STDP, all-to-all pairing (module docstring); ``a_plus``, ``a_minus``: weight
    change per unit of trace (rounded to ``m·2^e``), ``tau_*`` in steps."""
    return LearningRule(f"dw = {scale(a_plus)}*y0*x1 - {scale(a_minus)}*x0*y1", x1_impulse=impulse, x1_tau=tau_plus,
                        y1_impulse=impulse, y1_tau=tau_minus, epoch=epoch)


def nearest_stdp(a_plus: float = 0.25, a_minus: float = 0.25, tau_plus: int = 16, tau_minus: int = 16,
                 impulse: float = 16.0, epoch: int = 1) -> LearningRule:
    """:func:`stdp` with nearest-neighbour pairing: a spike restarts its trace at the impulse, so a
    post spike pairs with the latest pre spike only (and vice versa)."""
    rule = stdp(a_plus, a_minus, tau_plus, tau_minus, impulse, epoch)
    return LearningRule(rule.rule, x1_impulse=impulse, x1_tau=tau_plus, y1_impulse=impulse, y1_tau=tau_minus,
                        epoch=epoch, nearest=True)


def reward_stdp(reward: str, a_plus: float = 0.25, a_minus: float = 0.25, tau_plus: int = 16, tau_minus: int = 16,
                tag_decay: int = 3, learning_rate: float = 1.0, impulse: float = 16.0, reward_impulse: float = 16.0,
                reward_tau: int = 4, epoch: int = 1) -> LearningRule:
    """Reward-modulated STDP (module docstring): ``reward`` names the input port or population whose
    spikes drive ``y3`` (one unit for every post neuron, or one per post neuron); ``tag_decay`` is k of
    the tag's ``2^−k`` decay per epoch."""
    text = (f"dt = {scale(a_plus)}*y0*x1 - {scale(a_minus)}*x0*y1 - 2^{-tag_decay}*u0*t; "
            f"dw = {scale(learning_rate)}*u0*t*y3")
    return LearningRule(text, x1_impulse=impulse, x1_tau=tau_plus, y1_impulse=impulse, y1_tau=tau_minus,
                        y3_impulse=reward_impulse, y3_tau=reward_tau, epoch=epoch, reward=reward)
