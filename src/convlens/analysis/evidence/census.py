"""First-layer units counted by what they look like: Gabor or edge detectors with a good Gabor fit,
oriented units and the orientation bins they fill, colour-opponent units (issue 27).

These are counts, not tests: the kernel verdicts (:mod:`convlens.analysis.evidence.verdicts`,
:mod:`convlens.analysis.evidence.kernelsets`) decide whether the units are classical and where they
came from; the census says what they look like, with the random-label and initial kernels counted
the same way beside them. There is no null: smooth random kernels count too, small ones more often
than large ones (Gaussian-blurred noise: tests/test_census.py), and no random-kernel null tried
(phase-randomised with the layer's power spectrum, with or without its spatial envelope) reproduced
the counts of blurred noise with soft borders. So the census is read against the controls, which
share the run's kernel size and training, never against another run's figures. Everything is read
from a :class:`~convlens.analysis.result.UnitSummary` (categories, orientation tuning and the best
slice's Gabor fit R^2, computed by :func:`convlens.analysis.measure.units.unit_summary`).
"""

from __future__ import annotations

from typing import Any

from convlens.analysis.result import AnalysisResult, KernelCensus, UnitSummary

#: the census's thresholds (:func:`census`)
GABOR_R2 = 0.7
SELECTIVE = 0.3
ORIENTATION_BINS = 8
EDGE_LIKE = ("Gabor-like", "edge/gradient")
ORIENTED = ("Gabor-like", "edge/gradient", "line")
CENSUS_RULE = (
    f"Gabor or edge: a live unit whose category is {' or '.join(EDGE_LIKE)} (so above the random "
    f"null) and whose best slice a Gabor fits with R^2 >= {GABOR_R2} (kernels of odd size >= 5 "
    f"only). Oriented: a live unit of category {', '.join(ORIENTED[:-1])} or {ORIENTED[-1]} whose "
    f"orientation selectivity (of the power spectrum of all its slices) is >= {SELECTIVE}, its "
    f"preferred orientation (of the kernel's gradient) put in one of {ORIENTATION_BINS} bins of "
    f"{180 / ORIENTATION_BINS:g} degrees centred on 0, {180 / ORIENTATION_BINS:g}, .... "
    "Colour-opponent: the colour rule's category (layers that read the image's colours only). "
    "Counts, not a test, and no null: read them against the random-label and initial kernels of "
    "the same run"
)


def orientation_bins(
    orientation: list[float | None], selectivity: list[float | None], categories: list[str]
) -> tuple[int, list[int]]:
    """How many units are oriented (category in :data:`ORIENTED`, selectivity >= :data:`SELECTIVE`)
    and the bins of 22.5 degrees, centred on 0, 22.5, ..., that their preferred orientations fill."""
    width = 180 / ORIENTATION_BINS
    oriented = [
        o
        for o, s, c in zip(orientation, selectivity, categories, strict=True)
        if o is not None and s is not None and s >= SELECTIVE and c in ORIENTED
    ]
    return len(oriented), sorted({int(((o + width / 2) % 180) // width) for o in oriented})


def census(units: UnitSummary | None, kernels: str, seeds: list[int]) -> KernelCensus | None:
    """A layer's units counted by shape (:class:`~convlens.analysis.result.KernelCensus`, rule
    :data:`CENSUS_RULE`); ``None`` without per-unit lists (a layer too wide to keep them)."""
    if units is None or not units.unit_categories:
        return None
    cats = units.unit_categories
    good = None
    if units.gabor_r2:
        good = sum(
            c in EDGE_LIKE and r is not None and r >= GABOR_R2
            for c, r in zip(cats, units.gabor_r2, strict=True)
        )
    n_oriented: int | None = None
    bins: list[int] = []
    if units.orientation and units.selectivity:
        n_oriented, bins = orientation_bins(units.orientation, units.selectivity, cats)
    colour = cats.count("colour-opponent") if units.colour_rule is not None else None
    return KernelCensus(
        kernels, list(seeds), units.n_live, good, n_oriented, bins, colour, CENSUS_RULE
    )


def pooled_census(parts: list[KernelCensus]) -> KernelCensus | None:
    """The census of several runs' units together (a count is ``None`` when any part lacks it)."""
    if not parts:
        return None

    def total(name: str) -> Any:
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else sum(values)

    return KernelCensus(
        parts[0].kernels,
        [s for p in parts for s in p.seeds],
        sum(p.n_live for p in parts),
        total("gabor_or_edge"),
        total("oriented"),
        sorted({b for p in parts for b in p.orientation_bins}),
        total("colour_opponent"),
        parts[0].rule,
    )


#: the kernel sets counted (the analysed run's, and its kernel controls' by ``Control.kind``)
CENSUS_SETS = {"trained": None, "random labels": "random_labels", "init": "init"}


def first_layer_census(
    a: AnalysisResult, kernels: str = "trained", seeds: list[int] | None = None
) -> KernelCensus | None:
    """The census of an analysis's first layer (``kernels="trained"``) or of its first kernel
    control of that kind (``"random labels"``, ``"init"``); ``seeds`` default to the run's seed."""
    if seeds is None:
        seeds = [a.run.config.seed] if a.run is not None else []
    kind = CENSUS_SETS[kernels]
    if kind is None:
        first = a.first_layer
        units = first.matching.units if first is not None and first.matching is not None else None
    else:
        control = next((c for c in a.controls if c.kind == kind and c.units is not None), None)
        units = control.units if control is not None else None
    return census(units, kernels, seeds)
