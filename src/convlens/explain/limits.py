"""Size limits of ``explain``, checked from shapes before anything is allocated.

``explain`` is for worked examples a person reads. The feature map itself is computed by the engine
(:mod:`convlens.ops`, memory O(padded input + output), time O(output x kernel)); the worked cells are
built lazily, only for the cells shown. These limits keep the engine's part bounded too:

======================================  ==============  ====================================
limit                                   value           what it bounds
======================================  ==============  ====================================
``MAX_INPUT_ELEMENTS``                  16,777,216      input values, all channels (4096x4096)
``MAX_KERNEL_ELEMENTS``                 65,536          kernel values, all channels (256x256)
``MAX_PADDING``                         4,096           zeros added on any one side of an axis
``MAX_DILATION``                        4,096           dilation along any axis
``MAX_STRIDE``                          4,096           stride along any axis
``MAX_PADDED_ELEMENTS``                 33,554,432      zero-padded input, all channels
``MAX_OUTPUT_CELLS``                    16,777,216      feature-map values (4096x4096)
``MAX_MULTIPLY_ADDS``                   1,073,741,824   output cells x kernel values (ints, floats)
``MAX_EXACT_MULTIPLY_ADDS``             4,194,304       the same with Fractions or big integers
``MAX_SHOWN_VALUES``                    10,000          values printed per matrix (100x100)
``MAX_LISTED_MISMATCHES``               100             wrong cells listed by a check
``MAX_TEXT_FILE_BYTES``                 67,108,864      a .json/.csv/.txt matrix file (64 MiB)
======================================  ==============  ====================================

>>> check_limits((3, 3), (3, 3), ((100000, 100000), (100000, 100000)), (1, 1), (1, 1), object)
Traceback (most recent call last):
...
convlens.errors.ConvlensError: padding 100000 exceeds the limit of 4096 for explain
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from convlens.errors import ConvlensError, describe_shape

MAX_INPUT_ELEMENTS = 4096 * 4096
MAX_KERNEL_ELEMENTS = 256 * 256
MAX_PADDING = 4096
MAX_DILATION = 4096
MAX_STRIDE = 4096
MAX_PADDED_ELEMENTS = 2 * MAX_INPUT_ELEMENTS
MAX_OUTPUT_CELLS = 4096 * 4096
MAX_MULTIPLY_ADDS = 2**30
MAX_EXACT_MULTIPLY_ADDS = 2**22
MAX_SHOWN_VALUES = 10_000
MAX_LISTED_MISMATCHES = 100
MAX_TEXT_FILE_BYTES = 64 * 1024 * 1024


def _over(what: str, n: int, shape: Sequence[int], limit: int) -> ConvlensError:
    return ConvlensError(
        f"{what} has {n} values (shape {describe_shape(tuple(shape))}), "
        f"over the limit of {limit} for explain"
    )


def check_sizes(input_shape: Sequence[int], kernel_shape: Sequence[int]) -> None:
    """Refuse an input or kernel with too many values (shapes as given, channels included)."""
    n_in, n_k = math.prod(input_shape), math.prod(kernel_shape)
    if n_in > MAX_INPUT_ELEMENTS:
        raise _over("input", n_in, input_shape, MAX_INPUT_ELEMENTS)
    if n_k > MAX_KERNEL_ELEMENTS:
        raise _over("kernel", n_k, kernel_shape, MAX_KERNEL_ELEMENTS)


def check_limits(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    pads: Sequence[tuple[int, int]],
    strides: Sequence[int],
    dilations: Sequence[int],
    dtype: Any,
) -> None:
    """Refuse a problem beyond the limits; pure arithmetic on shapes, nothing allocated.

    ``x_shape`` is ``(C, *spatial)``, ``w_shape`` ``(O, C, *kernel)``; ``dtype`` the compute dtype
    (object means exact Fractions or Python ints, which are slow).
    """
    for name, values, limit in (  # dilation first: "same"/"full" padding grows with it
        ("dilation", list(dilations), MAX_DILATION),
        ("stride", list(strides), MAX_STRIDE),
        ("padding", [v for p in pads for v in p], MAX_PADDING),
    ):
        worst = max(values, default=0)
        if worst > limit:
            raise ConvlensError(f"{name} {worst} exceeds the limit of {limit} for explain")
    check_sizes(x_shape, w_shape)
    channels, spatial = x_shape[0], x_shape[1:]
    padded = [n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True)]
    n_padded = channels * math.prod(padded)
    if n_padded > MAX_PADDED_ELEMENTS:
        raise ConvlensError(
            f"the zero-padded input has {n_padded} values (shape "
            f"{describe_shape((channels, *padded))}), over the limit of {MAX_PADDED_ELEMENTS} "
            "for explain"
        )
    out_sp = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(padded, w_shape[2:], strides, dilations, strict=True)
    ]
    if any(m <= 0 for m in out_sp):
        return  # the kernel does not fit: the engine says so
    n_out = w_shape[0] * math.prod(out_sp)
    if n_out > MAX_OUTPUT_CELLS:
        raise ConvlensError(
            f"the feature map would have {n_out} cells (shape "
            f"{describe_shape((w_shape[0], *out_sp))}), over the limit of {MAX_OUTPUT_CELLS} "
            "for explain"
        )
    macs = math.prod(out_sp) * math.prod(w_shape)
    exact = getattr(dtype, "kind", "O") == "O"
    limit = MAX_EXACT_MULTIPLY_ADDS if exact else MAX_MULTIPLY_ADDS
    if macs > limit:
        kind = "exact (fraction or big-integer) " if exact else ""
        raise ConvlensError(
            f"{macs} {kind}multiply-adds (feature map x kernel values) are over the limit of "
            f"{limit} for explain"
        )
