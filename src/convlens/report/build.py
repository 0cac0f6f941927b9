"""Build the self-contained HTML report of a run from its typed analysis result.

One small function per report section: each takes :class:`~convlens.report.inputs.ReportInputs`
(the typed :class:`~convlens.analysis.result.AnalysisResult`, the optional across-seeds summary and
the run's arrays: snapshots, probe feature maps, final weights; read in :mod:`.inputs`) and returns
that section's context, or ``None`` when the run has no data for it. The sections about the run
itself (header, over training, loss and accuracy) are in :mod:`.run_sections`. The template is rendered with ``StrictUndefined``: a
field the template names but a section does not provide is an error, never a blank.

Everything shown is read from the run directory or recomputed from it with the library (the seed's
worked example, classical feature maps of a probe image, NCC views); every figure has a caption
saying what was measured. No external assets: figures are PNG data URIs, CSS is inline. Importing
this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens._atomic import write_text
from convlens.analysis.result import LayerResult, SeedsSummary
from convlens.errors import ConvlensError
from convlens.report import figures
from convlens.report.beside import Beside, read_beside, section_beside
from convlens.report.channels import section_channels
from convlens.report.inputs import (
    ReportInputs,
    check_report_destination,
    default_report_path,
    load_inputs,
)
from convlens.report.run_sections import section_evolution, section_header, section_training

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
    ("channels", "Channels"),
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


# ----------------------------------------------------------------------------- sections
def section_answer(inp: ReportInputs) -> dict[str, Any]:
    """The first screen: the plain answer with this analysis's own numbers and verdicts."""
    from convlens.analysis.evidence.answer import answer as one_answer
    from convlens.report.answer import answer

    out = answer(inp.a)
    out["one"] = one_answer(inp.a, inp.seeds)  # the same lines as the CLI and the README
    return out


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
        "mc": multichannel_example(),
    }


#: the multi-channel step's input: channels, side, largest kernel (small integers: exact sums)
MC_SHAPE = (3, 7, 5)


def multichannel_example(seed: int = 7) -> dict[str, Any]:
    """The multi-channel step's numbers: a C x S x S input of digits 0..9, a C x K x K kernel of
    integers -2..2 (the page uses its top-left k x k block for a k x k kernel) and a bias."""
    c, side, kmax = MC_SHAPE
    rng = np.random.default_rng(seed)
    return {
        "c": c,
        "side": side,
        "kmax": kmax,
        "x": rng.integers(0, 10, (c, side, side)).tolist(),
        "w": rng.integers(-2, 3, (c, kmax, kmax)).tolist(),
        "b": -4,
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
        "init_verdict": inp.a.verdicts.differs_from_init,
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
        note = None  # a property of the layer (e.g. 1x1 kernels), not missing data
        if m is None:
            why = "this layer was not matched"
        elif m.skipped:
            note = f"not matched against the bank: {m.skipped}"
        elif w is None:
            why = (
                "its weights are not beside this analysis (re-run `convlens analyze` on the model "
                "file: it keeps a .pt/.onnx file's conv kernels as MODEL.kernels.safetensors)"
            )
        rows.append({"layer": layer, "m": m, "cards": cards, "why": why, "note": note})
    return rows


def section_playground(inp: ReportInputs) -> dict[str, Any]:
    """The playground's kernels and sample images (the page computes the feature map)."""
    from convlens.report.interactive import playground_kernels, sample_images

    return {
        "kernels": playground_kernels(
            inp.final.get(inp.first.identity.weight_key) if inp.first is not None else None,
            inp.first.name if inp.first is not None else "conv1",
        ),
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
    "channels": lambda inp: section_channels(inp.a, inp.analysis_path),
    "distribution": section_distribution,
    "controls": section_controls,
    "receptive": section_receptive,
    "seeds": section_seeds,
    "reproduce": section_reproduce,
}


def build_context(
    inp: ReportInputs, beside: Beside | None = None, dest: Path | None = None
) -> dict[str, Any]:
    """Every section's context, keyed by section id (``None`` where a section has no data); with
    ``beside``, the answer section shows that run's first layer beside this one's (``dest``: where
    the report goes, for the link to the other run's report)."""
    ctx: dict[str, Any] = {name: build(inp) for name, build in SECTION_BUILDERS.items()}
    ctx["beside"] = section_beside(inp, beside, dest or default_report_path(inp))
    ctx["shown"], ctx["omitted"] = shown_sections(inp, ctx)
    ctx["sections"] = [(k, t) for k, t in SECTIONS if k in ctx["shown"]]
    from convlens.report.answer import GLOSSARY
    from convlens.report.interactive import network_payload

    ctx["gl"] = {k: {"term": t, "text": d} for k, (t, d) in GLOSSARY.items()}
    arith, play = ctx["arithmetic"], ctx["playground"]
    ctx["payload"] = {
        "worked": {"kernel": arith["kernel"], "input": arith["input"]},
        "mc": arith["mc"],
        "playground": {**play, "max_side": UPLOAD_SIDE},
        "slider": ctx["evolution"]["slider"],
        "net": network_payload(inp.a.run.model, inp.a.run.dataset, inp.final)
        if inp.kind == "run" and inp.a.run is not None
        else None,
        "charts": {
            **((ctx["training"] or {}).get("charts") or {}),
            **(ctx["evolution"].get("charts") or {}),
        },
        "max_channels": MAX_MAP_CHANNELS,
    }
    return ctx


#: sections a model file never has data for: it carries no training history
TRAINING_ONLY = ("evolution", "training", "seeds")
#: sections that need the model run on data (``analyze --factory/--data``) or a control
DATA_SECTIONS = (
    "crosscorr",
    "classical",
    "featuremaps",
    "channels",
    "distribution",
    "receptive",
    "controls",
)
SEEDS_TITLE = "Across seeds"


def shown_sections(inp: ReportInputs, ctx: dict[str, Any]) -> tuple[set[str], list[str]]:
    """The section ids the page shows, and the titles of those left out. A run's report shows every
    section (one with no data says why: e.g. a run trained without snapshots); a model file's
    report shows only the sections it has data for, and names the others once."""
    every = {k for k, _ in SECTIONS} | {"seeds"}
    if inp.kind == "run":
        return every, []
    hidden = set(TRAINING_ONLY) | {k for k in DATA_SECTIONS if not ctx.get(k)}
    titles = dict(SECTIONS) | {"seeds": SEEDS_TITLE}
    return every - hidden, [titles[k] for k, _ in [*SECTIONS, ("seeds", "")] if k in hidden]


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
    from convlens.report.answer import humanise

    env.filters["words"] = lambda v: humanise(str(v))
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


def build_report(
    run_dir: str | Path, out: str | Path | None = None, beside: str | Path | None = None
) -> Path:
    """Render the report of a run directory (with its ``analysis.json``) or of a model-file
    analysis (``MODEL.analysis.json``) to HTML; return its path (default: ``RUN/report.html`` or
    ``MODEL.report.html`` beside the analysis). ``beside``: another analysed run (e.g. the
    natural-image demo) whose first layer the answer section shows beside this one's."""
    inp = load_inputs(run_dir)
    dest = Path(out) if out else default_report_path(inp)
    check_report_destination(inp, dest)
    other = read_beside(beside, inp.root) if beside is not None else None
    try:
        html = render_html(build_context(inp, other, dest))
    except ConvlensError:  # a file the sections read (metrics.jsonl, a snapshot) says what it is
        raise
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
