"""The compiler: trained PyTorch SNNs and ReLU networks → a Program for a target chip.

>>> program = compiler.compile(model, target="loihi", calibration=x_cal)                  # doctest: +SKIP
>>> program, report = compiler.compile_with_report(model, "loihi", x_cal); print(report)  # doctest: +SKIP
>>> report = compiler.check(model, target="xylo"); report.fits, report.violations         # doctest: +SKIP

``compile`` returns an :class:`emulator.Program`; a compact summary of its compile report is in
``program.metadata["compiler"]`` (saved with the Program). ``compile_with_report`` returns the
Program and its full :class:`~compiler.report.CompileReport` (check, conversion, quantisation,
verification, timings). ``compiler.nn`` holds the trainable neuron modules (imports torch);
importing ``compiler`` itself does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from hw_specs import HwSpec

if TYPE_CHECKING:  # the passes load on first use: the register-level builder needs only compiler.backend
    import emulator

    from .pipeline import VERIFY_MODES, Progress, check, compile_with_report
    from .report import CheckReport, CompileReport

__all__ = ["compile", "compile_with_report", "check", "CheckReport", "CompileReport", "VERIFY_MODES"]

_LAZY = {"check": "pipeline", "compile_with_report": "pipeline", "VERIFY_MODES": "pipeline", "Progress": "pipeline",
         "CheckReport": "report", "CompileReport": "report"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compile(model: Any, target: str | HwSpec = "loihi", calibration: Any = None, *, labels: Any = None,
            input_shape: tuple[int, ...] | None = None, dt: float = 1e-3, steps: int = 100, percentile: float = 99.9,
            num_weight_bits: int | None = None, verify: str = "sample", verify_samples: int = 128,
            progress: Progress | None = None, test: Any = None, plasticity: Any = None) -> emulator.Program:
    """Compile ``model`` for ``target`` and return the :class:`emulator.Program`.

    ``model``: a torch module, a ``torch.export`` archive (``.pt2``) or TorchScript file by path (or
    the loaded ``ExportedProgram`` / ``ScriptModule``), or an ``ir.Graph``. ONNX and NIR models are
    not supported.

    Keyword arguments: ``labels`` (for accuracy), ``input_shape`` (per sample; inferred from a
    first Linear), ``dt`` (s per step, default 1e-3: maps time constants to decays), ``steps``
    (rate-coding window for converted networks and verification, default 100), ``percentile``
    (threshold balancing, default 99.9), ``num_weight_bits`` (Loihi), ``verify`` (``"sample"``,
    the default: the first ``verify_samples`` (128) samples of ``test``, else of the calibration
    data; ``"full"``: all of them; ``"off"``: no verification), ``progress`` (callback
    ``(stage, fraction)``), ``test`` (held-out ``x`` or ``(x, labels)`` for the verification),
    ``plasticity`` (``{layer: rule}``: those projections learn on chip; also read from a module's
    ``plasticity`` attribute; ``docs/learning.md``).
    Raises ``DoesNotFit`` listing every violation when the model does not fit. The full report:
    :func:`compile_with_report`.
    """
    from .pipeline import compile_with_report

    program, _ = compile_with_report(model, target, calibration, labels=labels, input_shape=input_shape, dt=dt,
                                     steps=steps, percentile=percentile, num_weight_bits=num_weight_bits,
                                     verify=verify, verify_samples=verify_samples, progress=progress, test=test,
                                     plasticity=plasticity)
    return program
