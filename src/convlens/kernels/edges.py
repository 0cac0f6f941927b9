"""Gradient, compass and line kernels, built from 1-D factors where the operator is separable.

Orientation convention (image coordinates: x = column to the right, y = row downwards): a
``*_x`` kernel cross-correlated with an image gives a **positive** response where intensity
increases to the right, a ``*_y`` kernel where it increases downwards. That is the convolution
kernel of the textbooks flipped, e.g. Sobel's ``[1, 0, -1]`` derivative factor (scikit-image
``SOBEL_EDGE``, applied with ``ndimage.convolve``) becomes ``[-1, 0, 1]`` here.

>>> from convlens.kernels import get_kernel
>>> get_kernel("sobel_y").weights
array([[-1, -2, -1],
       [ 0,  0,  0],
       [ 1,  2,  1]])
>>> get_kernel("sobel_x", size=5).weights[0]     # binomial smoothing x central difference
array([-1, -2,  0,  2,  1])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.kernels.base import Kernel, check_size, register

_INT64_MAX = 2**63 - 1


def binomial(n: int) -> NDArray[Any]:
    """Row ``n`` of Pascal's triangle: ``binomial(2) == [1, 2, 1]``.

    Exact at every ``n``: int64 while every entry fits, else an object array of Python ints.
    """
    return _exact_ints([math.comb(n, k) for k in range(n + 1)])


def _exact_ints(values: Any) -> NDArray[Any]:
    """An int64 array when every value fits in int64, else an object array of Python ints."""
    arr = np.array(values, dtype=object)
    if all(-_INT64_MAX - 1 <= int(v) <= _INT64_MAX for v in arr.flat):
        return arr.astype(np.int64)
    return arr


def _py_convolve(a: list[int], b: list[int]) -> list[int]:
    """Full 1-D convolution of two lists of Python ints (exact)."""
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _oriented(name: str, axis: str, smooth: NDArray[Any], deriv: NDArray[Any]) -> NDArray[Any]:
    if axis == "x":
        return np.outer(smooth, deriv)
    if axis == "y":
        return np.outer(deriv, smooth)
    raise ConvlensError(f"{name}: axis must be 'x' or 'y', got {axis!r}")  # pragma: no cover


def _sobel(axis: str, size: int) -> Kernel:
    name = f"sobel_{axis}"
    size = check_size(size, name, minimum=3)
    # Python ints throughout: the weights grow like 4**size and overflow int64 from size 39
    smooth = [math.comb(size - 1, k) for k in range(size)]
    row = [math.comb(size - 3, k) for k in range(size - 2)]
    deriv = _py_convolve(row, [1, 0, -1])[::-1]  # correlation: increasing -> positive
    pairs = [[a * b for b in deriv] for a in smooth]  # smooth across, derivative along
    w = _exact_ints(pairs if axis == "x" else [list(c) for c in zip(*pairs, strict=True)])
    r = size // 2
    scale = sum(smooth) * sum(d * (i - r) for i, d in enumerate(deriv))  # response to a unit ramp
    other = "sobel_v" if axis == "x" else "sobel_h"
    return Kernel(
        name=name,
        weights=w,
        family="edge",
        description=f"Sobel derivative along {axis} ({'right' if axis == 'x' else 'down'} = positive), "
        f"{size}x{size}: binomial smoothing across, central difference along",
        source="Sobel & Feldman (1968), 'An isotropic 3x3 image gradient operator'; "
        "larger sizes: binomial smoothing x smoothed difference (as OpenCV getDerivKernels)",
        normalisation=f"integer weights, unnormalised (a unit ramp gives {scale}; divide by {scale} for a "
        "unit-gain derivative); int64 up to size 37, Python ints (object array) above, exact at every size",
        params={"size": size},
        skimage=f"skimage.filters.{other}(img) == correlate2d(img, K) / 4" if size == 3 else None,
    )


@register("sobel_x", "edge", "Sobel gradient along x (vertical edges)")
def sobel_x(size: int = 3) -> Kernel:
    return _sobel("x", size)


@register("sobel_y", "edge", "Sobel gradient along y (horizontal edges)")
def sobel_y(size: int = 3) -> Kernel:
    return _sobel("y", size)


def _prewitt(axis: str, size: int) -> Kernel:
    name = f"prewitt_{axis}"
    size = check_size(size, name, minimum=3)
    r = size // 2
    w = _oriented(name, axis, np.ones(size, dtype=np.int64), np.arange(-r, r + 1, dtype=np.int64))
    other = "prewitt_v" if axis == "x" else "prewitt_h"
    return Kernel(
        name=name,
        weights=w,
        family="edge",
        description=f"Prewitt derivative along {axis}, {size}x{size}: box smoothing across, ramp along",
        source="Prewitt (1970), 'Object enhancement and extraction'; larger sizes use a linear ramp",
        normalisation="integer weights, unnormalised",
        params={"size": size},
        skimage=f"skimage.filters.{other}(img) == correlate2d(img, K) / 3" if size == 3 else None,
    )


@register("prewitt_x", "edge", "Prewitt gradient along x (vertical edges)")
def prewitt_x(size: int = 3) -> Kernel:
    return _prewitt("x", size)


@register("prewitt_y", "edge", "Prewitt gradient along y (horizontal edges)")
def prewitt_y(size: int = 3) -> Kernel:
    return _prewitt("y", size)


def _scharr(axis: str) -> Kernel:
    name = f"scharr_{axis}"
    w = _oriented(name, axis, np.array([3, 10, 3]), np.array([-1, 0, 1]))
    other = "scharr_v" if axis == "x" else "scharr_h"
    return Kernel(
        name=name,
        weights=w.astype(np.int64),
        family="edge",
        description=f"Scharr derivative along {axis}: rotation-optimised 3x3 gradient",
        source="Scharr (2000), 'Optimale Operatoren in der digitalen Bildverarbeitung'",
        normalisation="integer weights [3, 10, 3] x [-1, 0, 1], unnormalised",
        params={},
        skimage=f"skimage.filters.{other}(img) == correlate2d(img, K) / 16",
    )


@register("scharr_x", "edge", "Scharr gradient along x (vertical edges)")
def scharr_x() -> Kernel:
    return _scharr("x")


@register("scharr_y", "edge", "Scharr gradient along y (horizontal edges)")
def scharr_y() -> Kernel:
    return _scharr("y")


@register("roberts_pos_diag", "edge", "Roberts cross, derivative towards the lower right")
def roberts_pos_diag() -> Kernel:
    return Kernel(
        name="roberts_pos_diag",
        weights=np.array([[-1, 0], [0, 1]], dtype=np.int64),
        family="edge",
        description="Roberts cross: x[i+1, j+1] - x[i, j] (2x2, anchored at the top-left tap)",
        source="Roberts (1963), 'Machine perception of three-dimensional solids'",
        normalisation="integer weights, unnormalised",
        skimage="skimage.filters.roberts_pos_diag(img)[:-1, :-1] == correlate2d(img, K)",
    )


@register("roberts_neg_diag", "edge", "Roberts cross, derivative towards the lower left")
def roberts_neg_diag() -> Kernel:
    return Kernel(
        name="roberts_neg_diag",
        weights=np.array([[0, -1], [1, 0]], dtype=np.int64),
        family="edge",
        description="Roberts cross: x[i+1, j] - x[i, j+1] (2x2)",
        source="Roberts (1963), 'Machine perception of three-dimensional solids'",
        normalisation="integer weights, unnormalised",
        skimage="skimage.filters.roberts_neg_diag(img)[:-1, :-1] == correlate2d(img, K)",
    )


# Farid & Simoncelli (2004), Table 1, 5-tap: the same digits scikit-image uses.
FARID_SMOOTH = np.array(
    [
        0.0376593171958126,
        0.249153396177344,
        0.426374573253687,
        0.249153396177344,
        0.0376593171958126,
    ]
)
FARID_DERIV = np.array(
    [-0.109603762960254, -0.276690988455557, 0.0, 0.276690988455557, 0.109603762960254]
)


def _farid(axis: str) -> Kernel:
    name = f"farid_{axis}"
    w = _oriented(name, axis, FARID_SMOOTH, FARID_DERIV)
    other = "farid_v" if axis == "x" else "farid_h"
    return Kernel(
        name=name,
        weights=w,
        family="edge",
        description=f"Farid-Simoncelli 5-tap derivative along {axis}: optimised for rotation invariance",
        source="Farid & Simoncelli (2004), 'Differentiation of discrete multidimensional signals', "
        "IEEE TIP 13(4), Table 1",
        normalisation="smoothing factor sums to 1; derivative factor has unit gain on a ramp",
        skimage=f"skimage.filters.{other}(img) == correlate2d(img, K)",
    )


@register("farid_x", "edge", "Farid 5x5 gradient along x")
def farid_x() -> Kernel:
    return _farid("x")


@register("farid_y", "edge", "Farid 5x5 gradient along y")
def farid_y() -> Kernel:
    return _farid("y")


_RING = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise from top-left
_COMPASS = ["n", "ne", "e", "se", "s", "sw", "w", "nw"]


def _kirsch(direction: str) -> Kernel:
    start = _COMPASS.index(direction)
    w = np.full((3, 3), -3, dtype=np.int64)
    w[1, 1] = 0
    for k in range(3):
        w[_RING[(start + k) % 8]] = 5
    return Kernel(
        name=f"kirsch_{direction}",
        weights=w,
        family="edge",
        description=f"Kirsch compass mask: strongest response where the {direction.upper()} side is bright",
        source="Kirsch (1971), 'Computer determination of the constituent structure of biological images'",
        normalisation="integer weights 5 / -3, sum 0, unnormalised",
        params={},
    )


def _make_kirsch(direction: str) -> None:
    def factory() -> Kernel:
        return _kirsch(direction)

    factory.__name__ = f"kirsch_{direction}"
    register(f"kirsch_{direction}", "edge", f"Kirsch compass, bright side {direction.upper()}")(
        factory
    )


for _d in _COMPASS:
    _make_kirsch(_d)


def _line(name: str, w: list[list[int]], what: str) -> Kernel:
    return Kernel(
        name=name,
        weights=np.array(w, dtype=np.int64),
        family="line",
        description=f"line detector: one-pixel-wide bright {what} line",
        source="Gonzalez & Woods, Digital Image Processing, 'line detection' masks",
        normalisation="integer weights 2 / -1, sum 0",
    )


@register("line_horizontal", "line", "bright horizontal line")
def line_horizontal() -> Kernel:
    return _line("line_horizontal", [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]], "horizontal")


@register("line_vertical", "line", "bright vertical line")
def line_vertical() -> Kernel:
    return _line("line_vertical", [[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]], "vertical")


@register("line_diag_45", "line", "bright line rising at +45 degrees (lower-left to upper-right)")
def line_diag_45() -> Kernel:
    return _line("line_diag_45", [[-1, -1, 2], [-1, 2, -1], [2, -1, -1]], "+45 degree")


@register("line_diag_135", "line", "bright line falling at 135 degrees (upper-left to lower-right)")
def line_diag_135() -> Kernel:
    return _line("line_diag_135", [[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], "135 degree")
