"""The run path (``analysis/orchestration/run_path.py``): ``analyze_run`` on a training run end to
end, bad run directories, and the options that reach every layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from convlens.analysis import AnalysisResult, analyze_run
from convlens.errors import ConvlensError


def _faces_run(tmp_path, **kw):
    from convlens.data.datasets import load_bundled
    from convlens.train import TrainConfig, Trainer

    cfg = TrainConfig(epochs=3, ood=["motorcycle", "noise"], ood_size=20, **kw)
    Trainer(cfg, load_bundled("faces", 0), tmp_path / "run", progress=False).train()
    return tmp_path / "run"


def test_analyze_run_end_to_end(tiny_run):
    run = tiny_run
    a = analyze_run(run, n_null=300)
    assert AnalysisResult.from_json(a.to_json()) == a
    assert a.headline.all_layers_cross_correlation
    assert a.headline.max_abs_diff_correlate < 1e-12
    assert [r.name for r in a.layers] == ["conv1", "conv2"]
    assert [r.identity.index for r in a.layers] == [0, 1]
    assert {r.identity.order for r in a.layers} == {"execution"}
    ident = a.layers[0].identity
    assert (ident.kernel_size, ident.padding, ident.stride, ident.groups) == (
        [5, 5],
        [2, 2],
        [1, 1],
        1,
    )
    assert a.first_layer is a.layers[0] and a.headline.first_layer == "conv1"
    assert a.layers[0].matching.init_null.n == 16
    assert len(a.evolution.epochs) == 4
    assert all(r.distribution is not None for r in a.layers)
    ood = a.layers[0].distribution.ood["motorcycle"]
    assert 0 <= ood.auroc <= 1 and ood.verdict in ("holds", "reversed", "not supported")
    rf = {r.layer: r for r in a.receptive_fields.effective}
    assert rf["conv1"].support_fraction < 0.1 < rf["fc1"].support_fraction
    assert rf["fc1"].support_fraction > 0.9
    theo = {r.name: r for r in a.receptive_fields.theoretical}
    assert theo["conv1"].size == (5, 5) and theo["conv2"].size == (10, 10)
    assert theo["fc1"].is_global


def test_analyze_run_bad_input(tmp_path):
    with pytest.raises(ConvlensError, match="not a run directory"):
        analyze_run(tmp_path)
    run = _faces_run(tmp_path, snapshots=False, probes=False)
    a = analyze_run(run, n_null=200)
    assert a.evolution.skipped == "no snapshots in this run"
    assert any("no snapshots" in n for n in a.notes)
    (run / "model.safetensors").unlink()
    with pytest.raises(ConvlensError, match="partial run"):
        analyze_run(run)


def test_1d_matching_uses_the_requested_null_size(signal_runs: Path) -> None:
    """``analyze --null-size`` reached the 2-D matching only; 1-D layers used 2000 kernels.

    Regression: integration QA of the merged branches (null size of 1-D layers)."""
    from convlens.analysis import analyze_run

    a = analyze_run(signal_runs / "run", n_null=200)
    for layer in a.layers:
        m = layer.matching
        assert m is not None and m.null is not None and m.spectrum_null is not None
        assert (m.null.n, m.spectrum_null.n) == (200, 200), layer.name
        assert m.null.source.startswith("200 ")
