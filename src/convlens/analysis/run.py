"""Analyse a training run (or a user's model file) into a typed :class:`AnalysisResult`.

Every number in the report comes from here, and every step is reproducible with
``convlens analyze RUN`` (same seed, same null). Each stage is one small function that fills its
part of the result; layers are identified once (:mod:`convlens.analysis.model.layers`) and everything
per layer is attached to that identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.evidence import controls
from convlens.analysis.evidence.verdicts import headline, verdicts
from convlens.analysis.measure import (
    activations,
    caveats,
    cka,
    evolution,
    featuremaps,
    matching,
    receptive,
)
from convlens.analysis.measure.units import sees_colour
from convlens.analysis.model import verify
from convlens.analysis.model.adapters import ModelAdapter, OnnxModel, TorchModel, WeightsOnly
from convlens.analysis.model.layers import identify_modules
from convlens.analysis.model.loading import build_from_factory, conv_weights, load_weights
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisError,
    AnalysisResult,
    EpochActivation,
    Evolution,
    FeatureMapInfo,
    Headline,
    LayerCheck,
    LayerFeatureMaps,
    LayerIdentity,
    LayerResult,
    ReceptiveFields,
    RunInfo,
    Settings,
    Source,
    TrainOutcome,
    Verdicts,
)
from convlens.data.fit import FitOptions
from convlens.errors import ConvlensError


class _Timer:
    """Wall time of each named stage, in seconds (``timings_s`` of the result)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = round(time.perf_counter() - t0, 4)


def _new_result(
    source: Source, settings: Settings, identities: list[LayerIdentity]
) -> AnalysisResult:
    layers = [
        LayerResult(identity=i, n_kernels=i.weight_shape[0] * i.weight_shape[1])
        for i in sorted(identities, key=lambda i: i.index)
    ]
    return AnalysisResult(SCHEMA_VERSION, source, settings, layers, Headline(), Verdicts())


def _finish(result: AnalysisResult, timer: _Timer) -> AnalysisResult:
    result.headline = headline(result)
    result.verdicts = verdicts(result)
    result.timings_s = timer.times
    return result


def _by_name(result: AnalysisResult) -> dict[str, LayerResult]:
    return {r.name: r for r in result.layers}


def _check_settings(n_null: int, seed: int) -> None:
    matching.check_null_size(n_null)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConvlensError(f"seed must be an integer in 0..2**63-1, got {seed!r}")


def match_layers(
    result: AnalysisResult,
    weights: dict[str, NDArray[Any]],
    *,
    init: dict[str, NDArray[Any]] | None = None,
    first_only_gabor: bool = True,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
) -> None:
    """Kernel matching for every layer (weights looked up by the layer's weight key or name).

    One random null per kernel size (cached); the Gabor fit for the first layer only unless
    ``first_only_gabor`` is false. A layer whose weights hold NaN or Inf is not matched: its
    ``matching`` stays ``None`` and ``result.errors`` says why; when that is every layer with
    weights, a :class:`ConvlensError` is raised instead (nothing would be left to analyse).

    Per-kernel records (``LayerMatch.kernels``, ``channel_summed``) are kept for a layer with at most
    ``detail_limit`` kernels while the analysis holds at most ``detail_total`` such records in all
    (layers taken in execution order, so the first layer comes first); the other layers keep their
    summaries (fractions, nulls, categories) and a note names them."""
    n_null, seed = result.settings.n_null, result.settings.seed
    _check_settings(n_null, seed)
    for what, v in (("detail_limit", detail_limit), ("detail_total", detail_total)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConvlensError(f"{what} must be a non-negative integer, got {v!r}")
    bad = nonfinite_layers(result, weights)
    budget = detail_total
    summary_only: list[str] = []
    for pos, layer in enumerate(result.layers):
        ident = layer.identity
        w = weights.get(ident.weight_key, weights.get(ident.name))
        if w is None:
            continue
        w = np.asarray(w)
        if ident.name in bad:
            layer.matching = None
            message = matching.nonfinite_message(ident.name, w) or ident.name
            result.errors.append(AnalysisError(stage="matching", message=message))
            continue
        skipped = matching.skip_reason(w)
        null = matching.random_null(int(w.shape[-1]), n_null, seed) if skipped is None else None
        init_w = None if init is None else init.get(ident.weight_key, init.get(ident.name))
        if init_w is not None and np.shape(init_w) != w.shape:
            result.notes.append(
                f"layer {ident.name}: epoch-000 weights have shape {list(np.shape(init_w))}, "
                f"not {list(w.shape)}; no epoch-000 null"
            )
            init_w = None
        layer.matching = matching.match_layer(
            ident.name,
            w,
            init_weight=init_w,
            n_null=n_null,
            null_scores=null,
            seed=seed,
            gabor=(pos == 0) or not first_only_gabor,
            detail_limit=min(detail_limit, budget),
            colour=sees_colour(ident.index, ident.in_channels, ident.groups)
            and w.ndim == 4
            and w.shape[1] == 3,
        )
        m = layer.matching
        caveats.add_quantisation_note(m, w)
        if m.skipped is None:
            if m.kernels:
                budget -= len(m.kernels)
            elif m.n_kernels:
                summary_only.append(ident.name)
    if summary_only:
        result.notes.append(
            f"per-kernel records kept only for layers with at most {detail_limit} kernels and "
            f"{detail_total} kernels in all; summaries only for {len(summary_only)} layer(s): "
            + ", ".join(summary_only)
        )


def nonfinite_layers(result: AnalysisResult, weights: dict[str, Any]) -> list[str]:
    """Names of the layers whose weights hold NaN or Inf. Raises :class:`ConvlensError` when that is
    every layer with weights: there is nothing real to analyse."""
    found, bad, messages = 0, [], []
    for layer in result.layers:
        ident = layer.identity
        w = weights.get(ident.weight_key, weights.get(ident.name))
        if w is None:
            continue
        found += 1
        msg = matching.nonfinite_message(ident.name, np.asarray(w))
        if msg is not None:
            bad.append(ident.name)
            messages.append(msg)
    if found and len(bad) == found:
        raise ConvlensError(
            f"every conv layer's weights hold NaN or Inf; nothing to analyse ({'; '.join(messages)})"
        )
    return bad


def _skip_for_nonfinite(result: AnalysisResult, stage: str, bad: list[str]) -> bool:
    """Record that ``stage`` is not run because layers ``bad`` hold NaN/Inf weights (True if so)."""
    if not bad:
        return False
    result.errors.append(
        AnalysisError(
            stage=stage,
            message=f"not run: layer(s) {', '.join(bad)} hold NaN or Inf weights, so the "
            "activations from them on are undefined",
        )
    )
    return True


def _checks(
    result: AnalysisResult,
    modules: list[tuple[LayerIdentity, nn.Module]],
    bad: list[str],
    seed: int,
) -> None:
    for ident, _ in modules:
        if ident.name in bad:
            result.errors.append(
                AnalysisError(
                    stage="verify",
                    message=f"layer {ident.name}: weights hold NaN or Inf; not verified",
                )
            )
    checks = [verify.check_layer(i.name, m, seed=seed) for i, m in modules if i.name not in bad]
    _record_failed(result, checks)
    attach_checks(result, checks)


def _record_failed(result: AnalysisResult, checks: list[LayerCheck]) -> None:
    for c in checks:
        if c.status == "failed":
            result.errors.append(
                AnalysisError(stage="verify", message=f"layer {c.layer}: not verified: {c.message}")
            )


def analyze_weights(
    weights: dict[str, Any],
    *,
    n_null: int = 2000,
    seed: int = 0,
    init: dict[str, Any] | None = None,
    first_only_gabor: bool = True,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
) -> list[LayerResult]:
    """Kernel matching for every conv weight (no architecture needed): layers in file order, the
    stem-like layer first (:data:`convlens.analysis.model.layers.STEM_RULE`)."""
    _check_settings(n_null, seed)
    convs = conv_weights(weights)
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    adapter = WeightsOnly(convs)
    result = _new_result(Source("model_file", ""), Settings(n_null, seed), adapter.layers())
    match_layers(
        result,
        adapter.weights(),
        init=init,
        first_only_gabor=first_only_gabor,
        detail_limit=detail_limit,
        detail_total=detail_total,
    )
    return result.layers


def attach_checks(result: AnalysisResult, checks: list[LayerCheck]) -> None:
    layers = _by_name(result)
    for c in checks:
        if c.layer in layers:
            layers[c.layer].check = c
        else:
            result.notes.append(f"verification of {c.layer!r}: no such conv layer in the result")


def attach_distribution(
    result: AnalysisResult,
    id_set: activations.SetActivations,
    ood_sets: list[activations.SetActivations],
    descriptions: dict[str, str] | None = None,
    **extra: Any,
) -> None:
    """ID vs OOD per layer (``extra``: the keyword arguments of :func:`activations.compare`:
    ``sources``, ``others``, ``controls``, ``control_descriptions``)."""
    from convlens.parallel.dist import is_main

    if not is_main():  # under torchrun only rank 0 computes the bootstrap and AUROC
        return
    info, per_layer = activations.compare(
        id_set, ood_sets, seed=result.settings.seed, descriptions=descriptions, **extra
    )
    result.distribution = info
    layers = _by_name(result)
    for name, dist in per_layer.items():
        if name in layers:
            layers[name].distribution = dist
    silent = [n for n, d in per_layer.items() if d.id_mean is not None and d.id_mean <= 0]
    if silent:
        result.notes.append(
            f"mean ID activation 0 at {', '.join(silent[:5])}{' ...' if len(silent) > 5 else ''}: "
            "the OOD/ID activation ratio is undefined there (no ratio, no interval)"
        )


# ----------------------------------------------------------------------------- training runs
@dataclass
class _RunInputs:
    """Everything :func:`analyze_run` reads from a run directory."""

    root: Path
    rec: dict[str, Any]
    model: nn.Module
    dataset: Any
    oods: list[Any]
    snaps: dict[int, dict[str, NDArray[np.float32]]]
    probe_x: NDArray[np.float32] | None
    probe_maps: dict[int, dict[str, NDArray[np.float32]]]


def _load_run(run_dir: str | Path) -> _RunInputs:
    from safetensors.torch import load_file

    from convlens.data.loaders import load_dataset
    from convlens.data.ood import make_oods
    from convlens.models import ModelSpec, build_model
    from convlens.train import RunDir

    run = RunDir(run_dir)
    rec = run.read_run()
    for key in ("model", "config"):
        if not isinstance(rec.get(key), dict):
            raise ConvlensError(f"{str(run.run_json)!r}: {key!r} must be a JSON object")
    if not run.model.is_file():
        raise ConvlensError(
            f"{str(run.root)!r} is a partial run (status {rec.get('status')!r}, no "
            "model.safetensors); finish the training before analysing it",
            hint_key="partial_run",
        )
    model = build_model(ModelSpec.from_dict(rec["model"]))
    try:
        state = load_file(str(run.model))
    except Exception as exc:  # safetensors raises its own error type for bad headers/lengths
        raise ConvlensError(
            f"{str(run.model)!r} is not a valid safetensors file (truncated or corrupt): {exc}"
        ) from None
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ConvlensError(f"{str(run.model)!r} does not fit the run's model: {exc}") from None
    model.eval()
    cfg = rec["config"]
    dataset = load_dataset(cfg["data"], int(cfg["seed"]))
    names = [o["name"] for o in rec.get("ood", [])]
    oods = make_oods(names, dataset, int(cfg["ood_size"]), int(cfg["seed"]))
    snaps = evolution.load_snapshots(run.root / "snapshots")
    probe_x, probe_maps = featuremaps.load_probes(run.root / "probes")
    return _RunInputs(run.root, rec, model, dataset, oods, snaps, probe_x, probe_maps)


def _run_info(rec: dict[str, Any]) -> RunInfo:
    res = rec.get("result") or None
    outcome = None
    if isinstance(res, dict):
        known = TrainOutcome.__dataclass_fields__
        outcome = TrainOutcome(**{k: v for k, v in res.items() if k in known})
    return RunInfo(
        config=dict(rec.get("config") or {}),
        dataset=dict(rec.get("dataset") or {}),
        model=dict(rec.get("model") or {}),
        result=outcome,
        versions={str(k): str(v) for k, v in (rec.get("versions") or {}).items()},
        device=None if rec.get("device") is None else str(rec.get("device")),
        world_size=int(rec.get("world_size") or 1),
    )


def _example_input(inp: _RunInputs) -> torch.Tensor:
    x_train, _ = inp.dataset.split("train")
    return torch.from_numpy(np.asarray(x_train[:2]))


def _evolution_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    first = result.first_layer
    if first is None:
        return
    if not inp.snaps:
        result.evolution = Evolution(first.name, None, [], "no snapshots in this run")
        return
    ident = first.identity
    k = ident.kernel_size[-1] if ident.dims == 2 else 1
    s = result.settings
    null = matching.random_null(k, s.n_null, s.seed) if matching.has_bank(k) else np.zeros(0)
    keys = {r.name: r.identity.weight_key for r in result.layers}
    result.evolution = evolution.evolution(inp.snaps, keys, first.name, null)


def _feature_map_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    info, per_layer = featuremaps.feature_map_summary(
        inp.probe_x, inp.probe_maps, inp.rec.get("probes", [])
    )
    result.feature_maps = info
    layers = _by_name(result)
    for name, fm in per_layer.items():
        if name in layers:
            layers[name].feature_maps = fm


def _collect_all(model: nn.Module, sets: list[tuple[str, Any]]) -> list[activations.SetActivations]:
    """Every set through ``model``: sharded across ranks under torchrun, merged on rank 0."""
    from convlens.analysis.measure.shard import collect_sharded

    return [collect_sharded(model, x, name) for name, x in sets]


def _distribution_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    """ID (the face class only, for faces data) vs every OOD set and vs the other classes, for the
    trained network and the untrained controls (:mod:`convlens.analysis.measure.untrained`), and what each
    network predicts on every set."""
    from convlens.analysis.measure.untrained import ood_control, untrained_models
    from convlens.data.ood import id_split
    from convlens.parallel.dist import is_main

    split = id_split(inp.dataset)
    id_name = split.name
    sets = [(id_name, split.x)] + [(o.name, o.x) for o in inp.oods + split.others]
    sources = {o.name: o.sources for o in inp.oods + split.others}
    desc = {id_name: "ID: " + split.description, **{o.name: o.description for o in inp.oods}}
    desc.update({o.name: o.description for o in split.others})
    trained = _collect_all(inp.model, sets)
    n_ood = len(inp.oods)
    controls, notes = untrained_models(
        inp.rec["model"], int(inp.rec["config"]["seed"]), inp.snaps.get(0)
    )
    result.notes.extend(notes)
    ctrl_sets = {c.name: _collect_all(c.model, sets) for c in controls}
    if not is_main():  # every rank took part in the sharded passes; rank 0 alone merges and writes
        return
    attach_distribution(
        result,
        trained[0],
        trained[1 : 1 + n_ood],
        desc,
        sources=sources,
        others=trained[1 + n_ood :],
        controls={k: {s.name: s for s in v} for k, v in ctrl_sets.items()},
        control_descriptions={c.name: c.description for c in controls},
    )
    result.predictions = activations.predictions(
        {"trained": trained, **ctrl_sets},
        list(inp.dataset.classes),
        sources=sources,
        seed=result.settings.seed,
    )
    control = ood_control(result.layers, {c.name: c.description for c in controls})
    if control is not None:
        result.controls.append(control)


def _receptive_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    train_probes = None
    if inp.probe_x is not None:
        idx = [i for i, p in enumerate(inp.rec.get("probes", [])) if p["set"] == "train"]
        train_probes = torch.from_numpy(inp.probe_x[idx]) if idx else None
    if train_probes is None:
        train_probes = torch.from_numpy(inp.dataset.split("train")[0][:8])
    model: Any = inp.model
    result.receptive_fields = ReceptiveFields(
        theoretical=receptive.theoretical(model),
        effective=receptive.effective(model, train_probes),
    )


def analyze_run(
    run_dir: str | Path,
    *,
    n_null: int = 2000,
    seed: int = 0,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
    control_runs: list[str | Path] | None = None,
) -> AnalysisResult:
    """Every analysis of a training run directory, with its nulls (see the module docstring);
    ``detail_limit``/``detail_total`` cap the per-kernel records (:func:`match_layers`);
    ``control_runs``: random-label runs of the same recipe (:mod:`convlens.analysis.evidence.controls`)."""
    _check_settings(n_null, seed)
    timer = _Timer()
    with timer("load"):
        inp = _load_run(run_dir)
        modules = identify_modules(inp.model, _example_input(inp))
    result = _new_result(
        Source("run", str(inp.root)), Settings(n_null, seed), [i for i, _ in modules]
    )
    result.run = _run_info(inp.rec)
    weights = {k: v.detach().numpy() for k, v in inp.model.state_dict().items()}
    bad = nonfinite_layers(result, weights)
    with timer("verify"):
        _checks(result, modules, bad, seed)
    with timer("matching"):
        match_layers(
            result,
            weights,
            init=inp.snaps.get(0),
            detail_limit=detail_limit,
            detail_total=detail_total,
        )
        if not inp.snaps:
            result.notes.append(
                "no snapshots in this run (trained without snapshots): no epoch-000 null"
            )
    with timer("kernel_controls"):
        if not bad:
            controls.attach_kernel_controls(
                result,
                weights,
                inp.snaps.get(0),
                inp.rec,
                inp.dataset.split("train")[0],
                control_runs,
            )
    with timer("evolution"):
        _evolution_stage(result, inp)
    with timer("feature_maps"):
        _feature_map_stage(result, inp)
        result.representation = cka.representation_drift(
            inp.probe_maps, [r.name for r in result.layers]
        )
    with timer("distribution"):
        if not _skip_for_nonfinite(result, "distribution", bad):
            _distribution_stage(result, inp)
    with timer("receptive_fields"):
        if not _skip_for_nonfinite(result, "receptive_fields", bad):
            _receptive_stage(result, inp)
    return _finish(result, timer)


# ----------------------------------------------------------------------------- model files
PROBES_PER_SET = 4
"""Probe items per set (ID test split and each OOD set) whose feature maps a model file gets."""
FEATURE_MAP_CHANNEL_LIMIT = 64
"""Channel correlation matrices are kept for layers with at most this many channels (JSON size: a
PP-OCR run wrote 15 MB, 89% of it matrices, at 256); larger layers keep the mean |r| only."""


class DataStageError(ConvlensError):
    """The data part of a model-file analysis failed: ``result`` holds everything else (the weight
    analysis) with an ``errors`` entry of stage ``"activations"``, for the caller to write."""

    def __init__(self, message: str, result: AnalysisResult, hint_key: Any = None) -> None:
        super().__init__(message, hint_key=hint_key)
        self.result = result


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
) -> ModelAdapter:
    """The adapter for a model file: ONNX run with onnxruntime (``run``), a torch module from
    ``factory``, or the weights alone (an ONNX graph read without running it, or ``convs``)."""
    onnx = Path(path).suffix.lower() == ".onnx"
    if onnx and run:
        return OnnxModel(path, output)
    if factory is not None:
        return TorchModel(build_from_factory(factory, path), output=output)
    if onnx:
        return WeightsOnly.from_onnx(path)
    return WeightsOnly(convs)


def analyze_model_file(
    path: str | Path,
    *,
    factory: str | None = None,
    data: str | None = None,
    ood: list[str] | None = None,
    n_null: int = 2000,
    seed: int = 0,
    detail_limit: int = matching.DETAIL_LIMIT,
    detail_total: int = matching.DETAIL_TOTAL,
    fit: FitOptions | None = None,
) -> AnalysisResult:
    """Kernel analysis of every conv weight in a file through its adapter (:func:`open_model`);
    with ``factory`` also verification, and with ``data`` (fitted to the model by ``fit``) the
    ID-vs-OOD activations, receptive fields and probe feature maps (``.onnx`` files run with
    onnxruntime). When the data part fails, :class:`DataStageError` carries the weight analysis."""
    _check_settings(n_null, seed)
    options = fit or FitOptions()
    options.check()
    timer = _Timer()
    with timer("load"):
        convs = conv_weights(load_weights(path))
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    failure: BaseException | None = None
    try:
        adapter = open_model(
            path, convs, factory=factory, run=data is not None, output=options.output
        )
    except ConvlensError as exc:  # an ONNX graph onnxruntime cannot run: its weights still can be
        if data is None or factory is not None or Path(path).suffix.lower() != ".onnx":
            raise
        adapter, failure = WeightsOnly.from_onnx(path), exc
    prepared = None
    if data is not None and failure is None:
        try:
            with timer("data"):
                prepared = _prepare_data(adapter, data, ood, options, seed)
                adapter.trace(prepared.x_id)
        except Exception as exc:  # any failure of the data part: the weight analysis still stands
            failure = _data_failure(exc)
    result = _new_result(
        Source("model_file", str(path), factory, data), Settings(n_null, seed), adapter.layers()
    )
    weights = adapter.weights()
    bad = nonfinite_layers(result, weights)
    with timer("matching"):
        match_layers(result, weights, detail_limit=detail_limit, detail_total=detail_total)
    if adapter.kind == "torch":
        with timer("verify"):
            _verify_stage(result, adapter, None, bad)
    if prepared is not None and failure is None:
        if bad:  # the model cannot be run meaningfully: nothing from running it is used
            for stage in (
                ("verify", "distribution") if adapter.kind == "onnx" else ("distribution",)
            ):
                _skip_for_nonfinite(result, stage, bad)
        else:
            try:
                _data_stages(result, adapter, prepared, timer, bad)
            except Exception as exc:
                failure = _data_failure(exc)
    result.notes[:0] = adapter.notes + (prepared.notes if prepared is not None else [])
    _finish(result, timer)
    if failure is not None:
        message = (
            str(failure)
            if isinstance(failure, ConvlensError)
            else (f"{type(failure).__name__}: {' '.join(str(failure).split())[:300]}")
        )
        result.errors.append(AnalysisError(stage="activations", message=message))
        raise DataStageError(message, result, getattr(failure, "hint_key", None))
    return result


def _data_failure(exc: Exception) -> Exception:
    """``exc`` as a failure of the data part, except a failed rank under torchrun: that ends the
    whole job as it is (every rank has agreed on it; :mod:`convlens.parallel.dist`)."""
    from convlens.parallel.dist import RankCrashed, RankFailed

    if isinstance(exc, (RankFailed, RankCrashed)):
        raise exc
    return exc


def _prepare_stream(
    adapter: ModelAdapter, root: str, ood: list[str] | None, options: FitOptions, seed: int
) -> _Prepared:
    """A streamed image folder (:mod:`convlens.parallel.stream`): the ID set is every image of the
    folder, decoded lazily (sharded across ranks under torchrun); the OOD sets are made from the
    seeded normalisation sample. Images are fed as read: grey repeated to the model's channels,
    resized to the first image's size, standardised by the folder's own mean/std."""
    from dataclasses import replace

    from convlens.data.ood import default_ood_names, make_oods
    from convlens.parallel.stream import open_folder

    if not isinstance(adapter, TorchModel):
        raise ConvlensError(
            f"data 'stream:{root}': streamed folders run with PyTorch models (a factory); give "
            "the folder itself (DIR) for an ONNX model"
        )
    if replace(options, output=None) != FitOptions():
        raise ConvlensError(
            f"data 'stream:{root}': a streamed folder is fed as read (grey repeated to the "
            "model's channels, standardised by the folder's own mean/std); --layout, "
            "--normalize, --scale and --input-size apply to data loaded whole"
        )
    ds = open_folder(root, seed, channels=adapter.expectation().channels or 1)
    names = ood if ood is not None else default_ood_names(ds)
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
    adapter: ModelAdapter, data: str, ood: list[str] | None, options: FitOptions, seed: int
) -> _Prepared:
    """Load ``data`` and its OOD sets and fit them to the model: one plan for every set."""
    from convlens.data.fit import noise_like, plan_fit

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
    images = len(ds.shape) == 3 and expect.dims == 2
    names = ood if ood is not None else (default_ood_names(ds) if images else ["noise"])
    sets = []
    sources: dict[str, NDArray[np.int64]] = {}
    for n in names:
        if images:
            o = make_ood(n, ds, 100, seed)
            sets.append((o.name, plan.apply(o.x), o.description))
            sources[o.name] = o.sources
        elif n == "noise":
            x = noise_like(x_test.shape[1:], 100, seed, ds.normalisation)
            desc = (
                f"i.i.d. uniform noise in [0, 1] in the data's shape; standardised like {ds.name}"
            )
            sets.append(("noise", plan.apply(x), desc))
        else:
            raise ConvlensError(
                f"OOD set {n!r} is made of images; for {expect.dims}-D data only 'noise' is made"
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
        list(plan.notes),
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
    _record_failed(result, checks)
    attach_checks(result, checks)
    result.notes.extend(f"verification skipped for {s}" for s in skipped)


def _data_stages(
    result: AnalysisResult,
    adapter: ModelAdapter,
    prep: _Prepared,
    timer: _Timer,
    bad: list[str],
) -> None:
    """Verification (ONNX), activations, receptive fields and probe feature maps on the data."""
    if adapter.kind == "onnx":
        with timer("verify"):
            _verify_stage(result, adapter, prep.x_id, bad)
    with timer("distribution"):
        _distribution_model_file(result, adapter, prep)
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
    result: AnalysisResult, adapter: ModelAdapter, prep: _Prepared
) -> None:
    """ID vs OOD (and vs the data's other classes) for a model file, with a fresh-init control
    when a factory builds the module (:func:`convlens.analysis.measure.untrained.fresh_from_factory`)."""
    id_x = prep.id_stream if prep.id_stream is not None else prep.x_id
    named = [(prep.id_name, id_x)] + [(n, x) for n, x, _ in prep.sets + prep.others]
    trained = [adapter.activations(x, n) for n, x in named]
    ctrls: dict[str, list[activations.SetActivations]] = {}
    descriptions: dict[str, str] = {}
    factory = result.source.factory
    if isinstance(adapter, TorchModel) and factory is not None and adapter.call is None:
        from convlens.analysis.measure.untrained import fresh_from_factory

        state = {k: v.detach().cpu().numpy() for k, v in adapter.module.state_dict().items()}
        fresh, note = fresh_from_factory(factory, state, result.settings.seed)
        if note:
            result.notes.append(note)
        if fresh is not None:
            twin = TorchModel(fresh.model, output=adapter.output)
            ctrls[fresh.name] = [twin.activations(x, n) for n, x in named]
            descriptions[fresh.name] = fresh.description
    _attach_model_file(result, prep, trained, ctrls, descriptions)


def _attach_model_file(
    result: AnalysisResult,
    prep: _Prepared,
    trained: list[activations.SetActivations],
    controls: dict[str, list[activations.SetActivations]],
    control_descriptions: dict[str, str],
) -> None:
    """ID vs OOD for a model file (``trained``: ID set, OOD sets, other classes, in that order)
    with the untrained ``controls`` there are (a fresh init from the factory; a model file's own
    initial weights are unknown), and what each network predicts."""
    n_ood = len(prep.sets)
    attach_distribution(
        result,
        trained[0],
        trained[1 : 1 + n_ood],
        {prep.id_name: prep.id_description, **{n: d for n, _, d in prep.sets + prep.others}},
        sources=prep.sources,
        others=trained[1 + n_ood :],
        controls={k: {s.name: s for s in v} for k, v in controls.items()},
        control_descriptions=control_descriptions,
    )
    if len(trained[0].msp.values):  # the model's output is used as (batch, classes) logits
        result.predictions = activations.predictions(
            {"trained": trained, **controls},
            prep.classes,
            sources=prep.sources,
            seed=result.settings.seed,
        )
    if not controls:
        result.notes.append(
            "no untrained control for this model file (its initial weights are unknown and no "
            "factory builds a fresh one): the OOD figures are not compared with an untrained network"
        )


def _probe_maps_stage(result: AnalysisResult, adapter: ModelAdapter, prep: _Prepared) -> None:
    """Feature maps of the first :data:`PROBES_PER_SET` items of each set: mean relu activation
    per channel and set, and the channel correlation over all probes (one entry, epoch -1: the
    model as given, no training history)."""
    batch = getattr(getattr(adapter, "runner", None), "batch", None) or 1
    per_set: list[tuple[str, dict[str, NDArray[np.float32]]]] = []
    for name, x in [(prep.id_name, prep.x_id)] + [(n, x) for n, x, _ in prep.sets]:
        n = min(len(x), -(-PROBES_PER_SET // batch) * batch) // batch * batch
        if n:
            per_set.append((name, adapter.feature_maps(x[:n])))
    if not per_set:
        return
    layers = _by_name(result)
    probe_sets: list[str] = []
    for name, maps in per_set:
        probe_sets += [name] * len(next(iter(maps.values()))) if maps else []
    large = []
    for lname in per_set[0][1]:
        parts = [(s, m[lname]) for s, m in per_set if lname in m]
        if lname not in layers or len({p.shape[1:] for _, p in parts}) != 1:
            continue
        every = np.concatenate([p for _, p in parts])
        axes = tuple(range(2, every.ndim))
        mean_act = {
            s: np.maximum(p.astype(np.float64), 0).mean(axis=(0, *axes)).tolist() for s, p in parts
        }
        full = featuremaps.channel_correlation(every)
        corr: list[list[float]] = []
        if every.shape[1] <= FEATURE_MAP_CHANNEL_LIMIT:
            corr = full.tolist()
        else:
            large.append(lname)
        layers[lname].feature_maps = LayerFeatureMaps(
            shape=list(every.shape[1:]),
            per_epoch=[EpochActivation(-1, mean_act)],
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
