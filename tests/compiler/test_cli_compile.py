"""``spikeforge compile``: a state dict + module:Class → .sfp; --check exits 1 when it does not fit."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import emulator  # noqa: E402
from spikeforge.cli import main  # noqa: E402

MODEL = textwrap.dedent('''
    import torch

    class Net(torch.nn.Module):
        def __init__(self, width: int = 16, inputs: int = 12) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(inputs, width)
            self.fc2 = torch.nn.Linear(width, 3)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    class Wide(Net):
        def __init__(self) -> None:
            super().__init__(width=16, inputs=40)
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "cli_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cli_model

    torch.manual_seed(0)
    net = cli_model.Net()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    torch.save(cli_model.Wide().state_dict(), tmp_path / "wide.pt")
    x = torch.rand(32, 12)
    np.savez(tmp_path / "cal.npz", x=x.numpy(), y=net(x).argmax(1).numpy())
    return tmp_path


def test_compile_writes_a_program(project, capsys):
    rc = main(["compile", "sd.pt", "--model-class", "cli_model:Net", "--target", "loihi", "-o", "m.sfp",
               "--calibration", "cal.npz", "--steps", "50", "--report", "r.json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    program = emulator.Program.load(project / "m.sfp")
    assert program.target == "loihi" and program.metadata["compiler"]["converted"]
    assert "exact=True" in out and "100%" in err  # summary on stdout, progress bar on stderr
    assert (project / "r.json").stat().st_size > 0


def test_check_exit_codes(project, capsys):
    assert main(["compile", "sd.pt", "--model-class", "cli_model:Net", "--target", "xylo", "--check"]) == 0
    assert "FITS" in capsys.readouterr().out
    assert main(["compile", "wide.pt", "--model-class", "cli_model:Wide", "--target", "xylo", "--check"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "input_channels" in out and "40 > 16" in out


def test_errors_are_one_line(project, capsys):
    assert main(["compile", "sd.pt", "--target", "loihi", "-o", "m.sfp"]) == 1
    assert "--model-class" in capsys.readouterr().err
    assert main(["compile", "model.onnx", "-o", "m.sfp"]) == 1
    assert "not supported" in capsys.readouterr().err
    assert main(["compile", "sd.pt", "--model-class", "nope_module:Net", "-o", "m.sfp"]) == 1
    assert "cannot import" in capsys.readouterr().err


def test_verify_option(project, capsys):
    rc = main(["compile", "sd.pt", "--model-class", "cli_model:Net", "--target", "loihi", "-o", "m.sfp",
               "--calibration", "cal.npz", "--steps", "20", "--verify", "sample", "--verify-samples", "5", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "samples=5" in out and "calibration samples 0..4 (first 5 of 32)" in out
    rc = main(["compile", "sd.pt", "--model-class", "cli_model:Net", "--target", "loihi", "-o", "m.sfp",
               "--calibration", "cal.npz", "--steps", "20", "--verify", "off", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "exact=" not in out and "not verified (verify='off')" in out
