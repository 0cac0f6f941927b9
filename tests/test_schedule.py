"""Snapshot cadence: the log-spaced default, --snapshot-every, --snapshot-epochs, resume."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from convlens.analysis.measure.featuremaps import load_probes
from convlens.cli import cli
from convlens.data.datasets import load_bundled
from convlens.errors import ConvlensError
from convlens.models import build_model, make_spec
from convlens.pipelines import resume_config
from convlens.runs.schedule import log_spaced, parse_epochs, snapshot_schedule
from convlens.train import RunDir, TrainConfig, Trainer


def test_log_spaced_rule_matches_the_documented_sequence():
    assert log_spaced(200) == [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 200]
    assert log_spaced(30) == [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 30]
    assert log_spaced(1) == [0, 1]
    assert log_spaced(5) == [0, 1, 2, 3, 4, 5]
    # an independent statement of the rule
    for n in (1, 7, 40, 1000):
        want = {0, n} | {round(2 ** (k / 2)) for k in range(60) if round(2 ** (k / 2)) <= n}
        assert log_spaced(n) == sorted(want)


def test_every_and_list():
    assert snapshot_schedule(10, every=3) == [0, 3, 6, 9, 10]
    assert snapshot_schedule(10, every=1) == list(range(11))
    assert snapshot_schedule(10, every=50) == [0, 10]
    assert snapshot_schedule(10, listed=[]) == [0, 10]
    assert snapshot_schedule(10, listed=[7, 7, 3]) == [0, 3, 7, 10]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"every": 0}, "interval must be an integer >= 1"),
        ({"listed": [11]}, "from 0 to 10"),
        ({"listed": [-1]}, "from 0 to 10"),
        ({"every": 2, "listed": [1]}, "not both"),
    ],
)
def test_bad_schedule(kw, msg):
    with pytest.raises(ConvlensError, match=msg):
        snapshot_schedule(10, **kw)


@pytest.mark.parametrize("text", ["", "1,,2", "a", "1.5", "-1", "²", "1234567890"])
def test_parse_epochs_refuses(text):
    with pytest.raises(ConvlensError, match="comma-separated list"):
        parse_epochs(text)


def _cfg(**kw):
    base = {"data": "digits", "epochs": 5, "ood": ["noise"], "ood_size": 4, "probes_per_set": 2}
    base.update(kw)
    return TrainConfig(**base)


def _snapshot_epochs(run):
    return sorted(int(p.stem.split("-")[1]) for p in (run / "snapshots").glob("*.safetensors"))


@pytest.mark.slow
def test_every_writes_only_those_epochs_and_resume_is_bit_identical(tmp_path):
    ds = load_bundled("digits", 0)
    Trainer(_cfg(snapshot_every=2), ds, tmp_path / "full", progress=False).train()
    full = tmp_path / "full"
    assert _snapshot_epochs(full) == [0, 2, 4, 5]
    assert sorted(load_probes(full / "probes")[1]) == [0, 2, 4, 5]  # derived from the snapshots
    rec = RunDir(full).read_run()
    assert rec["config"]["snapshot_every"] == 2 and rec["snapshot_epochs"] == [0, 2, 4, 5]
    assert len(RunDir(full).read_metrics()) == 5
    # a 3-epoch run checkpoints at its last epoch (3), then is extended to 5
    Trainer(_cfg(snapshot_every=2, epochs=3), ds, tmp_path / "part", progress=False).train()
    assert RunDir(tmp_path / "part").load_checkpoint()["epoch"] == 3
    cfg = resume_config(tmp_path / "part", 5)
    Trainer(cfg, ds, tmp_path / "part", progress=False).resume()
    assert (full / "model.safetensors").read_bytes() == (
        tmp_path / "part" / "model.safetensors"
    ).read_bytes()
    for e in (0, 2, 4, 5):
        assert (
            RunDir(full).snapshot(e).read_bytes()
            == RunDir(tmp_path / "part").snapshot(e).read_bytes()
        )


@pytest.mark.slow
def test_resume_from_a_scheduled_checkpoint_mid_run(tmp_path):
    """Kill simulated by truncating to the epoch-4 checkpoint state: the run resumes from there."""
    ds = load_bundled("digits", 0)
    Trainer(_cfg(epochs=7), ds, tmp_path / "ref", progress=False).train()
    assert _snapshot_epochs(tmp_path / "ref") == [0, 1, 2, 3, 4, 6, 7]
    # the same run stopped after its epoch-4 checkpoint (a 4-epoch run has the same epochs 0..4)
    Trainer(_cfg(epochs=4), ds, tmp_path / "cut", progress=False).train()
    Trainer(resume_config(tmp_path / "cut", 7), ds, tmp_path / "cut", progress=False).resume()
    assert (tmp_path / "ref" / "model.safetensors").read_bytes() == (
        tmp_path / "cut" / "model.safetensors"
    ).read_bytes()
    assert _snapshot_epochs(tmp_path / "cut") == [0, 1, 2, 3, 4, 6, 7]


def test_cli_snapshot_epochs_recorded(tmp_path):
    out = tmp_path / "r"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            "digits",
            "--epochs",
            "3",
            "--snapshot-epochs",
            "2",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "run.json").read_text())
    assert rec["config"]["snapshot_epochs"] == [2] and rec["snapshot_epochs"] == [0, 2, 3]
    assert _snapshot_epochs(out) == [0, 2, 3]
    bad = CliRunner().invoke(
        cli, ["train", "--epochs", "3", "--snapshot-epochs", "9", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2 and "from 0 to 3" in bad.output
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_time_rule_checkpoints_between_snapshots(tmp_path, monkeypatch):
    """The checkpoint rule: the last epoch; a scheduled epoch checkpoint_seconds after the last
    checkpoint (0: every scheduled epoch, epoch 0 too); any epoch CHECKPOINT_SECONDS after it.
    Snapshots stay on the schedule whatever the checkpoints do."""
    import convlens.train.trainer as trainer_mod

    seen: list[int] = []
    real = RunDir.save_checkpoint

    def spy(self, state):
        seen.append(int(state["epoch"]))
        return real(self, state)

    def train(name, **kw):
        seen.clear()
        ds = load_bundled("digits", 0)
        Trainer(_cfg(epochs=7), ds, tmp_path / name, progress=False, **kw).train()
        assert _snapshot_epochs(tmp_path / name) == [0, 1, 2, 3, 4, 6, 7]
        return list(seen)

    monkeypatch.setattr(RunDir, "save_checkpoint", spy)
    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)
    assert train("every-epoch", checkpoint_seconds=1e6) == list(range(1, 8))
    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 1e9)
    assert train("scheduled", checkpoint_seconds=0) == [0, 1, 2, 3, 4, 6, 7]
    # the default spacing (1 s) on epochs far shorter: the last epoch alone
    assert trainer_mod.CHECKPOINT_MIN_SECONDS == 1.0
    assert train("spaced", checkpoint_seconds=1e6) == [7]
    # the metrics go with each checkpoint
    assert len(RunDir(tmp_path / "spaced").read_metrics()) == 7


@pytest.mark.slow
def test_failure_before_the_first_checkpoint_writes_the_initial_state(tmp_path):
    """Epoch 0's checkpoint is deferred to the first one due; a run that fails before that
    writes it then, so the error's "last good checkpoint (epoch 0)" exists."""
    from convlens.train import TrainingError

    cfg = _cfg(epochs=5, lr=1e30, optimizer="sgd")
    with pytest.raises(TrainingError, match=r"checkpoint \(epoch 0\)"):
        Trainer(cfg, load_bundled("digits", 0), tmp_path / "r", progress=False).train()
    state = RunDir(tmp_path / "r").load_checkpoint()
    assert state["epoch"] == 0
    torch.manual_seed(0)
    fresh = build_model(make_spec("digits-cnn", 1, (8, 8), 10)).state_dict()
    assert all(torch.equal(state["model"][k], fresh[k]) for k in fresh)
    assert _snapshot_epochs(tmp_path / "r") == [0]


def test_checkpoint_seconds_is_checked():
    with pytest.raises(ConvlensError, match="checkpoint interval must be a number of seconds"):
        Trainer(_cfg(), load_bundled("digits", 0), "unused", progress=False, checkpoint_seconds=-1)
