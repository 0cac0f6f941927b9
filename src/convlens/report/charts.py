"""The report's interactive charts as data: each chart is a small JSON spec (its series, axis
labels and title) that the page draws as inline SVG with hover read-outs, zoom, series toggles and
CSV/JSON download (``report.js.j2``). The static PNG beside each chart is what a page without
scripts shows. Nothing here draws: the numbers are the run's own (``metrics.jsonl``, the analysis's
evolution, the snapshots), so a downloaded file holds exactly what the chart shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _num(v: Any) -> float | None:
    """A finite float, else ``None`` (a gap in the line; JSON has no NaN)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _series(
    name: str, x: list[Any], y: list[Any], colour: int, dash: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "x": [float(v) for v in x],
        "y": [_num(v) for v in y],
        "colour": colour,
        "dash": dash,
    }


def line_chart(
    title: str, x_label: str, y_label: str, series: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "kind": "line",
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "series": series,
    }


def training_charts(metrics: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Loss and accuracy per epoch, train and validation, every seed overlaid (one colour per
    seed; validation dashed)."""
    out = {}
    for key, label in (("loss", "cross-entropy loss"), ("acc", "accuracy")):
        series = []
        for i, (run, rows) in enumerate(metrics.items()):
            ep = [r["epoch"] for r in rows]
            series.append(_series(f"{run} train", ep, [r.get(f"train_{key}") for r in rows], i))
            series.append(
                _series(f"{run} validation", ep, [r.get(f"val_{key}") for r in rows], i, True)
            )
        out[f"training-{key}"] = line_chart(f"{label} per epoch", "epoch", label, series)
    return out


def evolution_charts(
    epochs: list[int],
    fraction: list[float | None],
    median: list[float | None],
    null_p95: float | None,
    distance: dict[str, list[float | None]],
) -> dict[str, dict[str, Any]]:
    """The first layer's fraction above the random null and median score per snapshot epoch (with
    chance and the null's 95th percentile as flat lines), and each layer's relative distance from
    its initial weights."""
    flat = [epochs[0], epochs[-1]]
    frac = [_series("first layer above the random null's p95", epochs, fraction, 0)]
    frac.append(_series("chance (5%)", flat, [0.05, 0.05], 6, True))
    med = [_series("first layer median best-match |cos|", epochs, median, 0)]
    if null_p95 is not None:
        med.append(_series("the null's 95th percentile", flat, [null_p95, null_p95], 6, True))
    dist = [_series(layer, epochs, v, i) for i, (layer, v) in enumerate(distance.items())]
    return {
        "evolution-fraction": line_chart(
            "fraction above the random null per epoch", "epoch", "fraction", frac
        ),
        "evolution-median": line_chart("median match score per epoch", "epoch", "|cos|", med),
        "evolution-distance": line_chart(
            "distance from initialisation per epoch", "epoch", "relative distance", dist
        ),
    }


#: bins of each layer's weight histogram (shared by all its epochs)
HIST_BINS = 40


def weight_histograms(
    epochs: list[int],
    snapshot: Callable[[int], dict[str, NDArray[Any]]],
    layers: list[str],
) -> dict[str, Any] | None:
    """Per conv layer, a histogram of its weights at every snapshot epoch, on bins fixed across
    epochs (the range of all its finite values), for the page's layer menu and epoch slider."""
    if not epochs or not layers:
        return None
    per_epoch = {e: snapshot(e) for e in epochs}
    out: dict[str, Any] = {}
    for layer in layers:
        arrays = [np.asarray(per_epoch[e].get(layer), np.float64) for e in epochs]
        if any(a.ndim == 0 for a in arrays):
            continue
        finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
        if finite.size == 0:
            continue
        lo, hi = float(finite.min()), float(finite.max())
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        counts = [np.histogram(a[np.isfinite(a)], bins=edges)[0].tolist() for a in arrays]
        out[layer] = {"edges": edges.tolist(), "epochs": list(epochs), "counts": counts}
    if not out:
        return None
    return {"kind": "hist", "title": "weight histograms over epochs", "layers": out}
