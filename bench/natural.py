"""The natural-image demo's first-layer figures over seeds (issue 27), from a finished
``convlens demo --data natural`` folder: what docs/natural.md quotes (docs/natural.json).

Run: python -m bench.natural DEMO_DIR [--write]   (DEMO_DIR from ``convlens demo --data natural
--seeds 5 --out DEMO_DIR``; ``--write`` updates docs/natural.json and the generated part of
docs/natural.md)

Per seed, for the first layer of the trained run and of the random-label control its analysis
compared it with (both matched and counted by the analysis; the census rule is
:data:`convlens.analysis.evidence.census.CENSUS_RULE`):
- live units above the spectrum-matched null (the headline null) and above the random null;
- units "Gabor-like or edge" with a good Gabor fit: the unit's category is Gabor-like or
  edge/gradient (which already means above the random null, and live) and the Gabor fit of its
  best slice (the input channel with the highest match score) has R^2 >= 0.7;
- oriented units: category Gabor-like, edge/gradient or line and orientation selectivity >= 0.3;
  their preferred orientations (of the kernel's gradient, degrees in [0, 180)) binned in 8 bins of
  22.5 degrees centred on 0, 22.5, ...: the bins covered;
- colour-opponent units; the held-out test accuracy (``run.json``).
The README's lines are the demo's own answer lines on its first layer (what a faces report made
with ``--beside`` shows beside its own).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from convlens._serde import to_jsonable
from convlens.analysis.evidence.answer import AnswerLine, answer, answer_table
from convlens.analysis.evidence.census import GABOR_R2 as R2
from convlens.analysis.evidence.census import ORIENTATION_BINS as BINS
from convlens.analysis.evidence.census import first_layer_census
from convlens.analysis.result import AnalysisResult, KernelCensus, SeedsSummary, UnitSummary
from convlens.data.natural import CLASSES
from convlens.report.beside import KEYS

ROOT = Path(__file__).resolve().parent.parent
DOC_JSON = ROOT / "docs" / "natural.json"
DOC_MD = ROOT / "docs" / "natural.md"
START, END = "<!-- natural-figures:start -->", "<!-- natural-figures:end -->"


def _row_of(units: UnitSummary | None, c: KernelCensus | None) -> dict[str, Any]:
    """One run's first-layer figures: its unit counts and its census (the library's rule)."""
    assert units is not None and c is not None
    return {
        "units": units.n_live,
        "above_spectrum_null": units.above_spectrum_null95,
        "above_random_null": units.above_null95,
        "gabor_or_edge_r2": c.gabor_or_edge,
        "oriented_units": c.oriented,
        "orientation_bins": c.orientation_bins,
        "colour_opponent": c.colour_opponent,
        "categories": units.categories,
    }


def first_layer(a: AnalysisResult) -> dict[str, Any]:
    """The figures of one run's first layer."""
    first = a.first_layer
    assert first is not None and first.matching is not None
    return _row_of(first.matching.units, first_layer_census(a))


def control_layer(a: AnalysisResult) -> dict[str, Any]:
    """The same figures for the random-label control the analysis compared the run with (its
    first layer matched and counted by the analysis exactly like the run's), with its held-out
    test accuracy and its last epoch's training accuracy as the analysis recorded them."""
    control = next(c for c in a.controls if c.kind == "random_labels")
    row = _row_of(control.units, first_layer_census(a, "random labels"))
    row["test_accuracy"] = control.figures["test_accuracy"]
    row["final_train_accuracy"] = control.figures["final_train_accuracy"]
    return row


def summarise(demo: Path) -> dict[str, Any]:
    seeds_summary = SeedsSummary.read(demo / "seeds.json")
    runs = sorted(p for p in (demo / "seeds").glob("seed-*") if p.is_dir())
    out: dict[str, Any] = {"demo": str(demo.name), "per_seed": [], "controls": []}
    first: AnalysisResult | None = None
    for run in [demo, *runs]:
        a = AnalysisResult.read(run / "analysis.json")
        first = first or a
        assert a.run is not None and a.run.result is not None
        row = first_layer(a)
        row["seed"] = a.run.config.seed
        row["test_accuracy"] = a.run.result.test_accuracy
        out["per_seed"].append(row)
        crow = control_layer(a)
        crow["seed"] = a.run.config.seed
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
    kl = to_jsonable(seeds_summary.verdicts.kernel_learning)
    out["origin"] = {"verdict": kl["verdict"], "content": kl["content"]}
    out["classical_kernels_pooled"] = to_jsonable(seeds_summary.classical_kernels_pooled)
    assert first is not None
    lines = answer(first, seeds_summary).lines
    out["answer"] = [to_jsonable(line) for line in lines if line.key in KEYS]
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
    """The README's lines on the natural demo: its first-layer answer lines (what the faces
    report shows beside its own, from :func:`convlens.analysis.evidence.answer.answer`)."""
    t = s["totals"]
    lines = [AnswerLine(**d) for d in s["answer"]]
    acc = [c["final_train_accuracy"] for c in s["controls"]]
    return "\n".join([
        README_START,
        f"Over {t['seeds']} seeds ({t['units']} first-layer units). The random-label controls did "
        f"not learn (final training accuracy {min(acc):.2f}-{max(acc):.2f}, chance "
        f"{1 / len(CLASSES):.2f}), so the origin verdict separates task-shaped kernels from "
        "unshaped ones, not from image statistics:",
        "",
        *answer_table(lines),
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
