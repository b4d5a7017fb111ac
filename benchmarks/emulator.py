"""Emulator speed: the bit-exact fast engine against a float32 PyTorch loop of the same network.

Run:  python benchmarks/emulator.py [--repeats 5]

Standard workload: a 784-512-512-10 fully connected CUBA-LIF network, 8-bit weights, loihi
family, 100 steps, Poisson input at 10 %, batch 64 and batch 1. The baseline, measured in the same
process, is a plain float32 torch loop of the same network (``Linear`` + LIF update per step), which
runs near the matrix-multiply roofline. Also times a Xylo-sized network (16 inputs, 1000 hidden
neurons with two synapses and sparse recurrence of at most 64 targets per neuron, 8 outputs, 1000
steps, ~0.2 input spikes per channel per step); XyloSim's C++ core needs ~200 ms for it on this
machine (figure from the issue).

Prints the best of ``--repeats`` runs for each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# this file is named like the package it measures: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

import emulator  # noqa: E402

SIZES = (784, 512, 512, 10)


def build_loihi(seed: int = 0) -> emulator.Program:
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("loihi")
    prev = b.input("in", SIZES[0])
    for i, n in enumerate(SIZES[1:]):
        pop = b.population(f"l{i + 1}", n, du=410, dv=205, vth=200)
        w = rng.integers(-64, 96, size=(n, prev.size))
        b.connect(prev, pop, weights=w, weight_exp=0, num_weight_bits=8)
        prev = pop
    b.output("out", prev)
    return b.build()


def torch_loop(program: emulator.Program, x: np.ndarray) -> float:
    """The float baseline: same weights, float32 CUBA-LIF update, one step at a time."""
    import torch

    torch.set_grad_enabled(False)
    names = [f"in->l{i}" if i == 1 else f"l{i - 1}->l{i}" for i in range(1, len(SIZES))]
    layers = []
    for name in names:
        w = torch.tensor(program.weights(name), dtype=torch.float32)
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.copy_(w)
        layers.append(lin)
    xs = torch.tensor(x, dtype=torch.float32)
    b, t_n, _ = xs.shape
    du, dv, vth = 1 - 411 / 4096, 1 - 205 / 4096, 200.0 * 64
    t0 = time.perf_counter()
    u = [torch.zeros(b, lin.out_features) for lin in layers]
    v = [torch.zeros(b, lin.out_features) for lin in layers]
    s_prev = [torch.zeros(b, lin.out_features) for lin in layers]
    for t in range(t_n):
        inp = xs[:, t]
        for i, lin in enumerate(layers):
            a = lin(inp)
            u[i].mul_(du).add_(a, alpha=64.0)
            v[i].mul_(dv).add_(u[i])
            s = (v[i] > vth).float()
            v[i].mul_(1 - s)
            inp = s_prev[i]
            s_prev[i] = s
    return time.perf_counter() - t0


def time_fast(program: emulator.Program, x: np.ndarray) -> float:
    """One run from the initial state; the program's one-off lowering (``Simulator``) is not timed,
    as a validation run over a dataset lowers once."""
    sim = emulator.Simulator(program, engine="fast", batch=x.shape[0])
    t0 = time.perf_counter()
    sim.run(x)
    return time.perf_counter() - t0


def build_xylo(seed: int = 0) -> emulator.Program:
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("xylo")
    x = b.input("in", 16)
    h = b.population("h", 1000, dash_mem=4, dash_syn=3, dash_syn2=5, threshold=3000, bias=0)
    o = b.population("o", 8, readout=True, dash_mem=4, dash_syn=3, threshold=300)
    b.connect(x, h, weights=rng.integers(-32, 32, (1000, 16)), weight_shift=0)
    b.connect(x, h, weights=rng.integers(-32, 32, (1000, 16)), synapse=1, weight_shift=0, name="in_syn2")
    posts, pres = [], []
    for j in range(1000):  # each neuron targets at most 64 others (Xylo fan-out limit)
        tgt = rng.choice(1000, size=int(rng.integers(16, 50)), replace=False)
        posts.append(tgt)
        pres.append(np.full(tgt.size, j))
    post, pre = np.concatenate(posts), np.concatenate(pres)
    b.connect(h, h, weights=(post, pre, rng.integers(-8, 8, post.size) | 1), weight_shift=0)
    b.connect(h, o, weights=rng.integers(-128, 128, (8, 1000)) * (rng.random((8, 1000)) < 0.05), weight_shift=2)
    b.output("out", o)
    return b.build()


def main() -> int:
    ap = argparse.ArgumentParser(description="emulator speed against a float32 torch loop")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    program = build_loihi()
    print(f"built {program} in {time.perf_counter() - t0:.2f} s")
    print(f"{'workload':<38} {'fast engine':>12} {'torch f32':>10} {'ratio':>7}")
    for batch in (64, 1):
        x = (rng.random((batch, 100, SIZES[0])) < 0.10).astype(np.int8)
        time_fast(program, x)  # warm up caches and BLAS threads
        torch_loop(program, x)
        fast = min(time_fast(program, x) for _ in range(args.repeats))
        base = min(torch_loop(program, x) for _ in range(args.repeats))
        print(f"{'784-512-512-10 LIF, 100 steps, batch ' + str(batch):<38} {fast * 1e3:>9.1f} ms {base * 1e3:>7.1f} ms"
              f" {fast / base:>6.2f}x   ({fast / batch * 1e3:.2f} ms/sample)")
    xprog = build_xylo()
    x = rng.poisson(0.2, size=(1, 1000, 16)).astype(np.int8)
    time_fast(xprog, x)
    fast = min(time_fast(xprog, x) for _ in range(args.repeats))
    from emulator.families.xylo import kernel

    path = "compiled kernel" if kernel.load() else "numpy path; pip install 'spikeforge[fast]' for the kernel"
    print(f"{'xylo 16-1000(rec)-8, 1000 steps, batch 1':<38} {fast * 1e3:>9.1f} ms   "
          f"(XyloSim C++ ~200 ms, measured apart) {fast / 0.200:>5.2f}x   [{path}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
