"""The one answer to the seed's question, generated from the verdicts.

"Does a conv layer learn the correlation between its input signals via its kernel?" is answered in
a few plain-language lines, each with its verdict, the figures behind it, the control or null it was
decided against, and the seeds it comes from. The report's first screen, the CLI's summary of
``convlens demo`` and the README's answer section all print these lines verbatim
(:func:`answer_lines`; the README block is :func:`readme_block`, checked by a test against a fresh
demo), so they cannot say different things.

Nothing here computes a figure: every number is read from the typed results (``analysis.json`` of
the first seed and ``seeds.json`` for all seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convlens.analysis.result import AnalysisResult, KernelCensus, KernelVerdict, SeedsSummary


@dataclass
class AnswerLine:
    """One question, its verdict word and the sentence with the figures behind it."""

    key: str
    question: str
    verdict: str
    text: str
    source: str
    """Which results the figures come from (e.g. "seeds 10, 11, 12 (seeds.json)")."""
    figure: str = ""
    """The one figure behind the verdict, short enough for one line of the report's first screen
    (a part of ``text``, which gives it in full)."""


@dataclass
class Answer:
    """The answer: a one-sentence summary, then one line per question, then what it cannot show."""

    summary: str
    lines: list[AnswerLine] = field(default_factory=list)
    disclosure: str | None = None
    """How the recipe was chosen (said first: the figures depend on it)."""
    disclosure_short: str | None = None
    """The disclosure in one line: selected on the metric, and the reference run's count beside
    this run's (the report's first screen; ``disclosure`` gives it in full)."""
    limits: str = ""


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _ci(ci: tuple[float | None, float | None]) -> str:
    lo, hi = ci
    return "" if lo is None or hi is None else f" [{100 * lo:.0f}, {100 * hi:.0f}]"


def _count(v: KernelVerdict | None) -> str:
    if v is None or v.above is None:
        return "not measured"
    from convlens.analysis.evidence.stats import format_p

    return (
        f"{v.above}/{v.n} units ({_pct(v.fraction)}{_ci(v.ci)}, binomial p {format_p(v.p_value)})"
    )


def _seeds_text(s: SeedsSummary | None, a: AnalysisResult) -> str:
    if s is not None:
        return "seeds " + ", ".join(str(x) for x in s.seeds) + " (seeds.json)"
    seed = a.run.config.seed if a.run is not None else None
    return f"seed {seed} (analysis.json)" if seed is not None else "this analysis"


def answer(a: AnalysisResult, seeds: SeedsSummary | None = None) -> Answer:
    """The answer for an analysis (the first seed's) and, where there is one, its across-seeds
    summary."""
    where_all = _seeds_text(seeds, a)
    where_one = _seeds_text(None, a)
    lines: list[AnswerLine] = []
    one_d = a.first_layer is not None and a.first_layer.identity.dims == 1
    inputs = "signals" if one_d else "images"  # the wording follows the model's modality
    cc = a.verdicts.cross_correlation
    if cc is not None:
        rel = (
            "n/a"
            if cc.max_rel_diff is None
            else "< 1e-12"
            if cc.max_rel_diff < 1e-12
            else f"{cc.max_rel_diff:.1g}"
        )
        conv = a.headline.min_rel_diff_convolve
        differs = "" if conv is None else f"; true convolution differs by {conv:.2f} (relative)"
        lines.append(
            AnswerLine(
                "cross_correlation",
                "Does a conv layer compute a cross-correlation of each patch with its kernel?",
                cc.verdict,
                f"Every conv layer's output equals convlens's cross-correlation within "
                f"{rel} (relative, {cc.n_checked} layer(s) run in float64){differs}.",
                where_one,
                f"max relative difference {rel} over {cc.n_checked} layer(s)"
                + ("" if conv is None else f"; convolution differs by {conv:.2f}"),
            )
        )
    pooled = seeds.classical_kernels_pooled if seeds is not None else a.verdicts.classical_kernels
    init = seeds.differs_from_init_pooled if seeds is not None else a.verdicts.differs_from_init
    if pooled is not None:
        lines.append(
            AnswerLine(
                "classical_kernels",
                "Does the first layer learn classical (edge- or band-pass-like) filters?"
                if one_d
                else "Does the first layer learn classical (Sobel/Prewitt-like) kernels?",
                pooled.verdict,
                f"Above the spectrum-matched null (random kernels as smooth as the learned ones): "
                f"{_count(pooled)}; chance 5%. Above the random null, i.e. differs from "
                f"initialisation: {_count(init)} (smooth random kernels beat that null too).",
                where_all,
                _short_count(pooled, "above the spectrum-matched null (chance 5%)"),
            )
        )
    k = seeds.verdicts.kernel_learning if seeds is not None else a.verdicts.kernel_learning
    if k is not None:
        by = {c.pair: c for c in k.content}
        rl = by.get("trained vs random_labels")
        detail = ""
        if rl is not None and rl.p_value is not None:
            detail = (
                f" Trained vs random-label kernels: energy distance p {rl.p_text} "
                f"({rl.n_a} vs {rl.n_b} units over {rl.seeds} seed(s)); difference in orientation "
                f"selectivity {rl.selectivity_diff:+.2f} [{rl.selectivity_ci90[0]:+.2f}, "
                f"{rl.selectivity_ci90[1]:+.2f}] (90%)."
            )
        taught = f" The kernel the task taught most: {k.enriched}." if k.enriched else ""
        unfit = _unfitted_controls(a, seeds)
        short = (
            f"trained vs random-label kernels p {rl.p_text} ({rl.seeds} seed(s))"
            if rl is not None and rl.p_value is not None
            else "trained vs random-label kernels not compared"
        )
        short += f"; taught: {k.enriched}" if k.enriched else ""
        if unfit:
            taught += f" {unfit[0]}"
            short += f"; {unfit[1]}"
        lines.append(
            AnswerLine(
                "kernel_learning",
                "Where do the first-layer kernels come from: the task, the images, or init?",
                k.verdict,
                "Decided on what the kernels contain (power spectra), against a random-label "
                f"control and the initial weights.{detail}{taught}",
                where_all,
                short,
            )
        )
    shapes = _shapes_line(a, seeds, where_all, where_one)
    if shapes is not None:
        lines.append(shapes)
    stats = next((c for c in a.controls if c.kind == "input_statistics"), None)
    if stats is not None:
        f = stats.figures
        lines.append(
            AnswerLine(
                "input_correlation",
                "Does the kernel measure the correlation between input signals?",
                "no, a template",
                "No single kernel computes how two input signals co-vary: it is a template matched "
                "against each patch. What the kernels do carry is the images' correlation "
                "structure: median energy of a unit in the top "
                f"{int(f.get('m') or 0)} patch principal components "
                f"{_pct(f.get('trained.energy_median'))} trained, "
                f"{_pct(f.get('random_labels.energy_median'))} with random labels, "
                f"{_pct(f.get('init.energy_median'))} at initialisation." + _whitening(f),
                where_one,
                f"energy in the top {int(f.get('m') or 0)} patch principal components "
                f"{_pct(f.get('trained.energy_median'))} trained, "
                f"{_pct(f.get('init.energy_median'))} at init",
            )
        )
    rep = a.representation
    if rep is not None and rep.layers:
        parts, settles = [], []
        for layer in rep.layers:
            settle = "never" if layer.settle_epoch is None else f"from epoch {layer.settle_epoch}"
            floor = "n/a" if layer.floor is None else f"{layer.floor:.2f}"
            parts.append(f"{layer.layer}: CKA at init {floor}, >= {rep.settle_threshold} {settle}")
            settles.append(f"{layer.layer} {floor} at init, settled {settle}")
        lines.append(
            AnswerLine(
                "deeper_layers",
                "How do the feature maps change over training?",
                "measured",
                "Linear CKA of the probe feature maps vs the final epoch: "
                + "; ".join(parts)
                + ".",
                where_one,
                "CKA with the final epoch: " + "; ".join(settles),
            )
        )
    first = a.first_layer
    ood = a.verdicts.ood_learned.get(first.name, {}) if first is not None else {}
    across = seeds.verdicts.ood_learned.get(first.name, {}) if seeds and first else {}
    if across:
        ood = {name: v.verdict for name, v in across.items()}
    if ood:
        counts: dict[str, list[str]] = {}
        for name, level in ood.items():
            counts.setdefault(level, []).append(name)
        text = "; ".join(f"{level}: {', '.join(sorted(names))}" for level, names in counts.items())
        how = (
            (f"judged on all {seeds.n} seeds" if seeds.n > 1 else "judged on its one seed")
            + " with the networks as the unit, against untrained and random-label networks on "
            "the same images"
            if across and seeds is not None
            else "judged against untrained networks on the same images"
        )
        lines.append(
            AnswerLine(
                "ood",
                f"Does the trained net react weakly to {inputs} unlike its training data?",
                "see sets",
                f"At {first.name if first else '?'}, {how}: {text}.",
                where_all if across else where_one,
                f"{len(ood)} image sets at {first.name if first else '?'}: "
                + ", ".join(f"{len(names)} {level}" for level, names in counts.items()),
            )
        )
    summary = (
        "No, not between input signals: a conv layer computes the cross-correlation of each input "
        "patch with its kernel, a template. Whether the first layer's templates are classical, "
        "and whether the task or the images shaped them, is measured below against nulls and "
        "controls."
    )
    undecided = (
        "a verdict of 'inconclusive' means that neither a difference nor an equivalence was "
        "shown with these units and seeds."
    )
    limits = (
        f"This run cannot show what larger networks on natural images learn; {undecided}"
        if a.run is not None
        else "This analysis of one model file cannot show how its kernels arose (no training "
        f"history, no random-label control) or what other models learn; {undecided}"
    )
    told, told_short = _disclosure(a)
    return Answer(summary, lines, disclosure=told, disclosure_short=told_short, limits=limits)


def censuses(a: AnalysisResult, seeds: SeedsSummary | None) -> tuple[dict[str, KernelCensus], bool]:
    """The first-layer census of each kernel set, pooled over the seeds of ``seeds.json`` when it
    has them (second value ``True``), else of this analysis alone."""
    from convlens.analysis.evidence.census import CENSUS_SETS, first_layer_census, pooled_census

    if seeds is not None and seeds.census:
        pooled = {name: pooled_census(parts) for name, parts in seeds.census.items()}
        return {name: c for name, c in pooled.items() if c is not None}, True
    one = {name: first_layer_census(a, name) for name in CENSUS_SETS}
    return {name: c for name, c in one.items() if c is not None}, False


def _shapes_line(
    a: AnalysisResult, seeds: SeedsSummary | None, where_all: str, where_one: str
) -> AnswerLine | None:
    """What the first-layer units look like, the random-label and initial kernels of the same run
    counted by the same rule beside them (the census has no null: read it against them)."""
    from convlens.analysis.evidence.census import GABOR_R2, ORIENTATION_BINS

    cs, pooled = censuses(a, seeds)
    mine = cs.get("trained")
    if mine is None:
        return None
    me = "trained" if a.run is not None else "in this layer"
    others = [(n, c) for n, c in cs.items() if n != "trained"]

    def beside(field: str, fmt: str = "{n} {v}/{c.n_live}") -> str:
        parts = [
            fmt.format(n=n, v=getattr(c, field), c=c)
            + (f" in {len(c.orientation_bins)} bins" if field == "oriented" else "")
            for n, c in others
            if getattr(c, field) is not None
        ]
        return f" ({'; '.join(parts)})" if parts else ""

    if mine.gabor_or_edge is None:
        figure = f"{mine.n_live} live units; Gabor fits n/a (kernels of odd size >= 5 only)"
        text = figure
    else:
        text = (
            f"Gabor-like or edge-like units whose best slice a Gabor fits with R^2 >= {GABOR_R2}: "
            f"{mine.gabor_or_edge}/{mine.n_live} {me}{beside('gabor_or_edge')}"
        )
        figure = (
            f"{mine.gabor_or_edge}/{mine.n_live} Gabor/edge units with R^2 >= {GABOR_R2} {me}"
            + beside("gabor_or_edge")
        )
    if mine.oriented is not None:
        text += (
            f"; the preferred orientations of its {mine.oriented} oriented units fill "
            f"{len(mine.orientation_bins)} of {ORIENTATION_BINS} bins of "
            f"{180 / ORIENTATION_BINS:g} degrees" + beside("oriented", "{n}: {v} oriented units")
        )
        figure += f"; orientations in {len(mine.orientation_bins)} of {ORIENTATION_BINS} bins"
    if mine.colour_opponent is not None:
        text += f"; colour-opponent units {mine.colour_opponent}/{mine.n_live}" + beside(
            "colour_opponent"
        )
    names = [{"random labels": "random-label", "init": "initial"}.get(n, n) for n, _ in others]
    if "random labels" in cs:
        against = f"the same run's {' and '.join(names)} kernels beside them"
    elif others:
        against = (
            f"the same run's {' and '.join(names)} kernels beside them; with no random-label "
            "run, they cannot separate what training on the task did from smoothness alone"
        )
    else:
        against = (
            "a control, which this analysis has not got (no random-label run, no initial "
            "kernels), so they cannot say whether training shaped the units"
        )
    text += (
        ". Counts, not a test, and without a null (smooth random kernels count too, small ones "
        f"more often): read them against {against}."
    )
    return AnswerLine(
        "kernel_shapes",
        "How many first-layer units look like edge or Gabor filters?",
        "counted",
        text,
        where_all if pooled else where_one,
        figure,
    )


def _unfitted_controls(a: AnalysisResult, seeds: SeedsSummary | None) -> tuple[str, str] | None:
    """The caveat (in full, short) when random-label controls did not fit their permuted labels
    (training accuracy not above the majority-class rate at p < 0.01), ``None`` when all did or it
    was not recorded."""
    from convlens.analysis.evidence.seeds import control_row_values

    control = next((c for c in a.controls if c.kind == "random_labels"), None)
    if control is None or control.figures.get("chance_accuracy") is None:
        return None
    chance = float(control.figures["chance_accuracy"] or 0.0)
    accs: list[float | None] = [control.figures.get("final_train_accuracy")]
    ps: list[float | None] = [control.figures.get("label_fit_p")]
    if seeds is not None:
        accs = list(control_row_values(seeds, "random_labels", "final_train_accuracy") or accs)
        ps = list(control_row_values(seeds, "random_labels", "label_fit_p") or ps)
    known_accs = [v for v in accs if v is not None]
    known_ps = [v for v in ps if v is not None]
    if len(known_accs) != len(accs) or len(known_ps) != len(ps) or len(accs) != len(ps):
        return None
    unfit = sum(p >= 0.01 for p in known_ps)
    if not unfit:
        return None
    lo, hi = min(known_accs), max(known_accs)
    span = f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"
    return (
        f"Caveat: {unfit} of {len(ps)} random-label control(s) did not fit their labels (final "
        f"training accuracy {span}, chance {chance:.2f}): the verdict separates kernels that "
        "training on the task shaped from kernels that training without it left unshaped; it "
        "cannot show what fitting these images without the task would teach.",
        f"{unfit} of {len(ps)} random-label controls did not fit their labels",
    )


def _short_count(v: KernelVerdict, what: str) -> str:
    if v.above is None:
        return "not measured"
    return f"{v.above}/{v.n} units ({_pct(v.fraction)}) {what}"


def _whitening(f: dict[str, float | None]) -> str:
    slope, lo, hi = (f.get(f"trained.whitening_{s}") for s in ("slope", "null_low", "null_high"))
    if slope is None or lo is None or hi is None:
        return ""
    rl, init = f.get("random_labels.whitening_slope"), f.get("init.whitening_slope")
    others = "".join(
        f", {name} {v:+.2f}" for name, v in (("random labels", rl), ("init", init)) if v is not None
    )
    return (
        f" They do not whiten it: log-log slope of a layer's energy along each principal component "
        f"on its variance {slope:+.2f} trained{others} (random layers [{lo:+.2f}, {hi:+.2f}], "
        "a whitening layer -1)."
    )


#: the selection notes of the demo recipes (:func:`convlens.demo.selection_note`) -> what was chosen
SELECTED = {
    "recipe chosen by a sweep": "the recipe was selected to maximise the first-layer kernel metric",
    "recipe and task chosen on a pilot": "the task and recipe were selected on a pilot that "
    "measured the first layer's figures",
}


def _disclosure(a: AnalysisResult) -> tuple[str | None, str | None]:
    """How the recipe was chosen, in full and in one line."""
    notes = [(n, what) for n in a.notes for start, what in SELECTED.items() if n.startswith(start)]
    if not notes:
        return None, None
    note, selected = notes[0]
    ref = next((c for c in a.controls if c.kind == "recipe_reference" and c.units), None)
    if ref is None or ref.units is None:
        return note, selected
    u, f = ref.units, ref.figures
    acc = f.get("test_accuracy")
    main = a.first_layer.matching.units if a.first_layer and a.first_layer.matching else None
    mine = (
        f" (this run: {main.above_spectrum_null95}/{main.n_live} and {main.above_null95}/{main.n_live})"
        if main is not None
        else ""
    )
    short = (
        f"{selected}; a reference run not selected on it ({'; '.join(ref.notes)}) has "
        f"{u.above_spectrum_null95}/{u.n_live} units above the spectrum-matched null"
        + (f" (this run {main.above_spectrum_null95}/{main.n_live})" if main is not None else "")
    )
    return (
        f"{note}. Beside it, a reference run not selected on the metric "
        f"({'; '.join(ref.notes)}): test accuracy "
        f"{'n/a' if acc is None else f'{acc:.3f}'}, {u.above_spectrum_null95}/{u.n_live} first-layer "
        f"units above the spectrum-matched null and {u.above_null95}/{u.n_live} above the random "
        f"null{mine}"
    ), short


def answer_lines(a: AnalysisResult, seeds: SeedsSummary | None = None) -> list[str]:
    """The answer as plain text lines (what the CLI prints)."""
    ans = answer(a, seeds)
    out = [ans.summary]
    if ans.disclosure:
        out.append(f"Note: {ans.disclosure}.")
    for line in ans.lines:
        out.append(f"- {line.question} {line.verdict.upper()}. {line.text} [{line.source}]")
    out.append(ans.limits)
    return out


def readme_block(a: AnalysisResult, seeds: SeedsSummary | None = None) -> str:
    """The README's answer section (Markdown), generated from a demo's results."""
    ans = answer(a, seeds)
    parts = [ans.summary, ""]
    if ans.disclosure:
        parts += [f"Note: {ans.disclosure}.", ""]
    parts += [*answer_table(ans.lines), "", ans.limits]
    return "\n".join(parts) + "\n"


def answer_table(lines: list[AnswerLine]) -> list[str]:
    """Answer lines as the rows of a Markdown table (question, verdict, figures, where from)."""
    rows = ["| question | verdict | figures (control or null) | from |", "|---|---|---|---|"]
    for line in lines:
        text = line.text.replace("|", "\\|")
        rows.append(f"| {line.question} | **{line.verdict}** | {text} | {line.source} |")
    return rows
