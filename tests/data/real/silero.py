"""Silero VAD (16 kHz) as a PyTorch module for ``convlens analyze --factory`` (architecture only).

A port to ``torch.nn`` of ``silero_vad/tinygrad_model.py`` (``TinySileroVAD``) from the silero-vad
6.2.3 wheel (MIT licence, Copyright (c) 2020-present Silero Team); the layer names are those of the
wheel's ``silero_vad_16k.safetensors``, which loads into it unchanged. Nothing is downloaded and no
weights are loaded here: convlens loads the file given on the command line.

One call scores one window: ``x`` is ``(N, 1, 576)`` float audio at 16 kHz in [-1, 1] (64 samples of
context then 512 new ones), the output ``(N, 1)`` the speech probability, the recurrent state
starting at zero (a single window, as the first call of the original does).
"""

from __future__ import annotations

import torch
from torch import nn


class SileroVAD16k(nn.Module):
    """STFT front end (a fixed conv of 258 Hann-windowed cos/sin atoms), 4 Conv1d, an LSTM cell."""

    def __init__(self) -> None:
        super().__init__()
        self.n_fft, self.hop, self.pad = 256, 128, 64
        self.cutoff = self.n_fft // 2 + 1
        self.stft_conv = nn.Conv1d(1, 2 * self.cutoff, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=3, stride=1, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Speech probability ``(N, 1)`` of each ``(N, 1, 576)`` window."""
        x = nn.functional.pad(x, (0, self.pad), mode="reflect")
        x = self.stft_conv(x)
        x = (x[:, : self.cutoff] ** 2 + x[:, self.cutoff :] ** 2).sqrt()
        x = self.conv1(x).relu()
        x = self.conv2(x).relu()
        x = self.conv3(x).relu()
        x = self.conv4(x).relu().squeeze(-1)
        h, _ = self.lstm_cell(x)
        x = self.final_conv(h.unsqueeze(-1).relu()).sigmoid()
        return x.squeeze(1).mean(dim=1, keepdim=True)


def vad16k() -> nn.Module:
    """``--factory`` entry point for ``silero_vad_16k.safetensors``."""
    return SileroVAD16k()
