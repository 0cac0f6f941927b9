"""Snapshot cadence: the log-spaced default, --snapshot-every, --snapshot-epochs, resume."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from convlens.cli import cli
from convlens.data.datasets import load_bundled
from convlens.errors import ConvlensError
from convlens.pipelines import resume_config
from convlens.train import RunDir, TrainConfig, Trainer
from convlens.train.schedule import log_spaced, parse_epochs, snapshot_schedule


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
    assert sorted(int(p.stem.split("-")[1]) for p in (full / "probes").glob("epoch-*")) == [
        0,
        2,
        4,
        5,
    ]
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
    """With CHECKPOINT_SECONDS = 0 every epoch checkpoints; snapshots stay on the schedule."""
    import convlens.train.trainer as trainer_mod

    seen: list[int] = []
    real = RunDir.save_checkpoint

    def spy(self, state):
        seen.append(int(state["epoch"]))
        return real(self, state)

    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(RunDir, "save_checkpoint", spy)
    Trainer(_cfg(epochs=7), load_bundled("digits", 0), tmp_path / "r", progress=False).train()
    assert seen == list(range(8))
    assert _snapshot_epochs(tmp_path / "r") == [0, 1, 2, 3, 4, 6, 7]
    seen.clear()
    monkeypatch.setattr(trainer_mod, "CHECKPOINT_SECONDS", 1e9)
    Trainer(_cfg(epochs=7), load_bundled("digits", 0), tmp_path / "s", progress=False).train()
    assert seen == [0, 1, 2, 3, 4, 6, 7]
