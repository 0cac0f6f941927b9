"""Kernels over training, from the snapshots: similarity to the bank and distance from init.

Per snapshot epoch: for the first conv layer the fraction of kernels above the random null's 95th percentile
and the median best-match score (same statistic and null as :mod:`convlens.analysis.measure.matching`); for
every conv layer the relative distance from initialisation ``|W_e - W_0| / |W_0|`` and the step
``|W_e - W_p| / |W_0|`` from the previous snapshot ``p`` (Frobenius norms). Snapshots need not be
contiguous (the trainer's default cadence is log-spaced, see :mod:`convlens.runs.schedule`): every
figure is per snapshot epoch, and a step spans the epochs since the previous snapshot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens._serde import finite
from convlens.analysis.measure.matching import dc_cosine_scores
from convlens.analysis.result import Evolution, EvolutionEpoch
from convlens.kernels import bank_matrix


def evolution(
    snapshots: dict[int, dict[str, NDArray[Any]]],
    layer_keys: dict[str, str],
    first_layer: str,
    null: NDArray[np.float64],
) -> Evolution:
    """Distances for every layer in ``layer_keys`` (name -> weight key in the snapshots) and the
    first layer's match scores, at every snapshot epoch."""
    epochs = sorted(snapshots)
    if not epochs:
        return Evolution(first_layer, None, [], "no snapshots in this run")
    key = layer_keys[first_layer]
    w0 = snapshots[epochs[0]]
    layers = [(n, k) for n, k in layer_keys.items() if k in w0]
    shape = w0[key].shape if key in w0 else ()
    # first-layer scores need square 2-D kernels (the 2-D bank and its null)
    k = shape[-1] if len(shape) == 4 and shape[-2] == shape[-1] and len(null) else 0
    bank, entries = bank_matrix(k) if k else (np.zeros((0, 0)), [])
    p95 = float(np.percentile(null, 95)) if len(null) else float("nan")
    rows = []
    prev: dict[str, NDArray[Any]] | None = None
    for e in epochs:
        snap = snapshots[e]
        row = EvolutionEpoch(epoch=e, distance_from_init={}, step={})
        for layer, wkey in layers:
            w = snap[wkey].astype(np.float64)
            base = w0[wkey].astype(np.float64)
            norm0 = float(np.linalg.norm(base)) or 1.0
            row.distance_from_init[layer] = float(np.linalg.norm(w - base) / norm0)
            row.step[layer] = 0.0 if prev is None else float(np.linalg.norm(w - prev[wkey]) / norm0)
        if entries and key in snap:
            w = snap[key].astype(np.float64)
            vecs = w.reshape(-1, k * k)
            _, score, _ = dc_cosine_scores(vecs, bank)
            row.first_layer_fraction_above_null95 = float((score > p95).mean())
            row.first_layer_median_score = float(np.median(score))
            row.first_layer_scores = score.tolist()
        rows.append(row)
        prev = snap
    return Evolution(first_layer, finite(p95), rows)
