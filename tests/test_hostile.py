"""Hostile input to the ``convlens`` command, run as a real process under an address-space limit.

Every case must end with the error contract of :mod:`convlens.cli`: the expected exit code (2 for
user and environment errors), exactly one line on stderr, no traceback anywhere, nothing written
or changed in the case's folder (all files hashed before and after; the case runs with that folder
as its working directory so default outputs land there too).

The cases run concurrently (one subprocess per CPU) in a module fixture; each test then checks
one case's outcome. Cases whose fix belongs to another part of issue 12 (ops/explain/data/analysis
limits) are ``xfail(strict=False)`` and say which part.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: address-space limit for every case: a torch import plus a tiny training run needs ~1.5 GiB
ADDRESS_SPACE = 4 << 30
CASE_TIMEOUT = 120


def _limits(fsize: int | None = None) -> Callable[[], None]:
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return pre


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="default")
    env.pop("CONVLENS_DEBUG", None)
    return env


def convlens(
    args: list[str], cwd: Path, *, fsize: int | None = None, stdout: Any = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args],
        cwd=cwd,
        env=_env(),
        preexec_fn=_limits(fsize),
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=CASE_TIMEOUT,
    )


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (folders too) with a hash of each file's bytes."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            out[str(p.relative_to(root))] = "link" if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath, f)
            key = str(p.relative_to(root))
            if p.is_symlink() or not p.is_file():
                out[key] = f"link:{os.readlink(p)}" if p.is_symlink() else "other"
                continue
            try:
                out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError as exc:
                out[key] = f"unreadable:{exc.errno}"
    return out


# --- fixture material -------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case's setup gets: its folder, and makers for the shared material."""

    dir: Path
    tiny_run: Path
    analysis_json: str
    holders: list[subprocess.Popen[str]] = field(default_factory=list)

    def p(self, name: str) -> str:
        return str(self.dir / name)

    def user_files(self, name: str = "mine") -> str:
        folder = self.dir / name
        folder.mkdir()
        (folder / "notes.txt").write_text("my notes, keep them\n")
        (folder / "run.json.bak").write_text("{}")
        (folder / "seeds").mkdir()
        (folder / "seeds" / "thesis.tex").write_text("\\section{}")
        return str(folder)

    def file(self, name: str, data: bytes | str) -> str:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return str(path)

    def folder(self, name: str) -> str:
        (self.dir / name).mkdir(parents=True)
        return str(self.dir / name)

    def loop(self, name: str = "loop") -> str:
        os.symlink(name, self.dir / name)  # a link to itself: ELOOP on every use
        return str(self.dir / name)

    def run(self, name: str = "run", *, analysed: bool = False) -> str:
        dest = self.dir / name
        shutil.copytree(self.tiny_run, dest)
        if analysed:
            (dest / "analysis.json").write_text(self.analysis_json)
        return str(dest)

    def model_bytes(self) -> bytes:
        return (self.tiny_run / "model.safetensors").read_bytes()

    def hold_lock(self, run: str) -> int:
        """Another process holding the run's lock (as a running ``train`` would); its pid."""
        code = (
            "import fcntl, os, sys\n"
            f"fd = os.open({os.path.join(run, '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.holders.append(proc)
        return proc.pid


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]
    code: int = 2
    expect: str = ""  # a substring of the stderr line ("" = any)
    xfail: str | None = None  # which part of issue 12 owns the fix
    fsize: int | None = None  # RLIMIT_FSIZE: writes past it fail (a stand-in for a full disk)


def _corrupt_run_json(c: Ctx) -> str:
    run = c.run()
    Path(run, "run.json").write_text("{not json")
    return run


def _run_with(c: Ctx, rel: str, data: bytes | str, *, analysed: bool = False) -> str:
    run = c.run(analysed=analysed)
    path = Path(run, rel)
    if path.is_dir():
        shutil.rmtree(path)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return run


_BAD_HEADER = b"\x10\x00\x00\x00\x00\x00\x00\x00{"  # a safetensors header that is not JSON


def _corrupt_control(c: Ctx) -> str:
    """A random-label control run (the tiny run, relabelled) whose final weights are truncated."""
    run = c.run("ctrl")
    rec = json.loads(Path(run, "run.json").read_text())
    rec["config"]["shuffle_labels"] = True
    Path(run, "run.json").write_text(json.dumps(rec))
    Path(run, "model.safetensors").write_bytes(c.model_bytes()[:200])
    return run


def _pickled_list(c: Ctx) -> str:
    import torch

    path = c.dir / "weights.pt"
    torch.save([1, 2, 3], path)
    return str(path)


def _checkpoint_not_a_dict(c: Ctx) -> str:
    import torch

    run = c.run()
    ckpt = Path(run, "checkpoint", "state.pt")
    torch.save([1.0, 2.0], ckpt)
    return run


def _partial_run(c: Ctx) -> str:
    run = c.run()
    Path(run, "model.safetensors").unlink()
    return run


def _old_analysis(c: Ctx) -> str:
    return _run_with(c, "analysis.json", json.dumps({"format": "convlens-analysis/1"}))


def _deep_analysis(c: Ctx) -> str:
    return _run_with(c, "analysis.json", "[" * 200_000 + "]" * 200_000)


def _analysis_is_folder(c: Ctx) -> str:
    run = c.run()
    Path(run, "analysis.json").mkdir()
    return run


def _zero_images_npz(c: Ctx) -> str:
    import numpy as np

    path = c.dir / "empty.npz"
    np.savez(path, x=np.zeros((0, 8, 8), np.float32), y=np.zeros((0,), np.int64))
    return f"npz:{path}"


def _onnx_copy(c: Ctx) -> str:
    src = Path(__file__).parent / "data" / "real" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    return c.file("cls.onnx", src.read_bytes())


def _analysis_beside_a_foreign_report(c: Ctx) -> str:
    """``m.analysis.json`` whose default report path ``m.report.html`` holds the user's own file."""
    c.file("m.report.html", "<p>mine</p>")
    return c.file("m.analysis.json", c.analysis_json)


def _zero_sized_model(c: Ctx) -> str:
    import numpy as np
    from safetensors.numpy import save_file

    path = c.dir / "empty_conv.safetensors"
    save_file({"conv1.weight": np.zeros((0, 1, 3, 3), np.float32)}, str(path))
    return str(path)


SEED = ["--kernel", "1 2 3; 4 5 6; 7 8 9", "--input", "9 8 7 6; 5 4 3 2; 1 2 3 4; 5 6 7 8"]
# xfail reasons for cases whose fix belongs to another part of issue 12 (none open right now):
OPS = "issue 12 part ops/explain in progress"
DATA = "issue 12 part data in progress"
ANALYSIS = "issue 12 part analysis in progress"

CASES: list[Case] = [
    # -- click usage errors: one line, exit 2 --------------------------------------------------
    Case("usage-unknown-command", lambda c: ["frobnicate"], expect="No such command"),
    Case("usage-unknown-global-option", lambda c: ["--bogus", "kernels"], expect="--help"),
    Case("usage-unknown-option", lambda c: ["train", "--bogus"], expect="convlens train --help"),
    Case("usage-missing-argument", lambda c: ["analyze"], expect="Missing argument"),
    Case("usage-extra-argument", lambda c: ["report", "a", "b"], expect="unexpected extra"),
    Case("usage-missing-option", lambda c: ["explain", "--kernel", "1"], expect="--input"),
    # -- explain ---------------------------------------------------------------------------------
    Case("explain-ragged", lambda c: ["explain", "--kernel", "1 2; 3", "--input", "1"]),
    Case("explain-stride-0", lambda c: ["explain", *SEED, "--stride", "0"], expect="stride"),
    Case("explain-stride-neg", lambda c: ["explain", *SEED, "--stride", "-2"], expect="stride"),
    Case("explain-stride-text", lambda c: ["explain", *SEED, "--stride", "abc"]),
    Case("explain-padding-bad", lambda c: ["explain", *SEED, "--padding", "sideways"]),
    Case("explain-dilation-0", lambda c: ["explain", *SEED, "--dilation", "0"]),
    Case("explain-max-cells-neg", lambda c: ["explain", *SEED, "--max-cells", "-1"]),
    Case("explain-format-bad", lambda c: ["explain", *SEED, "--format", "pdf"]),
    Case("explain-kernel-text", lambda c: ["explain", "--kernel", "a b; c d", "--input", "1"]),
    Case(
        "explain-huge-padding",
        lambda c: ["explain", "--kernel", "1", "--input", "1", "--padding", "100000000"],
    ),
    Case(
        "explain-kernel-missing-file",
        lambda c: ["explain", "--kernel", f"@{c.p('nope.npy')}", "--input", "1"],
        expect="nope.npy",
    ),
    Case(
        "explain-kernel-zero-byte",
        lambda c: ["explain", "--kernel", "@" + c.file("k.npy", b""), "--input", "1"],
        expect="k.npy",
    ),
    Case(
        "explain-kernel-folder",
        lambda c: ["explain", "--kernel", "@" + c.folder("k.csv"), "--input", "1"],
        expect="k.csv",
    ),
    Case(
        "explain-kernel-symlink-loop",
        lambda c: ["explain", "--kernel", "@" + c.loop("k.txt"), "--input", "1"],
        expect="k.txt",
    ),
    Case(
        "explain-kernel-proc",
        lambda c: ["explain", "--kernel", "@/proc/no/such.csv", "--input", "1"],
        expect="/proc/no/such.csv",
    ),
    Case(
        "explain-kernel-bad-json",
        lambda c: ["explain", "--kernel", "@" + c.file("k.json", "[[1, 2], [3"), "--input", "1"],
        expect="k.json",
    ),
    # -- kernels -----------------------------------------------------------------------------------
    Case("kernels-show-unknown", lambda c: ["kernels", "show", "nope"], expect="unknown kernel"),
    Case("kernels-show-missing", lambda c: ["kernels", "show"], expect="SPEC"),
    Case("kernels-show-size-neg", lambda c: ["kernels", "show", "sobel_x:size=-3"]),
    Case("kernels-show-param-text", lambda c: ["kernels", "show", "gabor:angle=abc"]),
    Case("kernels-show-param-unknown", lambda c: ["kernels", "show", "sobel_x:colour=red"]),
    Case(
        "kernels-show-size-huge",
        lambda c: ["kernels", "show", "gaussian:size=1000001"],
    ),
    Case("kernels-show-format-bad", lambda c: ["kernels", "show", "sobel_x", "--format", "x"]),
    # -- filter ------------------------------------------------------------------------------------
    Case("filter-unknown-sample", lambda c: ["filter", "sample:nope", "--out", c.p("out")]),
    Case(
        "filter-zero-byte-image",
        lambda c: ["filter", c.file("in.png", b""), "--out", c.p("out")],
        expect="in.png",
    ),
    Case(
        "filter-text-image",
        lambda c: ["filter", c.file("in.png", "not a png"), "--out", c.p("out")],
        expect="in.png",
    ),
    Case(
        "filter-truncated-png",
        lambda c: ["filter", c.file("in.png", _png_bytes()[:60]), "--out", c.p("out")],
        expect="in.png",
    ),
    Case(
        "filter-image-folder",
        lambda c: ["filter", c.folder("in.png"), "--out", c.p("out")],
        expect="in.png",
    ),
    Case(
        "filter-image-symlink-loop",
        lambda c: ["filter", c.loop("in.png"), "--out", c.p("out")],
        expect="in.png",
    ),
    Case(
        "filter-out-proc",
        lambda c: ["filter", "sample:camera", "--out", "/proc/no/such/out"],
        expect="/proc/no/such",
    ),
    Case(
        "filter-out-is-file",
        lambda c: ["filter", "sample:camera", "--out", c.file("out.txt", "keep")],
        expect="out.txt",
    ),
    Case(
        "filter-max-pixels-0", lambda c: ["filter", "sample:camera", "--max-pixels", "0", "-o", "o"]
    ),
    Case(
        "filter-pixel-cap",
        lambda c: ["filter", "sample:camera", "--max-pixels", "10", "--out", c.p("out")],
        expect="--max-pixels",
    ),
    Case(
        "filter-unknown-kernel",
        lambda c: ["filter", "sample:camera", "-k", "nope", "--out", c.p("out")],
        expect="unknown kernel",
    ),
    # -- train -------------------------------------------------------------------------------------
    Case("train-seed-neg", lambda c: ["train", "--seed", "-1", "--out", c.p("o")], expect="--seed"),
    Case("train-seed-huge", lambda c: ["train", "--seed", str(2**70), "--out", c.p("o")]),
    Case("train-epochs-0", lambda c: ["train", "--epochs", "0", "--out", c.p("o")]),
    Case("train-batch-0", lambda c: ["train", "--batch-size", "0", "--out", c.p("o")]),
    Case("train-lr-nan", lambda c: ["train", "--lr", "nan", "--out", c.p("o")], expect="learning"),
    Case("train-lr-neg", lambda c: ["train", "--lr", "-1", "--out", c.p("o")], expect="learning"),
    Case("train-wd-inf", lambda c: ["train", "--weight-decay", "inf", "--out", c.p("o")]),
    Case("train-optimizer-bad", lambda c: ["train", "--optimizer", "lbfgs", "--out", c.p("o")]),
    Case("train-device-bad", lambda c: ["train", "--device", "tpu", "--out", c.p("o")]),
    Case("train-model-bad", lambda c: ["train", "--model", "resnet", "--out", c.p("o")]),
    Case("train-data-bad", lambda c: ["train", "--data", "nope", "--out", c.p("o")]),
    Case(
        "train-data-npz-zero-images",
        lambda c: ["train", "--data", _zero_images_npz(c), "--out", c.p("o")],
        expect="empty.npz",
    ),
    Case(
        "train-data-npz-zero-byte",
        lambda c: ["train", "--data", "npz:" + c.file("d.npz", b""), "--out", c.p("o")],
        expect="d.npz",
    ),
    Case(
        "train-data-empty-folder",
        lambda c: ["train", "--data", c.folder("imgs"), "--out", c.p("o")],
        expect="imgs",
    ),
    Case("train-out-proc", lambda c: ["train", "--epochs", "1", "--out", "/proc/x/run"]),
    Case("train-out-sys", lambda c: ["train", "--epochs", "1", "--out", "/sys/convlens-run"]),
    Case(
        "train-out-is-file",
        lambda c: ["train", "--epochs", "1", "--out", c.file("run.txt", "keep")],
        expect="not a folder",
    ),
    Case(
        "train-out-under-file",
        lambda c: ["train", "--epochs", "1", "--out", c.file("f.txt", "keep") + "/run"],
        expect="f.txt",
    ),
    Case(
        "train-out-symlink-loop",
        lambda c: ["train", "--epochs", "1", "--out", c.loop("run")],
        expect="run",
    ),
    Case(
        "train-out-user-folder",
        lambda c: ["train", "--epochs", "1", "--out", c.user_files()],
        expect="--force",
    ),
    Case(
        "train-out-existing-run",
        lambda c: ["train", "--epochs", "1", "--out", c.run()],
        expect="--resume",
    ),
    Case(
        "train-resume-missing",
        lambda c: ["train", "--resume", "--out", c.p("none")],
        expect="not a run directory",
    ),
    Case(
        "train-resume-user-folder",
        lambda c: ["train", "--resume", "--out", c.user_files()],
        expect="not a run directory",
    ),
    Case(
        "train-resume-corrupt-run-json",
        lambda c: ["train", "--resume", "--out", _corrupt_run_json(c)],
        expect="run.json",
    ),
    Case(
        "train-resume-run-json-list",
        lambda c: ["train", "--resume", "--out", _run_with(c, "run.json", "[1, 2]")],
        expect="run.json",
    ),
    Case(
        "train-resume-bad-config",
        lambda c: [
            "train",
            "--resume",
            "--out",
            _run_with(c, "run.json", json.dumps({"config": {"epochs": "many"}})),
        ],
        expect="epochs",
    ),
    Case(
        "train-resume-corrupt-checkpoint",
        lambda c: ["train", "--resume", "--out", _run_with(c, "checkpoint/state.pt", b"garbage")],
        expect="state.pt",
    ),
    Case(
        "train-resume-checkpoint-not-a-dict",
        lambda c: ["train", "--resume", "--out", _checkpoint_not_a_dict(c)],
        expect="state.pt",
    ),
    Case(
        "train-locked-force",
        lambda c: ["train", "--epochs", "1", "--force", "--out", _locked_run(c)],
        expect="in use by another convlens process (pid ",
    ),
    Case(
        "train-locked-resume",
        lambda c: ["train", "--resume", "--out", _locked_run(c)],
        expect="in use by another convlens process (pid ",
    ),
    # -- analyze -----------------------------------------------------------------------------------
    Case("analyze-missing", lambda c: ["analyze", c.p("none")], expect="none"),
    Case("analyze-seed-neg", lambda c: ["analyze", c.run(), "--seed", "-1"], expect="--seed"),
    Case("analyze-null-small", lambda c: ["analyze", c.run(), "--null-size", "99"]),
    Case("analyze-null-huge", lambda c: ["analyze", c.run(), "--null-size", str(10**12)]),
    Case(
        "analyze-out-proc",
        lambda c: ["analyze", c.run(), "--out", "/proc/no/such.json"],
        expect="/proc/no",
    ),
    Case(
        "analyze-out-folder",
        lambda c: ["analyze", c.run(), "--out", c.folder("result")],
        expect="result",
    ),
    Case(
        "analyze-out-under-file",
        lambda c: ["analyze", c.run(), "--out", c.file("f.txt", "keep") + "/a.json"],
        expect="f.txt",
    ),
    Case(
        "analyze-disk-full",
        lambda c: ["analyze", c.run(), "--null-size", "100", "--out", c.p("a.json")],
        fsize=4096,
        expect="a.json",
    ),
    Case("analyze-partial-run", lambda c: ["analyze", _partial_run(c)], expect="--resume"),
    Case(
        "analyze-run-json-corrupt",
        lambda c: ["analyze", _corrupt_run_json(c), "--null-size", "100"],
        expect="run.json",
    ),
    Case(
        "analyze-snapshot-corrupt",
        lambda c: [
            "analyze",
            _run_with(c, "snapshots/epoch-001.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{"),
            "--null-size",
            "100",
        ],
        expect="epoch-001",
    ),
    Case(
        "analyze-probe-corrupt",
        lambda c: [
            "analyze",
            _run_with(c, "probes/epoch-002.safetensors", b"garbage"),
            "--null-size",
            "100",
        ],
        expect="epoch-002",
    ),
    Case(
        "analyze-model-zero-byte",
        lambda c: ["analyze", c.file("m.safetensors", b"")],
        expect="m.safetensors",
    ),
    Case(
        "analyze-model-truncated",
        lambda c: ["analyze", c.file("m.safetensors", c.model_bytes()[:200])],
        expect="m.safetensors",
    ),
    Case("analyze-pt-not-state-dict", lambda c: ["analyze", _pickled_list(c)], expect="weights.pt"),
    Case("analyze-pt2", lambda c: ["analyze", c.file("m.pt2", b"PK\x03\x04rest")], expect=".pt2"),
    Case(
        "analyze-onnx-garbage",
        lambda c: ["analyze", c.file("m.onnx", b"\x00garbage")],
        expect="m.onnx",
    ),
    Case("analyze-symlink-loop", lambda c: ["analyze", c.loop("m.safetensors")]),
    Case(
        "analyze-factory-bad",
        lambda c: ["analyze", c.file("m.safetensors", c.model_bytes()), "--factory", "nope:f"],
        expect="nope",
    ),
    Case(
        "analyze-control-run-model-truncated",
        lambda c: ["analyze", c.run(), "--null-size", "100", "--control-run", _corrupt_control(c)],
        expect="ctrl/model.safetensors",
    ),
    Case(
        "analyze-ood-unknown",
        lambda c: ["analyze", c.run(), "--null-size", "100", "--ood", "unicorns"],
        expect="ood",
    ),
    # -- report ------------------------------------------------------------------------------------
    Case("report-missing", lambda c: ["report", c.p("none")], expect="none"),
    Case("report-no-analysis", lambda c: ["report", c.run()], expect="convlens analyze"),
    Case(
        "report-analysis-not-json",
        lambda c: ["report", _run_with(c, "analysis.json", "{oops")],
        expect="analysis.json",
    ),
    Case(
        "report-analysis-empty-object",
        lambda c: ["report", _run_with(c, "analysis.json", "{}")],
        expect="analysis.json",
    ),
    Case(
        "report-analysis-old-format",
        lambda c: ["report", _old_analysis(c)],
        expect="older convlens",
    ),
    Case(
        "report-analysis-deep-nesting",
        lambda c: ["report", _deep_analysis(c)],
        expect="analysis.json",
    ),
    Case(
        "report-analysis-folder",
        lambda c: ["report", _analysis_is_folder(c)],
        expect="analysis.json",
    ),
    Case(
        "report-model-truncated",
        lambda c: [
            "report",
            _run_with(c, "model.safetensors", c.model_bytes()[:200], analysed=True),
        ],
        expect="model.safetensors",
    ),
    Case(
        "report-model-corrupt-header",
        lambda c: ["report", _run_with(c, "model.safetensors", _BAD_HEADER, analysed=True)],
        expect="model.safetensors",
    ),
    Case(
        "report-metrics-corrupt",
        lambda c: ["report", _run_with(c, "metrics.jsonl", '{"epoch": 1}\n', analysed=True)],
        expect="metrics.jsonl",
    ),
    # -- export ------------------------------------------------------------------------------------
    Case(
        "export-model-truncated",
        lambda c: [
            "export",
            _run_with(c, "model.safetensors", c.model_bytes()[:200]),
            "--tensorboard",
            c.p("tb"),
        ],
        expect="model.safetensors",
    ),
    Case(
        "export-snapshot-corrupt",
        lambda c: [
            "export",
            _run_with(c, "snapshots/epoch-001.safetensors", _BAD_HEADER),
            "--tensorboard",
            c.p("tb"),
        ],
        expect="epoch-001",
    ),
    Case(
        "report-out-proc",
        lambda c: ["report", c.run(analysed=True), "--out", "/proc/no/r.html"],
        expect="/proc/no",
    ),
    Case(
        "report-out-folder",
        lambda c: ["report", c.run(analysed=True), "--out", c.folder("r.html")],
        expect="r.html",
    ),
    Case(
        "report-out-under-file",
        lambda c: ["report", c.run(analysed=True), "--out", c.file("f.txt", "keep") + "/r.html"],
        expect="f.txt",
    ),
    # -- reliability round 3 (issue 26) -------------------------------------------------------------
    Case(
        "export-disk-full",
        lambda c: ["export", c.run(), "--tensorboard", c.p("tb")],
        fsize=4096,
        expect="File too large",
    ),
    Case(
        "export-metrics-row-without-epoch",
        lambda c: [
            "export",
            _run_with(c, "metrics.jsonl", '{"train_loss": 0.5}\n'),
            "--tensorboard",
            c.p("tb"),
        ],
        expect="epoch: missing",
    ),
    Case(
        "export-metrics-epoch-a-string",
        lambda c: [
            "export",
            _run_with(c, "metrics.jsonl", '{"epoch": "one", "train_loss": 0.5}\n'),
            "--tensorboard",
            c.p("tb"),
        ],
        expect="expected integer",
    ),
    Case(
        "report-run-model-corrupt",
        lambda c: ["report", _run_with(c, "model.safetensors", _BAD_HEADER, analysed=True)],
        expect="model.safetensors",
    ),
    Case(
        "report-over-a-foreign-html",
        lambda c: ["report", c.run(analysed=True), "--out", c.file("mine.html", "<p>mine</p>")],
        expect="not a convlens report",
    ),
    Case(
        "report-model-analysis-over-a-foreign-html",
        lambda c: ["report", _analysis_beside_a_foreign_report(c)],
        expect="not a convlens report",
    ),
    Case(
        "train-no-snapshots-with-cadence",
        lambda c: ["train", "--no-snapshots", "--snapshot-every", "1", "--out", c.p("r")],
        expect="--snapshot-every sets when snapshots are taken",
    ),
    Case(
        "analyze-normalize-overflow",
        lambda c: [
            "analyze",
            _onnx_copy(c),
            "--data",
            "faces",
            "--normalize",
            "1e308,1e-308",
            "--out",
            c.p("a.json"),
        ],
        expect="maps pixel values of 0..255",
    ),
    Case(
        "analyze-input-malformed",
        lambda c: ["analyze", _onnx_copy(c), "--data", "faces", "--input", "sr", "--out", c.p("a")],
        expect="--input 'sr': expected NAME=VALUE",
    ),
    Case(
        "analyze-input-twice",
        lambda c: [
            "analyze",
            _onnx_copy(c),
            "--data",
            "faces",
            "--input",
            "sr=1",
            "--input",
            "sr=2",
            "--out",
            c.p("a"),
        ],
        expect="--input 'sr' is given twice",
    ),
    Case(
        "analyze-input-without-data",
        lambda c: ["analyze", _onnx_copy(c), "--input", "sr=1", "--out", c.p("a")],
        expect="give the data as well",
    ),
    Case(
        "analyze-input-not-onnx",
        lambda c: ["analyze", _zero_sized_model(c), "--data", "faces", "--input", "sr=1"],
        expect="is not an .onnx file",
    ),
    Case(
        "analyze-only-zero-sized-conv",
        lambda c: ["analyze", _zero_sized_model(c), "--out", c.p("a.json")],
        expect="no conv layer has weights to analyse",
    ),
    # -- demo ----------------------------------------------------------------------------------------
    Case("demo-seed-neg", lambda c: ["demo", "--seed", "-1"], expect="--seed"),
    Case("demo-seeds-0", lambda c: ["demo", "--seeds", "0"]),
    Case("demo-null-small", lambda c: ["demo", "--null-size", "5"]),
    Case("demo-epochs-0", lambda c: ["demo", "--epochs", "0"]),
    Case(
        "demo-into-user-folder",
        lambda c: ["demo", "--epochs", "1", "--seeds", "1", "--out", c.user_files()],
        expect="--force",
    ),
    Case(
        "demo-into-train-run",
        lambda c: ["demo", "--epochs", "1", "--seeds", "1", "--out", c.run()],
        expect="not a demo",
    ),
    Case(
        "demo-out-is-file",
        lambda c: ["demo", "--epochs", "1", "--out", c.file("demo.txt", "keep")],
        expect="not a folder",
    ),
    Case(
        "demo-locked",
        lambda c: ["demo", "--epochs", "1", "--seeds", "1", "--force", "--out", _locked_run(c)],
        expect="in use by another convlens process (pid ",
    ),
]


def _locked_run(c: Ctx) -> str:
    run = c.run("locked")
    c.hold_lock(run)
    return run


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    changed: list[str]
    seconds: float


def _run_case(case: Case, base: Path, tiny_run: Path, analysis_json: str) -> Outcome:
    ctx = Ctx(base / case.id, tiny_run, analysis_json)
    ctx.dir.mkdir()
    try:
        args = case.setup(ctx)
        before = tree(ctx.dir)
        t0 = time.perf_counter()
        proc = convlens(args, ctx.dir, fsize=case.fsize)
        seconds = time.perf_counter() - t0
        after = tree(ctx.dir)
    finally:
        for holder in ctx.holders:
            holder.communicate("")  # closes its stdin: it exits and drops the lock
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return Outcome(proc.returncode, proc.stdout, proc.stderr, changed, seconds)


@pytest.fixture(scope="module")
def outcomes(
    tiny_run: Path, tiny_run_analysis: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("hostile")
    analysis_json = tiny_run_analysis.to_json(indent=2) + "\n"
    workers = max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(workers) as pool:
        futures = {
            case.id: pool.submit(_run_case, case, base, tiny_run, analysis_json) for case in CASES
        }
        results = {k: f.result() for k, f in futures.items()}
    if os.environ.get("CONVLENS_HOSTILE_REPORT"):
        for k, o in results.items():
            print(f"{o.seconds:6.2f}s exit {o.code} {k}: {o.stderr.strip()[:300]!r} {o.changed}")
    return results


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=False, reason=c.xfail)] if c.xfail else [],
        )
        for c in CASES
    ],
)
def test_hostile_case(case: Case, outcomes: dict[str, Outcome]) -> None:
    got = outcomes[case.id]
    lines = got.stderr.splitlines()
    where = f"exit {got.code}; stderr:\n{got.stderr}"
    assert "Traceback" not in got.stderr + got.stdout, where
    assert got.code == case.code, where
    assert len(lines) == 1, where
    assert lines[0].startswith("convlens: error: "), where
    assert case.expect in lines[0], where
    assert got.changed == [], f"files changed or left behind: {got.changed}; {where}"


# --- the cases that succeed, or need more than one process ----------------------------------


def test_stdout_on_a_full_disk_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = convlens(["kernels"], tmp_path, stdout=full)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr


def test_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    big = json.dumps([[(i * j) % 7 for j in range(60)] for i in range(60)])  # > a pipe buffer
    args = [sys.executable, "-m", "convlens.cli", "explain", "-k", "1 2; 3 4", "-i", big]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(5)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b""


def test_internal_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    """A bug (here: a factory that raises) exits 1 with one line; --debug adds the traceback."""
    (tmp_path / "buggy.py").write_text("def build():\n    raise KeyError('boom')\n")
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"conv.weight": np.zeros((2, 1, 3, 3), np.float32)}, str(tmp_path / "m.safetensors"))
    args = ["analyze", "m.safetensors", "--factory", "buggy:build", "--out", "a.json"]
    env = _env() | {"PYTHONPATH": str(tmp_path)}
    run = [sys.executable, "-m", "convlens.cli"]
    proc = subprocess.run([*run, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
    if proc.returncode == 2:
        pytest.skip(f"the factory error is reported as a user error: {proc.stderr}")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "convlens: internal error: KeyError: 'boom' (rerun with --debug for the traceback)"
    ]
    debug = subprocess.run(
        [*run, "--debug", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().endswith("(rerun with --debug for the traceback)")


def test_train_force_keeps_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "snapshots").mkdir()
    (out / "snapshots" / "mine.txt").write_text("keep me too")
    (out / "run.json").write_text("{}")  # convlens's name: --force may replace it
    args = ["train", "--epochs", "1", "--no-snapshots", "-q", "--force", "--out", str(out)]
    proc = convlens(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "snapshots" / "mine.txt").read_text() == "keep me too"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / ".lock").exists() and not list(out.rglob(".*.tmp"))


def test_two_trains_into_one_directory(tmp_path: Path) -> None:
    """A real second `train` while the first is running: refused, naming the first's pid."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "convlens.cli", "train", "--epochs", "300", "-q", "--out", str(out)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / "run.json").exists()
        for args in (["--force"], ["--resume"]):
            second = convlens(["train", "--epochs", "1", "-q", *args, "--out", str(out)], tmp_path)
            assert second.returncode == 2, second.stderr
            assert second.stderr.splitlines() == [
                f"convlens: error: run directory {str(out)!r} is in use by another convlens "
                f"process (pid {first.pid}); wait for it to finish or choose another directory"
            ]
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert err.splitlines() == ["convlens: interrupted"]
    assert not (out / ".lock").exists()


def test_export_of_a_diverged_run_leaves_nan_out_of_the_histograms(
    tmp_path: Path, tiny_run
) -> None:
    """NaN weights (a diverged run) exported: exit 0, histograms of the finite values, a line naming
    what was left out (it was an internal error: "The histogram is empty")."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for f in [run / "model.safetensors", *sorted((run / "snapshots").glob("*.safetensors"))[-1:]]:
        save_file({k: np.full_like(v, np.nan) for k, v in load_file(str(f)).items()}, str(f))
    proc = convlens(["export", str(run), "--tensorboard", str(tmp_path / "tb")], tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "non-finite weights left out of the histograms: conv1.bias" in proc.stdout


def test_demo_quiet_prints_the_answer_but_no_progress(tmp_path: Path) -> None:
    args = ["demo", "-q", "--seeds", "1", "--epochs", "2", "--null-size", "100", "--out", "d"]
    proc = convlens(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[train" not in proc.stderr and "epoch" not in proc.stderr.split("\n")[0]
    assert proc.stderr.startswith("No, not between input signals")
    assert proc.stdout.strip().endswith("report.html")
