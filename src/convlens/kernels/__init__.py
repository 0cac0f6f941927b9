"""The classical kernel bank (pure NumPy).

Every kernel is stored as the correlation kernel that ``torch.nn.Conv2d`` applies, with its
source, normalisation and (where scikit-image has the operator) the exact identity with scikit-image.

Parameter limits (checked by every factory; the error names the limit): sizes are integers in
``[1, 99]`` (odd where the operator needs a centre; at least 3 for derivatives); every Gaussian width
(``sigma``, ``sigma1``, ``sigma2``, Gabor ``sigma``) is in ``[1e-3, 1e6]``; Gabor ``gamma`` is in
``[1e-3, 1e3]`` and ``frequency`` in ``(0, 0.5]``; ``angle`` and ``phase`` are finite numbers. Inside
them every kernel is finite, and integer kernels are exact: Sobel weights are int64 up to size 37 and
Python ints (an object array) from size 39 on, where they no longer fit in int64.

>>> from convlens.kernels import get_kernel, list_kernels
>>> "sobel_x" in list_kernels() and "gabor" in list_kernels()
True
"""

from convlens.kernels import blobs, edges, gabor  # noqa: F401  (registers the kernels)
from convlens.kernels.bank import BankEntry, bank_matrix, matching_bank
from convlens.kernels.bank1d import bank_matrix_1d, matching_bank_1d
from convlens.kernels.base import (
    FAMILIES,
    Kernel,
    get_kernel,
    kernel_parameters,
    kernel_summary,
    list_kernels,
    parse_kernel_spec,
)
from convlens.kernels.blobs import gaussian_1d
from convlens.kernels.edges import binomial

__all__ = [
    "FAMILIES",
    "BankEntry",
    "Kernel",
    "bank_matrix",
    "bank_matrix_1d",
    "binomial",
    "gaussian_1d",
    "get_kernel",
    "kernel_parameters",
    "kernel_summary",
    "list_kernels",
    "matching_bank",
    "matching_bank_1d",
    "parse_kernel_spec",
]
