"""Training runs: layout, reproducibility, resume after SIGKILL, bad input."""

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
from safetensors.torch import load_file

from convlens.data.datasets import load_bundled
from convlens.errors import ConvlensError
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
    for e in range(4):
        snap = load_file(str(run.snapshot(e)))
        assert snap["conv1.weight"].shape == (8, 1, 5, 5)
        probe = load_file(str(run.probe(e)))
        assert probe["conv1"].shape[1:] == (8, 25, 25) and probe["conv2"].shape[1:] == (16, 12, 12)
    assert not torch.equal(
        load_file(str(run.snapshot(0)))["conv1.weight"],
        load_file(str(run.snapshot(3)))["conv1.weight"],
    )
    inputs = load_file(str(run.probe_inputs))["x"]
    assert inputs.shape[0] == len(rec["probes"])
    assert {p["set"] for p in rec["probes"]} == {"train", "motorcycle", "noise"}
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
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """A real process killed with SIGKILL mid-run, then resumed, ends bit-identical."""
    args = [
        sys.executable,
        "-m",
        "convlens.cli",
        "train",
        "--data",
        "faces",
        "--epochs",
        "40",
        "--seed",
        "1",
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
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(RunDir(killed).read_metrics())
    assert 5 <= done < 40, f"kill landed after {done} epochs; the test needs a mid-run kill"
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
    for e in range(41):
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
        ({"epochs": 0}, "epochs must be >= 1"),
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

    from convlens.train.trainer import _detached_copy

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
