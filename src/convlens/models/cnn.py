"""A small configurable reference CNN and its registry.

``SmallCNN`` = conv blocks (conv -> ReLU -> optional max-pool) -> flatten -> dense hidden -> dense
output. Every conv uses ``padding = kernel // 2`` (odd kernels keep the spatial size), so the first
layer's kernels are directly comparable with classical kernels of the same size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.runs.records import ModelSpec  # the run.json record; defined torch-free there

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "ModelSpec",
    "SmallCNN",
    "build_model",
    "make_spec",
    "model_names",
]


class SmallCNN(nn.Module):
    """Conv blocks named ``conv1, conv2, ...`` then ``fc1`` (hidden) and ``fc2`` (logits)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if not (len(spec.channels) == len(spec.kernels) == len(spec.pool)) or not spec.channels:
            raise ConvlensError(
                f"model {spec.name!r}: channels, kernels and pool need one entry per conv block, got "
                f"{spec.channels}, {spec.kernels}, {spec.pool}"
            )
        self.spec = spec
        h, w = spec.input_hw
        c_in = spec.in_channels
        self.pools: list[int] = []
        self.dims = int(spec.extra.get("dims", 2))
        if self.dims == 1 and h != 1:
            raise ConvlensError(
                f"model {spec.name!r} is 1-D: it needs inputs of height 1 (signals), got {h}x{w}"
            )
        convs: list[nn.Conv1d | nn.Conv2d] = []
        for i, (c_out, k, p) in enumerate(zip(spec.channels, spec.kernels, spec.pool, strict=True)):
            if k < 1 or k % 2 == 0:
                raise ConvlensError(f"model {spec.name!r}: conv{i + 1} kernel must be odd, got {k}")
            conv_type = nn.Conv1d if self.dims == 1 else nn.Conv2d
            conv = conv_type(c_in, c_out, k, padding=k // 2)
            self.add_module(f"conv{i + 1}", conv)  # state-dict keys conv1.weight, conv2.weight, ...
            convs.append(conv)
            self.pools.append(p)
            if p > 1:
                h, w = (h if self.dims == 1 else h // p), w // p
            if h < 1 or w < 1:
                raise ConvlensError(
                    f"model {spec.name!r}: input {spec.input_hw} is too small for {i + 1} pooling stages"
                )
            c_in = c_out
        self.convs = convs  # a plain list: the modules are registered above under their names
        self.flat = c_in * h * w
        self.fc1 = nn.Linear(self.flat, spec.hidden)
        self.fc2 = nn.Linear(spec.hidden, spec.n_classes)

    def named_convs(self) -> list[tuple[str, nn.Conv1d | nn.Conv2d]]:
        return [(f"conv{i + 1}", c) for i, c in enumerate(self.convs)]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The dense hidden layer (after ReLU) and every conv layer's output (pre-activation: the
        cross-correlation plus bias). A 1-D model reads ``(N, C, 1, L)`` and its maps are returned
        as ``(N, C', 1, L')`` too, so probe files keep one layout."""
        maps: dict[str, torch.Tensor] = {}
        if self.dims == 1:
            x = x.squeeze(2)
        pool = nn.functional.max_pool1d if self.dims == 1 else nn.functional.max_pool2d
        for i, (conv, p) in enumerate(zip(self.convs, self.pools, strict=True)):
            z = conv(x)
            maps[f"conv{i + 1}"] = z.unsqueeze(2) if self.dims == 1 else z
            x = torch.relu(z)
            if p > 1:
                x = pool(x, p)
        return torch.relu(self.fc1(x.flatten(1))), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x)[0])

    def forward_with_convs(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and every conv layer's output (pre-activation)."""
        hidden, maps = self.features(x)
        return self.fc2(hidden), maps


# Defaults per dataset: a 5x5 first layer for faces (big enough to compare with classical kernels),
# 3x3 for the tiny 8x8 digits.
PRESETS: dict[str, dict[str, Any]] = {
    "faces-cnn": {"channels": (16, 16), "kernels": (5, 3), "pool": (2, 2), "hidden": 32},
    "digits-cnn": {"channels": (16, 32), "kernels": (3, 3), "pool": (2, 2), "hidden": 64},
    "small-cnn": {"channels": (8, 16), "kernels": (3, 3), "pool": (2, 2), "hidden": 32},
    "wide-cnn": {"channels": (32, 32), "kernels": (5, 3), "pool": (2, 2), "hidden": 64},
    # 1-D (Conv1d) for the bundled signals (1 x 128): 9-tap first-layer filters, long enough for
    # the 1-D bank's Gabor/Fourier atoms and a spectral summary
    "signals-cnn": {
        "channels": (8, 16),
        "kernels": (9, 5),
        "pool": (4, 4),
        "hidden": 32,
        "extra": {"dims": 1},
    },
    # RGB 32x32 natural patches (the seams task): 16 first-layer units of 7x7 (room for an oriented
    # Gabor or edge), three pooling stages to a 4x4 map
    "natural-cnn": {
        "channels": (16, 32, 32),
        "kernels": (7, 3, 3),
        "pool": (2, 2, 2),
        "hidden": 64,
    },
}
DEFAULT_MODEL = {
    "faces": "faces-cnn",
    "digits": "digits-cnn",
    "signals": "signals-cnn",
    "natural": "natural-cnn",
}


def model_names() -> list[str]:
    return list(PRESETS)


def make_spec(
    name: str,
    in_channels: int,
    input_hw: tuple[int, int],
    n_classes: int,
    first_kernel: int | None = None,
) -> ModelSpec:
    """The preset ``name``; ``first_kernel`` overrides the first conv layer's kernel size."""
    if name not in PRESETS:
        raise ConvlensError(f"unknown model {name!r}; expected one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    kernels = tuple(p["kernels"])
    if first_kernel is not None:
        if first_kernel < 1 or first_kernel % 2 == 0:
            raise ConvlensError(
                f"first-layer kernel size must be a positive odd integer, got {first_kernel}"
            )
        kernels = (first_kernel, *kernels[1:])
    return ModelSpec(
        name,
        in_channels,
        input_hw,
        n_classes,
        p["channels"],
        kernels,
        p["pool"],
        p["hidden"],
        dict(p.get("extra", {})),
    )


def build_model(spec: ModelSpec) -> SmallCNN:
    return SmallCNN(spec)
