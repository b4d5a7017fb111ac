"""Compile-time scaling: partition + build + serialise of large layered networks on multi-chip loihi,
and (``--user-path``) the whole user path, model → Program with verification, on large ReLU MLPs.

Run:  python benchmarks/compile.py [--max-synapses 1e8] [--fan-in 100] [--kind conv|random]
      python benchmarks/compile.py --user-path [--samples 64] [--steps 100] [--mlp 2048,4096,4096,4096,10 ...]

Each size is a stack of 10 equal layers fed by an input port, every neuron with ``--fan-in``
synapses (8-bit mixed-sign weights, COO): ``random`` picks each neuron's inputs spread over the
whole previous layer (a strided progression from a random start), ``conv`` (the default) a local
window as a 1-D convolution would. ``random`` is the worst case for Loihi: every neuron's 100
targets sit on ~100 different cores, so ``axons_out_per_core`` (4096 routes) allows only ~40
neurons per core and the program needs ~25 k cores and ~1 route (and axon) per synapse.
Sizes grow ~x3 from 1 M synapses to ``--max-synapses`` (default 100 M synapses = 1 M neurons).
For each size it prints the time of

* ``connect``: ``ProgramBuilder.connect`` of the COO weights (input checks, truncation),
* ``partition``: ``compiler.passes.partition.partition`` (cores and mesh placement),
* ``build``: ``ProgramBuilder.build(placement=...)`` including ``Program`` validation,
* ``bytes``: ``Program.to_bytes()`` (the file image with its checksum),

their total (wall clock, ``cpu``: process CPU time, and ``sys``: the kernel's share of it, mostly
first touches of fresh memory: on a virtual machine these can cost more than the computing), the
total per million synapses, and the process's peak resident memory so far (``getrusage``; sizes
grow, so it is the peak of the size just run, network included). Times on a shared machine are
noisy: compare sizes within one run.

``--user-path``: ``compiler.compile`` of a random ReLU MLP for loihi (default 2048-4096-4096-4096-10,
42 M synapses, and six 4096-wide layers after a 4096-wide input, 101 M synapses: loihi's fan-in
limit is 4096) with ``--samples`` calibration samples (verification on the same samples, ``--steps``
steps), its stage timings from the compile report, and two baselines measured in the same run on the
same samples × steps: one float32 torch forward pass of the ANN over ``samples × steps`` rows (what
the hardware-free model costs) and the emulator alone (``Simulator`` set-up + run of the Program on
the verification spikes).
Targets: under 25 s at 42 M synapses, under 60 s at 100 M.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import sys
import time
from pathlib import Path

# keep this folder off the import path (benchmarks/emulator.py is named like a package)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

import emulator  # noqa: E402
from compiler.passes.partition import partition, traffic  # noqa: E402

LAYERS = 10


def network(n_neurons: int, fan_in: int, kind: str, seed: int = 0) -> tuple[emulator.ProgramBuilder, float]:
    """A builder holding ``n_neurons`` in ``LAYERS`` layers (plus an input port), and the connect time (s)."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("loihi")
    width = max(fan_in, n_neurons // LAYERS)
    prev = b.input("in", width)
    t_connect = 0.0
    for i in range(LAYERS):
        pop = b.population(f"l{i}", width, du=410, dv=205, vth=200)
        post = np.repeat(np.arange(width, dtype=np.int64), fan_in)
        offs = np.tile(np.arange(fan_in, dtype=np.int64), width)
        if kind == "conv":
            start = np.arange(width, dtype=np.int64) * prev.size // width - fan_in // 2
            pre = (np.repeat(start, fan_in) + offs) % prev.size
        else:
            start = rng.integers(0, prev.size, width)
            step = rng.integers(1, max(2, prev.size // fan_in), width)
            pre = (np.repeat(start, fan_in) + offs * np.repeat(step, fan_in)) % prev.size
        del offs
        # even magnitudes 2..254: a mixed-sign 8-bit Loihi matrix keeps them exactly (no zero after truncation)
        w = rng.integers(1, 128, post.size, dtype=np.int64) * 2
        w[rng.random(post.size) < 0.5] *= -1
        t0 = time.perf_counter()
        b.connect(prev, pop, weights=(post, pre, w), weight_exp=0, num_weight_bits=8)
        t_connect += time.perf_counter() - t0
        del post, pre, w
        prev = pop
    b.output("out", prev)
    return b, t_connect


#: (layer widths, target seconds) of the user-path workloads
USER_PATH = ((2048, 4096, 4096, 4096, 10), 25.0), ((4096,) * 7 + (10,), 60.0)


def user_path(widths: tuple[int, ...], samples: int, steps: int, seed: int = 0) -> dict[str, float]:
    """Compile a random ReLU MLP of ``widths`` for loihi (verification on) and time the baselines."""
    import torch
    from torch import nn

    import compiler
    from compiler.passes.convert import encode_rate

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).eval()
    x = torch.rand(samples, widths[0])
    gc.collect()
    t0 = time.perf_counter()
    program, report = compiler.compile_with_report(model, "loihi", x, steps=steps, verify_samples=samples)
    total = time.perf_counter() - t0
    rows = x.repeat_interleave(steps, dim=0)  # samples × steps rows, as many as the verification's
    with torch.no_grad():
        model(rows[:8])
        t1 = time.perf_counter()
        model(rows)
        forward = time.perf_counter() - t1
    assert report.conversion is not None
    spikes = encode_rate(x.numpy(), steps, report.conversion.input_scale)
    t2 = time.perf_counter()
    sim = emulator.Simulator(program, batch=samples)
    sim.run(spikes)
    emulate = time.perf_counter() - t2
    synapses = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return {"synapses": synapses, "total": total, "forward": forward, "emulate": emulate,
            "exact": float(report.verification["exact"]), **report.timings}


def main_user_path(args: argparse.Namespace) -> None:
    nets = [(tuple(int(w) for w in m.split(",")), math.inf) for m in args.mlp] if args.mlp else list(USER_PATH)
    print(f"compiler.compile on loihi, random ReLU MLPs, {args.samples} samples x {args.steps} steps, verification "
          "on; times in s (noisy: shared machine)")
    stages = ("capture", "convert", "lower", "quantize+rules", "emit", "verify")
    print(f"{'network':>28} {'synapses':>11} " + " ".join(f"{s_:>14}" for s_ in stages)
          + f" {'total':>7} {'torch fwd':>9} {'emulator':>9} {'x fwd':>6} {'exact':>5}")
    verdicts = []
    for widths, target in nets:
        r = user_path(widths, args.samples, args.steps)
        name = "-".join(map(str, widths))
        print(f"{name:>28} {int(r['synapses']):>11} " + " ".join(f"{r.get(s_, 0.0):>14.2f}" for s_ in stages)
              + f" {r['total']:>7.2f} {r['forward']:>9.2f} {r['emulate']:>9.2f} {r['total'] / r['forward']:>6.0f} "
              f"{'yes' if r['exact'] else 'NO':>5}", flush=True)
        if math.isfinite(target):
            verdicts.append(f"{r['synapses'] / 1e6:.0f} M synapses: {r['total']:.1f} s (target < {target:.0f} s: "
                            f"{'met' if r['total'] < target else 'MISSED'})")
        gc.collect()
    print("; ".join(verdicts) if verdicts else "no target for custom networks")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--user-path", action="store_true", help="time compiler.compile (model -> Program, verified) "
                    "on large ReLU MLPs instead of the back end alone")
    ap.add_argument("--samples", type=int, default=64, help="--user-path: calibration = verification samples")
    ap.add_argument("--steps", type=int, default=100, help="--user-path: verification steps")
    ap.add_argument("--mlp", action="append", help="--user-path: layer widths, e.g. 784,512,10 (repeatable)")
    ap.add_argument("--max-synapses", type=float, default=1e8)
    ap.add_argument("--min-synapses", type=float, default=1e6)
    ap.add_argument("--fan-in", type=int, default=100)
    ap.add_argument("--kind", choices=("random", "conv"), default="conv")
    args = ap.parse_args(argv)
    if args.user_path:
        main_user_path(args)
        return
    sizes = []
    s = args.min_synapses
    while s < args.max_synapses * 0.99:
        sizes.append(s)
        s *= np.sqrt(10)
    sizes.append(args.max_synapses)
    print(f"loihi, {LAYERS} layers, fan-in {args.fan_in}, {args.kind} connectivity; times in s (noisy: shared machine)")
    print(f"{'neurons':>9} {'synapses':>11} {'cores':>6} {'chips':>5} {'connect':>8} {'partition':>9} {'build':>7} "
          f"{'bytes':>6} {'total':>7} {'cpu':>6} {'sys':>6} {'s/M syn':>8} {'x first':>7} {'user/M':>7} "
          f"{'RSS MiB':>9} {'MiB file':>9} {'hops/route':>10}")
    first: float | None = None
    total = 0.0
    for target in sizes:
        n = int(round(target / args.fan_in))
        b, t_connect = network(n, args.fan_in, args.kind)
        gc.collect()
        c0 = time.process_time()
        k0 = os.times().system
        t0 = time.perf_counter()
        placement = partition(b)
        t1 = time.perf_counter()
        program = b.build(placement=placement)
        t2 = time.perf_counter()
        data = program.to_bytes()
        t3 = time.perf_counter()
        cpu = time.process_time() - c0
        kernel = os.times().system - k0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        n_syn = int(program.syn_axon.size)
        t = traffic(program)
        total = t3 - t0
        per_m = total / (n_syn / 1e6)
        first = per_m if first is None else first
        print(f"{program.n_neurons:>9} {n_syn:>11} {t['cores_used']:>6} {t['chips_used']:>5} {t_connect:>8.2f} "
              f"{t1 - t0:>9.2f} {t2 - t1:>7.2f} {t3 - t2:>6.2f} {total:>7.2f} {cpu:>6.1f} {kernel:>6.1f} "
              f"{per_m:>8.3f} {per_m / first:>7.2f} {(cpu - kernel) / (n_syn / 1e6):>7.3f} "
              f"{peak / 2**20:>9.0f} {len(data) / 2**20:>9.0f} {t['mean_hops']:>10.2f}", flush=True)
        del b, placement, program, data
        gc.collect()
    print(f"largest size: {total:.1f} s (target < 60 s: {'met' if total < 60 else 'MISSED'}); 'x first' is the time "
          "per synapse against the first size of this run (1.0 = linear); 'user/M' leaves out kernel time (first "
          "touch of fresh memory, slow on some VMs)")


if __name__ == "__main__":
    main()
