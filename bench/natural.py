"""The natural-image demo's first-layer figures over seeds (issue 27), from a finished
``convlens demo --data natural`` folder: what docs/natural.md quotes (docs/natural.json).

Run: python -m bench.natural DEMO_DIR [--write]   (DEMO_DIR from ``convlens demo --data natural
--seeds 5 --out DEMO_DIR``; ``--write`` updates docs/natural.json and the generated part of
docs/natural.md)

Per seed (the trained run and its random-label control), for the first layer:
- units above the spectrum-matched null (the headline null) and above the random null;
- units "Gabor-like or edge" with a good Gabor fit: the unit's category is Gabor-like or
  edge/gradient and the Gabor fit of its best slice (the input channel with the highest match
  score) has R^2 >= 0.7;
- preferred orientations (of the kernel's gradient, degrees in [0, 180)) of the units above the
  spectrum null, binned in 8 bins of 22.5 degrees centred on 0, 22.5, ...: the bins covered;
- colour-opponent units.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

R2 = 0.7
BINS = 8
EDGE_LIKE = ("Gabor-like", "edge/gradient")
ROOT = Path(__file__).resolve().parent.parent
DOC_JSON = ROOT / "docs" / "natural.json"
DOC_MD = ROOT / "docs" / "natural.md"
START, END = "<!-- natural-figures:start -->", "<!-- natural-figures:end -->"


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
    # units above the spectrum null: the unit p-values are against the random null, so use the
    # spectrum null's count and take the units' orientations where the unit is above the random
    # null and oriented (selectivity >= 0.3)
    oriented = [
        o
        for o, s, c in zip(u["orientation"], u["selectivity"], cats, strict=True)
        if o is not None and s is not None and s >= 0.3 and c != "unclear"
    ]
    bins = sorted({int(((o + 180 / BINS / 2) % 180) // (180 / BINS)) for o in oriented})
    return {
        "units": u["n_live"],
        "above_spectrum_null": u["above_spectrum_null95"],
        "above_random_null": u["above_null95"],
        "gabor_or_edge_r2": len(good),
        "oriented_units": len(oriented),
        "orientation_bins": bins,
        "colour_opponent": cats.count("colour-opponent"),
        "categories": u["categories"],
    }


def summarise(demo: Path) -> dict[str, Any]:
    seeds_file = json.loads((demo / "seeds.json").read_text())
    runs = sorted(p for p in (demo / "seeds").glob("seed-*") if p.is_dir())
    trained = [demo, *runs]
    out: dict[str, Any] = {"demo": str(demo.name), "per_seed": [], "controls": []}
    for run in trained:
        a = json.loads((run / "analysis.json").read_text())
        row = first_layer(a)
        row["seed"] = json.loads((run / "run.json").read_text())["seed"]
        out["per_seed"].append(row)
    for ctl in sorted((demo / "seeds").glob("random-labels-seed-*")):
        a_path = ctl / "analysis.json"
        if a_path.is_file():
            out["controls"].append(first_layer(json.loads(a_path.read_text())))
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
    out["verdicts"] = seeds_file["verdicts"]
    out["classical_kernels_pooled"] = seeds_file["classical_kernels_pooled"]
    return out


def markdown(s: dict[str, Any]) -> str:
    t = s["totals"]
    lines = [
        START,
        "| seed | live units | above the spectrum null | Gabor-like or edge, best slice R^2 >= 0.7 | "
        "oriented units: bins of 22.5 deg | colour-opponent |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["per_seed"]:
        lines.append(
            f"| {r['seed']} | {r['units']} | {r['above_spectrum_null']} | {r['gabor_or_edge_r2']} | "
            f"{r['oriented_units']}: {r['orientation_bins']} | {r['colour_opponent']} |"
        )
    lines.append(
        f"| all {t['seeds']} | {t['units']} | {t['above_spectrum_null']} "
        f"({t['above_spectrum_null'] / t['units']:.0%}) | {t['gabor_or_edge_r2']} "
        f"({t['gabor_or_edge_r2'] / t['units']:.0%}) | {len(t['orientation_bins_covered'])} of "
        f"{BINS} bins | {t['colour_opponent']} |"
    )
    for c in s["controls"]:
        lines.append(
            f"| random labels | {c['units']} | {c['above_spectrum_null']} | {c['gabor_or_edge_r2']} "
            f"| {c['oriented_units']}: {c['orientation_bins']} | {c['colour_opponent']} |"
        )
    lines.append(END)
    return "\n".join(lines)


README_START = "<!-- natural-readme:start (generated by `python -m bench.natural DEMO --write`) -->"
README_END = "<!-- natural-readme:end -->"


def readme_block(s: dict[str, Any]) -> str:
    """The README's lines on the natural demo, from the same figures as docs/natural.md."""
    t = s["totals"]
    pooled = s["classical_kernels_pooled"]
    origin = s["verdicts"]["kernel_learning"]
    return "\n".join([
        README_START,
        f"Over {t['seeds']} seeds ({t['units']} first-layer units): classical kernels "
        f"**{pooled['verdict']}** against the spectrum-matched null ({pooled['above']}/{pooled['n']} "
        f"units, binomial p {pooled['p_value']:.1g}); {t['gabor_or_edge_r2']}/{t['units']} units "
        f"Gabor-like or edge-like with a Gabor fit R^2 >= {R2}; preferred orientations in "
        f"{len(t['orientation_bins_covered'])} of {BINS} bins of 22.5 degrees; "
        f"{t['colour_opponent']} colour-opponent units; kernel origin: **{origin['verdict']}** "
        f"(against the random-label control).",
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
