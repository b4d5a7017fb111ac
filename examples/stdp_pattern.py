"""A neuron learns, on chip, to respond to a spike pattern hidden in Poisson noise (STDP).

    python examples/stdp_pattern.py            # writes stdp_pattern.png when matplotlib is installed

64 input channels fire Poisson noise; from time to time the same 24-step spike pattern (a frozen
snippet of that noise) replaces it. One Loihi neuron receives every channel through a plastic
projection with pair-based additive STDP (``emulator.learning.stdp``): weights of channels that fire
just before the neuron's spikes grow, the others shrink. The pattern's channels fire together each
time it recurs, so they win: after learning the neuron fires when the pattern is shown and
seldom otherwise (Masquelier, Guyonneau & Thorpe 2008 study the same effect).

The run is the emulator's fast engine; the plot shows the weights before and after, and the
STDP window the engine produces (``emulator.learning.window.stdp_window``).
"""

from __future__ import annotations

import numpy as np

import emulator
from emulator.learning.stdp import stdp
from emulator.learning.window import stdp_window

CHANNELS, PATTERN, STEPS, RATE = 64, 24, 6000, 0.04


def stimulus(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson spikes ``[1, STEPS, CHANNELS]`` and a mask of the steps that show the pattern."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((STEPS, CHANNELS)) < RATE).astype(np.int64)
    pattern = (rng.random((PATTERN, CHANNELS)) < RATE * 1.5).astype(np.int64)
    shown = np.zeros(STEPS, dtype=bool)
    t = 50
    while t + PATTERN < STEPS:
        spikes[t:t + PATTERN] = pattern
        shown[t:t + PATTERN] = True
        t += PATTERN + int(rng.integers(60, 120))
    return spikes[None], shown


def network(rule: emulator.learning.LearningRule) -> emulator.Program:
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", CHANNELS)
    neuron = b.population("neuron", 1, du=4095, dv=512, vth=1600, refractory=4)
    w0 = np.full((1, CHANNELS), 128)
    b.connect(x, neuron, weights=w0, name="syn", plasticity=rule)
    b.output("out", neuron)
    return b.build()


def selectivity(spikes: np.ndarray, shown: np.ndarray) -> tuple[float, float]:
    """Spikes per step during the pattern and outside it."""
    s = spikes[0, :, 0].astype(float)
    return float(s[shown].mean()), float(s[~shown].mean())


def main() -> None:
    # depression slightly dominates (a_minus · tau_minus > a_plus · tau_plus): noise weakens a synapse,
    # a channel that fires reliably just before the neuron strengthens
    rule = stdp(a_plus=2.0 ** -2, a_minus=5 * 2.0 ** -4, tau_plus=8, tau_minus=16, impulse=24.0)
    program = network(rule)
    spikes, shown = stimulus()
    sim = emulator.Simulator(program, engine="fast", seed=0, probes=["syn.w"])
    trace = sim.run(spikes)
    weights = trace.probes["syn.w"][0, :, 0, :]
    first, last = slice(0, STEPS // 5), slice(STEPS - STEPS // 5, STEPS)
    before = selectivity(trace.spikes["out"][:, first], shown[first])
    after = selectivity(trace.spikes["out"][:, last], shown[last])
    print(f"rule: {rule.rule}")
    print(f"first fifth: {before[0]:.3f} spikes/step during the pattern, {before[1]:.3f} outside")
    print(f"last fifth:  {after[0]:.3f} spikes/step during the pattern, {after[1]:.3f} outside")
    learned = sim.learned()
    strong = int((learned.weights("syn") > 64).sum())
    print(f"learned Program: {learned}; {strong} of {CHANNELS} weights above 64 (all started at 128)")
    lags = np.arange(-20, 21)
    lags = lags[lags != 0]
    window = stdp_window(rule, lags)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].bar(np.arange(CHANNELS), weights[0], color="0.6", label="before")
    ax[0].bar(np.arange(CHANNELS), weights[-1], color="C0", alpha=0.7, label="after")
    ax[0].set(xlabel="input channel", ylabel="weight", title="weights before / after learning")
    ax[0].legend()
    ax[1].plot(weights, lw=0.5)
    ax[1].set(xlabel="step", ylabel="weight", title="weights during learning")
    ax[2].axhline(0, color="0.7", lw=0.8)
    ax[2].plot(lags, window, "o-", ms=3)
    ax[2].set(xlabel="t_post - t_pre (steps)", ylabel="mean Δw (weight units)", title="emulated STDP window")
    fig.tight_layout()
    fig.savefig("stdp_pattern.png", dpi=120)
    print("wrote stdp_pattern.png")


if __name__ == "__main__":
    main()
