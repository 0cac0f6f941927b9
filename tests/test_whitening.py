"""The rotation-invariant whitening tests of the first layer (issue "Evidence v2", item 5).

Whitening is defined only up to a rotation of the units (every ``R Lambda^-1/2 U^T`` whitens), so the
tests must give the same figure for ``W`` and ``R W``, about -1 for any whitening layer (PCA or ZCA),
a positive slope for a layer of top principal components, and leave random layers in their null.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from convlens.analysis.measure import patches
from convlens.analysis.orchestration.controls import whitening_over_training
from convlens.analysis.result import AnalysisResult, Control, Whitening


def power_law_images(n: int = 40, size: int = 64, alpha: float = 1.0, seed: int = 0) -> np.ndarray:
    """Gaussian images with amplitude spectrum 1/|f|^alpha: a power-law patch spectrum."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    f[0, 0] = 1.0
    amp = f**-alpha
    amp[0, 0] = 0.0
    x = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, size, size))) * amp))
    return x[:, None]


def _basis(k: int = 5, alpha: float = 1.0, channels: int = 1) -> patches.PatchBasis:
    imgs = power_law_images(alpha=alpha)
    if channels > 1:  # correlated channels: the same image, scaled, plus independent noise
        rng = np.random.default_rng(7)
        imgs = np.concatenate(
            [imgs * (1 + c) + 0.3 * rng.standard_normal(imgs.shape) for c in range(channels)], 1
        )
    return patches.PatchBasis(patches.sample_patches(imgs, k, 8000, 0), channels)


@pytest.fixture(scope="module")
def basis() -> patches.PatchBasis:
    return _basis()


def _whitening_layers(b: patches.PatchBasis) -> dict[str, np.ndarray]:
    ref = patches.reference_layers(b, 8)
    u = b.components[b.kept]
    return {"pca": ref["pca_whitening"], "zca": u.T @ ref["pca_whitening"]}


# ----------------------------------------------------------------------------- invariance
@pytest.mark.parametrize("channels", [1, 3])
def test_both_slopes_are_invariant_to_rotating_the_units(channels):
    b = _basis(channels=channels)
    rng = np.random.default_rng(11)
    for w in (rng.uniform(-1, 1, (8, b.d)), patches.reference_layers(b, 8)["top_components"]):
        r, _ = np.linalg.qr(rng.standard_normal((len(w), len(w))))
        mine, rotated = patches.layer_slopes(b, w), patches.layer_slopes(b, r @ w)
        assert np.allclose(mine, rotated, atol=1e-9)
        t1 = patches.whitening_test(b, w, n_null=300, seed=2)
        t2 = patches.whitening_test(b, r @ w, n_null=300, seed=2)
        assert t1.energy_null == t2.energy_null and t1.spectrum_null == t2.spectrum_null
        assert t1.energy_slope == pytest.approx(t2.energy_slope, abs=1e-9)
        assert t1.spectrum_slope == pytest.approx(t2.spectrum_slope, abs=1e-9)
        # the resamples rotate the units first: the intervals agree up to Monte Carlo error
        assert np.allclose(t1.energy_slope_ci, t2.energy_slope_ci, atol=0.1)
        assert np.allclose(t1.spectrum_slope_ci, t2.spectrum_slope_ci, atol=0.1)


def test_pca_whitening_and_zca_are_the_same_layer_up_to_rotation(basis):
    layers = _whitening_layers(basis)
    assert np.allclose(
        patches.layer_slopes(basis, layers["pca"]),
        patches.layer_slopes(basis, layers["zca"]),
        atol=1e-9,
    )


def test_dc_is_ignored(basis):
    w = np.random.default_rng(4).uniform(-1, 1, (8, 25))
    assert np.allclose(
        patches.layer_slopes(basis, w), patches.layer_slopes(basis, w + 3.0), atol=1e-9
    )


# ----------------------------------------------------------------------------- planted layers
@pytest.mark.parametrize(
    ("k", "alpha"), [(5, 1.0), (5, 1.5), pytest.param(7, 1.0, marks=pytest.mark.slow)]
)
def test_pca_and_zca_whitening_give_slope_minus_one(k, alpha):
    b = _basis(k, alpha)
    for name, w in _whitening_layers(b).items():
        energy, spectrum = patches.layer_slopes(b, w)
        assert energy == pytest.approx(-1.0, abs=0.1), name
        assert spectrum == pytest.approx(-1.0, abs=0.1), name
        t = patches.whitening_test(b, w, n_null=300, seed=0)
        assert t.energy_verdict == patches.WHITENING and t.spectrum_verdict == patches.WHITENING


def test_energy_slope_by_hand(basis):
    w = np.random.default_rng(5).standard_normal((6, 25))
    wc = w - w.mean(axis=1, keepdims=True)
    u, lam = basis.components[basis.kept], basis.eigenvalues[basis.kept]
    e = ((wc @ u.T) ** 2).sum(axis=0) / (wc**2).sum()
    slope = np.polyfit(np.log(lam), np.log(e), 1)[0]
    assert patches.layer_slopes(basis, w)[0] == pytest.approx(slope, abs=1e-9)
    assert lam.min() > patches.EIGEN_CUTOFF * lam.max() and len(lam) == 24  # the DC one is out


def test_a_rotated_eight_unit_whitening_layer_is_whitening_like(basis):
    rng = np.random.default_rng(3)
    for kind in ("whitening", "zca"):
        w = patches.planted_layer(basis, kind, 8, rng)
        t = patches.whitening_test(basis, w, n_null=500, seed=0)
        assert t.energy_slope_ci[1] < min(0.0, t.energy_null[0]), kind
        assert t.energy_verdict == patches.WHITENING


def test_top_principal_components_give_a_positive_slope(basis):
    w = patches.reference_layers(basis, 8)["top_components"]
    t = patches.whitening_test(basis, w, n_null=500, seed=0)
    assert t.energy_slope > 1.0 and t.spectrum_slope > 0.5
    assert t.energy_verdict == patches.PRINCIPAL and t.spectrum_verdict == patches.PRINCIPAL
    cov = patches.reference_layers(basis, 8)["covariance"]
    assert patches.layer_slopes(basis, cov) == pytest.approx((1.0, 1.0), abs=1e-6)


def test_random_layers_fall_inside_their_null(basis):
    rng = np.random.default_rng(21)
    inside = {"energy": 0, "spectrum": 0}
    verdicts = []
    for _ in range(50):
        t = patches.whitening_test(basis, rng.uniform(-1, 1, (8, 1, 5, 5)), n_null=500, seed=0)
        for name in inside:
            lo, hi = getattr(t, f"{name}_null")
            inside[name] += lo <= getattr(t, f"{name}_slope") <= hi
        verdicts.append(t.energy_verdict)
    assert inside["energy"] >= 45 and inside["spectrum"] >= 45, inside
    assert verdicts.count(patches.WHITENING) <= 2


def test_verdict_rule():
    null = (-0.2, 0.2)
    assert patches.verdict((-1.2, -0.8), null) == patches.WHITENING
    assert patches.verdict((-0.5, -0.1), null) == patches.NEITHER  # overlaps the null
    assert patches.verdict((-0.3, 0.1), (0.2, 0.5)) == patches.NEITHER  # below the null, not < 0
    assert patches.verdict((1.2, 1.8), null) == patches.PRINCIPAL
    assert patches.verdict((0.3, 1.0), (-0.9, -0.5)) == patches.PRINCIPAL
    assert patches.verdict((None, None), null) == patches.NEITHER


def test_dead_units_are_left_out(basis):
    w = patches.reference_layers(basis, 6)["top_components"].reshape(-1, 1, 5, 5).copy()
    live = np.ones(len(w), bool)
    live[-1] = False
    w[-1] = np.random.default_rng(1).uniform(-1, 1, (1, 5, 5))
    t = patches.whitening_test(basis, w, live, n_null=200, seed=0)
    assert t.n_units == 5
    assert t.energy_slope == pytest.approx(patches.layer_slopes(basis, w[:5])[0])
    empty = patches.whitening_test(basis, w, np.zeros(len(w), bool), n_null=200, seed=0)
    assert empty.n_units == 0 and empty.energy_slope is None


# ----------------------------------------------------------------------------- typed result
def test_summary_and_over_training_round_trip(basis):
    rng = np.random.default_rng(0)
    init = rng.uniform(-1, 1, (8, 1, 5, 5))
    final = patches.reference_layers(basis, 8)["top_components"].reshape(8, 1, 5, 5)
    w = patches.whitening_summary(
        basis, {"trained": (final, None), "init": (init, None)}, n_null=300, seed=0
    )
    assert list(w.sets) == ["trained", "init"] and w.n_components == 24
    assert w.reference_energy["pca_whitening"] == pytest.approx(-1.0)
    assert w.reference_energy["covariance"] == pytest.approx(1.0)
    assert w.reference_units == 8
    snaps = {e: {"conv1.weight": (1 - t) * init + t * final} for e, t in ((0, 0.0), (5, 0.9))}
    snaps[10] = {"conv1.weight": final}
    whitening_over_training(w, basis, snaps, "conv1.weight")
    assert [x.epoch for x in w.over_training] == [0, 5, 10]
    slopes = [x.test.energy_slope for x in w.over_training]
    assert slopes[0] == pytest.approx(w.sets["init"].energy_slope)
    assert slopes[-1] == pytest.approx(w.sets["trained"].energy_slope)
    assert slopes[0] < slopes[1] < slopes[2]
    flat = patches.whitening_figures(w.sets["trained"])
    assert flat["whitening_slope"] == w.sets["trained"].energy_slope
    c = Control("patches", "d", kind="input_statistics", whitening=w)
    from convlens._serde import from_jsonable, to_jsonable

    assert from_jsonable(Control, to_jsonable(c), "") == c
    none = patches.whitening_summary(basis, {"trained": (final, None)}, n_null=100, seed=0)
    whitening_over_training(none, basis, None, "conv1.weight")
    assert none.over_training == [] and none.over_training_skipped == "no snapshots in this run"


def test_calibration_rows(basis):
    rows = patches.calibrate(basis, n_random=20, n_planted=5, noise=(0.0,), n_null=200)
    by = {r["layer"]: r for r in rows}
    assert set(by) == {"random", "whitening", "zca", "principal"}
    assert by["random"]["n"] == 20 and by["random"]["energy_whitening"] <= 1
    assert by["whitening"]["energy_whitening"] == 5 and by["zca"]["spectrum_whitening"] == 5
    assert by["principal"]["energy_principal"] == 5
    lo, hi = by["whitening"]["energy_whitening_ci"]
    assert 0 < lo < hi == pytest.approx(1.0)


# ----------------------------------------------------------------------------- report
def test_report_states_the_whitening_test_not_zca(demo_run):
    a = AnalysisResult.read(demo_run / "analysis.json")
    stats = next(c for c in a.controls if c.kind == "input_statistics")
    assert isinstance(stats.whitening, Whitening)
    assert not [k for k in stats.figures if "zca" in k]
    html = re.sub(r"data:[^\"']*", "", (demo_run / "report.html").read_text())  # no base64
    t = stats.whitening.sets["trained"]
    assert f"{t.energy_slope:+.2f}" in html and t.energy_verdict.replace("'", "&#39;") in html
    assert "ZCA" not in html and "not whitening" not in html
    assert "random layers 2.5&ndash;97.5%" in html
