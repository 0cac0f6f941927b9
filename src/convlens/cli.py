"""The ``convlens`` command. Thin: parse options, call one library function, print, exit code.

The error contract (:class:`convlens._cli.contract.ConvlensGroup`), for every command:

- 0: success. Warnings raised on the way (numpy, torch) are printed at the end as one line each,
  ``convlens: warning: ...``; known harmless ones are dropped.
- 1: ``explain --expect`` found a wrong cell; or a bug: one line
  ``convlens: internal error: <Type>: <message> (rerun with --debug for the traceback)``.
- 2: bad input or environment: one line ``convlens: error: <message>`` on stderr naming the value
  or file and what to do. This covers :class:`ConvlensError` (plus the flag hint of
  :data:`HINTS`), :class:`OSError` (file, reason, advice), :class:`MemoryError` and click's usage
  errors (``... (see `convlens CMD --help`)``).
- 130: interrupted (Ctrl-C), one line ``convlens: interrupted``.
- 141: the reader of stdout went away (``convlens kernels | head``); nothing printed.

``convlens --debug CMD`` (or ``CONVLENS_DEBUG=1``) also prints the traceback and every warning.
Library errors speak in library terms; where a flag of this command fixes the problem,
:data:`HINTS` adds it (see :mod:`convlens.errors`).
"""

from __future__ import annotations

from typing import Any

import click

from convlens import __version__
from convlens._cli.contract import HINTS, ConvlensGroup
from convlens._cli.options import SEED, analyze_options, demo_options

__all__ = ["HINTS", "cli", "main"]


@click.group(cls=ConvlensGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="convlens")
@click.option(
    "--debug",
    is_flag=True,
    help="On an error, also print the Python traceback (and every warning as it happens).",
)
def cli(debug: bool) -> None:
    """See exactly what a convolutional layer computes, and measure what a CNN learns."""


@cli.command()
@click.option(
    "--data",
    default="faces",
    show_default=True,
    help="faces | digits | signals | natural | PATH (class sub-folders) | idx:DIR | cifar:DIR | npz:FILE",
)
@click.option(
    "--model",
    default=None,
    help="Reference CNN (default: per dataset; faces-cnn, digits-cnn, small-cnn, wide-cnn).",
)
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--weight-decay", default=0.0, show_default=True, type=float)
@click.option(
    "--optimizer", default="adam", show_default=True, type=click.Choice(["adam", "adamw", "sgd"])
)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--ood",
    default=None,
    metavar="LIST",
    help="OOD sets, comma-separated (default: every bundled set but the data itself; none: no "
    "OOD sets).",
)
@click.option(
    "--ood-size", default=100, show_default=True, type=click.IntRange(min=1), help="Per OOD set."
)
@click.option(
    "--probes-per-set",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Probe images per set whose feature maps are kept.",
)
@click.option(
    "--first-kernel",
    default=None,
    type=click.IntRange(min=1),
    help="First conv layer's kernel size (odd; default: the model preset's).",
)
@click.option(
    "--out", "out_dir", default=None, help="Run directory (default: runs/<data>-seed<seed>)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite --out if it already exists (removes only convlens's own files there).",
)
@click.option("--no-snapshots", is_flag=True, help="Skip kernel snapshots and probe feature maps.")
@click.option(
    "--probes/--no-probes",
    default=None,
    help="Keep probe feature maps (default: with the snapshots; --no-snapshots --probes keeps "
    "them without snapshots).",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=1),
    default=None,
    help="Snapshot every N epochs (and the last) instead of the default log-spaced epochs "
    "(0, 1, 2, 3, 4, 6, 8, 11, 16, 23, ... and the last).",
)
@click.option(
    "--snapshot-epochs",
    default=None,
    metavar="LIST",
    help="Snapshot exactly these epochs, e.g. 0,5,10 (0 and the last are always added).",
)
@click.option(
    "--checkpoint-seconds",
    type=click.FloatRange(min=0, max=60),
    default=1.0,
    show_default=True,
    help="Least seconds between two checkpoints (with metrics.jsonl) at snapshot epochs; the last "
    "epoch always checkpoints, and any epoch 60 s after the last checkpoint. 0: every snapshot "
    "epoch, epoch 0 too. It changes what a kill loses, never the run.",
)
@click.option(
    "--shuffle-labels",
    is_flag=True,
    help="Random-label control: permute the training labels (seeded by --seed; val/test keep "
    "the true labels).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(
    out_dir: str | None,
    resume: bool,
    force: bool,
    quiet: bool,
    checkpoint_seconds: float,
    **options: Any,
) -> None:
    """Train a reference CNN offline, snapshotting kernels and feature maps at log-spaced epochs."""
    from convlens.pipelines import default_run_dir, train_run
    from convlens.runs.records import RunConfig

    config = RunConfig.from_cli(options)  # the one mapping of options to the config
    out = out_dir or default_run_dir(config.data, config.seed)
    ctx = click.get_current_context()
    cmdline = click.core.ParameterSource.COMMANDLINE
    typed = [n for n in ctx.params if ctx.get_parameter_source(n) == cmdline]
    # --epochs extends a resumed run only when given on the command line (not its default)
    extend = config.epochs if "epochs" in typed else None
    if resume:  # options that contradict the recorded config are refused, not ignored
        from convlens.train.resume_options import check_resume_options

        check_resume_options(out, config, typed)
    run = train_run(
        config,
        out,
        resume=resume,
        force=force,
        extend_epochs=extend,
        progress=not quiet,
        log=lambda line: click.echo(line, err=True),
        checkpoint_seconds=checkpoint_seconds,
    )
    from convlens.parallel.dist import is_main

    if is_main():  # under torchrun rank 0 prints
        click.echo("\n".join(run.summary()))


@cli.command()
@click.argument("target")
@analyze_options
def analyze(target: str, out_file: str | None, **options: Any) -> None:
    """Measure what a trained CNN learned: TARGET is a run directory or a model file.

    \b
    Model files: .safetensors, .pt/.pth (weights_only=True), .onnx (weights from initializers, Constant nodes, If/Loop/Scan subgraphs; quantised convs dequantised).
    Writes analysis.json; prints the headline figures (model files: a per-layer table first).
    """
    from convlens._cli.options import to_analyze_options
    from convlens.pipelines import analyze_target
    from convlens.summary import analysis_summary, layer_table

    result, dest = analyze_target(target, to_analyze_options(**options), out=out_file)
    from convlens.parallel.dist import is_main

    if not is_main():  # under torchrun rank 0 prints and writes
        return
    to_stdout = out_file == "-"  # the JSON alone on stdout, for scripts; the summary on stderr
    if result.source.kind == "model_file":  # a compact table of every layer first
        for line in layer_table(result):
            click.echo(line, err=to_stdout)
    for line in analysis_summary(result):
        click.echo(line, err=to_stdout)
    if to_stdout:
        click.echo(result.to_json(indent=1))
    else:
        click.echo(f"wrote {dest}")


@cli.command()
@demo_options
def demo(out_dir: str, quiet: bool, readme: str | None, **options: Any) -> None:
    """Train on bundled data, analyse, and write a self-contained HTML report; print its path.

    --out must be missing, empty or a previous demo (or give --force).
    The recipe (convlens.train.recipes.DEMO_RECIPE): faces, faces-cnn (5x5 first layer), AdamW,
    weight decay 4, 100 epochs. The first run gets the full report; the others feed the seeds table.
    Each seed also trains a random-label control (same recipe, permuted labels).
    """
    from convlens._cli.options import to_demo_options
    from convlens.demo import demo_answer, run_demo, update_readme

    def log(line: str) -> None:
        click.echo(line, err=True)

    progress = (lambda _line: None) if quiet else log
    path = run_demo(out_dir, to_demo_options(**options), progress=not quiet, log=progress)
    for line in demo_answer(out_dir):
        log(line)
    if readme:
        update_readme(out_dir, readme)
        log(f"[readme] answer block of {readme} rewritten")
    click.echo(str(path))


from convlens._cli.rendering import export, report  # noqa: E402
from convlens._cli.tools import explain, filter_cmd, kernels  # noqa: E402
from convlens._cli.validate import validate_cmd  # noqa: E402

for command in (report, export, explain, kernels, filter_cmd, validate_cmd):
    cli.add_command(command)


def main() -> None:
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        cli(prog_name="convlens")
        return
    # A torchrun rank: once the command is done and its files written, leave without the C++
    # teardown, which can abort a finished rank ("terminate called without an active exception").
    code = 0
    try:
        cli(prog_name="convlens")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
