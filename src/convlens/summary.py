"""The lines ``convlens analyze`` prints for an :class:`AnalysisResult`: a compact per-layer table
(model files) and the headline figures (matching, verification, activations, controls)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convlens.analysis.result import AnalysisResult, LayerMatch, SpectralSummary, Whitening


def layer_table(result: AnalysisResult, limit: int = 40) -> list[str]:
    """A compact per-layer table: layer, kernels (shape), fraction above the null's 95th
    percentile, top categories, check status and, where measured, the theoretical receptive
    field; at most ``limit`` rows (the rest counted)."""
    fields = {}
    if result.receptive_fields is not None:
        fields = {
            f.name: "global" if f.is_global else "x".join(map(str, f.size))
            for f in result.receptive_fields.theoretical
        }
    rows: list[tuple[str, ...]] = [
        ("layer", "kernels", "above null", "top categories", "check", "RF")
    ]
    for layer in result.layers[:limit]:
        ident, m, c = layer.identity, layer.matching, layer.check
        shape = "x".join(map(str, ident.kernel_size))
        frac = (
            "-"
            if m is None or m.fraction_above_null95 is None
            else f"{m.fraction_above_null95:.0%}"
        )
        if m is not None and m.skipped:
            frac = "skipped"
        cats = sorted((m.categories if m else {}).items(), key=lambda kv: (-kv[1], kv[0]))
        top = ", ".join(f"{k} {n}" for k, n in cats[:2]) or "-"
        status: str = c.status if c is not None else "-"
        if ident.order == "definition" and result.distribution is not None:
            status = "not executed"
        elif c is not None and c.status == "checked":
            status = "checked" if c.is_cross_correlation else "differs"
        rf = fields.get(ident.name, "-")
        kernels = f"{layer.n_kernels} x {shape}"
        if m is not None and m.n_kernels and list(m.weight_shape[2:]) != list(ident.kernel_size):
            # matched in another form than stored: a space-to-depth stem's de-interleaved kernels
            kernels = f"{m.n_kernels} x {'x'.join(map(str, m.weight_shape[2:]))}*"
        rows.append((ident.name, kernels, frac, top, status, rf))
    if not fields:
        rows = [r[:5] for r in rows]
    n = len(rows[0])
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(n)]
    lines = [
        "  ".join(v[:40].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    if len(result.layers) > limit:
        lines.append(f"... and {len(result.layers) - limit} more layer(s) (see the JSON)")
    if any(r[1].endswith("*") for r in rows):
        lines.append("* kernels matched as the layer applies them to the image (see the notes)")
    return lines


def analysis_summary(result: AnalysisResult) -> list[str]:
    """The lines ``convlens analyze`` prints: per layer matching (verdict on the first layer,
    categories), verification, AUROCs."""
    lines = []
    for layer in result.layers:
        m = layer.matching
        if m is None:
            continue
        if m.volume is not None:
            lines.append(_volume_line(m))
            continue
        if m.skipped:
            lines.append(f"{m.layer}: {m.n_kernels} kernels, matching skipped: {m.skipped}")
            continue
        if m.spectral is not None:
            lines.append(_one_d_line(m, _first_layer_verdict(result, layer.name)) + _caveat(m))
            continue
        init = m.init_fraction_above_null95
        init_text = f", epoch-000 kernels {init:.0%}" if init is not None else ""
        p95 = m.null.p95 if m.null is not None and m.null.p95 is not None else float("nan")
        cats = sorted(m.categories.items(), key=lambda kv: (-kv[1], kv[0]))
        cat_text = ", ".join(f"{c} {n}" for c, n in cats) or "none"
        verdict = _first_layer_verdict(result, layer.name)
        lines.append(
            f"{m.layer}: {m.n_kernels} kernels {m.kernel_size}x{m.kernel_size}, "
            f"{m.fraction_above_null95 or 0:.0%} above the random null's 95th percentile "
            f"({p95:.3f}; chance 5%{init_text}){verdict}; categories {cat_text}" + _caveat(m)
        )
    lines.extend(_kernel_learning_lines(result))
    lines.extend(_verify_lines(result))
    for name, per in result.headline.auroc.items():
        values = ", ".join(f"{o} {_f2(v)}" for o, v in per.items())
        lines.append(f"{name} ID-vs-OOD AUROC: {values}")
    lines.extend(_sources_line(result))
    lines.extend(_untrained_lines(result))
    lines.extend(_prediction_lines(result))
    lines.extend(channel_lines(result))
    lines.extend(f"note: {n}" for n in result.notes)
    lines.extend(f"error in {e.stage}: {e.message}" for e in result.errors)
    return lines


def channel_lines(result: AnalysisResult) -> list[str]:
    """Per layer, what its channels respond to: how many channels' top exemplars all come from one
    set, and the strongest channel per set (no part names: those need labelled part masks)."""
    lines = []
    for rec in result.channels or []:
        if rec.skipped:
            lines.append(f"{rec.layer} channels: not measured ({rec.skipped})")
            continue
        pure: dict[str, list[int]] = {}
        for ch in rec.channels:
            sets = {e.set for e in ch.top}
            if len(sets) == 1:
                pure.setdefault(next(iter(sets)), []).append(ch.channel)
        text = "; ".join(
            f"{len(chs)} on {name!r} only (channels {', '.join(map(str, chs[:6]))}"
            + (", ..." if len(chs) > 6 else "")
            + ")"
            for name, chs in sorted(pure.items(), key=lambda kv: -len(kv[1]))
        )
        lines.append(
            f"{rec.layer} channels: top {rec.k} exemplars of {len(rec.channels)} channels on "
            f"{rec.n_images} images; {text or 'none from a single set'}"
        )
        named = [
            f"channel {channel}: {c.part} (IoU {c.iou:.2f}, null p95 "
            f"{max(c.null_shift_p95, c.null_untrained_p95 or 0):.2f})"
            for channel, c in rec.detectors()
        ]
        if rec.concept_rule:
            rl = rec.random_label_detectors
            rl_text = (
                ""
                if rl is None
                else "; random-label network: " + ", ".join(f"{p} {n}" for p, n in rl.items())
            )
            lines.append(f"{rec.layer} face-part detectors: {'; '.join(named) or 'none'}{rl_text}")
    return lines


def _kernel_learning_lines(result: AnalysisResult) -> list[str]:
    """The per-unit kernel verdict and the three-way verdict with their controls."""
    lines = []
    for v, null, what in (
        (result.verdicts.classical_kernels, "spectrum-matched", "classical kernels"),
        (result.verdicts.differs_from_init, "random (init)", "differs from initialisation"),
    ):
        if v is not None and v.unit is not None and v.above is not None:
            lo, hi = v.ci
            ci = "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"
            lines.append(
                f"{v.layer}: {v.above} of {v.n} live units above the {null} null (Sidak over "
                f"slices; {v.n_dead} dead excluded), {v.fraction or 0:.0%}{ci} Wilson 95%; binomial "
                f"p {v.p_text}: {what}: {v.verdict}"
            )
    k = result.verdicts.kernel_learning
    if k is not None:
        props = "; ".join(
            f"{name} {p.x}/{p.n}"
            + ("" if p.ci[0] is None or p.ci[1] is None else f" [{p.ci[0]:.2f}, {p.ci[1]:.2f}]")
            for name, p in k.proportions.items()
        )
        tests = "; ".join(
            (c.control if " vs " in c.control else f"vs {c.control}") + f" p {c.p_text}"
            for c in k.comparisons
        )
        lines.append(
            f"kernel origin ({k.layer}): {k.verdict} (units above null: {props}; {tests}; "
            f"controls: {', '.join(k.controls) or 'none'})"
        )
    for c in result.controls:
        if c.kind == "input_statistics":
            lines.append(_patch_line(c.figures))
            if c.whitening is not None:
                lines.extend(_whitening_lines(c.whitening))
    r = result.representation
    if r is not None and r.layers:
        per = "; ".join(
            f"{x.layer} floor {_f2(x.floor)}, settles at epoch "
            + ("never" if x.settle_epoch is None else str(x.settle_epoch))
            for x in r.layers
        )
        lines.append(
            f"representation over training (linear CKA of {r.n_probes} probes vs epoch "
            f"{r.final_epoch}; floor = epoch 000; settled = stays >= {r.settle_threshold:g}): {per}"
        )
    return lines


def _patch_line(f: dict[str, float | None]) -> str:
    """``input statistics: patch PCA top 5 of 25 components; median energy ...`` (the control)."""

    def g(key: str) -> str:
        v = f.get(key)
        return "n/a" if v is None else f"{v:.2f}"

    sets = [s for s in ("trained", "random_labels", "init") if f"{s}.energy_median" in f]
    energy = ", ".join(f"{s} {g(s + '.energy_median')}" for s in sets)
    above = ", ".join(f"{s} {g(s + '.energy_above_spectrum_null95')}" for s in sets)
    return (
        f"input statistics: patch PCA top {int(f.get('m') or 0)} of {int(f.get('d') or 0)} "
        "components; median "
        f"energy inside them: {energy} (random null p95 {g('trained.energy_random_null_p95')}, "
        f"spectrum null p95 {g('trained.energy_spectrum_null_p95')}); units above the spectrum "
        f"null: {above}"
    )


def _s2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _interval(ci: tuple[float | None, float | None]) -> str:
    return f"[{_s2(ci[0])}, {_s2(ci[1])}]"


def _whitening_lines(w: Whitening) -> list[str]:
    """``whitening (energy along the patch PCs vs eigenvalue, log-log slope; ...)``: both
    rotation-invariant tests per kernel set against random layers, and the slope over training."""
    e, s = w.reference_energy, w.reference_spectrum
    energy = "; ".join(
        f"{name} {_s2(t.energy_slope)} {_interval(t.energy_slope_ci)} vs null "
        f"{_interval(t.energy_null)}: {t.energy_verdict}"
        for name, t in w.sets.items()
    )
    spectrum = "; ".join(
        f"{name} {_s2(t.spectrum_slope)} {_interval(t.spectrum_slope_ci)} vs null "
        f"{_interval(t.spectrum_null)}: {t.spectrum_verdict}"
        for name, t in w.sets.items()
    )
    lines = [
        f"whitening (log-log slope of the layer's energy along the {w.n_components} patch PCs on "
        f"their eigenvalues; PCA whitening {_s2(e.get('pca_whitening'))}, the top "
        f"{w.reference_units} PCs {_s2(e.get('top_components'))}; 95% bootstrap over units vs "
        f"{w.n_null} random layers): {energy}",
        f"whitening (log-log slope of the filters' mean power spectrum on the patches'; PCA "
        f"whitening {_s2(s.get('pca_whitening'))}, matched filter {_s2(s.get('covariance'))}): "
        f"{spectrum}",
    ]
    if w.over_training:
        per = ", ".join(f"{x.epoch} {_s2(x.test.energy_slope)}" for x in w.over_training)
        lines.append(f"whitening slope over training (epoch slope): {per}")
    return lines


def _caveat(m: LayerMatch) -> str:
    """The short form of a layer's quantisation and all-zero-kernel caveats (``LayerMatch.notes``)."""
    out = ""
    if m.n_zero_kernels and m.spectral is None:
        out += f"; {m.n_zero_kernels} all-zero kernel(s) left out of the fractions"
    if any(n.startswith("quantised weights") for n in m.notes):
        out += "; quantised weights: fractions not comparable with the float null"
    return out


def _first_layer_verdict(result: AnalysisResult, name: str) -> str:
    """``; first layer, classical kernels: yes, binomial p 0.006`` on the first layer, else ``""``."""
    first = result.first_layer
    v = result.verdicts.classical_kernels
    if first is None or name != first.name or v is None:
        return ""
    from convlens.analysis.evidence.stats import format_p

    p_text = "" if v.p_value is None else f", binomial p {format_p(v.p_value)}"
    return f"; first layer, classical kernels: {v.verdict}{p_text}"


def _one_d_line(m: LayerMatch, verdict: str = "") -> str:
    """``c1d: 64 kernels (1-D, 15 taps), 94% above null; Fourier/Gabor 60; peak frequencies ...``"""
    s = m.spectral
    assert s is not None
    p95 = m.null.p95 if m.null is not None and m.null.p95 is not None else float("nan")
    cats = sorted(m.categories.items(), key=lambda kv: (-kv[1], kv[0]))
    cat_text = ", ".join(f"{c} {n}" for c, n in cats) or "none"
    where = f"; {m.geometry}" if m.geometry else ""
    peaks = (
        f"peak frequencies {s.peak_min:.2f}-{s.peak_max:.2f} cycles/sample "
        f"(median {s.peak_median:.2f}), {s.fraction_concentrated or 0:.0%} with >50% of their "
        f"energy within 1/{m.kernel_size} of the peak"
        if s.peak_min is not None and s.peak_max is not None and s.peak_median is not None
        else "no spectrum"
    )
    if s.n_zero_kernels:
        peaks += f"; {s.n_zero_kernels} all-zero kernel(s) left out of the spectrum"
    frac = (
        f"{m.fraction_above_null95:.0%} above the random 1-D null's 95th percentile "
        f"({p95:.3f}; chance 5%)"
        if m.fraction_above_null95 is not None
        else f"no test power: the random 1-D null's 95th percentile is {p95:.4f}"
    )
    return (
        f"{m.layer}: {m.n_kernels} kernels (1-D, {m.kernel_size} taps{where}), "
        f"{frac}{verdict}; categories {cat_text}; {peaks}{_responses(s)}"
    )


def _responses(s: SpectralSummary) -> str:
    """``; filters by -3 dB band: low-pass 3 (median cutoff 0.100), band-pass 5`` (cutoffs in
    cycles/sample)"""
    if not s.responses:
        return ""
    parts = []
    for kind, n in sorted(s.responses.items(), key=lambda kv: (-kv[1], kv[0])):
        cut = {"low-pass": s.median_lowpass_cutoff, "high-pass": s.median_highpass_cutoff}.get(kind)
        cut_text = f" (median cutoff {cut:.3f} cycles/sample)" if cut is not None else ""
        parts.append(f"{kind} {n}{cut_text}")
    return "; filters by -3 dB band: " + ", ".join(parts)


def _volume_line(m: LayerMatch) -> str:
    """``c3d: 128 kernels (3-D, 3x3x3), not matched (no 3-D bank); separability ...``"""
    v = m.volume
    assert v is not None
    shape = "x".join(map(str, v.kernel_shape))
    if v.median_separability is None:
        return f"{m.layer}: {m.n_kernels} kernels (3-D, {shape}), nothing measured"
    return (
        f"{m.layer}: {m.n_kernels} kernels (3-D, {shape}), not matched (no classical 3-D bank); "
        f"median norm {v.median_norm:.3g}, median DC fraction {v.median_dc_fraction:.2f}, "
        f"space-time separability median {v.median_separability:.2f} "
        f"({v.fraction_separable or 0:.0%} >= {v.separable_threshold:g})"
    )


def _verify_lines(result: AnalysisResult) -> list[str]:
    h, v = result.headline, result.verdicts.cross_correlation
    if h.all_layers_cross_correlation is None or v is None:
        return []
    tol = "; ".join(f"{b}: tolerance {t:g}" for b, t in v.tolerances.items())
    rel = "n/a" if h.max_rel_diff_correlate is None else f"{h.max_rel_diff_correlate:.2e}"
    line = (
        f"layer == cross-correlation ({v.verdict}): max relative |diff| {rel} over "
        f"{h.n_layers_checked} layer(s) ({tol})"
    )
    if h.min_rel_diff_convolve is None:
        conv = "vs true convolution: not measurable, every checked layer is flip-invariant"
    else:
        conv = f"vs true convolution: min relative |diff| {h.min_rel_diff_convolve:.2e}"
    conv += f" ({h.n_flip_invariant} flip-invariant layer(s), e.g. 1x1, excluded)"
    lines = [f"{line}; {conv}"]
    for layer in result.layers:
        c = layer.check
        if c is not None and c.status != "checked":
            lines.append(f"{c.layer}: {c.status}" + (f" ({c.message})" if c.message else ""))
    return lines


def _paired_text(c: Any) -> str:
    """``epoch 000 0.61 (-0.19 [-0.30, -0.08])``: a paired control's AUROC and trained minus it."""
    lo, hi = c.auroc_diff_ci
    diff = f"{c.auroc_diff:+.2f}" if c.auroc_diff is not None else "n/a"
    return f"{c.control} {_f2(c.auroc)} ({diff} [{_f2(lo)}, {_f2(hi)}])"


def _untrained_lines(result: AnalysisResult) -> list[str]:
    """Per layer and OOD set: the trained AUROC, the untrained initialisations' median [2.5, 97.5
    percentiles] and the trained AUROC's empirical p among them, the epoch-000 and random-label
    networks with trained minus each [95% CI], and the learned verdict."""
    lines = []
    for layer in result.layers:
        d = layer.distribution
        arms = (
            [c for c in d.ood.values() if c.controls or c.untrained or c.random_labels] if d else []
        )
        if d is None or not arms:
            continue
        parts = []
        n = next((c.untrained.n for c in arms if c.untrained is not None), None)
        for o, c in d.ood.items():
            text = f"{o} {_f2(c.auroc)}"
            u = c.untrained
            if u is not None:
                p = "n/a" if u.p_value is None else f"{u.p_value:.2g}"
                text += f" vs untrained {_f2(u.median)} [{_f2(u.interval[0])}, {_f2(u.interval[1])}] p {p}"
            paired = [*c.controls, *([c.random_labels] if c.random_labels is not None else [])]
            text += "".join(f", {_paired_text(x)}" for x in paired)
            parts.append(f"{text}: {c.learned_verdict}")
        what = [f"untrained: median [2.5, 97.5 percentiles] of {n} initialisations, p"] if n else []
        what.append("paired: trained minus it [95% CI]")
        lines.append(f"{layer.name} OOD AUROC trained vs ({'; '.join(what)}): " + "; ".join(parts))
    return lines


def _sources_line(result: AnalysisResult) -> list[str]:
    """How many source images each OOD set comes from (a one-photo set says what its CI means)."""
    from convlens.analysis.evidence.stats import ONE_SOURCE_LABEL

    d = result.distribution
    if d is None or not any(o.n_sources is not None for o in d.ood):
        return []
    parts = [f"{o.name} {o.n_sources}" for o in d.ood if o.n_sources is not None]
    one = [o.name for o in d.ood if o.n_sources == 1]
    tail = f"; {', '.join(one)}: {ONE_SOURCE_LABEL}" if one else ""
    return [f"ID: {d.id.name} (n {d.id.n}); source images per OOD set: {', '.join(parts)}{tail}"]


def _prediction_lines(result: AnalysisResult) -> list[str]:
    """What the network predicts on each set, trained vs untrained (one line per network)."""
    p = result.predictions
    if p is None:
        return []
    lines = []
    for model in list(dict.fromkeys(s.model for s in p.sets))[:2]:  # trained, epoch 000
        rows = [s for s in p.sets if s.model == model]
        if p.focus_class is not None:
            what = f"classified {p.focus_class!r}"
            vals = [f"{s.set} {s.class_fractions.get(p.focus_class, 0.0):.0%}" for s in rows]
        else:
            what = "top class"
            vals = [
                f"{s.set} {s.top_class} {s.class_fractions.get(s.top_class or '', 0.0):.0%}"
                for s in rows
            ]
        msp = ", ".join(_f2(s.mean_max_softmax) for s in rows)
        lines.append(f"predictions ({model}), {what}: {', '.join(vals)}; mean max-softmax {msp}")
    return lines


def _f2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"
