"""``_cli_options``: the options of ``analyze`` and ``demo`` declared once, and what click parsed
turned into the library's options (checked before the target is read)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from convlens._cli.options import to_analyze_options, to_demo_options
from convlens.analysis import AnalyzeOptions
from convlens.cli import cli
from convlens.data.fit import FitOptions
from convlens.demo import DemoOptions
from convlens.errors import ConvlensError

PARSED = {
    "null_size": 300,
    "seed": 4,
    "factory": "pkg.mod:build",
    "data": "digits",
    "ood": " noise, cat ,,",
    "control_runs": (),
    "layout": "NHWC",
    "normalize": "imagenet",
    "scale": "0-255",
    "input_size": "32x32",
    "output": "logits",
}


def test_analyze_options_from_the_parsed_options():
    o = to_analyze_options(**PARSED)
    assert o == AnalyzeOptions(
        n_null=300,
        seed=4,
        factory="pkg.mod:build",
        data="digits",
        ood=("noise", "cat"),
        fit=FitOptions("NHWC", "imagenet", "0-255", (32, 32), "logits"),
    )
    assert to_analyze_options(**{**PARSED, "ood": None}).ood is None
    assert to_analyze_options(**{**PARSED, "ood": " , "}).ood == ()  # no OOD sets at all
    runs = to_analyze_options(**{**PARSED, "control_runs": ("a", "b")}).control_runs
    assert runs == ("a", "b")


def test_bad_values_are_refused_before_the_target_is_read():
    with pytest.raises(ConvlensError, match="input size must look like HxW"):
        to_analyze_options(**{**PARSED, "input_size": "3xq"})
    with pytest.raises(ConvlensError, match="normalisation must be"):
        to_analyze_options(**{**PARSED, "normalize": "sometimes"})
    r = CliRunner().invoke(cli, ["analyze", "missing.safetensors", "--normalize", "x"])
    assert r.exit_code == 2 and "normalisation must be" in r.output


def test_demo_options_from_the_parsed_options():
    parsed = {"data": None, "epochs": 2, "seed": 10, "n_seeds": 1, "null_size": 100, "force": True}
    parsed["beside"] = "runs/demo-natural"
    assert to_demo_options(**parsed) == DemoOptions(
        epochs=2, n_seeds=1, n_null=100, force=True, beside="runs/demo-natural"
    )


def test_analyze_and_demo_share_the_seed_and_null_size_options():
    params = {c: {p.name: p for p in cli.commands[c].params} for c in ("analyze", "demo")}
    assert params["analyze"]["seed"].type is params["demo"]["seed"].type
    assert params["analyze"]["null_size"].type is params["demo"]["null_size"].type
    assert [p.name for p in cli.commands["analyze"].params] == [
        "target", "out_file", "null_size", "seed", "factory", "data", "ood", "layout",
        "normalize", "scale", "input_size", "output", "output_kind", "inputs", "control_runs",
        "reference_runs", "n_untrained",
        "channels",
    ]  # fmt: skip


def test_output_kind_choices_are_the_fit_options():
    from convlens.data.fit import OUTPUT_KINDS

    params = {p.name: p for p in cli.commands["analyze"].params}
    assert tuple(params["output_kind"].type.choices) == OUTPUT_KINDS
