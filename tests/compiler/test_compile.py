"""End to end: models compile for every target where they fit, and the emulated Program agrees
with the simulation of the same quantised network (exactly) and with the float model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import compiler  # noqa: E402
import emulator  # noqa: E402
from compiler import nn as snn  # noqa: E402
from spikeforge.errors import CompileError, DoesNotFit, UnsupportedOperator  # noqa: E402


def _blobs(n: int, dim: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny synthetic classification set in [0, 1]^dim: one Gaussian blob per class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(classes, dim, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = (centres[y] + 0.08 * torch.randn(n, dim, generator=g)).clamp(0, 1)
    return x, y


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 150) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def relu_mlp():
    torch.manual_seed(0)
    x, y = _blobs(256, 12, 4)
    model = _train(nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4)), x, y)
    return model, x, y


@pytest.mark.parametrize("target", ["loihi", "tiny", "xylo"])
def test_relu_mlp_compiles_and_classifies(relu_mlp, target):
    model, x, y = relu_mlp
    program, report = compiler.compile_with_report(model, target, (x[:96], y[:96]), steps=100)
    v = report.verification
    assert v["exact"], v  # the Program == its quantised netlist, both on the fast engine
    assert v["agreement_ann"] >= 0.9, v  # stated threshold for converted networks
    assert v["accuracy_drop"] <= 0.1, v
    assert program.target == target and not hasattr(program, "compile_report")
    assert program.metadata["compiler"]["target"] == target


def test_cnn_with_pooling_compiles_on_tiny_multi_core():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 3)).eval()
    x = torch.rand(48, 1, 8, 8)
    program, report = compiler.compile_with_report(model, "tiny", (x, model(x).argmax(1)), input_shape=(1, 8, 8),
                                                   steps=80)
    assert program.n_cores > 1
    assert report.verification["exact"]
    assert report.verification["agreement_ann"] >= 0.85


def test_held_out_test_data_and_multi_chip(relu_mlp):
    """Three 120-wide layers need more than one chip of ``tiny`` (8 cores of 64 neurons): both chips."""
    _, x, y = relu_mlp
    torch.manual_seed(5)
    model = _train(nn.Sequential(nn.Linear(12, 120), nn.ReLU(), nn.Linear(120, 120), nn.ReLU(), nn.Linear(120, 120),
                                 nn.ReLU(), nn.Linear(120, 4)), x[:128], y[:128], epochs=60)
    program, report = compiler.compile_with_report(model, "tiny", (x[:128], y[:128]), test=(x[128:192], y[128:192]),
                                                   steps=60)
    assert program.n_cores > program.spec.chip.cores_per_chip
    v = report.verification
    assert v["samples"] == 64 and v["exact"] and v["agreement_ann"] >= 0.85, v


def test_spiking_cnn_compiles_exactly():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), snn.LIF(tau_mem=10e-3, threshold=0.5),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3), snn.LIF(tau_mem=10e-3, threshold=0.5))
    spikes = (torch.rand(6, 30, 2, 8, 8) < 0.3).float()
    program, report = compiler.compile_with_report(model, "tiny", spikes, input_shape=(2, 8, 8))
    assert report.verification["exact"] and program.n_cores >= 2


def test_residual_network_compiles():
    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 10), nn.Linear(10, 10), nn.Linear(10, 3)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = torch.relu(h + self.b(h))
            return self.c(h)

    torch.manual_seed(2)
    model = Res()
    x = torch.rand(40, 6)
    _, report = compiler.compile_with_report(model, "loihi", x, steps=60)
    assert report.verification["exact"]
    assert report.verification["agreement_ann"] >= 0.8


@pytest.mark.parametrize("target,datapath", [("loihi", "loihi"), ("tiny", "loihi"), ("xylo", "xylo")])
def test_spiking_modules_compile_exactly(target, datapath):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 20), snn.CubaLIF(tau_syn=4e-3, tau_mem=16e-3, threshold=0.5,
                                                          datapath=datapath),
                          nn.Linear(20, 4), snn.LIF(tau_mem=8e-3, threshold=0.4, datapath=datapath))
    spikes = (torch.rand(12, 40, 10) < 0.3).float()
    program, report = compiler.compile_with_report(model, target, spikes)
    v = report.verification
    assert v["exact"] and v["agreement_float"] >= 0.75, v
    # and the Program round-trips through its file
    again = emulator.Program.from_bytes(program.to_bytes())
    out = emulator.run(again, spikes.numpy().astype(np.int64)).spikes["output"]
    assert out.shape == (12, 40, 4)


def test_torch_module_predicts_the_float_network():
    """The training modules and the compiler's float model are one network (up to the delay)."""
    from compiler import ir
    from compiler.frontends.torch import from_torch
    from compiler.passes.lower import lower
    from compiler.simulate import simulate
    from hw_specs import load

    torch.manual_seed(4)
    # no bias: a bias enters u in the module but v on the chip (bias_gain matches them at steady state)
    model = nn.Sequential(nn.Linear(5, 7, bias=False), snn.CubaLIF(tau_syn=3e-3, tau_mem=12e-3, threshold=0.3))
    spikes = (torch.rand(3, 30, 5) < 0.4).float()
    torch_out = snn.run(model, spikes).detach().numpy()  # emits each spike one step after it
    low = lower(from_torch(model, (5,)))
    (pop,) = low.of_type(ir.Neuron)
    sim = simulate(low, spikes.numpy(), load("loihi"), quantized=False)[pop.name]  # input arrives one step late
    np.testing.assert_array_equal(torch_out, sim)


def test_does_not_fit_lists_every_violation():
    model = nn.Sequential(nn.Linear(20, 1200), nn.ReLU(), nn.Linear(1200, 12))
    with pytest.raises(DoesNotFit) as err:
        compiler.compile(model, "xylo", torch.rand(8, 20))
    msg = str(err.value)
    for rule in ("input_channels", "neurons_per_core", "readout_size"):
        assert rule in msg


def test_truenorth_target(relu_mlp):
    """Binary crossbars x 4 axon-type weights (the partitioner's fit), IF neurons with subtractive reset."""
    model, x, y = relu_mlp
    program, report = compiler.compile_with_report(model, "truenorth", (x[:64], y[:64]), steps=100)
    v = report.verification
    assert v["exact"], v
    assert v["agreement_ann"] >= 0.9, v
    assert all(p.weight_error < 0.4 for p in report.quant.projections)
    assert set(np.unique(program.syn_weight)) <= {1}
    # the hidden layer is twinned (one route per neuron, two axons per input); the output is not
    assert program.populations["1"].size == 64 and program.populations["readout"].size == 4
    fan_out = np.bincount(program.route_src, minlength=program.n_neurons)
    assert fan_out.max() <= 1


def test_truenorth_hidden_layer_wider_than_a_core():
    """A 300-neuron layer spans two 256-neuron cores: the layer before it is built from neuron copies
    (one route each), and the Program still equals the simulation of the unreplicated network."""
    torch.manual_seed(1)
    x, y = _blobs(64, 16, 4, seed=1)
    model = nn.Sequential(nn.Linear(16, 48), nn.ReLU(), nn.Linear(48, 300), nn.ReLU(), nn.Linear(300, 4))
    program, report = compiler.compile_with_report(model, "truenorth", (x, y), steps=40)
    assert report.verification["exact"], report.verification
    assert np.bincount(program.route_src, minlength=program.n_neurons).max() <= 1
    layers = {row["layer"]: row for row in report.check.layers}
    assert 3.5 < layers["1"]["copies"] <= 4  # 2 cores x 2 axon copies (fewer where a weight fits to 0)
    assert program.populations["1"].size == layers["1"]["neurons"] > 3.5 * 48
    assert "copies" in report.check.table()


def test_truenorth_convolutions_are_cut_in_spatial_patches():
    """Conv layers on TrueNorth: each core holds a patch of positions with all channels (neurons
    ordered by lowest input), so few copies are needed for one route per neuron; still bit-exact."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
                          nn.Conv2d(8, 8, 4, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))
    x = torch.rand(12, 2, 16, 16)
    program, report = compiler.compile_with_report(model, "truenorth", x, steps=20, input_shape=(2, 16, 16))
    assert report.verification["exact"], report.verification
    layers = {row["layer"]: row for row in report.check.layers}
    # channel-major cuts (a strip of one channel per core) needed 14.2 and 8.4 copies per neuron
    assert layers["1"]["copies"] < 7 and layers["3"]["copies"] < 4, layers
    assert np.bincount(program.route_src, minlength=program.n_neurons).max() <= 1


def test_truenorth_rejects_leaky_neurons():
    model = nn.Sequential(nn.Linear(4, 3), snn.LIF(tau_mem=5e-3))
    with pytest.raises(UnsupportedOperator, match="TrueNorth"):
        compiler.compile(model, "truenorth")


def test_spiking_model_data_is_checked():
    model = nn.Sequential(nn.Linear(4, 3), snn.LIF(tau_mem=5e-3))
    with pytest.raises(CompileError, match=r"spike counts \[batch, time"):
        compiler.compile(model, "loihi", torch.rand(5, 4))
    with pytest.raises(CompileError, match="non-negative integer spike counts"):
        compiler.compile(model, "loihi", torch.rand(5, 10, 4))
    with pytest.raises(CompileError, match="accepts at most 1"):
        compiler.compile(model, "loihi", torch.full((5, 10, 4), 3.0))


def test_relu_network_needs_calibration_to_compile_but_not_to_check():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(CompileError, match="calibration="):
        compiler.compile(model, "loihi")
    report = compiler.check(model, "loihi")
    assert report.fits and any("uniform random" in n for n in report.notes)
