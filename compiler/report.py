"""Reports: what ``compiler.check`` answers and what ``compiler.compile_with_report`` returns.

``CheckReport``: ``.fits``, ``.violations`` (all of them), per-layer rows (neurons, fan-in,
fan-out, synapses, synapse bits, estimated cores, weight exponent/shift, threshold, quantisation
errors, worst-case input) and per-core utilisation (when a Program could be built); ``table()``.

``CompileReport``: the check report plus the conversion (threshold balancing), the quantisation
report, the verification (emulated vs. simulated, prediction agreement, accuracies; ``verified_on``
names the data it ran on) and stage timings; ``summary()`` prints it, ``to_dict()`` is JSON-ready (a
compact form goes into ``program.metadata["compiler"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .passes.convert import ConversionReport
from .passes.quantize import QuantReport
from .passes.rules import Violation

__all__ = ["CheckReport", "CompileReport"]


@dataclass
class CheckReport:
    """Does the model fit ``target``? (see the module doc)."""

    target: str
    spec_file: str
    violations: list[Violation] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    cores: list[dict[str, int]] = field(default_factory=list)
    quant: QuantReport | None = None
    notes: list[str] = field(default_factory=list)
    core_limits: dict[str, int] = field(default_factory=dict)  # neurons, axons_in, synapse_bits, axons_out

    @property
    def fits(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        return [v for v in self.violations if v.severity != "error"]

    def table(self) -> str:
        cols: tuple[str, ...] = ("layer", "neurons", "fan_in", "fan_out", "synapses", "synapse_bits", "cores", "exp",
                                 "threshold", "w_err", "max_input")
        widths: tuple[int, ...] = (24, 8, 7, 8, 10, 13, 6, 5, 10, 7, 11)
        if any("copies" in row for row in self.layers):  # TrueNorth: neurons replicated for one route each
            cols, widths = cols[:2] + ("copies",) + cols[2:], widths[:2] + (7,) + widths[2:]
        lines = [f"target {self.target} ({self.spec_file}): " + ("FITS" if self.fits else "DOES NOT FIT"), ""]
        lines.append(" ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(cols, widths,
                                                                                                strict=True))))
        for row in self.layers:
            cells = []
            for i, (c, w) in enumerate(zip(cols, widths, strict=True)):
                v = row.get(c, "")
                if isinstance(v, float):
                    v = f"{v:.2%}" if c == "w_err" else f"{v:.4g}"
                cells.append(f"{str(v)[:w]:<{w}}" if i == 0 else f"{str(v):>{w}}")
            lines.append(" ".join(cells))
        if self.cores:
            lines += ["", self.cores_table()]
        if self.violations:
            lines += ["", f"{len(self.errors)} violation(s), {len(self.warnings)} warning(s):"]
            lines += [f"  - {v}" for v in self.violations]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = table

    def cores_table(self, max_rows: int = 16) -> str:
        """Per-core utilisation (count and share of each per-core limit); the busiest ``max_rows`` cores."""
        keys = ("neurons", "axons_in", "synapse_bits", "axons_out")
        lim = self.core_limits

        def cell(row: dict[str, int], k: str) -> str:
            return f"{row[k]} ({row[k] / lim[k]:.0%})" if lim.get(k) else str(row[k])

        def load(row: dict[str, int]) -> float:
            return max((row[k] / lim[k] for k in keys if lim.get(k)), default=0.0)

        used = [r for r in self.cores if r["neurons"] or r["axons_in"]]
        rows = sorted(used, key=load, reverse=True)[:max_rows]
        out = [f"cores used: {len(used)} of {len(self.cores)} allocated"
               + (f" (busiest {len(rows)} shown)" if len(rows) < len(used) else ""),
               f"{'core':>6} " + " ".join(f"{k:>20}" for k in keys)]
        out += [f"{r['core']:>6} " + " ".join(f"{cell(r, k):>20}" for k in keys) for r in rows]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "spec_file": self.spec_file, "fits": self.fits,
                "violations": [{**vars(v), "over": v.over, "message": str(v)} for v in self.violations],
                "layers": self.layers, "cores_used": len(self.cores), "notes": list(self.notes)}


@dataclass
class CompileReport:
    """Everything ``compile`` learnt: check, conversion, quantisation, verification, timings (s)."""

    check: CheckReport
    conversion: ConversionReport | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: what the verification ran on (data and samples), or why it did not run
    verified_on: str = ""

    @property
    def quant(self) -> QuantReport | None:
        return self.check.quant

    def summary(self) -> str:
        parts = [self.check.table()]
        if self.conversion is not None:
            c = self.conversion
            parts.append(f"\nconversion: percentile {c.percentile}, input scale {c.input_scale:.4g}, "
                         + ", ".join(f"{k} λ={v:.4g}" for k, v in c.scales.items()))
        if self.quant is not None:
            parts.append("\nquantisation:\n" + self.quant.table())
        if self.verification:
            parts.append("\nverification: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.verification.items()))
        if self.verified_on:
            parts.append(("" if self.verification else "\n") + f"verified on: {self.verified_on}")
        if self.timings:
            parts.append("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        return "\n".join(parts)

    __str__ = summary

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check.to_dict(),
                "conversion": self.conversion.to_dict() if self.conversion else None,
                "quantisation": self.quant.to_dict() if self.quant else None,
                "verification": dict(self.verification), "timings": dict(self.timings)}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
