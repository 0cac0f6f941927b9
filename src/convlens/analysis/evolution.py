"""Kernels over training, from the per-epoch snapshots: similarity to the bank and distance from init.

Per epoch: for the first conv layer the fraction of kernels above the random null's 95th percentile
and the median best-match score (same statistic and null as :mod:`convlens.analysis.matching`); for
every conv layer the relative distance from initialisation ``|W_e - W_0| / |W_0|`` and the step
``|W_e - W_(e-1)| / |W_0|`` (Frobenius norms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.matching import dc_cosine_scores
from convlens.kernels import bank_matrix


def load_snapshots(folder: Path) -> dict[int, dict[str, NDArray[np.float32]]]:
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(folder.glob("epoch-*.safetensors")):
        out[int(f.stem.split("-")[1])] = load_file(str(f))
    return out


def evolution(
    snapshots: dict[int, dict[str, NDArray[Any]]], first_layer: str, null: NDArray[np.float64]
) -> dict[str, Any]:
    epochs = sorted(snapshots)
    if not epochs:
        return {"epochs": []}
    key = f"{first_layer}.weight"
    w0 = snapshots[epochs[0]]
    layers = [k[: -len(".weight")] for k in w0 if k.endswith(".weight")]
    k = w0[key].shape[-1] if key in w0 else 0
    bank, entries = bank_matrix(k) if k else (np.zeros((0, 0)), [])
    p95 = float(np.percentile(null, 95)) if len(null) else float("nan")
    rows = []
    prev: dict[str, NDArray[Any]] | None = None
    for e in epochs:
        snap = snapshots[e]
        row: dict[str, Any] = {"epoch": e, "distance_from_init": {}, "step": {}}
        for layer in layers:
            w = snap[f"{layer}.weight"].astype(np.float64)
            base = w0[f"{layer}.weight"].astype(np.float64)
            norm0 = float(np.linalg.norm(base)) or 1.0
            row["distance_from_init"][layer] = float(np.linalg.norm(w - base) / norm0)
            row["step"][layer] = (
                0.0 if prev is None else float(np.linalg.norm(w - prev[f"{layer}.weight"]) / norm0)
            )
        if entries and key in snap:
            w = snap[key].astype(np.float64)
            vecs = w.reshape(-1, k * k)
            _, score, _ = dc_cosine_scores(vecs, bank)
            row["first_layer_fraction_above_null95"] = float((score > p95).mean())
            row["first_layer_median_score"] = float(np.median(score))
            row["first_layer_scores"] = score.tolist()
        rows.append(row)
        prev = snap
    return {"first_layer": first_layer, "null_p95": p95, "epochs": rows}
