"""Golden files for the explain renderers: text, Markdown, LaTeX and JSON, compared byte for byte.

The files live in tests/golden/explain/, one per case and format. After an intended change to the
output, regenerate them with ``pytest tests/test_golden.py --update-golden`` and review the diff
(tests/golden/README.md).
"""

import difflib
from pathlib import Path
from typing import Any

import pytest

from convlens.explain import FORMATS, explain, parse_matrix

GOLDEN = Path(__file__).resolve().parent / "golden" / "explain"
EXTENSIONS = {"text": "txt", "markdown": "md", "latex": "tex", "json": "json"}

SEED_KERNEL = "1 2 3; 4 5 6; 7 8 9"
SEED_INPUT = "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"

# name -> (kernel, input, explain() options, max_cells). Float inputs are dyadic (exact in binary),
# so every product and sum is exact whatever order the engine adds the taps in.
CASES: dict[str, tuple[str, str, dict[str, Any], int | None]] = {
    "seed": (SEED_KERNEL, SEED_INPUT, {}, None),
    "padded_strided": (
        "1 0 -1; 2 0 -2; 1 0 -1",
        "3 1 4 1 5; 9 2 6 5 3; 5 8 9 7 9; 3 2 3 8 4; 6 2 6 4 3",
        {"stride": 2, "padding": 1},
        None,
    ),
    "dilated_asymmetric": (
        "1 2; 3 4",
        "1 2 3 4 5; 6 7 8 9 10; 11 12 13 14 15; 16 17 18 19 20",
        {"stride": (1, 2), "padding": ((1, 0), (0, 2)), "dilation": (2, 1)},
        None,
    ),
    "convolve": (SEED_KERNEL, SEED_INPUT, {"convolve": True}, None),
    "fractions": ("1/2 -1/3; 1/4 1", "1 2 3; 4 5 6; 7 8 9", {}, None),
    "floats": ("0.5 -1.25; 0.75 2", "1.5 -2 0.25; 3 0.125 -1; 2.5 1 -0.5", {}, None),
    "max_cells": (SEED_KERNEL, SEED_INPUT, {}, 1),
}


def _render(case: str, fmt_name: str) -> str:
    kernel, image, options, max_cells = CASES[case]
    ex = explain(parse_matrix(kernel), parse_matrix(image), **options)
    return ex.render(fmt_name, max_cells=max_cells)


def _path(case: str, fmt_name: str) -> Path:
    return GOLDEN / f"{case}.{EXTENSIONS[fmt_name]}"


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as f:
        return f.read()


@pytest.mark.parametrize("fmt_name", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_render_matches_golden(case, fmt_name, update_golden):
    actual = _render(case, fmt_name)
    path = _path(case, fmt_name)
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write(actual)
        return
    if not path.is_file():
        pytest.fail(
            f"{path} is missing; create it with: pytest tests/test_golden.py --update-golden"
        )
    expected = _read(path)
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{path.name}",
                tofile="rendered now",
            )
        )
        pytest.fail(
            f"{fmt_name} rendering of case {case!r} differs from its golden file; if the change "
            f"is intended, rerun with --update-golden and review the diff:\n{diff}",
            pytrace=False,
        )


def test_no_stale_golden_files(update_golden):
    wanted = {_path(case, f) for case in CASES for f in FORMATS}
    stale = sorted(p for p in GOLDEN.iterdir() if p.is_file() and p not in wanted)
    if update_golden:
        for p in stale:
            p.unlink()
        return
    assert not stale, f"golden files without a case (delete them or rerun --update-golden): {stale}"


def test_goldens_hold_the_hand_checked_numbers():
    """Anchors that --update-golden cannot bless away: values worked out by hand."""
    assert "  = 154\n" in _read(_path("seed", "text"))  # 1·9 + 2·8 + ... + 9·3, not 146
    assert "  = 266\n" in _read(_path("convolve", "text"))  # the flipped kernel
    assert "\\frac{35}{6}" in _read(_path("fractions", "latex"))  # 1/2 - 2/3 + 1 + 5
    # stride 2, one ring of zeros: middle row -20 (-2 - 16 - 2), -7 (-3 + 2 - 6), 27 (5 + 14 + 8)
    assert "  -20  -7  27\n" in _read(_path("padded_strided", "text"))
    assert "  = 46\n" in _read(_path("dilated_asymmetric", "text"))  # padded row -1, then 3·6 + 4·7
    assert "**5.75**" in _read(_path("floats", "markdown"))  # 0.75 + 2.5 + 2.25 + 0.25
    assert "3 more cells not shown" in _read(_path("max_cells", "text"))
