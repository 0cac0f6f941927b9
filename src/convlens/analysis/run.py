"""Analyse a training run (or a user's model file) into a typed :class:`AnalysisResult`.

Every number in the report comes from here, and every step is reproducible with
``convlens analyze RUN`` (same seed, same null). Each stage is one small function that fills its
part of the result; layers are identified once (:mod:`convlens.analysis.layers`) and everything
per layer is attached to that identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis import activations, evolution, featuremaps, matching, receptive, verify
from convlens.analysis.layers import identify_modules, identify_weights, stem_note
from convlens.analysis.loading import build_from_factory, conv_weights, load_weights
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisError,
    AnalysisResult,
    Evolution,
    Headline,
    LayerCheck,
    LayerIdentity,
    LayerResult,
    ReceptiveFields,
    RunInfo,
    Settings,
    Source,
    TrainOutcome,
    Verdicts,
)
from convlens.analysis.verdicts import headline, verdicts
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
            null_scores=null,
            seed=seed,
            gabor=(pos == 0) or not first_only_gabor,
            detail_limit=min(detail_limit, budget),
        )
        m = layer.matching
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
    for c in checks:
        if c.status == "failed":
            result.errors.append(
                AnalysisError(stage="verify", message=f"layer {c.layer}: not verified: {c.message}")
            )
    attach_checks(result, checks)


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
    stem-like layer first (:data:`convlens.analysis.layers.STEM_RULE`)."""
    _check_settings(n_null, seed)
    convs = conv_weights(weights)
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    result = _new_result(Source("model_file", ""), Settings(n_null, seed), identify_weights(convs))
    match_layers(
        result,
        convs,
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
) -> None:
    from convlens.parallel.dist import is_main

    if not is_main():  # under torchrun only rank 0 computes the bootstrap and AUROC
        return
    info, per_layer = activations.compare(
        id_set, ood_sets, seed=result.settings.seed, descriptions=descriptions
    )
    result.distribution = info
    layers = _by_name(result)
    for name, dist in per_layer.items():
        if name in layers:
            layers[name].distribution = dist


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
    from convlens.data.ood import make_ood
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
    oods = [
        make_ood(o["name"], dataset, int(cfg["ood_size"]), int(cfg["seed"]))
        for o in rec.get("ood", [])
    ]
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


def _distribution_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    from convlens.parallel.shard import collect_sharded

    x_test, _ = inp.dataset.split("test")
    id_set = collect_sharded(inp.model, x_test, f"{inp.dataset.name} (test split)")
    ood_sets = [collect_sharded(inp.model, o.x, o.name) for o in inp.oods]
    attach_distribution(result, id_set, ood_sets, {o.name: o.description for o in inp.oods})


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
) -> AnalysisResult:
    """Every analysis of a training run directory, with its nulls (see the module docstring);
    ``detail_limit``/``detail_total`` cap the per-kernel records (:func:`match_layers`)."""
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
    with timer("evolution"):
        _evolution_stage(result, inp)
    with timer("feature_maps"):
        _feature_map_stage(result, inp)
    with timer("distribution"):
        if not _skip_for_nonfinite(result, "distribution", bad):
            _distribution_stage(result, inp)
    with timer("receptive_fields"):
        if not _skip_for_nonfinite(result, "receptive_fields", bad):
            _receptive_stage(result, inp)
    return _finish(result, timer)


# ----------------------------------------------------------------------------- model files
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
) -> AnalysisResult:
    """Kernel analysis of every conv weight in a file; with ``factory`` also verification, and with
    ``data`` the ID-vs-OOD activations (``.onnx`` files run with onnxruntime)."""
    _check_settings(n_null, seed)
    timer = _Timer()
    source = Source("model_file", str(path), factory, data)
    settings = Settings(n_null, seed)
    with timer("load"):
        weights = load_weights(path)
        convs = conv_weights(weights)
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    if Path(path).suffix.lower() == ".onnx" and data is not None:
        result = _analyze_onnx(path, data, ood, source, settings, timer)
    elif factory is not None:
        result = _analyze_factory(path, factory, data, ood, source, settings, timer)
    elif Path(path).suffix.lower() == ".onnx":
        # graph order is execution order: no heuristic needed, and the nodes give the geometry
        from convlens.analysis.onnxrun import onnx_layers

        idents, onnx_weights, notes = onnx_layers(path)
        result = _new_result(source, settings, idents)
        result.notes.extend(notes)
        with timer("matching"):
            match_layers(result, onnx_weights, detail_limit=detail_limit, detail_total=detail_total)
    else:
        idents = identify_weights(convs)
        result = _new_result(source, settings, idents)
        note = stem_note(idents)
        if note is not None:
            result.notes.append(note)
        with timer("matching"):
            match_layers(result, convs, detail_limit=detail_limit, detail_total=detail_total)
    return _finish(result, timer)


def _analyze_onnx(
    path: str | Path,
    data: str,
    ood: list[str] | None,
    source: Source,
    settings: Settings,
    timer: _Timer,
) -> AnalysisResult:
    from convlens.analysis.onnxrun import OnnxModel

    onnx_model = OnnxModel(path)
    result = _new_result(source, settings, onnx_model.identities())
    result.notes.extend(onnx_model.notes)
    weights = {c.name: c.weight for c in onnx_model.convs}
    bad = nonfinite_layers(result, weights)
    with timer("matching"):
        match_layers(result, weights)
    if bad:  # the model cannot be run meaningfully: nothing from onnxruntime is used
        _skip_for_nonfinite(result, "verify", bad)
        _skip_for_nonfinite(result, "distribution", bad)
        return result
    if data.startswith("stream:"):
        raise ConvlensError(
            f"data {data!r}: streamed folders run with PyTorch models (a factory); give the "
            "folder itself (DIR) for an ONNX model"
        )
    ds, sets = _dataset_and_ood(data, ood, settings.seed)
    x_test, _ = ds.split("test")
    onnx_model.check_data(x_test, repr(ds.name))
    if onnx_model.batch is not None:
        result.notes.append(
            f"the ONNX model takes a fixed batch of {onnx_model.batch}: the data run in batches of "
            "that size; images that do not fill the last batch are left out"
        )
    with timer("verify"):
        checks, skipped = onnx_model.verify(x_test[: onnx_model.batch or 8])
        attach_checks(result, checks)
        result.notes.extend(f"verification skipped for {s}" for s in skipped)
    with timer("distribution"):
        id_set = _onnx_collect(result, onnx_model, x_test, f"{ds.name} (test split)")
        ood_sets = [_onnx_collect(result, onnx_model, o.x, o.name) for o in sets]
        attach_distribution(result, id_set, ood_sets, {o.name: o.description for o in sets})
    return result


def _onnx_collect(
    result: AnalysisResult, onnx_model: Any, x: NDArray[Any], name: str
) -> activations.SetActivations:
    batches, left_out = onnx_model.batches(x)
    if left_out:
        result.notes.append(
            f"{name}: last {left_out} image(s) left out (the model's fixed batch is {onnx_model.batch})"
        )
    out: activations.SetActivations = onnx_model.collect(batches, name)
    return out


def _analyze_factory(
    path: str | Path,
    factory: str,
    data: str | None,
    ood: list[str] | None,
    source: Source,
    settings: Settings,
    timer: _Timer,
) -> AnalysisResult:
    model = build_from_factory(factory, path)
    model.eval()
    ds, sets = _dataset_and_ood(data, ood, settings.seed) if data is not None else (None, [])
    example = None
    if ds is not None:
        example = torch.from_numpy(np.asarray(ds.split("test")[0][:2]))
    modules = identify_modules(model, example)
    result = _new_result(source, settings, [i for i, _ in modules])
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    bad = nonfinite_layers(result, state)
    with timer("matching"):
        match_layers(result, state)
    with timer("verify"):
        _checks(result, modules, bad, settings.seed)
    if ds is not None and not _skip_for_nonfinite(result, "distribution", bad):
        with timer("distribution"):
            from convlens.parallel.shard import collect_sharded, id_data

            id_x, id_name = id_data(ds)  # the test split, or a whole streamed folder
            id_set = collect_sharded(model, id_x, id_name)
            ood_sets = [collect_sharded(model, o.x, o.name) for o in sets]
            attach_distribution(result, id_set, ood_sets, {o.name: o.description for o in sets})
    return result


def _dataset_and_ood(data: str, ood: list[str] | None, seed: int) -> tuple[Any, list[Any]]:
    from convlens.data.loaders import load_dataset
    from convlens.data.ood import default_ood_names, make_ood

    ds: Any
    if data.startswith("stream:"):
        from convlens.parallel.stream import open_folder

        ds = open_folder(data[len("stream:") :], seed)
    else:
        ds = load_dataset(data, seed)
    names = ood if ood is not None else default_ood_names(ds)
    return ds, [make_ood(n, ds, 100, seed) for n in names]
