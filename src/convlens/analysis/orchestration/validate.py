"""``convlens validate``: the kernel verdicts tried on planted truths, with their power and
false-positive rates.

For each planted case (:mod:`convlens.data.planted`) and repetition ``r`` (a fresh draw of the
images), the demo recipe trains ``seeds`` networks and, for each, its random-label control (same
recipe, permuted training labels); the first layer's units of the trained, random-label and
initial networks (the init rebuilt under each seed) are measured exactly as ``convlens analyze``
measures them (:func:`~convlens.analysis.measure.matching.match_layer`) and the verdicts are
decided on all seeds at once, as ``convlens demo`` decides them. Over the repetitions each verdict
level's rate is given with a Wilson 95% interval: the rate of the right answer on a planted positive
is the power; a wrong "learned from the task" on a planted negative is a false positive.

Null layers need no training: random kernels drawn as PyTorch initialises them, and Gaussian-blurred
random kernels (smooth, with no classical structure by construction), calibrate the per-unit rate
above the nulls (5% is chance) and the headline classical-kernel verdict.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.evidence.kernelsets import name_learned, spectra_agree
from convlens.analysis.evidence.stats import wilson
from convlens.analysis.evidence.verdicts import three_way_verdict, unit_kernel_verdict
from convlens.analysis.measure.matching import match_layer
from convlens.analysis.result import CI, UnitSummary
from convlens.data import planted

RULE = (
    "power: the rate of the planted truth's verdict over repetitions (Wilson 95%); false positive: "
    "the rate of 'learned from the task' on a planted negative; each repetition draws new images and "
    "trains the demo recipe and its random-label control for every seed; the verdict combines the seeds"
)
NULL_LAYERS = {"init": 0.0, "blur 0.7 px": 0.7, "blur 1.0 px": 1.0, "blur 1.5 px": 1.5}
NULL_UNITS = 16
"""Null layers have the demo's first-layer width: 16 units of 1 x 5 x 5, random kernels as PyTorch
draws them, raw or blurred."""


@dataclass
class Rate:
    """``k`` of ``n`` with a Wilson 95% interval."""

    k: int
    n: int
    rate: float | None
    ci: CI


def rate(k: int, n: int) -> Rate:
    return Rate(k, n, k / n if n else None, wilson(k, n))


@dataclass
class CaseResult:
    """One planted case over its repetitions."""

    case: str
    description: str
    truth: str
    verdicts: list[str]
    counts: dict[str, int]
    correct: Rate
    false_task: Rate
    test_accuracy: float | None
    random_label_accuracy: float | None
    teacher: str | None = None
    named: list[str | None] = field(default_factory=list)
    named_right: Rate | None = None
    p_task: list[float | None] = field(default_factory=list)
    """Per repetition, the p-value of trained vs random labels (whole networks exchanged)."""


@dataclass
class NullLayerResult:
    """Per-unit rates above the nulls, and the headline verdict's rate, on layers with no structure."""

    layer: str
    repetitions: int
    units: int
    above_random_null: Rate
    above_spectrum_null: Rate
    headline_yes: Rate


@dataclass
class OodCaseResult:
    """One planted OOD case at one layer over its draws (:mod:`.validate_ood`): how often each level
    of ``verdicts.ood_learned`` came out, and the rate that is judged (``judged``: the truth's level,
    or a false positive's)."""

    case: str
    truth: str
    layer: str
    counts: dict[str, int]
    judged: str
    rate: Rate
    seeds: int = 1
    """Networks per verdict: 1 = one run's verdict (``analysis.json``), more = the across-seeds
    verdict (``seeds.json``)."""


@dataclass
class ValidationResult:
    """What ``convlens validate`` measured (``validation.json``)."""

    recipe: dict[str, Any]
    seeds_per_repetition: int
    repetitions: int
    rule: str
    cases: list[CaseResult]
    null_layers: list[NullLayerResult]
    seconds: float = 0.0
    ood: list[OodCaseResult] = field(default_factory=list)
    ood_repetitions: int = 0
    first_repetition: int = 0
    """The first draw of the planted kernel cases (``planted:CASE:DRAW``); a later one gives draws
    independent of a recorded run (the null layers and OOD cases keep theirs)."""
    redecided: str | None = None
    """Set when the verdicts were re-decided from the recorded comparisons under a later rule
    (:func:`redecide`), not retrained: what changed and from which run."""

    def to_json(self) -> str:
        from convlens._serde import to_jsonable

        return json.dumps(to_jsonable(self), indent=1, allow_nan=False)

    @staticmethod
    def from_json(text: str) -> ValidationResult:
        from convlens._serde import from_jsonable

        return from_jsonable(ValidationResult, json.loads(text), "")


def _first_layer(
    spec: str, seed: int, shuffle: bool, epochs: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], float | None]:
    """Train the demo recipe on ``spec``: (final first-layer weight, initial one, test accuracy)."""
    import torch
    from safetensors.numpy import load_file

    from convlens.data.loaders import load_dataset
    from convlens.models import ModelSpec, build_model
    from convlens.train.recipes import DEMO_RECIPE
    from convlens.train.trainer import TrainConfig, Trainer

    r = DEMO_RECIPE
    cfg = TrainConfig(
        data=spec,
        model=r["model"],
        epochs=epochs,
        batch_size=r["batch_size"],
        lr=r["lr"],
        optimizer=r["optimizer"],
        weight_decay=r["weight_decay"],
        seed=seed,
        device="cpu",
        ood=[],
        snapshots=False,
        probes=False,
        shuffle_labels=shuffle,
    )
    with tempfile.TemporaryDirectory(prefix="convlens-validate-") as d:
        trainer = Trainer(cfg, load_dataset(spec, seed), d, progress=False)
        trainer.train()
        final = load_file(str(Path(d) / "model.safetensors"))
        record = json.loads((Path(d) / "run.json").read_text(encoding="utf-8"))
    torch.manual_seed(seed)
    init = build_model(ModelSpec.from_dict(record["model"])).state_dict()
    name = next(k for k in final if k.endswith(".weight") and final[k].ndim == 4)
    acc = (record.get("result") or {}).get("test_accuracy")
    return (
        np.asarray(final[name], np.float64),
        init[name].double().numpy(),
        None if acc is None else float(acc),
    )


def _units(w: NDArray[np.float64], n_null: int) -> UnitSummary:
    m = match_layer("conv1", w, n_null=n_null, seed=0, gabor=False, spectra=True)
    assert m.units is not None
    return m.units


def validate_case(
    case: str,
    repetitions: int,
    seeds: int,
    epochs: int,
    n_null: int = 2000,
    log: Callable[[str], None] = lambda _line: None,
    first: int = 0,
) -> CaseResult:
    info = planted.CASES[case]
    verdicts: list[str] = []
    named: list[str | None] = []
    p_task: list[float | None] = []
    acc: list[float] = []
    acc_rl: list[float] = []
    for rep in range(first, first + repetitions):
        t_units, r_units, i_units = [], [], []
        for s in range(seeds):
            spec = f"planted:{case}:{rep}"
            w, w0, a = _first_layer(spec, 100 + s, False, epochs)
            wr, _, ar = _first_layer(spec, 100 + s, True, epochs)
            t_units.append(_units(w, n_null))
            r_units.append(_units(wr, n_null))
            i_units.append(_units(w0, n_null))
            acc += [a] if a is not None else []
            acc_rl += [ar] if ar is not None else []
        v = three_way_verdict(t_units, r_units, i_units, "conv1", 5)
        verdicts.append(v.verdict)
        p_task.append(
            next((c.p_value for c in v.content if c.pair == "trained vs random_labels"), None)
        )
        if info.teacher is not None:
            named.append(
                name_learned([u.spectra for u in t_units], [u.spectra for u in r_units], 5)
            )
        log(
            f"{case} draw {rep} ({rep - first + 1}/{repetitions}): {v.verdict} (p task {p_task[-1]})"
        )
    out = CaseResult(
        case=case,
        description=info.description,
        truth=info.truth,
        **_tally(verdicts, info.truth),
        test_accuracy=float(np.mean(acc)) if acc else None,
        random_label_accuracy=float(np.mean(acc_rl)) if acc_rl else None,
        teacher=info.teacher,
        named=named,
        p_task=p_task,
    )
    if info.teacher is not None:
        out.named_right = rate(sum(spectra_agree(n, info.teacher) for n in named), len(named))
    return out


def redecide(v: ValidationResult, recorded_at: str) -> ValidationResult:
    """The verdicts of ``v`` (recorded at ``recorded_at`` with trained vs random labels decided at
    0.05) under the current level :data:`~convlens.analysis.evidence.verdicts.TASK_ALPHA`: a
    "learned from the task" whose ``p_task`` is above it becomes "inconclusive" (Holm had rejected
    at 0.05, so no equivalence was tested either); every other verdict is what the current rule
    gives on the same comparisons, unchanged. Rates are recounted; nothing is retrained."""
    from dataclasses import replace

    from convlens.analysis.evidence.kernelsets import smallest_network_p
    from convlens.analysis.evidence.verdicts import TASK_ALPHA
    from convlens.errors import ConvlensError

    seeds = v.seeds_per_repetition
    if smallest_network_p(seeds, seeds) > TASK_ALPHA:
        raise ConvlensError(
            f"--redecide: the recorded run has {seeds} seed(s) per repetition; trained vs random "
            f"labels needs a p-value <= {TASK_ALPHA}, which {seeds} seeds cannot give: rerun it"
        )
    for c in v.cases:
        if c.case not in planted.CASES or len(c.p_task) != len(c.verdicts):
            raise ConvlensError(
                f"--redecide: case {c.case!r} of the recorded run has no p-value per repetition "
                "or is no longer a planted case: rerun it"
            )
    cases = []
    changed = 0
    for c in v.cases:
        verdicts = [
            "inconclusive"
            if verdict == "learned from the task" and p is not None and p > TASK_ALPHA
            else verdict
            for verdict, p in zip(c.verdicts, c.p_task, strict=True)
        ]
        changed += sum(a != b for a, b in zip(verdicts, c.verdicts, strict=True))
        cases.append(replace(c, **_tally(verdicts, planted.CASES[c.case].truth)))
    note = (
        f"verdicts re-decided from the comparisons recorded at {recorded_at} (trained vs random "
        f"labels then at p < 0.05), with trained vs random labels at p <= {TASK_ALPHA}: "
        f"{changed} verdict(s) changed, each a 'learned from the task' at p in ({TASK_ALPHA}, 0.05] "
        "now 'inconclusive'; nothing retrained"
    )
    return replace(v, cases=cases, rule=RULE, redecided=note)


def _tally(verdicts: list[str], truth: str) -> dict[str, Any]:
    """A case's verdicts with their counts, the rate of the right answer and, on a planted
    negative, of a false "learned from the task" (``CaseResult`` fields)."""
    negative = truth != "from the task"
    return {
        "verdicts": verdicts,
        "counts": {k: verdicts.count(k) for k in sorted(set(verdicts))},
        "correct": rate(sum(_level(v) == truth for v in verdicts), len(verdicts)),
        "false_task": rate(
            sum(v == "learned from the task" for v in verdicts) if negative else 0,
            len(verdicts) if negative else 0,
        ),
    }


def _level(verdict: str) -> str:
    return {
        "learned from the task": "from the task",
        "learned from image statistics": "image statistics",
        "not distinguishable from init": "nothing",
    }.get(verdict, verdict)


def null_layer(label: str, blur: float, repetitions: int, n_null: int = 2000) -> NullLayerResult:
    """Layers of :data:`NULL_UNITS` random 1 x 5 x 5 units (PyTorch's init distribution), blurred by
    ``blur`` px."""
    from scipy.ndimage import gaussian_filter

    above = above_s = yes = units = 0
    for rep in range(repetitions):
        rng = np.random.default_rng([rep, 6007, int(blur * 10)])
        w = rng.uniform(-0.2, 0.2, (NULL_UNITS, 1, 5, 5))
        if blur > 0:
            w = np.stack([[gaussian_filter(k, blur, mode="wrap")] for k in w[:, 0]])
        u = _units(w, n_null)
        units += u.n_live
        above += u.above_null95
        above_s += u.above_spectrum_null95 or 0
        v = unit_kernel_verdict(u.above_spectrum_null95, u.n_live, "null", u.unit_score, u.n_dead)
        yes += v.verdict == "yes"
    return NullLayerResult(
        layer=label,
        repetitions=repetitions,
        units=units,
        above_random_null=rate(above, units),
        above_spectrum_null=rate(above_s, units),
        headline_yes=rate(yes, repetitions),
    )


def ood_cases(repetitions: int, log: Callable[[str], None], seeds: int = 1) -> list[OodCaseResult]:
    """The OOD verdict's planted cases as typed rows: one run's verdict
    (:func:`.validate_ood.rates`) and, with ``seeds`` > 1, the across-seeds verdict
    (:func:`.validate_ood.rates_across_seeds`)."""
    from convlens.analysis.orchestration import validate_ood as vo

    if repetitions < 1:
        return []
    results = [(1, vo.rates(repetitions, log=log))]
    if seeds > 1:
        results.append((seeds, vo.rates_across_seeds(repetitions, seeds, log=log)))
    out = []
    for k, res in results:
        for case, per_layer in res["counts"].items():
            truth = vo.TRUTH[case]
            n = res["reps"][case]
            for layer, levels in per_layer.items():
                judged = {
                    "task, shuffled": "learned from the task",
                    "null": vo.NULL_P,
                }.get(case, truth)
                got = rate(levels.get(judged, 0), n)
                out.append(OodCaseResult(case, truth, layer, dict(levels), judged, got, k))
    return out


def validate(
    cases: list[str] | None = None,
    repetitions: int = 10,
    seeds: int = 5,
    epochs: int | None = None,
    null_repetitions: int = 200,
    log: Callable[[str], None] = lambda _line: None,
    ood_repetitions: int = 0,
    first_repetition: int = 0,
) -> ValidationResult:
    """Every planted case (or ``cases``), every null layer and, with ``ood_repetitions``, the OOD
    verdict's planted cases; see the module docstring."""
    from convlens.train.recipes import DEMO_RECIPE

    started = time.perf_counter()
    names = cases or list(planted.CASES)
    eps = int(epochs or DEMO_RECIPE["epochs"])
    results = [
        validate_case(c, repetitions, seeds, eps, log=log, first=first_repetition) for c in names
    ]
    nulls = [null_layer(k, b, null_repetitions) for k, b in NULL_LAYERS.items()]
    ood = ood_cases(ood_repetitions, log, seeds)
    return ValidationResult(
        recipe={**DEMO_RECIPE, "epochs": eps, "data": "planted:CASE:REPETITION"},
        seeds_per_repetition=seeds,
        repetitions=repetitions,
        rule=RULE,
        cases=results,
        null_layers=nulls,
        seconds=round(time.perf_counter() - started, 1),
        ood=ood,
        ood_repetitions=ood_repetitions,
        first_repetition=first_repetition,
    )


def _pct(r: Rate | None) -> str:
    if r is None or r.rate is None:
        return "n/a"
    lo, hi = r.ci
    return f"{r.k}/{r.n} = {100 * r.rate:.0f}% [{100 * (lo or 0):.0f}, {100 * (hi or 0):.0f}]"


def _draws(v: ValidationResult) -> str:
    if not v.first_repetition:
        return ""
    return f": draws {v.first_repetition}-{v.first_repetition + v.repetitions - 1}"


def markdown(v: ValidationResult) -> str:
    """The tables ``docs/validation.md`` shows (generated: ``convlens validate --markdown``)."""
    lines = [
        f"Recipe: {v.recipe['model']}, {v.recipe['optimizer']}, weight decay "
        f"{v.recipe['weight_decay']}, {v.recipe['epochs']} epochs; {v.seeds_per_repetition} seeds "
        f"per repetition, each with its random-label control; {v.repetitions} repetitions per case "
        f"(a new draw of the images each{_draws(v)}); {v.seconds:.0f} s."
        + (f" Then {v.redecided}." if v.redecided else ""),
        "",
        "| planted case | truth | verdicts over the repetitions | right answer (power) | false 'from the task' | teacher named | test accuracy (random labels) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in v.cases:
        counts = "; ".join(f"{k}: {n}" for k, n in c.counts.items())
        acc = "n/a" if c.test_accuracy is None else f"{c.test_accuracy:.2f}"
        acc_rl = "n/a" if c.random_label_accuracy is None else f"{c.random_label_accuracy:.2f}"
        lines.append(
            f"| `{c.case}` | {c.truth} | {counts} | {_pct(c.correct)} | "
            f"{_pct(c.false_task) if c.false_task.n else '-'} | "
            f"{_pct(c.named_right) if c.named_right else '-'} | {acc} ({acc_rl}) |"
        )
    lines += [
        "",
        f"| null layer ({NULL_UNITS} units of 1x5x5) | units above the random null | units above the spectrum-matched null (headline) | headline 'classical kernels: yes' |",
        "|---|---|---|---|",
    ]
    for n in v.null_layers:
        lines.append(
            f"| {n.layer} ({n.repetitions} layers) | {_pct(n.above_random_null)} | "
            f"{_pct(n.above_spectrum_null)} | {_pct(n.headline_yes)} |"
        )
    if v.ood:
        lines += [
            "",
            "OOD verdict (`verdicts.ood_learned`: one run's in analysis.json, all seeds' at once in "
            f"seeds.json), {v.ood_repetitions} draws per case (one run's untrained-arm "
            "calibration `null`: 10 per repetition):",
            "",
            "| OOD case | truth | layer | networks per verdict | judged level | rate (Wilson 95%) | levels |",
            "|---|---|---|---|---|---|---|",
        ]
        for o in v.ood:
            shown = ", ".join(f"{k} {n}" for k, n in sorted(o.counts.items(), key=lambda x: -x[1]))
            nets = "1 (one run)" if o.seeds == 1 else f"{o.seeds} seeds"
            lines.append(
                f"| {o.case} | {o.truth} | {o.layer} | {nets} | {o.judged} | {_pct(o.rate)} | "
                f"{shown} |"
            )
    lines += ["", f"Rule: {v.rule}."]
    return "\n".join(lines) + "\n"


def summary_markdown(v: ValidationResult) -> str:
    """The README's short version of :func:`markdown`: one line per planted case (the rate of the
    right answer, and on negatives of a false "learned from the task"), the across-seeds OOD
    verdict's rates and the headline's rate on structure-free layers."""
    lines = [
        f"{v.repetitions} repetitions of {v.seeds_per_repetition} seeds each (demo recipe, "
        f"{v.recipe['model']}); Wilson 95% intervals; from `docs/validation.json`"
        + (
            " (verdicts re-decided at the current level from the recorded comparisons, not "
            "retrained; see docs/validation.md)"
            if v.redecided
            else ""
        )
        + ":",
        "",
        "| planted truth | right answer | false 'learned from the task' |",
        "|---|---|---|",
    ]
    for c in v.cases:
        extra = f"; teacher named {_pct(c.named_right)}" if c.named_right else ""
        false = _pct(c.false_task) if c.false_task.n else "-"
        lines.append(f"| `{c.case}` ({c.truth}) | {_pct(c.correct)}{extra} | {false} |")
    for o in v.ood:
        if o.seeds > 1 and o.case != "null":
            what = "false 'learned from the task'" if o.case == "task, shuffled" else "right answer"
            lines.append(
                f"| OOD `{o.case}` at {o.layer}, {o.seeds} seeds ({o.truth}) | "
                + (f"{_pct(o.rate)} |  |" if what == "right answer" else f" | {_pct(o.rate)} |")
            )
    worst = max(v.null_layers, key=lambda n: n.headline_yes.rate or 0.0, default=None)
    if worst is not None:
        lines += [
            "",
            "Headline 'classical kernels: yes' on layers with no classical structure (random and "
            f"blurred random kernels): at most {_pct(worst.headline_yes)} ({worst.layer}).",
        ]
    return "\n".join(lines) + "\n"
