"""Analyse a user's model file into a typed :class:`AnalysisResult` (``analyze_model_file``):
the model adapter, the data fitted to the model (or streamed from a folder), and the stages that
need the model to run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model.loading import conv_weights, load_weights
from convlens.analysis.model.weights_only import ModelAdapter, WeightsOnly
from convlens.analysis.orchestration.model_data import Prepared, prepare_data
from convlens.analysis.orchestration.options import AnalyzeOptions
from convlens.analysis.orchestration.stages import (
    Timer,
    attach_checks,
    attach_distribution,
    by_name,
    finish,
    match_layers,
    new_result,
    nonfinite_layers,
    record_failed,
    skip_for_nonfinite,
)
from convlens.analysis.result import (
    AnalysisError,
    AnalysisResult,
    EpochActivation,
    FeatureMapInfo,
    LayerFeatureMaps,
    ReceptiveFields,
    Settings,
    Source,
)
from convlens.errors import ConvlensError, is_user_error

if TYPE_CHECKING:  # the modules that run a model import torch: loaded by the stages that run one,
    # so a weights-only analysis (safetensors, .onnx without data) never imports torch
    from convlens.analysis.model import forward

# ----------------------------------------------------------------------------- model files
PROBES_PER_SET = 4
"""Probe items per set (ID test split and each OOD set) whose feature maps a model file gets."""
FEATURE_MAP_CHANNEL_LIMIT = 64
"""Channel correlation matrices are kept for layers with at most this many channels (JSON size: a
PP-OCR run wrote 15 MB, 89% of it matrices, at 256); larger layers keep the mean |r| only."""


class DataStageError(ConvlensError):
    """The data part of a model-file analysis failed: ``result`` holds everything else (the weight
    analysis) with an ``errors`` entry of the stage that failed (``stage``: ``"data"`` when the
    data could not be prepared for the model, ``"activations"`` when running the model on them
    failed), for the caller to write."""

    def __init__(
        self, message: str, result: AnalysisResult, hint_key: Any = None, stage: str = "activations"
    ) -> None:
        super().__init__(message, hint_key=hint_key)
        self.result = result
        self.stage = stage


def open_model(
    path: str | Path,
    convs: dict[str, NDArray[Any]],
    *,
    factory: str | None = None,
    run: bool = False,
    output: str | None = None,
    inputs: tuple[tuple[str, str], ...] = (),
) -> ModelAdapter:
    """The adapter for a model file: ONNX run with onnxruntime (``run``), a torch module from
    ``factory``, or the weights alone (an ONNX graph read without running it, or ``convs``)."""
    onnx = Path(path).suffix.lower() == ".onnx"
    if onnx and run:
        from convlens.analysis.model.adapters import OnnxModel

        return OnnxModel(path, output, inputs)
    if factory is not None:
        from convlens.analysis.model.adapters import TorchModel
        from convlens.analysis.model.loading import build_from_factory

        return TorchModel(build_from_factory(factory, path), output=output)
    if onnx:
        return WeightsOnly.from_onnx(path)
    return WeightsOnly(convs)


def analyze_model_file(
    path: str | Path, options: AnalyzeOptions | None = None, **kw: Any
) -> AnalysisResult:
    """Kernel analysis of every conv weight in a file through its adapter (:func:`open_model`);
    with a factory also verification, and with data (fitted to the model by the fit options) the
    ID-vs-OOD activations, receptive fields and probe feature maps (``.onnx`` files run with
    onnxruntime). ``options`` (:class:`AnalyzeOptions`), or its fields as keyword arguments
    (``analyze_model_file(path, data="digits", n_null=200)``).

    When the data part fails with bad input or environment (preparing the data, or running the
    model on them: a model that raises, data that do not fit), :class:`DataStageError` carries the
    weight analysis; a bug of convlens propagates as it is."""
    opts = AnalyzeOptions.of(options, kw)
    opts.check_for(path)
    factory, data, ood, seed = opts.factory, opts.data, opts.ood, opts.seed
    timer = Timer()
    with timer("load"):
        convs = conv_weights(load_weights(path))
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    failure: Exception | None = None
    stage = "activations"  # where the data part failed: "data" (preparing them) or running on them
    try:
        adapter = open_model(
            path,
            convs,
            factory=factory,
            run=data is not None,
            output=opts.fit.output,
            inputs=opts.fit.inputs,
        )
    except ConvlensError as exc:  # an ONNX graph onnxruntime cannot run: its weights still can be
        if data is None or factory is not None or Path(path).suffix.lower() != ".onnx":
            raise
        adapter, failure = WeightsOnly.from_onnx(path), exc
    prepared = None
    if data is not None and failure is None:
        with timer("data"):
            try:
                prepared = prepare_data(adapter, data, ood, opts.fit, seed)
            except Exception as exc:
                if not _recoverable(exc):
                    raise
                failure, stage = exc, "data"
            else:
                try:
                    adapter.trace(prepared.x_id)
                except Exception as exc:
                    if not _recoverable(exc):
                        raise
                    failure = exc
    result, bad = matched_result(
        Source("model_file", str(path), factory, data), adapter, opts, timer
    )
    if adapter.kind == "torch":
        with timer("verify"):
            _verify_stage(result, adapter, None, bad)
    if prepared is not None and failure is None:
        if bad:  # the model cannot be run meaningfully: nothing from running it is used
            for skipped in (
                ("verify", "distribution") if adapter.kind == "onnx" else ("distribution",)
            ):
                skip_for_nonfinite(result, skipped, bad)
        else:
            from convlens.analysis.model import forward

            try:
                with forward.output_kind(opts.fit.output_kind):
                    _data_stages(result, adapter, prepared, timer, bad, opts.n_untrained)
            except Exception as exc:
                if not _recoverable(exc):
                    raise
                failure = exc
    if (
        opts.channels
        and prepared is not None
        and failure is None
        and not bad
        and prepared.id_stream is None
    ):
        with timer("channels"):
            _channels_stage(result, adapter, prepared, seed)
    kind = result.distribution.output_kind if result.distribution is not None else None
    if kind not in (None, "logits"):
        how = "stated (--output-kind)" if opts.fit.output_kind != "auto" else "detected"
        result.notes.append(
            f"the model's outputs were read as {kind} ({how}): max-softmax is the largest "
            "probability itself, not a softmax of it; the energy score needs logits and is left out"
        )
    result.notes[:0] = adapter.notes + (prepared.notes if prepared is not None else [])
    finish(result, timer)
    if failure is not None:
        message = (
            str(failure)
            if isinstance(failure, ConvlensError)
            else (f"{type(failure).__name__}: {' '.join(str(failure).split())[:300]}")
        )
        result.errors.append(AnalysisError(stage=stage, message=message))
        raise DataStageError(message, result, getattr(failure, "hint_key", None), stage)
    return result


def matched_result(
    source: Source, adapter: ModelAdapter, opts: AnalyzeOptions, timer: Timer
) -> tuple[AnalysisResult, list[str]]:
    """A new result for ``adapter``'s layers with every layer matched against the bank, and the
    layers whose weights are not finite (what a model file and an in-memory model share)."""
    result = new_result(source, Settings(opts.n_null, opts.seed), adapter.layers())
    weights = adapter.weights()
    bad = nonfinite_layers(result, weights)
    with timer("matching"):
        match_layers(
            result, weights, detail_limit=opts.detail_limit, detail_total=opts.detail_total
        )
    return result, bad


def _recoverable(exc: Exception) -> bool:
    """Whether a failure of the data part leaves the weight analysis standing: bad input or
    environment (:func:`convlens.errors.is_user_error`; third-party code, e.g. the user's model,
    onnxruntime or an image decoder, fails as a :class:`ConvlensError` where convlens calls it).
    A bug of convlens is not: it propagates (exit 1, the traceback with ``--debug``), and so does a
    failed rank under torchrun (every rank has agreed to end the job; :mod:`convlens.parallel.dist`)."""
    from convlens.parallel.dist import RankCrashed, RankFailed

    return is_user_error(exc) and not isinstance(exc, RankFailed | RankCrashed)


def _verify_stage(
    result: AnalysisResult, adapter: ModelAdapter, x: NDArray[Any] | None, bad: list[str]
) -> None:
    for name in bad:
        result.errors.append(
            AnalysisError(
                stage="verify", message=f"layer {name}: weights hold NaN or Inf; not verified"
            )
        )
    checks, skipped = adapter.verify(x, result.settings.seed, set(bad))
    record_failed(result, checks)
    attach_checks(result, checks)
    result.notes.extend(f"verification skipped for {s}" for s in skipped)


def _data_stages(
    result: AnalysisResult,
    adapter: ModelAdapter,
    prep: Prepared,
    timer: Timer,
    bad: list[str],
    n_untrained: int,
) -> None:
    """Verification (ONNX), activations, receptive fields and probe feature maps on the data."""
    from convlens.analysis.measure import receptive

    if adapter.kind == "onnx":
        with timer("verify"):
            _verify_stage(result, adapter, prep.x_id, bad)
    with timer("distribution"):
        _distribution_model_file(result, adapter, prep, n_untrained)
    idle = [r.name for r in result.layers if r.identity.order == "definition"]
    if adapter.kind == "torch" and idle:
        result.notes.append(
            f"{len(idle)} conv layer(s) not executed by the model's forward on the data: "
            f"{', '.join(idle)} (matched from their weights; no activations)"
        )
    with timer("receptive_fields"):
        x = prep.x_id
        spatial = tuple(x.shape[1:-1] if prep.layout == "NHWC" else x.shape[2:])
        fields, rule = receptive.traced_chain(
            [r.identity for r in result.layers], adapter.shapes, spatial, adapter.pools
        )
        if fields:
            result.receptive_fields = ReceptiveFields(theoretical=fields, effective=[])
            result.notes.append(rule + "; effective (gradient) fields only for training runs")
    with timer("feature_maps"):
        _probe_maps_stage(result, adapter, prep)


def _distribution_model_file(
    result: AnalysisResult, adapter: ModelAdapter, prep: Prepared, n_untrained: int
) -> None:
    """ID vs OOD (and vs the data's other classes) for a model file, with ``n_untrained`` untrained
    initialisations when a factory builds the module
    (:func:`convlens.analysis.measure.untrained.fresh_from_factory`)."""
    from convlens.analysis.model.adapters import TorchModel

    id_x = prep.id_stream if prep.id_stream is not None else prep.x_id
    named = [(prep.id_name, id_x)] + [(n, x) for n, x, _ in prep.sets + prep.others]
    trained = [adapter.activations(x, n) for n, x in named]
    inits: list[list[forward.SetActivations]] = []
    seeds: list[int] = []
    factory = result.source.factory
    if isinstance(adapter, TorchModel) and factory is not None and adapter.call is None:
        from convlens.analysis.measure.untrained import fresh_from_factory, fresh_seeds

        state = {k: v.detach().cpu().numpy() for k, v in adapter.module.state_dict().items()}
        fresh, note = fresh_from_factory(factory, state, result.settings.seed, n_untrained)
        if note:
            result.notes.append(note)
        for u in fresh:
            twin = TorchModel(u.model, output=adapter.output)
            inits.append([twin.activations(x, n) for n, x in named])
        seeds = fresh_seeds(result.settings.seed, n_untrained) if fresh else []
    _attach_model_file(result, prep, trained, inits, seeds)


def _attach_model_file(
    result: AnalysisResult,
    prep: Prepared,
    trained: list[forward.SetActivations],
    inits: list[list[forward.SetActivations]],
    seeds: list[int],
) -> None:
    """ID vs OOD for a model file (``trained``: ID set, OOD sets, other classes, in that order)
    with the untrained initialisations there are (``inits``, made under ``seeds``, from the
    factory; a model file's own initial weights are unknown), and what the trained network and
    the first initialisation predict."""
    from convlens.analysis.measure import activations
    from convlens.analysis.measure.untrained import fresh_name, initialisations_text

    n_ood = len(prep.sets)
    u_text = initialisations_text(seeds, "analysis seed") if seeds else None
    attach_distribution(
        result,
        trained[0],
        trained[1 : 1 + n_ood],
        {prep.id_name: prep.id_description, **{n: d for n, _, d in prep.sets + prep.others}},
        sources=prep.sources,
        others=trained[1 + n_ood :],
        untrained=[{s.name: s for s in v} for v in inits],
        untrained_seeds=seeds,
        untrained_description=u_text,
    )
    if len(trained[0].msp.values):  # the model's output is used as (batch, classes) logits
        first = {fresh_name(seeds[0]): inits[0]} if inits else {}
        result.predictions = activations.predictions(
            {"trained": trained, **first},
            prep.classes,
            sources=prep.sources,
            seed=result.settings.seed,
        )
    if not inits:
        result.notes.append(
            "no untrained control for this model file (its initial weights are unknown and no "
            "factory builds a fresh one): the OOD figures are not compared with an untrained network"
        )


def _probe_maps_stage(result: AnalysisResult, adapter: ModelAdapter, prep: Prepared) -> None:
    """Feature maps of the first :data:`PROBES_PER_SET` items of each set: mean relu activation
    per channel and set, and the channel correlation over all probes (one entry, epoch -1: the
    model as given, no training history)."""
    from convlens.analysis.measure import featuremaps

    batch = getattr(getattr(adapter, "runner", None), "batch", None) or 1
    layers = by_name(result)
    probe_sets: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    means: dict[str, dict[str, list[float]]] = {}
    sums: dict[str, featuremaps.CorrelationSum] = {}
    # one set's maps at a time (a 224 px model's maps of every probe of every set took 1 GB)
    for name, x in [(prep.id_name, prep.x_id)] + [(n, x) for n, x, _ in prep.sets]:
        n = min(len(x), -(-PROBES_PER_SET // batch) * batch) // batch * batch
        if not n:
            continue
        maps = adapter.feature_maps(x[:n])
        probe_sets += [name] * n if maps else []
        for lname, m in maps.items():
            if lname not in layers or shapes.setdefault(lname, m.shape[1:]) != m.shape[1:]:
                shapes[lname] = ()  # shapes differ between sets: no figures for the layer
                continue
            axes = (0, *range(2, m.ndim))
            means.setdefault(lname, {})[name] = (
                np.maximum(m.astype(np.float64), 0).mean(axis=axes).tolist()
            )
            sums.setdefault(lname, featuremaps.CorrelationSum()).add(m)
        del maps
    if not probe_sets:
        return
    large = []
    for lname, acc in sums.items():
        if not shapes[lname]:
            continue
        full = acc.correlation()
        corr: list[list[float]] = []
        if shapes[lname][0] <= FEATURE_MAP_CHANNEL_LIMIT:
            corr = full.tolist()
        else:
            large.append(lname)
        layers[lname].feature_maps = LayerFeatureMaps(
            shape=list(shapes[lname]),
            per_epoch=[EpochActivation(-1, means[lname])],
            channel_correlation_final=corr,
            channel_correlation_init=[],
            mean_abs_channel_correlation=featuremaps.mean_abs_offdiagonal(full),
        )
    result.feature_maps = FeatureMapInfo([], probe_sets)
    note = (
        f"feature maps of {PROBES_PER_SET} probe(s) per set: mean relu activation per channel and "
        "channel correlation of the model as given (epoch -1: no training history, no init)"
    )
    if large:
        note += (
            f"; for {len(large)} layer(s) over {FEATURE_MAP_CHANNEL_LIMIT} channels only the "
            "mean |r| between channels is stored, not the matrix (JSON size)"
        )
    result.notes.append(note)


#: the most conv-kernel bytes (float32) kept beside a model file's analysis for its report
KERNELS_BYTES = 64 * 2**20


def write_model_kernels(result: AnalysisResult, model: Path, analysis: Path) -> Path | None:
    """For a model file that is not safetensors, its conv kernels (float32, keyed by each layer's
    weight key, in file order until :data:`KERNELS_BYTES`) beside the analysis
    (:func:`~convlens.runs.layout.model_kernels_path`), so that the report, which never imports
    torch, draws every layer's kernels. ``None`` when nothing is written (a safetensors file is
    read directly)."""
    from safetensors.numpy import save_file

    from convlens._atomic import write_with
    from convlens.runs.layout import model_kernels_path

    if model.suffix.lower() == ".safetensors":
        return None
    try:
        convs = conv_weights(load_weights(model))
    except ConvlensError:  # weights only reachable through the factory: nothing to keep
        return None
    keep: dict[str, Any] = {}
    total = 0
    for layer in result.layers:
        key = layer.identity.weight_key
        w = convs.get(key, convs.get(layer.name))
        if w is None or key in keep:
            continue
        arr = np.ascontiguousarray(w, dtype=np.float32)
        if total + arr.nbytes > KERNELS_BYTES:
            break
        keep[key], total = arr, total + arr.nbytes
    if not keep:
        return None
    return write_with(model_kernels_path(analysis), lambda tmp: save_file(keep, str(tmp)))


def _channels_stage(
    result: AnalysisResult, adapter: ModelAdapter, prep: Prepared, seed: int
) -> None:
    """Exemplars (and, for a torch model, maximising inputs) of the model's channels on the fitted
    ID and OOD sets (a streamed folder is not re-read: its channels are left out). A model that
    cannot be run that way (a torch model run through a pipeline callable) is left out."""
    from convlens.analysis.model.adapters import OnnxModel, TorchModel
    from convlens.analysis.orchestration.channels import channels_stage
    from convlens.analysis.result.channels import attach_arrays

    if not (
        isinstance(adapter, OnnxModel) or (isinstance(adapter, TorchModel) and adapter.call is None)
    ):
        return

    sets = [(prep.id_name, prep.x_id)] + [(name, x) for name, x, _ in prep.sets]
    rfs = result.receptive_fields.theoretical if result.receptive_fields is not None else None
    try:
        if isinstance(adapter, OnnxModel):
            arrays = channels_stage(
                result, None, sets, rfs, seed=seed, runner=adapter.runner, layout=prep.layout
            )
        else:
            assert isinstance(adapter, TorchModel)
            arrays = channels_stage(result, adapter.module, sets, rfs, seed=seed)
        attach_arrays(result, arrays)
    except ConvlensError as exc:
        if not _recoverable(exc):  # a failed rank under torchrun: every rank ends the job
            raise
        result.notes.append(f"channels not measured: {exc}")
