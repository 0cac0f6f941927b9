"""Small model factories for the documentation's examples, shipped in the wheel so that they run
from an installed convlens (``--factory convlens.examples:NAME``), not only from a source checkout.

Every factory seeds torch and returns an *untrained* ``nn.Module`` (its numbers show the output's
form, not a finding); save its weights and analyse them:

    python -c "from safetensors.torch import save_file; from convlens.examples import chain
    save_file(chain().state_dict(), 'chain.safetensors')"
    convlens analyze chain.safetensors --factory convlens.examples:chain --data digits
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["chain", "one_d", "rgb", "small"]


def _seeded(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in m.parameters():
        nn.init.normal_(p, std=0.3)
    return m


def small() -> nn.Module:
    """Reads (N, 1, 8, 8) (the bundled digits): conv 3x3 -> pool -> conv 3x3 -> 10 classes."""
    return _seeded(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 10),
        )
    )


def chain() -> nn.Module:
    """conv 3x3 p1 -> maxpool 2 -> conv 3x3 s2 p1 -> conv 1x2 (receptive fields by hand)."""
    return _seeded(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, (1, 2)),
            nn.Flatten(),
            nn.Linear(4 * 2 * 1, 10),
        )
    )


def rgb() -> nn.Module:
    """Reads (N, 3, 8, 8): grey data are repeated to three channels for it."""
    return _seeded(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))
    )


def one_d() -> nn.Module:
    """Reads (N, 2, L): a Conv1d front end."""
    return _seeded(
        nn.Sequential(
            nn.Conv1d(2, 4, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(4, 4, 3, stride=2),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(4, 3),
        )
    )
