"""Headline figures across training seeds: mean and a 95% t-interval, plus pooled verdicts.

The interval is ``mean +/- t(0.975, n-1) * sd / sqrt(n)`` over the per-seed values (no interval for a
single seed). Kernel verdicts pool the counts of all seeds into one binomial test (same rule as
:mod:`convlens.analysis.verdicts`); the OOD verdict reports in how many seeds the claim held.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convlens.analysis.result import (
    SEEDS_SCHEMA_VERSION,
    AnalysisResult,
    LayerMatch,
    OodComparison,
    SeedRow,
    SeedsSummary,
)
from convlens.analysis.verdicts import kernel_verdict
from convlens.errors import ConvlensError


def t_interval(values: list[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 2:
        return (None, None)
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return (float(v.mean() - half), float(v.mean() + half))


def _row(name: str, values: list[Any]) -> SeedRow:
    vals = [float(v) for v in values if v is not None]
    return SeedRow(
        name=name,
        values=vals,
        mean=float(np.mean(vals)) if vals else None,
        ci=t_interval(vals),
    )


def aggregate(analyses: list[AnalysisResult], seeds: list[int]) -> SeedsSummary:
    """Across-seeds rows and pooled verdicts; layers are matched by name (same architecture)."""
    rows = [_row("test accuracy", [a.headline.test_accuracy for a in analyses])]
    firsts: list[LayerMatch] = []
    for a in analyses:
        first = a.first_layer
        if first is not None and first.matching is not None and not first.matching.skipped:
            firsts.append(first.matching)
    rows.append(
        _row(
            "first layer: fraction above random null p95",
            [m.fraction_above_null95 for m in firsts],
        )
    )
    rows.append(
        _row(
            "first layer: fraction above spectrum-matched null p95",
            [m.fraction_above_spectrum_null95 for m in firsts],
        )
    )
    ood_held: dict[str, dict[str, int]] = {}
    for layer in analyses[0].layers:
        if layer.distribution is None:
            continue
        for ood in layer.distribution.ood:
            per = [_ood_of(a, layer.name, ood) for a in analyses]
            rows.append(_row(f"{layer.name} vs {ood}: AUROC", [p.auroc for p in per]))
            rows.append(
                _row(f"{layer.name} vs {ood}: activation ratio OOD/ID", [p.ratio for p in per])
            )
            ood_held.setdefault(layer.name, {})[ood] = sum(p.verdict == "holds" for p in per)
    n_total = sum(m.n_kernels for m in firsts)
    above = sum(round((m.fraction_above_null95 or 0) * m.n_kernels) for m in firsts)
    above_s = sum(round((m.fraction_above_spectrum_null95 or 0) * m.n_kernels) for m in firsts)
    return SeedsSummary(
        schema_version=SEEDS_SCHEMA_VERSION,
        n=len(analyses),
        seeds=seeds,
        rows=rows,
        classical_kernels_pooled=kernel_verdict(above / n_total if n_total else None, n_total),
        classical_kernels_pooled_spectrum_null=kernel_verdict(
            above_s / n_total if n_total else None, n_total
        ),
        ood_holds_in_seeds=ood_held,
        interval="mean +/- t(0.975, n-1) * sd / sqrt(n) across seeds",
    )


def _ood_of(a: AnalysisResult, layer: str, ood: str) -> OodComparison:
    dist = a.layer(layer).distribution
    if dist is None or ood not in dist.ood:
        raise ConvlensError(f"{layer} vs {ood}: missing in one of the seeds' analyses")
    return dist.ood[ood]
