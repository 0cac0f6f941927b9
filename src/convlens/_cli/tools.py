"""The ``convlens`` commands that work on matrices and images, not on runs: ``explain``,
``kernels`` and ``filter``. Registered on the main group by :mod:`convlens.cli`; each calls one
function of :mod:`convlens.commands` and prints what it returns."""

from __future__ import annotations

import sys
from typing import Any

import click

MATRIX_HELP = (
    'Kernel: "1 2 3; 4 5 6; 7 8 9", JSON [[1,2],[3,4]], @file (.npy/.csv/.txt/.json), '
    'or a bank name such as sobel_x. Channels: "1 0; 0 1 | 2 2; 2 2" (| between channel '
    "matrices, || between output channels), JSON nested lists or a .npy of shape (C, kh, kw) "
    "or (O, C, kh, kw)."
)


@click.command()
@click.option("--kernel", "-k", required=True, help=MATRIX_HELP)
@click.option(
    "--input",
    "-i",
    "input_",
    required=True,
    help="Input, same forms as --kernel: (H, W), or channels first (C, H, W) with | between "
    "the channel matrices; with --dims 1 one row per channel, with --dims 3 (D, H, W) or "
    "(C, D, H, W).",
)
@click.option("--stride", default="1", show_default=True, help="Stride: n or 'rows,cols'.")
@click.option(
    "--padding",
    default="valid",
    show_default=True,
    help="valid | same | full | n | 'rows,cols' (zeros).",
)
@click.option("--dilation", default="1", show_default=True, help="Dilation: n or 'rows,cols'.")
@click.option(
    "--dims",
    type=click.IntRange(1, 3),
    default=2,
    show_default=True,
    help="Spatial axes: 1 (signal), 2 (matrix) or 3 (volume). 1 and 3 need --format json.",
)
@click.option(
    "--convolve",
    is_flag=True,
    help="True convolution (flip the kernel) instead of cross-correlation.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "latex", "json"]),
    default="text",
    show_default=True,
)
@click.option(
    "--expect",
    default=None,
    help="Claimed feature map to check; exit code 1 and one line per wrong cell if it differs.",
)
@click.option(
    "--max-cells",
    type=click.IntRange(min=0),
    default=None,
    help="Work out at most this many cells (default: all). Cells are built one at a time as "
    "they are printed. Matrices over 10000 values are not printed (a line says so).",
)
def explain(**options: Any) -> None:
    """Show every output cell of a cross-correlation as its products and sum.

    With channels (input (C, H, W), kernel (C, kh, kw) or (O, C, kh, kw)) each cell shows the
    products and sum per input channel and their total. Refused up front, from the shapes: an
    input over 4096x4096 values, a kernel over 256x256, padding, stride or dilation over 4096,
    a feature map over 1048576 cells, over 2**30 multiply-adds (2**22 with fractions).

    \b
    Example (the seed's worked example; the top-left cell is 154, not 146):
      convlens explain --kernel "1 2 3; 4 5 6; 7 8 9" \\
                       --input "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8" --expect "146 157; 200 233"
    Two channels:
      convlens explain --kernel "1 0; 0 1 | 1 1; 1 1" --input "1 2 3; 4 5 6 | 1 0 1; 0 1 0"
    """
    from convlens.commands import ExplainArgs, explain_chunks

    options["input"] = options.pop("input_")
    chunks, ok = explain_chunks(ExplainArgs(**options))
    for chunk in chunks:
        click.echo(chunk, nl=False)
    if not ok:
        sys.exit(1)


@click.group(invoke_without_command=True)
@click.pass_context
def kernels(ctx: click.Context) -> None:
    """List the classical kernel bank (`convlens kernels show NAME` for one)."""
    if ctx.invoked_subcommand is None:
        from convlens.commands import kernel_table

        click.echo(kernel_table(), nl=False)


@kernels.command("show")
@click.argument("spec")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def kernels_show(spec: str, fmt: str) -> None:
    """Print one kernel: weights (as the correlation kernel Conv2d applies) and provenance.

    SPEC is a name, optionally with parameters: sobel_x, sobel_x:size=5, gabor:angle=45,frequency=0.2
    """
    from convlens.commands import kernel_details

    click.echo(kernel_details(spec, fmt), nl=False)


@click.command("filter")
@click.argument("image")
@click.option(
    "--kernel",
    "-k",
    "kernel_specs",
    multiple=True,
    help="Bank kernel spec, repeatable (default: sobel_x, sobel_y, laplacian_4, log, gabor).",
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the feature-map PNGs, .npy arrays and summary.json.",
)
@click.option(
    "--padding", default="same", show_default=True, type=click.Choice(["same", "valid", "full"])
)
@click.option(
    "--max-pixels",
    default=16_777_216,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse images with more pixels than this.",
)
def filter_cmd(
    image: str, kernel_specs: tuple[str, ...], out_dir: str, padding: str, max_pixels: int
) -> None:
    """Apply classical kernels to IMAGE (a file, a .npy array, or sample:camera, sample:astronaut, ...)."""
    from convlens.commands import filter_image

    click.echo(filter_image(image, kernel_specs, out_dir, padding, max_pixels), nl=False)
