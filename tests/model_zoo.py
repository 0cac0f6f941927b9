"""Small models imported by name (``--factory tests.model_zoo:NAME``) in the model-data tests.

Every factory appends the module it built to :data:`BUILT`, so a test can look at what the model
was fed (:class:`Recorder` keeps the input of every call)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convlens import examples

BUILT: list[nn.Module] = []


class Recorder(nn.Module):
    """Keeps a copy of every input it saw (``calls``) and passes it on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.detach().clone())
        return x


def _keep(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in m.parameters():
        nn.init.normal_(p, std=0.3)
    BUILT.append(m)
    return m


def rgb() -> nn.Module:
    """Reads (N, 3, 8, 8)."""
    return _keep(
        nn.Sequential(
            Recorder(),
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 5),
        )
    )


def grey16() -> nn.Module:
    """Reads (N, 1, 16, 16): fixed size through its Linear layer."""
    return _keep(
        nn.Sequential(
            Recorder(),
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 16 * 16, 5),
        )
    )


def chain() -> nn.Module:
    """conv 3x3 p1 -> maxpool 2 -> conv 3x3 s2 p1 -> conv 1x2 (receptive fields by hand)."""
    return _keep(examples.chain())


class _Heads(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> Any:
        feat = torch.relu(self.conv(x))
        logits = self.fc(feat.flatten(1))
        if self.kind == "tuple":
            return logits, feat
        return {"feat": feat, "logits": logits}


def tuple_out() -> nn.Module:
    return _keep(_Heads("tuple"))


def dict_out() -> nn.Module:
    return _keep(_Heads("dict"))


class Unused(nn.Module):
    """A conv that forward never calls (``unused``), beside one that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Conv2d(1, 2, 3)
        self.c = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c(x)).flatten(1))


def unused() -> nn.Module:
    return _keep(Unused())


class _Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ = self.c(x)
        raise ZeroDivisionError("this model always fails in forward")


def raises() -> nn.Module:
    return _keep(_Raises())


def one_d() -> nn.Module:
    """Reads (N, 2, L): Conv1d front end."""
    return _keep(examples.one_d())


def column() -> nn.Module:
    """Reads (N, 1, L, 1): a CREPE-like front end whose first kernels run along the height (9x1)."""
    return _keep(
        nn.Sequential(
            nn.Conv2d(1, 4, (9, 1)),
            nn.ReLU(),
            nn.Conv2d(4, 4, (5, 1), stride=(2, 1)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        )
    )


def three_d() -> nn.Module:
    """Reads (N, 1, D, H, W): Conv3d."""
    return _keep(
        nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(4, 4, (1, 3, 3)),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
    )


class NHWC(nn.Module):
    """Reads channels last (N, 8, 8, 1), as a TensorFlow export does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x.permute(0, 3, 1, 2))).flatten(1))


def nhwc() -> nn.Module:
    return _keep(NHWC())
