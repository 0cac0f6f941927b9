"""The one answer (analysis/evidence/answer.py): generated from the verdicts, printed verbatim by the
report, the demo's summary and the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convlens.analysis.evidence.answer import answer, answer_lines, readme_block
from convlens.demo import README_END, README_START, demo_results, readme_block_of
from convlens.errors import ConvlensError

ROOT = Path(__file__).resolve().parents[1]


def test_answer_lines_come_from_the_verdicts(tiny_run_analysis):
    a = tiny_run_analysis
    ans = answer(a)
    keys = [line.key for line in ans.lines]
    assert keys[0] == "cross_correlation" and "classical_kernels" in keys
    by = {line.key: line for line in ans.lines}
    assert by["cross_correlation"].verdict == a.verdicts.cross_correlation.verdict
    assert by["classical_kernels"].verdict == a.verdicts.classical_kernels.verdict
    assert "spectrum-matched" in by["classical_kernels"].text
    text = "\n".join(answer_lines(a))
    assert text.startswith("No, not between input signals") and "0.000" not in text
    block = readme_block(a)
    assert "| question | verdict |" in block and block.endswith("\n")


def test_readme_markers_are_required(tmp_path):
    with pytest.raises(ConvlensError, match="no answer markers"):
        readme_block_of("# nothing here", "x")
    assert readme_block_of(f"a\n{README_START}\nrow\n{README_END}\nb") == "row\n"


@pytest.mark.slow
def test_readme_answer_equals_a_fresh_demo(tmp_path):
    """The README's answer block is what `convlens demo --readme README.md` writes: rerun the default
    demo (seeds 10-12, 100 epochs, null 2000, each with its random-label control) and compare."""
    from convlens.demo import readme_answer

    out = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "convlens", "demo", "--out", str(out), "-q"],
        check=True,
        capture_output=True,
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_block_of(readme) == readme_answer(out), (
        "README.md's answer block differs from a fresh demo: run `convlens demo --readme README.md`"
    )
    html = (out / "report.html").read_text(encoding="utf-8")
    for line in answer(*demo_results(out)).lines:
        assert line.question in html
    assert "seeds 10, 11, 12, 13, 14 (seeds.json)" in readme


def test_answer_wording_follows_the_models_modality(tiny_run_analysis):
    """Issue 23: a 1-D first layer is asked about filters and signals, not Sobel kernels and
    images; a model file's limits speak of a model file, not of a run."""
    import copy

    a = copy.deepcopy(tiny_run_analysis)
    assert a.first_layer is not None
    a.first_layer.identity.dims = 1
    text = "\n".join(answer_lines(a))
    assert "(edge- or band-pass-like) filters" in text and "Sobel" not in text
    a.run = None
    assert "This analysis of one model file cannot show" in answer(a).limits
    two_d = "\n".join(answer_lines(tiny_run_analysis))
    assert "(Sobel/Prewitt-like) kernels" in two_d and "This run cannot show" in two_d
