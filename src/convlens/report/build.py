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

import shlex
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
    ("arithmetic", "1. The arithmetic"),
    ("crosscorr", "2. Cross-correlation, verified"),
    ("classical", "3. Classical kernels"),
    ("learned", "4. What the first layer learned"),
    ("evolution", "5. Evolution over training"),
    ("featuremaps", "6. Feature maps and two kinds of correlation"),
    ("distribution", "7. In- vs out-of-distribution activations"),
    ("receptive", "8. Receptive fields: local vs global"),
    ("limits", "9. What this does and does not show"),
    ("reproduce", "10. Reproduce"),
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


@dataclass
class ReportInputs:
    """What the sections read: the typed result and the run's arrays (loaded once)."""

    root: Path
    a: AnalysisResult
    seeds: SeedsSummary | None
    probe_x: NDArray[np.float32] | None
    probe_maps: dict[int, dict[str, NDArray[np.float32]]]
    final: dict[str, NDArray[Any]]

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


def _load_tensors(path: Path) -> dict[str, NDArray[Any]]:
    from safetensors.numpy import load_file

    # a 1-D conv weight (O, C, K) is drawn as 1 x K images (what it computes on a 1 x L signal)
    return {k: v[:, :, None, :] if v.ndim == 3 else v for k, v in load_file(str(path)).items()}


def load_inputs(run_dir: str | Path) -> ReportInputs:
    from convlens.analysis.featuremaps import load_probes

    root = Path(run_dir)
    apath = root / "analysis.json"
    if not apath.is_file():
        raise ConvlensError(
            f"{str(root)!r} has no analysis.json: analyse the run before building its report",
            hint_key="no_analysis",
        )
    a = AnalysisResult.read(apath)
    if a.run is None:
        raise ConvlensError(f"{str(apath)!r} is not the analysis of a training run")
    seeds_path = root / "seeds.json"
    seeds = SeedsSummary.read(seeds_path) if seeds_path.is_file() else None
    probe_x, probe_maps = load_probes(root / "probes")
    model = root / "model.safetensors"
    final = _load_tensors(model) if model.is_file() else {}
    return ReportInputs(root, a, seeds, probe_x, probe_maps, final)


# ----------------------------------------------------------------------------- sections
def section_header(inp: ReportInputs) -> dict[str, Any]:
    run = inp.a.run
    assert run is not None  # load_inputs refuses results without a run
    ds = run.dataset
    norm = ds.get("normalisation") or {}
    return {
        "dataset": ds.get("name", "?"),
        "source": ds.get("source", "?"),
        "n": ds.get("n", "?"),
        "shape": "x".join(str(v) for v in ds.get("shape", [])),
        "n_test": (ds.get("splits") or {}).get("test", "?"),
        "model": run.model.get("name", "?"),
        "cfg": run.config,
        "device": run.device or "?",
        "version": __version__,
        "versions": run.versions,
        "notes": list(inp.a.notes),
        "errors": [f"{e.stage}: {e.message}" for e in inp.a.errors],
        "normalisation": {
            "to_unit_range": norm.get("to_unit_range", "?"),
            "rule": norm.get("rule", "?"),
            "mean": norm.get("mean"),
            "std": norm.get("std"),
        },
    }


def section_headline(inp: ReportInputs) -> dict[str, Any]:
    m0 = inp.first.matching if inp.first is not None else None
    return {
        "h": inp.a.headline,
        "m0": m0 if m0 is not None and not m0.skipped else None,
        "classical": inp.a.verdicts.classical_kernels,
        "spectrum": inp.a.verdicts.classical_kernels_spectrum_null,
        "origin": inp.a.verdicts.kernel_learning,
    }


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
    from convlens.analysis.matching import random_null

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
        "origin": _kernel_origin(inp.a),
    }
    k = m0.kernel_size
    final_w = inp.final.get(first.identity.weight_key)
    if final_w is not None:
        learned, matched, labels = [], [], []
        for rec_k in m0.kernels:
            kern = final_w[rec_k.out_channel, rec_k.in_channel]
            learned.append(kern - kern.mean())  # the match is made after removing the mean
            matched.append(rec_k.sign * _bank_kernel(rec_k.best_match, k))
            labels.append(f"{rec_k.best_match.split('(')[0]} {rec_k.score:.2f}")
        out["figure"] = figures.learned_vs_bank(learned, matched, labels)
        s = inp.a.settings
        null = random_null(k, s.n_null, s.seed)
        evo = inp.a.evolution.epochs if inp.a.evolution is not None else []
        init_scores = evo[0].first_layer_scores if evo else None
        out["null_figure"] = figures.null_histogram(
            null, [r.score for r in m0.kernels], init_scores, float(np.percentile(null, 95))
        )
    return out


def _kernel_origin(a: AnalysisResult) -> dict[str, Any] | None:
    """The three-way kernel verdict with its controls' figures (issue 14), or ``None``."""
    v = a.verdicts.kernel_learning
    if v is None:
        return None
    patch = next((c for c in a.controls if c.kind == "input_statistics"), None)
    rows = []
    for name, prop in v.proportions.items():
        f = patch.figures if patch is not None else {}
        rows.append(
            {
                "name": name.replace("_", " "),
                "prop": prop,
                "energy": f.get(f"{name}.energy_median"),
                "angles": f.get(f"{name}.angles_mean_cos2"),
                "zca": f.get(f"{name}.zca_median"),
            }
        )
    control = next((c for c in a.controls if c.kind == "random_labels"), None)
    return {"v": v, "rows": rows, "patch": patch, "command": control.command if control else None}


def section_evolution(inp: ReportInputs) -> dict[str, Any] | None:
    evo = inp.a.evolution
    first = inp.first
    if evo is None or not evo.epochs or first is None:
        return None
    eps = [r.epoch for r in evo.epochs]
    pick = sorted({eps[0], eps[len(eps) // 4], eps[len(eps) // 2], eps[-1]})
    key = first.identity.weight_key
    grid = [(e, inp.snapshot(e)[key]) for e in pick]
    layers = list(evo.epochs[0].distance_from_init)
    curves = figures.evolution_curves(
        eps,
        [r.first_layer_fraction_above_null95 or 0.0 for r in evo.epochs],
        [r.first_layer_median_score or 0.0 for r in evo.epochs],
        evo.null_p95 or 0.0,
        {layer: [r.distance_from_init[layer] for r in evo.epochs] for layer in layers},
    )
    return {
        "grid": figures.kernel_grid_over_epochs(grid),
        "curves": curves,
        "epochs": pick,
        "cka": _cka_rows(inp.a),
    }


def _cka_rows(a: AnalysisResult) -> dict[str, Any] | None:
    """Per layer: CKA vs final at a few epochs, the untrained floor and the settling epoch."""
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


def _probe_choice(inp: ReportInputs) -> list[tuple[str, int]]:
    """One probe per set (the last of each), at most four sets."""
    sets = inp.probe_sets
    return [(s, [i for i, p in enumerate(sets) if p == s][-1]) for s in dict.fromkeys(sets)][:4]


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
    out: dict[str, Any] = {
        "figure": figures.feature_maps_over_epochs(rows),
        "figure_last": figures.feature_maps_over_epochs(rows2),
        "last_layer": last_layer,
        "ncc": _ncc(inp),
        "correlation": _channel_correlations(inp),
    }
    return out


def _ncc(inp: ReportInputs) -> dict[str, Any] | None:
    from convlens.analysis import featuremaps

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
    return {
        "info": info,
        "layers": per_layer,
        "descriptions": {o.name: o.description for o in info.ood},
        "figure": figures.activation_bars(per_layer),
    }


def section_receptive(inp: ReportInputs) -> dict[str, Any] | None:
    rf = inp.a.receptive_fields
    if rf is None:
        return None
    theo = {t.name: t for t in rf.theoretical}
    return {
        "theoretical": rf.theoretical,
        "effective": rf.effective,
        "figure": figures.receptive_figure(rf.effective, theo),
    }


def section_seeds(inp: ReportInputs) -> SeedsSummary | None:
    return inp.seeds


def section_reproduce(inp: ReportInputs) -> dict[str, Any]:
    return {"commands": reproduce_commands(inp), "timings": inp.a.timings_s}


def reproduce_commands(inp: ReportInputs) -> list[str]:
    run = inp.a.run
    assert run is not None
    cfg, root = run.config, inp.root
    train = ["convlens", "train", "--data", str(cfg["data"])]
    if cfg.get("model"):
        train += ["--model", str(cfg["model"])]
    for opt in ("epochs", "seed", "batch_size", "lr", "weight_decay", "optimizer"):
        train += [f"--{opt.replace('_', '-')}", str(cfg[opt])]
    train += ["--out", str(root), "--force"]
    s = inp.a.settings
    analyze = ["convlens", "analyze", str(root), "--null-size", str(s.n_null)]
    analyze += ["--seed", str(s.seed)]
    return [shlex.join(train), shlex.join(analyze), shlex.join(["convlens", "report", str(root)])]


SECTION_BUILDERS: dict[str, Callable[[ReportInputs], Any]] = {
    "header": section_header,
    "headline": section_headline,
    "arithmetic": section_arithmetic,
    "crosscorr": section_crosscorr,
    "classical": section_classical,
    "learned": section_learned,
    "evolution": section_evolution,
    "featuremaps": section_featuremaps,
    "distribution": section_distribution,
    "receptive": section_receptive,
    "seeds": section_seeds,
    "reproduce": section_reproduce,
}


def build_context(inp: ReportInputs) -> dict[str, Any]:
    """Every section's context, keyed by section id (``None`` where a section has no data)."""
    ctx: dict[str, Any] = {name: build(inp) for name, build in SECTION_BUILDERS.items()}
    ctx["sections"] = SECTIONS
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
    env.filters["vclass"] = lambda v: "v-" + str(v).replace(" ", "-")
    env.filters["ptext"] = _p_text
    return env.get_template("report.html.j2").render(**ctx)


def _p_text(p: float | None, n_null: int | None = None) -> str:
    """An empirical p-value at its resolution ("< 1/2001" at the floor), never 0.000."""
    from convlens.analysis.units import format_p

    return format_p(p, n_null)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of a run directory (with its ``analysis.json``) to HTML; return its path."""
    inp = load_inputs(run_dir)
    dest = Path(out) if out else inp.root / "report.html"
    try:
        html = render_html(build_context(inp))
    except (KeyError, AttributeError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        # analysis.json passed the type checks but its values do not fit together (edited by hand,
        # or from another run): say which file, never a traceback
        msg = " ".join(str(exc).split())[:200]
        raise ConvlensError(
            f"{str(inp.root / 'analysis.json')!r} passed the schema but its values do not fit this "
            f"run ({type(exc).__name__}: {msg}); analyse the run again"
        ) from None
    write_text(dest, html)
    return dest
