"""The OOD claim against its controls, and the network's predictions, for the report.

The seed's follow-up ("a face-trained net barely reacts to a bicycle") is only as strong as the
controls allow: the analysis judges each (layer, OOD set) against three arms (the untrained
initialisations, the run's epoch-000 network, the random-label network; ``verdicts.ood_learned``,
rule ``verdicts.ood_learned_rule``). This module turns those figures into rows for the answer and
the ID-vs-OOD section, with no judgement of its own: every level, number and interval is read from
the analysis. A set made from one photo says so wherever it appears.
"""

from __future__ import annotations

from typing import Any

from convlens.analysis.evidence.verdicts import OOD_LEARNED_LEVELS
from convlens.analysis.result import AnalysisResult, ControlComparison, OodComparison

#: the order in which the learned levels are listed (strongest claim first); others follow
LEVEL_ORDER = OOD_LEARNED_LEVELS
#: the levels that say training made the difference (above the untrained networks)
LEARNED_LEVELS = OOD_LEARNED_LEVELS[:4]
#: the level that says the task made the difference (above the random-label network too)
TASK_LEVEL = "learned from the task"


def _paired(c: ControlComparison) -> dict[str, Any]:
    return {
        "auroc": c.auroc,
        "auroc_ci": c.auroc_ci,
        "diff": c.auroc_diff,
        "diff_ci": c.auroc_diff_ci,
        "p": c.auroc_diff_p,
        "untrained_p": c.untrained_p,
    }


def _sources(a: AnalysisResult) -> dict[str, int | None]:
    """Source images per set name (OOD sets and the data's other classes)."""
    info = a.distribution
    if info is None:
        return {}
    return {d.name: d.n_sources for d in [*info.ood, *info.other]}


def comparison_row(name: str, v: OodComparison, level: str | None) -> dict[str, Any]:
    """One set at one layer: trained AUROC with its CI; the untrained initialisations' median,
    2.5/97.5 percentiles and the trained AUROC's p among them; each paired control (epoch 000)
    and the random-label network, and trained minus each."""
    u = v.untrained
    return {
        "set": name,
        "n": v.n,
        "n_sources": v.n_sources,
        "one_photo": v.n_sources == 1,
        "resampling": v.resampling,
        "auroc": v.auroc,
        "auroc_ci": v.auroc_ci,
        "verdict": v.verdict,
        "level": level if level is not None else (v.learned_verdict or "no untrained control"),
        "controls": {c.control: _paired(c) for c in v.controls},
        "untrained": None
        if u is None
        else {"n": u.n, "median": u.median, "interval": u.interval, "p": u.p_value},
        "random_labels": None if v.random_labels is None else _paired(v.random_labels),
    }


def _control_names(rows: list[dict[str, Any]]) -> list[str]:
    """Every control named in the rows, in order of first appearance."""
    names: list[str] = []
    for r in rows:
        names += [c for c in r["controls"] if c not in names]
    return names


def layer_tables(a: AnalysisResult) -> list[dict[str, Any]]:
    """Per layer: the OOD rows (level from ``verdicts.ood_learned``), the other-class rows, the
    control columns and the ID activation of each untrained control."""
    out = []
    for r in a.layers:
        d = r.distribution
        if d is None:
            continue
        levels = a.verdicts.ood_learned.get(r.name, {})
        ood = [comparison_row(n, v, levels.get(n)) for n, v in d.ood.items()]
        other = [comparison_row(n, v, None) for n, v in d.other.items()]
        out.append(
            {
                "layer": r.name,
                "ood": ood,
                "other": other,
                "control_names": _control_names([*ood, *other]),
                "n_untrained": next((r["untrained"]["n"] for r in ood if r["untrained"]), None),
                "random_labels": any(r["random_labels"] for r in [*ood, *other]),
                "id_controls": d.controls,
                "id_mean": d.id_mean,
                "id_mean_ci": d.id_mean_ci,
            }
        )
    return out


def _counts(tables: list[dict[str, Any]]) -> dict[str, int]:
    """How many (layer, OOD set) pairs reach each learned level, strongest level first."""
    counts: dict[str, int] = {}
    for t in tables:
        for row in t["ood"]:
            counts[row["level"]] = counts.get(row["level"], 0) + 1
    rank = {v: i for i, v in enumerate(LEVEL_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def ood_answer(a: AnalysisResult) -> dict[str, Any] | None:
    """The answer's OOD statement: counts per learned level, the first layer's rows with their
    numbers, which sets (if any) training made the difference for and which of them the task
    (above the random-label network too), and the one-photo sets."""
    tables = layer_tables(a)
    if not tables or not any(t["ood"] for t in tables):
        return None
    learned: dict[str, list[str]] = {}
    task: dict[str, list[str]] = {}
    for t in tables:
        for row in t["ood"]:
            if row["level"] in LEARNED_LEVELS:
                learned.setdefault(row["set"], []).append(t["layer"])
            if row["level"] == TASK_LEVEL:
                task.setdefault(row["set"], []).append(t["layer"])
    src = _sources(a)
    rows = [row for t in tables for row in t["ood"]]
    n_controls = sum(len(r["controls"]) + bool(r["untrained"]) for r in rows)
    return {
        "counts": _counts(tables),
        "n": sum(len(t["ood"]) for t in tables),
        "first": tables[0],
        "learned": learned,
        "task": task,
        "random_labels": any(r["random_labels"] for r in rows),
        "n_untrained": next((r["untrained"]["n"] for r in rows if r["untrained"]), None),
        "has_controls": n_controls > 0,
        "one_photo": [name for name, k in src.items() if k == 1],
        "rule": a.verdicts.ood_learned_rule,
    }


def _cell(s: Any, focus: str | None) -> dict[str, Any]:
    """One network on one set: the focus class's share with its interval, and max-softmax."""
    return {
        "n": s.n,
        "top": s.top_class,
        "top_frac": s.class_fractions.get(s.top_class) if s.top_class is not None else None,
        "focus": s.class_fractions.get(focus) if focus else None,
        "focus_ci": s.class_fraction_ci.get(focus) if focus else None,
        "softmax": s.mean_max_softmax,
        "softmax_ci": s.mean_max_softmax_ci,
    }


def predictions_table(a: AnalysisResult) -> dict[str, Any] | None:
    """``AnalysisResult.predictions`` as a set x network table (trained first, then the untrained
    networks), with the chance-level confidence 1 / number of classes beside it."""
    p = a.predictions
    if p is None or not p.sets:
        return None
    models: list[str] = []
    sets: list[str] = []
    for s in p.sets:
        models += [s.model] if s.model not in models else []
        sets += [s.set] if s.set not in sets else []
    models.sort(key=lambda m: m != "trained")  # stable: trained first, the rest as recorded
    cells = {(s.set, s.model): _cell(s, p.focus_class) for s in p.sets}
    src = _sources(a)
    n_src = {s.set: s.n_sources for s in p.sets}
    rows = [
        {
            "set": name,
            "n_sources": n_src.get(name, src.get(name)),
            "cells": [cells.get((name, m)) for m in models],
        }
        for name in sets
    ]
    return {
        "focus": p.focus_class,
        "classes": p.classes,
        "chance": 1.0 / len(p.classes) if p.classes else None,
        "rule": p.rule,
        "models": models,
        "rows": rows,
    }
