"""Does the framework's conv layer compute cross-correlation? Measured, per layer, in float64.

For each conv layer, a float64 copy of the layer is run on a random input and compared with
:func:`convlens.ops.correlate` (expected difference ~1e-12) and with :func:`convlens.ops.convolve`
(true convolution, the flipped kernel: expected to differ unless the kernel is point-symmetric).
Non-zero padding modes (reflect, replicate, circular) are applied with ``torch.nn.functional.pad``
first and the comparison made on the padded input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from convlens.analysis.layers import conv_modules
from convlens.analysis.result import LayerCheck
from convlens.ops import convolve, correlate


def _spatial_input(conv: Any, size: int) -> tuple[int, ...]:
    nd = conv.weight.ndim - 2
    k = conv.weight.shape[2:]
    d = conv.dilation
    return tuple(max(size, d[i] * (k[i] - 1) + 1 + 2) for i in range(nd))


def check_layer(
    name: str, conv: nn.Module, *, size: int = 12, seed: int = 0, atol: float = 1e-9
) -> LayerCheck:
    """Run ``conv`` (as float64, on CPU) and the NumPy engine on the same random input."""
    layer: Any = _float64_copy(conv)  # typed Any: Conv1d/2d/3d attributes differ per class
    w = layer.weight.detach().numpy()
    b = None if layer.bias is None else layer.bias.detach().numpy()
    gen = torch.Generator().manual_seed(seed)
    spatial = _spatial_input(layer, size)
    x = torch.randn((2, layer.in_channels, *spatial), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x).numpy()
    pad_mode = getattr(layer, "padding_mode", "zeros")
    padding = layer.padding
    xin = x
    if pad_mode != "zeros":
        rp = layer._reversed_padding_repeated_twice
        xin = nn.functional.pad(x, rp, mode=pad_mode)
        padding = 0
    if not isinstance(padding, str):
        padding = tuple(int(v) for v in padding) if not isinstance(padding, int) else padding
    kwargs: dict[str, Any] = {
        "bias": b,
        "stride": tuple(layer.stride),
        "dilation": tuple(layer.dilation),
        "groups": int(layer.groups),
        "padding": padding,
    }
    ours = correlate(xin.numpy(), w, **kwargs)
    flipped = convolve(xin.numpy(), w, **kwargs)
    d_corr = float(np.max(np.abs(ours - y)))
    d_conv = float(np.max(np.abs(flipped - y)))
    scale = float(np.max(np.abs(y))) or 1.0
    return LayerCheck(
        name,
        type(conv).__name__,
        list(w.shape),
        list(x.shape),
        d_corr,
        d_conv,
        scale,
        d_corr <= atol * max(scale, 1.0),
    )


def _float64_copy(conv: nn.Module) -> nn.Module:
    import copy

    layer = copy.deepcopy(conv).to(device="cpu", dtype=torch.float64)
    return layer


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv module with its qualified name, in definition order (see
    :func:`convlens.analysis.layers.identify_modules` for execution order and geometry)."""
    return conv_modules(model)


def verify_model(model: nn.Module, *, seed: int = 0) -> list[LayerCheck]:
    """Check every conv layer of ``model``."""
    return [check_layer(n, m, seed=seed) for n, m in conv_layers(model)]
