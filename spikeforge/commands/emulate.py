"""``spikeforge emulate PROGRAM --input SPIKES.npz --steps T -o OUT.npz``: run a program."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from emulator import ENGINES, Program, Simulator, Trace
from spikeforge.errors import EmulatorError, MissingExtra


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emulate", help="run a program bit-accurately on input spike trains")
    p.add_argument("program", help="a .sfp program file")
    p.add_argument("--input", "-i", help=".npz/.npy of spike counts [batch, time, channels] (one array per input "
                   "port, named after it, or a single array); omitted: no input")
    p.add_argument("--steps", type=int, help="number of steps (default: the input's length)")
    p.add_argument("--engine", choices=ENGINES, default="fast")
    p.add_argument("--probe", default="", help="comma-separated states to record, e.g. 'u,v' (every population) "
                   "or 'l1.v,l2.u'")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic modes")
    p.add_argument("--chunk", type=int, default=0, help="run in chunks of this many steps (bounded memory)")
    p.add_argument("-o", "--output", help="write spikes, probes and synaptic-op counts to this .npz")
    p.add_argument("--plot", help="save a PNG: output spike raster and probed states of sample 0 "
                   '(needs matplotlib: pip install "spikeforge[plot]")')
    p.set_defaults(func=run)


def load_inputs(path: str, program: Program) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise EmulatorError(f"input file {path} does not exist") from None
    except (ValueError, OSError) as exc:
        raise EmulatorError(f"input file {path} is not a readable .npy/.npz: {exc}") from None
    if isinstance(data, np.ndarray):
        arrays = {"": data}
    else:
        arrays = {k: data[k] for k in data.files}
    ports = list(program.inputs)
    if set(arrays) <= set(ports):
        return arrays
    if len(arrays) == 1 and len(ports) == 1:
        return {ports[0]: next(iter(arrays.values()))}
    raise EmulatorError(f"input file {path} holds arrays {sorted(arrays)}; the program's input ports are {ports}")


def expand_probes(spec: str, program: Program) -> list[str]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "." in item:
            out.append(item)
        else:
            out += [f"{pop}.{item}" for pop in program.populations]
    return out


def run(args: argparse.Namespace) -> int:
    program = Program.load(args.program)
    inputs = load_inputs(args.input, program) if args.input else {}
    batch = 1
    for arr in inputs.values():
        batch = arr.shape[0] if arr.ndim == 3 else 1
    length = max((a.shape[-2] for a in inputs.values()), default=0)
    steps = args.steps if args.steps is not None else length
    if steps <= 0:
        raise EmulatorError("nothing to run: give --input spikes or --steps T")
    probes = expand_probes(args.probe, program)
    sim = Simulator(program, engine=args.engine, batch=batch, seed=args.seed, probes=probes)
    chunk = args.chunk or steps
    parts = []
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        piece = {k: (a if a.ndim == 3 else a[None])[:, done:done + n] for k, a in inputs.items()}
        parts.append(sim.run(piece, steps=n))
        done += n
        if chunk < steps:
            print(f"\r  step {done}/{steps}", end="", file=sys.stderr, flush=True)
    if chunk < steps:
        print(file=sys.stderr)
    elapsed = time.perf_counter() - t0
    spikes = {k: np.concatenate([p.spikes[k] for p in parts], axis=1) for k in parts[0].spikes}
    probed = {k: np.concatenate([p.probes[k] for p in parts], axis=1) for k in parts[0].probes}
    synops = np.concatenate([p.synaptic_ops for p in parts], axis=1)
    print(f"ran {steps} steps x batch {batch} on target {program.target} ({args.engine} engine) in {elapsed:.3f} s")
    for name, s in spikes.items():
        per = s.sum(axis=(0, 1))
        print(f"  output {name}: {int(s.sum())} spikes; per neuron {per.tolist()[:16]}{' …' if per.size > 16 else ''}")
    print(f"  synaptic operations: {int(synops.sum())}")
    for name, arr in probed.items():
        print(f"  probe {name}: final {arr[0, -1].tolist()[:8]}{' …' if arr.shape[2] > 8 else ''}")
    if args.plot:
        plot_trace(args.plot, spikes, probed, synops, title=f"{Path(args.program).name} on {program.target}")
        print(f"wrote {Path(args.plot)}")
    if args.output:
        Trace(spikes, probed, synops, args.engine).save(args.output)
        print(f"wrote {Path(args.output)}")
    return 0


def plot_trace(path: str, spikes: dict[str, np.ndarray], probed: dict[str, np.ndarray], synops: np.ndarray,
               title: str = "") -> None:
    """Raster of each output port, one panel per probed state (first 8 neurons) and synaptic
    operations per step, for batch element 0, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra.needs("--plot", "matplotlib", "plot") from None
    panels = len(spikes) + len(probed) + 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 1.8 * panels + 0.6), sharex=True, squeeze=False)
    ax_iter = iter(axes[:, 0])
    for name, s in spikes.items():
        ax = next(ax_iter)
        t, n = np.nonzero(s[0])
        ax.scatter(t, n, s=4, marker="|", color="k")
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-0.5, s.shape[2] - 0.5)
    for name, arr in probed.items():
        ax = next(ax_iter)
        ax.plot(arr[0, :, :8], lw=0.8)
        ax.set_ylabel(name)
    ax = next(ax_iter)
    ax.plot(synops[0], color="tab:gray", lw=0.8)
    ax.set_ylabel("synaptic\nops")
    ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
