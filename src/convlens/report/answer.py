"""The report's first screen, glossary, controls and reproduce commands.

The answer to the seed question is assembled only from the analysis's own verdicts, headline and
controls; a claim with no measurement behind it says "no data" and why. The glossary is one list of
definitions that the template shows both where a term is first used and in its own section.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from convlens.analysis.result import AnalysisResult
from convlens.report.ood import ood_answer, predictions_table
from convlens.runs.layout import MODEL_ANALYSIS_SUFFIX

#: every statistical term the report uses, defined once (key -> (term, definition))
GLOSSARY: dict[str, tuple[str, str]] = {
    "crosscorr": (
        "cross-correlation",
        "slide the kernel over the input; at each position multiply the kernel and the patch under "
        "it element by element and add the products. This is what a conv layer computes.",
    ),
    "convolution": (
        "convolution (true)",
        "the same as cross-correlation with the kernel flipped (rotated 180 degrees) first.",
    ),
    "null": (
        "null (null baseline)",
        "what a score looks like when nothing was learned: here, the scores of many random "
        "kernels. A learned kernel only counts as classical-looking if it beats most of them.",
    ),
    "p95": (
        "95th percentile",
        "the value that 95% of the null's scores stay below; by chance alone 5% of kernels beat it.",
    ),
    "spectrum": (
        "spectrum-matched null",
        "a stricter null: random kernels with the learned kernels' own average power spectrum, "
        "i.e. just as smooth, but with random arrangement.",
    ),
    "pvalue": (
        "p-value",
        "how likely a result at least this strong is if only chance were at work (small: unlikely "
        "to be chance). Here from a binomial test against the 5% chance rate.",
    ),
    "idood": (
        "ID / OOD",
        "in-distribution (images like the training data) / out-of-distribution (images unlike "
        "it, e.g. motorcycles for a face classifier).",
    ),
    "auroc": (
        "AUROC",
        "the probability that a random ID image scores higher than a random OOD image (0.5: no "
        "separation, 1: perfect separation, below 0.5: OOD scores higher).",
    ),
    "bootstrap": (
        "bootstrap",
        "resampling the images with replacement many times and recomputing a figure, to see how "
        "much it would vary with other images of the same kind.",
    ),
    "ci": (
        "CI (95% confidence interval)",
        "the range of values compatible with the data: here the middle 95% of bootstrap values "
        "(or a t-interval across seeds).",
    ),
    "ncc": (
        "NCC (normalised cross-correlation)",
        "cross-correlation where each patch and the kernel are first centred and scaled to unit "
        "length: Pearson r between patch and kernel, in [-1, 1], blind to contrast.",
    ),
    "cosine": (
        "|cosine| (match score)",
        "how alike two kernels are after removing their means, ignoring sign: 1 identical shape, "
        "0 unrelated.",
    ),
    "receptive": (
        "receptive field",
        "the input pixels a unit can see; for a conv unit a small window, for a dense unit the "
        "whole image.",
    ),
    "binomial": (
        "binomial test",
        "how likely at least this many of n units beat the null's 95th percentile if each had only "
        "the 5% chance of doing so by luck.",
    ),
    "wilson": (
        "Wilson interval",
        "a 95% confidence interval for a proportion (k of n) that stays sensible for small n and "
        "for proportions near 0 or 1.",
    ),
    "clopper": (
        "Clopper-Pearson interval",
        "an exact 95% confidence interval for a proportion, from the binomial distribution itself; "
        "wider than Wilson's, never too narrow.",
    ),
    "mannwhitney": (
        "Mann-Whitney test",
        "a rank test of whether values of one group tend to be larger than those of another, "
        "without assuming a distribution.",
    ),
    "permutation": (
        "permutation test",
        "the p-value is the share of relabellings (which network or unit belongs to which group) "
        "giving a statistic at least as large as the one observed; exact when every relabelling "
        "is enumerated.",
    ),
    "energy": (
        "energy distance",
        "a distance between two sets of points (here units described by their power spectra) that "
        "is zero only when both come from the same distribution.",
    ),
    "holm": (
        "Holm correction / family-wise error",
        "when several tests decide one verdict, Holm's step-down rule keeps the chance of any false "
        "'differs' at 5% for the whole family of tests.",
    ),
    "tost": (
        "equivalence test (TOST)",
        "'same' is claimed only when the whole 90% interval of a difference lies inside a stated "
        "margin; no significant difference alone is never read as sameness.",
    ),
    "hierarchical": (
        "hierarchical bootstrap",
        "resampling seeds, then units within each seed, so that units of one network are not "
        "counted as independent evidence.",
    ),
    "selectivity": (
        "orientation selectivity",
        "how much of a kernel's power lies along one orientation (0: none preferred, 1: all power "
        "along one orientation).",
    ),
    "gabor": (
        "Gabor fit R\u00b2",
        "the share of a kernel's variance explained by the best-fitting Gabor function (a sinusoid "
        "under a Gaussian window): 1 a perfect Gabor.",
    ),
    "pca": (
        "PCA (principal components)",
        "the directions of image patches along which their pixel values vary most, ordered by "
        "variance (eigenvalue).",
    ),
    "whitening": (
        "whitening",
        "a filter that equalises the variance along every principal component; a whitening layer's "
        "energy falls with the component's variance (log-log slope -1).",
    ),
    "cka": (
        "CKA (centred kernel alignment)",
        "a similarity of two layers' representations of the same images, 1 when they agree up to "
        "rotation and scale, 0 when unrelated.",
    ),
    "softmax": (
        "max-softmax",
        "the largest of a classifier's output probabilities: its confidence in its top class.",
    ),
}

#: words in a report's text -> the glossary entry that must define them (tests/test_report_a11y.py)
GLOSSARY_WORDS: dict[str, str] = {
    "binomial": "binomial",
    "Wilson": "wilson",
    "Clopper-Pearson": "clopper",
    "Mann-Whitney": "mannwhitney",
    "permutation": "permutation",
    "energy distance": "energy",
    "Holm": "holm",
    "TOST": "tost",
    "hierarchical": "hierarchical",
    "selectivity": "selectivity",
    "Gabor": "gabor",
    "PCA": "pca",
    "principal component": "pca",
    "whiten": "whitening",
    "CKA": "cka",
    "max-softmax": "softmax",
    "AUROC": "auroc",
    "bootstrap": "bootstrap",
    "percentile": "p95",
    "p-value": "pvalue",
    "spectrum-matched": "spectrum",
}


def _reference_config(source: str) -> Any:
    """The recorded config of a reference run, or ``None`` when it cannot be read here."""
    from convlens.errors import ConvlensError
    from convlens.runs import read
    from convlens.runs.layout import RunLayout

    try:
        return read.run_record(RunLayout(source)).config
    except (ConvlensError, OSError):
        return None


def glossary() -> list[dict[str, str]]:
    """The glossary as rows for the template (anchor id, term, definition)."""
    return [{"id": f"g-{k}", "term": t, "text": d} for k, (t, d) in GLOSSARY.items()]


def _ood_summary(a: AnalysisResult) -> dict[str, Any] | None:
    """Counts of OOD verdicts over (layer, set) pairs, and the first layer's rows."""
    rows = [
        {"layer": r.name, "set": name, "verdict": v.verdict, "auroc": v.auroc, "ratio": v.ratio}
        for r in a.layers
        if r.distribution is not None
        for name, v in r.distribution.ood.items()
    ]
    if not rows:
        return None
    counts: dict[str, int] = {}
    for row in rows:
        v = str(row["verdict"])
        counts[v] = counts.get(v, 0) + 1
    return {"rows": rows, "counts": counts, "n": len(rows)}


def _predictions(a: AnalysisResult) -> list[dict[str, Any]]:
    """Output-level figures on the OOD sets: max-softmax and energy AUROC per set."""
    if a.distribution is None:
        return []
    return [
        {"set": name, "softmax": b.max_softmax_auroc, "energy": b.energy_auroc}
        for name, b in a.distribution.baselines.items()
    ]


def kernel_origin(a: AnalysisResult) -> dict[str, Any] | None:
    """The three-way kernel verdict (``verdicts.kernel_learning``) with its controls' figures:
    learned from the task, from the images' statistics, or not distinguishable from init."""
    v = a.verdicts.kernel_learning
    if v is None:
        return None
    patch = next((c for c in a.controls if c.kind == "input_statistics"), None)
    f = patch.figures if patch is not None else {}
    white = patch.whitening if patch is not None else None
    rows = [
        {
            "name": name.replace("_", " "),
            "prop": prop,
            "energy": f.get(f"{name}.energy_median"),
            "angles": f.get(f"{name}.angles_mean_cos2"),
            "white": white.sets.get(name) if white is not None else None,
        }
        for name, prop in v.proportions.items()
    ]
    control = next((c for c in a.controls if c.kind == "random_labels"), None)
    command = control.command if control is not None else None
    return {"v": v, "rows": rows, "patch": patch, "white": white, "command": command}


def _channel_r(a: AnalysisResult) -> dict[str, float]:
    """Mean |r| between distinct channels' feature maps per layer (a correlation between signals)."""
    out = {}
    for r in a.layers:
        if r.feature_maps is None:
            continue
        m = np.asarray(r.feature_maps.channel_correlation_final, dtype=np.float64)
        if m.ndim == 2 and len(m) > 1:
            out[r.name] = float(np.nanmean(np.abs(m[~np.eye(len(m), dtype=bool)])))
    return out


def answer(a: AnalysisResult) -> dict[str, Any]:
    """The numbers and verdicts of the first screen (each may be ``None``: the template then says
    "no data" with the reason)."""
    first = a.first_layer
    m0 = first.matching if first is not None else None
    return {
        "cc": a.verdicts.cross_correlation,
        "h": a.headline,
        "kv": a.verdicts.classical_kernels,
        "kv_init": a.verdicts.differs_from_init,
        "m0": m0 if m0 is not None and not m0.skipped and m0.null is not None else None,
        "m0_skipped": (m0.skipped if m0 is not None else "no conv layer was matched"),
        "ood": _ood_summary(a),
        "predictions": _predictions(a),
        "set_predictions": predictions_table(a),
        "ood_learned": ood_answer(a),
        "origin": kernel_origin(a),
        "channel_r": _channel_r(a),
        "controls": controls(a),
    }


def controls(a: AnalysisResult) -> list[dict[str, Any]]:
    """Each control as name, description and its figures (any further fields are shown too)."""
    out = []
    for c in a.controls:
        extra = {
            k: v
            for k, v in vars(c).items()
            if k not in ("name", "description", "figures", "units", "kind")
            and v not in (None, [], {})
        }
        level = extra.pop("verdict", None)  # a verdict field, when controls get one, as a pill
        out.append(
            {
                "name": c.name,
                "description": c.description,
                "figures": {humanise(k): v for k, v in c.figures.items()},
                "verdict": level if isinstance(level, str) else None,
                "extra": dict(p for k, v in extra.items() for p in _flat(humanise(k), v)),
            }
        )
    return out


_WORDS = (
    (re.compile(r"\bp(\d+) (\d)\b"), r"\1.\2th percentile"),
    (re.compile(r"\bp(\d+)\b"), r"\1th percentile"),
    (re.compile(r"\bnull(\d+)\b"), r"null's \1th percentile"),
    (re.compile(r"\bepoch0*(\d+)\b"), r"epoch \1"),
    (re.compile(r"\bci\b"), "CI"),
    (re.compile(r"\bauroc\b"), "AUROC"),
    (re.compile(r"\bdiff\b"), "difference"),
    (re.compile(r"\bn units\b"), "units"),
    (re.compile(r"\bcos2\b"), "cos\u00b2"),
)


def humanise(key: str) -> str:
    """A result's field name as words (``auroc_diff_epoch000_ci_low`` -> ``AUROC difference epoch
    0 CI low``; dotted paths read ``a: b``)."""
    text = key.replace(".", ": ").replace("_", " ")
    for pattern, words in _WORDS:
        text = pattern.sub(words, text)
    return text


def _record(x: Any) -> bool:
    import dataclasses

    return isinstance(x, dict) or (dataclasses.is_dataclass(x) and not isinstance(x, type))


def _flat(label: str, v: Any) -> list[tuple[str, str]]:
    """A control's further field as (label, text) rows: nested mappings and records become one
    row per leaf ("layers: trained: energy median"), numbers 4 significant digits."""
    import dataclasses

    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        v = dataclasses.asdict(v)
    if isinstance(v, dict):
        return [p for k, x in v.items() for p in _flat(f"{label}: {humanise(str(k))}", x)]
    if isinstance(v, float):
        return [(label, f"{v:.4g}")]
    if isinstance(v, (list, tuple)) and v and all(_record(x) for x in v):
        rows = [dataclasses.asdict(x) if not isinstance(x, dict) else x for x in v]
        return [
            p
            for i, x in enumerate(rows)
            for p in _flat(f"{label}: epoch {x['epoch']}" if "epoch" in x else f"{label} [{i}]", x)
        ]
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return [(label, ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v))]
    return [(label, str(v))]


def _untrained_option(a: AnalysisResult) -> list[str]:
    """``--untrained N`` when the analysis used another number of untrained initialisations than
    the default."""
    from convlens.analysis.evidence.verdicts import OOD_N_UNTRAINED

    n = len(a.distribution.untrained_seeds) if a.distribution is not None else 0
    return ["--untrained", str(n)] if n and n != OOD_N_UNTRAINED else []


def rerun_dir(root: Path, suffix: str) -> Path:
    """A NEW sibling directory for a rerun (never the one being read)."""
    return root.parent / f"{root.name}-{suffix}"


def run_commands(a: AnalysisResult, root: Path, n_seeds: int | None) -> list[dict[str, str]]:
    """Commands that rebuild a run's figures from its own config, into new directories: the run,
    its random-label control when the analysis had one, the analysis and the report."""
    assert a.run is not None
    cfg, ws = a.run.config, a.run.world_size
    new = rerun_dir(root, "rerun")
    cmds = [
        {
            "what": "train the same recipe into a new directory",
            "cmd": cfg.command(new, world_size=ws),
        }
    ]
    s = a.settings
    analyze = ["convlens", "analyze", str(new), "--null-size", str(s.n_null), "--seed", str(s.seed)]
    analyze += _untrained_option(a)
    if any(c.kind == "random_labels" for c in a.controls):
        control = rerun_dir(root, "rerun-random-labels")
        cmds.append(
            {
                "what": "train its random-label control (the same recipe, labels permuted)",
                "cmd": replace(cfg, shuffle_labels=True).command(control, world_size=ws),
            }
        )
        analyze += ["--control-run", str(control)]
    ref = next((c for c in a.controls if c.kind == "recipe_reference" and c.source), None)
    if ref is not None and ref.source is not None:
        refdir = rerun_dir(root, "rerun-reference")
        rcfg = _reference_config(ref.source)
        if rcfg is not None:
            cmds.append(
                {
                    "what": "train its reference run (" + "; ".join(ref.notes) + ")",
                    "cmd": replace(rcfg, seed=cfg.seed).command(refdir, world_size=ws),
                }
            )
            analyze += ["--reference-run", str(refdir)]
    cmds += [
        {"what": "analyse it with the same null size and seed", "cmd": shlex.join(analyze)},
        {"what": "render its report", "cmd": shlex.join(["convlens", "report", str(new)])},
    ]
    if n_seeds:
        cmds.append(
            {
                "what": "the across-seeds figures (all runs, one command)",
                "cmd": demo_command(a, n_seeds, rerun_dir(root, "demo")),
            }
        )
    return cmds


def demo_command(a: AnalysisResult, n_seeds: int, out: Path) -> str:
    """The ``convlens demo`` line that trains and analyses a demo's ``n_seeds`` runs again into
    ``out``."""
    assert a.run is not None
    cfg = a.run.config
    demo = ["convlens", "demo", "--seeds", str(n_seeds), "--seed", str(cfg.seed)]
    if cfg.data != "faces":
        demo += ["--data", cfg.data]
    demo += ["--epochs", str(cfg.epochs), "--null-size", str(a.settings.n_null)]
    return shlex.join([*demo, "--out", str(out)])


def model_commands(a: AnalysisResult, analysis_path: Path) -> list[dict[str, str]]:
    """Commands that re-analyse a model file into a new analysis file and render it."""
    src, s = a.source, a.settings
    name = analysis_path.name
    sfx = MODEL_ANALYSIS_SUFFIX
    stem = name[: -len(sfx)] if name.endswith(sfx) else analysis_path.stem
    new = analysis_path.with_name(f"{stem}-rerun{sfx}")  # a new file beside the one read
    cmd = ["convlens", "analyze", src.path]
    if src.factory:
        cmd += ["--factory", src.factory]
    if src.data:
        cmd += ["--data", src.data]
    if a.distribution is not None and a.distribution.ood:
        cmd += ["--ood", ",".join(o.name for o in a.distribution.ood)]
    cmd += ["--null-size", str(s.n_null), "--seed", str(s.seed), *_untrained_option(a)]
    cmd += ["--out", str(new)]
    return [
        {"what": "analyse the model file again, into a new file", "cmd": shlex.join(cmd)},
        {"what": "render its report", "cmd": shlex.join(["convlens", "report", str(new)])},
    ]
