"""convlens: see exactly what a convolutional layer computes, and measure what a CNN learns.

Importing ``convlens`` is cheap: the public names below load their modules on first use, and nothing
here imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "correlate": "convlens.ops",
    "convolve": "convlens.ops",
    "correlate2d": "convlens.ops",
    "convolve2d": "convlens.ops",
    "flip": "convlens.ops",
    "conv_matrix": "convlens.ops",
    "normalized_cross_correlation": "convlens.ops",
    "output_shape": "convlens.ops",
    "receptive_fields": "convlens.ops",
    "explain": "convlens.explain",
    "Explanation": "convlens.explain",
    "parse_matrix": "convlens.explain",
    "get_kernel": "convlens.kernels",
    "list_kernels": "convlens.kernels",
    "Kernel": "convlens.kernels",
    "ConvlensError": "convlens.errors",
    "load": "convlens.display",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
