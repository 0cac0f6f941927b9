"""The whole-analysis result types: verdicts, headline, source, settings, run info, controls,
representation drift, :class:`AnalysisResult` (``analysis.json``) and :class:`SeedsSummary`
(``seeds.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from convlens._serde import SchemaError, from_jsonable, to_jsonable
from convlens.analysis.result.channels import LayerChannels
from convlens.analysis.result.io import (
    SCHEMA_VERSION,
    SEEDS_SCHEMA_VERSION,
    check_version,
    loads,
    read_text,
)
from convlens.analysis.result.layer import (
    CI,
    DistributionInfo,
    Evolution,
    FeatureMapInfo,
    LayerResult,
    Predictions,
    ReceptiveFields,
    UnitSummary,
)
from convlens.errors import ConvlensError
from convlens.runs.records import DatasetSpec, ModelSpec, RunConfig, TrainOutcome


# ----------------------------------------------------------------------------- verdicts
@dataclass
class KernelVerdict:
    """Binomial test of "x of n kernels above the null's 95th percentile" vs 5% chance."""

    verdict: str
    n: int
    p_value: float | None = None
    above: int | None = None
    fraction: float | None = None
    chance: float | None = None
    rule: str | None = None
    layer: str | None = None
    ci: CI = (None, None)
    unit: str | None = None
    n_dead: int | None = None
    p_text: str | None = None


@dataclass
class KernelCensus:
    """First-layer units counted by what they look like (counts, not a test; the kernel verdicts
    carry the tests): ``kernels`` says whose units (``"trained"``, ``"random labels"``, ``"init"``),
    ``seeds`` the runs counted. ``gabor_or_edge``: live units whose category is Gabor-like or
    edge/gradient and whose best slice a Gabor fits with R^2 >= the rule's threshold (``None``: no
    Gabor fits for this kernel size); ``oriented``: live units of an oriented category with
    orientation selectivity >= the rule's threshold, and ``orientation_bins`` the bins of 22.5
    degrees (centred on 0, 22.5, ...) their preferred orientations fill; ``colour_opponent``:
    colour-opponent units (``None``: the layer does not read the image's colours)."""

    kernels: str
    seeds: list[int]
    n_live: int
    gabor_or_edge: int | None
    oriented: int | None
    orientation_bins: list[int]
    colour_opponent: int | None
    rule: str


@dataclass
class Proportion:
    """``x`` of ``n`` units with a Wilson score 95% interval."""

    x: int
    n: int
    fraction: float | None
    ci: CI


@dataclass
class Comparison:
    """Trained kernels vs one control on the per-unit scores (one-sided test, stated)."""

    control: str
    test: str
    p_value: float | None
    p_text: str
    beats: bool | None


@dataclass
class ContentComparison:
    """Two sets of first-layer units compared by what they contain (seeds combined): a stratified
    permutation test of the energy distance between their power-spectrum descriptors, and the
    differences of mean unit score and mean orientation selectivity with 90% hierarchical-bootstrap
    intervals, judged for equivalence against stated margins (TOST)."""

    pair: str
    test: str
    statistic: float | None
    p_value: float | None
    p_text: str
    n_a: int
    n_b: int
    seeds: int
    differs: bool | None
    """Rejected at the verdict's family-wise level (Holm over its comparisons)."""
    score_diff: float | None = None
    score_ci90: CI = (None, None)
    selectivity_diff: float | None = None
    selectivity_ci90: CI = (None, None)
    equivalent: bool | None = None
    """Both 90% intervals inside their margins (and no difference found): the same within margins."""


@dataclass
class KernelLearningVerdict:
    """Three-way verdict on where the first layer's classical-looking kernels come from: *learned
    from the task*, *learned from image statistics*, *not distinguishable from init* (or
    *inconclusive* / *limited* when a control is missing); the controls it used and its rule."""

    verdict: str
    layer: str | None
    statistic: str
    rule: str
    controls: list[str] = field(default_factory=list)
    proportions: dict[str, Proportion] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    content: list[ContentComparison] = field(default_factory=list)
    n_seeds: int = 1
    margins: dict[str, float] = field(default_factory=dict)
    enriched: str | None = None
    """When learned from the task: the bank kernel most enriched in the trained units over the
    random-label units (by normalised power spectrum): what the task taught."""


@dataclass
class CrossCorrelationVerdict:
    """Does every conv layer compute cross-correlation (and not true convolution)?"""

    verdict: str
    differs_from_convolution: bool | None
    max_abs_diff: float | None
    rule: str
    max_rel_diff: float | None = None
    n_checked: int = 0
    n_flip_invariant: int = 0
    n_not_executed: int = 0
    tolerances: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdicts:
    """Verdicts on the seed's claims, each with its rule."""

    cross_correlation: CrossCorrelationVerdict | None = None
    classical_kernels: KernelVerdict | None = None
    """The headline: first-layer units above the spectrum-matched null (smoothness alone does not
    beat it)."""
    differs_from_init: KernelVerdict | None = None
    """The same count above the random (initialisation) null: differs from an initialisation draw."""
    ood_activation: dict[str, dict[str, str]] = field(default_factory=dict)
    ood_rule: str | None = None
    ood_learned: dict[str, dict[str, str]] = field(default_factory=dict)
    ood_learned_rule: str | None = None
    kernel_learning: KernelLearningVerdict | None = None


@dataclass
class Headline:
    """The few figures the CLI prints and the report leads with."""

    test_accuracy: float | None = None
    first_layer: str | None = None
    first_layer_fraction_above_null95: float | None = None
    first_layer_init_fraction_above_null95: float | None = None
    null_p95: float | None = None
    max_abs_diff_correlate: float | None = None
    min_abs_diff_convolve: float | None = None
    all_layers_cross_correlation: bool | None = None
    max_rel_diff_correlate: float | None = None
    min_rel_diff_convolve: float | None = None
    n_layers_checked: int | None = None
    n_flip_invariant: int | None = None
    auroc: dict[str, dict[str, float | None]] = field(default_factory=dict)
    ood_verdicts: dict[str, dict[str, str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the whole result
@dataclass
class Source:
    """What was analysed: a training run directory or a model file (with its factory and data)."""

    kind: Literal["run", "model_file"]
    path: str
    factory: str | None = None
    data: str | None = None


@dataclass
class Settings:
    """Settings of the analysis itself: null size and the seed of nulls and bootstraps."""

    n_null: int
    seed: int


@dataclass
class RunInfo:
    """The training run behind the analysis, typed from its ``run.json`` records
    (:mod:`convlens.runs.records`)."""

    config: RunConfig
    dataset: DatasetSpec
    model: ModelSpec
    result: TrainOutcome | None
    versions: dict[str, str]
    device: str | None = None
    world_size: int = 1  # ranks that trained it (torchrun; --batch-size is per rank)


@dataclass
class WhiteningTest:
    """Rotation-invariant whitening figures of one first-layer kernel set (``n_units`` live units).

    ``energy_slope``: least-squares slope of ``log e_j`` on ``log lambda_j`` over the patch principal
    components ``u_j`` with ``lambda_j > 1e-6 lambda_max``, where ``e_j = |W u_j|^2 / |W|_F^2`` (units
    DC-removed): -1 for a whitening layer (energy proportional to ``1 / lambda``), > 0 for a layer
    that follows the input's principal directions. ``spectrum_slope``: log-log slope of the units'
    mean power spectrum (DC removed, zero-padded) on the patches' mean power spectrum ``S(f)``
    (whitening: -1; matched filter: +1). Both depend only on ``W^T W``, so any rotation of the units
    gives the same value. ``*_ci``: percentile bootstrap over units; ``*_null``: 2.5th and 97.5th
    percentiles of the same slope for random layers of the same shape (PyTorch's init
    distribution). ``*_verdict``: ``"whitening-like"`` when the CI lies below the null interval and
    below 0, ``"follows the input's principal directions"`` when above it and above 0, else
    ``"neither"``."""

    n_units: int
    energy_slope: float | None
    energy_slope_ci: CI
    energy_null: CI
    energy_verdict: str
    spectrum_slope: float | None
    spectrum_slope_ci: CI
    spectrum_null: CI
    spectrum_verdict: str


@dataclass
class WhiteningEpoch:
    """The whitening figures of the first layer at one snapshot epoch (live units of that epoch)."""

    epoch: int
    test: WhiteningTest


@dataclass
class Whitening:
    """Whether the first layer whitens its input, tested without reference to any particular
    whitening matrix (whitening is defined only up to a rotation of the units).

    ``sets``: the trained, random-label and init kernels; ``reference_*``: the same slopes for a
    PCA-whitening layer ``Lambda^-1/2 U^T`` (energy slope -1), the patches' covariance square root
    ``Lambda^1/2 U^T`` (+1) and the top ``reference_units`` principal components as a layer (energy
    outside them at the floor ``energy_floor``); ``over_training``: the trained run's first layer at
    each snapshot epoch (empty, with ``over_training_skipped``, without snapshots)."""

    rule: str
    n_components: int
    n_null: int
    n_boot: int
    seed: int
    energy_floor: float
    spectrum_pad: int
    reference_units: int
    reference_energy: dict[str, float | None]
    reference_spectrum: dict[str, float | None]
    sets: dict[str, WhiteningTest] = field(default_factory=dict)
    over_training: list[WhiteningEpoch] = field(default_factory=list)
    over_training_skipped: str | None = None


@dataclass
class Control:
    """A control analysis (untrained, random labels, input statistics) computed like the claims.

    ``kind``: ``"random_labels"``, ``"input_statistics"``, ``"init"``, ``"untrained"`` or
    ``"other"``; ``command``: how to reproduce it; ``source``: the control run it came from;
    ``layers``: per-layer figures; ``null``: what the figures are compared with; ``units``: the
    control's first-layer kernels counted per unit exactly like the claim's (kernel controls);
    ``whitening``: the rotation-invariant whitening tests (``input_statistics`` only); ``seeds``:
    the ``torch.manual_seed`` of each untrained initialisation (the ``untrained`` control)."""

    name: str
    description: str
    figures: dict[str, float | None] = field(default_factory=dict)
    kind: str = "other"
    command: str | None = None
    source: str | None = None
    layers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    null: str | None = None
    notes: list[str] = field(default_factory=list)
    units: UnitSummary | None = None
    whitening: Whitening | None = None
    seeds: list[int] = field(default_factory=list)


@dataclass
class LayerCka:
    """Linear CKA of one layer's probe representation at each snapshot epoch vs the final epoch."""

    layer: str
    epochs: list[int]
    cka_to_final: list[float | None]
    floor: float | None
    settle_epoch: int | None


@dataclass
class RepresentationDrift:
    """Deeper layers over training: per layer, linear CKA (Kornblith et al. 2019) between the probe
    set's representation at each epoch and at the final epoch; the floor is the untrained
    (epoch-000) representation vs the final one; ``settle_epoch`` the first epoch from which CKA
    stays >= ``settle_threshold``."""

    n_probes: int
    final_epoch: int
    settle_threshold: float
    rule: str
    layers: list[LayerCka] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class AnalysisError:
    """A part of the analysis that could not be done, and why; the rest of the result stands."""

    stage: str
    message: str


@dataclass
class AnalysisResult:
    """The result of ``convlens analyze`` (``analysis.json``)."""

    schema_version: int
    source: Source
    settings: Settings
    layers: list[LayerResult]
    headline: Headline
    verdicts: Verdicts
    run: RunInfo | None = None
    evolution: Evolution | None = None
    distribution: DistributionInfo | None = None
    feature_maps: FeatureMapInfo | None = None
    receptive_fields: ReceptiveFields | None = None
    controls: list[Control] = field(default_factory=list)
    predictions: Predictions | None = None
    notes: list[str] = field(default_factory=list)
    errors: list[AnalysisError] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    representation: RepresentationDrift | None = None
    channels: list[LayerChannels] | None = None
    """What each channel of each conv layer responds to (exemplars, maximising inputs)."""

    @property
    def first_layer(self) -> LayerResult | None:
        """The first conv layer in execution order (``None`` when there is none)."""
        return min(self.layers, key=lambda r: r.identity.index) if self.layers else None

    def layer(self, name: str) -> LayerResult:
        for r in self.layers:
            if r.identity.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_jsonable(self))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @staticmethod
    def from_dict(data: Any, where: str = "analysis") -> AnalysisResult:
        check_version(data, where, "schema_version", SCHEMA_VERSION, "an analysis")
        try:
            return from_jsonable(AnalysisResult, data, "")
        except SchemaError as exc:
            raise ConvlensError(f"{where}: not a valid convlens analysis: {exc}") from None

    @staticmethod
    def from_json(text: str, where: str = "analysis") -> AnalysisResult:
        return AnalysisResult.from_dict(loads(text, where), where)

    @staticmethod
    def read(path: str | Path) -> AnalysisResult:
        p = Path(path)
        return AnalysisResult.from_json(read_text(p), repr(str(p)))


# ----------------------------------------------------------------------------- seeds.json
@dataclass
class SeedRow:
    """One figure across training seeds: per-seed values, mean and a 95% t-interval."""

    name: str
    values: list[float]
    mean: float | None
    ci: CI


@dataclass
class OodSeedsVerdict:
    """Where a layer's ID-vs-OOD difference comes from, decided on all seeds at once with the
    networks as the unit (:func:`convlens.analysis.evidence.seeds_ood.ood_learned_across_seeds`).

    Per seed: the trained network's AUROC, its random-label network's and its untrained
    initialisations'. ``p_untrained``: one-sided p of "the trained AUROCs are above the untrained
    ones" (within each seed the trained network is exchanged with that seed's initialisations);
    ``p_random_labels``: of "above the random-label networks'" (paired by seed, signs flipped);
    ``p_rl_untrained``: of "the random-label AUROCs are above the untrained ones"."""

    verdict: str
    n_seeds: int
    holds: int
    """Seeds in which the trained verdict (the activation difference itself) holds."""
    trained: list[float | None] = field(default_factory=list)
    random_labels: list[float | None] = field(default_factory=list)
    untrained_median: float | None = None
    p_untrained: float | None = None
    p_random_labels: float | None = None
    p_rl_untrained: float | None = None


@dataclass
class SeedsVerdicts:
    """Verdicts decided on all seeds at once (the same rules as one run's, seeds as strata)."""

    kernel_learning: KernelLearningVerdict | None = None
    ood_learned: dict[str, dict[str, OodSeedsVerdict]] = field(default_factory=dict)
    """Per layer and OOD set: :class:`OodSeedsVerdict` (networks as the unit)."""
    ood_learned_rule: str | None = None


@dataclass
class SeedsSummary:
    """Headline figures across training seeds (``seeds.json``)."""

    schema_version: int
    n: int
    seeds: list[int]
    rows: list[SeedRow]
    classical_kernels_pooled: KernelVerdict
    """Pooled over seeds: units above the spectrum-matched null (the headline)."""
    differs_from_init_pooled: KernelVerdict
    """Pooled over seeds: units above the random (initialisation) null."""
    ood_holds_in_seeds: dict[str, dict[str, int]]
    interval: str
    kernel_learning_verdicts: dict[str, int] = field(default_factory=dict)
    verdicts: SeedsVerdicts = field(default_factory=SeedsVerdicts)
    census: dict[str, list[KernelCensus]] = field(default_factory=dict)
    """First-layer units counted by shape, per kernel set (trained, random labels, init), one entry
    per seed (:func:`convlens.analysis.evidence.census.census`)."""

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(to_jsonable(self), indent=indent, allow_nan=False)

    @staticmethod
    def from_json(text: str, where: str = "seeds summary") -> SeedsSummary:
        data = loads(text, where)
        check_version(data, where, "schema_version", SEEDS_SCHEMA_VERSION, "a seeds summary")
        try:
            return from_jsonable(SeedsSummary, data, "")
        except SchemaError as exc:
            raise ConvlensError(f"{where}: not a valid convlens seeds summary: {exc}") from None

    @staticmethod
    def read(path: str | Path) -> SeedsSummary:
        p = Path(path)
        return SeedsSummary.from_json(read_text(p), repr(str(p)))
