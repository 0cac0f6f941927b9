"""Training runs (``convlens.train``): layout, reproducibility, resume after SIGKILL, bad input,
progress output, the recorded data path."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from convlens.analysis.measure.featuremaps import load_probes
from convlens.cli import cli
from convlens.data.datasets import load_bundled
from convlens.data.ood import make_ood
from convlens.errors import ConvlensError
from convlens.pipelines import train_run
from convlens.train import RunDir, TrainConfig, Trainer, TrainingError


def small_cfg(**kw):
    base = {"data": "faces", "epochs": 3, "seed": 0, "ood": ["motorcycle", "noise"], "ood_size": 8}
    base.update(kw)
    return TrainConfig(**base)


def run_small(out, **kw):
    cfg = small_cfg(**kw)
    return Trainer(cfg, load_bundled(cfg.data, cfg.seed), out, progress=False).train()


def test_run_directory_layout(tmp_path):
    res = run_small(tmp_path / "run")
    run = RunDir(tmp_path / "run")
    rec = run.read_run()
    assert rec["status"] == "complete"
    assert rec["dataset"]["splits"] == {"train": 120, "val": 40, "test": 40}
    assert rec["dataset"]["normalisation"]["rule"].startswith("x = (x01 - mean) / std")
    assert rec["model"]["kernels"] == [5, 3]
    assert rec["versions"]["torch"].startswith("2.")
    assert [o["name"] for o in rec["ood"]] == ["motorcycle", "noise"]
    assert len(run.read_metrics()) == 3
    # probe maps are derived from the snapshots when read, not written (analysis/measure/probemaps.py)
    assert not list((tmp_path / "run" / "probes").glob("epoch-*"))
    assert "derived on read" in rec["feature_maps"]
    x, maps = load_probes(tmp_path / "run" / "probes")
    assert sorted(maps) == [0, 1, 2, 3]
    for e in range(4):
        snap = load_file(str(run.snapshot(e)))
        assert snap["conv1.weight"].shape == (16, 1, 5, 5)
        probe = maps[e]
        assert probe["conv1"].shape[1:] == (16, 25, 25) and probe["conv2"].shape[1:] == (16, 12, 12)
    assert not torch.equal(
        load_file(str(run.snapshot(0)))["conv1.weight"],
        load_file(str(run.snapshot(3)))["conv1.weight"],
    )
    # the file keeps the training probes; the OOD probes are rebuilt from their recipes when read,
    # the same images make_ood gives the analysis
    inputs = load_file(str(run.probe_inputs))["x"]
    train_probes = [p for p in rec["probes"] if p["set"] == "train"]
    assert inputs.shape[0] == len(train_probes) and len(x) == len(rec["probes"])
    assert np.array_equal(x[: len(inputs)], inputs.numpy())
    assert {p["set"] for p in rec["probes"]} == {"train", "motorcycle", "noise"}
    ds = load_bundled("faces", 0)
    for name in ("motorcycle", "noise"):
        rows = [i for i, p in enumerate(rec["probes"]) if p["set"] == name]
        want = make_ood(name, ds, 8, 0).x[: len(rows)]
        assert np.array_equal(x[rows], want)
    model = load_file(str(run.model))
    assert torch.equal(model["conv1.weight"], load_file(str(run.snapshot(3)))["conv1.weight"])
    assert 0.0 <= res.test_accuracy <= 1.0
    assert not list(Path(tmp_path / "run").rglob("*.tmp"))


def _numbers(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_same_seed_same_metrics_and_weights(tmp_path):
    run_small(tmp_path / "a", seed=3)
    run_small(tmp_path / "b", seed=3)
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    assert _numbers(a.read_metrics()) == _numbers(b.read_metrics())
    assert a.model.read_bytes() == b.model.read_bytes()
    run_small(tmp_path / "c", seed=4)
    assert _numbers(RunDir(tmp_path / "c").read_metrics()) != _numbers(a.read_metrics())


def test_resume_in_process_is_bit_identical(tmp_path):
    run_small(tmp_path / "full", epochs=4)
    cfg = small_cfg(epochs=2)
    Trainer(cfg, load_bundled("faces", 0), tmp_path / "part", progress=False).train()
    cfg4 = small_cfg(epochs=4)
    Trainer(cfg4, load_bundled("faces", 0), tmp_path / "part", progress=False).resume()
    assert (tmp_path / "full" / "model.safetensors").read_bytes() == (
        tmp_path / "part" / "model.safetensors"
    ).read_bytes()
    assert _numbers(RunDir(tmp_path / "full").read_metrics()) == _numbers(
        RunDir(tmp_path / "part").read_metrics()
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "epochs", "kill_after"),
    [
        ("faces", 40, 5),  # early: between the first log-spaced checkpoints
        ("faces", 400, 300),  # late: three quarters through a long run
        ("digits", 12, 9),  # another dataset and model (digits-cnn, 3x3), late
    ],
)
def test_resume_after_sigkill_is_bit_identical(tmp_path, data, epochs, kill_after):
    """A real process killed with SIGKILL mid-run, then resumed, ends bit-identical."""
    args = [
        sys.executable,
        "-m",
        "convlens.cli",
        "train",
        "--data",
        data,
        "--epochs",
        str(epochs),
        "--seed",
        "1",
        "--checkpoint-seconds",
        "0",  # a checkpoint at every snapshot epoch, so a kill lands between two of them
        "-q",
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [*args, "--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    metrics = killed / "metrics.jsonl"
    while time.time() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen = len(metrics.read_text().splitlines())  # rows written before the kill
    done = len(RunDir(killed).read_metrics())  # rows kept: up to the last checkpoint
    assert seen >= kill_after and done < epochs, f"kill after {seen} rows; needs a mid-run kill"
    assert RunDir(killed).read_run()["status"] == "running"
    r = subprocess.run(
        [*args, "--out", str(killed), "--resume"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ref" / "model.safetensors").read_bytes() == (
        killed / "model.safetensors"
    ).read_bytes()
    assert _numbers(RunDir(tmp_path / "ref").read_metrics()) == _numbers(
        RunDir(killed).read_metrics()
    )
    # snapshots exist at the scheduled (log-spaced) epochs only; the same set in both runs
    names = sorted(p.name for p in (tmp_path / "ref" / "snapshots").glob("*.safetensors"))
    assert names == sorted(p.name for p in (killed / "snapshots").glob("*.safetensors"))
    assert len(names) == len(RunDir(killed).read_run()["snapshot_epochs"])
    for e in RunDir(killed).read_run()["snapshot_epochs"]:
        assert (
            RunDir(killed).snapshot(e).read_bytes()
            == RunDir(tmp_path / "ref").snapshot(e).read_bytes()
        )


def test_out_exists_and_is_not_a_run(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConvlensError, match="is not empty and is not a run") as exc_info:
        run_small(other)
    assert exc_info.value.hint_key == "folder_not_empty"
    run_small(tmp_path / "run")
    with pytest.raises(ConvlensError, match="already holds a previous run") as exc_info:
        run_small(tmp_path / "run")
    assert exc_info.value.hint_key == "run_exists"
    cfg = small_cfg()
    Trainer(cfg, load_bundled("faces", 0), other, progress=False).train(force=True)
    assert (other / "notes.txt").read_text() == "keep me"
    assert RunDir(other).is_run()


def test_non_finite_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    cfg = small_cfg(lr=1e30, optimizer="sgd", epochs=5)
    tr = Trainer(cfg, load_bundled("faces", 0), tmp_path / "boom", progress=False)
    with pytest.raises(TrainingError, match=r"loss became (nan|inf).*last good checkpoint"):
        tr.train()
    state = RunDir(tmp_path / "boom").load_checkpoint()
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConvlensError, match="CUDA is not available"):
        Trainer(small_cfg(device="cuda"), load_bundled("faces", 0), "unused", progress=False)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer from 1"),
        ({"lr": -1.0}, "learning rate"),
        ({"optimizer": "lbfgs"}, "optimizer must be"),
        ({"ood": ["unicorns"]}, "unknown OOD set"),
        ({"ood": ["faces"]}, "training set itself"),
        ({"model": "resnet"}, "unknown model"),
    ],
)
def test_bad_config(kw, message):
    with pytest.raises(ConvlensError, match=message):
        Trainer(small_cfg(**kw), load_bundled("faces", 0), "unused", progress=False)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(ConvlensError, match="no checkpoint"):
        Trainer(small_cfg(), load_bundled("faces", 0), tmp_path, progress=False).resume()


def test_digits_trains_with_its_default_model(tmp_path):
    res = run_small(tmp_path / "d", data="digits", epochs=2, ood=["faces"])
    rec = RunDir(tmp_path / "d").read_run()
    assert rec["model"]["name"] == "digits-cnn" and rec["dataset"]["shape"] == [1, 8, 8]
    assert res.test_accuracy > 0.8


def test_cli_train_and_errors(tmp_path):
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["train", "--epochs", "2", "--out", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 0, r.output
    assert "test acc" in r.output
    r = CliRunner().invoke(cli, ["train", "--epochs", "2", "--out", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(cli, ["train", "--data", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "expected faces, digits" in r.output
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", str(tmp_path / "none")])
    assert r.exit_code == 2 and "not a run directory" in r.output
    assert np.isfinite(
        json.loads((tmp_path / "r" / "run.json").read_text())["result"]["test_accuracy"]
    )


def test_detached_copy_of_an_optimizer_state_is_independent():
    import copy

    import torch

    from convlens.train.state import detached_copy as _detached_copy

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    got, want = _detached_copy(state), copy.deepcopy(state)
    assert got.keys() == want.keys() and got["param_groups"] == want["param_groups"]
    for k, v in want["state"].items():
        for name, t in v.items():
            assert torch.equal(got["state"][k][name], t)
    opt.step()  # the live optimizer moves on; the copy must not
    for k, v in want["state"].items():
        for name, t in v.items():
            assert torch.equal(got["state"][k][name], t)


# --- issue 12: never lose or clobber data ------------------------------------------------------


def test_seed_must_be_a_non_negative_32_bit_integer():
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(ConvlensError, match="seed must be an integer from 0 to 4294967295"):
            small_cfg(seed=bad).validate()
    small_cfg(seed=2**32 - 1).validate()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"epochs": "many"}, "epochs must be an integer"),
        ({"batch_size": 2.5}, "batch size must be an integer"),
        ({"lr": "fast"}, "learning rate must be a finite number"),
        ({"lr": float("inf")}, "learning rate must be a finite number"),
        ({"weight_decay": float("nan")}, "weight decay must be a finite number"),
        ({"ood": "noise"}, "ood must be a list"),
        ({"snapshots": "yes"}, "snapshots must be true or false"),
        ({"first_kernel": 0}, "first-layer kernel size"),
    ],
)
def test_config_from_a_hand_edited_run_json_is_checked(kw, message):
    with pytest.raises(ConvlensError, match=message):
        small_cfg(**kw).validate()


@pytest.mark.slow
def test_lock_is_exclusive_reentrant_and_leaves_nothing(tmp_path):
    run = RunDir(tmp_path / "a" / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom convlens.train.rundir import RunDir\n"
            f"with RunDir({str(run.root)!r}).lock():\n"
            "    print('ready', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert (run.root / ".lock").read_text().strip() == str(holder.pid)
        held = rf"in use by another convlens process \(pid {holder.pid}\)"
        with pytest.raises(ConvlensError, match=held), run.lock():
            pass
        with pytest.raises(ConvlensError, match="in use"):
            run.check_unlocked()
    finally:
        holder.communicate("")
    assert not (run.root / ".lock").exists()
    with run.lock(), run.lock():  # re-entrant in one process
        assert (run.root / ".lock").read_text().strip() == str(os.getpid())
        run.check_unlocked()
    assert not (tmp_path / "a").exists()  # created for the lock, removed again while empty


def test_stale_lock_file_does_not_block(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / ".lock").write_text("999999\n")  # left by a killed process: no flock held
    run.check_unlocked()
    with run.lock():
        pass
    assert not (run.root / ".lock").exists()


def test_force_removes_only_convlens_files(tmp_path):
    root = tmp_path / "run"
    for rel in (
        "run.json",
        "metrics.jsonl",
        "model.safetensors",
        "analysis.json",
        "report.html",
        "seeds.json",
        "demo.json",
        "snapshots/epoch-000.safetensors",
        "probes/inputs.safetensors",
        "probes/epoch-001.safetensors",
        "checkpoint/state.pt",
        "seeds/seed-1/run.json",
        "seeds/seed-1/checkpoint/state.pt",
        ".run.json.abcd1234.tmp",
        "snapshots/.epoch-002.safetensors.x_y9z0ab.tmp",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    foreign = ["notes.txt", "snapshots/mine.txt", "seeds/thesis.tex", "seeds/seed-1/keep.md"]
    for rel in foreign:
        (root / rel).write_text("keep")
    RunDir(root).remove_own()
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == sorted(foreign)


def test_umask_is_honoured(tmp_path):
    code = (
        "import os, sys\nfrom convlens._atomic import write_text\n"
        "write_text(sys.argv[1], 'x')\nprint(oct(os.stat(sys.argv[1]).st_mode & 0o777))"
    )
    for umask, mode in ((0o022, "0o644"), (0o077, "0o600"), (0o002, "0o664")):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / f"f{umask}")],
            preexec_fn=lambda u=umask: os.umask(u),
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == mode


def test_resume_cleans_orphaned_temporary_files(tiny_run_copy):
    from convlens.pipelines import train_run

    orphans = [
        tiny_run_copy / ".run.json.k2j4h5g6.tmp",
        tiny_run_copy / "snapshots" / ".epoch-004.safetensors.abcdefgh.tmp",
        tiny_run_copy / "checkpoint" / ".state.pt.a1b2c3d4.tmp",
    ]
    for p in orphans:
        p.write_bytes(b"half written")
    (tiny_run_copy / "notes.tmp").write_text("not ours")
    train_run(None, tiny_run_copy, resume=True, progress=False)
    assert not any(p.exists() for p in orphans)
    assert (tiny_run_copy / "notes.tmp").read_text() == "not ours"
    assert not (tiny_run_copy / ".lock").exists()


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    from convlens.pipelines import train_run

    out = tmp_path / "run"
    cfg = small_cfg(epochs=1, snapshots=False, probes=False)
    train_run(cfg, out, progress=False)
    # as if killed right after writing run.json: status running, no checkpoint, no metrics
    rec = RunDir(out).read_run()
    rec["status"] = "running"
    rec.pop("result")
    (out / "run.json").write_text(json.dumps(rec))
    for rel in ("checkpoint/state.pt", "model.safetensors", "metrics.jsonl"):
        (out / rel).unlink()
    (out / "notes.txt").write_text("mine")
    lines: list[str] = []
    again = train_run(None, out, resume=True, progress=False, log=lines.append)
    assert again.result.epochs == 1
    assert lines and "starting it again from epoch 0" in lines[0]
    assert RunDir(out).status() == "complete"
    assert (out / "notes.txt").read_text() == "mine"
    (out / "checkpoint" / "state.pt").unlink()  # a complete run without checkpoint: no restart
    with pytest.raises(ConvlensError, match="no checkpoint to resume from"):
        train_run(None, out, resume=True, progress=False)


def test_run_record_reading_failures_are_one_clear_error(tmp_path, monkeypatch):
    from convlens.runs import read as records_mod
    from convlens.train import rundir as rundir_mod

    run = tmp_path / "run"
    run.mkdir()
    rd = rundir_mod.RunDir(run)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConvlensError, match="nested too deeply"):
        rd.read_run()
    (run / "run.json").write_text('{"n": ' + "9" * 5000 + "}")
    with pytest.raises(ConvlensError, match="not a valid run record"):
        rd.read_run()
    (run / "run.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConvlensError, match="not UTF-8"):
        rd.read_run()
    (run / "run.json").write_text("{}")
    monkeypatch.setattr(records_mod, "MAX_RECORD_BYTES", 1)
    with pytest.raises(ConvlensError, match="over the limit of 1 bytes"):
        rd.read_run()
    monkeypatch.setattr(records_mod, "MAX_RECORD_BYTES", 2**20)
    # a whole row first (metrics rows are typed: a row missing a figure is an error of its own)
    row = json.dumps(
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}
        | {"seconds": 0.1}
    )
    (run / "metrics.jsonl").write_text(f"{row}\n[1]\n")
    with pytest.raises(ConvlensError, match="not a JSON object"):
        rd.read_metrics()
    (run / "metrics.jsonl").write_text(f'{row}\n{{"epoch"\n')
    with pytest.raises(ConvlensError, match="not valid JSON"):
        rd.read_metrics()
    (run / "metrics.jsonl").write_text(f'{row}\n{{"epoch": 2}}\n')
    with pytest.raises(ConvlensError, match=r"metrics.jsonl' line 2: train_loss: missing"):
        rd.read_metrics()


@pytest.mark.slow
def test_a_run_records_its_data_path_absolute(tmp_path, monkeypatch) -> None:
    """`train --data npz:d.npz` from one folder; analysing or resuming from another finds it.

    Regression: found testing the merged tree as an outsider (report targets)."""
    import json

    import numpy as np

    from convlens.data.loaders import absolute_data_spec

    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 1, 8, 8), dtype=np.uint8)
    np.savez(work / "d.npz", x=x, y=np.arange(60) % 2)
    monkeypatch.chdir(work)
    args = ["train", "--data", "npz:d.npz", "--epochs", "1", "--out", "r", "-q"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recorded = json.loads((work / "r" / "run.json").read_text())["config"]["data"]
    assert recorded == f"npz:{work / 'd.npz'}"
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["analyze", str(work / "r"), "--null-size", "100"])
    assert r.exit_code == 0, r.output
    # the same data given relatively on resume is not a contradiction
    monkeypatch.chdir(work)
    r = CliRunner().invoke(cli, ["train", "--resume", "--out", "r", "--data", "npz:d.npz", "-q"])
    assert r.exit_code == 0, r.output
    assert absolute_data_spec("faces") == "faces" and absolute_data_spec("npz:") == "npz:"


def test_piped_progress_is_plain_lines(tmp_path, capfd):
    """Issue 15 (progress output)."""
    cfg = TrainConfig(epochs=3, ood=["noise"], ood_size=4, snapshots=False, probes=False)
    train_run(cfg, tmp_path / "run", progress=True)
    err = capfd.readouterr().err
    assert "\r" not in err and "\x1b" not in err  # no bar redraws, no cursor codes
    lines = [line for line in err.splitlines() if line.startswith("train faces: epoch")]
    assert [line.split(",")[0] for line in lines] == [
        f"train faces: epoch {e}/3" for e in (1, 2, 3)
    ]
    assert len(err) < 2000


@pytest.mark.slow
def test_learning_rate_and_weight_decay_are_bounded_before_anything_is_written(tmp_path):
    """Regression: outside review of issues 11-12 (learning rate and weight decay bounds)."""
    for kw in ({"lr": 1e308}, {"weight_decay": 1e308}, {"lr": 0.0}):
        with pytest.raises(ConvlensError, match="must be in"):
            TrainConfig(**kw).validate()
    with pytest.raises(ConvlensError, match="learning rate x weight decay"):
        TrainConfig(lr=1e20, weight_decay=1e20).validate()
    r = subprocess.run(
        [sys.executable, "-m", "convlens.cli", "train", "--epochs", "1", "--out",
         str(tmp_path / "o"), "--weight-decay", "1e308"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and not (tmp_path / "o").exists()


def test_train_on_npz_signals_picks_the_1d_preset(tmp_path: Path) -> None:
    """``train --data npz:FILE`` with ``x`` (N, C, L) failed: the default 2-D ``small-cnn``
    cannot pool an input of height 1 ("input (1, 64) is too small for 1 pooling stages").

    Regression: integration QA of the merged branches (npz signals get the 1-D preset)."""
    import json

    import numpy as np

    from convlens.pipelines import train_run
    from convlens.train import TrainConfig

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 64)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=x, y=np.repeat([0, 1], 20))
    cfg = TrainConfig(data=f"npz:{tmp_path / 's.npz'}", epochs=1, ood=["noise"], ood_size=4)
    train_run(cfg, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["name"] == "signals-cnn"
