"""Renderers for :class:`~convlens.explain.worked.Explanation`: text, Markdown, LaTeX, JSON.

Every renderer is a generator of text pieces (:func:`render_chunks`), so a caller can print as it
goes: only the cells shown are built, one at a time. Matrices with more than
``limits.MAX_SHOWN_VALUES`` values are not printed; a line (JSON: ``null`` and an entry in
``"not_shown"``) says how many values were left out. Text, Markdown and LaTeX show 2-D explanations
(with or without channels); 1-D and 3-D ones are rendered as JSON only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from numpy.typing import NDArray

from convlens.errors import ConvlensError, describe_shape
from convlens.explain.limits import MAX_SHOWN_VALUES
from convlens.explain.numbers import fmt, fmt_factor, fmt_latex, is_negative
from convlens.explain.worked import Cell, Explanation

FORMATS = ("text", "markdown", "latex", "json")

Renderer = Callable[[Explanation, int | None, dict[str, Any] | None], Iterator[str]]


def render(ex: Explanation, fmt_name: str = "text", *, max_cells: int | None = None) -> str:
    """Render an explanation; ``max_cells`` limits how many cells are worked out (None = all)."""
    return "".join(render_chunks(ex, fmt_name, max_cells=max_cells))


def render_chunks(
    ex: Explanation,
    fmt_name: str = "text",
    *,
    max_cells: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[str]:
    """The rendering as pieces of text, built as they are consumed. Bad arguments raise here, before
    the first piece. ``extra`` (JSON only) adds top-level keys after the others (e.g. ``check``)."""
    renderers: dict[str, Renderer] = {
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
    if fmt_name != "json" and ex.dims != 2:
        raise ConvlensError(
            f"the {fmt_name} format shows 2-D explanations only, this one is {ex.dims}-D; "
            "use the json format"
        )
    return fn(ex, max_cells, extra)


def _spatial(shape: tuple[int, ...]) -> str:
    return describe_shape(shape)


def _describe_input(ex: Explanation) -> str:
    if not ex.channels:
        return describe_shape(ex.input.shape)
    c = ex.input.shape[0] if ex.input.ndim == ex.dims + 1 else 1
    return f"{_plural(c, 'channel')} of {_spatial(ex.input.shape[-ex.dims :])}"


def _describe_kernel(ex: Explanation) -> str:
    k = ex.kernel
    if not ex.channels:
        return describe_shape(k.shape)
    sp = _spatial(k.shape[-ex.dims :])
    c = k.shape[-ex.dims - 1]
    if ex.output_channels:
        return f"{_plural(k.shape[0], 'output channel')} x {_plural(c, 'input channel')} of {sp}"
    return f"{_plural(c, 'channel')} of {sp}"


def _describe_output(ex: Explanation) -> str:
    if not ex.output_channels:
        return describe_shape(ex.output.shape)
    return f"{_plural(ex.output.shape[0], 'channel')} of {_spatial(ex.output.shape[1:])}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _header(ex: Explanation) -> str:
    pads = ex.padding
    pad_text = (
        "none (valid)"
        if all(p == (0, 0) for p in pads)
        else (
            f"rows {pads[0][0]}/{pads[0][1]}, cols {pads[1][0]}/{pads[1][1]} zeros (top/bottom, left/right)"
        )
    )
    if ex.plain:
        what = (
            f"a {describe_shape(ex.input.shape)} input with a "
            f"{describe_shape(ex.kernel.shape)} kernel"
        )
        result = describe_shape(ex.output.shape)
    else:
        sp = describe_shape(ex.input.shape[-ex.dims :])
        ksp = describe_shape(ex.kernel.shape[-ex.dims :])
        c = ex.kernel.shape[-ex.dims - 1]
        kernel = f"a {c}-channel {ksp} kernel"
        if ex.output_channels:
            kernel = f"{_plural(ex.kernel.shape[0], 'kernel')}, each {c}-channel {ksp}"
        what = f"a {c}-channel {sp} input with {kernel}"
        out_sp = describe_shape(ex.output.shape[-ex.dims :])
        result = f"{ex.output.shape[0]}-channel {out_sp}" if ex.output_channels else out_sp
    return (
        f"{ex.operation.capitalize()} of {what}: stride {_pair(ex.stride)}, "
        f"padding {pad_text}, dilation {_pair(ex.dilation)} -> {result} feature map"
    )


def _pair(p: tuple[int, ...]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _kernel_note(ex: Explanation) -> str:
    if ex.operation == "convolution":
        return "true convolution flips the kernel in both axes first, so the kernel that slides is:"
    return "the kernel slides as is (this is what a conv layer, e.g. torch.nn.Conv2d, computes):"


def _counts(ex: Explanation, max_cells: int | None) -> tuple[int, int]:
    """(cells shown, cells not shown)."""
    n = len(ex.cells)
    if max_cells is None or max_cells >= n:
        return n, 0
    return max_cells, n - max_cells


def _omitted(a: NDArray[Any]) -> str | None:
    """Why a matrix is not printed, or None when it is printed in full."""
    if a.size <= MAX_SHOWN_VALUES:
        return None
    return (
        f"({a.size} values not shown: over the limit of {MAX_SHOWN_VALUES} values printed per "
        "matrix)"
    )


def _slices(ex: Explanation, a: NDArray[Any], which: str) -> list[tuple[str, NDArray[Any]]]:
    """The 2-D matrices of ``a`` with a label each ("" for a plain matrix)."""
    if a.ndim == 2:
        return [("", a)]
    if a.ndim == 3:
        word = "channel" if which != "kernel" or not ex.output_channels else "output channel"
        return [(f"{word} {c}", a[c]) for c in range(a.shape[0])]
    return [
        (f"output channel {o}, input channel {c}", a[o, c])
        for o in range(a.shape[0])
        for c in range(a.shape[1])
    ]


def _matrix_text(a: NDArray[Any], indent: str = "  ") -> str:
    cells = [[fmt(v) for v in row] for row in a.tolist()]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + " ".join(c.rjust(width) for c in row) for row in cells)


def _array_text(ex: Explanation, a: NDArray[Any], which: str, indent: str = "  ") -> str:
    note = _omitted(a)
    if note is not None:
        return indent + note
    parts = []
    for label, m in _slices(ex, a, which):
        if label:
            parts.append(f"{indent}{label}:")
            parts.append(_matrix_text(m, indent + "  "))
        else:
            parts.append(_matrix_text(m, indent))
    return "\n".join(parts)


def _window_text(cell: Cell) -> str:
    def span(idx: tuple[int, ...]) -> str:
        step = idx[1] - idx[0] if len(idx) > 1 else 1
        return f"{idx[0]}..{idx[-1]}" + (f" step {step}" if step != 1 else "")

    note = " (includes zero padding)" if cell.in_padding else ""
    return f"input rows {span(cell.rows)}, cols {span(cell.cols)}{note}"


def _index(cell: Cell) -> str:
    return ", ".join(str(i) for i in cell.index)


def _channels_note(cell: Cell) -> str:
    n = len(cell.channel_sums) if cell.channel_sums is not None else 0
    return f", {_plural(n, 'input channel')}" if n else ""


def _text(ex: Explanation, max_cells: int | None, extra: dict[str, Any] | None) -> Iterator[str]:
    out = [
        _header(ex),
        "",
        f"input ({_describe_input(ex)}):",
        _array_text(ex, ex.input, "input"),
        "",
    ]
    out += [
        f"kernel ({_describe_kernel(ex)}): " + _kernel_note(ex),
        _array_text(ex, ex.applied_kernel, "kernel"),
        "",
    ]
    yield "\n".join(out) + "\n"
    shown, hidden = _counts(ex, max_cells)
    for cell in ex.cells[:shown]:
        lines = [f"out[{_index(cell)}]  {_window_text(cell)}"]
        if cell.channel_sums is None:
            lines.append(f"  = {cell.expression()}")
            lines.append(f"  = {cell.products_text()}")
        else:
            lines += [f"  {part}" for part in _channel_parts(cell)]
            lines.append("  = " + _channel_total(cell))
        lines.append(f"  = {fmt(cell.total)}")
        yield "\n".join(lines) + "\n"
    out = []
    if hidden:
        out.append(f"... {hidden} more cells not shown (raise --max-cells)")
    out += [
        "",
        f"feature map ({_describe_output(ex)}):",
        _array_text(ex, ex.output, "output"),
    ]
    if ex.warnings:
        out += ["", "warnings:"] + [f"  - {w}" for w in ex.warnings]
    yield "\n".join(out) + "\n"


def _md_block(ex: Explanation, a: NDArray[Any], which: str) -> str:
    note = _omitted(a)
    if note is not None:
        return note
    parts: list[str] = []
    for label, m in _slices(ex, a, which):
        if label:
            parts.append(("\n" if parts else "") + f"{label.capitalize()}:\n")
        parts.append("```\n" + _matrix_text(m, indent="") + "\n```")
    return "\n".join(parts)


def _markdown(
    ex: Explanation, max_cells: int | None, extra: dict[str, Any] | None
) -> Iterator[str]:
    out = [
        f"**{_header(ex)}**",
        "",
        f"Input ({_describe_input(ex)}):",
        "",
        _md_block(ex, ex.input, "input"),
        "",
    ]
    out += [
        f"Kernel ({_describe_kernel(ex)}): {_kernel_note(ex)}",
        "",
        _md_block(ex, ex.applied_kernel, "kernel"),
        "",
    ]
    yield "\n".join(out) + "\n"
    shown, hidden = _counts(ex, max_cells)
    for cell in ex.cells[:shown]:
        if cell.channel_sums is None:
            yield (
                f"- `out[{_index(cell)}]` ({_window_text(cell)}) = "
                f"{cell.expression()} = {cell.products_text()} = **{fmt(cell.total)}**\n"
            )
            continue
        per_channel = "; ".join(_channel_parts(cell))
        total = _channel_total(cell)
        yield (
            f"- `out[{_index(cell)}]` ({_window_text(cell)}{_channels_note(cell)}): "
            f"{per_channel}; sum {total} = **{fmt(cell.total)}**\n"
        )
    out = []
    if hidden:
        out.append(f"- ... {hidden} more cells not shown")
    out += [
        "",
        f"Feature map ({_describe_output(ex)}):",
        "",
        _md_block(ex, ex.output, "output"),
    ]
    if ex.warnings:
        out += ["", "Warnings:", ""] + [f"- {w}" for w in ex.warnings]
    yield "\n".join(out) + "\n"


def _latex_matrix(a: NDArray[Any]) -> str:
    rows = [" & ".join(fmt_latex(v) for v in row) for row in a.tolist()]
    return "\\begin{bmatrix} " + " \\\\ ".join(rows) + " \\end{bmatrix}"


def _latex_array(ex: Explanation, a: NDArray[Any], which: str, symbol: str) -> str:
    note = _omitted(a)
    if note is not None:
        return f"{symbol} = \\text{{{note}}}"
    parts = []
    for label, m in _slices(ex, a, which):
        sub = ""
        if label:
            nums = [p for p in label.replace(",", " ").split() if p.isdigit()]
            sub = "_{" + ",".join(nums) + "}"
        parts.append(f"{symbol}{sub} = {_latex_matrix(m)}")
    return ", \\quad ".join(parts)


def _latex_factor(v: Any) -> str:
    s = fmt_latex(v)
    return f"\\left({s}\\right)" if is_negative(v) else s


def _latex_terms(kernel: NDArray[Any], window: NDArray[Any]) -> str:
    return " + ".join(
        f"{_latex_factor(k)} \\cdot {_latex_factor(x)}"
        for k, x in zip(kernel.flat, window.flat, strict=True)
    )


def _latex_cell(cell: Cell, op: str) -> str:
    lhs = f"(I {op} K)_{{{','.join(str(i) for i in cell.index)}}}"
    if cell.channel_sums is None:
        return f"{lhs} &= {_latex_terms(cell.kernel, cell.window)} = {fmt_latex(cell.total)}"
    groups = " + ".join(
        f"\\left({_latex_terms(k, x)}\\right)"
        for k, x in zip(cell.kernel, cell.window, strict=True)
    )
    sums = " + ".join(_latex_factor(s) for s in cell.channel_sums)
    return f"{lhs} &= {groups} = {sums} = {fmt_latex(cell.total)}"


def _latex(ex: Explanation, max_cells: int | None, extra: dict[str, Any] | None) -> Iterator[str]:
    op = "\\star" if ex.operation == "cross-correlation" else "*"
    out = [
        f"% {_header(ex)}",
        "\\[",
        f"{_latex_array(ex, ex.input, 'input', 'I')}, \\quad "
        f"{_latex_array(ex, ex.kernel, 'kernel', 'K')}",
        "\\]",
    ]
    if ex.operation == "convolution":
        out += [
            "\\[",
            f"\\text{{flipped}}\\ {_latex_array(ex, ex.applied_kernel, 'kernel', 'K')}",
            "\\]",
        ]
    out.append("\\begin{align*}")
    yield "\n".join(out) + "\n"
    shown, hidden = _counts(ex, max_cells)
    for k, cell in enumerate(ex.cells[:shown]):
        yield (" \\\\\n" if k else "") + _latex_cell(cell, op)
    out = ["", "\\end{align*}"]
    if hidden:
        out.append(f"% ... {hidden} more cells not shown")
    symbol = f"(I {op} K)" if ex.output_channels else f"I {op} K"
    out += ["\\[", _latex_array(ex, ex.output, "output", symbol), "\\]"]
    yield "\n".join(out) + "\n"


_CELLS = "\x00cells\x00"


def _json(ex: Explanation, max_cells: int | None, extra: dict[str, Any] | None) -> Iterator[str]:
    """The same text as ``json.dumps(doc, indent=2)`` of the whole document, written cell by cell."""
    not_shown = {
        key: {"shape": list(arr.shape), "values": int(arr.size)}
        for key, arr in (
            ("input", ex.input),
            ("kernel", ex.kernel),
            ("applied_kernel", ex.applied_kernel),
            ("output", ex.output),
        )
        if _omitted(arr) is not None
    }
    d = ex._head_dict(omit=not_shown)
    shown, hidden = _counts(ex, max_cells)
    d["cells"] = _CELLS
    d["warnings"] = list(ex.warnings)
    d["cells_not_shown"] = hidden
    if not_shown:
        d["not_shown"] = not_shown
    d.update(extra or {})
    head, tail = json.dumps(d, indent=2).split(json.dumps(_CELLS), 1)
    yield head
    if not shown:
        yield "[]"
    else:
        for k, cell in enumerate(ex.cells[:shown]):
            body = json.dumps(cell.to_dict(), indent=2).replace("\n", "\n    ")
            yield ("[\n    " if k == 0 else ",\n    ") + body
        yield "\n  ]"
    yield tail + "\n"


__all__ = ["FORMATS", "fmt_factor", "render", "render_chunks"]


def _channel_parts(cell: Cell) -> list[str]:
    """``channel c: products = values = sum`` for each input channel of a multi-channel cell."""
    sums: list[Any] = list(cell.channel_sums or [])
    parts = zip(cell.channel_expressions(), cell.channel_products(), sums, strict=True)
    return [f"channel {c}: {e} = {p} = {fmt(s)}" for c, (e, p, s) in enumerate(parts)]


def _channel_total(cell: Cell) -> str:
    """The per-channel sums as one addition, ``s0 + s1 + ...``."""
    return " + ".join(fmt_factor(s) for s in cell.channel_sums or [])
