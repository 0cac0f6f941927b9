"""Exact convolution arithmetic, pure NumPy (never imports torch).

- :func:`correlate` / :func:`convolve`: N-d, PyTorch shapes, stride, padding, dilation, groups, bias.
- :func:`correlate2d` / :func:`convolve2d`: one matrix with one kernel.
- :func:`conv_matrix`: the correlation as a dense matrix.
- :func:`normalized_cross_correlation`: Pearson r of a template with every patch.
- :mod:`convlens.ops.geometry`: output-size, padding and receptive-field arithmetic.
"""

from convlens.ops.correlate import convolve, convolve2d, correlate, correlate2d, flip, result_dtype
from convlens.ops.geometry import (
    LayerGeometry,
    ReceptiveField,
    output_length,
    output_shape,
    receptive_fields,
    resolve_padding,
)
from convlens.ops.matrix import conv_matrix
from convlens.ops.ncc import normalized_cross_correlation

__all__ = [
    "LayerGeometry",
    "ReceptiveField",
    "conv_matrix",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "flip",
    "normalized_cross_correlation",
    "output_length",
    "output_shape",
    "receptive_fields",
    "resolve_padding",
    "result_dtype",
]
