"""The options of an analysis (``analysis/orchestration/options.py``): one frozen value built once,
read by the run and model-file paths; the keyword API builds the same value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors.numpy import save_file

from convlens.analysis import AnalyzeOptions, analyze_model_file, analyze_run
from convlens.data.fit import FitOptions
from convlens.errors import ConvlensError


def test_defaults_tuples_and_frozen():
    o = AnalyzeOptions(ood=["noise", "cat"], control_runs=["a"])
    assert o.ood == ("noise", "cat") and o.control_runs == ("a",)
    assert o.n_null == 2000 and o.seed == 0 and o.fit == FitOptions() and not o.fits_data
    assert AnalyzeOptions(fit=None).fit == FitOptions()  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 1  # type: ignore[misc]
    assert AnalyzeOptions.of(None, {"seed": 3}) == AnalyzeOptions(seed=3)
    assert AnalyzeOptions.of(o, {}) is o
    with pytest.raises(TypeError, match="not both"):
        AnalyzeOptions.of(o, {"seed": 3})
    with pytest.raises(TypeError):
        AnalyzeOptions.of(None, {"colour": 1})


def test_check_refuses_bad_values():
    with pytest.raises(ConvlensError, match="MAX_NULL_SIZE"):
        AnalyzeOptions(n_null=10**8).check()
    with pytest.raises(ConvlensError, match="seed must be"):
        AnalyzeOptions(seed=-1).check()
    with pytest.raises(ConvlensError, match="scale must be"):
        AnalyzeOptions(fit=FitOptions(scale="0-2")).check()


def test_check_for_refuses_what_the_target_does_not_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"")
    for o, what in (
        (AnalyzeOptions(factory="a:b"), "factory"),
        (AnalyzeOptions(ood=["noise"]), "ood"),
        (AnalyzeOptions(fit=FitOptions(scale="0-255")), "the data fitting options"),
    ):
        with pytest.raises(ConvlensError, match=f"is a run directory.*{what}"):
            o.check_for(run)
        with pytest.raises(ConvlensError, match="is a run directory"):
            analyze_run(run, o)  # before anything is read
    AnalyzeOptions(control_runs=["c"]).check_for(run)
    with pytest.raises(ConvlensError, match="is a model file"):
        AnalyzeOptions(control_runs=["c"]).check_for(weights)
    with pytest.raises(ConvlensError, match="holds weights only") as info:
        AnalyzeOptions(data="digits").check_for(weights)
    assert info.value.hint_key == "needs_factory"
    with pytest.raises(ConvlensError, match="give the data as well"):
        AnalyzeOptions(factory="a:b", ood=["noise"]).check_for(weights)
    with pytest.raises(ConvlensError, match="give the data as well"):
        AnalyzeOptions(fit=FitOptions(layout="NHWC")).check_for(weights)
    AnalyzeOptions(data="digits").check_for(tmp_path / "m.onnx")  # missing: reading it says so
    AnalyzeOptions(data="digits", factory="a:b").check_for(weights)


def test_options_and_keywords_give_the_same_analysis(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.safetensors"
    save_file({"stem.weight": rng.standard_normal((6, 1, 3, 3))}, str(path))
    by_keywords = analyze_model_file(path, n_null=100, seed=2, detail_limit=1)
    by_options = analyze_model_file(path, AnalyzeOptions(n_null=100, seed=2, detail_limit=1))
    assert by_keywords.timings_s and by_options.timings_s
    by_keywords.timings_s = by_options.timings_s = {}
    assert by_keywords == by_options
    assert by_options.settings.n_null == 100 and by_options.settings.seed == 2
    with pytest.raises(TypeError, match="not both"):
        analyze_model_file(path, AnalyzeOptions(), n_null=100)


def test_data_on_a_weights_only_file_is_refused_not_ignored(tmp_path):
    """Regression: outside review of issues 11-12 (--data on a weights-only file)."""
    from safetensors.numpy import save_file

    from convlens.pipelines import analyze_target

    save_file({"stem.weight": np.ones((2, 1, 3, 3), np.float32)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ConvlensError, match="weights only") as info:
        analyze_target(tmp_path / "m.safetensors", data="digits")
    assert info.value.hint_key == "needs_factory"
    with pytest.raises(ConvlensError, match="weights only"):
        analyze_target(tmp_path / "m.safetensors", ood=["noise"])
    assert not (tmp_path / "m.safetensors.analysis.json").exists()
