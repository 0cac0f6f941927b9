"""Build the self-contained HTML report of a run from its typed analysis result.

One small function per report section: each takes :class:`ReportInputs` (the typed
:class:`~convlens.analysis.result.AnalysisResult`, the optional across-seeds summary and the run's
arrays: snapshots, probe feature maps, final weights) and returns that section's context, or
``None`` when the run has no data for it. The template is rendered with ``StrictUndefined``: a
field the template names but a section does not provide is an error, never a blank.

Everything shown is read from the run directory or recomputed from it with the library (the seed's
worked example, classical feature maps of a probe image, NCC views); every figure has a caption
saying what was measured. No external assets: figures are PNG data URIs, CSS is inline. Importing
this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens import __version__
from convlens._atomic import write_text
from convlens.analysis.result import AnalysisResult, LayerResult, SeedsSummary
from convlens.errors import ConvlensError
from convlens.report import figures

SECTIONS = [
    ("answer", "The answer"),
    ("arithmetic", "Worked example"),
    ("glossary", "Glossary"),
    ("playground", "Playground"),
    ("crosscorr", "Cross-correlation"),
    ("classical", "Classical kernels"),
    ("learned", "First layer"),
    ("layers", "Every layer"),
    ("evolution", "Over training"),
    ("training", "Loss and accuracy"),
    ("featuremaps", "Feature maps"),
    ("distribution", "ID vs OOD"),
    ("receptive", "Receptive fields"),
    ("controls", "Controls"),
    ("limits", "Limits"),
    ("reproduce", "Reproduce"),
]

SEED_KERNEL = "1 2 3; 4 5 6; 7 8 9"
SEED_INPUT = "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"
SEED_CLAIM = "146 157; 200 233"
CLASSICAL_SPECS = (
    "sobel_x",
    "sobel_y",
    "laplacian_4",
    "log:sigma=1,size=5",
    "gabor:angle=0,frequency=0.2,size=7",
    "gabor:angle=90,frequency=0.2,size=7",
)


#: the most bytes of ``metrics.jsonl`` the report reads (a real run's are a few kB)
MAX_METRICS_BYTES = 64 * 2**20
MODEL_SUFFIX = ".analysis.json"


@dataclass
class ReportInputs:
    """What the sections read: the typed result and the run's arrays (loaded once).

    ``root`` is the run directory, or the folder of a model-file analysis (``kind == "model"``),
    which has no snapshots, probes or metrics: those sections say "no data"."""

    root: Path
    a: AnalysisResult
    seeds: SeedsSummary | None
    probe_x: NDArray[np.float32] | None
    probe_maps: dict[int, dict[str, NDArray[np.float32]]]
    final: dict[str, NDArray[Any]]
    kind: str = "run"
    analysis_path: Path | None = None

    @property
    def first(self) -> LayerResult | None:
        return self.a.first_layer

    @property
    def probe_sets(self) -> list[str]:
        return self.a.feature_maps.probe_sets if self.a.feature_maps is not None else []

    def probe_image(self) -> NDArray[Any] | None:
        """The last training probe image (channel 0), the report's running example."""
        idx = [i for i, s in enumerate(self.probe_sets) if s == "train"]
        if self.probe_x is None or not idx:
            return None
        return self.probe_x[idx[-1], 0]

    def snapshot(self, epoch: int) -> dict[str, NDArray[Any]]:
        return _load_tensors(self.root / "snapshots" / f"epoch-{epoch:03d}.safetensors")

    def snapshot_epochs(self) -> list[int]:
        """The epochs with a kernel snapshot on disk, ascending (not necessarily contiguous)."""
        folder = self.root / "snapshots"
        if self.kind != "run" or not folder.is_dir():
            return []
        out = []
        for f in folder.glob("epoch-*.safetensors"):
            digits = f.name[len("epoch-") : -len(".safetensors")]
            if digits.isdigit():
                out.append(int(digits))
        return sorted(out)


def _load_tensors(path: Path) -> dict[str, NDArray[Any]]:
    from safetensors.numpy import load_file

    # a 1-D conv weight (O, C, K) is drawn as 1 x K images (what it computes on a 1 x L signal)
    return {k: v[:, :, None, :] if v.ndim == 3 else v for k, v in load_file(str(path)).items()}


def load_inputs(target: str | Path) -> ReportInputs:
    """Read a run directory (``analysis.json`` and the arrays beside it) or a model-file analysis
    JSON (``MODEL.analysis.json`` written by ``convlens analyze MODEL``)."""
    from convlens.analysis.measure.featuremaps import load_probes

    root = Path(target)
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise ConvlensError(
                f"{str(root)!r} is not an analysis: give a run directory or the MODEL.analysis.json "
                f"that `convlens analyze {root.name}` writes (analyse the model file first)",
                hint_key="no_analysis",
            )
        return _load_model_inputs(root)
    apath = root / "analysis.json"
    if not apath.is_file():
        raise ConvlensError(
            f"{str(root)!r} has no analysis.json: analyse the run before building its report",
            hint_key="no_analysis",
        )
    a = AnalysisResult.read(apath)
    if a.run is None:
        raise ConvlensError(
            f"{str(apath)!r} is not the analysis of a training run; give the analysis file itself "
            "to report a model file"
        )
    seeds_path = root / "seeds.json"
    seeds = SeedsSummary.read(seeds_path) if seeds_path.is_file() else None
    probe_x, probe_maps = load_probes(root / "probes")
    model = root / "model.safetensors"
    final = _load_tensors(model) if model.is_file() else {}
    return ReportInputs(root, a, seeds, probe_x, probe_maps, final, "run", apath)


def _load_model_inputs(path: Path) -> ReportInputs:
    """A model-file analysis: the weights are read back only from a ``.safetensors`` file (the
    report never imports torch, so ``.pt``/``.onnx`` weights are not drawn)."""
    a = AnalysisResult.read(path)
    final: dict[str, NDArray[Any]] = {}
    weights = Path(a.source.path)
    if not weights.is_absolute():
        weights = path.parent / weights
    if weights.suffix == ".safetensors" and weights.is_file():
        final = _load_tensors(weights)
    return ReportInputs(path.parent, a, None, None, {}, final, "model", path)


def default_report_path(inp: ReportInputs) -> Path:
    """``RUN/report.html``, or ``MODEL.report.html`` beside ``MODEL.analysis.json``."""
    if inp.kind == "run" or inp.analysis_path is None:
        return inp.root / "report.html"
    name = inp.analysis_path.name
    stem = name[: -len(MODEL_SUFFIX)] if name.endswith(MODEL_SUFFIX) else inp.analysis_path.stem
    return inp.analysis_path.with_name(stem + ".report.html")


# ----------------------------------------------------------------------------- sections
def section_header(inp: ReportInputs) -> dict[str, Any]:
    """Who and what: the run (dataset, model, recipe) or the model file analysed."""
    run = inp.a.run
    src = inp.a.source
    ds = run.dataset if run is not None else {}
    norm = ds.get("normalisation") or {}
    cfg = run.config if run is not None else {}
    recipe = None
    if cfg:
        recipe = (
            f"{cfg.get('optimizer', '?')}, weight decay {cfg.get('weight_decay', '?')}, learning rate "
            f"{cfg.get('lr', '?')}, {cfg.get('epochs', '?')} epochs, batch {cfg.get('batch_size', '?')}"
        )
    return {
        "kind": inp.kind,
        "dataset": ds.get("name", src.data or "none (weights only)"),
        "source": ds.get("source", src.path),
        "n": ds.get("n", "?"),
        "shape": "x".join(str(v) for v in ds.get("shape", [])) or "?",
        "n_test": (ds.get("splits") or {}).get("test", "?"),
        "model": run.model.get("name", "?") if run is not None else Path(src.path).name,
        "factory": src.factory,
        "cfg": cfg,
        "recipe": recipe,
        "seed": cfg.get("seed", "n/a"),
        "device": (run.device if run is not None else None) or "?",
        "version": __version__,
        "versions": run.versions if run is not None else {},
        "notes": list(inp.a.notes),
        "errors": [f"{e.stage}: {e.message}" for e in inp.a.errors],
        "normalisation": {
            "to_unit_range": norm.get("to_unit_range", "?"),
            "rule": norm.get("rule", "?"),
            "mean": norm.get("mean"),
            "std": norm.get("std"),
        },
    }


def section_answer(inp: ReportInputs) -> dict[str, Any]:
    """The first screen: the plain answer with this analysis's own numbers and verdicts."""
    from convlens.report.answer import answer

    return answer(inp.a)


def section_glossary(inp: ReportInputs) -> list[dict[str, str]]:
    from convlens.report.answer import glossary

    return glossary()


def section_controls(inp: ReportInputs) -> list[dict[str, Any]]:
    """Every control of the analysis (an empty list: the template says that none ran)."""
    from convlens.report.answer import controls

    return controls(inp.a)


def section_arithmetic(inp: ReportInputs | None = None) -> dict[str, Any]:
    from convlens.explain import explain, parse_matrix

    ex = explain(parse_matrix(SEED_KERNEL), parse_matrix(SEED_INPUT))
    check = ex.check(parse_matrix(SEED_CLAIM))
    conv = explain(parse_matrix(SEED_KERNEL), parse_matrix(SEED_INPUT), convolve=True)
    return {
        "text": ex.render("text"),
        "claim": SEED_CLAIM,
        "check_lines": check.lines(),
        "ok": check.ok,
        "output": ex.output.tolist(),
        "convolution_output": conv.output.tolist(),
        "kernel": parse_matrix(SEED_KERNEL).tolist(),
        "input": parse_matrix(SEED_INPUT).tolist(),
        "command": f'convlens explain --kernel "{SEED_KERNEL}" --input "{SEED_INPUT}" --expect "{SEED_CLAIM}"',
    }


def section_crosscorr(inp: ReportInputs) -> dict[str, Any] | None:
    v = inp.a.verdicts.cross_correlation
    checks = [r.check for r in inp.a.layers if r.check is not None]
    return {"verdict": v, "checks": checks} if v is not None else None


def section_classical(inp: ReportInputs) -> dict[str, Any] | None:
    from convlens.kernels import parse_kernel_spec
    from convlens.ops import correlate2d

    image = inp.probe_image()
    if image is None:
        return None
    items, rows = [], []
    for s in CLASSICAL_SPECS:
        k = parse_kernel_spec(s)
        fmap = correlate2d(image.astype(np.float64), k.weights.astype(np.float64), padding="same")
        items.append((s.split(":")[0] if ":" not in s else s.split(":")[0] + "*", k.weights, fmap))
        rows.append(
            {"spec": s, "source": k.source, "normalisation": k.normalisation, "skimage": k.skimage}
        )
    return {"figure": figures.kernels_and_maps(image, items), "rows": rows}


def _bank_kernel(label: str, k: int) -> NDArray[Any]:
    from convlens.kernels import matching_bank

    for e in matching_bank(k):
        if e.label == label:
            return e.weights
    return np.zeros((k, k))


def section_learned(inp: ReportInputs) -> dict[str, Any] | None:
    from convlens.analysis.measure.matching import random_null, spectrum_null
    from convlens.report.answer import kernel_origin

    first = inp.first
    m0 = first.matching if first is not None else None
    if first is None or m0 is None or m0.skipped or m0.kernel_size is None or m0.null is None:
        return {"skipped": m0.skipped if m0 is not None else "no conv layer was matched"}
    if m0.spectral is not None:  # matched against the 1-D bank: no k x k figure to draw
        return {"skipped": "the first layer has 1-D kernels (see the analysis summary)"}
    out: dict[str, Any] = {
        "skipped": None,
        "m0": m0,
        "verdict": inp.a.verdicts.classical_kernels,
        "spectrum_verdict": inp.a.verdicts.classical_kernels_spectrum_null,
        "figure": None,
        "null_figure": None,
        "origin": kernel_origin(inp.a),
    }
    k = m0.kernel_size
    final_w = inp.final.get(first.identity.weight_key)
    if final_w is not None and np.asarray(final_w).shape[2:] == (k, k):
        out["figure"] = _cards(first, final_w)
        s = inp.a.settings
        null = random_null(k, s.n_null, s.seed)
        evo = inp.a.evolution.epochs if inp.a.evolution is not None else []
        init_scores = evo[0].first_layer_scores if evo else None
        snull = spectrum_null(
            np.asarray(final_w, dtype=np.float64).reshape(-1, k, k),
            min(s.n_null, len(null)),
            s.seed,
        )
        out["null_figure"] = figures.null_histogram(
            null,
            [r.score for r in m0.kernels],
            init_scores,
            float(np.percentile(null, 95)),
            spectrum=snull,
            spectrum_p95=m0.spectrum_null.p95 if m0.spectrum_null is not None else None,
        )
    return out


#: kernel cards drawn per layer (the rest are in the table and counted as "showing k of n")
CARD_LIMIT = 32


def _cards(layer: LayerResult, final_w: NDArray[Any]) -> dict[str, Any] | None:
    """Learned kernels (mean removed, as matched) beside their sign-aligned best bank kernel, as
    inline SVG with the score and the percentile in the layer's random null."""
    from markupsafe import Markup

    from convlens.report.interactive import kernel_svg

    m = layer.matching
    if m is None or m.kernel_size is None or not m.kernels:
        return None
    if final_w.ndim != 4 or final_w.shape[2:] != (m.kernel_size, m.kernel_size):
        return None  # 1 x k, k x 1 and other shapes: the table and the layer's note say how matched
    k = m.kernel_size
    cards = []
    for r in m.kernels[:CARD_LIMIT]:
        kern = np.asarray(final_w[r.out_channel, r.in_channel], dtype=np.float64)
        name = r.best_match
        cards.append(
            {
                "learned": Markup(
                    kernel_svg(kern - kern.mean(), f"learned out {r.out_channel} in {r.in_channel}")
                ),
                "bank": Markup(kernel_svg(r.sign * _bank_kernel(name, k), f"bank kernel {name}")),
                "r": r,
            }
        )
    return {"cards": cards, "shown": len(cards), "n": m.n_kernels}


def section_layers(inp: ReportInputs) -> list[dict[str, Any]]:
    """Every conv layer's matching against the bank: nulls, fractions, and kernel cards."""
    rows = []
    for layer in inp.a.layers:
        m = layer.matching
        w = inp.final.get(layer.identity.weight_key)
        cards = None
        if m is not None and not m.skipped and w is not None and m.spectral is None:
            cards = _cards(layer, np.asarray(w))
        why = None
        if m is None:
            why = "this layer was not matched"
        elif m.skipped:
            why = m.skipped
        elif w is None:
            why = "the weights are not readable without torch (a .pt/.onnx file) or are missing"
        rows.append({"layer": layer, "m": m, "cards": cards, "why": why})
    return rows


def section_evolution(inp: ReportInputs) -> dict[str, Any]:
    """The epoch slider's data (every snapshot epoch) and the curves over training."""
    from convlens.report.interactive import epoch_slider

    epochs = inp.snapshot_epochs()
    slider = epoch_slider(inp.first, epochs, inp.snapshot, inp.probe_x, inp.probe_sets)
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
    return {"slider": slider, "curves": curves, "missing": missing, "cka": _cka_rows(inp.a)}


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


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` rows (empty when missing, too large or unreadable: the figure says so)."""
    import json

    if not path.is_file() or path.stat().st_size > MAX_METRICS_BYTES:
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            return []
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def section_training(inp: ReportInputs) -> dict[str, Any] | None:
    """Loss and accuracy per epoch from ``metrics.jsonl``, one line per training seed."""
    if inp.kind != "run":
        return None
    runs = {f"seed {inp.a.run.config.get('seed', '?') if inp.a.run else '?'}": inp.root}
    if inp.seeds is not None:
        for s in inp.seeds.seeds[1:]:
            runs[f"seed {s}"] = inp.root / "seeds" / f"seed-{s}"
    metrics = {label: _read_metrics(d / "metrics.jsonl") for label, d in runs.items()}
    metrics = {k: v for k, v in metrics.items() if v}
    if not metrics:
        return None
    return {"figure": figures.training_curves(metrics), "n": len(metrics)}


def section_playground(inp: ReportInputs) -> dict[str, Any]:
    """The playground's kernels and sample images (the page computes the feature map)."""
    from convlens.report.interactive import playground_kernels, sample_images

    return {
        "kernels": playground_kernels(),
        "samples": sample_images(inp.probe_x, inp.probe_sets),
    }


def _probe_choice(inp: ReportInputs) -> list[tuple[str, int]]:
    """One probe per set (the last of each), every set."""
    sets = inp.probe_sets
    return [(s, [i for i, p in enumerate(sets) if p == s][-1]) for s in dict.fromkeys(sets)]


#: an uploaded image is scaled down (in the page) to at most this many pixels a side
UPLOAD_SIDE = 64
#: feature-map channels drawn per row (more are counted as "showing k of n")
MAX_MAP_CHANNELS = 16


def section_featuremaps(inp: ReportInputs) -> dict[str, Any] | None:
    first = inp.first
    if inp.probe_x is None or not inp.probe_maps or first is None:
        return None
    x, maps = inp.probe_x, inp.probe_maps
    epochs = sorted(maps)
    chosen = _probe_choice(inp)
    rows = [
        (s, x[i, 0], [(e, maps[e][first.name][i]) for e in (epochs[0], epochs[-1])])
        for s, i in chosen
    ]
    # the deepest conv layer with probe maps: highest execution index among those recorded
    recorded = [r.name for r in inp.a.layers if r.name in maps[epochs[-1]]]
    last_layer = recorded[-1] if recorded else list(maps[epochs[-1]])[-1]
    rows2 = [(s, x[i, 0], [(epochs[-1], maps[epochs[-1]][last_layer][i])]) for s, i in chosen]
    n1 = int(maps[epochs[-1]][first.name].shape[1])
    n2 = int(maps[epochs[-1]][last_layer].shape[1])
    out: dict[str, Any] = {
        "figure": figures.feature_maps_over_epochs(rows, channels=min(n1, MAX_MAP_CHANNELS)),
        "figure_last": figures.feature_maps_over_epochs(rows2, channels=min(n2, MAX_MAP_CHANNELS)),
        "first_layer": first.name,
        "shown": (min(n1, MAX_MAP_CHANNELS), n1),
        "shown_last": (min(n2, MAX_MAP_CHANNELS), n2),
        "epochs": (epochs[0], epochs[-1]),
        "last_layer": last_layer,
        "ncc": _ncc(inp),
        "correlation": _channel_correlations(inp),
    }
    return out


def _ncc(inp: ReportInputs) -> dict[str, Any] | None:
    from convlens.analysis.measure import featuremaps

    first, image = inp.first, inp.probe_image()
    m0 = first.matching if first is not None else None
    final_w = inp.final.get(first.identity.weight_key) if first is not None else None
    if first is None or m0 is None or not m0.kernels or final_w is None or image is None:
        return None
    best = max(m0.kernels, key=lambda r: r.score)
    kern = final_w[best.out_channel, best.in_channel]
    bias_key = first.identity.weight_key[: -len("weight")] + "bias"
    bias = float(inp.final.get(bias_key, np.zeros(final_w.shape[0]))[best.out_channel])
    view = featuremaps.ncc_view(image, kern, bias)
    return {
        "figure": figures.ncc_figure(image, kern, view["raw"], view["ncc"]),
        "r": view["pearson_raw_vs_ncc"],
        "channel": best.out_channel,
    }


def _channel_correlations(inp: ReportInputs) -> dict[str, Any] | None:
    fm = {r.name: r.feature_maps for r in inp.a.layers if r.feature_maps is not None}
    if not fm:
        return None
    mats = {name: np.asarray(v.channel_correlation_final) for name, v in fm.items()}
    stats = {
        name: float(np.mean(np.abs(m[~np.eye(len(m), dtype=bool)]))) for name, m in mats.items()
    }
    figure = figures.correlation_matrices({f"{name} (final)": m for name, m in mats.items()})
    return {"figure": figure, "stats": stats}


def section_distribution(inp: ReportInputs) -> dict[str, Any] | None:
    info = inp.a.distribution
    per_layer = {r.name: r.distribution for r in inp.a.layers if r.distribution is not None}
    if info is None or not per_layer:
        return None
    from convlens.report.ood import layer_tables, predictions_table

    learned = layer_tables(inp.a)
    return {
        "info": info,
        "layers": per_layer,
        "descriptions": {o.name: o.description for o in [*info.ood, *info.other]},
        "figure": figures.activation_bars(per_layer),
        "learned": learned,
        "learned_figure": (
            figures.auroc_vs_untrained(learned)
            if any(row["controls"] for t in learned for row in t["ood"])
            else None
        ),
        "predictions": predictions_table(inp.a),
    }


def section_receptive(inp: ReportInputs) -> dict[str, Any] | None:
    rf = inp.a.receptive_fields
    if rf is None:
        return None
    theo = {t.name: t for t in rf.theoretical}
    return {
        "theoretical": rf.theoretical,
        "effective": rf.effective,
        # model files have theoretical fields only (no training probes for the gradient fields)
        "figure": figures.receptive_figure(rf.effective, theo) if rf.effective else None,
    }


def section_seeds(inp: ReportInputs) -> SeedsSummary | None:
    return inp.seeds


def section_reproduce(inp: ReportInputs) -> dict[str, Any]:
    cmds = reproduce_commands(inp)
    demo = [c["cmd"] for c in cmds if c["cmd"].startswith("convlens demo")]
    return {"commands": cmds, "timings": inp.a.timings_s, "demo_cmd": demo[0] if demo else None}


def reproduce_commands(inp: ReportInputs) -> list[dict[str, str]]:
    """The commands behind this report, built from the analysis's own config; each writes to a
    new directory or file, never to the one being read."""
    from convlens.report.answer import model_commands, run_commands

    if inp.kind == "run" and inp.a.run is not None:
        return run_commands(inp.a, inp.root, inp.seeds.n if inp.seeds is not None else None)
    assert inp.analysis_path is not None
    return model_commands(inp.a, inp.analysis_path)


SECTION_BUILDERS: dict[str, Callable[[ReportInputs], Any]] = {
    "header": section_header,
    "answer": section_answer,
    "glossary": section_glossary,
    "arithmetic": section_arithmetic,
    "playground": section_playground,
    "crosscorr": section_crosscorr,
    "classical": section_classical,
    "learned": section_learned,
    "layers": section_layers,
    "evolution": section_evolution,
    "training": section_training,
    "featuremaps": section_featuremaps,
    "distribution": section_distribution,
    "controls": section_controls,
    "receptive": section_receptive,
    "seeds": section_seeds,
    "reproduce": section_reproduce,
}


def build_context(inp: ReportInputs) -> dict[str, Any]:
    """Every section's context, keyed by section id (``None`` where a section has no data)."""
    ctx: dict[str, Any] = {name: build(inp) for name, build in SECTION_BUILDERS.items()}
    ctx["sections"] = SECTIONS
    from convlens.report.answer import GLOSSARY

    ctx["gl"] = {k: {"term": t, "text": d} for k, (t, d) in GLOSSARY.items()}
    arith, play = ctx["arithmetic"], ctx["playground"]
    ctx["payload"] = {
        "worked": {"kernel": arith["kernel"], "input": arith["input"]},
        "playground": {**play, "max_side": UPLOAD_SIDE},
        "slider": ctx["evolution"]["slider"],
        "max_channels": MAX_MAP_CHANNELS,
    }
    return ctx


def render_html(ctx: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("convlens.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"
    env.filters["f3"] = lambda v: "n/a" if v is None else f"{v:.3f}"
    env.filters["f2"] = lambda v: "n/a" if v is None else f"{v:.2f}"
    env.filters["sci"] = lambda v: "n/a" if v is None else f"{v:.1e}"
    env.filters["ci"] = lambda v: "n/a" if not v or v[0] is None else f"[{v[0]:.3f}, {v[1]:.3f}]"
    env.filters["ci2"] = lambda v: "n/a" if not v or v[0] is None else f"[{v[0]:.2f}, {v[1]:.2f}]"
    env.filters["sgn"] = lambda v: "n/a" if v is None else f"{v:+.2f}"
    env.filters["sgn3"] = lambda v: "n/a" if v is None else f"{v:+.3f}"
    env.filters["pctci"] = lambda v: (
        "n/a" if not v or v[0] is None else f"[{100 * v[0]:.0f}%, {100 * v[1]:.0f}%]"
    )
    env.filters["vclass"] = lambda v: "v-" + str(v).replace(" ", "-")
    env.filters["ptext"] = _p_text
    env.filters["num"] = _num_text
    from markupsafe import Markup

    # the page's CSS and JS are inlined verbatim (read as text, never parsed as templates)
    assert env.loader is not None
    raw = {n: Markup(env.loader.get_source(env, f"report.{n}.j2")[0]) for n in ("css", "js")}
    return env.get_template("report.html.j2").render(
        **ctx, inline_css=raw["css"], inline_js=raw["js"]
    )


def _num_text(v: float | None) -> str:
    """A control's figure: counts as integers, other values to 3 decimals, ``None`` as n/a."""
    if v is None:
        return "n/a"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.3f}"


def _p_text(p: float | None, n_null: int | None = None) -> str:
    """An empirical p-value at its resolution ("< 1/2001" at the floor), by ``evidence.stats.format_p``."""
    from convlens.analysis.evidence.stats import format_p

    return format_p(p, n_null)


def _check_report_destination(inp: ReportInputs, dest: Path) -> None:
    """Refuse to write the report over what it reads or over any file that is not a report: the
    analysis itself, a file inside the run directory other than ``report.html``, the analysed
    model file, or any existing file that does not end in ``.html``."""
    if inp.analysis_path is not None and dest.resolve() == inp.analysis_path.resolve():
        raise ConvlensError(f"the report would overwrite its own analysis {str(dest)!r}")
    target = dest.resolve()
    if inp.kind == "run" and target.parent == inp.root.resolve() and dest.name != "report.html":
        raise ConvlensError(
            f"the report would overwrite {str(dest)!r} inside the run directory; write it to "
            "report.html there or outside the run"
        )
    model = inp.a.source.path if inp.a.source.kind == "model_file" else None
    if model is not None and Path(model).exists() and target == Path(model).resolve():
        raise ConvlensError(f"the report would overwrite the analysed model file {str(dest)!r}")
    if dest.exists() and dest.suffix.lower() not in (".html", ".htm"):
        raise ConvlensError(
            f"the report would overwrite {str(dest)!r}, which is not an HTML file; choose a "
            "new path ending in .html"
        )


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of a run directory (with its ``analysis.json``) or of a model-file
    analysis (``MODEL.analysis.json``) to HTML; return its path (default: ``RUN/report.html`` or
    ``MODEL.report.html`` beside the analysis)."""
    inp = load_inputs(run_dir)
    dest = Path(out) if out else default_report_path(inp)
    _check_report_destination(inp, dest)
    try:
        html = render_html(build_context(inp))
    except (KeyError, AttributeError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        # analysis.json passed the type checks but its values do not fit together (edited by hand,
        # or from another run): say which file, never a traceback
        msg = " ".join(str(exc).split())[:200]
        raise ConvlensError(
            f"{str(inp.analysis_path)!r} passed the schema but its values do not fit this "
            f"run ({type(exc).__name__}: {msg}); analyse the run again"
        ) from None
    write_text(dest, html)
    return dest
