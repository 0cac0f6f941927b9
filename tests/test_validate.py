"""``convlens validate`` (analysis/orchestration/validate.py): the kernel verdicts on planted truths.

The full run (every planted case, 10 repetitions of 3 seeds) is ``make validate``; its tables are
docs/validation.md. Here: the planted datasets themselves, the null layers' calibration, and one
small end-to-end repetition."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.analysis.evidence.kernelsets import bank_descriptors, spectra_agree
from convlens.analysis.orchestration import validate as val
from convlens.data import planted
from convlens.errors import ConvlensError


def test_planted_datasets_are_seeded_balanced_and_in_unit_range():
    for name in planted.CASES:
        x, y = planted.planted01(name, 3)
        x2, y2 = planted.planted01(name, 3)
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
        assert x.shape == (planted.N_IMAGES, planted.SIZE, planted.SIZE)
        assert np.bincount(y).tolist() == [planted.N_IMAGES // 2] * 2
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert not np.array_equal(
        planted.planted01("oriented", 0)[0], planted.planted01("oriented", 1)[0]
    )


def test_oriented_images_are_white_when_pooled_and_oriented_per_class():
    x, y = planted.planted01("oriented", 0)
    z = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(z)) ** 2
    fy, fx = np.fft.fftfreq(planted.SIZE)[:, None], np.fft.fftfreq(planted.SIZE)[None, :]
    horizontal = (np.abs(fx) > 2 * np.abs(fy)).astype(float)
    vertical = (np.abs(fy) > 2 * np.abs(fx)).astype(float)

    def ratio(p):
        return float((p * horizontal).sum() / (p * vertical).sum())

    assert ratio(power[y == 0].mean(0)) > 3 and ratio(power[y == 1].mean(0)) < 1 / 3
    assert 0.8 < ratio(power.mean(0)) < 1.25  # pooled: no preferred orientation


def test_teacher_labels_follow_the_hidden_kernel():
    from convlens.kernels import matching_bank
    from convlens.ops import correlate

    x, y = planted.planted01("teacher-sobel", 0)
    k = next(e.weights for e in matching_bank(5) if e.label == "sobel_x")
    energy = np.maximum(correlate(x[:, None], np.asarray(k, float)[None, None])[:, 0], 0).mean(
        (1, 2)
    )
    assert energy[y == 1].min() > energy[y == 0].max()  # a margin between the classes


def test_planted_specs_are_checked():
    assert planted.parse_spec("planted:oriented") == ("oriented", 0)
    assert planted.parse_spec("planted:oriented:7") == ("oriented", 7)
    for bad, match in [
        ("planted:nope", "unknown planted case 'nope'"),
        ("planted:oriented:x", "the draw must be an integer"),
        ("planted:a:b:c", "expected planted:NAME"),
    ]:
        with pytest.raises(ConvlensError, match=match):
            planted.parse_spec(bad)


@pytest.mark.slow
def test_null_layers_are_calibrated_against_the_headline_null():
    # no training: random kernels as PyTorch draws them, and stationary blurred noise
    for label, blur in val.NULL_LAYERS.items():
        n = val.null_layer(label, blur, 60)
        assert n.units == 60 * val.NULL_UNITS
        lo, hi = n.above_spectrum_null.ci
        assert lo is not None and hi is not None and lo < 0.05 < hi + 0.02, (label, n)
        assert n.headline_yes.k <= 3, (label, n)  # "classical kernels: yes" in <= 5% of layers
    blurred = val.null_layer("blur 1.5 px", 1.5, 60)
    assert blurred.above_random_null.rate > 0.5  # smoothness alone beats the random null


def test_same_answer_joins_derivative_filters_and_keeps_orientations_apart():
    labels, bank = bank_descriptors(5)
    assert spectra_agree("prewitt_x", "sobel_x") and spectra_agree("farid_x", "sobel_x")
    assert not spectra_agree("sobel_y", "sobel_x") and not spectra_agree(None, "sobel_x")
    assert bank.shape[0] == len(labels) and np.allclose((bank**2).sum(axis=1), 1.0)


@pytest.mark.slow
def test_one_repetition_end_to_end(tmp_path):
    # five seeds: trained vs random labels is decided on whole networks (>= 4 per arm)
    v = val.validate(
        cases=["orismooth", "white-random"],
        repetitions=1,
        seeds=5,
        epochs=40,
        null_repetitions=5,
        ood_repetitions=1,
    )
    by = {c.case: c for c in v.cases}
    assert by["orismooth"].verdicts == ["learned from the task"]
    assert by["orismooth"].p_task[0] is not None and by["orismooth"].p_task[0] <= 0.05
    assert by["white-random"].verdicts[0] != "learned from the task"
    text = val.markdown(v)
    assert "| `orismooth` | from the task |" in text and "null layer" in text
    assert "| task | learned from the task | conv1 | 5 seeds |" in text
    assert {o.case for o in v.ood} == {"task", "task, shuffled", "images", "before", "null"}
    assert val.ValidationResult.from_json(v.to_json()) == v


def test_docs_tables_are_what_the_recorded_validation_renders():
    """docs/validation.md's tables are generated from docs/validation.json (`convlens validate
    --out docs/validation.json --markdown docs/validation.md`); they may not drift."""
    from pathlib import Path

    from convlens._cli.validate import END, START, splice

    docs = Path(__file__).resolve().parents[1] / "docs"
    v = val.ValidationResult.from_json((docs / "validation.json").read_text(encoding="utf-8"))
    text = (docs / "validation.md").read_text(encoding="utf-8")
    block = text.split(START, 1)[1].split("\n", 1)[1].split(END, 1)[0]
    assert block == val.markdown(v)
    assert splice(docs / "validation.md", val.markdown(v)) == text
    assert {c.case for c in v.cases} == set(planted.CASES)


def test_readme_summary_is_what_the_recorded_validation_renders():
    """README.md's validation summary is generated from docs/validation.json (`convlens validate
    --from docs/validation.json --readme README.md`); it may not drift."""
    from pathlib import Path

    from convlens._cli.validate import SUMMARY_END, SUMMARY_START, splice

    root = Path(__file__).resolve().parents[1]
    v = val.ValidationResult.from_json((root / "docs" / "validation.json").read_text("utf-8"))
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert splice(readme, val.summary_markdown(v), SUMMARY_START, SUMMARY_END) == text
    assert "right answer" in text.split(SUMMARY_START, 1)[1]


def test_validate_renders_a_recorded_result_and_refuses_a_readme_without_markers(tmp_path):
    from pathlib import Path

    from click.testing import CliRunner

    from convlens.cli import cli

    docs = Path(__file__).resolve().parents[1] / "docs"
    readme = tmp_path / "R.md"
    readme.write_text("# x\n", encoding="utf-8")
    r = CliRunner().invoke(
        cli, ["validate", "--from", str(docs / "validation.json"), "--readme", str(readme)]
    )
    assert r.exit_code == 2 and "no <!-- validation-summary:start" in r.output
    assert readme.read_text(encoding="utf-8") == "# x\n"  # untouched
    readme.write_text(
        "a\n<!-- validation-summary:start x -->\nold\n<!-- validation-summary:end -->\nb\n"
    )
    r = CliRunner().invoke(
        cli, ["validate", "--from", str(docs / "validation.json"), "--readme", str(readme)]
    )
    assert r.exit_code == 0, r.output
    got = readme.read_text(encoding="utf-8")
    assert got.startswith("a\n<!-- validation-summary:start x -->\n") and got.endswith(
        "end -->\nb\n"
    )
    assert "old" not in got and "| planted truth |" in got
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    r = CliRunner().invoke(
        cli, ["validate", "--from", str(bad), "--markdown", str(tmp_path / "m.md")]
    )
    assert r.exit_code == 2 and "not a readable validation.json" in r.output
    assert not (tmp_path / "m.md").exists()


def test_the_30_repetition_negatives_quoted_in_the_docs_are_the_recorded_ones():
    """docs/validation.md quotes docs/validation-negatives.json (30 repetitions of the planted
    negatives, re-decided at the task level) and docs/validation-fresh-negatives.json (30 new
    draws at that level); the quoted counts may not drift from the files."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    v = val.ValidationResult.from_json(
        (docs / "validation-negatives.json").read_text(encoding="utf-8")
    )
    text = " ".join((docs / "validation.md").read_text(encoding="utf-8").split())
    by = {c.case: c for c in v.cases}
    assert set(by) == {"blurred-random", "white-random"} and v.repetitions == 30
    for case, c in by.items():
        f = c.false_task
        assert f is not None
        lo, hi = f.ci
        quoted = f"`{case}` " + (
            'false "learned from the task" ' if case == "blurred-random" else ""
        )
        quoted += f"**{f.k}/{f.n} = {100 * f.rate:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]**"
        assert quoted in text, quoted
    # the fresh draws 30-59 that checked the task level (p <= 0.01) after it was chosen
    fresh = val.ValidationResult.from_json(
        (docs / "validation-fresh-negatives.json").read_text(encoding="utf-8")
    )
    assert fresh.first_repetition == 30 and fresh.repetitions == 30 and not fresh.redecided
    f = fresh.cases[0].false_task
    lo, hi = f.ci
    quoted = '`blurred-random` (fresh draws) false "learned from the task" '
    quoted += f"**{f.k}/{f.n} = {100 * f.rate:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]**"
    assert quoted in text, quoted


def test_redecide_applies_the_task_level_to_the_recorded_comparisons(tmp_path):
    """A recorded "learned from the task" at p in (0.01, 0.05] becomes "inconclusive" (never
    "same"), one at p <= 0.01 stays, every other verdict is unchanged; the rates are recounted,
    re-deciding twice changes nothing more, and the CLI wants --from with --redecide."""
    from dataclasses import replace
    from pathlib import Path

    from click.testing import CliRunner

    from convlens.cli import cli

    docs = Path(__file__).resolve().parents[1] / "docs"
    v = val.ValidationResult.from_json((docs / "validation.json").read_text(encoding="utf-8"))
    case = next(c for c in v.cases if c.case == "blurred-random")
    planted_case = replace(
        case,
        verdicts=[
            "learned from the task",
            "learned from the task",
            "learned from image statistics",
        ],
        p_task=[0.0079, 0.032, 0.5],
    )
    once = val.redecide(replace(v, cases=[planted_case], redecided=None), "commit x")
    c = once.cases[0]
    assert c.verdicts == ["learned from the task", "inconclusive", "learned from image statistics"]
    assert c.false_task.k == 1 and c.correct.k == 1 and c.counts["inconclusive"] == 1
    assert "1 verdict(s) changed" in (once.redecided or "") and "commit x" in once.redecided
    assert val.redecide(once, "commit x").cases[0].verdicts == c.verdicts
    r = CliRunner().invoke(cli, ["validate", "--redecide", "abc"])
    assert r.exit_code == 2 and "give it with --from" in r.output
