"""The natural-image demo's first-layer figures over seeds (issue 27), from a finished
``convlens demo --data natural`` folder: what docs/natural.md quotes (docs/natural.json).

Run: python -m bench.natural DEMO_DIR [--write]   (DEMO_DIR from ``convlens demo --data natural
--seeds 5 --out DEMO_DIR``; ``--write`` updates docs/natural.json and the generated part of
docs/natural.md)

Per seed, for the first layer of the trained run and of its random-label control (the control's
weights analysed here as the demo analyses the trained run's; the demo trains the controls but
analyses only the trained runs):
- live units above the spectrum-matched null (the headline null) and above the random null;
- units "Gabor-like or edge" with a good Gabor fit: the unit's category is Gabor-like or
  edge/gradient (which already means above the random null, and live) and the Gabor fit of its
  best slice (the input channel with the highest match score) has R^2 >= 0.7;
- oriented units: category Gabor-like, edge/gradient or line and orientation selectivity >= 0.3;
  their preferred orientations (of the kernel's gradient, degrees in [0, 180)) binned in 8 bins of
  22.5 degrees centred on 0, 22.5, ...: the bins covered;
- colour-opponent units; the held-out test accuracy (``run.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from convlens._serde import to_jsonable
from convlens.data.natural import CLASSES

R2 = 0.7
BINS = 8
EDGE_LIKE = ("Gabor-like", "edge/gradient")
ORIENTED = ("Gabor-like", "edge/gradient", "line")
SELECTIVE = 0.3
ROOT = Path(__file__).resolve().parent.parent
DOC_JSON = ROOT / "docs" / "natural.json"
DOC_MD = ROOT / "docs" / "natural.md"
START, END = "<!-- natural-figures:start -->", "<!-- natural-figures:end -->"


def orientation_bins(
    orientation: list[float | None], selectivity: list[float | None], categories: list[str]
) -> tuple[int, list[int]]:
    """How many units are oriented (category in :data:`ORIENTED`, selectivity >= :data:`SELECTIVE`)
    and the bins of 22.5 degrees, centred on 0, 22.5, ..., that their preferred orientations fill."""
    oriented = [
        o
        for o, s, c in zip(orientation, selectivity, categories, strict=True)
        if o is not None and s is not None and s >= SELECTIVE and c in ORIENTED
    ]
    return len(oriented), sorted(
        {int(((o + 180 / BINS / 2) % 180) // (180 / BINS)) for o in oriented}
    )


def first_layer(analysis: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run's first layer (``analysis.json`` as a dict)."""
    layer = min(analysis["layers"], key=lambda ly: ly["identity"]["index"])
    m = layer["matching"]
    u = m["units"]
    best: dict[int, tuple[float, float]] = {}  # unit -> (best slice score, its Gabor R^2)
    for k in m.get("kernels") or []:
        r2 = (k.get("gabor_fit") or {}).get("r2", float("nan"))
        if k["out_channel"] not in best or k["score"] > best[k["out_channel"]][0]:
            best[k["out_channel"]] = (k["score"], r2)
    cats = u["unit_categories"]
    good = [i for i, c in enumerate(cats) if c in EDGE_LIKE and best.get(i, (0, 0))[1] >= R2]
    n_oriented, bins = orientation_bins(u["orientation"], u["selectivity"], cats)
    return {
        "units": u["n_live"],
        "above_spectrum_null": u["above_spectrum_null95"],
        "above_random_null": u["above_null95"],
        "gabor_or_edge_r2": len(good),
        "oriented_units": n_oriented,
        "orientation_bins": bins,
        "colour_opponent": cats.count("colour-opponent"),
        "categories": u["categories"],
    }


def control_layer(run: Path) -> dict[str, Any]:
    """:func:`first_layer` of a control run, its first conv weight analysed here (RGB: the colour
    rule applies, as for the trained run's first layer)."""
    from safetensors.numpy import load_file

    from convlens.analysis import analyze_weights

    w = load_file(str(run / "model.safetensors"))["conv1.weight"].astype(np.float64)
    layer = analyze_weights({"conv1.weight": w})[0]
    return first_layer({"layers": [to_jsonable(layer)]})


def summarise(demo: Path) -> dict[str, Any]:
    seeds_file = json.loads((demo / "seeds.json").read_text())
    runs = sorted(p for p in (demo / "seeds").glob("seed-*") if p.is_dir())
    out: dict[str, Any] = {"demo": str(demo.name), "per_seed": [], "controls": []}
    for run in [demo, *runs]:
        a = json.loads((run / "analysis.json").read_text())
        record = json.loads((run / "run.json").read_text())
        row = first_layer(a)
        row["seed"] = record["seed"]
        row["test_accuracy"] = record["result"]["test_accuracy"]
        out["per_seed"].append(row)
        ctl = demo / "seeds" / f"random-labels-seed-{record['seed']}"
        if (ctl / "model.safetensors").is_file():
            crow = control_layer(ctl)
            crow["seed"] = record["seed"]
            crow["test_accuracy"] = json.loads((ctl / "run.json").read_text())["result"][
                "test_accuracy"
            ]
            out["controls"].append(crow)
    tot = out["per_seed"]
    units = sum(r["units"] for r in tot)
    out["totals"] = {
        "seeds": len(tot),
        "units": units,
        "above_spectrum_null": sum(r["above_spectrum_null"] for r in tot),
        "gabor_or_edge_r2": sum(r["gabor_or_edge_r2"] for r in tot),
        "orientation_bins_covered": sorted({b for r in tot for b in r["orientation_bins"]}),
        "colour_opponent": sum(r["colour_opponent"] for r in tot),
    }
    kl = seeds_file["verdicts"]["kernel_learning"]
    out["origin"] = {"verdict": kl["verdict"], "content": kl["content"]}
    out["classical_kernels_pooled"] = seeds_file["classical_kernels_pooled"]
    return out


def _row(r: dict[str, Any], label: str) -> str:
    return (
        f"| {label} | {r['units']} | {r['above_spectrum_null']} | {r['gabor_or_edge_r2']} | "
        f"{r['oriented_units']}: {r['orientation_bins']} | {r['colour_opponent']} | "
        f"{r['test_accuracy']:.2f} |"
    )


def _pair(s: dict[str, Any], pair: str) -> dict[str, Any]:
    return next(c for c in s["origin"]["content"] if c["pair"] == pair)


def markdown(s: dict[str, Any]) -> str:
    t = s["totals"]
    c = s["classical_kernels_pooled"]
    tr, ri = _pair(s, "trained vs random_labels"), _pair(s, "random_labels vs init")
    per = [r["gabor_or_edge_r2"] for r in s["per_seed"]]
    bins = [len(r["orientation_bins"]) for r in s["per_seed"]]
    lines = [
        START,
        "| seed | live units | above the spectrum null | Gabor-like or edge, best slice R^2 >= 0.7 | "
        "oriented units: their bins of 22.5 deg | colour-opponent | held-out test accuracy |",
        "|---|---|---|---|---|---|---|",
        *[_row(r, str(r["seed"])) for r in s["per_seed"]],
        f"| all {t['seeds']} | {t['units']} | {t['above_spectrum_null']} "
        f"({t['above_spectrum_null'] / t['units']:.0%}) | {t['gabor_or_edge_r2']} "
        f"({t['gabor_or_edge_r2'] / t['units']:.0%}) | {len(t['orientation_bins_covered'])} of "
        f"{BINS} bins | {t['colour_opponent']} | (chance {1 / len(CLASSES):.2f}) |",
        *[_row(r, f"random labels, seed {r['seed']}") for r in s["controls"]],
        "",
        f"- **Classical kernels: {c['verdict']}** against the spectrum-matched null: {c['above']} "
        f"of {c['n']} units, {c['fraction']:.0%} [{c['ci'][0]:.0%}, {c['ci'][1]:.0%}], binomial p "
        f"{c['p_value']:.2g}.",
        f"- **Kernel origin: {s['origin']['verdict']}.** Trained vs random-label kernels: energy "
        f"distance p {tr['p_text']} ({tr['n_a']} vs {tr['n_b']} units, {tr['seeds']} seeds, whole "
        f"networks exchanged); orientation selectivity {tr['selectivity_diff']:+.2f} "
        f"[{tr['selectivity_ci90'][0]:+.2f}, {tr['selectivity_ci90'][1]:+.2f}] (90%). The random-"
        f"label networks vs their initialisation: p {ri['p_text']}, "
        f"{'equivalent within the margins' if ri['equivalent'] else 'not shown equivalent'}: the "
        "control did not learn (it stays at chance), so this verdict separates kernels the task "
        "shaped from kernels nothing shaped; it cannot show what the images alone would teach.",
        f"- Gabor-like or edge with R^2 >= {R2}: {t['gabor_or_edge_r2']} of {t['units']} units "
        f"({min(per)}-{max(per)} of 16 per seed); orientation bins covered: "
        f"{len(t['orientation_bins_covered'])} of {BINS} over the seeds, {min(bins)}-{max(bins)} per "
        f"seed; colour-opponent units: {t['colour_opponent']}.",
        END,
    ]
    return "\n".join(lines)


README_START = "<!-- natural-readme:start (generated by `python -m bench.natural DEMO --write`) -->"
README_END = "<!-- natural-readme:end -->"


def readme_block(s: dict[str, Any]) -> str:
    """The README's lines on the natural demo, from the same figures as docs/natural.md."""
    t = s["totals"]
    pooled = s["classical_kernels_pooled"]
    origin = s["origin"]
    return "\n".join([
        README_START,
        f"Over {t['seeds']} seeds ({t['units']} first-layer units): classical kernels "
        f"**{pooled['verdict']}** against the spectrum-matched null ({pooled['above']}/{pooled['n']} "
        f"units, binomial p {pooled['p_value']:.1g}); {t['gabor_or_edge_r2']}/{t['units']} units "
        f"Gabor-like or edge-like with a Gabor fit R^2 >= {R2}; preferred orientations in "
        f"{len(t['orientation_bins_covered'])} of {BINS} bins of 22.5 degrees; "
        f"{t['colour_opponent']} colour-opponent units; kernel origin: **{origin['verdict']}** "
        "(against a random-label control that did not learn: it separates task-shaped kernels "
        "from unshaped ones, not from image statistics).",
        README_END,
    ])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("demo", type=Path)
    p.add_argument("--write", action="store_true")
    a = p.parse_args()
    s = summarise(a.demo)
    if a.write:
        DOC_JSON.write_text(json.dumps(s, indent=2) + "\n")
        text = DOC_MD.read_text()
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        DOC_MD.write_text(head + markdown(s) + tail)
        readme = ROOT / "README.md"
        text = readme.read_text()
        head, _, rest = text.partition(README_START)
        _, _, tail = rest.partition(README_END)
        readme.write_text(head + readme_block(s) + tail)
    print(markdown(s))


if __name__ == "__main__":
    main()
