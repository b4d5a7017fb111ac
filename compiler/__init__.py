"""The compiler: trained PyTorch SNNs and ReLU networks → a Program for a target chip.

>>> program = compiler.compile(model, target="loihi", calibration=x_cal)        # doctest: +SKIP
>>> program.compile_report.summary()                                           # doctest: +SKIP
>>> report = compiler.check(model, target="xylo"); report.fits, report.violations   # doctest: +SKIP

``compile`` returns an :class:`emulator.Program`; its :class:`~compiler.report.CompileReport`
(check, conversion, quantisation, verification, timings) is attached as
``program.compile_report`` (not saved in the file) and a compact summary is in
``program.metadata["compiler"]`` (saved). ``compile_with_report`` returns both.
``compiler.nn`` holds the trainable neuron modules (imports torch); importing ``compiler``
itself does not import torch.
"""

from __future__ import annotations

from typing import Any

from .pipeline import check, compile_with_report
from .report import CheckReport, CompileReport

__all__ = ["compile", "compile_with_report", "check", "CheckReport", "CompileReport"]


def compile(model: Any, target: Any = "loihi", calibration: Any = None, **kwargs: Any) -> Any:
    """Compile ``model`` for ``target``: a torch module, a ``torch.export`` archive (``.pt2``) or
    TorchScript file by path (or the loaded ``ExportedProgram`` / ``ScriptModule``), or an
    ``ir.Graph``; ONNX and NIR frontends are not available yet.

    Keyword arguments: ``labels`` (for accuracy), ``input_shape`` (per sample; inferred from a
    first Linear), ``dt`` (s per step, default 1e-3: maps time constants to decays), ``steps``
    (rate-coding window for converted networks and verification, default 100), ``percentile``
    (threshold balancing, default 99.9), ``num_weight_bits`` (Loihi), ``verify_samples`` (128),
    ``progress`` (callback ``(stage, fraction)``), ``test`` (held-out ``x`` or ``(x, labels)`` for the
    verification; default: the calibration data). Returns the Program (report attached as
    ``program.compile_report``). Raises ``DoesNotFit`` listing every violation when it does not fit.
    """
    program, _ = compile_with_report(model, target, calibration, **kwargs)
    return program
