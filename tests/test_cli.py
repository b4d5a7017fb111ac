"""The CLI as a user runs it: real files, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import emulator
from spikeforge.cli import main


def small_program(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    b = emulator.ProgramBuilder("loihi")
    x = b.input("in", 6)
    h = b.population("h", 5, du=1024, dv=512, vth=20)
    b.connect(x, h, weights=rng.integers(0, 200, (5, 6)))
    b.output("out", h)
    return b.build().save(tmp_path / "net.sfp")


def test_targets_lists_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("loihi", "xylo", "truenorth", "tiny"):
        assert name in out
    assert "1024" in out  # loihi neurons per core


def test_targets_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "show", "loihi", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chip"]["neurons_per_core"] == 1024
    assert data["registers"]["du"] == [0, 4095]


def test_targets_show_unknown_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "show", "loihi9"]) == 1
    err = capsys.readouterr().err
    assert "unknown target 'loihi9'" in err and "Traceback" not in err


def test_inspect_reports_resources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small_program(tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["neurons"] == 5 and data["cores_used"] == 1
    assert data["per_core"][0]["axons_in"] == 6
    assert data["synapses"] == int(emulator.Program.load(path).syn_axon.size)


def test_emulate_writes_what_the_api_computes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small_program(tmp_path)
    spikes = (np.random.default_rng(1).random((2, 30, 6)) < 0.3).astype(np.int8)
    np.savez(tmp_path / "in.npz", **{"in": spikes})
    out = tmp_path / "out.npz"
    assert main(["emulate", str(path), "--input", str(tmp_path / "in.npz"), "--probe", "v", "--chunk", "7",
                 "-o", str(out)]) == 0
    got = np.load(out)
    want = emulator.run(emulator.Program.load(path), spikes, probes=["h.v"])
    np.testing.assert_array_equal(got["spikes/out"], want.spikes["out"])
    np.testing.assert_array_equal(got["probes/h.v"], want.probes["h.v"])
    np.testing.assert_array_equal(got["synaptic_ops"], want.synaptic_ops)


def test_emulate_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = small_program(tmp_path)
    png = tmp_path / "trace.png"
    assert main(["emulate", str(path), "--steps", "20", "--probe", "u,v", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content", [b"", b"not a program at all", b"\x89SFP\r\n\x1a\n" + b"\0" * 40])
def test_emulate_corrupt_program_is_a_clean_error(tmp_path: Path, content: bytes,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sfp"
    bad.write_bytes(content)
    assert main(["emulate", str(bad), "--steps", "5"]) == 1
    err = capsys.readouterr().err
    assert "bad.sfp" in err and "Traceback" not in err


def test_emulate_wrong_input_shape_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small_program(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 10, 7), dtype=np.int8))
    assert main(["emulate", str(path), "--input", str(tmp_path / "x.npy")]) == 1
    assert "expected [batch=1, time, channels=6]" in capsys.readouterr().err


def test_console_script_starts_without_torch() -> None:
    code = ("import sys, spikeforge.cli; spikeforge.cli.build_parser(); import emulator, runtime; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
