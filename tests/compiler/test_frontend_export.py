"""Saved models: ``torch.export`` archives and TorchScript files compile like the in-memory module."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import compiler  # noqa: E402
import emulator  # noqa: E402
from compiler import nn as snn  # noqa: E402
from compiler.frontends import saved  # noqa: E402
from compiler.frontends.torch import from_torch  # noqa: E402
from compiler.neurons import HPARAMS_BUFFER, from_hparams  # noqa: E402
from spikeforge.cli import main  # noqa: E402
from spikeforge.errors import CompileError, UnsupportedOperator  # noqa: E402


def _export(model: nn.Module, x: torch.Tensor, path) -> str:
    torch.export.save(torch.export.export(model, (x[:2],)), str(path))
    return str(path)


def _trace(model: nn.Module, x: torch.Tensor, path) -> str:
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, (x[:2],), check_trace=False), str(path))
    snn.reset(model)
    return str(path)


def _script(model: nn.Module, x: torch.Tensor, path) -> str:
    torch.jit.save(torch.jit.script(model), str(path))
    return str(path)


def _relu_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    return model, torch.rand(24, 8), {}


def _spiking_mlp():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 12), snn.LIF(tau_mem=16e-3, threshold=0.6), nn.Linear(12, 4),
                          snn.CubaLIF(tau_syn=4e-3, tau_mem=12e-3, threshold=0.4)).eval()
    return model, (torch.rand(6, 20, 8) < 0.3).float(), {}


def _conv_net():
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-0.3, 0.3)
    bn.running_var.uniform_(0.5, 1.5)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), bn, nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 3 * 3, 3)).eval()
    return model, torch.rand(16, 1, 6, 6), {"input_shape": (1, 6, 6)}


MODELS = {"relu_mlp": _relu_mlp, "spiking_mlp": _spiking_mlp, "conv_net": _conv_net}


def _example(name: str, x: torch.Tensor) -> torch.Tensor:
    """One step's input (spiking models are per-step functions of ``[batch, *shape]``)."""
    return x[:, 0] if name == "spiking_mlp" else x


def _compile(model, x, **kw) -> bytes:
    program = compiler.compile(model, target="loihi", calibration=x, steps=20, verify_samples=4, **kw)
    return program.to_bytes()


@pytest.mark.parametrize("name", list(MODELS))
def test_export_archive_compiles_byte_identical(name, tmp_path):
    model, x, kw = MODELS[name]()
    expected = _compile(model, x, **kw)
    path = _export(model, _example(name, x), tmp_path / "model.pt2")
    snn.reset(model)
    assert saved.detect(path) == "torch.export"
    assert _compile(path, x) == expected  # the input shape comes from the example input
    assert _compile(torch.export.load(path), x, **kw) == expected  # the ExportedProgram object too


@pytest.mark.parametrize("name,save", [("spiking_mlp", _trace), ("conv_net", _script), ("relu_mlp", _trace)])
def test_torchscript_file_compiles_byte_identical(name, save, tmp_path):
    model, x, kw = MODELS[name]()
    expected = _compile(model, x, **kw)
    path = save(model, _example(name, x), tmp_path / "model.pt")
    assert saved.detect(path) == "TorchScript"
    assert _compile(path, x, **kw) == expected


def test_model_exported_after_running_keeps_its_structure(tmp_path):
    """A neuron that ran before export has its state saved as constants; its delayed output reads them."""
    model, x, _ = _spiking_mlp()
    snn.run(model, x[:2])  # state of batch 2, the example's batch
    path = _export(model, x[:, 0], tmp_path / "ran.pt2")
    snn.reset(model)
    assert _compile(path, x) == _compile(model, x)


def test_graphs_match_the_fx_frontend_with_residual_and_functions(tmp_path):
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
            self.tail = nn.Sequential(nn.ReLU(), nn.Sequential(nn.Identity(), nn.Dropout(0.2)))

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            h = self.tail(h + self.fc2(h))
            h = self.fc2(h)  # a module called twice
            return self.out(h.view(h.size(0), -1))

    torch.manual_seed(3)
    model, x = Res().eval(), torch.rand(4, 6)

    def layout(g):
        return [(type(n).__name__, n.name, n.inputs) for n in g]

    want = layout(from_torch(model, (6,)))
    for path in (_export(model, x, tmp_path / "r.pt2"), _script(model, x, tmp_path / "s.pt"),
                 _trace(model, x, tmp_path / "t.pt")):
        assert layout(saved.from_file(path)) == want, path


def test_neuron_hyper_parameters_survive_export(tmp_path):
    lif = snn.CubaLIF(tau_syn=3e-3, tau_mem=25e-3, threshold=0.8, datapath="xylo", dt=2e-3)
    lif.threshold = 0.9  # changed after construction: the record follows
    assert HPARAMS_BUFFER not in lif.state_dict()  # state dicts are unchanged
    model = nn.Sequential(nn.Linear(4, 5), lif).eval()
    ep = torch.export.load(_export(model, torch.rand(2, 4), tmp_path / "n.pt2"))
    back = from_hparams(ep.constants[f"1.{HPARAMS_BUFFER}"])
    assert type(back) is snn.CubaLIF
    assert (back.tau_syn, back.tau_mem, back.threshold, back.datapath, back.dt) == (3e-3, 25e-3, 0.9, "xylo", 2e-3)
    assert from_hparams(getattr(snn.IF(2.0).half(), HPARAMS_BUFFER)).threshold == 2.0  # exact under .half()


def test_unsupported_module_and_operator(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Tanh()))
    x = torch.rand(2, 4)
    for path in (_export(model, x, tmp_path / "t.pt2"), _script(model, x, tmp_path / "t.pt")):
        with pytest.raises(UnsupportedOperator) as err:
            compiler.check(path, target="loihi")
        msg = str(err.value)
        assert "'1.0'" in msg and "Tanh" in msg and "Linear" in msg and "SpikingNeuron" in msg, msg

    class Sig(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    with pytest.raises(UnsupportedOperator, match="sigmoid"):
        compiler.check(_export(Sig(), torch.rand(2, 3), tmp_path / "s.pt2"), target="loihi")


def test_corrupt_and_unknown_files(tmp_path):
    good = _export(*_relu_mlp()[:2], tmp_path / "good.pt2")
    data = open(good, "rb").read()
    cases = {"noise.pt2": bytes(range(256)) * 4, "half.pt2": data[: len(data) // 2], "empty.pt": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    for name in (*cases, "other.zip"):
        with pytest.raises(CompileError, match=name) as err:
            compiler.check(str(tmp_path / name), target="loihi")
        assert "torch.export" in str(err.value) and "TorchScript" in str(err.value)
    # a damaged member inside a valid zip: torch's own error becomes a CompileError naming the file
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tmp_path / "bad.pt2", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"{not json" if item.filename.endswith("model.json") else src.read(item))
    with pytest.raises(CompileError, match="bad.pt2"):
        compiler.check(str(tmp_path / "bad.pt2"), target="loihi")
    with pytest.raises(CompileError, match="does not exist"):
        compiler.check(str(tmp_path / "missing.pt2"), target="loihi")


def test_state_dict_file_asks_for_the_class(tmp_path):
    model, _, _ = _relu_mlp()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    assert saved.detect(tmp_path / "sd.pt") == "state dict"
    with pytest.raises(CompileError, match="--model-class"):
        compiler.compile(str(tmp_path / "sd.pt"), target="loihi")


@pytest.fixture
def exported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, x, _ = _relu_mlp()
    _export(model, x, tmp_path / "model.pt2")
    _trace(model, x, tmp_path / "model.pt")
    np.savez(tmp_path / "cal.npz", x=x.numpy(), y=model(x).argmax(1).numpy())
    return tmp_path


def test_cli_compiles_export_and_torchscript_files(exported, capsys):
    rc = main(["compile", "model.pt2", "--target", "loihi", "-o", "m.sfp", "--calibration", "cal.npz",
               "--steps", "20", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    program = emulator.Program.load(exported / "m.sfp")
    assert program.target == "loihi" and program.metadata["compiler"]["converted"] and "exact=True" in out
    assert main(["compile", "model.pt", "--target", "xylo", "--check"]) == 0
    assert "FITS" in capsys.readouterr().out
    assert main(["compile", "model.pt2", "--model-class", "x:Y", "--check"]) == 0
    assert "--model-class ignored" in capsys.readouterr().err


def test_cli_errors_are_one_line(exported, capsys):
    (exported / "junk.pt2").write_bytes(b"not a model")
    assert main(["compile", "junk.pt2", "-o", "m.sfp"]) == 1
    err = capsys.readouterr().err
    assert "junk.pt2" in err and "torch.export" in err and "Traceback" not in err
