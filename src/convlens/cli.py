"""The ``convlens`` command. Thin: parse, call the library, print, exit code.

Exit codes: 0 success; 1 a check failed (``explain --expect`` mismatch); 2 bad input (message on
stderr, no traceback).
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any, cast

import click

from convlens import __version__
from convlens.errors import ConvlensError

if TYPE_CHECKING:
    from convlens.ops.geometry import PaddingMode


class _Group(click.Group):
    """Turns :class:`ConvlensError` into ``convlens: error: ...`` on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConvlensError as exc:
            click.echo(f"convlens: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="convlens")
def cli() -> None:
    """See exactly what a convolutional layer computes, and measure what a CNN learns."""


def _ints(text: str, name: str) -> int | tuple[int, ...]:
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


def _padding(text: str) -> Any:
    t = text.strip().lower()
    if t in ("valid", "same", "full"):
        return t
    try:
        return _ints(t, "padding")
    except ConvlensError:
        raise ConvlensError(
            f"padding must be valid, same, full, an integer or two integers like '1,2', got {text!r}"
        ) from None


def _kernel_matrix(text: str) -> Any:
    """A bank kernel name (``sobel_x``, ``gabor:angle=45``) or a matrix."""
    from convlens.explain import parse_matrix
    from convlens.kernels import list_kernels, parse_kernel_spec

    name = text.strip().split(":", 1)[0]
    if name in list_kernels():
        return parse_kernel_spec(text).weights
    return parse_matrix(text, "kernel")


@cli.command()
@click.option(
    "--kernel",
    "-k",
    required=True,
    help='Kernel: "1 2 3; 4 5 6; 7 8 9", JSON [[1,2],[3,4]], @file (.npy/.csv/.txt/.json), '
    "or a bank name such as sobel_x.",
)
@click.option(
    "--input", "-i", "input_", required=True, help="Input matrix, same forms as --kernel."
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
    "--convolve",
    is_flag=True,
    help="True convolution (flip the kernel) instead of cross-correlation.",
)
@click.option(
    "--format",
    "fmt_name",
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
    help="Work out at most this many cells (the feature map is always complete).",
)
def explain(
    kernel: str,
    input_: str,
    stride: str,
    padding: str,
    dilation: str,
    convolve: bool,
    fmt_name: str,
    expect: str | None,
    max_cells: int | None,
) -> None:
    """Show every output cell of a 2-D cross-correlation as its products and sum.

    \b
    Example (the seed's worked example; the top-left cell is 154, not 146):
      convlens explain --kernel "1 2 3; 4 5 6; 7 8 9" \\
                       --input "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8" --expect "146 157; 200 233"
    """
    from convlens.explain import explain as do_explain
    from convlens.explain import parse_matrix

    ex = do_explain(
        _kernel_matrix(kernel),
        parse_matrix(input_, "input"),
        stride=_ints(stride, "stride"),
        padding=_padding(padding),
        dilation=_ints(dilation, "dilation"),
        convolve=convolve,
    )
    expected = parse_matrix(expect, "expect") if expect is not None else None
    result = ex.check(expected) if expected is not None else None
    if fmt_name == "json":
        doc = json.loads(ex.render("json", max_cells=max_cells))
        if result is not None:
            doc["check"] = result.to_dict()
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(ex.render(fmt_name, max_cells=max_cells), nl=False)
        if result is not None:
            click.echo("")
            for line in result.lines():
                click.echo(line)
    if result is not None and not result.ok:
        sys.exit(1)


@cli.group(invoke_without_command=True)
@click.pass_context
def kernels(ctx: click.Context) -> None:
    """List the classical kernel bank (`convlens kernels show NAME` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from convlens.kernels import get_kernel, kernel_summary, list_kernels

    rows = []
    for name in list_kernels():
        family, summary = kernel_summary(name)
        shape = "x".join(map(str, get_kernel(name).shape))
        rows.append((name, shape, family, summary))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    click.echo(
        f"{'name'.ljust(widths[0])}  {'size'.ljust(widths[1])}  {'family'.ljust(widths[2])}  description"
    )
    for r in rows:
        click.echo(
            f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2].ljust(widths[2])}  {r[3]}"
        )
    click.echo(
        f"\n{len(rows)} kernels. Parameters: convlens kernels show NAME (e.g. gabor:angle=45,size=9)."
    )


@kernels.command("show")
@click.argument("spec")
@click.option(
    "--format", "fmt_name", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def kernels_show(spec: str, fmt_name: str) -> None:
    """Print one kernel: weights (as the correlation kernel Conv2d applies) and provenance.

    SPEC is a name, optionally with parameters: sobel_x, sobel_x:size=5, gabor:angle=45,frequency=0.2
    """
    from convlens.explain.numbers import fmt
    from convlens.kernels import kernel_parameters, parse_kernel_spec

    k = parse_kernel_spec(spec)
    if fmt_name == "json":
        click.echo(json.dumps(k.to_dict(), indent=2))
        return
    floats = k.weights.dtype.kind == "f"
    cells = [[f"{v:.6g}" if floats else fmt(v) for v in row] for row in k.weights.tolist()]
    width = max(len(c) for row in cells for c in row)
    click.echo(f"{k.name} ({'x'.join(map(str, k.shape))}, {k.family}): {k.description}")
    for row in cells:
        click.echo("  " + " ".join(c.rjust(width) for c in row))
    if floats:
        click.echo("  (6 significant digits shown; --format json gives full precision)")
    click.echo(f"source:        {k.source}")
    click.echo(f"normalisation: {k.normalisation}")
    if k.skimage:
        click.echo(f"scikit-image:  {k.skimage}")
    params = kernel_parameters(k.name)
    if params:
        click.echo(
            "parameters:    " + ", ".join(f"{p}={k.params.get(p, d)}" for p, d in params.items())
        )
    click.echo("applied as:    cross-correlation (copy into a torch.nn.Conv2d weight as is)")


DEFAULT_FILTER_KERNELS = ("sobel_x", "sobel_y", "laplacian_4", "log", "gabor")


@cli.command("filter")
@click.argument("image")
@click.option(
    "--kernel",
    "-k",
    "kernel_specs",
    multiple=True,
    help=f"Bank kernel spec, repeatable (default: {', '.join(DEFAULT_FILTER_KERNELS)}).",
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
    from convlens.data.images import load_image
    from convlens.filtering import apply_kernels, write_feature_maps
    from convlens.kernels import parse_kernel_spec

    specs = kernel_specs or DEFAULT_FILTER_KERNELS
    kernels_ = [(s, parse_kernel_spec(s)) for s in specs]
    loaded = load_image(image, max_pixels=max_pixels)
    mode = cast("PaddingMode", padding)
    maps = apply_kernels(loaded, kernels_, padding=mode)
    try:
        summary = write_feature_maps(out_dir, loaded, maps, mode)
    except OSError as exc:
        raise ConvlensError(f"cannot write to {out_dir!r}: {exc.strerror or exc}") from None
    h, w = loaded.pixels.shape
    click.echo(f"{loaded.source}: {h}x{w} grey ({loaded.conversion})")
    for e in summary["feature_maps"]:
        s = e["stats"]
        click.echo(
            f"  {e['kernel']:<28} -> {e['png']:<28} min {s['min']:+.4g}  max {s['max']:+.4g}  "
            f"mean|.| {s['mean_abs']:.4g}"
        )
    click.echo(f"wrote {len(maps)} feature maps and summary.json to {out_dir}")


@cli.command()
@click.option(
    "--data",
    default="faces",
    show_default=True,
    help="faces | digits | PATH (class sub-folders) | idx:DIR | cifar:DIR | npz:FILE",
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
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--out", "out_dir", default=None, help="Run directory (default: runs/<data>-seed<seed>)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite --out if it already exists.")
@click.option(
    "--no-snapshots", is_flag=True, help="Skip per-epoch kernel snapshots and probe feature maps."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(
    data: str,
    model: str | None,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    optimizer: str,
    seed: int,
    device: str,
    out_dir: str | None,
    resume: bool,
    force: bool,
    no_snapshots: bool,
    quiet: bool,
) -> None:
    """Train a reference CNN offline, snapshotting kernels and feature maps every epoch."""
    from convlens.data.loaders import load_dataset
    from convlens.train import RunDir, TrainConfig, Trainer

    out = out_dir or f"runs/{re.sub(r'[^A-Za-z0-9_.-]+', '_', data)}-seed{seed}"
    if resume:
        run = RunDir(out)
        cfg_dict = run.read_run().get("config")
        if not isinstance(cfg_dict, dict):
            raise ConvlensError(f"{out!r}: run.json has no config to resume")
        try:
            cfg = TrainConfig(**cfg_dict)
        except TypeError as exc:
            raise ConvlensError(f"{out!r}: run.json config is not understood: {exc}") from None
        # --epochs extends a resumed run only when given on the command line (not its default)
        source = click.get_current_context().get_parameter_source("epochs")
        if source == click.core.ParameterSource.COMMANDLINE:
            cfg.epochs = max(cfg.epochs, epochs)
    else:
        cfg = TrainConfig(
            data=data,
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            seed=seed,
            device=device,
            snapshots=not no_snapshots,
            probes=not no_snapshots,
        )
    dataset = load_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, dataset, out, progress=not quiet)
    result = trainer.resume() if resume else trainer.train(force=force)
    last = result.metrics[-1] if result.metrics else {}
    click.echo(
        f"{dataset.name}: {result.epochs} epochs in {result.seconds:.2f} s on {trainer.device}; "
        f"val acc {last.get('val_acc', float('nan')):.4f}, test acc {result.test_accuracy:.4f} "
        f"(n={len(dataset.splits['test'])})"
    )
    click.echo(f"run directory: {out}")


@cli.command()
@click.argument("target")
@click.option(
    "--out",
    "out_file",
    default=None,
    help="Where to write the JSON (default: RUN/analysis.json, or MODEL.analysis.json beside a model file).",
)
@click.option(
    "--null-size",
    default=2000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Random kernels in the null baseline.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the null baseline and bootstraps.",
)
@click.option(
    "--factory",
    default=None,
    help="package.module:function building the model (for a weights file).",
)
@click.option(
    "--data",
    default=None,
    help="Dataset for activations with --factory (same forms as `train --data`).",
)
@click.option("--ood", default=None, help="Comma-separated OOD sets (default: all bundled ones).")
def analyze(
    target: str,
    out_file: str | None,
    null_size: int,
    seed: int,
    factory: str | None,
    data: str | None,
    ood: str | None,
) -> None:
    """Measure what a trained CNN learned: TARGET is a run directory or a model file.

    \b
    Model files: .safetensors, .pt/.pth (weights_only=True), .onnx (conv initializers).
    Writes analysis.json; prints the headline figures.
    """
    from pathlib import Path

    from convlens._atomic import write_json
    from convlens.analysis import analyze_model_file, analyze_run

    path = Path(target)
    if path.is_dir():
        result = analyze_run(path, n_null=null_size, seed=seed)
        dest = Path(out_file) if out_file else path / "analysis.json"
    elif path.is_file():
        ood_list = [o.strip() for o in ood.split(",") if o.strip()] if ood else None
        result = analyze_model_file(
            path, factory=factory, data=data, ood=ood_list, n_null=null_size, seed=seed
        )
        dest = Path(out_file) if out_file else path.with_name(path.name + ".analysis.json")
    else:
        raise ConvlensError(f"{target!r} is neither a run directory nor a model file")
    try:
        write_json(dest, result)
    except OSError as exc:
        raise ConvlensError(f"cannot write {str(dest)!r}: {exc.strerror or exc}") from None
    h = result.get("headline", {})
    for layer in result.get("matching", []):
        if layer.get("skipped"):
            click.echo(
                f"{layer['layer']}: {layer['n_kernels']} kernels, matching skipped: {layer['skipped']}"
            )
        else:
            init = layer.get("init_fraction_above_null95")
            init_text = f", epoch-000 kernels {init:.0%}" if init is not None else ""
            click.echo(
                f"{layer['layer']}: {layer['n_kernels']} kernels {layer['kernel_size']}x{layer['kernel_size']}, "
                f"{layer['fraction_above_null95']:.0%} above the random null's 95th percentile "
                f"({(layer.get('null') or {}).get('p95', float('nan')):.3f}; chance 5%{init_text})"
            )
    if "all_layers_cross_correlation" in h:
        click.echo(
            f"layer == cross-correlation: max |diff| {h['max_abs_diff_correlate']:.2e} "
            f"(vs true convolution: {h['min_abs_diff_convolve']:.2e})"
        )
    for layer, per in (h.get("auroc") or {}).items():
        click.echo(f"{layer} ID-vs-OOD AUROC: " + ", ".join(f"{o} {v:.2f}" for o, v in per.items()))
    click.echo(f"wrote {dest}")


@cli.command()
@click.argument("run_dir")
@click.option(
    "--out", "out_file", default=None, help="HTML file to write (default: RUN/report.html)."
)
def report(run_dir: str, out_file: str | None) -> None:
    """Render RUN/report.html from a run directory and its analysis.json (self-contained, offline)."""
    from convlens.report import build_report

    path = build_report(run_dir, out_file)
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True, help="Run directory.")
@click.option("--data", default=None, help="Dataset (default: the recipe's, bundled faces).")
@click.option(
    "--epochs", default=None, type=click.IntRange(min=1), help="Override the recipe's epochs."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the main run.")
@click.option(
    "--seeds",
    "n_seeds",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training runs (seed, seed+1, ...) for the across-seeds table.",
)
@click.option("--null-size", default=2000, show_default=True, type=click.IntRange(min=100))
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo(
    out_dir: str,
    data: str | None,
    epochs: int | None,
    seed: int,
    n_seeds: int,
    null_size: int,
    quiet: bool,
) -> None:
    """Train on bundled data, analyse, and write a self-contained HTML report; print its path.

    The recipe (convlens.train.recipes.DEMO_RECIPE): faces, faces-cnn (5x5 first layer), AdamW,
    weight decay 4, 100 epochs. The first run gets the full report; the others feed the seeds table.
    """
    import shutil
    import time
    from pathlib import Path

    from convlens._atomic import write_json
    from convlens.analysis import analyze_run
    from convlens.analysis.seeds import aggregate
    from convlens.data.loaders import load_dataset
    from convlens.report import build_report
    from convlens.train import TrainConfig, Trainer
    from convlens.train.recipes import DEMO_RECIPE

    recipe = dict(DEMO_RECIPE)
    if data is not None and data != recipe["data"]:
        recipe = {"data": data}  # another dataset: its own default model and the generic settings
    if epochs is not None:
        recipe["epochs"] = epochs
    t0 = time.perf_counter()
    root = Path(out_dir)
    seeds = [seed + i for i in range(n_seeds)]
    shutil.rmtree(root / "seeds", ignore_errors=True)
    analyses = []
    for i, s in enumerate(seeds):
        run_dir = root if i == 0 else root / "seeds" / f"seed-{s}"
        cfg = TrainConfig(seed=s, **recipe)
        if i > 0:
            cfg.snapshots = cfg.probes = False
        dataset = load_dataset(cfg.data, s)
        click.echo(
            f"[train {i + 1}/{len(seeds)}] {dataset.name}, seed {s}, {cfg.epochs} epochs ...",
            err=True,
        )
        result = Trainer(cfg, dataset, run_dir, progress=not quiet).train(force=True)
        analysis = analyze_run(run_dir, n_null=null_size, seed=0)
        write_json(run_dir / "analysis.json", analysis)
        analyses.append(analysis)
        first = analysis["matching"][0] if analysis.get("matching") else {}
        click.echo(
            f"      test accuracy {result.test_accuracy:.3f}; first layer above null "
            f"{first.get('fraction_above_null95') or 0:.0%} ({time.perf_counter() - t0:.1f} s so far)",
            err=True,
        )
    write_json(root / "seeds.json", aggregate(analyses, seeds))
    path = build_report(root)
    click.echo(f"[report] done; total {time.perf_counter() - t0:.1f} s", err=True)
    click.echo(str(path))


def main() -> None:
    cli(prog_name="convlens")


if __name__ == "__main__":  # pragma: no cover
    main()
