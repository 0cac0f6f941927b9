"""MTCNN's PNet and RNet as ``convlens analyze --factory`` builders (architecture only).

The layer names and shapes are those of ``facenet_pytorch.models.mtcnn`` (facenet-pytorch 2.6.0,
MIT licence, Copyright (c) 2019 Timothy Esler), so the state dicts ``pnet.pt`` / ``rnet.pt`` that the
wheel ships load into them unchanged. Nothing is downloaded and no weights are loaded here: convlens
loads the file given on the command line (``torch.load(weights_only=True)``).

Both networks return a tuple ``(box_regression, face_probability)`` like the originals.
"""

from __future__ import annotations

import torch
from torch import nn


class PNet(nn.Module):
    """MTCNN proposal net: fully convolutional, any input of at least 12x12 RGB."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box regression map (N, 4, h, w) and face probability map (N, 2, h, w)."""
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """MTCNN refinement net: 24x24 RGB crops in, (box regression, face probability) out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box regression (N, 4) and face probability (N, 2)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


def pnet() -> nn.Module:
    """``--factory`` entry point for ``pnet.pt``."""
    return PNet()


def rnet() -> nn.Module:
    """``--factory`` entry point for ``rnet.pt``."""
    return RNet()
