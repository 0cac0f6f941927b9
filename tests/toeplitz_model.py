"""A faithful small stand-in for pesto-pitch's ``ToeplitzLinear`` (a ``Conv1d`` subclass whose forward
takes ``(B, L)`` and returns ``(B, L')``): a valid model convlens must analyse (real models round 2)."""

import torch
import torch.nn.functional as F
from torch import nn


class ToeplitzLinear(nn.Conv1d):
    """A linear map with a Toeplitz matrix, computed as a 1-D convolution of the flattened input."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(1, 1, kernel_size=n_in + n_out - 1, padding=n_out - 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.unsqueeze(1)).squeeze(1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5, padding=2)
        self.toe = ToeplitzLinear(4 * 32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).flatten(1)  # (B, 128)
        return self.toe(h)[:, :3]  # (B, 3)


def build() -> nn.Module:
    torch.manual_seed(0)
    return Net()
