"""The typed, versioned result of an analysis: what ``analysis.json`` and ``seeds.json`` hold.

These dataclasses are the contract between the analyses, the report, the CLI and any other
program: :meth:`AnalysisResult.to_json` / :meth:`AnalysisResult.from_json` write and read them
(every field checked against its type), and ``schema.json`` beside this module is generated from
them (:func:`analysis_schema`; a test keeps it in sync) for consumers in other languages.

A conv layer is identified by :class:`LayerIdentity` (qualified name, execution index, geometry),
never by a conventional name: "the first layer" is ``layers[0]``, the first in execution order.

Undefined figures (an empty null, a CI of an empty set) are ``None``, written as JSON ``null``.
This module imports neither torch nor the analyses, so the report can read results without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from convlens._serde import SchemaError, from_jsonable, json_schema, to_jsonable
from convlens.analysis.measure.gaborfit import GaborFit
from convlens.errors import ConvlensError
from convlens.ops.geometry import ReceptiveField
from convlens.runs.records import DatasetSpec, ModelSpec, RunConfig, TrainOutcome

SCHEMA_VERSION = 4
"""Version of the ``analysis.json`` layout. 1 was wave 1's untyped ``"format": "convlens-analysis/1"``;
3 added per-unit figures, kernel controls, the three-way kernel verdict, CKA, and the untrained OOD
controls with cluster-bootstrap intervals and predictions (issue 14); 4 types ``run`` from the run
directory's records (``RunConfig``, ``DatasetSpec``, ``ModelSpec``) instead of free-form objects."""

SEEDS_SCHEMA_VERSION = 2

CI = tuple[float | None, float | None]


# ----------------------------------------------------------------------------- layer identity
@dataclass
class LayerIdentity:
    """Who a conv layer is: qualified name, position in execution order, and geometry.

    ``order`` says how ``index`` was found: ``"execution"`` (hooks fired while the model ran),
    ``"definition"`` (module registration order, model not run) or ``"file"`` (order of the weights
    in a file, no architecture known). Geometry fields are ``None`` when the source does not say
    (a bare weights file knows the kernel shape but not the stride)."""

    name: str
    index: int
    order: Literal["execution", "definition", "file"]
    dims: int
    weight_shape: list[int]
    in_channels: int
    out_channels: int
    kernel_size: list[int]
    stride: list[int] | None = None
    padding: list[int] | str | None = None
    dilation: list[int] | None = None
    groups: int | None = None
    padding_mode: str | None = None
    module_type: str | None = None

    @property
    def weight_key(self) -> str:
        """The state-dict key of this layer's weight (``<name>.weight`` for torch modules)."""
        return self.name if self.name.endswith(".weight") else f"{self.name}.weight"

    @property
    def geometry_text(self) -> str:
        k = "x".join(map(str, self.kernel_size))
        return f"{self.dims}-D, {self.out_channels} kernels of {self.in_channels} x {k}"


# ----------------------------------------------------------------------------- kernel matching
@dataclass
class NullSummary:
    """A null distribution of the match score: where it came from, its size, median and 95th pct."""

    source: str
    n: int
    median: float | None
    p95: float | None


@dataclass
class KernelMatch:
    """One ``k x k`` kernel (one input channel of one output channel) against the classical bank."""

    out_channel: int
    in_channel: int
    best_match: str
    family: str
    score: float
    sign: int
    percentile: float
    p_value: float
    above_null95: bool
    category: str
    gabor_fit: GaborFit | None


@dataclass
class ChannelSummedMatch:
    """An output unit's kernel summed over its input channels, against the bank."""

    out_channel: int
    best_match: str
    family: str
    score: float
    sign: int
    above_null95: bool
    colour_opponency: float | None


@dataclass
class SpectralSummary:
    """Frequency content of a 1-D layer's kernels: ``|rfft|`` of each kernel zero-padded to ``n_fft``.

    Per kernel (kernel order ``out * C + in``; kept with the per-kernel records): the peak frequency
    in cycles/sample and the -3 dB bandwidth (width of the contiguous band around the peak where
    ``|X| >= peak / sqrt(2)``). A kernel is *concentrated* when more than half its spectral energy lies
    within ``band_halfwidth`` (one natural DFT bin, ``1/K``) of its peak."""

    n_fft: int
    band_halfwidth: float
    peak_min: float | None = None
    peak_median: float | None = None
    peak_max: float | None = None
    median_bandwidth_3db: float | None = None
    fraction_concentrated: float | None = None
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)
    peak_frequencies_sorted: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    bandwidths_3db: list[float] = field(default_factory=list)
    n_zero_kernels: int = 0
    """All-zero kernels (no spectrum): left out of the summary figures and the histogram; their
    per-kernel peak and bandwidth read 0."""


@dataclass
class VolumeSummary:
    """What is measured on 3-D kernels ``(kd, kh, kw)`` (no classical 3-D bank): L2 norms, the DC
    energy fraction ``(mean sqrt(n))^2 / |w|^2``, and separability, the fraction of energy in the best
    rank-1 approximation of the ``kd x (kh*kw)`` reshaped kernel (``s_1^2 / sum s_i^2``; 1 for a
    temporal profile times one spatial kernel). Per-kernel lists are kept with the records."""

    kernel_shape: list[int]
    median_norm: float | None = None
    max_norm: float | None = None
    median_dc_fraction: float | None = None
    fraction_dc_dominated: float | None = None
    median_separability: float | None = None
    fraction_separable: float | None = None
    separable_threshold: float = 0.9
    norms: list[float] = field(default_factory=list)
    dc_fractions: list[float] = field(default_factory=list)
    separability: list[float] = field(default_factory=list)


@dataclass
class UnitSummary:
    """One 2-D layer counted per output unit (all input-channel slices of one output channel), as
    the verdicts use it (:mod:`convlens.analysis.measure.units`): the unit score and its rule, dead units
    (excluded and counted), units above the random / spectrum-matched null with Wilson 95%
    intervals, and unit categories (colour rule only where the layer reads the image's colours)."""

    unit_score: str
    n_units: int
    n_live: int
    n_dead: int
    dead_rule: str
    dead_units: list[int]
    slices_per_unit: int
    above_null95: int
    fraction_above_null95: float | None
    ci_above_null95: CI
    n_null: int
    min_unit_p: float
    resolution_note: str | None = None
    above_spectrum_null95: int | None = None
    fraction_above_spectrum_null95: float | None = None
    ci_above_spectrum_null95: CI = (None, None)
    colour_rule: str | None = None
    categories: dict[str, int] = field(default_factory=dict)
    best_scores: list[float] = field(default_factory=list)
    p_values: list[float] = field(default_factory=list)
    unit_categories: list[str] = field(default_factory=list)


@dataclass
class LayerMatch:
    """Matching of one conv layer's kernels against the classical bank, with its nulls."""

    layer: str
    weight_shape: list[int]
    kernel_size: int | None
    skipped: str | None = None
    n_kernels: int = 0
    null: NullSummary | None = None
    init_null: NullSummary | None = None
    spectrum_null: NullSummary | None = None
    fraction_above_null95: float | None = None
    fraction_above_spectrum_null95: float | None = None
    init_fraction_above_null95: float | None = None
    median_score: float | None = None
    categories: dict[str, int] = field(default_factory=dict)
    best_families: dict[str, int] = field(default_factory=dict)
    kernels: list[KernelMatch] = field(default_factory=list)
    channel_summed: list[ChannelSummedMatch] = field(default_factory=list)
    geometry: str | None = None
    spectral: SpectralSummary | None = None
    volume: VolumeSummary | None = None
    units: UnitSummary | None = None
    notes: list[str] = field(default_factory=list)
    """Caveats on this layer's figures (no test power, quantised weights, all-zero kernels)."""
    n_zero_kernels: int = 0
    """Kernels that are exactly zero: counted here and left out of the fractions and summaries."""


# ----------------------------------------------------------------------------- verification
@dataclass
class LayerCheck:
    """One conv layer's real conv call(s) vs ``ops.correlate`` (and vs true convolution).

    Differences are maxima over the layer's calls; ``max_rel_diff_*`` divide by ``max |output|``.
    ``is_cross_correlation`` means ``max_rel_diff_correlate <= tolerance`` for ``backend`` (torch
    float64: 1e-9; onnxruntime float32: 1e-4). ``flip_invariant``: every kernel equals its flip (1x1 or
    point-symmetric), so the layer cannot tell correlation from convolution. ``status`` is
    ``"not executed"`` when the module's forward made no conv call and ``"failed"`` when it raised
    (``message`` says why); the diffs are then ``None``."""

    layer: str
    kind: str
    weight_shape: list[int]
    input_shape: list[int]
    max_abs_diff_correlate: float | None
    max_abs_diff_convolve: float | None
    output_scale: float
    is_cross_correlation: bool
    max_rel_diff_correlate: float | None = None
    max_rel_diff_convolve: float | None = None
    flip_invariant: bool | None = None
    backend: str | None = None
    tolerance: float | None = None
    calls: int = 1
    status: Literal["checked", "not executed", "failed"] = "checked"
    message: str | None = None


# ----------------------------------------------------------------------------- activations
@dataclass
class ChannelStats:
    """Per-channel streaming statistics (Welford, float64) of the mean activation per image."""

    n: int
    mean: list[float | None]
    std: list[float | None]
    min: list[float | None]
    max: list[float | None]


@dataclass
class ControlComparison:
    """The same comparison on an untrained network (a control), and trained minus control.

    ``control`` names it (``"epoch 000"``: the run's own initial weights; ``"fresh init (seed N)"``).
    Differences are *trained - control* on the same images with the same resamples (paired);
    ``auroc_diff_p`` is the one-sided bootstrap p-value of "difference > 0", floored at its
    resolution ``1 / (n_boot + 1)``."""

    control: str
    auroc: float | None
    auroc_ci: CI
    auroc_diff: float | None
    auroc_diff_ci: CI
    auroc_diff_p: float | None
    mean: float | None
    mean_ci: CI
    mean_diff: float | None
    mean_diff_ci: CI


@dataclass
class OodComparison:
    """One OOD set vs the ID set at one layer: activation strength, CIs, AUROC and verdict.

    Intervals resample *source images* (a cluster bootstrap; ``resampling`` says how, and labels a
    set made from one photo). ``controls`` holds the untrained networks' figures and
    ``learned_verdict`` says whether the separation was learned or present before training."""

    n: int
    mean: float | None
    mean_ci: CI
    max: float | None
    max_ci: CI
    ratio: float | None
    ratio_ci: CI
    diff_ci: CI
    auroc: float | None
    verdict: str
    channel_stats: ChannelStats
    auroc_ci: CI = (None, None)
    n_sources: int | None = None
    resampling: str | None = None
    controls: list[ControlComparison] = field(default_factory=list)
    learned_verdict: str | None = None


@dataclass
class ControlLevel:
    """The ID activation strength of one layer in an untrained network, and trained minus it."""

    control: str
    id_mean: float | None
    id_mean_ci: CI
    id_mean_diff: float | None
    id_mean_diff_ci: CI


@dataclass
class LayerDistribution:
    """ID activation strength of one layer and its comparison with every OOD set."""

    id_mean: float | None
    id_mean_ci: CI
    id_max: float | None
    id_max_ci: CI
    id_channel_stats: ChannelStats
    ood: dict[str, OodComparison]
    other: dict[str, OodComparison] = field(default_factory=dict)
    controls: list[ControlLevel] = field(default_factory=list)


@dataclass
class OutputBaseline:
    """Output-level OOD baselines on the same data: max-softmax probability and energy AUROCs."""

    max_softmax_auroc: float | None
    energy_auroc: float | None


@dataclass
class DataSet:
    """A named set of inputs: its size and how it was made."""

    name: str
    n: int
    description: str = ""
    n_sources: int | None = None


@dataclass
class DistributionInfo:
    """What the activation comparison ran on, its output baselines and its verdict rule."""

    id: DataSet
    ood: list[DataSet]
    baselines: dict[str, OutputBaseline]
    rule: str
    other: list[DataSet] = field(default_factory=list)
    controls: dict[str, str] = field(default_factory=dict)
    learned_rule: str | None = None
    n_boot: int | None = None
    resampling: str | None = None
    control_baselines: dict[str, dict[str, OutputBaseline]] = field(default_factory=dict)


@dataclass
class SetPrediction:
    """What one network predicts on one set: class fractions (Clopper-Pearson intervals over images,
    which treats images as independent: see the set's ``n_sources``) and the mean max-softmax
    (bootstrap over source images)."""

    set: str
    model: str
    n: int
    top_class: str | None
    class_fractions: dict[str, float]
    class_fraction_ci: dict[str, CI]
    mean_max_softmax: float | None
    mean_max_softmax_ci: CI
    n_sources: int | None = None


@dataclass
class Predictions:
    """The network's answer on every set ("what does a face net do with a bicycle?"), trained and
    untrained; ``focus_class`` is the class the question is about (``face`` for the faces data)."""

    classes: list[str]
    focus_class: str | None
    rule: str
    sets: list[SetPrediction]


# ----------------------------------------------------------------------------- feature maps
@dataclass
class EpochActivation:
    """Mean of relu(feature map) per channel, per probe set, at one epoch."""

    epoch: int
    mean_activation: dict[str, list[float]]


@dataclass
class LayerFeatureMaps:
    """One layer's probe feature maps over training and its channel correlation matrices."""

    shape: list[int]
    per_epoch: list[EpochActivation]
    channel_correlation_final: list[list[float]]
    channel_correlation_init: list[list[float]]
    mean_abs_channel_correlation: float | None = None
    """Mean |Pearson r| over distinct channel pairs (final maps): the summary kept when the layer
    has too many channels for its matrix to be stored (model files: over 64 channels)."""


@dataclass
class FeatureMapInfo:
    """Which snapshot epochs and probe images the feature-map figures come from."""

    epochs: list[int]
    probe_sets: list[str]


# ----------------------------------------------------------------------------- evolution
@dataclass
class EvolutionEpoch:
    """One snapshot epoch: every layer's distance from init and step; the first layer's scores."""

    epoch: int
    distance_from_init: dict[str, float]
    step: dict[str, float]
    first_layer_fraction_above_null95: float | None = None
    first_layer_median_score: float | None = None
    first_layer_scores: list[float] | None = None


@dataclass
class Evolution:
    """Kernels over training, from the per-epoch snapshots (empty with a reason when none)."""

    first_layer: str | None
    null_p95: float | None
    epochs: list[EvolutionEpoch]
    skipped: str | None = None


# ----------------------------------------------------------------------------- receptive fields
@dataclass
class EffectiveField:
    """Mean |d unit / d input| of one unit per layer over probe images; support and 95%-mass side."""

    layer: str
    kind: str
    support_fraction: float
    mass95_side: int
    input_shape: list[int]
    gradient_map: list[list[float]]


@dataclass
class ReceptiveFields:
    """Theoretical (arithmetic over the traced geometry) and effective (gradient) receptive fields."""

    theoretical: list[ReceptiveField]
    effective: list[EffectiveField]


# ----------------------------------------------------------------------------- per layer
@dataclass
class LayerResult:
    """Everything measured about one conv layer, keyed by its identity."""

    identity: LayerIdentity
    n_kernels: int
    matching: LayerMatch | None = None
    check: LayerCheck | None = None
    distribution: LayerDistribution | None = None
    feature_maps: LayerFeatureMaps | None = None

    @property
    def name(self) -> str:
        return self.identity.name


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
    classical_kernels_spectrum_null: KernelVerdict | None = None
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
class Control:
    """A control analysis (untrained, random labels, input statistics) computed like the claims.

    ``kind``: ``"random_labels"``, ``"input_statistics"``, ``"init"``, ``"untrained"`` or
    ``"other"``; ``command``: how to reproduce it; ``source``: the control run it came from;
    ``layers``: per-layer figures; ``null``: what the figures are compared with; ``units``: the
    control's first-layer kernels counted per unit exactly like the claim's (kernel controls)."""

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
        _check_version(data, where, "schema_version", SCHEMA_VERSION, "an analysis")
        try:
            return from_jsonable(AnalysisResult, data, "")
        except SchemaError as exc:
            raise ConvlensError(f"{where}: not a valid convlens analysis: {exc}") from None

    @staticmethod
    def from_json(text: str, where: str = "analysis") -> AnalysisResult:
        return AnalysisResult.from_dict(_loads(text, where), where)

    @staticmethod
    def read(path: str | Path) -> AnalysisResult:
        p = Path(path)
        return AnalysisResult.from_json(_read_text(p), repr(str(p)))


# ----------------------------------------------------------------------------- seeds.json
@dataclass
class SeedRow:
    """One figure across training seeds: per-seed values, mean and a 95% t-interval."""

    name: str
    values: list[float]
    mean: float | None
    ci: CI


@dataclass
class SeedsSummary:
    """Headline figures across training seeds (``seeds.json``)."""

    schema_version: int
    n: int
    seeds: list[int]
    rows: list[SeedRow]
    classical_kernels_pooled: KernelVerdict
    classical_kernels_pooled_spectrum_null: KernelVerdict
    ood_holds_in_seeds: dict[str, dict[str, int]]
    interval: str
    kernel_learning_verdicts: dict[str, int] = field(default_factory=dict)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(to_jsonable(self), indent=indent, allow_nan=False)

    @staticmethod
    def from_json(text: str, where: str = "seeds summary") -> SeedsSummary:
        data = _loads(text, where)
        _check_version(data, where, "schema_version", SEEDS_SCHEMA_VERSION, "a seeds summary")
        try:
            return from_jsonable(SeedsSummary, data, "")
        except SchemaError as exc:
            raise ConvlensError(f"{where}: not a valid convlens seeds summary: {exc}") from None

    @staticmethod
    def read(path: str | Path) -> SeedsSummary:
        p = Path(path)
        return SeedsSummary.from_json(_read_text(p), repr(str(p)))


# ----------------------------------------------------------------------------- helpers
MAX_RESULT_BYTES = 1 << 29
"""Largest ``analysis.json`` / ``seeds.json`` read (512 MiB), checked from the file size before
reading; JSON nested too deeply to parse is refused too (a result is at most about 8 levels deep)."""


def _read_text(p: Path) -> str:
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ConvlensError(f"{str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConvlensError(f"cannot read {str(p)!r}: {exc}") from None
    if size > MAX_RESULT_BYTES:
        raise ConvlensError(
            f"{str(p)!r} is {size} bytes, over the limit of {MAX_RESULT_BYTES} for a convlens result "
            "(MAX_RESULT_BYTES in convlens.analysis.result)"
        )
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConvlensError(f"{str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvlensError(f"cannot read {str(p)!r}: {exc}") from None


def _loads(text: str, where: str) -> Any:
    def no_constant(name: str) -> Any:  # convlens writes undefined numbers as null, never NaN
        raise ConvlensError(f"{where} holds {name}, which is not JSON; undefined numbers are null")

    try:
        return json.loads(text, parse_constant=no_constant)
    except ConvlensError:
        raise
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConvlensError(f"{where} is nested too deeply to be a convlens result") from None
    except ValueError as exc:  # e.g. an integer longer than Python's int-from-text limit
        raise ConvlensError(f"{where} is not valid JSON: {exc}") from None


def _check_version(data: Any, where: str, key: str, expected: int, what: str) -> None:
    if not isinstance(data, dict):
        raise ConvlensError(f"{where} is not {what}: expected a JSON object")
    version = data.get(key)
    if version is None:
        old = data.get("format")
        if isinstance(old, str) and old.startswith("convlens-analysis/"):
            raise ConvlensError(
                f"{where} was written by an older convlens ({old}); this version reads "
                f"{key} {expected}: analyse the run again"
            )
        raise ConvlensError(f"{where} is not {what} (no {key}; expected {expected})")
    if version != expected:
        raise ConvlensError(
            f"{where} has {key} {version!r}; this version of convlens reads {expected}"
        )


def analysis_schema() -> dict[str, Any]:
    """The JSON Schema of ``analysis.json`` (what ``schema.json`` holds)."""
    schema = json_schema(
        AnalysisResult,
        title="convlens analysis result",
        schema_id=f"https://convlens.invalid/schema/analysis-{SCHEMA_VERSION}.json",
    )
    schema["$defs"]["AnalysisResult"]["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return schema


def seeds_schema() -> dict[str, Any]:
    schema = json_schema(SeedsSummary, title="convlens seeds summary")
    schema["$defs"]["SeedsSummary"]["properties"]["schema_version"] = {
        "const": SEEDS_SCHEMA_VERSION
    }
    return schema


SCHEMA_PATH = Path(__file__).with_name("schema.json")


def schema_text() -> str:
    """The exact text of ``schema.json``."""
    return json.dumps(analysis_schema(), indent=2) + "\n"


def write_schema() -> Path:
    """Regenerate ``schema.json`` after changing the types above (a test checks it is in sync):
    ``python -c "from convlens.analysis.result import write_schema; write_schema()"``."""
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    return SCHEMA_PATH
