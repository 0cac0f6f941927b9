"""Matching for conv layers that are not square 2-D: 1-D kernels, ``1 x k`` / ``k x 1`` kernels, 3-D.

- **1-D** ``(O, C, K)``, and 2-D ``1 x K`` / ``K x 1`` (a 1-D kernel along the long axis): the same
  DC-removed, sign-invariant cosine as the 2-D path (:func:`convlens.analysis.measure.matching.dc_cosine_scores`)
  against the 1-D bank (:func:`convlens.kernels.bank1d.matching_bank_1d`), next to a random null of
  the same length (:func:`random_null_1d`, PyTorch's uniform init) and a spectrum-matched null.
  Categories: ``"unclear"`` below the null's 95th percentile, ``"smoothing/DC"`` when the DC energy
  fraction is ``>= 0.6``, else the best match's family (``"derivative/smoothing"``,
  ``"Fourier/Gabor"``, ``"windowed-sinc"``, ``"box"``). A :class:`SpectralSummary` says where each
  kernel's energy lies and what kind of filter it is (:func:`frequency_responses`: low-pass,
  band-pass, high-pass, all-pass or multi-band, with its -3 dB band edges).
- **Other non-square 2-D** (e.g. ``3 x 5``): counted, not matched; the skip reason names the shape.
- **3-D** ``(O, C, kd, kh, kw)``: no classical bank; a :class:`VolumeSummary` (norms, DC fraction,
  separability) is measured and the skip reason says so.
``n_kernels`` is always ``O * C``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.measure import matching
from convlens.analysis.result import KernelMatch, LayerMatch, SpectralSummary, VolumeSummary
from convlens.kernels.bank1d import MAX_LENGTH_1D, bank_matrix_1d

MIN_FFT = 64
NO_POWER_P95 = 0.999
"""A random null whose 95th percentile reaches this |cos| (3-tap kernels: 0.9999) leaves no room
above it: fractions above it are not reported as a test."""
CONCENTRATED = 0.5
SEPARABLE = 0.9


@lru_cache(maxsize=32)
def random_null_1d(k: int, n: int, seed: int = 0) -> NDArray[np.float64]:
    """Sorted scores of ``n`` i.i.d. uniform random 1-D kernels of length ``k`` (read-only, cached)."""
    matching.check_null_size(n)
    bank, _ = bank_matrix_1d(k)
    rng = np.random.default_rng(seed)
    scores = np.sort(matching.dc_cosine_scores(rng.uniform(-1.0, 1.0, size=(n, k)), bank)[1])
    scores.flags.writeable = False
    return scores


def spectrum_null_1d(vecs: NDArray[Any], n: int, seed: int = 0) -> NDArray[np.float64]:
    """Scores of ``n`` random length-``K`` kernels with the mean power spectrum of ``vecs`` ``(N, K)``."""
    v = np.asarray(vecs, dtype=np.float64)
    k = v.shape[1]
    v = v - v.mean(axis=1, keepdims=True)
    power = (np.abs(np.fft.fft(v, axis=1)) ** 2).mean(axis=0) if len(v) else np.zeros(k)
    rng = np.random.default_rng(seed + 7919)
    shaped = np.real(np.fft.ifft(np.fft.fft(rng.standard_normal((n, k)), axis=1) * np.sqrt(power)))
    return np.sort(matching.dc_cosine_scores(shaped, bank_matrix_1d(k)[0])[1])


def n_fft_for(k: int) -> int:
    """Zero-padded FFT length: the next power of two ``>= max(k, MIN_FFT)``."""
    return int(2 ** int(np.ceil(np.log2(max(k, MIN_FFT)))))


def _magnitudes(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], int]:
    """``|rfft|`` of each kernel zero-padded to :func:`n_fft_for` its length, and that length."""
    nfft = n_fft_for(v.shape[1])
    return np.abs(np.fft.rfft(v, n=nfft, axis=1)), nfft


def _run_around_peak(mag: NDArray[np.float64], slack: float = 0.0) -> tuple[NDArray[Any], ...]:
    """Per kernel (rows of ``mag``): the peak bin, the -3 dB level (peak / sqrt(2)), which bins are
    at or above it (``slack``: relative tolerance), and the bins bounding the contiguous run at or
    above it around the peak, ``[lo + 1, hi - 1]`` (``lo`` -1 and ``hi`` the bin count when the run
    reaches an end of the spectrum)."""
    n, bins = mag.shape
    peak = mag.argmax(axis=1)
    level = mag[np.arange(n), peak] / np.sqrt(2)
    above = mag >= level[:, None] * (1 - slack)
    idx = np.arange(bins)[None, :]
    lo = np.where(~above & (idx < peak[:, None]), idx, -1).max(axis=1)
    hi = np.where(~above & (idx > peak[:, None]), idx, bins).min(axis=1)
    return peak, level, above, lo, hi


def _peaks_and_bandwidths(
    mag: NDArray[np.float64], nfft: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    peak, _, _, lo, hi = _run_around_peak(mag)
    return peak / nfft, (hi - lo - 1) / nfft


def kernel_spectra(vecs: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Per kernel: peak frequency, -3 dB bandwidth (cycles/sample) and the FFT length used."""
    mag, nfft = _magnitudes(np.asarray(vecs, dtype=np.float64))
    peaks, bws = _peaks_and_bandwidths(mag, nfft)
    return peaks, bws, nfft


RESPONSE_KINDS = ("low-pass", "band-pass", "high-pass", "all-pass", "multi-band")
RESPONSE_RULE = (
    "|rfft| of each kernel zero-padded to n_fft; its pass band is where the magnitude is at or above "
    "the peak / sqrt(2) (-3 dB), edges interpolated linearly between bins: low-pass when that band "
    "is one run from 0 cycles/sample to a cutoff below 0.5, high-pass when it is one run from a "
    "cutoff up to 0.5, band-pass when it is one run touching neither, all-pass when it covers "
    "0-0.5, multi-band when it is more than one run"
)


def frequency_responses(vecs: NDArray[Any]) -> tuple[list[str], NDArray[np.float64]]:
    """Per 1-D kernel ``vecs`` ``(N, K)``: its kind (:data:`RESPONSE_KINDS`, ``"zero"`` for an
    all-zero kernel) and its -3 dB band ``[low, high]`` in cycles/sample (the run around the peak;
    :data:`RESPONSE_RULE`)."""
    return _responses(*_magnitudes(np.asarray(vecs, dtype=np.float64)))


def _responses(mag: NDArray[np.float64], nfft: int) -> tuple[list[str], NDArray[np.float64]]:
    """:func:`frequency_responses` from the kernels' magnitude spectra."""
    n, bins = mag.shape
    _, level, above, lo, hi = _run_around_peak(mag, slack=1e-12)
    runs = (np.diff(above.astype(np.int8), axis=1) == 1).sum(axis=1) + above[:, 0]

    def cross(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
        # the -3 dB crossing between bins a (below) and b (above), linearly interpolated
        ma, mb = mag[np.arange(n), a], mag[np.arange(n), b]
        t = np.clip((level - ma) / np.where(mb != ma, mb - ma, 1.0), 0.0, 1.0)
        return np.asarray((a + t * (b - a)) / nfft, dtype=np.float64)

    safe_lo, safe_hi = np.maximum(lo, 0), np.minimum(hi, bins - 1)
    low = np.where(lo < 0, 0.0, cross(safe_lo, np.minimum(safe_lo + 1, bins - 1)))
    high = np.where(hi >= bins, 0.5, cross(safe_hi, np.maximum(safe_hi - 1, 0)))
    kinds = np.select(
        [mag.max(axis=1) == 0, runs > 1, (lo < 0) & (hi >= bins), lo < 0, hi >= bins],
        ["zero", "multi-band", "all-pass", "low-pass", "high-pass"],
        "band-pass",
    )
    return [str(x) for x in kinds], np.stack([low, high], axis=1)


def spectral_summary(vecs: NDArray[Any], keep: bool) -> SpectralSummary:
    """The :class:`SpectralSummary` of 1-D kernels ``vecs`` ``(N, K)``."""
    v = np.asarray(vecs, dtype=np.float64)
    k = v.shape[1]
    mag, nfft = _magnitudes(v)
    peaks, bws = _peaks_and_bandwidths(mag, nfft)
    power = mag**2
    freqs = np.arange(power.shape[1]) / nfft
    band = np.abs(freqs[None, :] - peaks[:, None]) <= 1.0 / k + 1e-12
    total = power.sum(axis=1)
    frac = np.where(total > 0, (power * band).sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
    live = total > 0  # an all-zero kernel has no spectrum: counted apart, not a peak at 0
    peaks, bws = np.where(live, peaks, 0.0), np.where(live, bws, 0.0)
    edges = np.linspace(0.0, 0.5, 9)
    counts, _ = np.histogram(peaks[live], bins=edges)
    out = SpectralSummary(n_fft=nfft, band_halfwidth=1.0 / k, n_zero_kernels=int((~live).sum()))
    if live.any():
        out.peak_min, out.peak_max = float(peaks[live].min()), float(peaks[live].max())
        out.peak_median = float(np.median(peaks[live]))
        out.median_bandwidth_3db = float(np.median(bws[live]))
        out.fraction_concentrated = float((frac[live] > CONCENTRATED).mean())
    out.histogram_edges = [float(e) for e in edges]
    out.histogram_counts = [int(c) for c in counts]
    kinds, bands = _responses(mag, nfft)
    out.responses = {k: kinds.count(k) for k in RESPONSE_KINDS if k in kinds}
    out.response_rule = RESPONSE_RULE
    is_kind = {kind: np.array([k_ == kind for k_ in kinds]) for kind in ("low-pass", "high-pass")}
    if is_kind["low-pass"].any():  # a low-pass band's cutoff is its upper edge
        out.median_lowpass_cutoff = float(np.median(bands[is_kind["low-pass"], 1]))
    if is_kind["high-pass"].any():  # a high-pass band's cutoff is its lower edge
        out.median_highpass_cutoff = float(np.median(bands[is_kind["high-pass"], 0]))
    if keep:
        out.response_kinds = kinds
        out.bands_3db = [[float(a), float(b)] for a, b in bands]
        out.peak_frequencies_sorted = [float(p) for p in np.sort(peaks[live])]
        out.peaks = [float(p) for p in peaks]
        out.bandwidths_3db = [float(b) for b in bws]
    return out


def volume_summary(w: NDArray[Any], keep: bool) -> VolumeSummary:
    """The :class:`VolumeSummary` of a 3-D conv weight ``(O, C, kd, kh, kw)``."""
    o, c, kd, kh, kw = w.shape
    flat = np.asarray(w, dtype=np.float64).reshape(o * c, kd, kh * kw)
    energy = (flat**2).sum(axis=(1, 2))
    safe = np.where(energy > 0, energy, 1.0)
    norms = np.sqrt(energy)
    dc = np.where(energy > 0, flat.sum(axis=(1, 2)) ** 2 / (kd * kh * kw) / safe, 0.0)
    s = np.linalg.svd(flat, compute_uv=False)
    sep = np.where(energy > 0, s[:, 0] ** 2 / np.where(energy > 0, (s**2).sum(axis=1), 1.0), 0.0)
    out = VolumeSummary(kernel_shape=[kd, kh, kw], separable_threshold=SEPARABLE)
    if len(flat):
        out.median_norm, out.max_norm = float(np.median(norms)), float(norms.max())
        out.median_dc_fraction = float(np.median(dc))
        out.fraction_dc_dominated = float((dc >= matching.DC_THRESHOLD).mean())
        out.median_separability = float(np.median(sep))
        out.fraction_separable = float((sep >= SEPARABLE).mean())
    if keep:
        out.norms = [float(x) for x in norms]
        out.dc_fractions = [float(x) for x in dc]
        out.separability = [float(x) for x in sep]
    return out


def _one_d_view(w: NDArray[Any]) -> tuple[NDArray[Any] | None, str | None, str | None]:
    """``(O, C, K)`` view of a 1-D-like weight, a geometry note, or a skip reason."""
    shape = "x".join(map(str, w.shape[2:]))
    if w.ndim == 3:
        v, geometry = w, None
    elif w.ndim == 4 and 1 in w.shape[2:] and max(w.shape[2:]) > 1:
        axis = "width" if w.shape[2] == 1 else "height"
        v = w.reshape(w.shape[0], w.shape[1], -1)
        geometry = f"{shape} kernels: matched as 1-D kernels along the {axis}"
    elif w.ndim == 4:
        return (
            None,
            None,
            (
                f"non-square kernel {shape}: the 2-D bank is square and a {shape} kernel has no single "
                "axis to match the 1-D bank along; kernels counted, not matched"
            ),
        )
    else:
        return None, None, f"{w.ndim - 2}-D convolution: no bank of that dimensionality"
    k = v.shape[2]
    if k == 1:
        return (
            None,
            None,
            f"1-tap kernels ({shape}): no spatial structure to compare (they only mix channels)",
        )
    if k < 3:
        return (
            None,
            None,
            (
                f"{k}-tap kernels ({shape}): a DC-removed kernel of {k} taps has at most one shape "
                "(the difference [-1, 1]); nothing to match"
            ),
        )
    if k > MAX_LENGTH_1D:
        return None, None, f"{k}-tap kernels: longer than the 1-D bank's limit {MAX_LENGTH_1D}"
    return v, geometry, None


def match_other(
    name: str,
    w: NDArray[Any],
    *,
    init_weight: NDArray[Any] | None = None,
    n_null: int = 2000,
    seed: int = 0,
    detail_limit: int = matching.DETAIL_LIMIT,
) -> LayerMatch:
    """:func:`convlens.analysis.measure.matching.match_layer` for weights that are not ``(O, C, k, k)``."""
    res = LayerMatch(name, list(w.shape), None)
    if w.ndim >= 3:
        res.n_kernels = int(w.shape[0] * w.shape[1])
    if w.ndim >= 2 and 0 in w.shape:
        res.skipped = f"no kernels: weight shape {'x'.join(map(str, w.shape))} has a zero dimension"
        return res
    if w.ndim == 5:
        res.volume = volume_summary(w, res.n_kernels <= detail_limit)
        res.skipped = (
            f"3-D convolution ({'x'.join(map(str, w.shape[2:]))} kernels): no classical 3-D bank; "
            "measured norms, DC fraction and spatial/temporal separability instead"
        )
        return res
    view, geometry, reason = _one_d_view(w) if w.ndim >= 3 else (None, None, "not a conv weight")
    res.geometry = geometry
    if view is None:
        res.skipped = reason
        return res
    init = None if init_weight is None else np.asarray(init_weight).reshape(view.shape)
    _match_1d(res, view, init, n_null, seed, detail_limit)
    return res


def _match_1d(
    res: LayerMatch,
    w: NDArray[Any],
    init: NDArray[Any] | None,
    n_null: int,
    seed: int,
    detail_limit: int,
) -> None:
    o, c, k = w.shape
    res.kernel_size = k
    bank, entries = bank_matrix_1d(k)
    null = random_null_1d(k, n_null, seed)
    res.null = matching.null_summary(
        f"{len(null)} i.i.d. uniform random 1-D kernels of {k} taps (PyTorch default init), "
        f"seed {seed}",
        null,
    )
    p95 = float(np.percentile(null, 95))
    _no_power(res, k, p95)
    vecs = np.asarray(w, dtype=np.float64).reshape(o * c, k)
    best, score, sign = matching.dc_cosine_scores(vecs, bank)
    above = score > p95
    res.fraction_above_null95 = float(above.mean())
    snull = spectrum_null_1d(vecs, n_null, seed)
    res.spectrum_null = matching.null_summary(
        "random 1-D kernels with this layer's mean power spectrum (phase-randomised)", snull
    )
    res.fraction_above_spectrum_null95 = float((score > np.percentile(snull, 95)).mean())
    matching.exclude_zero_kernels(res, vecs, score)
    res.median_score = float(np.median(score))
    families = np.array([entries[b].family for b in best], dtype=object)
    uniq, counts = np.unique(families.astype(str), return_counts=True)
    res.best_families = {str(f): int(n) for f, n in zip(uniq, counts, strict=True)}
    if init is not None:
        init_scores = matching.dc_cosine_scores(init.reshape(-1, k).astype(np.float64), bank)[1]
        res.init_null = matching.null_summary(
            "epoch-000 initial kernels of this layer", init_scores
        )
        res.init_fraction_above_null95 = float((init_scores > p95).mean())
    cats = _categories(vecs, score, families, p95)
    cu, cc = np.unique(cats, return_counts=True)
    res.categories = {str(a): int(n) for a, n in zip(cu, cc, strict=True)}
    keep = len(vecs) <= detail_limit
    res.spectral = spectral_summary(vecs, keep)
    _drop_powerless(res)
    if keep:
        ge = len(null) - np.searchsorted(null, score, side="left")
        pvals = (1 + ge) / (len(null) + 1)
        pct = 100.0 * np.searchsorted(null, score, side="right") / len(null)
        res.kernels = [
            KernelMatch(
                out_channel=i // c,
                in_channel=i % c,
                best_match=entries[best[i]].label,
                family=str(families[i]),
                score=float(score[i]),
                sign=int(sign[i]),
                percentile=float(pct[i]),
                p_value=float(pvals[i]),
                above_null95=bool(above[i]),
                category=str(cats[i]),
                gabor_fit=None,
            )
            for i in range(len(vecs))
        ]


def _no_power(res: LayerMatch, k: int, p95: float) -> None:
    """The caveat for kernels too short for the null to leave room above it."""
    if p95 >= NO_POWER_P95:
        res.notes.append(
            f"{k}-tap kernels: a random {k}-tap kernel already matches the 1-D bank at |cos| "
            f"{p95:.4f} (the random null's 95th percentile), so the fraction above it has no test "
            "power; no fraction reported"
        )


def _drop_powerless(res: LayerMatch) -> None:
    """Fractions of a layer flagged by :func:`_no_power` withdrawn (kept as ``None``)."""
    if res.null is not None and res.null.p95 is not None and res.null.p95 >= NO_POWER_P95:
        res.fraction_above_null95 = None
        res.fraction_above_spectrum_null95 = None
        res.init_fraction_above_null95 = None


def _categories(
    vecs: NDArray[np.float64], score: NDArray[Any], families: NDArray[Any], p95: float
) -> NDArray[Any]:
    energy = (vecs**2).sum(axis=1)
    dc = vecs.sum(axis=1) ** 2 / vecs.shape[1]
    dc_frac = dc / np.where(energy > 0, energy, 1.0)
    out = np.where(score >= p95, families.astype(str), "unclear").astype(object)
    out = np.where(dc_frac >= matching.DC_THRESHOLD, "smoothing/DC", out)
    return np.where(energy == 0, "unclear", out)
