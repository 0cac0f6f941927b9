"""Analyse a user's model file into a typed :class:`AnalysisResult` (``analyze_model_file``):
the model adapter, the data fitted to the model (or streamed from a folder), and the stages that
need the model to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.measure import (
    activations,
    featuremaps,
    receptive,
)
from convlens.analysis.model import forward
from convlens.analysis.model.adapters import ModelAdapter, OnnxModel, TorchModel, WeightsOnly
from convlens.analysis.model.loading import build_from_factory, conv_weights, load_weights
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
from convlens.data.fit import FitOptions
from convlens.errors import ConvlensError, is_user_error

# ----------------------------------------------------------------------------- model files
PROBES_PER_SET = 4
"""Probe items per set (ID test split and each OOD set) whose feature maps a model file gets."""
FEATURE_MAP_CHANNEL_LIMIT = 64
"""Channel correlation matrices are kept for layers with at most this many channels (JSON size: a
PP-OCR run wrote 15 MB, 89% of it matrices, at 256); larger layers keep the mean |r| only."""


OOD_PER_SET = 100
"""Items in each OOD set built for a model file ..."""
OOD_SET_BYTES = 64 * 2**20
"""... unless that many items of the data's shape (float32) pass this many bytes: then as many as
fit, at least :data:`OOD_MIN_PER_SET` (416 px RGB: 32 a set; eight sets of 100 took 1.7 GB)."""
OOD_MIN_PER_SET = 16


def ood_count(item_shape: tuple[int, ...]) -> int:
    """Items per OOD set for data items of ``item_shape`` (:data:`OOD_SET_BYTES`)."""
    fit = OOD_SET_BYTES // max(1, int(np.prod(item_shape)) * 4)
    return int(min(OOD_PER_SET, max(OOD_MIN_PER_SET, fit)))


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


@dataclass
class _Prepared:
    """The data of a model-file analysis, fitted to the model (see :mod:`convlens.data.fit`)."""

    id_name: str
    x_id: NDArray[np.float32]
    sets: list[tuple[str, NDArray[np.float32], str]]
    notes: list[str]
    layout: str
    id_description: str = ""
    others: list[tuple[str, NDArray[np.float32], str]] = field(default_factory=list)
    sources: dict[str, NDArray[np.int64]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    id_stream: Any = None
    """A streamed folder (``stream:DIR``): the ID set read lazily; ``x_id`` is then its sample."""


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
        return OnnxModel(path, output, inputs)
    if factory is not None:
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
                prepared = _prepare_data(adapter, data, ood, opts.fit, seed)
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
        and (
            isinstance(adapter, OnnxModel)
            or (isinstance(adapter, TorchModel) and adapter.call is None)
        )
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


def _prepare_stream(
    adapter: ModelAdapter, root: str, ood: tuple[str, ...] | None, options: FitOptions, seed: int
) -> _Prepared:
    """A streamed image folder (:mod:`convlens.parallel.stream`): the ID set is every image of the
    folder, decoded lazily (sharded across ranks under torchrun); the OOD sets are made from the
    seeded normalisation sample. Images are fed as read: grey repeated to the model's channels,
    resized to the model's fixed input size (else the first image's, capped), standardised by the
    folder's own mean/std."""
    from dataclasses import replace

    from convlens.data.ood import default_ood_names, make_oods
    from convlens.parallel.stream import open_folder

    if not isinstance(adapter, TorchModel):
        raise ConvlensError(
            f"data 'stream:{root}': streamed folders run with PyTorch models (a factory); give "
            "the folder itself (DIR) for an ONNX model"
        )
    if replace(options, output=None, output_kind="auto") != FitOptions():
        raise ConvlensError(
            f"data 'stream:{root}': a streamed folder is fed as read (grey repeated to the "
            "model's channels, standardised by the folder's own mean/std); --layout, "
            "--normalize, --scale and --input-size apply to data loaded whole"
        )
    expect = adapter.expectation()
    fixed = [v for v in (expect.spatial or ()) if v is not None]
    model_size = (
        (int(fixed[0]), int(fixed[1])) if len(fixed) == 2 == len(expect.spatial or ()) else None
    )
    ds = open_folder(root, seed, channels=expect.channels or 1, model_size=model_size)
    names = list(ood) if ood is not None else default_ood_names(ds)
    oods = make_oods(names, ds, 100, seed)
    return _Prepared(
        f"{ds.name} (all {len(ds.stream)} images, streamed)",
        ds.x,
        [(o.name, o.x, o.description) for o in oods],
        [f"data: {ds.source}; {ds.normalisation['rule']}"],
        "NCHW",
        f"ID: every image of the streamed folder {root!r}",
        [],
        {o.name: o.sources for o in oods},
        list(ds.classes),
        ds.stream,
    )


def _prepare_data(
    adapter: ModelAdapter, data: str, ood: tuple[str, ...] | None, options: FitOptions, seed: int
) -> _Prepared:
    """Load ``data`` and its OOD sets and fit them to the model: one plan for every set."""
    from convlens.data.fit import SIGNAL_OOD, SIGNAL_OOD_TEXT, plan_fit, signal_like

    if data.startswith("stream:"):
        return _prepare_stream(adapter, data[len("stream:") :], ood, options, seed)
    from convlens.data.loaders import load_dataset
    from convlens.data.ood import default_ood_names, id_split, make_ood

    ds = load_dataset(data, seed)
    expect = adapter.expectation()
    x_test, _ = ds.split("test")
    plan = plan_fit(
        x_test.shape[1:],
        expect,
        options,
        ds.normalisation,
        repr(ds.name),
        source_rank=ds.extra.get("x_rank"),
    )
    images = len(ds.shape) == 3 and expect.dims == 2 and not plan.column
    one_d = expect.dims == 1 or plan.column  # 1-D data may be held as (N, C, 1, L)
    made = list(SIGNAL_OOD) if one_d else ["noise"]
    names = ood if ood is not None else (default_ood_names(ds) if images else made)
    sets = []
    sources: dict[str, NDArray[np.int64]] = {}
    fitted = tuple(plan.apply(x_test[:1]).shape[1:])  # an item as the model reads it
    per_set = ood_count(fitted)
    if per_set < OOD_PER_SET:
        options_note = (
            f"OOD sets of {per_set} items each, not {OOD_PER_SET}: one set of "
            f"{OOD_PER_SET} items of {list(fitted)} would hold "
            f"{OOD_PER_SET * np.prod(fitted) * 4 / 2**20:.0f} MiB "
            f"(budget {OOD_SET_BYTES // 2**20} MiB a set)"
        )
    for n in names:
        if images:
            o = make_ood(n, ds, per_set, seed)
            sets.append((o.name, plan.apply(o.x), o.description))
            sources[o.name] = o.sources
        elif n in made:
            x = signal_like(n, x_test.shape[1:], per_set, seed, ds.normalisation)
            desc = f"{SIGNAL_OOD_TEXT[n]}, in the data's shape; standardised like {ds.name}"
            sets.append((n, plan.apply(x), desc))
        else:
            raise ConvlensError(
                f"OOD set {n!r} is made of images; for {expect.dims}-D data the sets are "
                f"{', '.join(made)}"
            )
    split = id_split(ds)  # the face class only for face data; the other classes compared apart
    x_id = plan.apply(split.x)
    if isinstance(adapter, OnnxModel):  # dtype; fixed dims were checked by the plan
        spec = adapter.runner.input_spec
        known = spec.layout if spec is not None and spec.layout != "unknown" else plan.layout
        adapter.runner.check_data(x_id, repr(ds.name), known)
    others = [(o.name, plan.apply(o.x), o.description) for o in split.others]
    sources.update({o.name: o.sources for o in split.others})
    return _Prepared(
        split.name,
        x_id,
        sets,
        list(plan.notes) + ([options_note] if per_set < OOD_PER_SET else []),
        plan.layout,
        "ID: " + split.description,
        others,
        sources,
        list(split.classes),
    )


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
    prep: _Prepared,
    timer: Timer,
    bad: list[str],
    n_untrained: int,
) -> None:
    """Verification (ONNX), activations, receptive fields and probe feature maps on the data."""
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
    result: AnalysisResult, adapter: ModelAdapter, prep: _Prepared, n_untrained: int
) -> None:
    """ID vs OOD (and vs the data's other classes) for a model file, with ``n_untrained`` untrained
    initialisations when a factory builds the module
    (:func:`convlens.analysis.measure.untrained.fresh_from_factory`)."""
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
    prep: _Prepared,
    trained: list[forward.SetActivations],
    inits: list[list[forward.SetActivations]],
    seeds: list[int],
) -> None:
    """ID vs OOD for a model file (``trained``: ID set, OOD sets, other classes, in that order)
    with the untrained initialisations there are (``inits``, made under ``seeds``, from the
    factory; a model file's own initial weights are unknown), and what the trained network and
    the first initialisation predict."""
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


def _probe_maps_stage(result: AnalysisResult, adapter: ModelAdapter, prep: _Prepared) -> None:
    """Feature maps of the first :data:`PROBES_PER_SET` items of each set: mean relu activation
    per channel and set, and the channel correlation over all probes (one entry, epoch -1: the
    model as given, no training history)."""
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
    result: AnalysisResult, adapter: TorchModel | OnnxModel, prep: _Prepared, seed: int
) -> None:
    """Exemplars (and, for a torch model, maximising inputs) of the model's channels on the fitted
    ID and OOD sets (a streamed folder is not re-read: its channels are left out). A model that
    cannot be run that way (a tuple head fed through a pipeline) is left out with a note."""
    from convlens.analysis.orchestration.channels import attach_arrays, channels_stage

    sets = [(prep.id_name, prep.x_id)] + [(name, x) for name, x, _ in prep.sets]
    rfs = result.receptive_fields.theoretical if result.receptive_fields is not None else None
    try:
        if isinstance(adapter, OnnxModel):
            arrays = channels_stage(
                result, None, sets, rfs, seed=seed, runner=adapter.runner, layout=prep.layout
            )
        else:
            arrays = channels_stage(result, adapter.module, sets, rfs, seed=seed)
        attach_arrays(result, arrays)
    except ConvlensError as exc:
        if not _recoverable(exc):  # a failed rank under torchrun: every rank ends the job
            raise
        result.notes.append(f"channels not measured: {exc}")
