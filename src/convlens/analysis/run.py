"""Analyse a training run (or a user's model file) and write ``analysis.json``.

Every number in the report comes from here, and every step is reproducible with
``convlens analyze RUN`` (same seed, same null).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlens.analysis import activations, evolution, featuremaps, matching, receptive, verify
from convlens.analysis.loading import build_from_factory, conv_weights, load_weights
from convlens.analysis.verdicts import verdicts
from convlens.errors import ConvlensError

FORMAT = "convlens-analysis/1"


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, numpy scalars/arrays -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        return clean(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> Any:
        timer = self

        class _Ctx:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: Any) -> None:
                timer.times[name] = round(time.perf_counter() - self.t0, 4)

        return _Ctx()


def analyze_weights(
    weights: dict[str, Any],
    *,
    n_null: int = 2000,
    seed: int = 0,
    init: dict[str, Any] | None = None,
    first_only_gabor: bool = True,
) -> list[dict[str, Any]]:
    """Kernel matching for every conv weight (no architecture needed). One null per kernel size."""
    out = []
    convs = conv_weights(weights)
    if not convs:
        raise ConvlensError(
            "no conv layers found (no tensors shaped (O, C, k), (O, C, k, k) or (O, C, k, k, k))"
        )
    for i, (name, w) in enumerate(convs.items()):
        k = w.shape[-1] if w.ndim == 4 and w.shape[-1] == w.shape[-2] else None
        null = matching.random_null(k, n_null, seed) if k is not None and k > 1 else None
        init_w = None if init is None else init.get(f"{name}.weight", init.get(name))
        res = matching.match_layer(
            name,
            w,
            init_weight=init_w,
            null_scores=null,
            seed=seed,
            gabor=(i == 0) or not first_only_gabor,
        )
        out.append(res.to_dict())
    return out


def analyze_run(run_dir: str | Path, *, n_null: int = 2000, seed: int = 0) -> dict[str, Any]:
    from safetensors.torch import load_file

    from convlens.data.loaders import load_dataset
    from convlens.data.ood import make_ood
    from convlens.models import ModelSpec, build_model
    from convlens.train import RunDir

    timer = _Timer()
    run = RunDir(run_dir)
    rec = run.read_run()
    if not run.model.is_file():
        raise ConvlensError(
            f"{str(run.root)!r} is a partial run (status {rec.get('status')!r}, no model.safetensors); "
            "finish it with `convlens train --resume --out RUN`"
        )
    with timer("load"):
        spec = ModelSpec.from_dict(rec["model"])
        model = build_model(spec)
        try:
            model.load_state_dict(load_file(str(run.model)))
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
    out: dict[str, Any] = {
        "format": FORMAT,
        "source": {"kind": "run", "path": str(run.root)},
        "settings": {"n_null": n_null, "seed": seed},
        "run": {
            "dataset": rec.get("dataset"),
            "model": rec.get("model"),
            "result": rec.get("result"),
            "config": cfg,
            "versions": rec.get("versions"),
        },
    }
    with timer("verify"):
        out["verify"] = [c.to_dict() for c in verify.verify_model(model, seed=seed)]
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    named = {
        f"conv{i + 1}.weight": weights[f"conv{i + 1}.weight"] for i in range(len(spec.channels))
    }
    with timer("matching"):
        init = snaps.get(0)
        out["matching"] = analyze_weights(named, n_null=n_null, seed=seed, init=init)
        if not snaps:
            out["matching_note"] = (
                "no snapshots in this run (trained with --no-snapshots): no epoch-000 null"
            )
    with timer("evolution"):
        first = "conv1"
        k = spec.kernels[0]
        null = matching.random_null(k, n_null, seed) if k > 1 else np.zeros(0)
        out["evolution"] = (
            evolution.evolution(snaps, first, null)
            if snaps
            else {"epochs": [], "skipped": "no snapshots in this run"}
        )
    with timer("feature_maps"):
        out["feature_maps"] = featuremaps.feature_map_summary(
            probe_x, probe_maps, rec.get("probes", [])
        )
    with timer("distribution"):
        x_test, _ = dataset.split("test")
        id_set = activations.collect(
            model, activations.batches_of(x_test), f"{dataset.name} (test split)"
        )
        ood_sets = [activations.collect(model, activations.batches_of(o.x), o.name) for o in oods]
        out["distribution"] = activations.compare(id_set, ood_sets, seed=seed)
        out["distribution"]["ood_descriptions"] = {o.name: o.description for o in oods}
    with timer("receptive_fields"):
        train_probes = None
        if probe_x is not None:
            idx = [i for i, p in enumerate(rec.get("probes", [])) if p["set"] == "train"]
            train_probes = torch.from_numpy(probe_x[idx]) if idx else None
        if train_probes is None:
            train_probes = torch.from_numpy(dataset.split("train")[0][:8])
        out["receptive_fields"] = {
            "theoretical": receptive.theoretical(model),
            "effective": receptive.effective(model, train_probes),
        }
    out["headline"] = headline(out)
    out["verdicts"] = verdicts(out)
    out["timings_s"] = timer.times
    return clean(out)


def headline(a: dict[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {}
    res = (a.get("run") or {}).get("result") or {}
    h["test_accuracy"] = res.get("test_accuracy")
    if a.get("matching"):
        first = a["matching"][0]
        h["first_layer"] = first["layer"]
        h["first_layer_fraction_above_null95"] = first["fraction_above_null95"]
        h["first_layer_init_fraction_above_null95"] = first.get("init_fraction_above_null95")
        h["null_p95"] = (first.get("null") or {}).get("p95")
    if a.get("verify"):
        h["max_abs_diff_correlate"] = max(c["max_abs_diff_correlate"] for c in a["verify"])
        h["min_abs_diff_convolve"] = min(c["max_abs_diff_convolve"] for c in a["verify"])
        h["all_layers_cross_correlation"] = all(c["is_cross_correlation"] for c in a["verify"])
    dist = a.get("distribution")
    if dist:
        h["auroc"] = {
            layer: {o: v["auroc"] for o, v in e["ood"].items()}
            for layer, e in dist["layers"].items()
        }
        h["verdicts"] = {
            layer: {o: v["verdict"] for o, v in e["ood"].items()}
            for layer, e in dist["layers"].items()
        }
    return h


def analyze_model_file(
    path: str | Path,
    *,
    factory: str | None = None,
    data: str | None = None,
    ood: list[str] | None = None,
    n_null: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Kernel analysis of every conv weight in a file; with ``factory`` also verification, and with
    ``data`` the ID-vs-OOD activations."""
    timer = _Timer()
    with timer("load"):
        weights = load_weights(path)
    out: dict[str, Any] = {
        "format": FORMAT,
        "source": {"kind": "model_file", "path": str(path), "factory": factory, "data": data},
        "settings": {"n_null": n_null, "seed": seed},
    }
    with timer("matching"):
        out["matching"] = analyze_weights(weights, n_null=n_null, seed=seed)
    if Path(path).suffix.lower() == ".onnx" and data is not None:
        from convlens.analysis.onnxrun import OnnxModel

        onnx_model = OnnxModel(path)
        ds, names = _dataset_and_ood(data, ood, seed)
        x_test, _ = ds.split("test")
        with timer("verify"):
            out["verify"] = [c for c in onnx_model.verify(x_test[:8]) if "skipped" not in c]
        with timer("distribution"):
            from convlens.data.ood import make_ood

            id_set = onnx_model.collect(activations.batches_of(x_test), f"{ds.name} (test split)")
            sets = [
                onnx_model.collect(activations.batches_of(make_ood(n, ds, 100, seed).x), n)
                for n in names
            ]
            out["distribution"] = activations.compare(id_set, sets, seed=seed)
    if factory is not None:
        model = build_from_factory(factory, path)
        model.eval()
        with timer("verify"):
            out["verify"] = [c.to_dict() for c in verify.verify_model(model, seed=seed)]
        if data is not None:
            from convlens.data.ood import make_ood

            ds, names = _dataset_and_ood(data, ood, seed)
            with timer("distribution"):
                x_test, _ = ds.split("test")
                id_set = activations.collect(
                    model, activations.batches_of(x_test), f"{ds.name} (test split)"
                )
                sets = [
                    activations.collect(
                        model, activations.batches_of(make_ood(n, ds, 100, seed).x), n
                    )
                    for n in names
                ]
                out["distribution"] = activations.compare(id_set, sets, seed=seed)
    out["headline"] = headline(out)
    out["verdicts"] = verdicts(out)
    out["timings_s"] = timer.times
    return clean(out)


def _dataset_and_ood(data: str, ood: list[str] | None, seed: int) -> tuple[Any, list[str]]:
    from convlens.data.loaders import load_dataset
    from convlens.data.ood import default_ood_names

    ds = load_dataset(data, seed)
    return ds, (ood if ood is not None else default_ood_names(ds))
