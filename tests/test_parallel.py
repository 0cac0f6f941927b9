"""Scale-out on torch.distributed (issue 16): merges, sharding, and real 2-process gloo jobs.

The multi-process tests start ``torchrun --standalone --nproc_per_node 2`` (c10d rendezvous on a
free port; gloo on CPU) as a subprocess, exactly as a user would, and compare with the same
command without torchrun (world size 1)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convlens.analysis.model.shard import shard_indices, worker_message
from convlens.errors import ConvlensError
from convlens.parallel import dist
from convlens.parallel.merge import combine, combine_all, from_state, place, state
from convlens.parallel.running import RunningStats

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CONVLENS_DATA_WORKERS="0")
    env["CONVLENS_DIST_TIMEOUT"] = "60"
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _run(args: list[str], *, nproc: int | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``[torchrun --standalone --nproc_per_node N] python -m convlens ARGS`` (or a script)."""
    head = [sys.executable] if nproc is None else [str(TORCHRUN), "--standalone"]
    if nproc is not None:
        head += [f"--nproc_per_node={nproc}"]
    cmd = head + (["-m", "convlens", *args] if not args[0].endswith(".py") else args)
    return subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240, check=False
    )


# ----------------------------------------------------------------------------- merge (no processes)
def test_chan_merge_equals_one_pass_in_float64() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1001, 5)) * 1e3 + 7.0
    whole = RunningStats(5)
    for i in range(0, len(x), 64):
        whole.update(x[i : i + 64])
    parts = []
    for lo, hi in ((0, 1), (1, 400), (400, 400), (400, 1001)):
        p = RunningStats(5)
        p.update(x[lo:hi])
        parts.append(from_state(state(p)))  # through the payload a rank sends
    merged = combine_all(parts)
    assert merged.n == whole.n == 1001
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.var, whole.var, rtol=1e-12)
    np.testing.assert_allclose(merged.var, x.var(axis=0, ddof=1), rtol=1e-12)
    assert merged.min.tolist() == x.min(axis=0).tolist()
    assert merged.max.tolist() == x.max(axis=0).tolist()
    with pytest.raises(ConvlensError, match="3 and 2 features"):
        combine(RunningStats(3), RunningStats(2))


@pytest.mark.parametrize("n", [0, 1, 5, 7, 10, 11])
@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_shards_cover_every_image_once(n: int, w: int) -> None:
    shards = [shard_indices(n, dist.Context(rank=r, world_size=w)) for r in range(w)]
    together = np.sort(np.concatenate(shards)) if shards else np.zeros(0)
    assert together.tolist() == list(range(n))  # padding dropped: no duplicate, no drop
    values = place(n, [(s, s * 2.0) for s in shards])
    assert values.tolist() == [2.0 * i for i in range(n)]


def test_place_refuses_duplicates_and_gaps() -> None:
    with pytest.raises(ConvlensError, match="1 image\\(s\\) counted twice and 1 missing"):
        place(3, [(np.array([0, 1]), np.zeros(2)), (np.array([1]), np.zeros(1))])


def test_worker_error_keeps_its_cause_only() -> None:
    wrapped = ConvlensError(
        "Caught ConvlensError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        "call last):\n  File x\nconvlens.errors.ConvlensError: image 'a.png' cannot be decoded\n"
    )
    assert worker_message(wrapped) == "image 'a.png' cannot be decoded"
    assert worker_message(ConvlensError("plain")) == "plain"


def test_without_torchrun_world_size_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    ctx = dist.init()
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    assert dist.checked(lambda: 3, "x") == [3]
    monkeypatch.setenv(dist.TIMEOUT_ENV, "soon")
    with pytest.raises(ConvlensError, match="CONVLENS_DIST_TIMEOUT must be a positive"):
        dist.timeout_s()


# ----------------------------------------------------------------------------- 2-process jobs
def _folder(root: Path, n: int, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(n):
        d = root / ("a" if i % 3 else "b")
        d.mkdir(parents=True, exist_ok=True)
        side = size if i % 5 else size + 3  # some images need resizing
        pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
        Image.fromarray(pixels).save(d / f"{i:04d}.png")
    return root


def _model(tmp: Path) -> Path:
    import torch

    from tests.factory_model import build

    torch.manual_seed(0)
    path = tmp / "model.pt"
    torch.save(build().state_dict(), path)
    return path


def _floats(a: Any, b: Any, path: str = "") -> list[tuple[str, float, float]]:
    """Every pair of differing numbers of two JSON trees (structure must match)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        return [d for k in a for d in _floats(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        assert len(a) == len(b), path
        return [d for i, (u, v) in enumerate(zip(a, b, strict=True)) for d in _floats(u, v, path)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == b else [(path, a, b)]
    assert a == b, path
    return []


@needs_torchrun
@pytest.mark.slow
def test_analyze_stream_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    """47 images (odd: DistributedSampler pads one), 2 ranks vs none: channel statistics equal to
    1e-9 relative, per-image scores hence AUROC and bootstrap CIs identical, one file written."""
    data = _folder(tmp_path / "data", 47)
    model = _model(tmp_path)
    common = ["--factory", "tests.factory_model:build", "--data", f"stream:{data}"]
    common += ["--ood", "noise", "--null-size", "100"]
    one = _run(["analyze", str(model), *common, "--out", "one.json"], nproc=None, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = _run(["analyze", str(model), *common, "--out", "two.json"], nproc=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote ") == 1  # rank 0 prints, rank 1 is silent
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    a.pop("timings_s"), b.pop("timings_s")
    diffs = _floats(a, b)
    for where, u, v in diffs:
        assert "channel_stats" in where, where  # everything else is identical
        assert abs(u - v) <= 1e-9 * max(abs(u), abs(v)), (where, u, v)
    dist_a = a["layers"][0]["distribution"]
    assert dist_a["id_channel_stats"]["n"] == 47
    assert (
        b["layers"][0]["distribution"]["ood"]["noise"]["auroc"] == dist_a["ood"]["noise"]["auroc"]
    )
    # beside each analysis of a .pt file, its conv kernels for the torch-free report (issue 23)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "model.pt",
        "one.json",
        "one.kernels.safetensors",
        "two.json",
        "two.kernels.safetensors",
    ]


@needs_torchrun
@pytest.mark.slow
def test_a_failing_rank_fails_the_job_with_one_line(tmp_path: Path) -> None:
    """A corrupt image that only rank 1 reads: the job fails, one line names rank 1 and the file."""
    data = _folder(tmp_path / "data", 20)
    files = sorted(p for p in data.rglob("*.png"))
    # the normalisation sample is 4 images (patched below); corrupt an odd-index file outside it
    rng = np.random.default_rng(0)
    sample = set(rng.choice(len(files), size=4, replace=False).tolist())
    bad = next(i for i in range(1, len(files), 2) if i not in sample)
    files[bad].write_bytes(b"not a png")
    script = tmp_path / "run_convlens.py"
    script.write_text(
        "import convlens.parallel.stream as s\ns.NORM_SAMPLE = 4\n"
        "from convlens.cli import main\nmain()\n"
    )
    model = _model(tmp_path)
    args = [str(script), "analyze", str(model), "--factory", "tests.factory_model:build"]
    args += ["--data", f"stream:{data}", "--ood", "noise", "--null-size", "100"]
    res = _run(args, nproc=2, cwd=tmp_path)
    assert res.returncode != 0
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("convlens:")]
    assert len(ours) == 1, res.stderr
    assert ours[0].startswith("convlens: error: rank 1: ") and files[bad].name in ours[0], ours
    assert not (tmp_path / "model.pt.analysis.json").exists()


def _weights(run: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model.safetensors"))


@needs_torchrun
@pytest.mark.slow
def test_ddp_two_ranks_batch_b_equals_one_process_batch_2b(tmp_path: Path) -> None:
    """faces: 120 training images, per-rank batch 7 on 2 ranks (global 14, a short last batch of
    8) vs one process with batch 14, SGD: same weights to 1e-5, same logged metrics."""
    base = ["train", "--data", "faces", "--epochs", "2", "--optimizer", "sgd", "--lr", "0.01"]
    base += ["--no-snapshots", "-q"]
    one = _run([*base, "--batch-size", "14", "--out", "one"], nproc=None, cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = _run([*base, "--batch-size", "7", "--out", "two"], nproc=2, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    wa, wb = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=0, atol=1e-5, err_msg=k)
    rec = json.loads((tmp_path / "two" / "run.json").read_text())
    assert (rec["world_size"], rec["backend"]) == (2, "gloo")
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    for r1, r2 in zip(m1, m2, strict=True):
        assert r1["train_acc"] == r2["train_acc"] and r1["val_acc"] == r2["val_acc"]
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker of ``launcher`` (torchrun) whose ``RANK`` is ``rank``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@needs_torchrun
@pytest.mark.slow
def test_resume_after_sigkill_of_one_rank(tmp_path: Path) -> None:
    """Kill rank 1 with SIGKILL mid-run: the job fails; a 1-process resume is refused with one
    line; a 2-rank resume ends bit-identical to an uninterrupted 2-rank run."""
    import signal
    import time

    args = ["train", "--data", "faces", "--epochs", "12", "--batch-size", "8", "--no-snapshots"]
    args += ["--checkpoint-seconds", "0", "-q"]  # a checkpoint at every scheduled epoch
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "convlens", *args]
    job = subprocess.Popen(
        [*cmd, "--out", "killed"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and job.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    pid = _rank_pid(job.pid, 1)
    assert pid is not None and job.poll() is None, "the run ended before it could be killed"
    os.kill(pid, signal.SIGKILL)
    _, err = job.communicate(timeout=180)
    assert job.returncode != 0, err
    state = json.loads((tmp_path / "killed" / "run.json").read_text())
    assert state["status"] == "running" and state["world_size"] == 2

    refused = _run([*args, "--resume", "--out", "killed"], nproc=None, cwd=tmp_path)
    assert refused.returncode == 2
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "written by 2 rank(s)" in lines[0], refused.stderr

    resumed = _run([*args, "--resume", "--out", "killed"], nproc=2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole = _run([*args, "--out", "whole"], nproc=2, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    wa, wb = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


@needs_torchrun
@pytest.mark.slow
def test_analyze_run_on_two_ranks_equals_one_process(
    tiny_run: Path, tiny_run_analysis: Any, tmp_path: Path
) -> None:
    """``convlens analyze RUN`` under torchrun: the in-memory test split and OOD sets sharded
    (40 and 20 images), the result equal to the one-process analysis (channel statistics to 1e-9
    relative, everything else identical, the channel exemplars too: each rank's share of the
    exemplar pass merged on rank 0); the run directory untouched (--out elsewhere)."""
    out = tmp_path / "a.json"
    res = _run(
        ["analyze", str(tiny_run), "--null-size", "200", "--out", str(out)], nproc=2, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    a = json.loads(tiny_run_analysis.to_json())
    b = json.loads(out.read_text())
    a.pop("timings_s"), b.pop("timings_s")
    assert b["channels"] and all(ch["top"] for rec in b["channels"] for ch in rec["channels"])
    for where, u, v in _floats(a, b):
        # merged channel statistics (Chan) agree to 1e-9 relative; the mean max-softmax of the
        # predictions comes from the float32 head, whose last bits depend on the batch
        # composition (a shard is not the whole batch): float32 resolution, 1e-6 relative
        assert "channel_stats" in where or "mean_max_softmax" in where, where
        tol = 1e-6 if "mean_max_softmax" in where else 1e-9
        assert abs(u - v) <= tol * max(abs(u), abs(v)), (where, u, v)


# ----------------------------------------------------------------------------- streaming (1 process)
def test_stream_folder_matches_the_image_loader(tmp_path: Path) -> None:
    from convlens.data.images import load_image
    from convlens.parallel.stream import list_folder, open_folder

    data = _folder(tmp_path / "data", 12)
    files, labels, classes = list_folder(data)
    assert labels == [0 if "/a/" in f else 1 for f in files]
    assert classes == ["a", "b"] and files == sorted(files) and len(files) == 12
    ds = open_folder(data, seed=0)
    mean, std = ds.normalisation["mean"], ds.normalisation["std"]
    assert ds.stream.size == (8, 8) and len(ds.stream) == 12 and ds.shape == (1, 8, 8)
    for i in (1, 2):  # i % 5 != 0: already 8x8, so exactly the loader's pixels
        x = ds.stream[i].numpy()
        assert x.shape == (1, 8, 8) and x.dtype == np.float32
        np.testing.assert_allclose(x[0] * std + mean, load_image(files[i]).pixels, atol=1e-6)
    assert ds.stream[0].shape == (1, 8, 8)  # 11x11 resized
    with pytest.raises(ConvlensError, match="not a folder"):
        open_folder(tmp_path / "missing")


def test_stream_worker_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch import nn

    from convlens.analysis.model.shard import collect_sharded
    from convlens.parallel.stream import open_folder

    data = _folder(tmp_path / "data", 6)
    ds = open_folder(data, seed=0)
    bad = Path(ds.stream.files[3])
    bad.write_bytes(b"broken")
    monkeypatch.setenv("CONVLENS_DATA_WORKERS", "1")
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConvlensError) as info:
        collect_sharded(model, ds.stream, "s")
    assert "\n" not in str(info.value) and bad.name in str(info.value)
    assert str(info.value).endswith("is not an image file Pillow can read")


def test_rank_loss_shares_average_to_the_global_mean_gradient() -> None:
    """The DDP loss rule with an uneven split (5 images on 2 ranks: 3 + 2): the average of the
    ranks' gradients (what DDP all-reduces) is the mean gradient over the 5, in float64."""
    import torch
    from torch import nn

    from convlens.train.ddp import Step

    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 2, 1, 1, 0])
    perm = torch.tensor([3, 0, 4, 1, 2])
    grads = []
    for rank in (0, 1):
        step = Step(dist.Context(rank=rank, world_size=2))
        [(idx, m)] = list(step.batches(perm, 3))
        assert m == 5 and len(idx) == (3 if rank == 0 else 2)
        model.zero_grad()
        step.loss(model(x[idx]), y[idx], m).backward()
        grads.append([p.grad.clone() for p in model.parameters()])  # type: ignore[union-attr]
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    for p, g0, g1 in zip(model.parameters(), *grads, strict=True):
        torch.testing.assert_close((g0 + g1) / 2, p.grad, rtol=1e-12, atol=1e-14)
    single = Step(dist.Context())
    assert [len(i) for i, _ in single.batches(perm, 2)] == [2, 2, 1]
    with pytest.raises(ConvlensError, match="written by 2 rank\\(s\\)"):
        single.check_resume({"world_size": 2}, "run")
    single.check_resume({}, "run")  # checkpoints from before: 1 rank


def test_demo_is_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    from convlens.demo import run_demo

    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConvlensError, match="the demo runs in one process"):
        run_demo("unused")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as info:
        run_demo("unused")
    assert info.value.code == 2


@pytest.mark.slow
def test_merge_of_any_split_equals_one_pass() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
        st.lists(st.integers(0, 60), max_size=4),
    )
    def check(values: list[float], cuts: list[int]) -> None:
        x = np.asarray(values)[:, None]
        edges = sorted({0, len(x), *(min(c, len(x)) for c in cuts)})
        parts = []
        for lo, hi in itertools.pairwise(edges):
            p = RunningStats(1)
            p.update(x[lo:hi])
            parts.append(p)
        merged = combine_all(parts)
        assert merged.n == len(x)
        assert merged.min[0] == x.min() and merged.max[0] == x.max()
        np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-9, atol=1e-6)
        if len(x) > 1:
            np.testing.assert_allclose(merged.var, x.var(axis=0, ddof=1), rtol=1e-9, atol=1e-6)

    check()


def test_stream_normalisation_is_the_sample_pixels_mean_and_std(tmp_path: Path) -> None:
    from convlens.parallel.stream import list_folder, open_folder, read01

    data = _folder(tmp_path / "data", 12)
    files, _, _ = list_folder(data)
    ds = open_folder(data, seed=0)  # 12 files < NORM_SAMPLE: every image is in the sample
    raw = np.stack([read01(f, (8, 8)) for f in files])
    assert ds.normalisation["mean"] == pytest.approx(raw.mean(), rel=1e-12)
    assert ds.normalisation["std"] == pytest.approx(raw.std(), rel=1e-12)
    assert ds.x.dtype == np.float32 and len(ds.x) == 12


@pytest.mark.slow
def test_stream_of_one_huge_image_among_small_ones_stays_small(tmp_path: Path) -> None:
    """Reliability round 3: one 4000x4000 PNG first among 60 tiny ones made every image 4000x4000
    (about 8-15 GB). The stream size is now capped and the normalisation streamed: peak RSS of the
    whole `open_folder` in a fresh process stays under 1.5 GiB."""
    from PIL import Image

    root = tmp_path / "data" / "a"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    big = (rng.random((4000, 4000)) * 255).astype(np.uint8)
    Image.fromarray(big).save(root / "000.png")
    for i in range(1, 61):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(root / f"{i:03d}.png")
    # the child's own high-water mark (VmHWM of its address space): ru_maxrss would also carry
    # the pytest process's, which Linux copies into a child at exec after a vfork
    code = (
        "import re\n"
        "from convlens.parallel.stream import open_folder\n"
        f"ds = open_folder({str(tmp_path / 'data')!r}, seed=0)\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print(ds.stream.size, hwm)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    size, rss_kib = out.stdout.rsplit(maxsplit=1)[0], int(out.stdout.split()[-1])
    assert size == "(512, 512)"
    assert rss_kib < 1.5 * 1024 * 1024, f"peak RSS {rss_kib / 1024:.0f} MiB"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its workers in new sessions, so a
    process group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


@needs_torchrun
@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["convlens.parallel.launch", "torchrun"])
@pytest.mark.parametrize("lost", [0, 1])
def test_two_nodes_losing_either_one_leaves_one_line_on_the_survivor(
    tmp_path: Path, lost: int, launcher: str
) -> None:
    """Two launchers on one machine (static rendezvous, node 0 hosts the store): rank k runs on
    --node_rank k, rank 0 writes. Kill one node (its launcher and its worker) mid-training: the
    survivor's worker prints one convlens line naming its rank and exits 2. With
    ``python -m convlens.parallel.launch`` that line is the whole output and the exit status is 2;
    plain torchrun adds its own failure report and exits 1 (docs/scale-out.md)."""
    import signal
    import time

    port = str(_free_port())
    args = ["train", "--data", "faces", "--epochs", "100000", "--no-snapshots", "-q"]
    head = (
        [str(TORCHRUN)]
        if launcher == "torchrun"
        else [sys.executable, "-m", "convlens.parallel.launch"]
    )
    nodes = []
    for node in (0, 1):
        cmd = [*head, "--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1"]
        cmd += ["--master_addr", "127.0.0.1", "--master_port", port, "-m", "convlens", *args]
        nodes.append(
            subprocess.Popen(
                [*cmd, "--out", "run"],
                cwd=tmp_path,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and metrics.stat().st_size):
        time.sleep(0.1)
    assert metrics.is_file(), "training did not start"
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["world_size"] == 2
    assert _rank_pid(nodes[0].pid, 0) is not None  # rank 0, the writer, is on --node_rank 0
    for pid in _descendants(nodes[lost].pid):
        os.kill(pid, signal.SIGKILL)
    survivor = nodes[1 - lost]
    _, err = survivor.communicate(timeout=120)
    nodes[lost].communicate(timeout=60)
    ours = [ln for ln in err.splitlines() if ln.startswith("convlens: ")]
    assert len(ours) == 1, err
    assert ours[0].startswith(f"convlens: error: rank {1 - lost}: lost the other ranks"), err
    assert ("rank 0, which writes the results, may be among them" in ours[0]) == (lost == 0)
    if launcher == "torchrun":
        assert "failed (exitcode: 2)" in err and survivor.returncode == 1, err
    else:
        assert err.strip().splitlines() == ours and survivor.returncode == 2, err
