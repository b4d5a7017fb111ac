"""The torch frontend: capture, lowerings, folding, unsupported modules."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from compiler import ir  # noqa: E402
from compiler import nn as snn  # noqa: E402
from compiler.frontends.torch import from_torch  # noqa: E402
from compiler.passes.convert import evaluate_analog  # noqa: E402
from spikeforge.errors import CompileError, UnsupportedOperator  # noqa: E402


def _analog(model: nn.Module, shape: tuple[int, ...], x: torch.Tensor) -> None:
    """The captured graph computes what the torch model computes."""
    g = from_torch(model.eval(), shape)
    (out,) = g.of_type(ir.Output)
    got = evaluate_analog(g, x.numpy())[out.name]
    np.testing.assert_allclose(got, model(x).detach().double().numpy().reshape(len(x), -1), rtol=1e-5, atol=1e-5)


def test_cnn_with_batchnorm_pool_dropout_identity():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), bn, nn.ReLU(), nn.AvgPool2d(2), nn.Identity(),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 3 * 3, 5), nn.BatchNorm1d(5))
    model[-1].running_mean.uniform_(-1, 1)
    _analog(model, (2, 6, 6), torch.rand(7, 2, 6, 6))
    g = from_torch(model.eval(), (2, 6, 6))
    assert not any(type(n).__name__.startswith("BatchNorm") for n in g)  # folded


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = h + self.fc2(h)
        return self.out(torch.flatten(h, 1))


def test_fx_residual_and_functions():
    torch.manual_seed(1)
    model = Residual()
    _analog(model, (8,), torch.rand(5, 8))
    g = from_torch(model, (8,))
    assert len(g.of_type(ir.Add)) == 1


def test_spiking_modules_become_neurons():
    model = nn.Sequential(nn.Linear(4, 6), snn.CubaLIF(tau_syn=5e-3, tau_mem=20e-3, threshold=0.7),
                          nn.Linear(6, 2), snn.IF(threshold=2.0))
    g = from_torch(model, (4,))
    n1, n2 = g.of_type(ir.Neuron)
    assert (n1.kind, n1.tau_syn, n1.tau_mem, n1.threshold) == ("CUBA", 5e-3, 20e-3, 0.7)
    assert (n2.kind, n2.threshold, n2.datapath) == ("IF", 2.0, "loihi")


def test_unsupported_module_names_path_type_and_supported():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Tanh()))
    with pytest.raises(UnsupportedOperator) as err:
        from_torch(model, (4,))
    msg = str(err.value)
    assert "'1.0'" in msg and "Tanh" in msg and "Linear" in msg and "Conv2d" in msg
    assert isinstance(err.value, NotImplementedError) and isinstance(err.value, CompileError)


def test_unsupported_function_and_batchnorm_placement():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    with pytest.raises(UnsupportedOperator, match="sigmoid"):
        from_torch(M(), (3,))
    with pytest.raises(UnsupportedOperator, match="BatchNorm is folded"):
        from_torch(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.BatchNorm1d(3)).eval(), (3,))


def test_onnx_and_nir_paths_are_not_supported(tmp_path):
    import compiler

    for suffix in (".onnx", ".nir"):
        with pytest.raises(UnsupportedOperator, match="not supported"):
            compiler.compile(str(tmp_path / f"m{suffix}"), target="loihi")


def test_shape_queries_in_view_and_reshape():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            h = torch.relu(self.c(x))
            h = h.view(h.size(0), -1)
            return self.fc(h.reshape(h.shape[0], -1))

    torch.manual_seed(0)
    _analog(M(), (1, 6, 6), torch.rand(3, 1, 6, 6))
