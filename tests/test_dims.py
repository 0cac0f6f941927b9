"""1-D, non-square and 3-D conv layers (issue 13 item 5): matched or measured, never "0 kernels"."""

import json

import jsonschema
import numpy as np
import pytest

from convlens.analysis import analyze_weights
from convlens.analysis.measure.dims import kernel_spectra, random_null_1d, volume_summary
from convlens.analysis.measure.matching import match_layer
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisResult,
    Headline,
    Settings,
    Source,
    Verdicts,
    analysis_schema,
)
from convlens.errors import ConvlensError
from convlens.kernels import matching_bank_1d
from convlens.kernels.bank1d import hann_fourier_atom
from convlens.summary import analysis_summary

N_NULL = 500


def _gauss_deriv(k: int, sigma: float, order: int) -> np.ndarray:
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g * {0: np.ones_like(x), 1: -x, 2: x**2 - sigma**2}[order]


def _fourier_layer(k: int = 64, n_freq: int = 16) -> tuple[np.ndarray, list[int]]:
    bins = [1 + 2 * i for i in range(n_freq)]  # 1, 3, ..., 31 cycles per window
    rows = [hann_fourier_atom(k, j, kind) for j in bins for kind in ("cos", "sin")]
    return np.stack(rows)[:, None, :], bins


def test_bank_1d_families_and_limits():
    bank = matching_bank_1d(15)
    assert {e.family for e in bank} == {"derivative/smoothing", "Fourier/Gabor", "box"}
    assert len({e.label for e in bank}) == len(bank)
    with pytest.raises(ConvlensError):
        matching_bank_1d(2)


def test_planted_gaussian_derivatives_and_fourier_recovered():
    rng = np.random.default_rng(1)
    k = 15
    planted = [_gauss_deriv(k, k / 6, o) for o in (1, 2)] + [
        hann_fourier_atom(k, j, "sin") for j in (2, 4)
    ]
    w = np.stack([3.0 * p + 0.01 * rng.standard_normal(k) for p in planted])[:, None, :]
    m = match_layer("c1d", w, n_null=N_NULL)
    assert m.skipped is None and m.n_kernels == 4 and m.kernel_size == k
    assert all(r.p_value < 0.01 and r.score > 0.95 for r in m.kernels)
    assert [r.family for r in m.kernels] == ["derivative/smoothing"] * 2 + ["Fourier/Gabor"] * 2
    assert m.fraction_above_null95 == 1.0


def test_random_1d_kernels_near_chance():
    rng = np.random.default_rng(2)
    w = rng.uniform(-1, 1, size=(200, 2, 15))
    m = match_layer("r1d", w, n_null=N_NULL, seed=3)
    assert m.n_kernels == 400
    assert m.fraction_above_null95 is not None and m.fraction_above_null95 < 0.12
    null = random_null_1d(15, N_NULL, 3)
    assert not null.flags.writeable and np.all(np.diff(null) >= 0)


def test_hann_fourier_front_end_recognised():
    w, bins = _fourier_layer()
    m = match_layer("frontend", w, n_null=N_NULL)
    assert m.fraction_above_null95 is not None and m.fraction_above_null95 > 0.9
    assert max(m.best_families, key=m.best_families.__getitem__) == "Fourier/Gabor"
    assert m.categories.get("Fourier/Gabor", 0) > m.n_kernels / 2
    s = m.spectral
    assert s is not None and s.n_fft >= 64
    planted = np.repeat(np.array(bins) / 64, 2)
    assert np.all(np.abs(np.array(s.peaks) - planted) <= 1 / 64 + 1e-12)
    assert s.fraction_concentrated is not None and s.fraction_concentrated > 0.9
    assert s.peak_frequencies_sorted == sorted(s.peaks)
    line = analysis_summary(_result(analyze_weights({"frontend.weight": w}, n_null=N_NULL)))[0]
    assert "1-D, 64 taps" in line and "Fourier/Gabor" in line and "cycles/sample" in line


def test_spectral_peak_and_bandwidth_of_a_sinusoid():
    x = np.cos(2 * np.pi * 0.25 * np.arange(64))
    peaks, bw, nfft = kernel_spectra(x[None, :])
    assert nfft == 64 and peaks[0] == 0.25 and 0 < bw[0] <= 2 / 64


def test_non_square_kernels_matched_or_skipped_with_reason():
    rng = np.random.default_rng(4)
    row = np.stack([_gauss_deriv(7, 7 / 6, 1)] * 3)[:, None, None, :]  # (3, 1, 1, 7)
    m = match_layer("row", row, n_null=N_NULL)
    assert m.skipped is None and m.n_kernels == 3 and "along the width" in (m.geometry or "")
    assert all(r.family == "derivative/smoothing" for r in m.kernels)
    col = match_layer("col", row.transpose(0, 1, 3, 2), n_null=N_NULL)
    assert col.skipped is None and "along the height" in (col.geometry or "")
    odd = match_layer("odd", rng.standard_normal((4, 2, 3, 5)), n_null=N_NULL)
    assert odd.n_kernels == 8 and odd.skipped is not None and "3x5" in odd.skipped
    two = match_layer("two", rng.standard_normal((4, 2, 2)), n_null=N_NULL)
    assert two.n_kernels == 8 and "2-tap" in (two.skipped or "")


def test_3d_separability():
    rng = np.random.default_rng(5)
    t, s = rng.standard_normal(3), rng.standard_normal((3, 3))
    sep = np.einsum("d,hw->dhw", t, s)[None, None]
    w = np.concatenate([sep, rng.standard_normal((1, 1, 3, 3, 3))])
    v = volume_summary(w, keep=True)
    assert v.separability[0] == pytest.approx(1.0) and v.separability[1] < 0.95
    m = match_layer("c3d", np.repeat(w, 2, axis=1), n_null=N_NULL)
    assert m.n_kernels == 4 and m.volume is not None and "3-D" in (m.skipped or "")


def _result(layers):
    return AnalysisResult(
        SCHEMA_VERSION,
        Source("model_file", "m"),
        Settings(N_NULL, 0),
        layers,
        Headline(),
        Verdicts(),
    )


def test_mixed_state_dict_round_trips_and_validates():
    rng = np.random.default_rng(6)
    state = {
        "c1d.weight": rng.standard_normal((8, 1, 15)),
        "row.weight": rng.standard_normal((4, 8, 1, 7)),
        "c3d.weight": rng.standard_normal((4, 4, 3, 3, 3)),
    }
    a = _result(analyze_weights(state, n_null=N_NULL))
    by = {r.name: r.matching for r in a.layers}
    assert by["c1d"].n_kernels == 8 and by["row"].n_kernels == 32
    assert by["c3d"].n_kernels == 16
    lines = analysis_summary(a)
    assert not any(" 0 kernels" in line for line in lines)
    assert any("3-D, 3x3x3" in line and "separability" in line for line in lines)
    text = a.to_json()
    assert AnalysisResult.from_json(text) == a
    jsonschema.validate(json.loads(text), analysis_schema())
