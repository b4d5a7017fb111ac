"""Train a small ReLU network on synthetic data, convert and compile it for every target.

    python examples/compile_relu_mlp.py

Writes ``mlp_state.pt`` + ``mlp_calibration.npz`` into the current directory and shows the
equivalent command line (the model class is ``examples.compile_relu_mlp:MLP``; run from the
repository root).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import compiler
from spikeforge.errors import CompileError

OUT = Path.cwd()


class MLP(nn.Module):
    """12 inputs in [0, 1] → 32 ReLU → 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(4, 12, generator=torch.Generator().manual_seed(123))
    y = torch.randint(0, 4, (n,), generator=g)
    return (centres[y] + 0.1 * torch.randn(n, 12, generator=g)).clamp(0, 1), y


def main() -> None:
    torch.manual_seed(0)
    x, y = blobs(512)
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    x_test, y_test = blobs(200, seed=1)
    for target in ("loihi", "xylo", "truenorth"):
        try:
            program, report = compiler.compile_with_report(model, target, (x_test, y_test), steps=100)
        except CompileError as exc:
            print(f"{target}: {exc}")
            continue
        v = report.verification
        print(f"{target:10} {program.n_neurons} neurons on {program.n_cores} core(s): ANN accuracy "
              f"{v['accuracy_ann']:.3f}, emulated {v['accuracy_emulated']:.3f} (drop {v['accuracy_drop']:+.3f}), "
              f"agreement with the ANN {v['agreement_ann']:.3f}, bit-exact vs simulation: {v['exact']}")
    torch.save(model.state_dict(), OUT / "mlp_state.pt")
    np.savez(OUT / "mlp_calibration.npz", x=x_test.numpy(), y=y_test.numpy())
    print("\nfrom the command line (repository root):\n  spikeforge compile mlp_state.pt "
          "--model-class examples.compile_relu_mlp:MLP --target loihi --calibration mlp_calibration.npz "
          "-o mlp.sfp")


if __name__ == "__main__":
    main()
