"""compiler.nn neuron modules follow each family's datapath; surrogate gradients flow."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from compiler import nn as snn  # noqa: E402
from compiler.neurons import loihi_decay, xylo_dash  # noqa: E402


def test_decay_register_mapping():
    assert loihi_decay(None, 1e-3, offset=1) == 4095 and loihi_decay(None, 1e-3) == 0
    assert loihi_decay(1e-3 / np.log(2), 1e-3) == 2048  # half the state leaks per step
    assert loihi_decay(1e-3 / np.log(2), 1e-3, offset=1) == 2047  # the chip adds the 1 back
    assert xylo_dash(16e-3, 1e-3) == 4 and xylo_dash(None, 1e-3) == 15 and xylo_dash(1e-4, 1e-3) == 0


def test_loihi_lif_strict_threshold_reset_to_zero_and_delay():
    n = snn.IF(threshold=1.0)
    x = torch.full((1, 1), 0.5)
    out = [float(n(x)) for _ in range(5)]
    # v: 0.5, 1.0 (not > 1), 1.5 → spike at step 2, emitted one step later
    assert out == [0, 0, 0, 1, 0]


def test_xylo_subtractive_multi_spike():
    n = snn.IF(threshold=1.0, datapath="xylo")
    out = n(torch.full((1, 1), 10.0))  # i = 5 after the halving decay; v = 5 → 5 spikes, v = 0
    assert float(out) == 5.0 and float(n.v) == 0.0


def test_surrogate_gradient_flows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), snn.LIF(tau_mem=10e-3, threshold=0.3))
    x = torch.rand(2, 6, 3)
    out = snn.run(model, x)
    assert out.shape == (2, 6, 4)
    out.sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
