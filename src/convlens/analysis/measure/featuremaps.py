"""Feature maps of the probe images: per-channel statistics per epoch, channel correlations, NCC view.

Two different "correlations", both shown, because the seed's question mixes them up:
- a kernel measures the **cross-correlation between one input patch and the kernel** (raw: what
  the layer computes; normalized, NCC: the Pearson r of patch and kernel, in [-1, 1]);
- the **channel Gram (correlation) matrix** of a layer is the Pearson correlation between its
  channels' feature maps across positions and probe images — a correlation between signals, which
  a single kernel does not compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import EpochActivation, FeatureMapInfo, LayerFeatureMaps
from convlens.errors import ConvlensError
from convlens.ops import correlate2d, normalized_cross_correlation
from convlens.runs import read
from convlens.runs.layout import RunLayout


def load_probes(
    folder: Path,
) -> tuple[NDArray[np.float32] | None, dict[int, dict[str, NDArray[np.float32]]]]:
    """The probe images of the run whose ``probes/`` is ``folder`` (``x`` ``(P, C, H, W)``, the
    OOD probes a run with snapshots did not store rebuilt from their recipes) and, per epoch, each
    layer's feature maps ``(P, C', H', W')`` for them: the probe files', and for every other
    weight snapshot derived from it (:mod:`convlens.analysis.measure.probemaps`). Every file is
    read by :mod:`convlens.runs.read`; a corrupt or misshapen one is a clear error."""
    from convlens.analysis.measure import probemaps

    run = RunLayout(folder.parent)
    x = read.probe_inputs(run)
    rec = probemaps.run_record(run.root) if x is not None else None
    if x is not None and rec is not None:
        x = probemaps.complete_inputs(rec, run.root, x)
    maps = read.probe_maps(run, None if x is None else len(x))
    if x is not None and rec is not None:
        maps = _with_derived(run, rec, x, maps)
    return x, maps


def _with_derived(
    run: RunLayout,
    rec: dict[str, Any],
    x: NDArray[np.float32],
    maps: dict[int, dict[str, NDArray[np.float32]]],
) -> dict[int, dict[str, NDArray[np.float32]]]:
    """``maps`` plus, for every weight snapshot of ``run`` without a probe file, the maps derived
    from it (:mod:`convlens.analysis.measure.probemaps`), ordered by epoch."""
    from convlens.analysis.measure import probemaps

    missing = {e: f for e, f in run.snapshot_files().items() if e not in maps}
    if not missing:
        return maps
    kernels, pools, dims = probemaps.chain_spec(probemaps.model_entry(rec, run.root))
    out = dict(maps)
    for epoch, f in missing.items():
        try:
            out[epoch] = probemaps.derive_maps(x, read.read_tensors(f), kernels, pools, dims)
        except ConvlensError as exc:
            raise ConvlensError(f"{str(f)!r}: cannot derive the probe maps: {exc}") from None
    return dict(sorted(out.items()))


def channel_correlation(maps: NDArray[Any]) -> NDArray[np.float64]:
    """Pearson correlation between channels of ``maps`` ``(P, C, H, W)`` over probes and positions."""
    c = maps.shape[1]
    flat = np.moveaxis(np.asarray(maps, dtype=np.float64), 1, 0).reshape(c, -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1)
    ok = norms > 0
    flat[ok] /= norms[ok, None]
    corr = flat @ flat.T
    corr[~ok, :] = 0.0
    corr[:, ~ok] = 0.0
    return np.clip(corr, -1.0, 1.0)


class CorrelationSum:
    """The channel correlation of :func:`channel_correlation` (equal to rounding) accumulated over
    chunks of probes
    (``add`` each ``(P, C, *spatial)`` chunk, then ``correlation``), so the maps of one chunk at a
    time are held: sums and the Gram matrix in float64 of the maps shifted by the first chunk's
    channel means (the shift keeps the one-pass formula free of cancellation)."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: NDArray[np.float64] | None = None
        self.total: NDArray[np.float64] | None = None
        self.gram: NDArray[np.float64] | None = None

    def add(self, maps: NDArray[Any]) -> None:
        c = maps.shape[1]
        flat = np.moveaxis(np.asarray(maps, dtype=np.float64), 1, 0).reshape(c, -1)
        if self.shift is None:
            self.shift = flat.mean(axis=1) if flat.shape[1] else np.zeros(c)
            self.total, self.gram = np.zeros(c), np.zeros((c, c))
        assert self.total is not None and self.gram is not None
        flat -= self.shift[:, None]
        self.n += flat.shape[1]
        self.total += flat.sum(axis=1)
        self.gram += flat @ flat.T

    def correlation(self) -> NDArray[np.float64]:
        if self.gram is None or self.total is None or self.n == 0:  # nothing added: no pairs
            c = 0 if self.gram is None else len(self.gram)
            return np.zeros((c, c))
        cov = self.gram - np.outer(self.total, self.total) / self.n
        var = np.diag(cov).copy()
        # a channel constant over every probe and position has variance 0 up to rounding
        ok = var > 1e-24 * np.maximum(np.diag(self.gram), 1e-300) + 1e-300
        norms = np.sqrt(np.where(ok, var, 1.0))
        corr = cov / np.outer(norms, norms)
        corr[~ok, :] = 0.0
        corr[:, ~ok] = 0.0
        return np.clip(corr, -1.0, 1.0)


def mean_abs_offdiagonal(corr: NDArray[Any]) -> float | None:
    """Mean ``|r|`` over distinct channel pairs of a correlation matrix (a constant channel's pairs
    read 0, as in :func:`channel_correlation`); ``None`` with fewer than two channels."""
    c = np.asarray(corr, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 2:
        return None
    vals = np.abs(c[np.triu_indices(c.shape[0], k=1)])
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else None


def per_channel_stats(maps: NDArray[Any], probe_sets: list[str]) -> dict[str, Any]:
    """Mean of relu(map) per channel for each probe set."""
    act = np.maximum(np.asarray(maps, dtype=np.float64), 0.0).mean(axis=(2, 3))  # (P, C)
    out = {}
    for s in sorted(set(probe_sets)):
        idx = [i for i, p in enumerate(probe_sets) if p == s]
        out[s] = act[idx].mean(axis=0).tolist()
    return out


def ncc_view(image: NDArray[Any], kernel: NDArray[Any], bias: float = 0.0) -> dict[str, Any]:
    """Raw correlation (+bias) and NCC of one probe image with one first-layer kernel ('same' size)."""
    img = np.asarray(image, dtype=np.float64)
    ker = np.asarray(kernel, dtype=np.float64)
    raw = correlate2d(img, ker, padding="same") + bias
    try:
        ncc = normalized_cross_correlation(img, ker, padding="same")
    except ValueError:  # constant kernel: correlation undefined
        ncc = np.zeros_like(raw)
    r = (
        float(np.corrcoef(raw.ravel(), ncc.ravel())[0, 1])
        if raw.std() > 0 and ncc.std() > 0
        else float("nan")
    )
    return {"raw": raw, "ncc": ncc, "pearson_raw_vs_ncc": r}


def feature_map_summary(
    inputs: NDArray[Any] | None,
    maps: dict[int, dict[str, NDArray[Any]]],
    probe_meta: list[dict[str, Any]],
) -> tuple[FeatureMapInfo, dict[str, LayerFeatureMaps]]:
    """Per layer (keyed as in the probe files): mean activation per probe set at every epoch, and
    the channel correlation matrices at the first and last epoch."""
    sets = [p["set"] for p in probe_meta]
    if not maps:
        return FeatureMapInfo([], sets), {}
    epochs = sorted(maps)
    layers: dict[str, LayerFeatureMaps] = {}
    for layer in maps[epochs[0]]:
        per_epoch = [EpochActivation(e, per_channel_stats(maps[e][layer], sets)) for e in epochs]
        layers[layer] = LayerFeatureMaps(
            shape=list(maps[epochs[0]][layer].shape[1:]),
            per_epoch=per_epoch,
            channel_correlation_final=channel_correlation(maps[epochs[-1]][layer]).tolist(),
            channel_correlation_init=channel_correlation(maps[epochs[0]][layer]).tolist(),
        )
    return FeatureMapInfo(epochs, sets), layers
