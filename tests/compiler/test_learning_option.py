"""Plastic layers in the compiler: the ``plasticity`` option, the module attribute, ``--plasticity``."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import compiler  # noqa: E402
import emulator  # noqa: E402
from compiler import nn as snn  # noqa: E402
from compiler.passes.learning import parse_option  # noqa: E402
from spikeforge.cli import main  # noqa: E402
from spikeforge.errors import CompileError  # noqa: E402

STDP = "dw = 2^-2*x1*y0 - 2^-2*y1*x0"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), snn.LIF(tau_mem=20e-3, threshold=1.0),
                               torch.nn.Linear(3, 2), snn.LIF(tau_mem=20e-3, threshold=1.0))


def _spikes() -> torch.Tensor:
    return (torch.rand(8, 12, 4, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def test_option_and_module_attribute_make_projections_plastic():
    model = _model()
    model[2].plasticity = STDP
    program, report = compiler.compile_with_report(model, "loihi", _spikes(), plasticity={"0": "dw = 2^-3*x1*y0"})
    rules = {p.name: p.plasticity.rule if p.plasticity else None for p in program.projections}
    assert rules == {"input->1": "dw = 2^-3*x1*y0", "1->3": STDP}
    assert report.verification["exact"]  # verified with learning off: the mapping is exact
    assert program.syn_weight.size == 4 * 3 + 3 * 2  # every pair of a plastic layer is a synapse
    trace = emulator.run(program, _spikes().numpy().astype(int)[:2], probes=["1->3.w"])
    assert trace.probes["1->3.w"].shape == (2, 12, 2, 3)


def test_option_wins_over_the_attribute_and_errors_name_the_layer():
    model = _model()
    model[2].plasticity = STDP
    program = compiler.compile(model, "loihi", _spikes(), plasticity={"2": "dw = 2^-1*x1*y0"}, verify="off")
    assert program.projections[1].plasticity.rule == "dw = 2^-1*x1*y0"
    with pytest.raises(CompileError, match="layer 'nope'.*layers: 0, 1"):
        compiler.compile(_model(), "loihi", _spikes(), plasticity={"nope": STDP}, verify="off")
    with pytest.raises(CompileError, match="layer '0'.*column 6"):
        compiler.compile(_model(), "loihi", _spikes(), plasticity={"0": "dw = x1"}, verify="off")


def test_parse_option():
    assert parse_option(["fc1=dw = 2^-2*x1*y0", " fc2 = dw = x0 "]) == {"fc1": "dw = 2^-2*x1*y0", "fc2": "dw = x0"}
    with pytest.raises(CompileError, match="LAYER=RULE"):
        parse_option(["fc1"])


MODEL = textwrap.dedent('''
    import torch
    from compiler import nn as snn

    class Net(torch.nn.Sequential):
        def __init__(self) -> None:
            super().__init__(torch.nn.Linear(4, 3), snn.LIF(tau_mem=20e-3, threshold=1.0))
''')


def test_command_line_flag(tmp_path, monkeypatch, capsys):
    (tmp_path / "plastic_model.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import plastic_model

    torch.save(plastic_model.Net().state_dict(), tmp_path / "sd.pt")
    np.savez(tmp_path / "cal.npz", x=_spikes().numpy())
    rc = main(["compile", "sd.pt", "--model-class", "plastic_model:Net", "-o", "m.sfp", "--calibration", "cal.npz",
               "--plasticity", f"0={STDP}", "-q"])
    assert rc == 0, capsys.readouterr().err
    program = emulator.Program.load(tmp_path / "m.sfp")
    assert program.projections[0].plasticity == emulator.learning.LearningRule(STDP)
