"""Emulator speed and cost: the bit-exact fast engine against float32 PyTorch loops of the same networks.

Run:  python benchmarks/emulator.py [--repeats 5]
      python benchmarks/emulator.py --sweep [--quick] [--plot benchmarks/out/emulator_sweep.png]

Standard workload: a 784-512-512-10 fully connected CUBA-LIF network, 8-bit weights, loihi
family, 100 steps, Poisson input at 10 %, batch 64 and batch 1. The baseline, measured in the same
process, is a plain float32 torch loop of the same network (``Linear`` + LIF update per step), which
runs near the matrix-multiply roofline. Also: ``emulator.run`` called again on the same Program
(its engine setup is paid once per Program); the engine setup of a fresh Program; a convolutional
workload (2x34x34 event frames -> conv 8@5x5 -> 2x2 average pool -> conv 16@3x3 -> 10, expanded into
crossbars) against a float32 torch ``conv2d`` + LIF loop; the engine setup of a ~6 M-synapse conv
program; and a Xylo-sized network (16 inputs, 1000 hidden neurons with two synapses and sparse
recurrence of at most 64 targets per neuron, 8 outputs, 1000 steps, ~0.2 input spikes per channel
per step) on the numba kernel and on the numpy path; XyloSim's C++ core needs ~200 ms for it on
this machine (figure from the issue, measured apart).

Prints the best of ``--repeats`` runs for each, and the ratio to the baseline.

``--sweep``: setup and run time and the run's peak memory (resident, above the start) against
batch (1..256), hidden width (256..8192), steps (100..10 000) and synapse count (conv programs
of growing input), with the log-log slope of each curve (1.0 = linear), and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

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


def conv_coo(channels: int, side: int, out_channels: int, k: int, stride: int, w: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A valid convolution ``w`` ``[out, in, k, k]`` over ``[channels, side, side]`` (stride) as COO
    crossbar weights ``(post, pre, values)``, pre/post flattened channel-major; and the output side."""
    out_side = (side - k) // stride + 1
    o, c, ki, kj, i, j = np.meshgrid(np.arange(out_channels), np.arange(channels), np.arange(k), np.arange(k),
                                     np.arange(out_side), np.arange(out_side), indexing="ij")
    pre = c * side * side + (i * stride + ki) * side + (j * stride + kj)
    post = o * out_side * out_side + i * out_side + j
    vals = w[o, c, ki, kj]
    keep = vals != 0
    return post[keep].ravel(), pre[keep].ravel(), vals[keep].ravel(), out_side


CONV = "2x34x34 -> conv 8@5x5 -> avg-pool 2 -> conv 16@3x3 -> 10"


def build_conv(side: int = 34, seed: int = 0, head: bool = True, depth: int = 3
               ) -> tuple[emulator.Program, list[tuple[str, np.ndarray, int]]]:
    """The conv workload (``CONV``; ``side`` scales the input; ``head=False`` ends at the convs,
    whose outputs exceed a core's fan-in for big inputs; ``depth`` keeps the first 1-3 of conv,
    pool, conv: for big inputs the second conv's fan-out exceeds a core's routes under the
    builder's placement) on loihi, with its layers for the torch baseline: ``[(kind, weights,
    stride)]``."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-20, 48, (8, 2, 5, 5))
    pool = np.zeros((8, 8, 2, 2), dtype=np.int64)
    for ch in range(8):
        pool[ch, ch] = 64  # average pooling: a 2x2 window of one channel, equal weights
    w2 = rng.integers(-16, 32, (16, 8, 3, 3))
    b = emulator.ProgramBuilder("loihi")
    prev = b.input("in", 2 * side * side)
    layers = []
    ch, sd = 2, side
    for name, w, stride in (("c1", w1, 1), ("pool", pool, 2), ("c2", w2, 1))[:depth]:
        post, pre, vals, out_side = conv_coo(ch, sd, w.shape[0], w.shape[2], stride, w)
        pop = b.population(name, w.shape[0] * out_side * out_side, du=410, dv=205, vth=200)
        b.connect(prev, pop, weights=(post, pre, vals), weight_exp=0, num_weight_bits=8)
        layers.append(("conv", w, stride))
        prev, ch, sd = pop, w.shape[0], out_side
    if not head:
        b.output("out", prev)
        return b.build(), layers
    fc = rng.integers(-8, 16, (10, prev.size))
    out = b.population("fc", 10, du=410, dv=205, vth=200)
    b.connect(prev, out, weights=fc, weight_exp=0, num_weight_bits=8)
    layers.append(("fc", fc, 1))
    b.output("out", out)
    return b.build(), layers


def torch_conv_loop(layers: list[tuple[str, np.ndarray, int]], x: np.ndarray, side: int = 34) -> float:
    """The float baseline of the conv workload: ``conv2d`` / ``linear`` + the same float32 CUBA-LIF
    update per step, one step at a time."""
    import torch
    import torch.nn.functional as F

    torch.set_grad_enabled(False)
    ws = [torch.tensor(w, dtype=torch.float32) for _, w, _ in layers]
    xs = torch.tensor(x, dtype=torch.float32).reshape(x.shape[0], x.shape[1], 2, side, side)
    b, t_n = xs.shape[:2]
    du, dv, vth = 1 - 411 / 4096, 1 - 205 / 4096, 200.0 * 64
    t0 = time.perf_counter()
    state: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(layers)
    for t in range(t_n):
        inp = xs[:, t]
        for i, ((kind, _, stride), w) in enumerate(zip(layers, ws, strict=True)):
            a = F.conv2d(inp, w, stride=stride) if kind == "conv" else F.linear(inp.flatten(1), w)
            if state[i] is None:
                state[i] = (torch.zeros_like(a), torch.zeros_like(a), torch.zeros_like(a))
            u, v, s_prev = state[i]  # type: ignore[misc]
            u.mul_(du).add_(a, alpha=64.0)
            v.mul_(dv).add_(u)
            s = (v > vth).float()
            v.mul_(1 - s)
            inp = s_prev
            state[i] = (u, v, s)
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


def wide_loihi() -> Path:
    """A loihi variant whose per-core routing limits admit all-to-all layers of 8192 neurons
    (``axons_in/out_per_core``, ``fan_out_per_neuron``: a real chip cannot route them, and the
    engine's cost does not depend on them), written next to the sweep's output."""
    import tempfile

    text = (Path(__file__).resolve().parent.parent / "hw_specs" / "loihi.toml").read_text()
    for key in ("axons_in_per_core", "axons_out_per_core", "fan_out_per_neuron"):
        text = re.sub(rf"^{key} = \d+", f"{key} = 1048576", text, flags=re.M)
    text = re.sub(r'^name = "loihi"', 'name = "loihi-wide"', text, flags=re.M)
    path = Path(tempfile.mkdtemp(prefix="spikeforge-bench-")) / "loihi-wide.toml"
    path.write_text(text)
    return path


def build_mlp(sizes: tuple[int, ...], seed: int = 0, target: str | Path = "loihi") -> emulator.Program:
    """The standard workload's network with other layer sizes (the sweep's hidden width)."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder(str(target))
    prev = b.input("in", sizes[0])
    for i, n in enumerate(sizes[1:]):
        pop = b.population(f"l{i + 1}", n, du=410, dv=205, vth=200)
        b.connect(prev, pop, weights=rng.integers(-64, 96, size=(n, prev.size)), weight_exp=0, num_weight_bits=8)
        prev = pop
    b.output("out", prev)
    return b.build()


def measure(kind: str, value: int) -> dict[str, float]:
    """One point of the sweep in a fresh process (so that its peak memory is its own): build (not
    timed), set up (``Simulator``: the engine's one-off preparation) and run once; seconds, and
    the peak resident memory above the resident size before each phase (``ru_maxrss``)."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--point", kind, str(value)], capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise SystemExit(f"sweep point {kind}={value} failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def point(kind: str, value: int) -> dict[str, float]:
    """The body of :func:`measure`, run in the child process."""
    import gc
    import resource

    from emulator.crossbar import int8_available

    int8_available()  # the one-off import of the int8 kernel is the process's, not the setup's
    batch, steps = 16, 100
    if kind == "batch":
        program, batch = build_loihi(), value
    elif kind == "width":
        program = build_mlp((784, value, value, 10), target=wide_loihi())
    elif kind == "steps":
        program, steps = build_loihi(), value
    else:
        program = build_conv(value, head=False, depth=2)[0]
    rng = np.random.default_rng(1)
    x = np.empty((batch, steps, program.inputs["in"]), dtype=np.int8)
    for b in range(batch):  # sample by sample: no float64 temporary to raise the peak before the phases
        x[b] = rng.random((steps, x.shape[2]), dtype=np.float32) < 0.10
    gc.collect()

    def rss() -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def maxrss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # a phase's peak is known when it raises the process's peak: start each from there
    before = max(rss(), maxrss())
    t0 = time.perf_counter()
    sim = emulator.Simulator(program, batch=batch)
    setup = time.perf_counter() - t0
    setup_mem = max(0, maxrss() - before)
    before = max(rss(), maxrss())
    t0 = time.perf_counter()
    sim.run(x)
    run = time.perf_counter() - t0
    run_mem = max(0, maxrss() - before)
    return {"setup": setup, "run": run, "setup_mem": setup_mem, "run_mem": run_mem,
            "synapses": int(program.syn_axon.size)}


def slope(xs: list[float], ys: list[float]) -> float:
    """The log-log slope of ``ys`` against ``xs`` (least squares): 1 = linear growth."""
    pts = [(np.log(x), np.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 2:
        return float("nan")
    lx, ly = zip(*pts, strict=True)
    return float(np.polyfit(lx, ly, 1)[0])


def sweep(out: Path, quick: bool) -> int:
    """Time and peak memory against batch, hidden width, steps and synapse count; a table with the
    log-log slope of each curve, and a PNG plot when matplotlib is installed."""
    curves: dict[str, tuple[str, list[int], list[dict[str, float]]]] = {}
    batches = [1, 4, 16, 64] if quick else [1, 4, 16, 64, 256]
    widths = [256, 512, 1024, 2048] if quick else [256, 512, 1024, 2048, 4096, 8192]
    steps_list = [100, 300, 1000] if quick else [100, 300, 1000, 3000, 10000]
    sides = [34, 48, 64] if quick else [34, 48, 64, 96, 128]
    plans = [
        ("batch", "samples", batches, lambda v: measure("batch", v)),
        ("hidden width", "neurons per hidden layer", widths, lambda v: measure("width", v)),
        ("steps", "steps", steps_list, lambda v: measure("steps", v)),
        ("synapses (conv)", "synapses", sides, lambda v: measure("conv", v)),
    ]
    for name, unit, values, run in plans:
        rows = []
        for v in values:
            r = run(v)
            rows.append(r)
            print(f"  {name:<16} {v:>7}: setup {r['setup'] * 1e3:>9.1f} ms  run {r['run'] * 1e3:>9.1f} ms  "
                  f"peak {r['run_mem'] / 2**20:>8.1f} MiB run, {r['setup_mem'] / 2**20:>8.1f} MiB setup  "
                  f"({r['synapses']:,} synapses)", flush=True)
        xs = [r["synapses"] for r in rows] if name.startswith("synapses") else list(values)
        curves[name] = (unit, xs, rows)
        print(f"  {name:<16} slopes (log-log): setup {slope(xs, [r['setup'] for r in rows]):.2f}, "
              f"run {slope(xs, [r['run'] for r in rows]):.2f}, "
              f"run memory {slope(xs, [r['run_mem'] for r in rows]):.2f}", flush=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: pip install 'spikeforge[plot]' for the PNG")
        return 0
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for col, (name, (unit, xs, rows)) in enumerate(curves.items()):
        ax = axes[0, col]
        for key, label in (("setup", "setup"), ("run", "run")):
            ys = [r[key] for r in rows]
            ax.loglog(xs, ys, "o-", label=f"{label} (slope {slope(xs, ys):.2f})")
        ax.set_title(f"time vs {name}")
        ax.set_xlabel(unit)
        ax.set_ylabel("seconds")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        ys = [max(r["run_mem"] / 2**20, 0.1) for r in rows]  # 0.1 MiB: the floor of a log axis
        ax.loglog(xs, ys, "s-", color="C2", label=f"run peak (slope {slope(xs, ys):.2f})")
        ax.set_xlabel(unit)
        ax.set_ylabel("peak MiB above the run's start")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("spikeforge fast engine: cost as the work grows (loihi, 10 % input spikes)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


def best(fn: Any, repeats: int) -> float:
    fn()  # warm up caches, BLAS and thread pools
    return min(fn() for _ in range(repeats))


def timed(fn: Any) -> Any:
    def go() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return go


def row(label: str, fast: float, base: float | None, note: str = "") -> None:
    ratio = f"{fast / base:>6.2f}x" if base else " " * 7
    base_s = f"{base * 1e3:>9.1f} ms" if base else " " * 12
    print(f"{label:<46} {fast * 1e3:>9.1f} ms {base_s} {ratio}   {note}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="emulator speed against a float32 torch loop")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sweep", action="store_true", help="time and peak memory against batch, width, steps, synapses")
    ap.add_argument("--quick", action="store_true", help="with --sweep: the smaller sizes only")
    ap.add_argument("--plot", type=Path, default=Path("benchmarks/out/emulator_sweep.png"), help="the sweep's PNG")
    ap.add_argument("--point", nargs=2, metavar=("KIND", "VALUE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.point:
        import json

        print(json.dumps(point(args.point[0], int(args.point[1]))))
        return 0
    if args.sweep:
        return sweep(args.plot, args.quick)
    rng = np.random.default_rng(1)
    program = build_loihi()
    print(f"standard workload: {program}")
    print(f"{'workload':<46} {'fast engine':>12} {'baseline':>12} {'ratio':>7}")
    for batch in (64, 1):
        x = (rng.random((batch, 100, SIZES[0])) < 0.10).astype(np.int8)
        fast = best(lambda x=x: time_fast(program, x), args.repeats)
        base = best(lambda x=x: torch_loop(program, x), args.repeats)
        row(f"784-512-512-10 LIF, 100 steps, batch {batch}", fast, base,
            f"torch f32 loop; {fast / batch * 1e3:.2f} ms/sample")
    x1 = (rng.random((1, 100, SIZES[0])) < 0.10).astype(np.int8)
    again = best(timed(lambda: emulator.run(program, x1)), args.repeats)
    base = best(lambda: torch_loop(program, x1), args.repeats)
    row("same, batch 1, emulator.run again (same Program)", again, base, "setup paid once per Program")
    fresh = build_loihi()
    t0 = time.perf_counter()
    emulator.Simulator(fresh)
    row("same, engine setup (first run of a Program)", time.perf_counter() - t0, None)

    conv, layers = build_conv()
    xc = (rng.random((64, 100, conv.inputs["in"])) < 0.10).astype(np.int8)
    t0 = time.perf_counter()
    emulator.Simulator(conv, batch=64)
    setup = time.perf_counter() - t0
    fast = best(lambda: time_fast(conv, xc), max(1, args.repeats // 2))
    base = best(lambda: torch_conv_loop(layers, xc), max(1, args.repeats // 2))
    row(f"conv {CONV}, 100 steps, batch 64", fast, base, "torch f32 conv2d loop")
    row(f"  its engine setup ({conv.syn_axon.size:,} synapses)", setup, None)
    big, _ = build_conv(128, head=False, depth=2)
    t0 = time.perf_counter()
    emulator.Simulator(big)
    row(f"engine setup, conv program on 2x128x128 ({big.syn_axon.size / 1e6:.1f} M synapses)",
        time.perf_counter() - t0, None, "goal < 1 s, linear in synapses")

    from emulator.families.xylo import kernel

    xprog = build_xylo()
    xx = rng.poisson(0.2, size=(1, 1000, 16)).astype(np.int8)
    if kernel.load():
        fast = best(lambda: time_fast(xprog, xx), args.repeats)
        row("xylo 16-1000(rec)-8, 1000 steps, numba kernel", fast, 0.200, "XyloSim C++ ~200 ms, measured apart")
    else:
        print("xylo numba kernel: not installed (pip install 'spikeforge[fast]')")
    import os

    saved = os.environ.get("SPIKEFORGE_EMULATOR_JIT")
    os.environ["SPIKEFORGE_EMULATOR_JIT"] = "0"
    try:
        fast = best(lambda: time_fast(xprog, xx), args.repeats)
    finally:
        if saved is None:
            os.environ.pop("SPIKEFORGE_EMULATOR_JIT")
        else:
            os.environ["SPIKEFORGE_EMULATOR_JIT"] = saved
    row("xylo 16-1000(rec)-8, 1000 steps, numpy path", fast, 0.200, "XyloSim C++ ~200 ms, measured apart")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
