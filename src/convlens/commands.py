"""Library functions behind ``convlens explain``, ``kernels`` and ``filter``: parse the command's
text arguments, compute, and return the exact text to print (tested without click)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from convlens.errors import ConvlensError

DEFAULT_FILTER_KERNELS = ("sobel_x", "sobel_y", "laplacian_4", "log", "gabor")


def parse_ints(text: str, name: str) -> int | tuple[int, ...]:
    """``"2"`` -> 2, ``"2,1"`` / ``"2x1"`` / ``"2 1"`` -> (2, 1)."""
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConvlensError(
            f"{name} must be an integer or two integers like '2,1', got {text!r}"
        ) from None
    if not values:
        raise ConvlensError(f"{name} is empty")
    return values[0] if len(values) == 1 else values


def parse_padding(text: str) -> Any:
    """``valid`` | ``same`` | ``full`` | an integer | two integers."""
    t = text.strip().lower()
    if t in ("valid", "same", "full"):
        return t
    try:
        return parse_ints(t, "padding")
    except ConvlensError:
        raise ConvlensError(
            f"padding must be valid, same, full, an integer or two integers like '1,2', got {text!r}"
        ) from None


def kernel_or_matrix(text: str) -> Any:
    """A bank kernel spec (``sobel_x``, ``gabor:angle=45``) or an array in any accepted form:
    a matrix, ``|``-separated channel matrices, JSON nested lists, or ``@file.npy`` (any shape)."""
    from convlens.explain.limits import MAX_KERNEL_ELEMENTS
    from convlens.explain.parse import parse_array
    from convlens.kernels import list_kernels, parse_kernel_spec

    name = text.strip().split(":", 1)[0]
    if name in list_kernels():
        return parse_kernel_spec(text).weights
    return parse_array(text, "kernel", max_elements=MAX_KERNEL_ELEMENTS)


@dataclass
class ExplainArgs:
    """The text arguments of ``convlens explain``."""

    kernel: str
    input: str
    stride: str = "1"
    padding: str = "valid"
    dilation: str = "1"
    convolve: bool = False
    fmt: str = "text"
    expect: str | None = None
    max_cells: int | None = None
    dims: int = 2


def explain_chunks(args: ExplainArgs) -> tuple[Iterator[str], bool]:
    """The worked explanation (and the check of a claimed result) as pieces of text to print in
    order, and ``ok`` (False when a claimed result differs). Every error is raised before the
    first piece; the cells are built as the pieces are consumed, so memory stays bounded by one
    cell whatever ``max_cells`` is."""
    from convlens.explain import explain
    from convlens.explain.parse import parse_array
    from convlens.explain.render import render_chunks

    ex = explain(
        kernel_or_matrix(args.kernel),
        parse_array(args.input, "input"),
        stride=parse_ints(args.stride, "stride"),
        padding=parse_padding(args.padding),
        dilation=parse_ints(args.dilation, "dilation"),
        convolve=args.convolve,
        dims=args.dims,
    )
    expected = parse_array(args.expect, "expect") if args.expect is not None else None
    result = ex.check(expected) if expected is not None else None
    ok = result is None or result.ok
    if args.fmt == "json":
        extra = {"check": result.to_dict()} if result is not None else None
        return render_chunks(ex, "json", max_cells=args.max_cells, extra=extra), ok
    chunks = render_chunks(ex, args.fmt, max_cells=args.max_cells)
    if result is None:
        return chunks, ok
    check = "\n" + "".join(line + "\n" for line in result.lines())
    return itertools.chain(chunks, [check]), ok


def explain_text(args: ExplainArgs) -> tuple[str, bool]:
    """The worked explanation (and the check of a claimed result) as printed; ``ok`` is False when
    a claimed result differs."""
    chunks, ok = explain_chunks(args)
    return "".join(chunks), ok


def kernel_table() -> str:
    """Every bank kernel with its size, family and one-line description."""
    from convlens.kernels import get_kernel, kernel_summary, list_kernels

    rows = []
    for name in list_kernels():
        family, summary = kernel_summary(name)
        shape = "x".join(map(str, get_kernel(name).shape))
        rows.append((name, shape, family, summary))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{'name'.ljust(w[0])}  {'size'.ljust(w[1])}  {'family'.ljust(w[2])}  description"]
    lines += [f"{r[0].ljust(w[0])}  {r[1].ljust(w[1])}  {r[2].ljust(w[2])}  {r[3]}" for r in rows]
    lines.append(
        f"\n{len(rows)} kernels. Parameters: convlens kernels show NAME (e.g. gabor:angle=45,size=9)."
    )
    return "\n".join(lines) + "\n"


def kernel_details(spec: str, fmt: str = "text") -> str:
    """One kernel: weights as the correlation kernel ``Conv2d`` applies, and its provenance."""
    from convlens.explain.numbers import fmt as fmt_number
    from convlens.kernels import kernel_parameters, parse_kernel_spec

    k = parse_kernel_spec(spec)
    if fmt == "json":
        return json.dumps(k.to_dict(), indent=2) + "\n"
    floats = k.weights.dtype.kind == "f"
    cells = [[f"{v:.6g}" if floats else fmt_number(v) for v in row] for row in k.weights.tolist()]
    width = max(len(c) for row in cells for c in row)
    lines = [f"{k.name} ({'x'.join(map(str, k.shape))}, {k.family}): {k.description}"]
    lines += ["  " + " ".join(c.rjust(width) for c in row) for row in cells]
    if floats:
        lines.append("  (6 significant digits shown; --format json gives full precision)")
    lines.append(f"source:        {k.source}")
    lines.append(f"normalisation: {k.normalisation}")
    if k.skimage:
        lines.append(f"scikit-image:  {k.skimage}")
    params = kernel_parameters(k.name)
    if params:
        values = ", ".join(f"{p}={k.params.get(p, d)}" for p, d in params.items())
        lines.append(f"parameters:    {values}")
    lines.append("applied as:    cross-correlation (copy into a torch.nn.Conv2d weight as is)")
    return "\n".join(lines) + "\n"


def filter_image(
    image: str, kernel_specs: tuple[str, ...], out_dir: str, padding: str, max_pixels: int
) -> str:
    """Apply bank kernels to an image, write the feature maps, and return the summary text."""
    from convlens.apply import apply_kernels, write_feature_maps
    from convlens.data.images import load_image
    from convlens.kernels import parse_kernel_spec

    specs = kernel_specs or DEFAULT_FILTER_KERNELS
    kernels_ = [(s, parse_kernel_spec(s)) for s in specs]
    loaded = load_image(image, max_pixels=max_pixels)
    maps = apply_kernels(loaded, kernels_, padding=padding)  # type: ignore[arg-type]
    try:
        summary = write_feature_maps(out_dir, loaded, maps, padding)  # type: ignore[arg-type]
    except OSError as exc:
        raise ConvlensError(f"cannot write to {out_dir!r}: {exc.strerror or exc}") from None
    h, w = loaded.pixels.shape
    lines = [f"{loaded.source}: {h}x{w} grey ({loaded.conversion})"]
    for e in summary["feature_maps"]:
        s = e["stats"]
        lines.append(
            f"  {e['kernel']:<28} -> {e['png']:<28} min {s['min']:+.4g}  max {s['max']:+.4g}  "
            f"mean|.| {s['mean_abs']:.4g}"
        )
    lines.append(f"wrote {len(maps)} feature maps and summary.json to {out_dir}")
    return "\n".join(lines) + "\n"
