"""The report's sections about the run itself: the header (typed from the run's records), the
kernels over training (epoch slider, evolution curves, CKA) and the loss and accuracy curves
(``metrics.jsonl``, read by :mod:`convlens.runs.read`). Each takes the report's
:class:`~convlens.report.inputs.ReportInputs` and returns its context (``None``: no data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convlens import __version__
from convlens.analysis.result import AnalysisResult
from convlens.report import figures
from convlens.report.charts import evolution_charts, training_charts, weight_histograms
from convlens.report.inputs import ReportInputs
from convlens.runs import read
from convlens.runs.layout import RunLayout


def section_header(inp: ReportInputs) -> dict[str, Any]:
    """Who and what: the run (dataset, model, recipe; typed from its records) or the model file
    analysed."""
    run, src = inp.a.run, inp.a.source
    out: dict[str, Any] = {
        "kind": inp.kind,
        "factory": src.factory,
        "version": __version__,
        "notes": list(inp.a.notes),
        "errors": [f"{e.stage}: {e.message}" for e in inp.a.errors],
    }
    if run is None:  # a model file: no recorded data, config or environment
        return {
            **out,
            "dataset": src.data or "none (weights only)",
            "source": src.path,
            "n": "?",
            "shape": "?",
            "n_test": "?",
            "model": Path(src.path).name,
            "cfg": {},
            "recipe": None,
            "seed": "n/a",
            "device": "?",
            "versions": {},
            "normalisation": dict.fromkeys(("to_unit_range", "rule"), "?")
            | {"mean": None, "std": None},
        }
    ds, cfg = run.dataset, run.config
    norm = ds.normalisation
    return {
        **out,
        "dataset": ds.name,
        "source": ds.source,
        "n": ds.n,
        "shape": "x".join(str(v) for v in ds.shape) or "?",
        "n_test": ds.splits.get("test", "?"),
        "model": run.model.name,
        "cfg": cfg,
        "recipe": f"{cfg.optimizer}, weight decay {cfg.weight_decay}, learning rate {cfg.lr}, "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}",
        "seed": cfg.seed,
        "device": run.device or "?",
        "versions": run.versions,
        "normalisation": {  # free-form: what the data loader did, as it recorded it
            "to_unit_range": norm.get("to_unit_range", "?"),
            "rule": norm.get("rule", "?"),
            "mean": norm.get("mean"),
            "std": norm.get("std"),
        },
    }


def section_evolution(inp: ReportInputs) -> dict[str, Any]:
    """The epoch slider's data (every snapshot epoch) and the curves over training."""
    from convlens.report.interactive import epoch_slider, layer_snapshots

    epochs = inp.snapshot_epochs()
    slider = epoch_slider(inp.first, epochs, inp.snapshot, inp.probe_x, inp.probe_sets)
    if not slider["missing"]:  # every 2-D conv layer's kernels per epoch, for the layer menu
        slider["layers"] = layer_snapshots(
            [r for r in inp.a.layers if r.identity.dims == 2], epochs, inp.snapshot
        )
    evo = inp.a.evolution
    curves = None
    if evo is not None and evo.epochs:
        eps = [r.epoch for r in evo.epochs]
        layers = list(evo.epochs[0].distance_from_init)
        curves = figures.evolution_curves(
            eps,
            [r.first_layer_fraction_above_null95 for r in evo.epochs],
            [r.first_layer_median_score for r in evo.epochs],
            evo.null_p95,
            {layer: [r.distance_from_init.get(layer) for r in evo.epochs] for layer in layers},
        )
    missing = slider["missing"] or (evo.skipped if evo is not None else None)
    charts: dict[str, Any] = {}
    if evo is not None and evo.epochs:
        charts = evolution_charts(
            eps,
            [r.first_layer_fraction_above_null95 for r in evo.epochs],
            [r.first_layer_median_score for r in evo.epochs],
            evo.null_p95,
            {layer: [r.distance_from_init.get(layer) for r in evo.epochs] for layer in layers},
        )
    hist = weight_histograms(
        epochs, inp.snapshot, [r.identity.weight_key for r in inp.a.layers if r.identity.weight_key]
    )
    if hist is not None:
        charts["weights"] = hist
    return {
        "slider": slider,
        "curves": curves,
        "missing": missing,
        "cka": _cka_rows(inp.a),
        "charts": charts,
    }


def _cka_rows(a: AnalysisResult) -> dict[str, Any] | None:
    """Per layer: CKA vs the final epoch at a few epochs, the untrained floor and the settling
    epoch (``AnalysisResult.representation``; ``None`` where the analysis did not measure it)."""
    r = a.representation
    if r is None or not r.layers:
        return None
    epochs = r.layers[0].epochs
    early = [e for e in (1, 2, 5, 10) if e in epochs]
    pick = sorted({epochs[0], *early, epochs[len(epochs) // 4], epochs[-1]})
    rows = [
        {
            "layer": x.layer,
            "cka": [dict(zip(x.epochs, x.cka_to_final, strict=True)).get(e) for e in pick],
            "floor": x.floor,
            "settle": x.settle_epoch,
        }
        for x in r.layers
    ]
    return {"epochs": pick, "rows": rows, "rule": r.rule, "n": r.n_probes}


def section_training(inp: ReportInputs) -> dict[str, Any] | None:
    """Loss and accuracy per epoch from ``metrics.jsonl``, one line per training seed."""
    if inp.kind != "run":
        return None
    run = RunLayout(inp.root)
    runs = {f"seed {inp.a.run.config.seed if inp.a.run else '?'}": run.root}
    if inp.seeds is not None:
        for s in inp.seeds.seeds[1:]:
            runs[f"seed {s}"] = run.seed_run(s)
    # the one reader: a metrics.jsonl that is not valid is an error naming it (missing: no rows)
    rows = {label: [r.to_dict() for r in read.metrics(d)] for label, d in runs.items()}
    metrics = {k: v for k, v in rows.items() if v}
    if not metrics:
        return None
    return {
        "figure": figures.training_curves(metrics),
        "n": len(metrics),
        "charts": training_charts(metrics),
    }
