"""A second run shown beside the first in the answer section (``convlens report RUN --beside
OTHER``, ``convlens demo --beside OTHER``; issue 27).

The faces demo keeps its own story (the face/bicycle question); the natural-image demo
(``convlens demo --data natural``) is where units that look like edge and Gabor filters appear in
numbers its own random-label control does not reach. Beside the first run's
answer, this section puts the same first-layer questions asked of the other run, each cell the
verdict and figure of :func:`convlens.analysis.evidence.answer.answer` for that run (the lines its
own report, its CLI summary and its README block print), the first-layer kernels of both runs as
images, and the commands that rebuild the other run. Nothing is computed here that the other run's
``analysis.json`` and ``seeds.json`` do not hold. Torch-free.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import AnalysisResult, SeedsSummary, UnitSummary
from convlens.errors import ConvlensError
from convlens.report.inputs import ReportInputs
from convlens.runs import read
from convlens.runs.layout import RunLayout

#: the answer lines compared (what the first layer learned; the rest stay with each run's report)
KEYS = ("classical_kernels", "kernel_learning", "kernel_shapes")
#: units drawn per run
MAX_UNITS = 32


@dataclass
class Beside:
    """The other run, read once: its analysis, its across-seeds summary and its first layer's
    final weight (``None`` when the run has no ``model.safetensors`` or no 2-D first layer)."""

    root: Path
    a: AnalysisResult
    seeds: SeedsSummary | None
    first_weight: NDArray[Any] | None


def read_beside(target: str | Path, reported: Path) -> Beside:
    """Read the run directory ``target`` to show beside the run in ``reported`` (refused in one
    line: not a folder, the same run, no analysis, a model-file analysis)."""
    root = Path(target)
    hint = "give a run or demo folder with its analysis.json (e.g. `convlens demo --data natural`)"
    if not root.is_dir():
        raise ConvlensError(f"--beside {str(root)!r} is not a run directory; {hint}")
    if root.resolve() == Path(reported).resolve():
        raise ConvlensError(f"--beside {str(root)!r} is the run being reported; {hint}")
    run = RunLayout(root)
    if not run.analysis.is_file():
        raise ConvlensError(f"--beside {str(root)!r} has no analysis.json; {hint}")
    try:
        a = AnalysisResult.read(run.analysis)
        seeds = SeedsSummary.read(run.seeds_json) if run.seeds_json.is_file() else None
    except ConvlensError as exc:  # e.g. written by an older convlens
        raise ConvlensError(
            f"--beside {str(root)!r}: {exc}; rebuild it with this convlens (a demo folder: "
            "rerun its `convlens demo` command; a run: `convlens analyze` with its --control-run "
            "and --reference-run options)"
        ) from None
    if a.run is None:
        raise ConvlensError(f"--beside {str(root)!r} is not the analysis of a training run; {hint}")
    first, weight = a.first_layer, None
    if first is not None and run.model.is_file():
        weight = read.read_tensors(run.model).get(first.identity.weight_key)
    return Beside(root, a, seeds, weight)


def section_beside(inp: ReportInputs, other: Beside | None, dest: Path) -> dict[str, Any] | None:
    """The comparison's context: one row per question of :data:`KEYS`, the kernels of both runs,
    a link to the other run's own report (relative to ``dest``) and the commands behind it."""
    if other is None:
        return None
    from convlens.analysis.evidence.answer import answer

    mine = {line.key: line for line in answer(inp.a, inp.seeds).lines}
    theirs_answer = answer(other.a, other.seeds)
    theirs = {line.key: line for line in theirs_answer.lines}
    rows = [
        {
            "question": (theirs.get(k) or mine[k]).question,
            "mine": mine.get(k),
            "theirs": theirs.get(k),
        }
        for k in KEYS
        if k in mine or k in theirs
    ]
    assert other.a.run is not None
    run = other.a.run
    report = RunLayout(other.root).report
    first = inp.first
    mine_w = inp.final.get(first.identity.weight_key) if first is not None else None
    mine_name, theirs_name = _name(inp.a), _name(other.a)
    if mine_name == theirs_name:  # two runs on one dataset: tell them apart by folder
        mine_name, theirs_name = (
            f"{mine_name}, {inp.root}",
            f"{theirs_name}, {other.root}",
        )
    return {
        "root": str(other.root),
        "mine_name": mine_name,
        "theirs_name": theirs_name,
        "what": f"dataset {run.dataset.name}, model {run.model.name}, "
        f"{run.config.epochs} epochs, " + _seeds_text(other),
        "rows": rows,
        "limits": theirs_answer.limits,
        "href": _href(report, dest) if report.is_file() else None,
        "href_text": str(report),
        "kernels": [
            _kernel_set(mine_name, mine_w, _units(inp.a)),
            _kernel_set(theirs_name, other.first_weight, _units(other.a)),
        ],
        "commands": _commands(inp, other),
    }


def _href(target: Path, dest: Path) -> str:
    """``target`` as a relative URL from the page at ``dest`` (percent-encoded; always starting
    with ``./`` or ``../``, so no part of a path can read as a URL scheme)."""
    from urllib.parse import quote

    rel = Path(os.path.relpath(target.resolve(), dest.resolve().parent)).as_posix()
    return quote(rel if rel.startswith("../") else f"./{rel}")


def _kernel_set(name: str, w: NDArray[Any] | None, units: UnitSummary | None) -> dict[str, Any]:
    """One run's kernel images and what their colours mean (RGB for a layer reading 3 channels;
    another channel count draws channel 0, and says so)."""
    c = int(np.asarray(w).shape[1]) if w is not None and np.asarray(w).ndim == 4 else 0
    how = {0: "", 1: "", 3: "; colour: the unit's red, green and blue weights"}.get(
        c, f"; input channel 0 of {c}"
    )
    return {"name": name, "tiles": tiles(w, units, name), "colour": how}


def _name(a: AnalysisResult) -> str:
    return a.run.dataset.name if a.run is not None else Path(a.source.path).name


def _units(a: AnalysisResult) -> UnitSummary | None:
    first = a.first_layer
    return first.matching.units if first is not None and first.matching is not None else None


def _seeds_text(other: Beside) -> str:
    """The other run's seeds and held-out test accuracy (per seed when it has ``seeds.json``)."""
    s = other.seeds
    if s is None:
        acc = other.a.headline.test_accuracy
        seed = other.a.run.config.seed if other.a.run is not None else "?"
        return f"seed {seed}" + ("" if acc is None else f", held-out test accuracy {acc:.2f}")
    row = next((r for r in s.rows if r.name == "test accuracy"), None)
    accs = ", ".join(f"{v:.2f}" for v in row.values) if row is not None else "n/a"
    return f"seeds {', '.join(str(x) for x in s.seeds)}, held-out test accuracy {accs}"


def _commands(inp: ReportInputs, other: Beside) -> list[dict[str, str]]:
    """How to rebuild the other run (a demo: all its seeds, with its controls, in one command;
    another run: its own train, control and analyse commands) and this report with it beside."""
    from convlens.report.answer import demo_command, rerun_dir, run_commands

    me = inp.root if inp.kind == "run" or inp.analysis_path is None else inp.analysis_path
    if other.seeds is not None:
        new = rerun_dir(other.root, "demo")
        cmds = [
            {
                "what": "train and analyse the run beside into a new folder (all its "
                f"{other.seeds.n} seeds, each with its random-label control)",
                "cmd": demo_command(other.a, other.seeds.n, new),
            }
        ]
    else:
        new = rerun_dir(other.root, "rerun")
        cmds = [
            {**c, "what": f"the run beside: {c['what']}"}
            for c in run_commands(other.a, other.root, None)
            if not c["cmd"].startswith("convlens report")
        ]
    return [
        *cmds,
        {
            "what": "render this report with it beside",
            "cmd": shlex.join(["convlens", "report", str(me), "--beside", str(new)]),
        },
    ]


def tiles(w: NDArray[Any] | None, units: UnitSummary | None, label: str) -> list[dict[str, str]]:
    """A 2-D conv weight's first :data:`MAX_UNITS` units as images (grey for one input channel,
    RGB for three): each unit on its own symmetric scale, mid grey 0 (``0.5 + w / (2 max|w|)``),
    with the unit's category as its text alternative."""
    from convlens.report.channels import png

    if w is None or np.asarray(w).ndim != 4:
        return []
    cats = units.unit_categories if units is not None else []
    out = []
    for i, u in enumerate(np.asarray(w, dtype=np.float64)[:MAX_UNITS]):
        m = float(np.abs(u).max()) or 1.0
        what = cats[i] if i < len(cats) else "not categorised"
        out.append({"src": png(0.5 + u / (2 * m), 0.0, 1.0), "alt": f"{label} unit {i}: {what}"})
    return out
