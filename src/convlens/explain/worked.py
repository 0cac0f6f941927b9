"""Worked examples: every output cell of a 2-D correlation as its window, products and sum.

>>> ex = explain([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[9, 8, 7, 6], [5, 4, 3, 2], [1, 2, 3, 4], [5, 6, 7, 8]])
>>> ex.output.tolist()
[[154, 157], [200, 233]]
>>> ex.cells[0].expression()
'1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3'
>>> print(ex.check([[146, 157], [200, 233]]).lines()[0])
cell (0, 0): expected 146, actual 154 = 1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError, describe_shape
from convlens.explain.numbers import fmt, fmt_factor, json_number, to_python
from convlens.ops import correlate2d, flip, resolve_padding
from convlens.ops.correlate import cast_exact, compute_dtype
from convlens.ops.geometry import PaddingSpec, as_tuple


@dataclass(frozen=True)
class Cell:
    """One output cell: which input values the kernel taps saw, the products, and the sum."""

    index: tuple[int, int]
    rows: tuple[int, ...]  # input row of each kernel row (may be outside the input: zero padding)
    cols: tuple[int, ...]
    window: NDArray[Any]
    kernel: NDArray[Any]  # the applied kernel (shared by every cell)
    products: NDArray[Any]
    total: Any
    in_padding: bool  # some taps fell on zero padding outside the input

    def expression(self) -> str:
        """``"k00·x00 + k01·x01 + ..."`` with the kernel weight first."""
        return " + ".join(
            f"{fmt_factor(k)}·{fmt_factor(x)}"
            for k, x in zip(self.kernel.flat, self.window.flat, strict=True)
        )

    def products_text(self) -> str:
        return " + ".join(fmt_factor(p) for p in self.products.flat)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": list(self.index),
            "input_rows": list(self.rows),
            "input_cols": list(self.cols),
            "window": [[json_number(v) for v in r] for r in self.window.tolist()],
            "products": [[json_number(v) for v in r] for r in self.products.tolist()],
            "sum": json_number(self.total),
            "in_padding": self.in_padding,
        }


@dataclass(frozen=True)
class Mismatch:
    index: tuple[int, int]
    expected: Any
    actual: Any
    expression: str

    def line(self) -> str:
        return (
            f"cell {self.index}: expected {fmt(self.expected)}, actual {fmt(self.actual)} "
            f"= {self.expression}"
        )


@dataclass(frozen=True)
class CheckResult:
    """Outcome of comparing a claimed feature map with the computed one."""

    ok: bool
    expected_shape: tuple[int, ...]
    actual_shape: tuple[int, ...]
    mismatches: list[Mismatch] = field(default_factory=list)

    def lines(self) -> list[str]:
        if self.expected_shape != self.actual_shape:
            return [
                f"shape: expected {describe_shape(self.expected_shape)}, "
                f"actual {describe_shape(self.actual_shape)}"
            ]
        if self.ok:
            return ["check: every cell matches"]
        return [m.line() for m in self.mismatches]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "expected_shape": list(self.expected_shape),
            "actual_shape": list(self.actual_shape),
            "mismatches": [
                {
                    "index": list(m.index),
                    "expected": json_number(m.expected),
                    "actual": json_number(m.actual),
                    "expression": m.expression,
                }
                for m in self.mismatches
            ],
        }


@dataclass(frozen=True)
class Explanation:
    """A 2-D correlation (or convolution) worked out cell by cell."""

    input: NDArray[Any]
    kernel: NDArray[Any]  # as given
    applied_kernel: NDArray[Any]  # what slides over the input (flipped for convolution)
    operation: str  # "cross-correlation" or "convolution"
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    output: NDArray[Any]
    cells: list[Cell]
    warnings: list[str]

    def check(self, expected: ArrayLike, *, rtol: float = 1e-9, atol: float = 1e-12) -> CheckResult:
        """Compare a claimed feature map with the computed one, cell by cell.

        Integers and fractions compare exactly; floats with ``rtol``/``atol`` (NaN equals NaN).
        """
        exp = np.asarray(expected)
        if exp.ndim == 1 and self.output.shape[0] == 1:
            exp = exp[None, :]
        if exp.shape != self.output.shape:
            return CheckResult(False, tuple(exp.shape), tuple(self.output.shape))
        mismatches = []
        for cell in self.cells:
            e, a = to_python(exp[cell.index]), to_python(self.output[cell.index])
            if not _same(e, a, rtol, atol):
                mismatches.append(Mismatch(cell.index, e, a, cell.expression()))
        return CheckResult(not mismatches, tuple(exp.shape), tuple(self.output.shape), mismatches)

    def to_dict(self) -> dict[str, Any]:
        def mat(a: NDArray[Any]) -> list[list[Any]]:
            return [[json_number(v) for v in r] for r in a.tolist()]

        return {
            "operation": self.operation,
            "input": mat(self.input),
            "kernel": mat(self.kernel),
            "applied_kernel": mat(self.applied_kernel),
            "stride": list(self.stride),
            "padding": [list(p) for p in self.padding],
            "dilation": list(self.dilation),
            "output": mat(self.output),
            "cells": [c.to_dict() for c in self.cells],
            "warnings": list(self.warnings),
        }

    def render(self, fmt_name: str = "text", *, max_cells: int | None = None) -> str:
        from convlens.explain.render import render

        return render(self, fmt_name, max_cells=max_cells)


def _same(e: Any, a: Any, rtol: float, atol: float) -> bool:
    if isinstance(e, float) or isinstance(a, float):
        try:
            ef, af = float(e), float(a)
        except (TypeError, ValueError):
            return False
        if math.isnan(ef) or math.isnan(af):
            return math.isnan(ef) and math.isnan(af)
        return bool(np.isclose(af, ef, rtol=rtol, atol=atol))
    return bool(e == a)


def _as_matrix(a: ArrayLike, name: str) -> NDArray[Any]:
    arr = np.asarray(a)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ConvlensError(
            f"{name}: expected a 2-D matrix, got {arr.ndim} dimensions with shape {arr.shape}"
        )
    if arr.size == 0:
        raise ConvlensError(f"{name}: empty matrix (shape {arr.shape})")
    return arr


def explain(
    kernel: ArrayLike,
    image: ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
    convolve: bool = False,
) -> Explanation:
    """Work out ``correlate2d(image, kernel)`` (or the convolution) cell by cell.

    The feature map is computed by :func:`convlens.ops.correlate2d`; every cell also carries the
    input values its kernel taps saw and their products, whose sum is that cell.
    """
    ker = _as_matrix(kernel, "kernel")
    img = _as_matrix(image, "input")
    applied = flip(ker) if convolve else ker
    strides = as_tuple(stride, 2, "stride")
    dils = as_tuple(dilation, 2, "dilation")
    pads = resolve_padding(padding, img.shape, ker.shape, strides, dils)
    output = correlate2d(img, applied, stride=strides, padding=pads, dilation=dils)
    dtype = compute_dtype(img, applied)
    img_c = cast_exact(img, dtype)
    ker_c = cast_exact(np.ascontiguousarray(applied), dtype)
    padded = np.pad(img_c, pads, mode="constant", constant_values=0)
    cells = []
    kh, kw = ker.shape
    for i in range(output.shape[0]):
        for j in range(output.shape[1]):
            r = [i * strides[0] + t * dils[0] for t in range(kh)]
            c = [j * strides[1] + t * dils[1] for t in range(kw)]
            window = padded[np.ix_(r, c)]
            rows = tuple(x - pads[0][0] for x in r)
            cols = tuple(x - pads[1][0] for x in c)
            cells.append(
                Cell(
                    index=(i, j),
                    rows=rows,
                    cols=cols,
                    window=window,
                    kernel=ker_c,
                    products=window * ker_c,
                    total=output[i, j],
                    in_padding=not all(0 <= x < img.shape[0] for x in rows)
                    or not all(0 <= x < img.shape[1] for x in cols),
                )
            )
    return Explanation(
        input=img,
        kernel=ker,
        applied_kernel=np.ascontiguousarray(applied),
        operation="convolution" if convolve else "cross-correlation",
        stride=(strides[0], strides[1]),
        padding=(pads[0], pads[1]),
        dilation=(dils[0], dils[1]),
        output=output,
        cells=cells,
        warnings=_non_finite_warnings(img, ker, output, cells),
    )


def _non_finite_warnings(
    img: NDArray[Any], ker: NDArray[Any], output: NDArray[Any], cells: list[Cell]
) -> list[str]:
    if img.dtype.kind not in "fc" and ker.dtype.kind not in "fc":
        return []
    out: list[str] = []
    for name, arr in (("input", img), ("kernel", ker)):
        if arr.dtype.kind in "fc":
            bad = np.argwhere(~np.isfinite(arr))
            for idx in bad[:20]:
                out.append(f"{name} has {fmt(arr[tuple(idx)])} at {tuple(int(v) for v in idx)}")
            if len(bad) > 20:
                out.append(f"{name} has {len(bad) - 20} more non-finite values")
    bad_cells = [c for c in cells if not np.isfinite(complex(to_python(c.total)))]
    for c in bad_cells[:20]:
        out.append(
            f"output {c.index} is {fmt(c.total)}: its window or the kernel holds a non-finite value"
        )
    if len(bad_cells) > 20:
        out.append(f"{len(bad_cells) - 20} more output cells are not finite")
    return out
