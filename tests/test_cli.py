"""The convlens command: output, exit codes, no tracebacks for user errors, no torch on --help."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from convlens import __version__
from convlens.cli import cli
from convlens.errors import ConvlensError

SEED = ["--kernel", "1 2 3; 4 5 6; 7 8 9", "--input", "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_explain_seed_prints_154():
    r = run("explain", *SEED)
    assert r.exit_code == 0, r.output
    assert "154 157" in r.output and "200 233" in r.output
    assert "1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3" in r.output


def test_explain_expect_flags_146():
    r = run("explain", *SEED, "--expect", "146 157; 200 233")
    assert r.exit_code == 1
    assert "cell (0, 0): expected 146, actual 154" in r.output
    ok = run("explain", *SEED, "--expect", "[[154, 157], [200, 233]]")
    assert ok.exit_code == 0 and "every cell matches" in ok.output


def test_explain_json_includes_check():
    r = run("explain", *SEED, "--format", "json", "--expect", "146 157; 200 233")
    assert r.exit_code == 1
    d = json.loads(r.output)
    assert d["output"] == [[154, 157], [200, 233]]
    assert d["check"]["mismatches"][0] == {
        "index": [0, 0],
        "expected": 146,
        "actual": 154,
        "expression": "1·9 + 2·8 + 3·7 + 4·5 + 5·4 + 6·3 + 7·1 + 8·2 + 9·3",
    }


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
def test_explain_formats(fmt):
    r = run("explain", *SEED, "--format", fmt)
    assert r.exit_code == 0 and "154" in r.output


def test_explain_options_and_bank_kernel(tmp_path):
    r = run(
        "explain",
        "--kernel",
        "1 1",
        "--input",
        "1 2 3 4 5",
        "--stride",
        "2",
        "--padding",
        "1",
        "--dilation",
        "2",
        "--convolve",
    )
    assert r.exit_code == 0, r.output
    assert "Convolution" in r.output
    np.save(tmp_path / "img.npy", np.arange(25).reshape(5, 5))
    r = run(
        "explain", "--kernel", "sobel_x", "--input", f"@{tmp_path / 'img.npy'}", "--max-cells", "1"
    )
    assert r.exit_code == 0, r.output
    assert "8 more cells not shown" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kernel", "1 2; 3", "--input", "1 2"], "ragged rows"),
        (["--kernel", "1 a", "--input", "1 2"], "not a number"),
        (["--kernel", "", "--input", "1 2"], "empty matrix"),
        (["--kernel", "1 2 3", "--input", "1 2"], "kernel larger than input"),
        (["--kernel", "1", "--input", "1 2", "--stride", "0"], "stride must be >= 1"),
        (["--kernel", "1", "--input", "1 2", "--dilation", "-1"], "dilation must be >= 1"),
        (["--kernel", "1", "--input", "1 2", "--padding", "circular"], "padding must be"),
        (["--kernel", "1", "--input", "@missing.npy"], "does not exist"),
    ],
)
def test_explain_user_errors_exit_2_without_traceback(args, message):
    r = CliRunner().invoke(cli, ["explain", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_kernels_list_and_show():
    r = run("kernels")
    assert r.exit_code == 0
    for name in (
        "sobel_x",
        "prewitt_y",
        "scharr_x",
        "roberts_pos_diag",
        "farid_x",
        "laplacian_4",
        "laplacian_8",
        "log",
        "gaussian",
        "box",
        "sharpen",
        "emboss",
        "kirsch_nw",
        "line_diag_45",
        "dog",
        "gabor",
    ):
        assert name in r.output
    r = run("kernels", "show", "sobel_x")
    assert r.exit_code == 0
    assert "-1  0  1" in r.output and "-2  0  2" in r.output and "sobel_v" in r.output
    d = json.loads(run("kernels", "show", "gabor:angle=45", "--format", "json").output)
    assert d["params"]["angle"] == 45.0 and len(d["weights"]) == 7
    bad = CliRunner().invoke(cli, ["kernels", "show", "sobl_x"])
    assert bad.exit_code == 2 and "did you mean sobel_x" in bad.output


def test_filter_sample_writes_pngs_and_summary(tmp_path):
    out = tmp_path / "maps"
    r = run(
        "filter",
        "sample:camera",
        "--kernel",
        "sobel_x",
        "--kernel",
        "gabor:angle=90",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [e["kernel"] for e in summary["feature_maps"]] == ["sobel_x", "gabor:angle=90"]
    assert summary["image"]["conversion"].startswith("uint8 / 255")
    from PIL import Image

    for e in summary["feature_maps"]:
        with Image.open(out / e["png"]) as im:
            assert im.size == (512, 512)
        arr = np.load(out / e["npy"])
        assert arr.shape == (512, 512)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["sample:nope"], "unknown sample image"),
        (None, ["/no/such/file.png"], "does not exist"),
        ("text", [], "not an image file"),
        ("big", ["--max-pixels", "100"], "over the cap of 100"),
        (None, ["sample:camera", "--kernel", "nope"], "unknown kernel"),
    ],
)
def test_filter_bad_input(tmp_path, make, args, message):
    target = tmp_path / "in.png"
    if make == "text":
        target.write_text("this is not a png")
        args = [str(target), *args]
    elif make == "big":
        from PIL import Image

        Image.new("L", (20, 20)).save(target)
        args = [str(target), *args]
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["filter", *args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not out.exists()  # nothing written on bad input


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom convlens.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0\n"
        "r = CliRunner().invoke(cli, ['explain', '--kernel', '1 2', '--input', '1 2 3'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_console_script_exit_codes():
    exe = [sys.executable, "-m", "convlens.cli"]
    ok = subprocess.run([*exe, "explain", *SEED], capture_output=True, text=True)
    assert ok.returncode == 0 and "154" in ok.stdout
    bad = subprocess.run(
        [*exe, "explain", "--kernel", "1 2; 3", "--input", "1"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("convlens: error:") and "Traceback" not in bad.stderr
    check = subprocess.run(
        [*exe, "explain", *SEED, "--expect", "146 157; 200 233"], capture_output=True, text=True
    )
    assert check.returncode == 1


@pytest.mark.slow  # trains 2 then 30 epochs through the CLI
def test_train_resume_extends_only_with_an_explicit_epochs(tmp_path):
    """`--resume` keeps the recorded epochs unless --epochs is given, also when it equals the
    option's default (30)."""
    import json

    out = str(tmp_path / "run")
    first = ["train", "--data", "digits", "--epochs", "2", "--no-snapshots", "-q", "--out", out]
    assert run(*first).exit_code == 0
    assert run("train", "--resume", "-q", "--out", out).exit_code == 0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [1, 2]
    assert run("train", "--resume", "--epochs", "30", "-q", "--out", out).exit_code == 0
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == list(range(1, 31))


# --- the error contract (issue 12) ------------------------------------------------------------


def _report_raising(monkeypatch, exc):
    def fake(run_dir, out_file, beside=None):
        raise exc

    monkeypatch.setattr("convlens.report.build_report", fake)
    return CliRunner().invoke(cli, ["report", "RUN"])


def test_usage_errors_are_one_line():
    r = CliRunner().invoke(cli, ["train", "--bogus"])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "convlens: error: No such option '--bogus'. Did you mean '--out'? "
        "(see `convlens train --help`)"
    ]
    r = CliRunner().invoke(cli, ["kernels", "show"])
    assert r.exit_code == 2 and r.stderr.splitlines() == [
        "convlens: error: Missing argument 'SPEC'. (see `convlens kernels show --help`)"
    ]


@pytest.mark.parametrize("cmd", [["train"], ["analyze", "x"], ["demo"]])
def test_seeds_must_be_non_negative(cmd):
    r = CliRunner().invoke(cli, [*cmd, "--seed", "-1"])
    assert r.exit_code == 2 and "not in the range 0<=x<=4294967295" in r.stderr
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/data/run/report.html"),
            "convlens: error: '/data/run/report.html': Permission denied (check its permissions "
            "or use another path)",
        ),
        (
            OSError(28, "No space left on device", "/data/x"),
            "convlens: error: '/data/x': No space left on device (free some disk space or write "
            "somewhere else)",
        ),
        (
            IsADirectoryError(
                21, "Is a directory", "/data/.r.html.abcd1234.tmp", None, "/data/r.html"
            ),
            "convlens: error: '/data/r.html': Is a directory (it is a folder; give a file path)",
        ),
        (
            OSError(40, "Too many levels of symbolic links", "/data/loop"),
            "convlens: error: '/data/loop': Too many levels of symbolic links (it is a symbolic "
            "link loop; fix the link or use another path)",
        ),
        (
            MemoryError("Unable to allocate 8.00 TiB for an array"),
            "convlens: error: not enough memory for this command (Unable to allocate 8.00 TiB "
            "for an array); use smaller sizes (fewer images, null kernels, pixels or a smaller "
            "batch)",
        ),
        (
            ConvlensError("line one\n  line two", hint_key="no_analysis"),
            "convlens: error: line one line two (run `convlens analyze RUN` first)",
        ),
    ],
)
def test_environment_errors_exit_2_with_one_line(monkeypatch, exc, line):
    r = _report_raising(monkeypatch, exc)
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [line]


def test_a_bug_exits_1_with_one_line_and_debug_shows_the_traceback(monkeypatch):
    r = _report_raising(monkeypatch, KeyError("boom"))
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "convlens: internal error: KeyError: 'boom' (rerun with --debug for the traceback)"
    ]
    r = CliRunner().invoke(cli, ["--debug", "report", "RUN"])
    assert r.exit_code == 1
    assert r.stderr.startswith("Traceback") and "KeyError: 'boom'" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("convlens: internal error: KeyError")


def test_keyboard_interrupt_exits_130(monkeypatch):
    r = _report_raising(monkeypatch, KeyboardInterrupt())
    assert r.exit_code == 130 and r.stderr.splitlines() == ["convlens: interrupted"]


def test_warnings_become_one_line_each_and_harmless_ones_are_dropped(monkeypatch):
    import warnings

    def fake(run_dir, out_file, beside=None):
        np.log(np.zeros(2))  # numpy RuntimeWarning: divide by zero
        warnings.warn("line one\nline two", UserWarning, stacklevel=1)
        warnings.warn("The given NumPy array is not writable, ...", UserWarning, stacklevel=1)
        return "out.html"

    monkeypatch.setattr("convlens.report.build_report", fake)
    r = CliRunner().invoke(cli, ["report", "RUN"])
    assert r.exit_code == 0 and r.stdout == "wrote out.html\n"
    assert r.stderr.splitlines() == [
        "convlens: warning: divide by zero encountered in log (RuntimeWarning)",
        "convlens: warning: line one line two (UserWarning)",
    ]

    def failing(run_dir, out_file, beside=None):
        warnings.warn("something odd", RuntimeWarning, stacklevel=1)
        raise ConvlensError("bad run")

    monkeypatch.setattr("convlens.report.build_report", failing)
    r = CliRunner().invoke(cli, ["report", "RUN"])
    assert r.exit_code == 2 and r.stderr.splitlines() == ["convlens: error: bad run"]


def test_analyze_refuses_options_that_do_not_apply_to_a_run(tmp_path):
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--ood", "noise"])
    assert r.exit_code == 2 and "(ood: for model files only)" in r.stderr
    r = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "it is a folder" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_analyze_out_dash_prints_the_json_and_writes_no_file(tiny_run_copy, tmp_path, monkeypatch):
    # real models round 2: `--out -` wrote a file named "-"; now the JSON alone goes to stdout
    from convlens.analysis.result import AnalysisResult

    monkeypatch.chdir(tmp_path)
    before = set((tiny_run_copy).iterdir())
    r = CliRunner().invoke(cli, ["analyze", str(tiny_run_copy), "--null-size", "100", "--out", "-"])
    assert r.exit_code == 0, r.stderr
    a = AnalysisResult.from_json(r.stdout)
    assert a.layers and r.stderr.strip()  # the summary, on stderr
    assert not (tmp_path / "-").exists() and set(tiny_run_copy.iterdir()) == before
