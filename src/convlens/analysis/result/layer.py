"""Per-layer result types: identity, kernel matching, verification, activations, feature maps,
evolution, receptive fields and :class:`LayerResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from convlens.ops.geometry import ReceptiveField

CI = tuple[float | None, float | None]
"""A confidence interval ``(low, high)``; ``None`` where undefined."""


@dataclass(frozen=True)
class GaborFit:
    """The best-fit Gabor of one kernel (:mod:`convlens.analysis.measure.gaborfit`)."""

    angle: float  # degrees
    frequency: float  # cycles / pixel
    phase: float  # degrees
    sigma: float
    r2: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "angle": self.angle,
            "frequency": self.frequency,
            "phase": self.phase,
            "sigma": self.sigma,
            "r2": self.r2,
        }


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
    responses: dict[str, int] = field(default_factory=dict)
    """How many kernels are low-pass, band-pass, high-pass, all-pass or multi-band (``response_rule``)."""
    response_rule: str | None = None
    median_lowpass_cutoff: float | None = None
    """The median -3 dB cutoff of the low-pass kernels (cycles/sample)."""
    median_highpass_cutoff: float | None = None
    response_kinds: list[str] = field(default_factory=list)
    """Per kernel (kept with the per-kernel records): its kind, ``"zero"`` for an all-zero kernel."""
    bands_3db: list[list[float]] = field(default_factory=list)
    """Per kernel (kept with the per-kernel records): its -3 dB band ``[low, high]`` around the
    peak, cycles/sample (0 and 0.5 at the ends of the spectrum)."""


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
    spectra: list[list[float | None]] = field(default_factory=list)
    """Per unit, what its kernel contains: the Hellinger embedding of its normalised power spectrum
    (:func:`convlens.analysis.evidence.kernelsets.descriptors`; ``None`` entries for an all-zero unit)."""
    orientation: list[float | None] = field(default_factory=list)
    """Per unit, the preferred orientation of its gradient in degrees [0, 180)."""
    selectivity: list[float | None] = field(default_factory=list)
    """Per unit, its orientation selectivity in [0, 1] (0: isotropic)."""
    gabor_r2: list[float | None] = field(default_factory=list)
    """Per unit, the R^2 of the best-fitting Gabor of its best slice
    (:func:`convlens.analysis.measure.gaborfit.fit_gabor`; empty where the fit does not apply:
    kernels of even size or smaller than 5)."""


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

    ``control`` names it (``"epoch 000"``: the run's own initial weights; ``"random labels"``: the
    same recipe trained on permuted labels, :attr:`OodComparison.random_labels`). Differences are
    *trained - control* on the same images with the same resamples (paired); ``auroc_diff_p`` is the
    one-sided bootstrap p-value of "difference > 0", floored at its resolution ``1 / (n_boot + 1)``;
    ``untrained_p`` is this network's own AUROC placed among the untrained initialisations
    (:attr:`UntrainedDistribution.p_value`'s rule; ``None`` without them)."""

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
    untrained_p: float | None = None


@dataclass
class UntrainedDistribution:
    """The AUROC (ID vs one set, one layer) of ``n`` untrained initialisations of the same
    architecture on the same images (seeds in :attr:`DistributionInfo.untrained_seeds`), and where
    the trained AUROC lies among them.

    ``interval``: the 2.5th and 97.5th percentiles of ``aurocs`` (``numpy.percentile``, linear);
    ``n_at_or_above``: ``k``, the initialisations whose AUROC is at or above the trained one (a
    non-finite AUROC counts as at or above); ``p_value``: the empirical p ``(1 + k) / (1 + n)`` of
    "the trained AUROC is above the untrained ones" (its smallest value is ``1 / (1 + n)``)."""

    n: int
    aurocs: list[float | None]
    median: float | None
    interval: CI
    n_at_or_above: int
    p_value: float | None


@dataclass
class OodComparison:
    """One OOD set vs the ID set at one layer: activation strength, CIs, AUROC and verdict.

    Intervals resample *source images* (a cluster bootstrap; ``resampling`` says how, and labels a
    set made from one photo). ``controls`` holds the paired untrained control (the run's epoch-000
    network), ``untrained`` the distribution over untrained initialisations, ``random_labels`` the
    random-label network of the same recipe (paired), and ``learned_verdict`` the verdict on the
    three arms (:func:`convlens.analysis.evidence.verdicts.ood_learned_verdict`)."""

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
    untrained: UntrainedDistribution | None = None
    random_labels: ControlComparison | None = None


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
    """What the activation comparison ran on, its output baselines and its verdict rule.

    ``controls``: the paired untrained controls by name (the run's epoch-000 network) and what they
    are; ``untrained``: what the untrained initialisations are, ``untrained_seeds`` their
    ``torch.manual_seed`` values (``n = len(untrained_seeds)``); ``random_labels``: the random-label
    network compared with (``None``: no random-label arm)."""

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
    untrained: str | None = None
    untrained_seeds: list[int] = field(default_factory=list)
    random_labels: str | None = None
    output_kind: str | None = None
    """How the model's outputs were read (``logits``, ``probabilities``, ``log-probabilities``;
    detected or stated, ``output_rule`` says how); ``None``: the outputs were not used."""
    output_rule: str | None = None


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
