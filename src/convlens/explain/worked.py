"""Worked examples: every output cell of a correlation as its window, products and sum.

1-, 2- and 3-D, with input channels ``(C, *spatial)`` and output channels ``(O, C, *kernel)``. The
feature map is computed by the engine; the cells are built lazily, only those looked at.

>>> ex = explain([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[9, 8, 7, 6], [5, 4, 3, 2], [1, 2, 3, 4], [5, 6, 7, 8]])
>>> ex.output.tolist()
[[154, 157], [200, 233]]
>>> ex.cells[0].expression()
'1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3'
>>> print(ex.check([[146, 157], [200, 233]]).lines()[0])
cell (0, 0): expected 146, actual 154 = 1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3
>>> two = explain([[[1, 0]], [[1, 1]]], [[[1, 2, 3]], [[4, 5, 6]]])   # 2 channels of 1x3
>>> two.output.tolist(), two.cells[0].channel_sums, two.cells.built
([[10, 13]], (1, 9), 1)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError, describe_shape
from convlens.explain.limits import MAX_LISTED_MISMATCHES, check_limits, check_sizes
from convlens.explain.numbers import fmt, fmt_factor, json_number, to_python
from convlens.ops import correlate, flip, resolve_padding, result_dtype
from convlens.ops.correlate import cast_exact, compute_dtype
from convlens.ops.geometry import PaddingSpec, as_tuple

AXIS_NAMES = {1: ("positions",), 2: ("rows", "cols"), 3: ("depths", "rows", "cols")}


def nested(a: NDArray[Any]) -> Any:
    """An array as nested lists of JSON-safe numbers (see :func:`json_number`)."""

    def conv(v: Any) -> Any:
        return [conv(x) for x in v] if isinstance(v, list) else json_number(v)

    return conv(a.tolist())


@dataclass(frozen=True)
class Cell:
    """One output cell: which input values the kernel taps saw, the products, and the sum.

    ``window``, ``kernel`` and ``products`` have the kernel's spatial shape, with a leading input
    channel axis when the input has channels; ``channel_sums`` then holds the sum per input channel
    and ``total`` is their sum (the feature-map value, computed by the engine).
    """

    index: tuple[int, ...]  # (i, j); (o, i, j) when the kernel has output channels
    coords: tuple[tuple[int, ...], ...]  # per spatial axis, the input coordinate of each tap
    window: NDArray[Any]
    kernel: NDArray[Any]  # the applied kernel (for this output channel)
    products: NDArray[Any]
    total: Any
    in_padding: bool  # some taps fell on zero padding outside the input
    channel_sums: tuple[Any, ...] | None = None  # per input channel; None without channels

    @property
    def rows(self) -> tuple[int, ...]:
        """Input row of each kernel row (2-D and 3-D; may be outside the input: zero padding)."""
        return self.coords[-2] if len(self.coords) >= 2 else ()

    @property
    def cols(self) -> tuple[int, ...]:
        return self.coords[-1]

    def channel_expressions(self) -> list[str]:
        """``"k·x + ..."`` per input channel (one entry without channels)."""
        if self.channel_sums is None:
            return [_expression(self.kernel, self.window)]
        return [_expression(k, x) for k, x in zip(self.kernel, self.window, strict=True)]

    def channel_products(self) -> list[str]:
        if self.channel_sums is None:
            return [" + ".join(fmt_factor(p) for p in self.products.flat)]
        return [" + ".join(fmt_factor(p) for p in ch.flat) for ch in self.products]

    def expression(self) -> str:
        """``"k00·x00 + k01·x01 + ..."`` with the kernel weight first; with several input
        channels, one parenthesised sum per channel."""
        parts = self.channel_expressions()
        return parts[0] if len(parts) == 1 else " + ".join(f"({p})" for p in parts)

    def products_text(self) -> str:
        parts = self.channel_products()
        return parts[0] if len(parts) == 1 else " + ".join(f"({p})" for p in parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": list(self.index)}
        for axis, coords in zip(AXIS_NAMES[len(self.coords)], self.coords, strict=True):
            d[f"input_{axis}"] = list(coords)
        d["window"] = nested(self.window)
        d["products"] = nested(self.products)
        if self.channel_sums is not None:
            d["channel_sums"] = [json_number(v) for v in self.channel_sums]
        d["sum"] = json_number(self.total)
        d["in_padding"] = self.in_padding
        return d


def _expression(kernel: NDArray[Any], window: NDArray[Any]) -> str:
    return " + ".join(
        f"{fmt_factor(k)}·{fmt_factor(x)}" for k, x in zip(kernel.flat, window.flat, strict=True)
    )


class CellSequence(Sequence[Cell]):
    """The worked cells in row-major order (output channel first), built only when asked for.

    ``len()`` is free; indexing, slicing and iterating build just those cells. ``built`` counts the
    cells built so far, so a caller can see that nothing more was computed than was shown.
    """

    def __init__(self, n: int, build: Callable[[int], Cell]) -> None:
        self._n = n
        self._build = build
        self.built = 0

    def __len__(self) -> int:
        return self._n

    def _make(self, k: int) -> Cell:
        self.built += 1
        return self._build(k)

    @overload
    def __getitem__(self, i: int) -> Cell: ...
    @overload
    def __getitem__(self, i: slice) -> list[Cell]: ...
    def __getitem__(self, i: int | slice) -> Cell | list[Cell]:
        if isinstance(i, slice):
            return [self._make(k) for k in range(*i.indices(self._n))]
        k = operator.index(i)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(f"cell {i} out of range for {self._n} cells")
        return self._make(k)

    def __iter__(self) -> Iterator[Cell]:
        for k in range(self._n):
            yield self._make(k)

    def __repr__(self) -> str:
        return f"<{self._n} cells, {self.built} built>"


@dataclass(frozen=True)
class Mismatch:
    index: tuple[int, ...]
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
    """Outcome of comparing a claimed feature map with the computed one.

    At most ``MAX_LISTED_MISMATCHES`` wrong cells are listed with their expression; ``not_listed``
    counts the others.
    """

    ok: bool
    expected_shape: tuple[int, ...]
    actual_shape: tuple[int, ...]
    mismatches: list[Mismatch] = field(default_factory=list)
    not_listed: int = 0

    def lines(self) -> list[str]:
        if self.expected_shape != self.actual_shape:
            return [
                f"shape: expected {describe_shape(self.expected_shape)}, "
                f"actual {describe_shape(self.actual_shape)}"
            ]
        if self.ok:
            return ["check: every cell matches"]
        more = [f"... {self.not_listed} more wrong cells not listed"] if self.not_listed else []
        return [m.line() for m in self.mismatches] + more

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
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
        if self.not_listed:
            d["mismatches_not_listed"] = self.not_listed
        return d


@dataclass(frozen=True)
class Explanation:
    """A 1-, 2- or 3-D correlation (or convolution) worked out cell by cell.

    ``input`` is ``(*spatial)`` or ``(C, *spatial)`` (``channels``); ``kernel`` is ``(*k)``,
    ``(C, *k)`` or ``(O, C, *k)`` (``output_channels``); ``output`` is ``(*out)`` or ``(O, *out)``.
    ``cells`` is lazy: only the cells looked at are built.
    """

    input: NDArray[Any]
    kernel: NDArray[Any]  # as given
    applied_kernel: NDArray[Any]  # what slides over the input (flipped for convolution)
    operation: str  # "cross-correlation" or "convolution"
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    output: NDArray[Any]
    cells: CellSequence
    warnings: list[str]
    dims: int = 2  # spatial axes
    channels: bool = False  # the input has a leading channel axis
    output_channels: bool = False  # the kernel has a leading output-channel axis

    @property
    def plain(self) -> bool:
        """One 2-D matrix with one 2-D kernel (the original explain)."""
        return self.dims == 2 and not self.channels and not self.output_channels

    def layout(self) -> dict[str, str]:
        """Axis names of the input, kernel and output, e.g. ``{"input": "C,H,W", ...}``."""
        sp = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[self.dims]
        ks = tuple("k" + a.lower() for a in sp) if self.dims > 1 else ("k",)
        c = ("C",) if self.channels else ()
        o = ("O",) if self.output_channels else ()
        return {
            "input": ",".join(c + sp),
            "kernel": ",".join(o + c + ks),
            "output": ",".join(o + sp),
        }

    def check(self, expected: ArrayLike, *, rtol: float = 1e-9, atol: float = 1e-12) -> CheckResult:
        """Compare a claimed feature map with the computed one, cell by cell.

        Integers and fractions compare exactly; floats with ``rtol``/``atol`` (NaN equals NaN).
        A claim whose shape differs only by leading axes of length 1 is reshaped.
        """
        exp = np.asarray(expected)
        out = self.output
        if exp.shape != out.shape and _strip(exp.shape) == _strip(out.shape):
            exp = exp.reshape(out.shape)
        if exp.shape != out.shape:
            return CheckResult(False, tuple(exp.shape), tuple(out.shape))
        wrong = _wrong_cells(exp, out, rtol, atol)
        listed = wrong[:MAX_LISTED_MISMATCHES]
        mismatches = []
        for k in listed:
            idx = tuple(int(v) for v in np.unravel_index(k, out.shape))
            e, a = to_python(exp[idx]), to_python(out[idx])
            mismatches.append(Mismatch(idx, e, a, self.cells[k].expression()))
        return CheckResult(
            not wrong,
            tuple(exp.shape),
            tuple(out.shape),
            mismatches,
            len(wrong) - len(listed),
        )

    def to_dict(self, max_cells: int | None = None) -> dict[str, Any]:
        """JSON-safe dict; ``cells`` holds the first ``max_cells`` cells (None: every cell)."""
        n = len(self.cells) if max_cells is None else min(max_cells, len(self.cells))
        d = self._head_dict()
        d["cells"] = [c.to_dict() for c in self.cells[:n]]
        d["warnings"] = list(self.warnings)
        return d

    def _head_dict(self, omit: Collection[str] = ()) -> dict[str, Any]:
        """Everything but the cells and warnings, in the order the JSON renderer writes it; the
        arrays named in ``omit`` are ``None``."""

        def arr(key: str, a: NDArray[Any]) -> Any:
            return None if key in omit else nested(a)

        d: dict[str, Any] = {"operation": self.operation}
        if not self.plain:
            d["dims"] = self.dims
            d["layout"] = self.layout()
        d.update(
            {
                "input": arr("input", self.input),
                "kernel": arr("kernel", self.kernel),
                "applied_kernel": arr("applied_kernel", self.applied_kernel),
                "stride": list(self.stride),
                "padding": [list(p) for p in self.padding],
                "dilation": list(self.dilation),
                "output": arr("output", self.output),
            }
        )
        return d

    def render(self, fmt_name: str = "text", *, max_cells: int | None = None) -> str:
        from convlens.explain.render import render

        return render(self, fmt_name, max_cells=max_cells)


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    k = 0
    while k < len(shape) - 1 and shape[k] == 1:
        k += 1
    return shape[k:]


def _wrong_cells(exp: NDArray[Any], out: NDArray[Any], rtol: float, atol: float) -> list[int]:
    """Flat indices of the cells where the claim differs (vectorised for plain numbers)."""
    if exp.dtype.kind in "biuf" and out.dtype.kind in "biuf":
        if exp.dtype.kind == "f" or out.dtype.kind == "f":
            same = np.isclose(
                out.astype(np.float64), exp.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True
            )
        else:
            same = exp == out
        return [int(k) for k in np.flatnonzero(~np.asarray(same).ravel())]
    return [
        k
        for k, (e, a) in enumerate(zip(exp.flat, out.flat, strict=True))
        if not _same(to_python(e), to_python(a), rtol, atol)
    ]


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


def _as_operand(a: ArrayLike, name: str, dims: int) -> NDArray[Any]:
    arr = np.asarray(a)
    if dims == 2 and arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim == 0:
        raise ConvlensError(f"{name}: expected an array, got a single number {fmt(arr.item())}")
    if arr.size == 0:
        raise ConvlensError(f"{name}: empty matrix (shape {arr.shape})")
    return arr


_SPATIAL = {1: "(L)", 2: "(H, W)", 3: "(D, H, W)"}
_KSPATIAL = {1: "(k)", 2: "(kh, kw)", 3: "(kd, kh, kw)"}


def _normalise(img: NDArray[Any], ker: NDArray[Any], dims: int) -> tuple[bool, bool]:
    """Check the shapes for ``dims`` spatial axes; return (input has channels, kernel has outputs)."""
    sp, ksp = _SPATIAL[dims], _KSPATIAL[dims]
    if img.ndim not in (dims, dims + 1):
        raise ConvlensError(
            f"input: expected {sp} or channels first (C, {sp[1:-1]}) for {dims}-D, got "
            f"{img.ndim} dimensions with shape {img.shape}"
        )
    if ker.ndim not in (dims, dims + 1, dims + 2):
        raise ConvlensError(
            f"kernel: expected {ksp}, (C, {ksp[1:-1]}) or (O, C, {ksp[1:-1]}) for {dims}-D, got "
            f"{ker.ndim} dimensions with shape {ker.shape}"
        )
    in_c = img.shape[0] if img.ndim == dims + 1 else None
    k_c = ker.shape[-dims - 1] if ker.ndim > dims else None
    if in_c is not None and k_c is None and in_c != 1:
        raise ConvlensError(
            f"kernel: a {in_c}-channel input needs a kernel with the same channels, shape "
            f"({in_c}, {ksp[1:-1]}) or (O, {in_c}, {ksp[1:-1]}), got shape {ker.shape}"
        )
    if k_c is not None and (in_c if in_c is not None else 1) != k_c:
        have = f"{in_c} channels" if in_c is not None else "no channel axis (1 channel)"
        raise ConvlensError(
            f"kernel: shape {ker.shape} has {k_c} input channels but the input (shape "
            f"{img.shape}) has {have}"
        )
    return (in_c is not None or k_c is not None), ker.ndim == dims + 2


def explain(
    kernel: ArrayLike,
    image: ArrayLike,
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
    convolve: bool = False,
    dims: int = 2,
) -> Explanation:
    """Work out ``correlate(image, kernel)`` (or the convolution) cell by cell, lazily.

    ``dims`` is the number of spatial axes (1, 2 or 3). The input is ``(*spatial)`` or channels
    first ``(C, *spatial)``; the kernel ``(*k)``, ``(C, *k)`` or ``(O, C, *k)``; the output
    ``(*out)``, or ``(O, *out)`` for a kernel with output channels. With ``dims=2`` a 1-D array is
    one row.

    The feature map is computed by :func:`convlens.ops.correlate`; each cell (built only when
    asked for) carries the input values its kernel taps saw, their products, the sum per input
    channel, and the total, which is that cell. Problems beyond the limits of
    :mod:`convlens.explain.limits` are refused from their shapes before anything is allocated.
    """
    if isinstance(dims, bool) or dims not in (1, 2, 3):
        raise ConvlensError(f"dims must be 1, 2 or 3 (spatial axes), got {dims!r}")
    ker = _as_operand(kernel, "kernel", dims)
    img = _as_operand(image, "input", dims)
    check_sizes(img.shape, ker.shape)
    channels, out_channels = _normalise(img, ker, dims)
    applied = np.ascontiguousarray(flip(ker, dims) if convolve else ker)
    x = img if img.ndim == dims + 1 else img[None]
    w = applied.reshape((-1, x.shape[0], *ker.shape[-dims:]))
    strides = as_tuple(stride, dims, "stride")
    dils = as_tuple(dilation, dims, "dilation")
    pads = resolve_padding(padding, x.shape[1:], w.shape[2:], strides, dils)
    for arr, name in ((x, "input"), (w, "kernel")):
        if arr.dtype.kind not in "biufcO":
            raise ConvlensError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
    first = result_dtype(x, w)
    check_limits(x.shape, w.shape, pads, strides, dils, first)
    dtype = compute_dtype(x, w)  # O(input): int64 becomes object (Python ints) if it could overflow
    if dtype != first:
        check_limits(x.shape, w.shape, pads, strides, dils, dtype)
    full = correlate(x[None], w, stride=strides, padding=pads, dilation=dils)[0]
    output = full if out_channels else full[0]
    w_c = cast_exact(w, dtype)

    def build(k: int) -> Cell:
        pos = tuple(int(v) for v in np.unravel_index(k, full.shape))
        o, p = pos[0], pos[1:]
        return _cell(
            x,
            w_c[o],
            dtype,
            p,
            pos if out_channels else p,
            strides,
            dils,
            pads,
            channels,
            full[pos],
        )

    return Explanation(
        input=img,
        kernel=ker,
        applied_kernel=applied,
        operation="convolution" if convolve else "cross-correlation",
        stride=strides,
        padding=tuple(pads),
        dilation=dils,
        output=output,
        cells=CellSequence(int(full.size), build),
        warnings=_non_finite_warnings(img, ker, output),
        dims=dims,
        channels=channels,
        output_channels=out_channels,
    )


def _cell(
    x: NDArray[Any],
    w: NDArray[Any],
    dtype: np.dtype[Any],
    p: tuple[int, ...],
    index: tuple[int, ...],
    strides: tuple[int, ...],
    dils: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    channels: bool,
    total: Any,
) -> Cell:
    """One worked cell at output position ``p``: O(kernel) memory and time."""
    coords = tuple(
        tuple(q * s + t * d - lo for t in range(k))
        for q, s, d, (lo, _), k in zip(p, strides, dils, pads, w.shape[1:], strict=True)
    )
    inside = [
        [t for t, c in enumerate(cs) if 0 <= c < n]
        for cs, n in zip(coords, x.shape[1:], strict=True)
    ]
    full_window = all(len(ins) == len(cs) for ins, cs in zip(inside, coords, strict=True))
    if full_window:
        window = cast_exact(x[_taps(coords)], dtype)
    else:
        window = np.zeros(w.shape, dtype=dtype)  # object zeros are the int 0
        if all(inside):
            src = [[cs[t] for t in ins] for cs, ins in zip(coords, inside, strict=True)]
            window[_taps(inside)] = cast_exact(x[_taps(src)], dtype)
    products = window * w
    sums = tuple(to_python(ch.sum()) for ch in products) if channels else None
    return Cell(
        index=index,
        coords=coords,
        window=window if channels else window[0],
        kernel=w if channels else w[0],
        products=products if channels else products[0],
        total=total,
        in_padding=not full_window,
        channel_sums=sums,
    )


def _taps(coords: Sequence[Sequence[int]]) -> tuple[Any, ...]:
    """Index of every channel at the outer product of per-axis coordinates."""
    return (slice(None), *np.ix_(*coords))


def _non_finite_warnings(img: NDArray[Any], ker: NDArray[Any], output: NDArray[Any]) -> list[str]:
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
    if output.dtype.kind in "fc":
        bad_cells = [tuple(int(v) for v in idx) for idx in np.argwhere(~np.isfinite(output))]
    else:
        bad_cells = [
            idx
            for idx in np.ndindex(output.shape)
            if not np.isfinite(complex(to_python(output[idx])))
        ]
    for idx in bad_cells[:20]:
        out.append(
            f"output {idx} is {fmt(output[idx])}: its window or the kernel holds a non-finite value"
        )
    if len(bad_cells) > 20:
        out.append(f"{len(bad_cells) - 20} more output cells are not finite")
    return out
