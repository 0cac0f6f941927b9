"""The classical kernel bank (pure NumPy).

Every kernel is stored as the correlation kernel that ``torch.nn.Conv2d`` applies, with its
source, normalisation and (where scikit-image has the operator) the exact identity with scikit-image.

>>> from convlens.kernels import get_kernel, list_kernels
>>> "sobel_x" in list_kernels() and "gabor" in list_kernels()
True
"""

from convlens.kernels import blobs, edges, gabor  # noqa: F401  (registers the kernels)
from convlens.kernels.bank import BankEntry, bank_matrix, matching_bank
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
    "binomial",
    "gaussian_1d",
    "get_kernel",
    "kernel_parameters",
    "kernel_summary",
    "list_kernels",
    "matching_bank",
    "parse_kernel_spec",
]
