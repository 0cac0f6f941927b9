"""Build the self-contained HTML report of a run from its artifacts and ``analysis.json``.

Everything shown is read from the run directory or recomputed from it with the library (the seed's
worked example, classical feature maps of a probe image, NCC views); every figure has a caption
saying what was measured. No external assets: figures are PNG data URIs, CSS is inline.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from convlens import __version__
from convlens._atomic import write_text
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


def _arithmetic() -> dict[str, Any]:
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


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _classical(image: np.ndarray) -> dict[str, Any]:
    from convlens.kernels import parse_kernel_spec
    from convlens.ops import correlate2d

    specs = [
        "sobel_x",
        "sobel_y",
        "laplacian_4",
        "log:sigma=1,size=5",
        "gabor:angle=0,frequency=0.2,size=7",
        "gabor:angle=90,frequency=0.2,size=7",
    ]
    items = []
    rows = []
    for s in specs:
        k = parse_kernel_spec(s)
        fmap = correlate2d(image.astype(np.float64), k.weights.astype(np.float64), padding="same")
        items.append((s.split(":")[0] if ":" not in s else s.split(":")[0] + "*", k.weights, fmap))
        rows.append(
            {"spec": s, "source": k.source, "normalisation": k.normalisation, "skimage": k.skimage}
        )
    return {"figure": figures.kernels_and_maps(image, items), "rows": rows}


def _bank_kernel(label: str, k: int) -> np.ndarray:
    from convlens.kernels import matching_bank

    for e in matching_bank(k):
        if e.label == label:
            return e.weights
    return np.zeros((k, k))


def build_context(run_dir: Path) -> dict[str, Any]:
    from convlens.analysis import featuremaps
    from convlens.train import RunDir

    run = RunDir(run_dir)
    rec = run.read_run()
    apath = run.root / "analysis.json"
    if not apath.is_file():
        raise ConvlensError(
            f"{str(run.root)!r} has no analysis.json: run `convlens analyze {run.root}` first"
        )
    try:
        a = json.loads(apath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{str(apath)!r} is not valid JSON: {exc}") from None
    cfg = rec["config"]
    ctx: dict[str, Any] = {
        "sections": SECTIONS,
        "rec": rec,
        "a": a,
        "cfg": cfg,
        "version": __version__,
        "h": a.get("headline", {}),
        "verdicts": a.get("verdicts", {}),
    }
    ctx["arith"] = _arithmetic()
    probe_x, probe_maps = featuremaps.load_probes(run.root / "probes")
    meta = rec.get("probes", [])
    train_idx = [i for i, p in enumerate(meta) if p["set"] == "train"]
    image = probe_x[train_idx[-1], 0] if probe_x is not None and train_idx else None
    ctx["classical"] = _classical(image) if image is not None else None

    # learned kernels vs bank
    m0 = (a.get("matching") or [None])[0]
    ctx["m0"] = m0
    snaps = sorted((run.root / "snapshots").glob("epoch-*.safetensors"))
    final = _load_tensors(run.model) if run.model.is_file() else {}
    final_w = final.get("conv1.weight")
    if m0 and not m0.get("skipped") and final_w is not None:
        k = m0["kernel_size"]
        learned, matched, labels = [], [], []
        for rec_k in m0["kernels"]:
            kern = final_w[rec_k["out_channel"], rec_k["in_channel"]]
            learned.append(kern - kern.mean())  # the match is made after removing the mean
            matched.append(rec_k["sign"] * _bank_kernel(rec_k["best_match"], k))
            labels.append(f"{rec_k['best_match'].split('(')[0]} {rec_k['score']:.2f}")
        ctx["learned_fig"] = figures.learned_vs_bank(learned, matched, labels)
        from convlens.analysis.matching import random_null

        settings = a.get("settings", {})
        null = random_null(k, int(settings.get("n_null", 2000)), int(settings.get("seed", 0)))
        evo = (a.get("evolution") or {}).get("epochs") or []
        init_scores = evo[0].get("first_layer_scores") if evo else None
        ctx["null_fig"] = figures.null_histogram(
            null, [r["score"] for r in m0["kernels"]], init_scores, m0["null"]["p95"]
        )
    # evolution
    evo = a.get("evolution") or {}
    if evo.get("epochs") and snaps:
        eps = [r["epoch"] for r in evo["epochs"]]
        pick = sorted({eps[0], eps[len(eps) // 4], eps[len(eps) // 2], eps[-1]})
        grid = [(e, _load_tensors(run.snapshot(e))["conv1.weight"]) for e in pick]
        ctx["evo_grid"] = figures.kernel_grid_over_epochs(grid)
        layers = list(evo["epochs"][0]["distance_from_init"])
        ctx["evo_curves"] = figures.evolution_curves(
            eps,
            [r.get("first_layer_fraction_above_null95", 0.0) for r in evo["epochs"]],
            [r.get("first_layer_median_score", 0.0) for r in evo["epochs"]],
            evo.get("null_p95") or 0.0,
            {layer: [r["distance_from_init"][layer] for r in evo["epochs"]] for layer in layers},
        )
        ctx["evo_epochs"] = pick
    # feature maps
    if probe_x is not None and probe_maps:
        epochs = sorted(probe_maps)
        chosen: list[tuple[str, int]] = []
        for s in dict.fromkeys(p["set"] for p in meta):
            idx = [i for i, p in enumerate(meta) if p["set"] == s]
            chosen.append((s, idx[-1]))
        rows = []
        for s, i in chosen[:4]:
            rows.append(
                (
                    s,
                    probe_x[i, 0],
                    [(e, probe_maps[e]["conv1"][i]) for e in (epochs[0], epochs[-1])],
                )
            )
        ctx["fm_fig"] = figures.feature_maps_over_epochs(rows)
        last_layer = list(probe_maps[epochs[-1]])[-1]
        rows2 = [
            (s, probe_x[i, 0], [(epochs[-1], probe_maps[epochs[-1]][last_layer][i])])
            for s, i in chosen[:4]
        ]
        ctx["fm_fig2"] = figures.feature_maps_over_epochs(rows2)
        ctx["fm_last_layer"] = last_layer
        if m0 and m0.get("kernels") and final_w is not None and image is not None:
            best = max(m0["kernels"], key=lambda r: r["score"])
            kern = final_w[best["out_channel"], best["in_channel"]]
            bias = float(final.get("conv1.bias", np.zeros(final_w.shape[0]))[best["out_channel"]])
            view = featuremaps.ncc_view(image, kern, bias)
            ctx["ncc_fig"] = figures.ncc_figure(image, kern, view["raw"], view["ncc"])
            ctx["ncc_r"] = view["pearson_raw_vs_ncc"]
            ctx["ncc_channel"] = best["out_channel"]
        fm = a.get("feature_maps", {}).get("layers", {})
        if fm:
            ctx["corr_fig"] = figures.correlation_matrices(
                {
                    f"{layer} (final)": np.asarray(v["channel_correlation_final"])
                    for layer, v in fm.items()
                }
            )
            ctx["corr_stats"] = {
                layer: float(
                    np.mean(
                        np.abs(
                            np.asarray(v["channel_correlation_final"])[
                                ~np.eye(len(v["channel_correlation_final"]), dtype=bool)
                            ]
                        )
                    )
                )
                for layer, v in fm.items()
            }
    dist = a.get("distribution")
    if dist:
        ctx["dist_fig"] = figures.activation_bars(dist["layers"])
    rf = a.get("receptive_fields")
    if rf:
        theo = {t["name"]: t for t in rf["theoretical"]}
        ctx["rf_fig"] = figures.receptive_figure(rf["effective"], theo)
    ctx["commands"] = reproduce_commands(run.root, rec, a)
    seeds = run.root / "seeds.json"
    ctx["seeds"] = json.loads(seeds.read_text()) if seeds.is_file() else None
    return ctx


def reproduce_commands(root: Path, rec: dict[str, Any], a: dict[str, Any]) -> list[str]:
    cfg = rec["config"]
    train = [
        "convlens",
        "train",
        "--data",
        str(cfg["data"]),
        "--epochs",
        str(cfg["epochs"]),
        "--seed",
        str(cfg["seed"]),
        "--batch-size",
        str(cfg["batch_size"]),
        "--lr",
        str(cfg["lr"]),
        "--weight-decay",
        str(cfg["weight_decay"]),
        "--optimizer",
        str(cfg["optimizer"]),
        "--out",
        str(root),
        "--force",
    ]
    if cfg.get("model"):
        train[3:3] = ["--model", str(cfg["model"])]
    s = a.get("settings", {})
    return [
        shlex.join(train),
        shlex.join(
            [
                "convlens",
                "analyze",
                str(root),
                "--null-size",
                str(s.get("n_null", 2000)),
                "--seed",
                str(s.get("seed", 0)),
            ]
        ),
        shlex.join(["convlens", "report", str(root)]),
    ]


def render_html(ctx: dict[str, Any]) -> str:
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("convlens.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"
    env.filters["f3"] = lambda v: "n/a" if v is None else f"{v:.3f}"
    env.filters["f2"] = lambda v: "n/a" if v is None else f"{v:.2f}"
    env.filters["sci"] = lambda v: "n/a" if v is None else f"{v:.1e}"
    env.filters["ci"] = lambda v: "n/a" if not v or v[0] is None else f"[{v[0]:.3f}, {v[1]:.3f}]"
    return env.get_template("report.html.j2").render(**ctx)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    root = Path(run_dir)
    ctx = build_context(root)
    dest = Path(out) if out else root / "report.html"
    write_text(dest, render_html(ctx))
    return dest
