"""Worked explanations: cells, products, sums, renderers, checks, parse errors."""

import json
import os
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from convlens.commands import ExplainArgs, explain_text
from convlens.errors import ConvlensError
from convlens.explain import explain, limits, parse_matrix
from convlens.explain.parse import parse_array
from convlens.ops import correlate

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


# --- streaming: only the cells shown are built -------------------------------------------------


def test_cells_are_built_lazily_only_for_the_cells_shown():
    image = np.arange(4_000_000, dtype=np.int64).reshape(2000, 2000)
    t0 = time.perf_counter()
    ex = explain([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], image)  # the engine: O(output)
    assert len(ex.cells) == 1998 * 1998 and ex.cells.built == 0
    t1 = time.perf_counter()
    text = ex.render("text", max_cells=5)
    t2 = time.perf_counter()
    assert ex.cells.built == 5
    assert t2 - t1 < 0.25, f"render took {t2 - t1:.2f} s"  # ~1 ms: five cells, no big matrix
    assert t2 - t0 < 3.0, f"explain + render took {t2 - t0:.2f} s"  # ~0.35 s, mostly the engine
    assert "out[0, 4]" in text and "out[0, 5]" not in text
    assert f"... {1998 * 1998 - 5} more cells not shown" in text
    # neither the 2000x2000 input nor the 1998x1998 map is printed, and the text says so
    assert "(4000000 values not shown: over the limit of 10000" in text
    assert "(3992004 values not shown" in text
    doc = json.loads(ex.render("json", max_cells=5))
    assert ex.cells.built == 10 and len(doc["cells"]) == 5
    assert doc["input"] is None and doc["not_shown"]["input"] == {
        "shape": [2000, 2000],
        "values": 4_000_000,
    }
    assert doc["cells"][4]["sum"] == int(ex.output[0, 4])


def test_cell_sequence_indexing_builds_only_what_is_asked():
    ex = explain(parse_matrix(K), parse_matrix(INPUT))
    assert len(ex.cells) == 4 and ex.cells.built == 0
    assert ex.cells[-1].index == (1, 1) and ex.cells[-1].total == 233
    assert [c.index for c in ex.cells[1:3]] == [(0, 1), (1, 0)]
    assert ex.cells.built == 4
    with pytest.raises(IndexError):
        ex.cells[4]


def test_render_chunks_stream_the_same_text():
    from convlens.explain.render import render_chunks

    ex = explain(parse_matrix(K), parse_matrix(INPUT), padding=1)
    for fmt_name in ("text", "markdown", "latex", "json"):
        chunks = render_chunks(ex, fmt_name, max_cells=3)
        built = ex.cells.built
        first = next(chunks)
        assert ex.cells.built == built  # the header needs no cell
        assert first + "".join(chunks) == ex.render(fmt_name, max_cells=3)
    doc = json.loads(ex.render("json", max_cells=2))
    full = ex.to_dict(max_cells=2)
    assert doc == {**full, "cells_not_shown": len(ex.cells) - 2}


# --- limits, from the shapes, before anything is allocated ---------------------------------------


def _zeros(shape):
    """A read-only array of zeros that takes no memory (a broadcast view)."""
    return np.broadcast_to(np.int64(0), shape)


@pytest.mark.parametrize(
    ("kernel", "image", "options", "message"),
    [
        (
            [[1]],
            [[1, 2]],
            {"padding": 100_000},
            "padding 100000 exceeds the limit of 4096 for explain",
        ),
        ([[1, 1]], [[1, 2]], {"dilation": 5000}, "dilation 5000 exceeds the limit of 4096"),
        (
            [[1]],
            [[1, 2]],
            {"stride": (1, 10**30)},
            "stride 1000000000000000000000000000000 exceeds",
        ),
        (
            [[1]],
            _zeros((4097, 4096)),
            {},
            "input has 16781312 values (shape 4097x4096), over the limit of 16777216 for explain",
        ),
        (
            _zeros((257, 256)),
            [[1]],
            {},
            "kernel has 65792 values (shape 257x256), over the limit of 65536 for explain",
        ),
        ([[1]], _zeros((4096, 4096)), {"padding": 1}, "the feature map would have 16793604 cells"),
        (
            _zeros((4096, 1, 1)),
            _zeros((4096, 64, 64)),
            {"padding": 40},
            "the zero-padded input has 84934656 values (shape 4096x144x144), over the limit of "
            "33554432",
        ),
        (_zeros((99, 99)), _zeros((2000, 2000)), {}, "multiply-adds (feature map x kernel values)"),
        (
            np.full((50, 50), Fraction(1, 3), dtype=object),
            _zeros((200, 200)),
            {},
            "57002500 exact (fraction or big-integer) multiply-adds",
        ),
    ],
    ids=["padding", "dilation", "stride", "input", "kernel", "output", "padded", "work", "exact"],
)
def test_limits_refused_from_shapes(kernel, image, options, message):
    t0 = time.perf_counter()
    with pytest.raises(ConvlensError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explain(kernel, image, **options)
    assert time.perf_counter() - t0 < 1.0  # refused before any real work


def _run_limited(args, address_space=1 << 30):
    import resource

    def limit():  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", "explain", *args],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        env=env,
        timeout=120,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
def test_huge_padding_refused_under_a_memory_limit():
    """--padding 100000 on a 3x3 input used to ask for 298 GiB; now one line and exit 2."""
    r = _run_limited(["--kernel", K, "--input", "1 2 3; 4 5 6; 7 8 9", "--padding", "100000"])
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("convlens: error: padding 100000 exceeds the limit of 4096")
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
def test_large_kernel_explained_within_a_memory_limit(tmp_path):
    """A 99x99 kernel on a 200x200 input: every cell built up front took ~1.6 GB; now one cell."""
    np.save(tmp_path / "k.npy", np.ones((99, 99), dtype=np.int64))
    np.save(tmp_path / "x.npy", np.arange(40_000, dtype=np.int64).reshape(200, 200))
    r = _run_limited(
        [
            "--kernel",
            f"@{tmp_path / 'k.npy'}",
            "--input",
            f"@{tmp_path / 'x.npy'}",
            "--max-cells",
            "1",
        ]
    )
    assert r.returncode == 0, r.stderr
    expected = int(np.arange(40_000).reshape(200, 200)[:99, :99].sum())
    assert f"  = {expected}\n... 10403 more cells not shown" in r.stdout
    assert "(10404 values not shown" in r.stdout


def test_npy_shape_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.npy"
    with path.open("wb") as f:  # a header that claims 10^10 values, and no data
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<i8", "fortran_order": False, "shape": (100_000, 100_000)}
        )
    with pytest.raises(
        ConvlensError, match=r"holds 10000000000 values .* over the limit of 16777216"
    ):
        parse_array(f"@{path}", "input")
    with pytest.raises(ConvlensError, match="over the limit of 65536"):
        explain_text(ExplainArgs(f"@{path}", "1 2"))


# --- channels -----------------------------------------------------------------------------------


def test_channel_syntax():
    a = parse_array("1 2; 3 4 | 5 6; 7 8")
    assert a.shape == (2, 2, 2) and a[1].tolist() == [[5, 6], [7, 8]]
    b = parse_array("1 | 2 || 3 | 4 || 5 | 6")
    assert b.shape == (3, 2, 1, 1) and b[:, 1].ravel().tolist() == [2, 4, 6]
    assert parse_array("[[[1, 2]], [[3, 4]]]").shape == (2, 1, 2)
    assert parse_array("1/2 1 | 1 1").dtype == object  # one Fraction makes every cell exact
    assert parse_array("1 2 3").shape == (3,) and parse_array("1 2 3;").shape == (1, 3)
    with pytest.raises(ConvlensError, match="same shape"):
        parse_array("1 2; 3 4 | 5 6")
    with pytest.raises(ConvlensError, match=r"ragged lists in the outermost list, .*got 1x1, 1x2"):
        parse_array("[[[1, 2]], [[3]]]")
    with pytest.raises(ConvlensError, match=r"ragged lists in list \(1\)"):
        parse_array("[[[1, 2]], [[3], [4, 5]]]")
    with pytest.raises(ConvlensError, match=r"cell \(1, 0, 1\) is 'x'"):
        parse_array("1 2 | 3 x")


def test_multichannel_sums_are_exact():
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, size=(3, 6, 7))
    w = rng.integers(-9, 9, size=(3, 3, 2))
    ex = explain(w, x, stride=(2, 1), padding=1, dilation=(1, 2))
    assert ex.channels and not ex.output_channels
    want = correlate(x[None], w[None], stride=(2, 1), padding=1, dilation=(1, 2))[0, 0]
    assert ex.output.tolist() == want.tolist()
    for cell in ex.cells:
        assert cell.window.shape == cell.products.shape == (3, 3, 2)
        assert [int(cell.products[c].sum()) for c in range(3)] == list(cell.channel_sums)
        assert sum(cell.channel_sums) == cell.total == want[cell.index]
        assert (cell.products == cell.window * w).all()
    # Python ints beyond int64 stay exact too
    big = np.array([[[2**62, 1]], [[2**62, -1]]], dtype=object)
    ex = explain(np.array([[[3]], [[5]]]), big)
    assert ex.cells[0].channel_sums == (3 * 2**62, 5 * 2**62)
    assert ex.output.tolist() == [[8 * 2**62, -2]]


def test_output_channels_and_channel_text():
    x = parse_array("1 2 3; 4 5 6 | 1 0 1; 0 1 0")
    w = parse_array("1 0; 0 1 | 1 1; 1 1 || 1 1; 1 1 | 0 0; 0 -1")
    ex = explain(w, x)
    assert ex.output.shape == (2, 1, 2)
    assert ex.output.tolist() == correlate(x[None], w)[0].tolist() == [[[8, 10]], [[11, 16]]]
    assert ex.cells[2].index == (1, 0, 0) and ex.cells[2].channel_sums == (12, -1)
    text = ex.render("text")
    assert "2 kernels, each 2-channel 2x2" in text
    assert "  channel 0: 1·1 + 0·2 + 0·4 + 1·5 = 1 + 0 + 0 + 5 = 6\n" in text
    assert "  = 6 + 2\n  = 8\n" in text
    assert "  = 12 + (-1)\n  = 11\n" in text
    assert "\\left(" in ex.render("latex") and "sum 6 + 2 = **8**" in ex.render("markdown")
    d = json.loads(ex.render("json", max_cells=1))
    assert d["layout"] == {"input": "C,H,W", "kernel": "O,C,kh,kw", "output": "O,H,W"}
    assert d["cells"][0]["channel_sums"] == [6, 2] and d["cells"][0]["sum"] == 8


def test_convolve_flips_only_the_spatial_axes():
    x = np.arange(18).reshape(2, 3, 3)
    w = np.arange(8).reshape(2, 2, 2)
    ex = explain(w, x, convolve=True)
    assert ex.applied_kernel.tolist() == w[:, ::-1, ::-1].tolist()
    assert ex.output.tolist() == correlate(x[None], w[None, :, ::-1, ::-1])[0, 0].tolist()


@pytest.mark.parametrize(
    ("kernel", "image", "message"),
    [
        (
            "1 1; 1 1",
            "1 2; 3 4 | 5 6; 7 8",
            "a 2-channel input needs a kernel with the same channels",
        ),
        ("1 | 1 | 1", "1 2; 3 4 | 5 6; 7 8", "has 3 input channels but the input"),
        ("[[[[[1]]]]]", "1 2", "kernel: expected"),
    ],
)
def test_channel_mismatch_refused(kernel, image, message):
    with pytest.raises(ConvlensError, match=message):
        explain_text(ExplainArgs(kernel, image))


def test_expect_checks_multichannel_results():
    args = dict(kernel="1 0; 0 1 | 1 1; 1 1", input="1 2 3; 4 5 6 | 1 0 1; 0 1 0")
    text, ok = explain_text(ExplainArgs(**args, expect="8 10"))
    assert ok and "check: every cell matches" in text
    text, ok = explain_text(ExplainArgs(**args, expect="8 11"))
    assert not ok
    assert "cell (0, 1): expected 11, actual 10 = (1·2 + 0·3 + 0·5 + 1·6) + (1·0 + 1·1" in text
    out, ok = explain_text(ExplainArgs(**args, expect="[[8, 11]]", fmt="json"))
    doc = json.loads(out)
    assert not ok and doc["check"]["mismatches"][0]["index"] == [0, 1]
    _, ok = explain_text(
        ExplainArgs(
            "1 0; 0 1 | 1 1; 1 1 || 1 1; 1 1 | 0 0; 0 -1", args["input"], expect="8 10 | 11 16"
        )
    )
    assert ok


def test_check_lists_at_most_the_limit():
    ex = explain([[1]], np.arange(300).reshape(3, 100))
    res = ex.check(np.zeros((3, 100), dtype=np.int64))
    assert len(res.mismatches) == limits.MAX_LISTED_MISMATCHES and res.not_listed == 199
    assert res.lines()[-1] == "... 199 more wrong cells not listed"
    assert res.to_dict()["mismatches_not_listed"] == 199


# --- 1-D and 3-D (JSON) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dims", "x_shape", "w_shape", "options"),
    [
        (1, (11,), (3,), {"stride": "2", "padding": "1", "dilation": "2"}),
        (1, (2, 9), (2, 4), {"padding": "same"}),
        (1, (2, 9), (3, 2, 2), {"stride": "3"}),
        (3, (4, 5, 6), (2, 3, 2), {"stride": "1,2,1", "padding": "1", "dilation": "1,1,2"}),
        (3, (2, 3, 4, 4), (2, 2, 2, 3), {"padding": "full"}),
    ],
)
def test_1d_and_3d_json_equal_ops_correlate(dims, x_shape, w_shape, options):
    rng = np.random.default_rng(dims)
    x = rng.integers(-20, 20, size=x_shape)
    w = rng.integers(-5, 5, size=w_shape)
    text, ok = explain_text(
        ExplainArgs(
            json.dumps(w.tolist()), json.dumps(x.tolist()), fmt="json", dims=dims, **options
        )
    )
    d = json.loads(text)
    has_c = len(x_shape) == dims + 1
    xs = x[None] if has_c else x[None, None]
    ws = w if len(w_shape) == dims + 2 else (w[None] if has_c else w[None, None])
    from convlens.commands import parse_ints, parse_padding

    want = correlate(
        xs,
        ws,
        stride=parse_ints(options.get("stride", "1"), "stride"),
        padding=parse_padding(options.get("padding", "valid")),
        dilation=parse_ints(options.get("dilation", "1"), "dilation"),
    )[0]
    want = want if len(w_shape) == dims + 2 else want[0]
    assert ok and d["dims"] == dims
    assert d["output"] == want.tolist()
    assert len(d["cells"]) == want.size and d["cells_not_shown"] == 0
    for cell in d["cells"]:
        assert cell["sum"] == want[tuple(cell["index"])]
        products = np.array(cell["products"], dtype=object)
        assert sum(products.ravel()) == cell["sum"]
        if has_c:
            assert sum(cell["channel_sums"]) == cell["sum"]
    axes = {1: ["input_positions"], 3: ["input_depths", "input_rows", "input_cols"]}[dims]
    assert [k for k in d["cells"][0] if k.startswith("input_")] == axes
    # --expect works in any number of dimensions
    _, ok = explain_text(
        ExplainArgs(
            json.dumps(w.tolist()),
            json.dumps(x.tolist()),
            fmt="json",
            dims=dims,
            expect=json.dumps(want.tolist()),
            **options,
        )
    )
    assert ok


def test_text_formats_refuse_1d_and_3d():
    for fmt_name in ("text", "markdown", "latex"):
        with pytest.raises(
            ConvlensError, match="2-D explanations only, this one is 1-D; use the json"
        ):
            explain_text(ExplainArgs("1 1", "1 2 3", dims=1, fmt=fmt_name))
    with pytest.raises(ConvlensError, match="dims must be 1, 2 or 3"):
        explain([[1]], [[1]], dims=4)


def test_text_matrix_file_size_refused_before_reading(tmp_path, monkeypatch):
    from convlens.explain import parse

    path = tmp_path / "m.csv"
    path.write_text("1,2\n3,4\n")
    monkeypatch.setattr(parse, "MAX_TEXT_FILE_BYTES", 4)
    with pytest.raises(
        ConvlensError, match=r"is 8 bytes, over the limit of 4 .*save large arrays as .npy"
    ):
        parse_array(str(path), "input")


def test_explain_json_nesting_and_huge_integers_are_one_line_errors():
    """Regression: outside review of issues 11-12 (deep JSON and huge integers)."""
    with pytest.raises(ConvlensError, match="nested deeper than"):
        parse_matrix("[" * 900 + "1" + "]" * 900, "kernel")
    with pytest.raises(ConvlensError, match="5000 digits"):
        parse_matrix("9" * 5000, "kernel")
    with pytest.raises(ConvlensError, match="Exceeds the limit"):
        parse_matrix("[" + "9" * 5000 + "]", "kernel")
    r = subprocess.run(
        [sys.executable, "-m", "convlens.cli", "explain", "--kernel", "[" * 2000 + "]" * 2000,
         "--input", "1 2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
