"""Exact N-d cross-correlation and convolution (pure NumPy).

Shapes follow PyTorch: input ``x`` is ``(N, C, *S)``, weight ``w`` is ``(O, C // groups, *K)``,
``bias`` is ``(O,)``. Output element ``[n, o, *p]`` is::

    bias[o] + sum_{c, *t} x_padded[n, g*C/groups + c, *(p*stride + t*dilation)] * w[o, c, *t]

with ``g = o // (O / groups)``. This is what ``torch.nn.Conv{1,2,3}d`` computes: a cross-correlation.
True convolution flips the kernel: ``convolve(x, w) == correlate(x, flip(w))`` exactly.

Exactness and dtypes:

- integer inputs give integer outputs (``int64``, or Python ints in an object array when the result
  could overflow ``int64``);
- object arrays are exact: every element is converted to a Python number first (NumPy integers such
  as ``np.int64`` become Python ints, so ``2**62 * 4`` is ``2**64``, not a wrapped 0), and
  ``fractions.Fraction`` stays ``Fraction``;
- floating inputs keep their dtype (the widest floating dtype among the inputs; integer inputs do
  not widen a float32 image to float64);
- ``float16`` is a storage format: it is accumulated in float32 and the result is rounded to
  float16 once. An integer input with a float16 one gives float32 (float16 cannot hold integers
  above 65504);
- complex inputs are multiplied, never conjugated: ``sum x * w``, as ``torch.nn.functional.conv2d``.
  ``scipy.signal.correlate2d`` and ``numpy.correlate`` conjugate their second argument; pass
  ``np.conj(w)`` to get theirs.

The seed's worked example (the top-left cell is 154, not 146):

>>> import numpy as np
>>> K = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
>>> I = np.array([[9, 8, 7, 6], [5, 4, 3, 2], [1, 2, 3, 4], [5, 6, 7, 8]])
>>> correlate2d(I, K)
array([[154, 157],
       [200, 233]])
>>> int((I[:3, :3] * K).sum())        # 1*9 + 2*8 + 3*7 + 4*5 + 5*4 + 6*3 + 7*1 + 8*2 + 9*3
154
>>> convolve2d(I, K)                  # true convolution flips the kernel first (146 is neither)
array([[266, 233],
       [160, 157]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError
from convlens.ops import strategies
from convlens.ops.geometry import (
    PaddingSpec,
    as_tuple,
    effective_kernel,
    output_length,
    resolve_padding,
)

__all__ = [
    "accumulate_dtype",
    "cast_exact",
    "compute_dtype",
    "convolve",
    "convolve2d",
    "correlate",
    "correlate2d",
    "flip",
    "result_dtype",
]

_INT64_SAFE = 2.0**62  # headroom below 2**63 for the float estimate of the largest |sum|


def flip(w: ArrayLike, ndim: int | None = None) -> NDArray[Any]:
    """Reverse the last ``ndim`` axes (all axes when ``ndim`` is None): the convolution flip.

    >>> flip([[1, 2], [3, 4]])
    array([[4, 3],
           [2, 1]])
    """
    arr = np.asarray(w)
    axes = tuple(range(arr.ndim)) if ndim is None else tuple(range(arr.ndim - ndim, arr.ndim))
    return np.flip(arr, axis=axes)


def _as_numeric(a: ArrayLike, name: str) -> NDArray[Any]:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biufcO":
        raise ConvlensError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    if arr.dtype.kind == "O":
        for v in arr.flat:
            if isinstance(v, bool | str | bytes) or not _is_number(v):
                raise ConvlensError(f"{name} must hold numbers, found {v!r} ({type(v).__name__})")
    return arr


def _is_number(v: Any) -> bool:
    import numbers

    return isinstance(v, numbers.Number)


def result_dtype(*arrays: NDArray[Any]) -> np.dtype[Any]:
    """The dtype ``correlate`` returns, before the int64 overflow check.

    object if any input is object; else the widest inexact (float/complex) dtype among the inputs
    (integers do not widen a float32 image to float64), except that float16 with an integer input
    gives float32 (float16 cannot hold integers above 65504); else int64.

    >>> import numpy as np
    >>> result_dtype(np.zeros(1, np.int64), np.zeros(1, np.float16))
    dtype('float32')
    """
    kinds = {a.dtype.kind for a in arrays}
    if "O" in kinds:
        return np.dtype(object)
    inexact = [a.dtype for a in arrays if a.dtype.kind in "fc"]
    if inexact:
        dtype = np.result_type(*inexact)
        if dtype == np.float16 and kinds & {"b", "i", "u"}:
            return np.dtype(np.float32)
        return dtype
    return np.dtype(np.int64)


def accumulate_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype sums are accumulated in for a result of ``dtype``: float32 for float16, else itself."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _abs_max(a: NDArray[Any]) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64))))


def compute_dtype(
    x: NDArray[Any], w: NDArray[Any], bias: NDArray[Any] | None = None
) -> np.dtype[Any]:
    """The dtype :func:`correlate` computes in: :func:`result_dtype`, with int64 promoted to object
    (Python ints) when the largest possible output could overflow int64."""
    dtype = result_dtype(*(a for a in (x, w, bias) if a is not None))
    if dtype.kind == "i":
        dtype = _integer_dtype(x, w, bias)
    return dtype


def _integer_dtype(x: NDArray[Any], w: NDArray[Any], bias: NDArray[Any] | None) -> np.dtype[Any]:
    """int64 when the largest possible |output| fits with headroom, else object (Python ints)."""
    w_abs = (
        np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(axis=1) if w.size else np.zeros(1)
    )
    bound = _abs_max(x) * float(np.max(w_abs)) + (_abs_max(bias) if bias is not None else 0.0)
    for a in (x, w) + ((bias,) if bias is not None else ()):
        if a.dtype.kind == "u" and a.size and _abs_max(a) >= _INT64_SAFE:
            return np.dtype(object)
    return np.dtype(np.int64) if bound < _INT64_SAFE else np.dtype(object)


def cast_exact(a: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """Cast to ``dtype``; to object via Python numbers (ints stay exact, arbitrary precision).

    Object arrays are rebuilt too: NumPy scalars inside them (``np.int64``, ``np.float32``, ...)
    become Python numbers, so their arithmetic cannot wrap around.

    >>> import numpy as np
    >>> big = np.array([np.int64(2**62)], dtype=object)
    >>> int(cast_exact(big, np.dtype(object))[0] * 4)
    18446744073709551616
    """
    if dtype.kind == "O":
        out = np.empty(a.shape, dtype=object)
        flat = out.reshape(-1)
        # Python ints / floats / Fractions: exact arbitrary-precision integer arithmetic.
        flat[:] = [v.item() if isinstance(v, np.generic) else v for v in a.reshape(-1).tolist()]
        return out
    return a.astype(dtype, copy=False)


def correlate(
    x: ArrayLike,
    w: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> NDArray[Any]:
    """N-d cross-correlation with PyTorch's ``Conv{1,2,3}d`` semantics (zero padding).

    Complex inputs are multiplied without conjugation (as PyTorch); see the module docstring for
    dtypes (float16 is accumulated in float32; object arrays are exact).

    Parameters
    ----------
    x : array ``(N, C, *S)`` with 1, 2 or 3 spatial axes (any number works).
    w : array ``(O, C // groups, *K)``.
    bias : optional array ``(O,)``.
    stride, dilation : int or one int per spatial axis, each >= 1.
    padding : ``"valid"``, ``"same"``, ``"full"``, an int, one int per axis, or ``(lo, hi)`` per axis.
    groups : int >= 1 dividing both ``C`` and ``O``.

    >>> import numpy as np
    >>> x = np.arange(5).reshape(1, 1, 5)                 # one 1-D signal 0 1 2 3 4
    >>> correlate(x, np.array([[[1, 0, -1]]]))            # x[i] - x[i+2]
    array([[[-2, -2, -2]]])
    >>> correlate(x, np.array([[[1, 1]]]), stride=2, padding=1)
    array([[[0, 3, 7]]])
    """
    xa = _as_numeric(x, "x")
    wa = _as_numeric(w, "w")
    ba = None if bias is None else _as_numeric(bias, "bias")
    groups = _check_operands(xa, wa, ba, groups)
    nd = wa.ndim - 2
    ksize = wa.shape[2:]
    strides = as_tuple(stride, nd, "stride")
    dilations = as_tuple(dilation, nd, "dilation")
    pads = resolve_padding(padding, xa.shape[2:], ksize, strides, dilations)
    out_sp = _spatial_output(xa.shape[2:], ksize, strides, pads, dilations)

    dtype = compute_dtype(xa, wa, ba)
    work = accumulate_dtype(dtype)
    xa = cast_exact(xa, work)
    wa = cast_exact(wa, work)
    if any(lo or hi for lo, hi in pads):
        xa = _zero_pad(xa, pads)
    out = _correlate_padded(
        xa,
        wa,
        None if ba is None else cast_exact(ba, work),
        strides,
        dilations,
        groups,
        out_sp,
    )
    return out if work == dtype else out.astype(dtype)


def _check_operands(
    xa: NDArray[Any], wa: NDArray[Any], ba: NDArray[Any] | None, groups: int
) -> int:
    """Check the shapes of ``x``, ``w`` and ``bias`` against each other and ``groups``; return
    ``groups`` as a Python int."""
    if wa.ndim < 3:
        raise ConvlensError(
            f"w: expected (O, C/groups, *kernel) with at least one spatial axis, got shape {wa.shape}; "
            "use correlate2d for a plain matrix"
        )
    nd = wa.ndim - 2
    if xa.ndim != nd + 2:
        raise ConvlensError(
            f"x: expected {nd + 2} dimensions (N, C, *spatial) for a {nd}-D weight of shape {wa.shape}, "
            f"got {xa.ndim} dimensions with shape {xa.shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups < 1:
        raise ConvlensError(f"groups must be a positive integer, got {groups!r}")
    groups = int(groups)
    c = xa.shape[1]
    o, cg = wa.shape[:2]
    if c % groups or o % groups:
        raise ConvlensError(
            f"groups={groups} must divide both input channels ({c}) and output channels ({o})"
        )
    if cg != c // groups:
        raise ConvlensError(
            f"w: expected {c // groups} input channels per group (C={c} / groups={groups}), "
            f"got w.shape[1] = {cg} (weight shape {wa.shape})"
        )
    if ba is not None and ba.shape != (o,):
        raise ConvlensError(f"bias: expected shape ({o},), got {ba.shape}")
    if any(k < 1 for k in wa.shape[2:]):
        raise ConvlensError(f"w: kernel sizes must be >= 1, got shape {wa.shape}")
    if any(s < 1 for s in xa.shape[2:]):
        raise ConvlensError(f"x: spatial sizes must be >= 1, got shape {xa.shape}")
    return groups


def _spatial_output(
    in_sp: tuple[int, ...],
    ksize: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilations: tuple[int, ...],
) -> tuple[int, ...]:
    """The output's spatial shape; refuses an axis where the dilated kernel does not fit."""
    out_sp = []
    for axis in range(len(ksize)):
        length = output_length(in_sp[axis], ksize[axis], strides[axis], pads[axis], dilations[axis])
        if length <= 0:
            raise ConvlensError(
                f"kernel larger than input along spatial axis {axis}: input {in_sp[axis]} "
                f"(padding {pads[axis]}) < dilated kernel span "
                f"{effective_kernel(ksize[axis], dilations[axis])}; use padding='same' or 'full'"
            )
        out_sp.append(length)
    return tuple(out_sp)


def _zero_pad(x: NDArray[Any], pads: tuple[tuple[int, int], ...]) -> NDArray[Any]:
    """Zero padding of the spatial axes (a zero array with the input copied in; faster than np.pad)."""
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads, strict=True))
    out = np.zeros(shape, dtype=x.dtype)  # object zeros are the int 0
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pads, strict=True))
    out[(slice(None), slice(None), *inner)] = x
    return out


def _correlate_padded(
    xp: NDArray[Any],
    w: NDArray[Any],
    bias: NDArray[Any] | None,
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    groups: int,
    out_sp: tuple[int, ...],
) -> NDArray[Any]:
    """Correlate an already zero-padded input; the strategy is picked by dtype and shape."""
    out = strategies.compute(xp, w, strides, dilations, groups, out_sp)
    if bias is not None:
        out = out + bias.reshape((1, w.shape[0]) + (1,) * len(out_sp))
    return out


def convolve(
    x: ArrayLike,
    w: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> NDArray[Any]:
    """True N-d convolution: :func:`correlate` with the kernel flipped along every spatial axis.

    >>> import numpy as np
    >>> x = np.arange(5).reshape(1, 1, 5)
    >>> convolve(x, np.array([[[1, 0, -1]]]))             # x[i+2] - x[i]
    array([[[2, 2, 2]]])
    """
    wa = np.asarray(w)
    if wa.ndim < 3:
        raise ConvlensError(
            f"w: expected (O, C/groups, *kernel) with at least one spatial axis, got shape {wa.shape}"
        )
    return correlate(
        x,
        flip(wa, wa.ndim - 2),
        bias=bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def _matrix(a: ArrayLike, name: str) -> NDArray[Any]:
    arr = _as_numeric(a, name)
    if arr.ndim != 2:
        raise ConvlensError(
            f"{name}: expected a 2-D matrix, got {arr.ndim} dimensions with shape {arr.shape}"
        )
    if arr.size == 0:
        raise ConvlensError(f"{name}: expected a non-empty matrix, got shape {arr.shape}")
    return arr


def correlate2d(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
) -> NDArray[Any]:
    """Cross-correlate one 2-D matrix with one 2-D kernel (what a single-channel ``Conv2d`` does).

    Same rule as :func:`correlate`, complex inputs included: ``sum window * kernel`` with **no**
    conjugation. ``scipy.signal.correlate2d(image, kernel, "valid")`` conjugates ``kernel``, so it
    equals ``correlate2d(image, np.conj(kernel))``; for real inputs the two agree.

    >>> correlate2d([[1, 2, 3], [4, 5, 6]], [[1, -1]])
    array([[-1, -1],
           [-1, -1]])
    """
    img = _matrix(image, "image")
    ker = _matrix(kernel, "kernel")
    return correlate(
        img[None, None], ker[None, None], stride=stride, padding=padding, dilation=dilation
    )[0, 0]


def convolve2d(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
) -> NDArray[Any]:
    """True 2-D convolution of one matrix: ``correlate2d(image, flip(kernel))``."""
    ker = _matrix(kernel, "kernel")
    return correlate2d(image, flip(ker), stride=stride, padding=padding, dilation=dilation)
