"""Headline figures across training seeds: mean and a 95% t-interval, plus pooled verdicts.

The interval is ``mean +/- t(0.975, n-1) * sd / sqrt(n)`` over the per-seed values (no interval for a
single seed). Kernel verdicts pool the counts of all seeds into one binomial test (same rule as
:mod:`convlens.analysis.evidence.verdicts`); the OOD verdict reports in how many seeds the claim held,
and where it comes from is decided on all seeds at once with the networks as the unit
(:mod:`convlens.analysis.evidence.seeds_ood`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convlens.analysis.evidence.census import CENSUS_SETS, first_layer_census
from convlens.analysis.evidence.seeds_ood import RULE as OOD_SEEDS_RULE
from convlens.analysis.evidence.seeds_ood import ood_learned_across_seeds
from convlens.analysis.evidence.verdicts import kernel_learning_verdict, kernel_verdict
from convlens.analysis.result import (
    SEEDS_SCHEMA_VERSION,
    AnalysisResult,
    KernelCensus,
    KernelVerdict,
    LayerMatch,
    OodComparison,
    OodSeedsVerdict,
    SeedRow,
    SeedsSummary,
    SeedsVerdicts,
)
from convlens.errors import ConvlensError


def t_interval(values: list[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 2:
        return (None, None)
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return (float(v.mean() - half), float(v.mean() + half))


def _row(name: str, values: list[Any], bounded: bool = False) -> SeedRow:
    """``bounded``: the figure lies in [0, 1] (a proportion, an AUROC), so its interval is clipped
    to [0, 1]."""
    vals = [float(v) for v in values if v is not None]
    lo, hi = t_interval(vals)
    if bounded and lo is not None and hi is not None:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return SeedRow(
        name=name,
        values=vals,
        mean=float(np.mean(vals)) if vals else None,
        ci=(lo, hi),
    )


def aggregate(analyses: list[AnalysisResult], seeds: list[int]) -> SeedsSummary:
    """Across-seeds rows and pooled verdicts; layers are matched by name (same architecture)."""
    rows = [_row("test accuracy", [a.headline.test_accuracy for a in analyses], bounded=True)]
    firsts: list[LayerMatch] = []
    for a in analyses:
        first = a.first_layer
        if first is not None and first.matching is not None and not first.matching.skipped:
            firsts.append(first.matching)
    rows.append(
        _row(
            "first layer: fraction above random null p95",
            [m.fraction_above_null95 for m in firsts],
            bounded=True,
        )
    )
    rows.append(
        _row(
            "first layer: fraction above spectrum-matched null p95",
            [m.fraction_above_spectrum_null95 for m in firsts],
            bounded=True,
        )
    )
    rows += _control_rows(analyses)
    ood_held: dict[str, dict[str, int]] = {}
    ood_learned: dict[str, dict[str, OodSeedsVerdict]] = {}
    for layer in analyses[0].layers:
        if layer.distribution is None:
            continue
        for ood in layer.distribution.ood:
            per = [_ood_of(a, layer.name, ood) for a in analyses]
            rows.append(_row(f"{layer.name} vs {ood}: AUROC", [p.auroc for p in per], bounded=True))
            rows.append(
                _row(f"{layer.name} vs {ood}: activation ratio OOD/ID", [p.ratio for p in per])
            )
            ood_held.setdefault(layer.name, {})[ood] = sum(p.verdict == "holds" for p in per)
            ood_learned.setdefault(layer.name, {})[ood] = ood_learned_across_seeds(per)
    n_total, above, above_s = _pooled_counts(firsts)
    return SeedsSummary(
        schema_version=SEEDS_SCHEMA_VERSION,
        n=len(analyses),
        seeds=seeds,
        rows=rows,
        classical_kernels_pooled=_pooled(above_s, n_total, "spectrum-matched"),
        differs_from_init_pooled=_pooled(above, n_total, "random (init)"),
        ood_holds_in_seeds=ood_held,
        interval="mean +/- t(0.975, n-1) * sd / sqrt(n) across seeds (clipped to [0, 1] for "
        "proportions); pooled kernel counts: Wilson score 95%",
        kernel_learning_verdicts=_verdict_counts(analyses),
        verdicts=SeedsVerdicts(
            kernel_learning=kernel_learning_verdict(analyses),
            ood_learned=ood_learned,
            ood_learned_rule=OOD_SEEDS_RULE if ood_learned else None,
        ),
        census=analyses_census(analyses, seeds),
    )


def analyses_census(
    analyses: list[AnalysisResult], seeds: list[int]
) -> dict[str, list[KernelCensus]]:
    """The first-layer census of each seed's trained, random-label and initial kernels (a set is
    left out unless every seed has it)."""
    out: dict[str, list[KernelCensus]] = {}
    for name in CENSUS_SETS:
        per = [first_layer_census(a, name, [s]) for a, s in zip(analyses, seeds, strict=True)]
        if per and all(c is not None for c in per):
            out[name] = [c for c in per if c is not None]
    return out


def _pooled(above: int, n: int, null: str) -> KernelVerdict:
    """The pooled binomial verdict with a Wilson 95% interval of the pooled fraction."""
    from convlens.analysis.evidence.stats import wilson

    v = kernel_verdict(above / n if n else None, n, null=null)
    v.ci = wilson(above, n)
    return v


def _pooled_counts(firsts: list[LayerMatch]) -> tuple[int, int, int]:
    """Pooled (n, above random null, above spectrum null): per live output unit when the layer has
    per-unit figures (:mod:`convlens.analysis.measure.units`), else per kernel slice."""
    n_total = above = above_s = 0
    for m in firsts:
        u = m.units
        if u is not None:
            n_total += u.n_live
            above += u.above_null95
            above_s += u.above_spectrum_null95 or 0
        else:
            n_total += m.n_kernels
            above += round((m.fraction_above_null95 or 0) * m.n_kernels)
            above_s += round((m.fraction_above_spectrum_null95 or 0) * m.n_kernels)
    return n_total, above, above_s


#: the kernel controls' figures kept per seed: (control kind, figure key, row name after "first
#: layer, ")
CONTROL_ROWS = (
    ("random_labels", "fraction_above_null95", "random-label control: units above null p95"),
    ("random_labels", "test_accuracy", "random-label control: test accuracy"),
    ("random_labels", "final_train_accuracy", "random-label control: training accuracy"),
    ("random_labels", "label_fit_p", "random-label control: p of fitting its labels"),
    ("init", "fraction_above_null95", "init (epoch 000): units above null p95"),
    ("input_statistics", "trained.energy_median", "trained: median top-m patch-PCA energy"),
    ("input_statistics", "random_labels.energy_median", "random-label: median top-m energy"),
    ("input_statistics", "init.energy_median", "init: median top-m patch-PCA energy"),
    ("input_statistics", "trained.whitening_slope", "trained: whitening slope"),
    ("input_statistics", "random_labels.whitening_slope", "random-label: whitening slope"),
    ("input_statistics", "init.whitening_slope", "init: whitening slope"),
)


def _control_rows(analyses: list[AnalysisResult]) -> list[SeedRow]:
    """Per-seed figures of the kernel controls (random labels, init, patch statistics)."""
    rows = []
    for kind, key, name in CONTROL_ROWS:
        vals = [_control_figure(a, kind, key) for a in analyses]
        if any(v is not None for v in vals):
            bounded = not key.endswith("_slope")  # a slope is not a fraction
            rows.append(_row(f"first layer, {name}", vals, bounded=bounded))
    return rows


def control_row_values(s: SeedsSummary, kind: str, key: str) -> list[float] | None:
    """The per-seed values of a kernel control's figure (``None``: not in ``s.rows``)."""
    name = next(f"first layer, {n}" for k, f, n in CONTROL_ROWS if (k, f) == (kind, key))
    return next((r.values for r in s.rows if r.name == name), None)


def _control_figure(a: AnalysisResult, kind: str, key: str) -> float | None:
    for c in a.controls:
        if c.kind == kind:
            return c.figures.get(key)
    return None


def _verdict_counts(analyses: list[AnalysisResult]) -> dict[str, int]:
    """How many seeds reached each level of the three-way kernel verdict."""
    out: dict[str, int] = {}
    for a in analyses:
        v = a.verdicts.kernel_learning
        if v is not None:
            out[v.verdict] = out.get(v.verdict, 0) + 1
    return out


def _ood_of(a: AnalysisResult, layer: str, ood: str) -> OodComparison:
    dist = a.layer(layer).distribution
    if dist is None or ood not in dist.ood:
        raise ConvlensError(f"{layer} vs {ood}: missing in one of the seeds' analyses")
    return dist.ood[ood]
