"""Renderers for :class:`~convlens.explain.worked.Explanation`: text, Markdown, LaTeX, JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

from convlens.errors import ConvlensError, describe_shape
from convlens.explain.numbers import fmt, fmt_factor, fmt_latex, is_negative
from convlens.explain.worked import Cell, Explanation

FORMATS = ("text", "markdown", "latex", "json")


def render(ex: Explanation, fmt_name: str = "text", *, max_cells: int | None = None) -> str:
    """Render an explanation; ``max_cells`` limits how many cells are worked out (None = all)."""
    renderers: dict[str, Callable[[Explanation, int | None], str]] = {
        "text": _text,
        "markdown": _markdown,
        "latex": _latex,
        "json": _json,
    }
    try:
        fn = renderers[fmt_name]
    except KeyError:
        raise ConvlensError(
            f"unknown format {fmt_name!r}; expected one of {', '.join(FORMATS)}"
        ) from None
    if max_cells is not None and max_cells < 0:
        raise ConvlensError(f"max_cells must be >= 0, got {max_cells}")
    return fn(ex, max_cells)


def _header(ex: Explanation) -> str:
    pads = ex.padding
    pad_text = (
        "none (valid)"
        if all(p == (0, 0) for p in pads)
        else (
            f"rows {pads[0][0]}/{pads[0][1]}, cols {pads[1][0]}/{pads[1][1]} zeros (top/bottom, left/right)"
        )
    )
    return (
        f"{ex.operation.capitalize()} of a {describe_shape(ex.input.shape)} input with a "
        f"{describe_shape(ex.kernel.shape)} kernel: stride {_pair(ex.stride)}, padding {pad_text}, "
        f"dilation {_pair(ex.dilation)} -> {describe_shape(ex.output.shape)} feature map"
    )


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _kernel_note(ex: Explanation) -> str:
    if ex.operation == "convolution":
        return "true convolution flips the kernel in both axes first, so the kernel that slides is:"
    return "the kernel slides as is (this is what a conv layer, e.g. torch.nn.Conv2d, computes):"


def _cells(ex: Explanation, max_cells: int | None) -> tuple[list[Cell], int]:
    if max_cells is None or max_cells >= len(ex.cells):
        return ex.cells, 0
    return ex.cells[:max_cells], len(ex.cells) - max_cells


def _matrix_text(a: NDArray[Any], indent: str = "  ") -> str:
    cells = [[fmt(v) for v in row] for row in a.tolist()]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + " ".join(c.rjust(width) for c in row) for row in cells)


def _window_text(cell: Cell) -> str:
    def span(idx: tuple[int, ...]) -> str:
        step = idx[1] - idx[0] if len(idx) > 1 else 1
        return f"{idx[0]}..{idx[-1]}" + (f" step {step}" if step != 1 else "")

    note = " (includes zero padding)" if cell.in_padding else ""
    return f"input rows {span(cell.rows)}, cols {span(cell.cols)}{note}"


def _text(ex: Explanation, max_cells: int | None) -> str:
    out = [
        _header(ex),
        "",
        f"input ({describe_shape(ex.input.shape)}):",
        _matrix_text(ex.input),
        "",
    ]
    out += [
        f"kernel ({describe_shape(ex.kernel.shape)}): " + _kernel_note(ex),
        _matrix_text(ex.applied_kernel),
        "",
    ]
    shown, hidden = _cells(ex, max_cells)
    for cell in shown:
        out.append(f"out[{cell.index[0]}, {cell.index[1]}]  {_window_text(cell)}")
        out.append(f"  = {cell.expression()}")
        out.append(f"  = {cell.products_text()}")
        out.append(f"  = {fmt(cell.total)}")
    if hidden:
        out.append(f"... {hidden} more cells not shown (raise --max-cells)")
    out += ["", f"feature map ({describe_shape(ex.output.shape)}):", _matrix_text(ex.output)]
    if ex.warnings:
        out += ["", "warnings:"] + [f"  - {w}" for w in ex.warnings]
    return "\n".join(out) + "\n"


def _markdown(ex: Explanation, max_cells: int | None) -> str:
    def block(a: NDArray[Any]) -> str:
        return "```\n" + _matrix_text(a, indent="") + "\n```"

    out = [
        f"**{_header(ex)}**",
        "",
        f"Input ({describe_shape(ex.input.shape)}):",
        "",
        block(ex.input),
        "",
    ]
    out += [
        f"Kernel ({describe_shape(ex.kernel.shape)}): {_kernel_note(ex)}",
        "",
        block(ex.applied_kernel),
        "",
    ]
    shown, hidden = _cells(ex, max_cells)
    for cell in shown:
        out.append(
            f"- `out[{cell.index[0]}, {cell.index[1]}]` ({_window_text(cell)}) = "
            f"{cell.expression()} = {cell.products_text()} = **{fmt(cell.total)}**"
        )
    if hidden:
        out.append(f"- ... {hidden} more cells not shown")
    out += ["", f"Feature map ({describe_shape(ex.output.shape)}):", "", block(ex.output)]
    if ex.warnings:
        out += ["", "Warnings:", ""] + [f"- {w}" for w in ex.warnings]
    return "\n".join(out) + "\n"


def _latex_matrix(a: NDArray[Any]) -> str:
    rows = [" & ".join(fmt_latex(v) for v in row) for row in a.tolist()]
    return "\\begin{bmatrix} " + " \\\\ ".join(rows) + " \\end{bmatrix}"


def _latex_factor(v: Any) -> str:
    s = fmt_latex(v)
    return f"\\left({s}\\right)" if is_negative(v) else s


def _latex(ex: Explanation, max_cells: int | None) -> str:
    op = "\\star" if ex.operation == "cross-correlation" else "*"
    out = [
        f"% {_header(ex)}",
        "\\[",
        f"I = {_latex_matrix(ex.input)}, \\quad K = {_latex_matrix(ex.kernel)}",
        "\\]",
    ]
    if ex.operation == "convolution":
        out += ["\\[", f"\\text{{flipped}}\\ K = {_latex_matrix(ex.applied_kernel)}", "\\]"]
    out.append("\\begin{align*}")
    shown, hidden = _cells(ex, max_cells)
    lines = []
    for cell in shown:
        terms = " + ".join(
            f"{_latex_factor(k)} \\cdot {_latex_factor(x)}"
            for k, x in zip(cell.kernel.flat, cell.window.flat, strict=True)
        )
        lines.append(
            f"(I {op} K)_{{{cell.index[0]},{cell.index[1]}}} &= {terms} = {fmt_latex(cell.total)}"
        )
    out.append(" \\\\\n".join(lines))
    out.append("\\end{align*}")
    if hidden:
        out.append(f"% ... {hidden} more cells not shown")
    out += ["\\[", f"I {op} K = {_latex_matrix(ex.output)}", "\\]"]
    return "\n".join(out) + "\n"


def _json(ex: Explanation, max_cells: int | None) -> str:
    d = ex.to_dict()
    shown, hidden = _cells(ex, max_cells)
    d["cells"] = d["cells"][: len(shown)]
    d["cells_not_shown"] = hidden
    return json.dumps(d, indent=2) + "\n"


__all__ = ["FORMATS", "fmt_factor", "render"]
