"""The compile pipeline: a short list of stages, each a function of a value and the spec.

::

    capture (frontend)        model → layer graph                    validate("frontend")
    convert (ReLU nets only)  layer graph + calibration → IF graph   validate("spiking")
    lower                     → population graph                     validate("lowered")
    quantize                  → registers and integer weights        validate("quantized")
    rules                     every design rule → CheckReport
    emit                      → ProgramBuilder → partition → Program
    verify                    emulate the Program vs. simulate the quantised / float network (option
                              verify="sample" | "full" | "off"), streamed in bounded memory

``calibration``: for a ReLU network, analog inputs ``[batch, *input_shape]`` (required: thresholds
are balanced on it); for a spiking model, spike counts ``[batch, time, *input_shape]`` (optional:
used for verification only). Either may be ``(x, labels)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import emulator
import hw_specs
from emulator import families
from hw_specs import HwSpec
from spikeforge.errors import CompileError, DoesNotFit, UnsupportedOperator

from . import ir
from .backend.netlist import Netlist
from .passes.convert import ConversionReport, calibration_input, convert, encode_rate, evaluate_analog, needs_conversion
from .passes.emit import emit, to_builder
from .passes.lower import lower
from .passes.quantize import QuantReport, quantize
from .passes.replicate import Replicated
from .passes.rules import RuleContext, run_rules
from .report import CheckReport, CompileReport
from .simulate import CHUNK_ELEMENTS, NetworkSimulation, chunks, spans

__all__ = ["compile_with_report", "check", "verification", "Progress", "VERIFY_MODES"]

#: what compile-time verification runs on: the first ``verify_samples`` samples, all of them, or none
VERIFY_MODES = ("sample", "full", "off")

#: progress callback: (stage name, fraction of the whole compile done in [0, 1])
Progress = Callable[[str, float], None]


def _array(x: Any) -> NDArray[Any]:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _split(calibration: Any, labels: Any) -> tuple[NDArray[Any] | None, NDArray[Any] | None]:
    if isinstance(calibration, (tuple, list)) and len(calibration) == 2:
        calibration, labels = calibration
    x = None if calibration is None else _array(calibration)
    y = None if labels is None else _array(labels).ravel().astype(np.int64)
    return x, y


def capture(model: Any, input_shape: tuple[int, ...] | None, x: NDArray[Any] | None) -> ir.Graph:
    """Model → layer graph: an ``ir.Graph`` passes through; a torch module goes to the torch frontend; a
    ``torch.export`` / TorchScript file or object to :mod:`compiler.frontends.saved`."""
    if isinstance(model, ir.Graph):
        return ir.validate(model, "frontend")
    if isinstance(model, (str, Path)):
        suffix = Path(model).suffix.lower()
        if suffix in (".onnx", ".nir"):
            raise UnsupportedOperator(f"{model}: {suffix[1:].upper()} models are not supported; compile the PyTorch "
                                      "model, or see docs/compiler.md")
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise CompileError("compiling a torch model needs torch installed") from None
    from .frontends import saved

    if isinstance(model, (str, Path)):
        return ir.validate(saved.from_file(model, input_shape), "frontend")
    if saved.is_saved(model):
        return ir.validate(saved.from_saved(model, input_shape), "frontend")
    if not isinstance(model, torch.nn.Module):
        raise CompileError(f"cannot compile a {type(model).__name__}; pass a torch.nn.Module, a torch.export / "
                           "TorchScript file or an .onnx/.nir path")
    from .frontends import torch as tf

    if input_shape is None:
        input_shape = tf.infer_input_shape(model)
    if input_shape is None:
        raise CompileError("cannot infer the input shape (the first layer is not a Linear); pass input_shape=(C, H, W)")
    return ir.validate(tf.from_torch(model, tuple(input_shape)), "frontend")


class _Stages:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._t
        self._t = now
        if self.progress:
            self.progress(stage, fraction)


def _front(model: Any, spec: HwSpec, x: NDArray[Any] | None, y: NDArray[Any] | None,
           input_shape: tuple[int, ...] | None, percentile: float, st: _Stages, need_calibration: bool = False
           ) -> tuple[ir.Graph, ConversionReport | None, ir.Graph | None, list[str], NDArray[np.float64] | None]:
    """Capture, convert (ReLU nets), lower. Returns the population graph, the conversion report,
    the original ANN layer graph (None for spiking models), notes for the report and the ANN's
    outputs ``[batch, n_out]`` on the calibration data (None without conversion or data)."""
    notes: list[str] = []
    graph = capture(model, input_shape, x)
    original = graph
    st.done("capture", 0.1)
    ann = needs_conversion(graph)
    conv = None
    ann_out = None
    if ann:
        if x is None and need_calibration:
            raise CompileError("a ReLU network is converted with thresholds balanced on data: pass calibration="
                               "x (analog inputs [batch, *input_shape], a few hundred samples) or (x, labels)")
        x_given = x is not None
        if x is None:
            shape = graph.of_type(ir.Input)[0].shape
            x = np.random.default_rng(0).random((16, *shape))
            notes.append("no calibration data: thresholds balanced on uniform random inputs in [0, 1]; pass "
                         "calibration= for meaningful quantisation figures")
        x_cal = calibration_input(x)
        acts = evaluate_analog(graph, x_cal)
        graph, conv = convert(graph, x_cal, percentile=percentile, labels=y, activations=acts)
        if x_given:
            (o,) = original.of_type(ir.Output)
            ann_out = acts[o.name]  # verification's ANN classes on calibration data: no second evaluation
        del acts, x_cal  # the activations of every layer go before lowering
        st.done("convert", 0.2)
    mismatched = {n.datapath for n in graph.of_type(ir.Neuron) if n.datapath and n.datapath != spec.family}
    if mismatched:
        notes.append(f"the model's neurons follow the {'/'.join(sorted(mismatched))} datapath but the target is "
                     f"{spec.family}: spike test, reset and delays differ from training")
    lowered = lower(graph)
    st.done("lower", 0.35)
    return lowered, conv, original if ann else None, notes, ann_out


def _check(lowered: ir.Graph, spec: HwSpec, dt: float, num_weight_bits: int | None, notes: list[str]
           ) -> tuple[CheckReport, ir.Graph | None, Replicated | None]:
    """Quantise and run every rule: the report, the quantised graph and (TrueNorth) the replicated
    layout the rules measured, which emission then builds as it is."""
    quant: QuantReport | None = None
    qgraph = None
    error = None
    try:
        qgraph, quant = quantize(lowered, spec, dt=dt, num_weight_bits=num_weight_bits)
    except DoesNotFit as exc:
        error = str(exc)
    ctx = RuleContext(lowered, spec, quant=quant, quant_error=error, qgraph=qgraph)
    report = CheckReport(spec.name, spec.where(), violations=run_rules(ctx), quant=quant, notes=notes)
    qp = {p.layer: p for p in quant.populations} if quant else {}
    qj: dict[str, list[Any]] = {}
    for p in quant.projections if quant else []:
        qj.setdefault(p.layer, []).append(p)
    for name, row in ctx.stats.items():
        r = dict(row)
        if name in qp:
            r["threshold"] = qp[name].threshold
            r["max_input"] = qp[name].max_input
        if name in qj:
            r["exp"] = ",".join(str(p.exponent) for p in qj[name])
            r["w_err"] = max(p.weight_error for p in qj[name])
        report.layers.append(r)
    return report, qgraph, ctx.layout


def check(model: Any, target: str | HwSpec = "loihi", calibration: Any = None, *, labels: Any = None,
          input_shape: tuple[int, ...] | None = None, dt: float = 1e-3, percentile: float = 99.9,
          num_weight_bits: int | None = None, build: bool = True) -> CheckReport:
    """Does ``model`` fit ``target``? Every rule runs; ``report.violations`` lists all violations.

    With ``build=True`` and no violation, the Program is also built (placement included) to
    report per-core utilisation; a placement failure becomes a violation too.
    """
    spec = hw_specs.load(target)
    x, y = _split(calibration, labels)
    st = _Stages(None)
    lowered, _, _, notes, _ = _front(model, spec, x, y, input_shape, percentile, st)
    report, qgraph, layout = _check(lowered, spec, dt, num_weight_bits, notes)
    if build and report.fits and qgraph is not None:
        _build_into(report, qgraph, spec, {}, layout)
    return report


def _build_into(report: CheckReport, qgraph: ir.Graph, spec: HwSpec, meta: dict[str, Any],
                layout: Replicated | None = None, plasticity: Mapping[str, Any] | None = None,
                builder: emulator.ProgramBuilder | None = None
                ) -> emulator.Program | None:
    from .passes.rules import Violation

    try:
        program = emit(qgraph, spec, metadata=meta, layout=layout, plasticity=plasticity, builder=builder)
    except DoesNotFit as exc:
        report.violations.append(Violation("placement", "-", "cores, axons or synapse memory", 0, 1, spec.where(),
                                           str(exc)))
        return None
    report.cores = program.core_usage()
    chip = spec.chip
    report.core_limits = {"neurons": chip.neurons_per_core, "axons_in": chip.axons_in_per_core,
                          "synapse_bits": chip.synapse_memory_bits_per_core, "axons_out": chip.axons_out_per_core}
    return program


def verification(program: emulator.Program, lowered: ir.Graph, qgraph: ir.Graph, spec: HwSpec,
                 spikes: NDArray[Any] | Callable[[int, int], NDArray[Any]], labels: NDArray[Any] | None, dt: float,
                 ann_pred: NDArray[Any] | None = None, *, samples: int | None = None,
                 elements: int = CHUNK_ELEMENTS, netlist: Netlist | None = None) -> dict[str, Any]:
    """Emulate ``program`` on ``spikes`` and compare with the network-level simulations.

    ``spikes``: ``[samples, steps, n_in]`` counts, or a function ``(start, stop) → spikes`` of those
    samples (then ``samples`` gives their number), so that the inputs too are made a batch at a time.
    The emulator (fast engine) and both simulations stream over batches of samples and chunks of
    steps, each chunk array holding at most ``elements`` values: memory stays bounded however long
    the run. ``netlist``: ``to_builder(qgraph, spec).netlist()`` when the caller has it (not held
    here beyond the set-up).

    ``exact``: the emulated output spikes equal those of the quantised network run on the same fast
    engine without a mapping (its netlist: :mod:`emulator.lowering`; for TrueNorth the network
    before neuron copies), so a fault of placement, layout or copies shows;
    ``spike_mismatch``: the share of output spike counts that differ; ``agreement_float``: share
    of samples whose predicted class (most output spikes) equals the float network's; accuracies
    when ``labels`` are given; ``accuracy_drop`` = reference (ANN, or the float SNN) − emulated.
    """
    (out,) = qgraph.of_type(ir.Output)
    pop = out.inputs[0]
    if callable(spikes):
        source = spikes
        if samples is None:
            raise TypeError("verification: pass samples= with a function of (start, stop)")
        n = samples
        steps = int(source(0, min(1, n)).shape[1]) if n else 0
    else:
        arr = np.asarray(spikes)
        n, steps = int(arr.shape[0]), int(arr.shape[1])

        def source(lo: int, hi: int) -> NDArray[Any]:
            return arr[lo:hi]

    # the widest population bounds the simulations' chunk arrays (the emulator's hold its neuron copies too)
    width = max([lowered.size(p.name) for p in lowered.of_type(ir.Neuron)]
                + [qgraph.size(p.name) for p in qgraph.of_type(ir.Neuron)] + [1])
    batch, step_chunk = chunks(max(n, 1), max(steps, 1), width, elements)
    n_out = qgraph.size(pop)
    emu_counts = np.zeros((n, n_out))
    float_counts = np.zeros((n, n_out))
    exact, mismatched = True, 0
    # the netlist's engine first: its set-up's temporaries (the synapse paths) are freed before the
    # Program's set-up needs as much again, so the two peaks do not add up
    sim_q = NetworkSimulation(qgraph, spec, quantized=True, dt=dt, batch=batch, keep=(pop,), netlist=netlist)
    netlist = None
    emu = emulator.Simulator(program, engine="fast", batch=batch)
    sim_f = NetworkSimulation(lowered, spec, quantized=False, dt=dt, batch=batch, keep=(pop,))
    for lo, hi in spans(n, batch):
        x = np.asarray(source(lo, hi)).astype(np.int64)
        m = hi - lo
        if m < batch:  # the last batch: pad with silent samples, dropped below
            x = np.concatenate([x, np.zeros((batch - m, *x.shape[1:]), dtype=x.dtype)])
        emu.reset()
        sim_q.reset()
        sim_f.reset()
        for t0, t1 in spans(steps, step_chunk):
            chunk = x[:, t0:t1]
            e = emu.run(chunk).spikes[out.name][:m].astype(np.float64)
            q = sim_q.run(chunk)[pop][:m]
            f = sim_f.run(chunk)[pop][:m]
            diff = int(np.count_nonzero(e != q))
            exact = exact and diff == 0
            mismatched += diff
            emu_counts[lo:hi] += e.sum(axis=1)
            float_counts[lo:hi] += f.sum(axis=1, dtype=np.float64)
    p_emu, p_float = emu_counts.argmax(axis=1), float_counts.argmax(axis=1)
    res: dict[str, Any] = {
        "samples": n, "steps": steps,
        "exact": bool(exact),
        "spike_mismatch": float(mismatched / max(1, n * steps * n_out)),
        "agreement_float": float(np.mean(p_emu == p_float)),
    }
    if ann_pred is not None:
        res["agreement_ann"] = float(np.mean(p_emu == ann_pred))
    if labels is not None:
        y = labels[:n]
        res["accuracy_emulated"] = float(np.mean(p_emu == y))
        res["accuracy_float_snn"] = float(np.mean(p_float == y))
        if ann_pred is not None:
            res["accuracy_ann"] = float(np.mean(ann_pred == y))
        ref = res.get("accuracy_ann", res["accuracy_float_snn"])
        res["accuracy_drop"] = float(ref - res["accuracy_emulated"])
    return res


def _spike_input(x: NDArray[Any], shape: tuple[int, ...], spec: HwSpec) -> NDArray[Any]:
    """Check spiking-model data ``[batch, time, *shape]`` of spike counts the target accepts; return
    it as ``[batch, time, n]`` (a view: verification converts a batch at a time)."""
    if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != tuple(shape):
        raise CompileError(f"data for a spiking model must be spike counts [batch, time, *{tuple(shape)}]; got shape "
                           f"{x.shape}")
    if x.size and (not np.all(np.isfinite(x)) or np.any(x != np.round(x)) or x.min() < 0):
        raise CompileError("data for a spiking model must be non-negative integer spike counts (0/1 spikes); rate "
                           "code analog inputs first (compiler.passes.convert.encode_rate)")
    limit = spec.chip.max_input_count
    if x.size and x.max() > limit and not spec.chip.clip_input_counts:
        raise CompileError(f"a channel receives {int(x.max())} spikes in one step; target {spec.name} accepts at most "
                           f"{limit} ({spec.where()}: chip.max_input_count)")
    return x.reshape(len(x), x.shape[1], -1)


def compile_with_report(model: Any, target: str | HwSpec = "loihi", calibration: Any = None, *,
                        labels: Any = None, input_shape: tuple[int, ...] | None = None, dt: float = 1e-3,
                        steps: int = 100, percentile: float = 99.9, num_weight_bits: int | None = None,
                        verify: str = "sample", verify_samples: int = 128, progress: Progress | None = None,
                        test: Any = None, plasticity: Mapping[str, Any] | None = None
                        ) -> tuple[emulator.Program, CompileReport]:
    """Compile ``model`` for ``target``; return the Program and its :class:`CompileReport`.

    ``verify`` (one of :data:`VERIFY_MODES`): ``"sample"`` (default) emulates the Program on the
    first ``verify_samples`` samples of ``test`` (``x`` or ``(x, labels)``, same format as
    ``calibration``) when given, else of the calibration data, and compares it with the simulated
    quantised and float networks (``report.verification``; ``report.verified_on`` names the data);
    ``"full"`` uses every sample; ``"off"`` skips it. Spiking models: verification needs data
    (``calibration`` or ``test``); without any it is skipped.

    ``plasticity``: ``{layer: rule}`` (a rule string or :class:`emulator.learning.LearningRule`), with
    the model's ``plasticity`` module attributes: those projections learn on chip
    (:mod:`compiler.passes.learning`). The verification then runs the Program with learning off
    (the same Program without its rules), which is what the simulated network computes.

    Raises :class:`DoesNotFit` listing every violation when the model does not fit,
    :class:`UnsupportedOperator` for layers or targets not supported, :class:`CompileError` else.
    """
    from .passes.learning import attach, module_rules

    if verify not in VERIFY_MODES:
        raise CompileError(f"verify={verify!r}; choose one of {', '.join(map(repr, VERIFY_MODES))}")
    if verify == "sample" and verify_samples < 1:
        raise CompileError(f"verify_samples={verify_samples}; expected at least 1 (or verify='off')")
    spec = hw_specs.load(target)
    x, y = _split(calibration, labels)
    st = _Stages(progress)
    lowered, conv, ann_graph, notes, ann_out = _front(model, spec, x, y, input_shape, percentile, st,
                                                      need_calibration=True)
    ann = ann_graph is not None
    check_report, qgraph, layout = _check(lowered, spec, dt, num_weight_bits, notes)
    st.done("quantize+rules", 0.55)
    if not check_report.fits or qgraph is None:
        raise DoesNotFit(f"the model does not fit target {spec.name} ({spec.where()}): "
                         f"{len(check_report.errors)} violation(s):\n"
                         + "\n".join(f"  - {v}" for v in check_report.errors))
    report = CompileReport(check_report, conversion=conv)
    data = "calibration"
    if test is not None:
        x, y = _split(test, None)
        data = "test"
    xs = None if verify == "off" or x is None or not len(x) else (x if verify == "full" else x[:verify_samples])
    ann_pred = None
    if xs is not None and ann_out is not None and data == "calibration":
        ann_pred = ann_out[:len(xs)].argmax(axis=1)  # xs: the first samples of the calibration data
    elif xs is not None and ann_graph is not None:
        # the ANN's classes now, so that its weights are freed before the Program is built and emulated
        (o,) = ann_graph.of_type(ir.Output)
        rows = max(1, CHUNK_ELEMENTS // max(1, max(ann_graph.size(v.name) for v in ann_graph)))
        ann_pred = np.concatenate([evaluate_analog(ann_graph, xs[i:i + rows])[o.name].argmax(axis=1)
                                   for i in range(0, len(xs), rows)])  # in batches: memory stays bounded
    ann_graph = ann_out = None
    meta: dict[str, Any] = {"compiler": {"target": spec.name, "dt": dt, "steps": steps,
                                         "converted": ann, "input_scale": conv.input_scale if conv else None}}
    rules = attach(qgraph, {**module_rules(model), **(plasticity or {})}, spec)
    # the declaration the Program is built from is the netlist verification runs (one route per
    # neuron: the Program is built from the replicated graph, verification runs the one before
    # copies; with learning rules, verification runs the Program without them: its own netlist)
    one_route = families.get(spec.family).hardware.ONE_ROUTE_PER_NEURON
    builder = None if one_route or xs is None or rules else to_builder(qgraph, spec)
    program = _build_into(check_report, qgraph, spec, meta, layout, rules, builder)
    netlists = [] if builder is None else [builder.netlist()]
    builder = None
    st.done("emit", 0.8)
    if program is None:
        raise DoesNotFit("the model does not fit: " + str(check_report.violations[-1]))
    verified = program if not rules else emit(qgraph, spec, metadata=meta, layout=layout)
    if verify == "off":
        report.verified_on = "not verified (verify='off')"
    elif xs is None or x is None:
        report.verified_on = "not verified (no calibration or test data)"
    else:
        n = len(xs)
        report.verified_on = (f"{data} samples 0..{n - 1} ({'all' if n == len(x) else f'first {n} of {len(x)}'}), "
                              f"fast engine vs the simulated network"
                              + (" (learning off: the Program without its rules)" if rules else ""))
        source: NDArray[Any] | Callable[[int, int], NDArray[Any]]
        if ann:
            assert conv is not None
            scale = conv.input_scale
            samples_x = xs

            def source(lo: int, hi: int) -> NDArray[Any]:
                return encode_rate(samples_x[lo:hi], steps, scale)

        else:
            source = _spike_input(xs, lowered.of_type(ir.Input)[0].shape, spec)
        report.verification = verification(verified, lowered, qgraph, spec, source, y, dt, ann_pred, samples=n,
                                           netlist=netlists.pop() if netlists else None)  # not held here
        st.done("verify", 1.0)
    report.timings = dict(st.timings)
    return program, report
