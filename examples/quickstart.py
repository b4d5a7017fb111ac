"""Quick start: build a Loihi-class network from register values, save it, emulate it.

Run:  python examples/quickstart.py [--steps 100] [--batch 4] [--out /tmp/quickstart.sfp]

No hardware and no downloads: a 64-input → 32 → 10 CUBA-LIF network with integer weights, as one
would port it from Lava/NxSDK, driven by Poisson spike trains (rate 10 %).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import emulator
from spikeforge.commands.inspect import render, usage


def build(seed: int = 0) -> emulator.Program:
    """The example network: register-level values in Loihi units (Lava names)."""
    rng = np.random.default_rng(seed)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 64)
    # du = 410, dv = 205: time constants of about 10 and 20 steps
    hidden = b.population("hidden", 32, du=410, dv=205, vth=12000, bias_mant=0, bias_exp=0)
    readout = b.population("readout", 10, du=410, dv=205, vth=5000)
    b.connect(x, hidden, weights=rng.integers(-60, 100, size=(32, 64)), weight_exp=0, num_weight_bits=8)
    b.connect(hidden, readout, weights=rng.integers(-100, 160, size=(10, 32)), weight_exp=0, num_weight_bits=6)
    b.output("out", readout)
    return b.build(metadata={"example": "quickstart"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "quickstart.sfp"))
    args = ap.parse_args()

    program = build()
    path = program.save(args.out)
    program = emulator.Program.load(path, target="loihi")
    print(f"built and saved {program}\n  -> {path} ({path.stat().st_size} bytes, sha256 {program.digest[:16]}…)\n")

    spikes = (np.random.default_rng(1).random((args.batch, args.steps, 64)) < 0.10).astype(np.int8)
    inputs = path.with_suffix(".in.npz")
    np.savez_compressed(inputs, **{"in": spikes})  # for `spikeforge emulate PROGRAM --input ...`
    t0 = time.perf_counter()
    trace = emulator.run(program, spikes, probes=["hidden.u", "hidden.v", "readout.v"], engine="fast")
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = emulator.run(program, spikes[:1, :40], probes=["hidden.v"], engine="reference")
    ref_s = time.perf_counter() - t0
    agree = np.array_equal(ref.spikes["out"], trace.spikes["out"][:1, :40]) and np.array_equal(
        ref.probes["hidden.v"], trace.probes["hidden.v"][:1, :40])

    out = trace.spikes["out"]
    print(f"emulated {args.steps} steps x batch {args.batch} (fast engine: {fast_s * 1e3:.1f} ms)")
    print(f"  input spikes per sample:  {spikes.sum(axis=(1, 2)).tolist()}")
    print(f"  output spikes per sample: {out.sum(axis=(1, 2)).tolist()}")
    print(f"  output spike counts, sample 0: {out[0].sum(axis=0).tolist()}")
    print(f"  predicted class per sample: {out.sum(axis=1).argmax(axis=1).tolist()}")
    print(f"  hidden u, v after the last step (sample 0, first 6 neurons): "
          f"{trace.probes['hidden.u'][0, -1, :6].tolist()}, {trace.probes['hidden.v'][0, -1, :6].tolist()}")
    ops = int(trace.synaptic_ops.sum())
    pj = program.spec.energy.get("synaptic_op_pj", 0.0)
    print(f"  synaptic operations: {ops} (~{ops * pj * 1e-6 / args.batch:.3f} µJ per sample at {pj} pJ/op, "
          "Davies et al. 2018)")
    print(f"  reference engine on sample 0, 40 steps ({ref_s * 1e3:.0f} ms): "
          f"{'bit-identical' if agree else 'MISMATCH'} to the fast engine\n")
    print(render(usage(program)))
    print(f"\nnext: spikeforge emulate {path} --input {inputs} --probe v --plot trace.png -o out.npz")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
