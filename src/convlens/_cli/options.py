"""The options of ``convlens analyze`` and ``convlens demo``, declared once, and the functions that
turn what click parsed into the library's options (:class:`~convlens.analysis.orchestration.options.
AnalyzeOptions`, :class:`~convlens.demo.DemoOptions`). Imports click only: the library loads when a
command runs, so ``convlens --help`` stays light."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.demo import DemoOptions

F = TypeVar("F", bound=Callable[..., Any])

#: seeds reach torch.manual_seed and numpy, which take 0 .. 2**32 - 1
SEED = click.IntRange(min=0, max=2**32 - 1)
#: the largest null baseline (random kernels) analyze/demo accept
MAX_NULL_SIZE = 200_000  # = convlens.analysis.measure.matching.MAX_NULL_SIZE
NULL_SIZE = click.IntRange(min=100, max=MAX_NULL_SIZE)
#: untrained initialisations in the OOD verdict (= analysis.orchestration.options.MIN_UNTRAINED,
#: MAX_UNTRAINED; 19 is the fewest with which (1 + k) / (1 + N) can reach 0.05)
UNTRAINED = click.IntRange(min=19, max=1000)


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator applying ``decorators`` as if written above the command in this order."""

    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


analyze_options = _options(
    click.option(
        "--out",
        "out_file",
        default=None,
        help="Where to write the JSON (default: RUN/analysis.json, or MODEL.analysis.json beside a "
        "model file); - prints it on stdout instead (the summary goes to stderr).",
    ),
    click.option(
        "--null-size",
        default=2000,
        show_default=True,
        type=NULL_SIZE,
        help="Random kernels in the null baseline.",
    ),
    click.option(
        "--seed",
        default=0,
        show_default=True,
        type=SEED,
        help="Seed of the null baseline and bootstraps.",
    ),
    click.option(
        "--factory",
        default=None,
        help="package.module:function building the model (for a weights file).",
    ),
    click.option(
        "--data",
        default=None,
        help="Dataset for activations with --factory (same forms as `train --data`, or "
        "stream:DIR to stream a large folder).",
    ),
    click.option(
        "--ood",
        default=None,
        help="Comma-separated OOD sets (default: all bundled ones; noise for 1-D/3-D data).",
    ),
    click.option(
        "--layout",
        type=click.Choice(["NCHW", "NHWC"]),
        default=None,
        help="Model input layout (default: from the ONNX input; NCHW for PyTorch).",
    ),
    click.option(
        "--normalize",
        default="dataset",
        show_default=True,
        help="dataset (training mean/std), imagenet, none, MEAN,STD or M1,..,MC,S1,..,SC.",
    ),
    click.option(
        "--scale",
        type=click.Choice(["0-1", "0-255"]),
        default="0-1",
        show_default=True,
        help="Pixel value range the model reads.",
    ),
    click.option(
        "--input-size", default=None, help="Resize the data to HxW (L, DxHxW) for the model."
    ),
    click.option(
        "--output", default=None, help="Head of a tuple/dict output used as logits (key or index)."
    ),
    click.option(
        "--output-kind",
        # data.fit.OUTPUT_KINDS, spelled out: this module loads at start-up, before numpy
        type=click.Choice(["auto", "logits", "probabilities", "log-probabilities"]),
        default="auto",
        show_default=True,
        help="What the model's output holds (auto: probabilities when rows lie in [0, 1] and sum "
        "to 1, log-probabilities when their logsumexp is 0, else logits).",
    ),
    click.option(
        "--input",
        "inputs",
        multiple=True,
        metavar="NAME=VALUE",
        help="An ONNX graph input besides the data, fed with every batch: a number, zeros (its "
        "declared shape, the symbolic dim the batch size) or a .npy file. Repeat per input.",
    ),
    click.option(
        "--control-run",
        "control_runs",
        multiple=True,
        help="A random-label run of the same recipe (train --shuffle-labels) to compare the "
        "first-layer kernels and the OOD AUROCs with (repeatable, the first one is the OOD "
        "arm; run directories only).",
    ),
    click.option(
        "--reference-run",
        "reference_runs",
        multiple=True,
        help="A run of the same model and data with the true labels and another recipe (e.g. no "
        "weight decay) whose first-layer figures are shown beside the analysed run's (repeatable; "
        "run directories only).",
    ),
    click.option(
        "--untrained",
        "n_untrained",
        default=20,
        show_default=True,
        type=UNTRAINED,
        help="Untrained initialisations the OOD AUROCs are placed among (torch seeds: the run's "
        "seed, or --seed for a model file, + 1000 + i).",
    ),
    click.option(
        "--channels/--no-channels",
        default=True,
        show_default=True,
        help="What each channel responds to: top/bottom exemplars with receptive-field crops and "
        "maximising inputs (analysis.json channels, channels.safetensors; training runs, and model "
        "files run on data: torch and ONNX).",
    ),
)


def parse_inputs(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``--input NAME=VALUE`` items as pairs, one line for a malformed or repeated one."""
    from convlens.errors import ConvlensError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConvlensError(
                f"--input {item!r}: expected NAME=VALUE (a number, zeros, or a .npy file)"
            )
        if name.strip() in out:
            raise ConvlensError(f"--input {name.strip()!r} is given twice")
        out[name.strip()] = value.strip()
    return tuple(out.items())


def to_analyze_options(
    *,
    null_size: int,
    seed: int,
    factory: str | None,
    data: str | None,
    ood: str | None,
    control_runs: tuple[str, ...],
    layout: str | None,
    normalize: str,
    scale: str,
    input_size: str | None,
    output: str | None,
    n_untrained: int = 20,
    reference_runs: tuple[str, ...] = (),
    output_kind: str = "auto",
    channels: bool = True,
    inputs: tuple[str, ...] = (),
) -> AnalyzeOptions:
    """The analysis options of ``convlens analyze``'s parsed options, checked (one line for a bad
    value, before the target is read)."""
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.data.fit import FitOptions, parse_input_size

    size = parse_input_size(input_size) if input_size is not None else None
    options = AnalyzeOptions(
        n_null=null_size,
        seed=seed,
        factory=factory,
        data=data,
        ood=tuple(o.strip() for o in ood.split(",") if o.strip()) if ood else None,
        control_runs=control_runs,
        reference_runs=reference_runs,
        fit=FitOptions(layout, normalize, scale, size, output, output_kind, parse_inputs(inputs)),
        n_untrained=n_untrained,
        channels=channels,
    )
    options.check()
    return options


demo_options = _options(
    click.option("--out", "out_dir", default="runs/demo", show_default=True, help="Run directory."),
    click.option(
        "--data",
        default=None,
        help="Dataset (default: the recipe's, bundled faces); natural: RGB photo patches with their "
        "own recipe (docs/natural.md); another keeps the recipe but uses its own model.",
    ),
    click.option(
        "--epochs", default=None, type=click.IntRange(min=1), help="Override the recipe's epochs."
    ),
    click.option(
        "--seed",
        default=10,
        show_default=True,
        type=SEED,
        help="Seed of the main run (10: disjoint from the recipe sweep's seeds 0-2).",
    ),
    click.option(
        "--seeds",
        "n_seeds",
        default=5,
        show_default=True,
        type=click.IntRange(min=1, max=1000),
        help=(
            "Training runs (seed, seed+1, ...), each with its random-label control; the "
            "task-vs-image-statistics verdict compares whole networks and needs >= 5."
        ),
    ),
    click.option("--null-size", default=2000, show_default=True, type=NULL_SIZE),
    click.option(
        "--force",
        is_flag=True,
        help="Write into a folder that is not empty and not a previous demo (removes only "
        "convlens's own files there).",
    ),
    click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="No progress lines; the answer and the report's path are still printed.",
    ),
    click.option(
        "--beside",
        default=None,
        metavar="OTHER_RUN",
        help="Show this analysed run's first layer (e.g. `convlens demo --data natural --out "
        "DIR`) beside the demo's in the report's answer.",
    ),
    click.option(
        "--readme",
        "readme",
        default=None,
        help="Also rewrite the answer block of this README (between its answer markers) from "
        "the demo's results.",
    ),
)


def to_demo_options(
    *,
    data: str | None,
    epochs: int | None,
    seed: int,
    n_seeds: int,
    null_size: int,
    force: bool,
    beside: str | None,
) -> DemoOptions:
    """The demo options of ``convlens demo``'s parsed options."""
    from convlens.demo import DemoOptions

    return DemoOptions(data, epochs, seed, n_seeds, null_size, force, beside)
