"""The report's answer and OOD sections (``report/answer.py``, ``report/ood.py``): the answer first
with the run's own numbers and the glossary, the controls, the OOD claim against the untrained
controls, and the predictions table (issue 15)."""

from __future__ import annotations

import shutil

from markupsafe import escape

from convlens.analysis.result import AnalysisResult, Control
from convlens.report import build_report
from convlens.report.answer import GLOSSARY
from convlens.report.build import build_context, load_inputs, render_html
from convlens.report.ood import LEARNED_LEVELS


def test_answer_comes_first_with_the_runs_own_numbers(demo_run):
    """Issue 15 (the report's content)."""
    html = (demo_run / "report.html").read_text()
    a = AnalysisResult.read(demo_run / "analysis.json")
    answer = html.index('<section id="answer">')
    assert answer < html.index('<section id="arithmetic">') < html.index('<section id="crosscorr">')
    head = html[answer : html.index('<section id="arithmetic">')]
    m0 = a.first_layer.matching
    assert f"{100 * m0.fraction_above_null95:.0f}%" in head
    assert a.verdicts.classical_kernels.verdict in head
    assert a.verdicts.cross_correlation.verdict in head
    for name, b in a.distribution.baselines.items():
        assert f"{b.max_softmax_auroc:.2f} ({name})" in head
    # the worked example says 154, and explains 146
    ex = html[html.index('<section id="arithmetic">') : html.index('<section id="glossary">')]
    assert "<b>154</b>" in ex and "not 146" in ex
    # every statistical term is defined in the answer (first use) and in the glossary
    gl = html[html.index('<section id="glossary">') : html.index('<section id="playground">')]
    for term, text in GLOSSARY.values():
        assert escape(text) in gl, term
    for key in ("auroc", "idood", "null", "p95", "spectrum", "bootstrap", "ci", "pvalue"):
        assert f'id="t-{key}"' in head and escape(GLOSSARY[key][1]) in head, key
    assert "NCC" in html and escape(GLOSSARY["ncc"][1]) in html


def test_controls_render_generically_and_missing_sections_say_so(tmp_path, demo_run, no_figures):
    """Issue 15 (the report's content)."""
    run = tmp_path / "run"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("snapshots", "probes", "seeds*"))
    a = AnalysisResult.read(run / "analysis.json")
    a.controls.append(
        Control("untrained network", "same analysis at init", {"frac": 0.04, "n": 8.0, "u": None})
    )
    (run / "analysis.json").write_text(a.to_json())
    (run / "metrics.jsonl").unlink()
    html = build_report(run).read_text()
    sec = html[html.index('<section id="controls">') : html.index('<section id="limits">')]
    assert "untrained network" in sec and "same analysis at init" in sec
    assert "0.040" in sec and ">8<" in sec and "n/a" in sec  # counts shown as integers
    for sid in ("evolution", "training", "featuremaps", "classical", "seeds"):
        body = html[html.index(f'<section id="{sid}">') :]
        body = body[: body.index("</section>")]
        assert "No data:" in body, sid
    assert Control("x", "y").figures == {}


def test_controls_with_fields_added_later_still_render(demo_run, no_figures):
    """Controls may grow optional fields (another issue): a verdict becomes a pill, the rest text.

    Issue 15 (the report's content)."""
    from types import SimpleNamespace

    from convlens.report.answer import controls

    a = AnalysisResult.read(demo_run / "analysis.json")
    a.controls = [
        SimpleNamespace(
            name="random labels", description="d", figures={"f": 0.5}, verdict="holds", seeds=[0, 1]
        )
    ]
    (row,) = controls(a)
    assert row["verdict"] == "holds" and row["extra"] == {"seeds": "0, 1"}
    html = render_html({**build_context(load_inputs(demo_run)), "controls": [row]})
    sec = html[html.index('<section id="controls">') :]
    assert '<h3>random labels <span class="verdict v-holds">holds</span></h3>' in sec
    assert "seeds: 0, 1" in sec


# ----------------------------------------------------------------------------- OOD vs untrained


def _ci2(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _pill(level: str) -> str:
    return f'<span class="verdict v-{level.replace(" ", "-")}">{level}</span>'


def _section(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end)]


def test_answer_states_the_ood_learned_levels_with_the_runs_numbers(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    a = inp.a
    html = render_html(build_context(inp))
    head = _section(html, '<section id="answer">', '<section id="arithmetic">')
    levels = [lv for per in a.verdicts.ood_learned.values() for lv in per.values()]
    assert levels and a.verdicts.ood_learned_rule
    for level in set(levels):  # every level with its count, as a pill
        assert f"{_pill(level)} {levels.count(level)}" in head, level
    assert escape(a.verdicts.ood_learned_rule) in head
    first = next(r for r in a.layers if r.distribution is not None)
    for name, v in first.distribution.ood.items():
        text = f"<i>{escape(name)}</i>: trained AUROC {v.auroc:.2f} {_ci2(v.auroc_ci)}"
        assert text in head, name
        row = head[head.index(text) :]
        row = row[: row.index("</li>")]
        assert v.controls  # the demo has untrained controls
        for c in v.controls:
            assert (
                escape(
                    f"untrained ({c.control}) {c.auroc:.2f}, difference {c.auroc_diff:+.2f} "
                    f"{_ci2(c.auroc_diff_ci)}"
                )
                in row
            ), (name, c.control)
        assert _pill(a.verdicts.ood_learned[first.name][name]) in row
        assert ("(one source photo)" in row) == (v.n_sources == 1), name
    one_photo = [d.name for d in a.distribution.ood if d.n_sources == 1]
    assert one_photo  # the demo's motorcycle and cat sets are crops of one photo each
    assert f"{', '.join(one_photo)}: each made from one source photo" in head
    # "learned" is claimed for exactly the sets the analysis calls learned (or strengthened)
    learned = {
        o: [layer for layer, per in a.verdicts.ood_learned.items() if per[o] in LEARNED_LEVELS]
        for o in a.verdicts.ood_learned[first.name]
    }
    learned = {o: ls for o, ls in learned.items() if ls}
    if learned:
        claim = ", ".join(f"<i>{o}</i> ({', '.join(ls)})" for o, ls in learned.items())
        assert f"Training made the difference only for {claim};" in head
    else:
        assert "For no set did training make the difference" in head


def test_answer_never_claims_learned_without_the_controls(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    a = inp.a
    for per in a.verdicts.ood_learned.values():
        for o in per:
            per[o] = "present before training"
    head = render_html(build_context(inp)).split('<section id="arithmetic">')[0]
    assert "For no set did training make the difference" in head
    assert "Training made the difference only" not in head
    n_pairs = sum(map(len, a.verdicts.ood_learned.values()))
    assert f"{_pill('present before training')} {n_pairs}." in head
    # no untrained control at all: the answer says that nothing decides learned vs present before
    for r in a.layers:
        for v in r.distribution.ood.values():
            v.controls, v.learned_verdict = [], None
            v.untrained = v.random_labels = None  # the arms outside `controls` (schema 6)
    a.verdicts.ood_learned = {}
    head = render_html(build_context(inp)).split('<section id="arithmetic">')[0]
    assert "No untrained control in this analysis" in head
    assert "Training made the difference" not in head and "For no set did" not in head


def test_ood_table_shows_trained_untrained_and_difference(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    a = inp.a
    html = render_html(build_context(inp))
    sec = _section(html, '<section id="distribution">', '<section id="receptive">')
    assert escape(a.distribution.learned_rule) in sec
    assert 'alt="AUROC of ID vs each set, trained and untrained networks, per layer"' in sec
    for name in a.distribution.controls:
        assert f"<th>untrained: {escape(name)}</th>" in sec
    for r in a.layers:
        table = sec[sec.index(f'<table class="ood-learned" data-layer="{r.name}">') :]
        table = table[: table.index("</table>")]
        d = r.distribution
        for name, v in [*d.ood.items(), *d.other.items()]:
            row = table[table.index(f"<tr><td>{escape(name)}</td>") :]
            row = row[: row.index("</tr>")]
            assert f"{v.auroc:.2f} {_ci2(v.auroc_ci)}" in row, (r.name, name)
            for c in v.controls:
                assert f'<td class="num">{c.auroc:.2f}</td>' in row
                assert f"{c.auroc_diff:+.2f} {_ci2(c.auroc_diff_ci)}" in row
            level = a.verdicts.ood_learned[r.name].get(name, v.learned_verdict)
            assert _pill(level) in row and _pill(v.verdict) in row
            assert f"{v.n} ({v.n_sources})" in row
            assert ("<b>one photo</b>" in row) == (v.n_sources == 1)
        assert d.other and "other classes of the training data (not OOD)" in table


def test_predictions_table_trained_and_untrained(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    p = inp.a.predictions
    assert p is not None and p.focus_class == "face"
    html = render_html(build_context(inp))
    sec = _section(html, '<h3 id="predictions">', '<section id="receptive">')
    models = list(dict.fromkeys(s.model for s in p.sets))
    assert models[0] == "trained" and len(models) >= 2  # trained and the untrained networks
    for m in models:
        assert f"<th>{escape(m)}: face</th><th>{escape(m)}: max-softmax</th>" in sec
    for s in p.sets:
        row = sec[sec.index(f"<tr><td>{escape(s.set)}</td>") :]
        row = row[: row.index("</tr>")]
        lo, hi = s.class_fraction_ci["face"]
        frac = f"{100 * s.class_fractions['face']:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]"
        soft = f"{s.mean_max_softmax:.2f} {_ci2(s.mean_max_softmax_ci)}"
        assert f'<td class="num">{frac}</td><td class="num">{soft}</td>' in row, (s.set, s.model)
    # the answer's follow-up: the same figures, trained vs untrained, with the chance level
    head = html.split('<section id="arithmetic">')[0]
    assert f"(chance level {1 / len(p.classes):.2f}), {' vs '.join(models)}:" in head
    for s in p.sets:
        frac = f"{100 * s.class_fractions['face']:.0f}%"
        assert f"{frac} " in head and f"(max-softmax {s.mean_max_softmax:.2f})" in head


def test_predictions_without_a_focus_class_show_the_most_frequent_class(demo_run, no_figures):
    """Issue 15 (the report's content)."""
    inp = load_inputs(demo_run)
    p = inp.a.predictions
    p.focus_class = None  # data without a "face" class (e.g. digits)
    html = render_html(build_context(inp))
    head = html.split('<section id="arithmetic">')[0]
    sec = _section(html, '<h3 id="predictions">', '<section id="receptive">')
    assert "Its most frequent class (share of images)" in head
    assert "Most frequent class (share of images)" in sec
    for s in p.sets:
        top = f"{escape(s.top_class)} ({100 * s.class_fractions[s.top_class]:.0f}%)"
        assert top in head and f'<td class="num">{top}</td>' in sec, (s.set, s.model)
