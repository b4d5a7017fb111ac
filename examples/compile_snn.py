"""Train a small spiking network with compiler.nn (surrogate gradients) and compile it for Loihi.

    python examples/compile_snn.py

The neurons follow Loihi's datapath in training (12-bit decays, strict threshold, reset to zero,
one step per projection), so the emulated Program classifies like the trained model.
"""

from __future__ import annotations

import torch
from torch import nn

import compiler
from compiler import nn as snn


def patterns(n: int, steps: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of Poisson spike trains over 16 channels, each class with its own rates."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.rand(3, 16, generator=torch.Generator().manual_seed(7)) * 0.4
    y = torch.randint(0, 3, (n,), generator=g)
    return (torch.rand(n, steps, 16, generator=g) < rates[y][:, None]).float(), y


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), snn.CubaLIF(tau_syn=5e-3, tau_mem=20e-3, threshold=1.0),
                          nn.Linear(32, 3), snn.LIF(tau_mem=20e-3, threshold=1.0))
    x, y = patterns(128)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        counts = snn.run(model, x).sum(dim=1)
        nn.functional.cross_entropy(counts, y).backward()
        opt.step()
    x_test, y_test = patterns(128, seed=1)
    with torch.no_grad():
        acc = (snn.run(model, x_test).sum(dim=1).argmax(1) == y_test).float().mean()
    program, report = compiler.compile_with_report(model, "loihi", (x_test, y_test))
    v = report.verification
    print(report.check.table())
    print(f"\ntorch model accuracy {acc:.3f}; emulated Program {v['accuracy_emulated']:.3f}; "
          f"agreement with the float network {v['agreement_float']:.3f}; bit-exact vs simulation: {v['exact']}")


if __name__ == "__main__":
    main()
