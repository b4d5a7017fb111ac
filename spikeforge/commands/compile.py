"""``spikeforge compile MODEL --target loihi -o model.sfp``: compile a trained model to a Program.

MODEL is one of (told apart by content, not by suffix):

* a ``torch.export`` archive: ``torch.export.save(torch.export.export(model, (x,)), "model.pt2")``;
* a TorchScript file: ``torch.jit.save(torch.jit.script(model), "model.pt")`` (or ``torch.jit.trace``);
* a state dict (``torch.save(model.state_dict(), "sd.pt")``) with ``--model-class package.module:Class``
  (built without arguments; the current directory is on the import path).

``--calibration data.npz`` holds ``x`` (ReLU nets: analog inputs ``[batch, ...]``; spiking nets: spikes
``[batch, time, ...]``) and optionally ``y`` (labels). ``--check`` prints the fit report and exits 1
when the model does not fit. ``--verify sample|full|off`` chooses what the compile-time verification
runs on (default: the first ``--verify-samples`` samples). torch is imported only when this runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from spikeforge.errors import CompileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a trained PyTorch model (SNN or ReLU network) to a Program")
    p.add_argument("model", help="torch.export archive (.pt2), TorchScript file, or state dict (with --model-class); "
                   ".onnx/.nir models are not supported")
    p.add_argument("--model-class", help="for a state dict: the model's class as package.module:Class (built without "
                   "arguments)")
    p.add_argument("--target", "-t", default="loihi", help="target name or .toml spec path (default loihi)")
    p.add_argument("-o", "--output", help="write the Program here (.sfp)")
    p.add_argument("--check", action="store_true", help="only check the fit: print the report, exit 1 if it does "
                   "not fit")
    p.add_argument("--calibration", help=".npz with x (and optionally y): calibration / verification data")
    p.add_argument("--test", help=".npz with x (and y): held-out data for the accuracy report (default: calibration)")
    p.add_argument("--input-shape", help="per-sample input shape, e.g. 1,28,28 (default: from a first Linear)")
    p.add_argument("--steps", type=int, default=100, help="rate-coding / verification steps (default 100)")
    p.add_argument("--dt", type=float, default=1e-3, help="seconds per step (default 1e-3)")
    p.add_argument("--percentile", type=float, default=99.9, help="threshold balancing percentile (default 99.9)")
    p.add_argument("--num-weight-bits", type=int, help="Loihi weight bits (default: the spec's maximum)")
    p.add_argument("--verify", choices=("sample", "full", "off"), default="sample",
                   help="compile-time verification (emulated Program vs the simulated network): 'sample' (default) "
                   "on the first --verify-samples samples of --test, else of --calibration; 'full' on all of them; "
                   "'off' skips it")
    p.add_argument("--verify-samples", type=int, default=128, help="samples verified with --verify sample "
                   "(default 128)")
    p.add_argument("--plasticity", action="append", default=[], metavar="LAYER=RULE",
                   help="learn on chip: LAYER's projection gets the sum-of-products RULE, e.g. "
                   "fc1='dw = 2^-2*x1*y0 - 2^-2*y1*x0' (repeatable; docs/learning.md)")
    p.add_argument("--report", help="write the full report as JSON here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _bar(stage: str, fraction: float) -> None:
    width = 30
    done = int(round(fraction * width))
    end = "\n" if fraction >= 1 else ""
    print(f"\r[{'#' * done}{' ' * (width - done)}] {fraction:4.0%} {stage:<16}", end=end, file=sys.stderr,
          flush=True)


def _calibration(path: str | None) -> tuple[Any, Any]:
    if not path:
        return None, None
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CompileError(f"calibration file {path}: not a readable .npz/.npy ({exc})") from None
    if isinstance(data, np.ndarray):
        return data, None
    if "x" not in data.files:
        raise CompileError(f"calibration file {path} holds {data.files}; expected an array named x (and y)")
    return data["x"], (data["y"] if "y" in data.files else None)


def _model(path: str, model_class: str | None) -> Any:
    """What to compile: the path of a torch.export / TorchScript / .onnx / .nir file, or the module a state
    dict is loaded into."""
    from compiler.frontends import saved
    from compiler.frontends.torch import load_model

    if Path(path).suffix.lower() in (".onnx", ".nir"):
        return path
    kind = saved.detect(path)
    if kind != saved.STATE_DICT:
        if model_class:
            print(f"note: --model-class ignored: {path} is a {kind} file (it holds the model's structure)",
                  file=sys.stderr)
        return path
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # so that --model-class can name a module of the user's project
    return load_model(path, model_class)


def run(args: argparse.Namespace) -> int:
    import compiler

    if not args.check and not args.output:
        raise CompileError("give -o model.sfp (or --check to only check the fit)")
    model = _model(args.model, args.model_class)
    x, y = _calibration(args.calibration)
    shape = tuple(int(s) for s in args.input_shape.split(",")) if args.input_shape else None
    common: dict[str, Any] = {"labels": y, "input_shape": shape, "dt": args.dt, "percentile": args.percentile,
                              "num_weight_bits": args.num_weight_bits}
    if args.check:
        report = compiler.check(model, args.target, x, **common)
        print(report.table())
        if args.report:
            Path(args.report).write_text(json.dumps(report.to_dict(), indent=2, default=float))
        return 0 if report.fits else 1
    progress = None if args.quiet else _bar
    test = _calibration(args.test) if args.test else None
    from compiler.passes.learning import parse_option

    program, full = compiler.compile_with_report(model, args.target, x, steps=args.steps, progress=progress,
                                                 test=test, verify=args.verify, verify_samples=args.verify_samples,
                                                 plasticity=parse_option(args.plasticity), **common)
    if progress:
        _bar("done", 1.0)
    program.save(args.output)
    print(full.summary())
    print(f"wrote {args.output}: {program.n_neurons} neurons on {program.n_cores} core(s) of {program.target}")
    if args.report:
        Path(args.report).write_text(json.dumps(full.to_dict(), indent=2, default=float))
    return 0
