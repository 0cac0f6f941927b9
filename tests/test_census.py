"""`analysis/evidence/census.py`: first-layer units counted by shape (issue 27), on planted units
whose shape is known, pooled over seeds, carried in seeds.json and printed as an answer line."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from convlens.analysis.evidence.answer import answer
from convlens.analysis.evidence.census import (
    CENSUS_RULE,
    census,
    first_layer_census,
    orientation_bins,
    pooled_census,
)
from convlens.analysis.measure.matching import match_layer
from convlens.analysis.result import KernelCensus
from convlens.kernels.base import parse_kernel_spec


def _k(spec: str) -> np.ndarray:
    return np.asarray(parse_kernel_spec(spec).weights, dtype=np.float64)


def _planted(colour: bool = False):
    """Gabors at 0, 45 and 90 degrees, a Gaussian blob and uniform noise (7x7, one input channel),
    or with ``colour`` RGB units: a grey Gabor, a red-minus-green blob and a grey Gabor at 90."""
    g = {a: _k(f"gabor:angle={a},frequency=0.2,size=7") for a in (0, 45, 90)}
    blob = _k("gaussian:sigma=1.5,size=7")
    if colour:
        w = np.stack(
            [np.stack([g[0]] * 3), np.stack([blob, -blob, 0 * blob]), np.stack([g[90]] * 3)]
        )
    else:
        noise = np.random.default_rng(0).uniform(-1, 1, (7, 7))
        w = np.stack([g[0], g[45], g[90], blob, noise])[:, None]
    return match_layer("conv1", w, n_null=500, seed=0, spectra=True, colour=colour)


def test_planted_gabors_are_counted_and_the_blob_and_noise_are_not():
    m = _planted()
    u = m.units
    assert u.unit_categories[:3] == ["Gabor-like"] * 3
    assert u.unit_categories[3:] == ["blob/centre-surround", "unclear"]
    c = census(u, "trained", [7])
    assert c == KernelCensus("trained", [7], 5, 3, 3, [0, 2, 4], None, CENSUS_RULE)
    # the blob fits a Gabor well too (R^2 > 0.9) but is not an edge or Gabor unit; noise fits badly
    assert u.gabor_r2[3] > 0.9 and u.gabor_r2[4] < 0.3


def test_the_unit_r2_is_its_best_slices_gabor_fit():
    m = _planted(colour=True)
    best: dict[int, tuple[float, float]] = {}
    for k in m.kernels:
        if k.out_channel not in best or k.score > best[k.out_channel][0]:
            best[k.out_channel] = (k.score, k.gabor_fit.r2)
    assert m.units.gabor_r2 == pytest.approx([best[i][1] for i in range(3)], abs=1e-6)


def test_colour_opponent_units_are_counted_only_where_the_layer_reads_colour():
    c = census(_planted(colour=True).units, "trained", [0])
    assert (c.colour_opponent, c.gabor_or_edge, c.orientation_bins) == (1, 2, [0, 4])
    assert census(_planted().units, "trained", [0]).colour_opponent is None


def test_no_gabor_count_for_kernels_the_fit_does_not_take():
    w = np.random.default_rng(1).normal(size=(4, 1, 4, 4))
    m = match_layer("conv1", w, n_null=300, seed=0, spectra=True)
    assert m.units.gabor_r2 == []
    assert census(m.units, "trained", [0]).gabor_or_edge is None
    assert census(None, "trained", [0]) is None


def test_smooth_random_kernels_count_too_small_ones_more_often():
    """Why the census has no null and is read against the run's own controls: Gaussian-blurred
    noise kernels (sigma 1, zero borders) pass the Gabor-or-edge rule often, 5x5 more than 7x7."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    share = {}
    for k in (5, 7):
        w = np.stack(
            [gaussian_filter(rng.normal(size=(k, k)), 1.0, mode="constant") for _ in range(200)]
        )
        c = census(
            match_layer("conv1", w[:, None], n_null=1000, seed=0, spectra=True).units, "t", [0]
        )
        share[k] = c.gabor_or_edge / c.n_live
    assert share[5] > 0.25 and share[7] > 0.03 and share[5] > 2 * share[7], share


def test_orientation_bins_are_centred_on_multiples_of_22_5_degrees():
    cats = ["Gabor-like", "edge/gradient", "line", "Gabor-like", "blob/centre-surround"]
    n, bins = orientation_bins([11.0, 11.3, 179.0, 100.0, 45.0], [0.5, 0.5, 0.9, 0.1, 0.9], cats)
    # 11.0 -> bin 0 (up to 11.25), 11.3 -> bin 1, 179 wraps to bin 0; 100 is not selective and the
    # blob is not an oriented category
    assert (n, bins) == (3, [0, 1])


def test_pooled_census_sums_counts_and_joins_bins():
    a = KernelCensus("trained", [1], 16, 7, 9, [0, 2], 0, "r")
    b = KernelCensus("trained", [2], 15, 8, 10, [2, 5], 1, "r")
    assert pooled_census([a, b]) == KernelCensus("trained", [1, 2], 31, 15, 19, [0, 2, 5], 1, "r")
    grey = KernelCensus("trained", [3], 16, 7, 9, [0], None, "r")
    assert pooled_census([a, grey]).colour_opponent is None
    assert pooled_census([]) is None


@pytest.mark.slow  # trains a random-label control and analyses the run against it: about 15 s
def test_an_analysis_counts_its_controls_like_its_own_units(tiny_run, tiny_run_analysis, tmp_path):
    """The trained kernels, the random-label control's and the initial ones are counted by the
    same rule; the seeds summary carries each seed's census and the answer prints them beside."""
    from convlens.analysis import analyze_run
    from convlens.analysis.evidence.seeds import aggregate
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.data.datasets import load_bundled
    from convlens.runs import read
    from convlens.runs.layout import RunLayout
    from convlens.train import Trainer

    cfg = read.run_record(RunLayout(tiny_run)).config
    ctl = tmp_path / "ctl"
    cfg.shuffle_labels, cfg.snapshots, cfg.probes = True, False, False
    Trainer(cfg, load_bundled("faces", 0), ctl, progress=False).train()
    a = analyze_run(tiny_run, AnalyzeOptions(n_null=200, control_runs=(ctl,)))
    cs = {name: first_layer_census(a, name) for name in ("trained", "random labels", "init")}
    for name, c in cs.items():
        assert c is not None and c.kernels == name and c.seeds == [cfg.seed]
        assert c.gabor_or_edge is not None and 0 <= c.gabor_or_edge <= c.n_live
    seeds = aggregate([a, a], [cfg.seed, cfg.seed + 1])
    assert set(seeds.census) == {"trained", "random labels", "init"}
    assert seeds.census["trained"][1].seeds == [cfg.seed + 1]
    line = next(x for x in answer(a, seeds).lines if x.key == "kernel_shapes")
    t, r = cs["trained"], cs["random labels"]
    assert f"{2 * t.gabor_or_edge}/{2 * t.n_live} trained" in line.text
    assert f"random labels {2 * r.gabor_or_edge}/{2 * r.n_live}" in line.text
    assert line.verdict == "counted" and "not a test, and without a null" in line.text
    assert line.source.endswith("(seeds.json)")
    # without seeds.json, one analysis; without controls, the line says it has none to compare with
    assert next(x for x in answer(a).lines if x.key == "kernel_shapes").source.endswith(
        "(analysis.json)"
    )
    # a run analysed without --control-run still has its initial kernels: named, with what they
    # cannot show; with no control at all, the line says so
    bare = copy.deepcopy(tiny_run_analysis)  # analysed without --control-run
    text = next(x for x in answer(bare).lines if x.key == "kernel_shapes").text
    assert "(init " in text and "random labels" not in text
    assert "against the same run's initial kernels beside them; with no random-label run" in text
    bare.controls = []
    text = next(x for x in answer(bare).lines if x.key == "kernel_shapes").text
    assert "which this analysis has not got" in text and "(init " not in text


def test_the_answer_line_prints_each_sets_orientations_and_keeps_them_without_gabor_fits(
    tiny_run_analysis,
):
    from convlens.analysis.result import KernelCensus, SeedsSummary

    a = copy.deepcopy(tiny_run_analysis)
    seeds = SeedsSummary.from_json(aggregate_one(a).to_json())
    seeds.census = {
        "trained": [KernelCensus("trained", [0], 16, 7, 9, [0, 2, 4], 1, "r")],
        "random labels": [KernelCensus("random labels", [0], 16, 0, 2, [5], 0, "r")],
    }
    line = next(x for x in answer(a, seeds).lines if x.key == "kernel_shapes")
    assert "7/16 trained (random labels 0/16)" in line.text
    assert "its 9 oriented units fill 3 of 8 bins" in line.text
    assert "(random labels: 2 oriented units in 1 bins)" in line.text
    assert "colour-opponent units 1/16 (random labels 0/16)" in line.text
    # 3x3 kernels: no Gabor fits, the other counts stay
    seeds.census = {"trained": [KernelCensus("trained", [0], 16, None, 9, [0, 2, 4], None, "r")]}
    line = next(x for x in answer(a, seeds).lines if x.key == "kernel_shapes")
    assert line.figure.startswith("16 live units; Gabor fits n/a")
    assert "its 9 oriented units fill 3 of 8 bins" in line.text


def aggregate_one(a):
    from convlens.analysis.evidence.seeds import aggregate

    return aggregate([a], [a.run.config.seed])
