"""convlens: see exactly what a convolutional layer computes, and measure what a CNN learns.

Importing ``convlens`` is cheap: the public names below load their modules on first use, and nothing
here imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see: the real names (at run time they load on first use)
    from convlens.display import load as load
    from convlens.errors import ConvlensError as ConvlensError
    from convlens.explain import Explanation as Explanation
    from convlens.explain import explain as explain
    from convlens.explain import parse_matrix as parse_matrix
    from convlens.kernels import Kernel as Kernel
    from convlens.kernels import get_kernel as get_kernel
    from convlens.kernels import list_kernels as list_kernels
    from convlens.ops import conv_matrix as conv_matrix
    from convlens.ops import convolve as convolve
    from convlens.ops import convolve2d as convolve2d
    from convlens.ops import correlate as correlate
    from convlens.ops import correlate2d as correlate2d
    from convlens.ops import flip as flip
    from convlens.ops import normalized_cross_correlation as normalized_cross_correlation
    from convlens.ops import output_shape as output_shape
    from convlens.ops import receptive_fields as receptive_fields
    from convlens.pipelines import analyze as analyze

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
    "analyze": "convlens.pipelines",
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
