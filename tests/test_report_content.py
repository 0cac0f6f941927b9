"""The report's content (issue 15): answer first, glossary, controls, every layer, reproduce
commands that the real CLI parses, non-contiguous snapshot epochs, a model-file analysis, size."""

import itertools
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from convlens.analysis.result import AnalysisResult, Control
from convlens.report import build_report
from convlens.report.answer import GLOSSARY
from convlens.report.build import build_context, load_inputs, render_html
from convlens.report.ood import LEARNED_LEVELS


def test_answer_comes_first_with_the_runs_own_numbers(demo_run):
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


def test_every_layer_matching_and_kernel_cards(demo_run):
    html = (demo_run / "report.html").read_text()
    a = AnalysisResult.read(demo_run / "analysis.json")
    sec = html[html.index('<section id="layers">') : html.index('<section id="evolution">')]
    for layer in a.layers:
        m = layer.matching
        assert f"<h3>{layer.name} " in sec
        assert f"{100 * m.fraction_above_null95:.0f}% ({m.null.p95:.3f})" in sec
        shown = min(len(m.kernels), 32)
        assert f"Showing {shown} of {m.n_kernels} kernels" in sec
        assert f"null percentile {m.kernels[0].percentile:.2f}" in sec
    assert sec.count('<svg class="kern"') >= 2 * 8


def _parse(cmd: str):
    """Parse one command with the real click command (no execution)."""
    from convlens.cli import cli

    argv = shlex.split(cmd)
    assert argv[0] == "convlens"
    command = cli.commands[argv[1]]
    return argv[1], command.make_context(argv[1], argv[2:]).params


def test_reproduce_commands_parse_and_write_elsewhere(demo_run, no_figures):
    inp = load_inputs(demo_run)
    cmds = build_context(inp)["reproduce"]["commands"]
    cfg = inp.a.run.config
    parsed = [_parse(c["cmd"]) for c in cmds]
    # the demo's analysis has a random-label control: its training run is reproduced too
    assert [name for name, _ in parsed] == ["train", "train", "analyze", "report", "demo"]
    train, control = parsed[0][1], parsed[1][1]
    for opt in ("data", "model", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "seed"):
        assert train[opt] == getattr(cfg, opt) and control[opt] == getattr(cfg, opt), opt
    assert control["shuffle_labels"] and not train["shuffle_labels"]
    # every field, the ones the lines used to drop too (first_kernel, ood, ood_size, probes)
    from dataclasses import replace

    from convlens.runs.records import RunConfig

    assert RunConfig.from_cli(train) == cfg
    assert RunConfig.from_cli(control) == replace(cfg, shuffle_labels=True)
    new, new_control = Path(train["out_dir"]), Path(control["out_dir"])
    assert new != demo_run and not new.exists() and not new_control.exists()
    analyze = parsed[2][1]
    assert Path(analyze["target"]) == new and analyze["null_size"] == inp.a.settings.n_null
    assert [Path(c) for c in analyze["control_runs"]] == [new_control]
    assert Path(parsed[3][1]["run_dir"]) == new
    demo = parsed[4][1]
    assert demo["n_seeds"] == 2 and Path(demo["out_dir"]) != demo_run
    html = render_html(build_context(inp))
    assert "convlens demo --seeds 2" in html


def test_controls_render_generically_and_missing_sections_say_so(tmp_path, demo_run, no_figures):
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


def test_slider_takes_every_snapshot_epoch_even_non_contiguous(tmp_path, demo_run, no_figures):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    have = sorted(int(f.name[6:9]) for f in (run / "snapshots").glob("epoch-*.safetensors"))
    keep = sorted(set(have[::2]) | {have[-1]})  # every other snapshot epoch and the last
    assert any(b - a > 1 for a, b in itertools.pairwise(keep))  # not contiguous
    for f in (run / "snapshots").glob("epoch-*.safetensors"):
        if int(f.name[6:9]) not in keep:
            f.unlink()
    ctx = build_context(load_inputs(run))
    slider = ctx["payload"]["slider"]
    assert slider["epochs"] == keep and len(slider["weights"]) == len(keep)
    from safetensors.numpy import load_file

    mid = keep[len(keep) // 2]
    w = load_file(str(run / "snapshots" / f"epoch-{mid:03d}.safetensors"))["conv1.weight"]
    assert np.array(slider["weights"][keep.index(mid)]).tolist() == w.astype(np.float64).tolist()
    html = render_html(ctx)
    assert f'max="{len(keep) - 1}"' in html


def test_model_file_analysis_renders(tmp_path, demo_run):
    from convlens.pipelines import analyze_target, write_result

    model = tmp_path / "net.safetensors"
    shutil.copy(demo_run / "model.safetensors", model)
    result, dest = analyze_target(str(model), n_null=200, seed=0)
    write_result(result, dest)
    assert dest == tmp_path / "net.safetensors.analysis.json"
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["report", str(dest)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "net.safetensors.report.html"
    assert r.output.strip() == f"wrote {out}"
    html = out.read_text()
    assert "net.safetensors" in html and '<section id="layers">' in html
    assert html.count('<svg class="kern"') >= 16  # weights read back from the safetensors file
    for sid in ("training", "evolution", "distribution"):
        body = html[html.index(f'<section id="{sid}">') :]
        assert "No data:" in body[: body.index("</section>")], sid
    cmds = build_context(load_inputs(dest))["reproduce"]["commands"]
    name, params = _parse(cmds[0]["cmd"])
    assert name == "analyze" and params["target"] == str(model)
    assert Path(params["out_file"]) != dest and params["null_size"] == 200
    assert _parse(cmds[1]["cmd"])[1]["run_dir"] == params["out_file"]


def test_demo_report_stays_small(demo_run):
    assert (demo_run / "report.html").stat().st_size < 3 * 2**20


def _drawn_texts(fig):
    """The text a figure really draws: tick labels inside the view, axis labels, titles, legends."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lim), max(lim)
            for tick in axis.get_major_ticks():
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    out += [t for t in (tick.label1, tick.label2) if t.get_visible()]
            out.append(axis.label)
        out.append(ax.title)
        if ax.get_legend() is not None:
            out += list(ax.get_legend().get_texts())
    out += list(fig.texts)
    return [t for t in out if t.get_visible() and t.get_text().strip()]


@pytest.mark.slow  # draws every figure of the demo report (about 10 s)
def test_no_figure_has_overlapping_labels(demo_run, monkeypatch):
    import itertools

    from convlens.report import figures

    original = figures.to_data_uri
    overlaps: list[tuple[str, str]] = []

    def checked(fig):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
        for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
            both = ba.intersection(ba, bb)
            if both is not None and both.width > 1 and both.height > 1:
                overlaps.append((a, b))
        return original(fig)

    monkeypatch.setattr(figures, "to_data_uri", checked)
    ctx = build_context(load_inputs(demo_run))
    assert ctx["training"] and ctx["evolution"]["curves"] and ctx["learned"]["null_figure"]
    assert not overlaps, overlaps


def test_reproduce_train_command_rebuilds_the_same_weights(demo_run, tmp_path, no_figures):
    from click.testing import CliRunner
    from safetensors.numpy import load_file

    from convlens.cli import cli

    cmds = build_context(load_inputs(demo_run))["reproduce"]["commands"]
    argv = shlex.split(cmds[0]["cmd"])[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")  # the same command, another new folder
    r = CliRunner().invoke(cli, [*argv, "-q"])
    assert r.exit_code == 0, r.output
    before = load_file(str(demo_run / "model.safetensors"))
    after = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k]), k


def test_controls_with_fields_added_later_still_render(demo_run, no_figures):
    """Controls may grow optional fields (another issue): a verdict becomes a pill, the rest text."""
    from types import SimpleNamespace

    from convlens.report.answer import controls

    a = AnalysisResult.read(demo_run / "analysis.json")
    a.controls = [
        SimpleNamespace(
            name="random labels", description="d", figures={"f": 0.5}, verdict="holds", seeds=[0, 1]
        )
    ]
    (row,) = controls(a)
    assert row["verdict"] == "holds" and row["extra"] == {"seeds": "[0, 1]"}
    html = render_html({**build_context(load_inputs(demo_run)), "controls": [row]})
    sec = html[html.index('<section id="controls">') :]
    assert '<h3>random labels <span class="verdict v-holds">holds</span></h3>' in sec
    assert "seeds: [0, 1]" in sec


def test_kernel_svg_scale_escaping_and_non_finite_values():
    from convlens.report.interactive import NEG_RGB, POS_RGB, kernel_svg

    svg = kernel_svg(np.array([[2.0, -2.0], [0.0, np.nan]]), "<b>&")
    fills = [f.split('"')[0] for f in svg.split('fill="')[1:]]
    pos, neg = ("#{:02x}{:02x}{:02x}".format(*c) for c in (POS_RGB, NEG_RGB))
    assert fills == [pos, neg, "#ffffff", "#808080"]  # +-max|w| at the ends, NaN grey
    assert "<title>&lt;b&gt;&amp;</title>" in svg


# ----------------------------------------------------------------------------- OOD vs untrained
def _ci2(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _pill(level: str) -> str:
    return f'<span class="verdict v-{level.replace(" ", "-")}">{level}</span>'


def _section(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end)]


def test_answer_states_the_ood_learned_levels_with_the_runs_numbers(demo_run, no_figures):
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
