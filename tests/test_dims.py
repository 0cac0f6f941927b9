"""1-D, non-square and 3-D conv layers (issue 13 item 5): matched or measured, never "0 kernels"."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

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
from tests.onnx_tools import analyze, export, needs_onnx, torchscript_export

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
    assert {e.family for e in bank} == {
        "derivative/smoothing",
        "Fourier/Gabor",
        "windowed-sinc",
        "box",
    }
    assert "windowed-sinc" not in {e.family for e in matching_bank_1d(7)}  # short: boxes do
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


def conv1d_stack() -> torch.nn.Module:
    """A 1-D stack whose first conv is wide (16 taps) and whose last is 1 tap."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 8, 16, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv1d(4, 1, 1),
    )


@pytest.mark.slow
def test_one_tap_kernels_only_mix_channels() -> None:
    """A DC-removed 1-tap kernel is 0: the skip reason says what 1-tap kernels do instead.

    Regression: real-model fix 7-9 (1-D matching)."""
    from convlens.analysis.measure.dims import match_other

    m = match_other("c", np.ones((4, 2, 1)), n_null=200)
    assert (
        m.skipped == "1-tap kernels (1): no spatial structure to compare (they only mix channels)"
    )
    assert "[-1, 1]" in str(match_other("c", np.ones((4, 2, 2)), n_null=200).skipped)


@pytest.mark.slow
def test_three_tap_layers_report_no_test_power() -> None:
    """With 3 taps the random null's 95th percentile is ~0.9999: no fraction is reported as a
    test, the layer says why, and the first-layer verdict is not measured.

    Regression: real-model fix 7-9 (1-D matching)."""
    from convlens.analysis.evidence.verdicts import kernel_verdict
    from convlens.analysis.measure.dims import match_other
    from convlens.summary import _one_d_line

    w = np.random.default_rng(0).standard_normal((8, 4, 3))
    m = match_other("enc", w, n_null=2000)
    assert m.null is not None and m.null.p95 is not None and m.null.p95 > 0.999
    assert m.fraction_above_null95 is None and m.fraction_above_spectrum_null95 is None
    assert any("no test power" in n for n in m.notes)
    assert "no test power" in _one_d_line(m) and "above the random" not in _one_d_line(m)
    assert kernel_verdict(m.fraction_above_null95, m.n_kernels).verdict == "not measured"
    five = match_other("c5", np.random.default_rng(0).standard_normal((8, 4, 5)), n_null=2000)
    assert five.fraction_above_null95 is not None and not five.notes


@pytest.mark.slow
@needs_onnx
@torchscript_export
def test_one_d_first_layer_line_has_the_verdict(tmp_path: Path) -> None:
    """The 1-D summary line of the first layer carries the classical-kernels verdict, like 2-D.

    Regression: real-model fix 5 (1-D first-layer verdict)."""
    f = export(conv1d_stack(), torch.zeros(1, 1, 64), tmp_path / "m.onnx")
    r, data = analyze(f, tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    assert data is not None
    verdict = data["verdicts"]["classical_kernels"]["verdict"]
    first = next(ln for ln in r.output.splitlines() if ln.startswith("/0/Conv: "))
    assert f"; first layer, classical kernels: {verdict}" in first
    second = next(ln for ln in r.output.splitlines() if ln.startswith("/2/Conv: "))
    assert "first layer" not in second


@pytest.mark.slow
def test_all_zero_one_d_kernels_are_left_out_of_the_spectrum() -> None:
    """An all-zero kernel has no peak: it is counted apart, not a peak at 0 in the summary.

    Regression: real-model fix 5 (1-D first-layer verdict)."""
    from convlens.analysis.measure.dims import kernel_spectra, match_other, spectral_summary
    from convlens.summary import _one_d_line

    t = np.arange(16)
    live = np.stack([np.cos(2 * np.pi * f * t / 16) for f in (2, 3, 4)])
    vecs = np.concatenate([live, np.zeros((2, 16))])
    s = spectral_summary(vecs, keep=True)
    want = kernel_spectra(live)[0]
    assert s.n_zero_kernels == 2
    assert s.peak_min == want.min() and s.peak_max == want.max() and s.peak_min > 0
    assert sum(s.histogram_counts) == 3 and len(s.peak_frequencies_sorted) == 3
    assert s.peaks[3:] == [0.0, 0.0] and len(s.peaks) == 5  # per-kernel order kept
    m = match_other("c", vecs.reshape(5, 1, 16), n_null=200)
    assert "2 all-zero kernel(s) left out of the spectrum" in _one_d_line(m)


# ----------------------------------------------------------------------------- filter responses
def _edges_3db(h: np.ndarray) -> tuple[float, float]:
    """The oracle: scipy.signal.freqz at 2**16 points, the -3 dB run around the peak."""
    from scipy.signal import freqz

    f, r = freqz(h, worN=2**16)
    mag, f = np.abs(r), f / (2 * np.pi)
    p = int(mag.argmax())
    above = mag >= mag[p] / np.sqrt(2)
    lo = p
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = p
    while hi < len(mag) - 1 and above[hi + 1]:
        hi += 1
    return float(f[lo]), float(f[hi]) if hi < len(mag) - 1 else 0.5


@pytest.mark.parametrize(
    ("taps", "cutoff", "pass_zero", "kind"),
    [
        (101, 0.2, True, "low-pass"),
        (256, 0.1, True, "low-pass"),  # basic-pitch's 256-tap anti-aliasing filter is of this kind
        (63, 0.5, False, "high-pass"),
        (129, [0.2, 0.4], False, "band-pass"),
        (31, [0.5, 0.7], False, "band-pass"),
        (201, [0.1, 0.2, 0.6, 0.7], False, "multi-band"),
    ],
)
def test_filter_kind_and_cutoffs_equal_scipys_response(taps, cutoff, pass_zero, kind):
    from scipy.signal import firwin

    from convlens.analysis.measure.dims import frequency_responses

    h = firwin(taps, cutoff, pass_zero=pass_zero, window=("kaiser", 6.0))
    kinds, bands = frequency_responses(h[None, :])
    assert kinds == [kind]
    lo, hi = _edges_3db(h)
    nfft = max(64, 2 ** int(np.ceil(np.log2(taps))))
    assert abs(bands[0, 0] - lo) <= 0.5 / nfft and abs(bands[0, 1] - hi) <= 0.5 / nfft


def test_classic_small_kernels_have_their_textbook_responses():
    from convlens.analysis.measure.dims import frequency_responses

    kernels = [[1, 0, -1], [-1, 1], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, -2, 1]]
    kinds, bands = frequency_responses(
        np.array([np.pad(k, (0, 5 - len(k))) for k in kernels], float)
    )
    assert kinds == ["band-pass", "high-pass", "low-pass", "all-pass", "high-pass"]
    # |2 sin(2 pi f)| is at -3 dB at f = 1/8 and 3/8; |2 sin(pi f)| at f = 1/4
    np.testing.assert_allclose(bands[0], [0.125, 0.375], atol=0.005)
    np.testing.assert_allclose(bands[1], [0.25, 0.5], atol=0.005)


def test_a_long_windowed_sinc_is_named_a_low_pass_not_a_box():
    """The failure of issue 25: basic-pitch's 256-tap windowed-sinc low-pass was called box(width=3).
    A Blackman-windowed sinc (not the bank's Hann window) and band-pass kernels like CREPE's."""
    from scipy.signal import firwin

    rng = np.random.default_rng(5)
    low = firwin(255, 0.2, window="blackman")
    bands = [firwin(255, [c, c + 0.1], pass_zero=False) for c in (0.2, 0.35, 0.5)]
    w = np.stack([low, *bands])[:, None, :] + 1e-4 * rng.standard_normal((4, 1, 255))
    m = match_layer("front", w, n_null=N_NULL)
    assert m.kernels[0].family == "windowed-sinc" and m.kernels[0].best_match.startswith(
        "sinc_lowpass(fc=0.1)"
    )
    s = m.spectral
    assert s is not None and s.responses == {"low-pass": 1, "band-pass": 3}
    assert s.response_kinds == ["low-pass", "band-pass", "band-pass", "band-pass"]
    assert s.median_lowpass_cutoff is not None and abs(s.median_lowpass_cutoff - 0.1) < 0.01
    for (lo, hi), c in zip(s.bands_3db[1:], (0.2, 0.35, 0.5), strict=True):
        assert abs(lo - c / 2) < 0.01 and abs(hi - (c + 0.1) / 2) < 0.01
    line = analysis_summary(
        _result(analyze_weights({"front.weight": w[:, :, :255]}, n_null=N_NULL))
    )[0]
    assert "filters by -3 dB band: band-pass 3, low-pass 1 (median cutoff 0.09" in line
