"""Byte identity: Programs, traces and compile reports match the committed fixtures.

``tests/fixtures/programs.py`` holds the recipes (builder-made and compiled Programs of every
family); the fixtures next to it were written by that module. A restructuring of the compiler,
back end or engines must leave every byte of every Program, every integer of every trace (on
both engines) and every figure of every compile report unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.programs import RECIPES, trace_arrays

import emulator

HERE = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module", params=sorted(RECIPES))
def built(request: Any) -> tuple[str, Any]:
    return request.param, RECIPES[request.param]()


def test_program_bytes_identical(built: tuple[str, Any]) -> None:
    name, (program, _inputs, _probes, _report) = built
    assert program.to_bytes() == (HERE / f"{name}.sfp").read_bytes()


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_trace_identical(built: tuple[str, Any], engine: str) -> None:
    name, _ = built
    stored = np.load(HERE / f"{name}.trace.npz")
    program = emulator.Program.load(HERE / f"{name}.sfp")
    inputs = stored["inputs"]
    if engine == "reference":
        inputs = inputs[:1, :20]  # the definition is slow; the first sample's first steps suffice
    got = trace_arrays(program, inputs, [str(p) for p in stored["probes"]], engine)
    for key, arr in got.items():
        want = stored[key]
        if engine == "reference":
            want = want[:1, :20]
        np.testing.assert_array_equal(arr, want, err_msg=f"{name}: {key} ({engine})")
    assert set(got) == {k for k in stored.files if k not in ("inputs", "probes")}


def _same(a: Any, b: Any, where: str) -> None:
    """Equal JSON values; floats to 1e-9 relative (BLAS may sum in another order), the rest exactly."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), where
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_compile_report_identical(built: tuple[str, Any]) -> None:
    name, (_program, _inputs, _probes, report) = built
    path = HERE / f"{name}.report.json"
    if report is None:
        assert not path.exists()
        return
    _same(report, json.loads(path.read_text()), name)
