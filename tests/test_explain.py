"""Worked explanations: cells, products, sums, renderers, checks, parse errors."""

import json
from fractions import Fraction

import numpy as np
import pytest

from convlens.errors import ConvlensError
from convlens.explain import explain, parse_matrix

K = "1 2 3; 4 5 6; 7 8 9"
INPUT = "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"


def seed():
    return explain(parse_matrix(K), parse_matrix(INPUT))


def test_seed_cells_products_and_sums():
    ex = seed()
    assert ex.output.tolist() == [[154, 157], [200, 233]]
    c = ex.cells[0]
    assert c.window.tolist() == [[9, 8, 7], [5, 4, 3], [1, 2, 3]]
    assert c.products.tolist() == [[9, 16, 21], [20, 20, 18], [7, 16, 27]]
    for cell in ex.cells:
        assert int(cell.products.sum()) == cell.total


def test_check_names_the_wrong_cell():
    res = seed().check(parse_matrix("146 157; 200 233"))
    assert not res.ok
    assert len(res.mismatches) == 1
    assert res.mismatches[0].index == (0, 0)
    assert res.lines()[0].startswith("cell (0, 0): expected 146, actual 154")
    assert seed().check([[154, 157], [200, 233]]).ok
    shape = seed().check([[154, 157, 1]])
    assert not shape.ok and shape.lines() == ["shape: expected 1x3, actual 2x2"]


def test_check_floats_with_tolerance():
    ex = explain([[0.1, 0.2]], [[1.0, 1.0]])
    assert ex.check([[0.3]]).ok  # 0.1 + 0.2 = 0.30000000000000004
    assert not ex.check([[0.31]]).ok


@pytest.mark.parametrize("fmt_name", ["text", "markdown", "latex", "json"])
def test_renderers_contain_the_steps(fmt_name):
    out = seed().render(fmt_name)
    assert "154" in out and "233" in out
    if fmt_name == "json":
        d = json.loads(out)
        assert d["output"] == [[154, 157], [200, 233]]
        assert d["cells"][0]["products"] == [[9, 16, 21], [20, 20, 18], [7, 16, 27]]
        assert d["cells"][0]["sum"] == 154
    elif fmt_name == "latex":
        assert "\\begin{bmatrix}" in out and "\\cdot" in out and "\\star" in out
    else:
        assert "1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3" in out
        assert "9 + 16 + 21 + 20 + 20 + 18 + 7 + 16 + 27" in out


def test_max_cells_limits_the_worked_cells_not_the_map():
    out = seed().render("text", max_cells=1)
    assert "out[0, 0]" in out and "out[1, 1]" not in out
    assert "3 more cells not shown" in out
    assert "200 233" in out
    with pytest.raises(ConvlensError, match="format"):
        seed().render("html")


def test_convolve_flips_and_says_so():
    ex = explain(parse_matrix(K), parse_matrix(INPUT), convolve=True)
    assert ex.operation == "convolution"
    assert ex.applied_kernel.tolist() == [[9, 8, 7], [6, 5, 4], [3, 2, 1]]
    assert ex.output[0, 0] == 266
    assert "flips the kernel" in ex.render()


def test_stride_padding_dilation_windows():
    ex = explain([[1, 1], [1, 1]], np.arange(16).reshape(4, 4), stride=2, padding=1, dilation=1)
    assert ex.output.shape == (3, 3)
    c = ex.cells[0]
    assert c.rows == (-1, 0) and c.cols == (-1, 0) and c.in_padding
    assert c.window.tolist() == [[0, 0], [0, 0]]
    assert "includes zero padding" in ex.render()
    ex2 = explain([[1, 1]], [[1, 2, 3, 4, 5]], dilation=3)
    assert ex2.cells[0].cols == (0, 3)
    assert ex2.output.tolist() == [[5, 7]]


def test_fractions_explained_exactly():
    ex = explain(parse_matrix("1/2 1/3"), parse_matrix("1 1 1"))
    assert ex.output.tolist() == [[Fraction(5, 6), Fraction(5, 6)]]
    assert "5/6" in ex.render("text")
    assert "\\frac{5}{6}" in ex.render("latex")
    assert json.loads(ex.render("json"))["output"] == [["5/6", "5/6"]]


def test_nan_and_inf_reported():
    ex = explain([[1.0, 1.0]], [[1.0, np.nan, 2.0, np.inf]])
    assert any("input has nan at (0, 1)" in w for w in ex.warnings)
    assert any("input has inf at (0, 3)" in w for w in ex.warnings)
    assert any("output (0, 0) is nan" in w for w in ex.warnings)
    assert "warnings:" in ex.render()
    json.loads(ex.render("json"))  # NaN written as a string, still valid JSON


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3; 4 5", "ragged rows"),
        ("1 2; x 4", r"cell \(1, 0\) is 'x', which is not a number"),
        ("", "empty matrix"),
        ("   ;  ", "empty matrix"),
        ("[[1, 2], [3]]", "ragged rows"),
        ("[[1, true]]", r"cell \(0, 1\)"),
        ("[[1, 2]", "invalid JSON"),
        ("1/0", "division by zero"),
        ("@/nonexistent/file.npy", "does not exist"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ConvlensError, match=message):
        parse_matrix(text)


def test_parse_forms(tmp_path):
    assert parse_matrix("1,2,3\n4,5,6").tolist() == [[1, 2, 3], [4, 5, 6]]
    assert parse_matrix("[1, 2, 3]").tolist() == [[1, 2, 3]]
    assert parse_matrix("0.5 -1e-3").dtype == np.float64
    npy = tmp_path / "k.npy"
    np.save(npy, np.eye(2))
    assert parse_matrix(f"@{npy}").tolist() == [[1.0, 0.0], [0.0, 1.0]]
    csv = tmp_path / "k.csv"
    csv.write_text("# kernel\n1,0,-1\n2,0,-2\n")
    assert parse_matrix(str(csv)).tolist() == [[1, 0, -1], [2, 0, -2]]
    obj = tmp_path / "bad.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConvlensError, match="cannot read"):
        parse_matrix(f"@{obj}")  # pickles are never loaded


def test_explain_rejects_bad_shapes():
    with pytest.raises(ConvlensError, match="kernel larger than input"):
        explain([[1, 2, 3]], [[1, 2]])
    with pytest.raises(ConvlensError, match="stride must be >= 1"):
        explain([[1]], [[1, 2]], stride=0)
    with pytest.raises(ConvlensError, match="empty matrix"):
        explain(np.zeros((0, 2)), [[1, 2]])
