"""The ``convlens`` commands that render a finished run: ``report`` (HTML) and ``export``
(TensorBoard). Registered on the main group by :mod:`convlens.cli`; each calls one library
function and prints what it wrote."""

from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", metavar="RUN_OR_ANALYSIS")
@click.option(
    "--out",
    "out_file",
    default=None,
    help="HTML file to write (default: RUN/report.html, or MODEL.report.html beside MODEL.analysis.json).",
)
@click.option(
    "--beside",
    default=None,
    metavar="OTHER_RUN",
    help="Another analysed run or demo folder (e.g. from `convlens demo --data natural`) whose "
    "first layer the answer section shows beside this one's.",
)
def report(run_dir: str, out_file: str | None, beside: str | None) -> None:
    """Render a self-contained, offline HTML report of a run directory (with its analysis.json) or
    of a model-file analysis (MODEL.analysis.json written by `convlens analyze MODEL`)."""
    from convlens.report import build_report

    click.echo(f"wrote {build_report(run_dir, out_file, beside)}")


@click.command()
@click.argument("run_dir")
@click.option(
    "--tensorboard",
    "tb_dir",
    required=True,
    help="Write TensorBoard events to DIR/<run name> (view with: tensorboard --logdir DIR "
    "--samples_per_plugin images=100).",
)
def export(run_dir: str, tb_dir: str) -> None:
    """Export a training run (metrics, kernels, weight histograms, feature maps) to TensorBoard."""
    from convlens.export.tensorboard import export_tensorboard

    click.echo("\n".join(export_tensorboard(run_dir, tb_dir).lines()))
