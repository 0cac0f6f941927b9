"""The torch-free run-directory package (:mod:`convlens.runs`): its import rule, the layout, the
typed records and their reading, the readers' error mapping, and the one command-line mapping of
:class:`RunConfig` (a Hypothesis round trip through the real click ``train`` command)."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save_file

import convlens
from convlens.cli import cli
from convlens.errors import ConvlensError
from convlens.runs import layout, read
from convlens.runs.layout import RunLayout
from convlens.runs.records import (
    DEVICES,
    MAX_SEED,
    OPTIMIZERS,
    MetricsRow,
    ModelSpec,
    RunConfig,
    RunRecord,
    TrainOutcome,
)

RUNS = Path(convlens.__file__).parent / "runs"


# ----------------------------------------------------------------------------- the import rule
def test_runs_imports_only_leaf_helpers_numpy_and_safetensors():
    """``convlens.runs`` imports convlens.errors/_atomic/_serde, itself, the standard library,
    numpy and safetensors.numpy: never torch, train, analysis, report, models or data."""
    allowed_convlens = {"convlens.errors", "convlens._atomic", "convlens._serde"}
    bad = []
    for f in sorted(RUNS.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                ok = (
                    name in allowed_convlens
                    or name.startswith("convlens.runs")
                    or top in sys.stdlib_module_names
                    or top == "numpy"
                    or name in ("safetensors", "safetensors.numpy")
                )
                if not ok:
                    bad.append(f"{f.name} imports {name}")
    assert not bad, bad


def test_reading_a_run_loads_no_torch(tiny_run: Path):
    code = (
        "import sys\n"
        "from convlens.runs import read\n"
        f"root = {str(tiny_run)!r}\n"
        "rec = read.run_record(root)\n"
        "assert read.metrics(root) and read.snapshots(root) and read.model_weights(root)\n"
        "assert read.probe_inputs(root) is not None\n"
        "print(rec.config.command('x'))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("convlens train --data faces ")


# ----------------------------------------------------------------------------- the layout
def test_layout_names_every_path():
    run = RunLayout("R")
    got = {
        "run_json": run.run_json,
        "metrics": run.metrics,
        "model": run.model,
        "checkpoint": run.checkpoint,
        "snapshot": run.snapshot(7),
        "probe": run.probe(1234),
        "probe_inputs": run.probe_inputs,
        "analysis": run.analysis,
        "report": run.report,
        "seeds_json": run.seeds_json,
        "seed_run": run.seed_run(11),
        "random_labels_run": run.random_labels_run(11),
        "demo": run.demo,
        "lock": run.lock_file,
    }
    assert {k: str(v) for k, v in got.items()} == {
        "run_json": "R/run.json",
        "metrics": "R/metrics.jsonl",
        "model": "R/model.safetensors",
        "checkpoint": "R/checkpoint/state.pt",
        "snapshot": "R/snapshots/epoch-007.safetensors",
        "probe": "R/probes/epoch-1234.safetensors",
        "probe_inputs": "R/probes/inputs.safetensors",
        "analysis": "R/analysis.json",
        "report": "R/report.html",
        "seeds_json": "R/seeds.json",
        "seed_run": "R/seeds/seed-11",
        "random_labels_run": "R/seeds/random-labels-seed-11",
        "demo": "R/demo.json",
        "lock": "R/.lock",
    }
    # every name convlens writes is one --force may remove, and the demo's seed runs match
    assert {p.name for p in (run.run_json, run.metrics, run.model, run.analysis)} <= set(
        layout.OWN_FILES
    )
    assert layout.OWN_FOLDERS["snapshots"].match(run.snapshot(7).name)
    assert layout.OWN_FOLDERS["probes"].match(run.probe_inputs.name)
    assert layout.SEED_RUN.match(run.random_labels_run(3).name)


def test_epoch_files_are_ordered_by_epoch_and_other_names_refused(tmp_path: Path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    for e in (1000, 2, 30):
        (folder / layout.epoch_name(e)).write_bytes(b"")
    (folder / "notes.txt").write_text("not a snapshot")
    assert list(RunLayout(tmp_path).snapshot_files()) == [2, 30, 1000]
    assert RunLayout(tmp_path / "none").snapshot_files() == {}
    (folder / "epoch-x.safetensors").write_bytes(b"")
    with pytest.raises(ConvlensError, match=r"expected a file named epoch-NNN\.safetensors"):
        RunLayout(tmp_path).snapshot_files()


# ----------------------------------------------------------------------------- records
def test_the_run_record_of_a_real_run_is_typed(tiny_run: Path):
    rec = read.run_record(tiny_run)
    assert rec.config == RunConfig(epochs=3, ood=["motorcycle", "noise"], ood_size=20)
    assert isinstance(rec.model, ModelSpec) and rec.model.name == "faces-cnn"
    assert rec.dataset.name == "faces" and rec.dataset.splits["test"] == 40
    assert [o.name for o in rec.ood] == ["motorcycle", "noise"]
    assert rec.result is not None and rec.result.epochs_completed == 3
    assert {p.set for p in rec.probes} == {"train", "motorcycle", "noise"}
    assert rec.world_size == 1 and rec.status == "complete"
    # written back it is the same file content (the writer builds it from the same record)
    assert rec.to_dict() == read.run_json(tiny_run)
    rows = read.metrics(tiny_run)
    assert [r.epoch for r in rows] == [1, 2, 3] and isinstance(rows[0], MetricsRow)


def _record(**changes: Any) -> dict[str, Any]:
    spec = ModelSpec("faces-cnn", 1, (25, 25), 2)
    rec = {
        "config": RunConfig().to_dict(),
        "dataset": {
            "name": "faces",
            "source": "s",
            "shape": [1, 25, 25],
            "n": 10,
            "classes": ["a", "b"],
            "class_counts": {"a": 5, "b": 5},
            "splits": {"train": 6, "val": 2, "test": 2},
            "normalisation": {"mean": 0.5, "std": 0.2},
        },
        "model": spec.to_dict(),
    }
    rec.update(changes)
    return rec


def test_an_old_or_minimal_record_takes_the_defaults():
    """Fields a record does not hold take their defaults (older runs: no world_size, no
    first_kernel in the config, no dataset extra); unknown top-level fields are ignored."""
    data = _record(someday="a field of a newer convlens")
    del data["config"]["first_kernel"]
    rec = RunRecord.from_dict(data)
    assert rec.world_size == 1 and rec.backend == "none" and rec.result is None
    assert rec.config.first_kernel is None and rec.dataset.extra == {}
    assert RunRecord.from_dict(_record(world_size=2)).world_size == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": "nope"}, "config is not a JSON object"),
        ({"config": {"colour": 1}}, "config has unknown field 'colour'"),
        ({"config": {"epochs": "many"}}, "config: epochs must be an integer"),
        ({"config": {"ood": ["a,b"]}}, "ood must be a list of set names"),
        ({"model": {"name": "x"}}, "model.in_channels: missing"),
        ({"model": {**_record()["model"], "depth": 3}}, "model: unexpected field 'depth'"),
        ({"dataset": [1]}, "dataset: expected a JSON object, got list"),
        ({"probes": [{"set": "train", "index": "0"}]}, r"probes\[0\].index: expected integer"),
        ({"result": {"test_accuracy": "high"}}, "result.test_accuracy: expected number"),
        ({"world_size": 1.5}, "world_size: expected integer"),
        ({"format": "convlens-run/9"}, "has format 'convlens-run/9'"),
    ],
)
def test_a_bad_record_is_one_error_naming_the_file_and_field(changes, message):
    with pytest.raises(ConvlensError, match=message) as err:
        RunRecord.from_dict(_record(**changes), "'R/run.json'")
    assert str(err.value).startswith("'R/run.json'") and "\n" not in str(err.value)


def test_run_config_is_the_train_config():
    """One definition of the fields: the trainer's TrainConfig is RunConfig."""
    from convlens.train import TrainConfig

    assert TrainConfig is RunConfig


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"snapshot_epochs": []}, "non-empty list"),
        ({"ood": ["none"]}, "ood must be a list of set names"),
        ({"ood": ["two words"]}, "ood must be a list of set names"),
        ({"device": "tpu"}, "device must be"),
        ({"snapshot_every": 2, "snapshot_epochs": [1]}, "not both"),
        ({"snapshots": False, "snapshot_every": 1}, "--snapshot-every sets when"),
        ({"snapshots": False, "snapshot_epochs": [1]}, "--snapshot-epochs sets when"),
    ],
)
def test_configs_the_command_line_cannot_express_are_refused(kw, message):
    with pytest.raises(ConvlensError, match=message):
        RunConfig(**kw).validate()


# ----------------------------------------------------------------------------- readers
def test_metrics_errors_name_the_file_and_line(tmp_path: Path):
    assert read.metrics(tmp_path) == []
    good = json.dumps(asdict(MetricsRow(1, 0.5, 0.5, 0.5, 0.5, 0.1)))
    (tmp_path / "metrics.jsonl").write_text(f"{good}\n\n{good.replace('1', '2', 1)}\n")
    assert [r.epoch for r in read.metrics(tmp_path)] == [1, 2]
    (tmp_path / "metrics.jsonl").write_text(f'{good}\n{{"epoch": 2, "train_loss": "x"}}\n')
    with pytest.raises(ConvlensError, match=r"metrics.jsonl' line 2: train_loss: expected number"):
        read.metrics(tmp_path)


def test_a_corrupt_tensor_file_is_one_error_naming_it(tmp_path: Path):
    run = RunLayout(tmp_path)
    run.model.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ConvlensError, match=r"model.safetensors' is not a valid safetensors"):
        read.model_weights(run)
    run.model.unlink()
    with pytest.raises(ConvlensError, match="partial run") as err:
        read.model_weights(run)
    assert err.value.hint_key == "partial_run"


def test_probe_inputs_and_maps_are_checked(tmp_path: Path):
    run = RunLayout(tmp_path)
    assert read.probe_inputs(run) is None and read.probe_maps(run, None) == {}
    run.probes_dir.mkdir()
    save_file({"y": np.zeros((2, 1, 4, 4), np.float32)}, str(run.probe_inputs))
    with pytest.raises(ConvlensError, match="expected a tensor 'x' shaped"):
        read.probe_inputs(run)
    save_file({"conv1": np.zeros((2, 3, 4, 4), np.float32)}, str(run.probe(0)))
    save_file({"conv2": np.zeros((2, 3, 4, 4), np.float32)}, str(run.probe(1)))
    with pytest.raises(ConvlensError, match="holds layers"):
        read.probe_maps(run, 2)


def test_status_is_none_without_a_readable_record(tmp_path: Path):
    assert read.status(tmp_path) is None
    (tmp_path / "run.json").write_text("{not json")
    assert read.status(tmp_path) is None
    (tmp_path / "run.json").write_text('{"status": "running"}')
    assert read.status(tmp_path) == "running"


# ----------------------------------------------------------------------------- the command line
_NAME = st.from_regex(r"[A-Za-z0-9_.+-]{1,12}", fullmatch=True).filter(lambda s: s != "none")
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24
)


@st.composite
def run_configs(draw: st.DrawFn) -> RunConfig:
    """Any valid config: every field drawn over its whole range (texts with spaces, quotes and
    leading dashes; lists; None for the defaults; every cadence)."""
    epochs = draw(st.integers(1, 1_000_000))
    snapshots = draw(st.booleans())
    # a cadence only with snapshots on (--no-snapshots with a cadence is refused)
    cadence = draw(st.sampled_from(["log", "every", "listed"])) if snapshots else "log"
    lr = draw(st.floats(1e-12, 1e6) | st.integers(1, 1000))
    cfg = RunConfig(
        data=draw(_TEXT),
        model=draw(st.none() | _TEXT),
        epochs=epochs,
        batch_size=draw(st.integers(1, 2**31 - 1)),
        lr=lr,
        weight_decay=draw(st.floats(0, 1e6) | st.just(0.0)),
        optimizer=draw(st.sampled_from(OPTIMIZERS)),
        seed=draw(st.integers(0, MAX_SEED)),
        device=draw(st.sampled_from(DEVICES)),
        ood=draw(st.none() | st.lists(_NAME, max_size=4)),
        ood_size=draw(st.integers(1, 1_000_000)),
        probes_per_set=draw(st.integers(1, 100_000)),
        snapshots=snapshots,
        probes=draw(st.booleans()),
        first_kernel=draw(st.none() | st.integers(1, 1000)),
        shuffle_labels=draw(st.booleans()),
        snapshot_every=draw(st.integers(1, 2_000_000)) if cadence == "every" else None,
        snapshot_epochs=(
            draw(st.lists(st.integers(0, epochs), min_size=1, max_size=5))
            if cadence == "listed"
            else None
        ),
    )
    cfg.validate()
    return cfg


def _parsed_by_the_cli(line: str) -> tuple[RunConfig, str]:
    """What the real ``convlens train`` command makes of ``line``: the config and the run
    directory it would train (``train_run`` replaced by a recorder)."""
    seen: dict[str, Any] = {}

    def record(cfg: RunConfig, out: str, **_kw: Any) -> Any:
        seen.update(cfg=cfg, out=out)
        return SimpleNamespace(summary=lambda: ["recorded"])

    argv = shlex.split(line)
    if argv[0] == "torchrun":
        assert argv[:5] == ["torchrun", "--nproc_per_node", argv[2], "-m", "convlens"]
        argv = argv[4:]
    assert argv[:2] == ["convlens", "train"]
    with pytest.MonkeyPatch.context() as m:
        m.setattr("convlens.pipelines.train_run", record)
        r = CliRunner().invoke(cli, argv[1:], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return seen["cfg"], seen["out"]


@given(cfg=run_configs(), out=_TEXT.filter(bool), world_size=st.integers(1, 8))
def test_every_field_round_trips_through_the_command_line(cfg, out, world_size):
    """``RunConfig.command`` -> shell line -> the real click ``train`` command -> the same
    config (every field), into the same directory."""
    got, where = _parsed_by_the_cli(cfg.command(out, world_size=world_size))
    assert got == cfg and where == out
    for f in fields(RunConfig):  # the same values, field by field (and so the same types)
        assert getattr(got, f.name) == getattr(cfg, f.name), f.name


def test_the_drifted_lines_are_fixed():
    """The copies of the mapping had drifted: an unquoted path with spaces, ``--first-kernel``,
    ``--ood`` and ``--ood-size`` dropped (a bench-recipe run rebuilt another network)."""
    cfg = RunConfig(data="npz:/my data/x.npz", first_kernel=7, ood=["noise"], ood_size=8)
    line = cfg.command("out dir")
    argv = shlex.split(line)
    assert argv[argv.index("--data") + 1] == "npz:/my data/x.npz"
    assert argv[argv.index("--out") + 1] == "out dir"
    for flag, value in (("--first-kernel", "7"), ("--ood", "noise"), ("--ood-size", "8")):
        assert argv[argv.index(flag) + 1] == value
    assert "None" not in line
    assert replace(cfg, ood=[]).to_cli_args()[-12:].count("none") == 1  # --ood none: no sets
    assert "--no-snapshots" in replace(cfg, snapshots=False, probes=False).to_cli_args()
    both = replace(cfg, snapshots=False, probes=True).to_cli_args()
    assert both[-2:] == ["--no-snapshots", "--probes"]


def test_resume_refuses_another_device(tiny_run_copy: Path):
    """``--resume --device X`` was neither checked nor refused: it must agree with the recorded
    config (``auto`` agrees with the device the run trained on)."""
    from convlens.train.resume_options import check_resume_options

    trained_on = read.run_record(tiny_run_copy).device
    assert trained_on == "cpu"
    check_resume_options(tiny_run_copy, RunConfig(device="cpu"), ["device"])  # auto -> cpu
    check_resume_options(tiny_run_copy, RunConfig(device="auto"), ["device"])
    with pytest.raises(
        ConvlensError, match=r"--device 'cuda' contradicts .* \(it trained on cpu\)"
    ):
        check_resume_options(tiny_run_copy, RunConfig(device="cuda"), ["device"])
    # the other new options are checked the same way
    for wrong, flag in (
        (RunConfig(first_kernel=3), "--first-kernel 3"),
        (RunConfig(ood=["cat"]), "--ood cat"),
        (RunConfig(ood_size=5), "--ood-size 5"),
        (RunConfig(probes_per_set=2), "--probes-per-set 2"),
        (RunConfig(probes=False), "--no-probes"),
    ):
        name = next(
            n
            for n in ("first_kernel", "ood", "ood_size", "probes_per_set", "probes")
            if getattr(wrong, n) != getattr(RunConfig(), n)
        )
        with pytest.raises(ConvlensError, match=f"{flag} contradicts"):
            check_resume_options(tiny_run_copy, wrong, [name])
    # --epochs extends, never contradicts
    check_resume_options(tiny_run_copy, RunConfig(epochs=99), ["epochs"])


def test_cli_resume_with_another_device_exits_2(tiny_run_copy: Path):
    r = CliRunner().invoke(
        cli, ["train", "--resume", "--out", str(tiny_run_copy), "--device", "cuda"]
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "error: --device 'cuda' contradicts the resumed run" in r.output


def test_outcome_and_config_are_the_analysis_run_info_types():
    """The typed result's RunInfo holds the run's own records, not free-form objects."""
    from convlens.analysis.result import RunInfo

    hints = {f.name: f.type for f in fields(RunInfo)}
    assert hints["config"] == "RunConfig" and hints["model"] == "ModelSpec"
    assert hints["dataset"] == "DatasetSpec" and hints["result"] == "TrainOutcome | None"
    assert TrainOutcome().test_accuracy is None


def test_an_analysis_of_the_untyped_run_info_is_refused_in_one_line(tiny_run_analysis):
    """Schema 4 typed ``run`` (5 is current); an ``analysis.json`` of schema 3 (free-form run info) is refused by
    the version check, one line, before any field is read."""
    from convlens.analysis.result import SCHEMA_VERSION, AnalysisResult

    assert SCHEMA_VERSION >= 4
    doc = json.loads(tiny_run_analysis.to_json())
    assert doc["run"]["config"] == tiny_run_analysis.run.config.to_dict()
    doc["schema_version"] = 3
    doc["run"]["config"] = {"lr": None}
    with pytest.raises(
        ConvlensError, match=f"schema_version 3; this version of convlens reads {SCHEMA_VERSION}"
    ):
        AnalysisResult.from_dict(doc)


def test_control_train_command_keeps_the_snapshot_cadence() -> None:
    """The control's recorded ``convlens train`` line dropped ``--snapshot-every`` and
    ``--snapshot-epochs`` (issue 17's options); it must parse with the real CLI.

    Regression: integration QA of the merged branches (the control's train line keeps the cadence)."""
    import shlex

    from convlens.cli import cli
    from convlens.runs.records import RunConfig

    base = {"data": "faces", "epochs": 5, "seed": 1, "shuffle_labels": True, "snapshots": True}
    every = RunConfig(**base, snapshot_every=2).command("c")
    listed = RunConfig(**base, snapshot_epochs=[0, 3]).command("c")
    assert "--snapshot-every 2" in every and "--snapshot-epochs 0,3" in listed
    train = cli.commands["train"]  # type: ignore[attr-defined]
    for line in (every, listed):
        ctx = train.make_context("train", shlex.split(line)[2:])  # parses, runs nothing
        assert ctx.params["snapshot_every"] in (2, None) and ctx.params["shuffle_labels"]


def test_control_train_command_of_a_torchrun_run_uses_torchrun() -> None:
    """A control trained by 2 ranks (``--batch-size`` per rank) was described by a 1-process
    ``convlens train`` line with the per-rank batch: another global batch, other weights.

    Regression: integration QA of the merged branches (the control's train line of a torchrun run)."""
    from convlens.runs.records import RunConfig

    cfg = RunConfig(data="faces", epochs=2, batch_size=16, shuffle_labels=True)
    two = cfg.command("c", world_size=2)
    assert two.startswith("torchrun --nproc_per_node 2 -m convlens train ")
    assert "--batch-size 16" in two
    assert cfg.command("c").startswith("convlens train ")
    assert cfg.command("c", world_size=1) == cfg.command("c")


def test_resume_refuses_options_that_contradict_the_recorded_run(tmp_path: Path) -> None:
    """``train --resume`` ignored ``--shuffle-labels``, ``--snapshot-every``, ``--data`` ... given
    on the command line (it continues with the recorded config): now exit 2 naming the option;
    the same values as recorded, ``--epochs`` and ``--device`` still pass.

    Regression: integration QA of the merged branches (resume options that contradict the run)."""
    from click.testing import CliRunner

    from convlens.cli import cli

    out = str(tmp_path / "run")
    base = ["train", "--data", "faces", "--epochs", "1", "-q", "--out", out]
    assert CliRunner().invoke(cli, [*base, "--snapshot-every", "2"]).exit_code == 0
    for extra, flag in (
        (["--shuffle-labels"], "--shuffle-labels"),
        (["--snapshot-every", "3"], "--snapshot-every 3"),
        (["--data", "digits"], "--data 'digits'"),
        (["--no-snapshots"], "--no-snapshots"),
        (["--seed", "5"], "--seed 5"),
    ):
        r = CliRunner().invoke(cli, ["train", "--resume", "--out", out, *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert r.output.count("\n") == 1 and f"error: {flag} contradicts" in r.output
    same = ["--data", "faces", "--snapshot-every", "2", "--epochs", "2", "--device", "cpu"]
    r = CliRunner().invoke(cli, ["train", "--resume", "-q", "--out", out, *same])
    assert r.exit_code == 0, r.output
