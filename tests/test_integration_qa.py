"""Integration checks across features merged from separate branches (signals, controls,
null size, ...): each test pins a bug found by running the merged product end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from convlens.errors import ConvlensError


@pytest.fixture(scope="module")
def signal_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch signals run and its random-label control (1-D first layer)."""
    from convlens.data.datasets import load_bundled
    from convlens.train import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("signals")
    common = {"data": "signals", "epochs": 2, "ood": ["noise"], "ood_size": 8}
    for name, shuffle in (("run", False), ("ctrl", True)):
        cfg = TrainConfig(**common, shuffle_labels=shuffle)  # type: ignore[arg-type]
        Trainer(cfg, load_bundled("signals", 0), root / name, progress=False).train()
    return root


def test_1d_matching_uses_the_requested_null_size(signal_runs: Path) -> None:
    """``analyze --null-size`` reached the 2-D matching only; 1-D layers used 2000 kernels."""
    from convlens.analysis import analyze_run

    a = analyze_run(signal_runs / "run", n_null=200)
    for layer in a.layers:
        m = layer.matching
        assert m is not None and m.null is not None and m.spectrum_null is not None
        assert (m.null.n, m.spectrum_null.n) == (200, 200), layer.name
        assert m.null.source.startswith("200 ")


def test_control_run_on_a_1d_run_is_checked_and_its_omission_said(signal_runs: Path) -> None:
    """``--control-run`` on a run whose first layer has no per-unit matching (1-D) was ignored
    silently, even when the path was not a run at all."""
    from convlens.analysis import analyze_run

    with pytest.raises(ConvlensError, match="not a run directory"):
        analyze_run(signal_runs / "run", n_null=100, control_runs=[signal_runs / "nope"])
    with pytest.raises(ConvlensError, match="not a random-label run"):
        analyze_run(signal_runs / "run", n_null=100, control_runs=[signal_runs / "run"])
    a = analyze_run(signal_runs / "run", n_null=100, control_runs=[signal_runs / "ctrl"])
    assert [n for n in a.notes if "kernel controls" in n and "not computed" in n]
    assert "random_labels" not in {c.kind for c in a.controls}


def test_load_finds_a_runs_weights_from_its_analysis_json(
    signal_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``convlens.load("RUN/analysis.json")`` of a run analysed by a relative path looked for the
    weights in ``RUN/RUN`` and drew no learned kernels."""
    import convlens
    from convlens.analysis import analyze_run
    from convlens.display import _weights
    from convlens.pipelines import write_result

    monkeypatch.chdir(signal_runs)
    write_result(analyze_run(Path("run"), n_null=100), Path("run") / "analysis.json")
    for path in ("run", "run/analysis.json", signal_runs / "run" / "analysis.json"):
        r = convlens.load(path)
        assert r.source.path == "run"
        assert set(_weights(r)) >= {"conv1.weight"}, path


def test_train_on_npz_signals_picks_the_1d_preset(tmp_path: Path) -> None:
    """``train --data npz:FILE`` with ``x`` (N, C, L) failed: the default 2-D ``small-cnn``
    cannot pool an input of height 1 ("input (1, 64) is too small for 1 pooling stages")."""
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


def test_factory_mismatch_names_the_keys(tmp_path: Path) -> None:
    """Weights that do not fit ``--factory`` said only "Error(s) in loading state_dict for
    Sequential:" (torch's first line), not which keys were missing or unexpected."""
    from safetensors.torch import save_file

    from convlens.analysis.model.loading import build_from_factory
    from tests.model_zoo import chain

    save_file(chain().state_dict(), str(tmp_path / "chain.safetensors"))
    with pytest.raises(ConvlensError) as err:
        build_from_factory("tests.model_zoo:rgb", tmp_path / "chain.safetensors")
    msg = str(err.value)
    assert "\n" not in msg and "Missing key(s)" in msg and '"1.weight"' in msg


def test_control_train_command_keeps_the_snapshot_cadence() -> None:
    """The control's recorded ``convlens train`` line dropped ``--snapshot-every`` and
    ``--snapshot-epochs`` (issue 17's options); it must parse with the real CLI."""
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


def test_resume_refuses_options_that_contradict_the_recorded_run(tmp_path: Path) -> None:
    """``train --resume`` ignored ``--shuffle-labels``, ``--snapshot-every``, ``--data`` ... given
    on the command line (it continues with the recorded config): now exit 2 naming the option;
    the same values as recorded, ``--epochs`` and ``--device`` still pass."""
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


def test_analyze_out_never_overwrites_what_it_analyses(signal_runs: Path, tmp_path: Path) -> None:
    """``analyze MODEL --out MODEL`` replaced the model file with its own analysis (and
    ``analyze RUN --out RUN/model.safetensors`` the run's weights)."""
    from safetensors.torch import save_file

    from convlens.pipelines import analyze_target
    from tests.model_zoo import chain

    model = tmp_path / "m.safetensors"
    save_file(chain().state_dict(), str(model))
    before = model.read_bytes()
    run = signal_runs / "run"
    weights = (run / "model.safetensors").read_bytes()
    for target, out in ((model, model), (run, run / "model.safetensors")):
        with pytest.raises(ConvlensError, match="part of what is analysed"):
            analyze_target(target, out=out, n_null=100)
    assert model.read_bytes() == before and (run / "model.safetensors").read_bytes() == weights


def test_load_of_a_model_file_says_to_analyse_it(tmp_path: Path) -> None:
    """``convlens.load("net.safetensors")`` failed with a UTF-8 decoding error."""
    import convlens

    model = tmp_path / "net.safetensors"
    model.write_bytes(b"\xf9\x00binary")
    with pytest.raises(ConvlensError, match=r"is a model file.*net\.safetensors\.analysis\.json"):
        convlens.load(model)


def test_control_train_command_of_a_torchrun_run_uses_torchrun() -> None:
    """A control trained by 2 ranks (``--batch-size`` per rank) was described by a 1-process
    ``convlens train`` line with the per-rank batch: another global batch, other weights."""
    from convlens.runs.records import RunConfig

    cfg = RunConfig(data="faces", epochs=2, batch_size=16, shuffle_labels=True)
    two = cfg.command("c", world_size=2)
    assert two.startswith("torchrun --nproc_per_node 2 -m convlens train ")
    assert "--batch-size 16" in two
    assert cfg.command("c").startswith("convlens train ")
    assert cfg.command("c", world_size=1) == cfg.command("c")


def test_control_with_another_recipe_is_noted(tmp_path: Path) -> None:
    """Only model and data were compared: a control of 1 epoch beside a 2-epoch run (or another
    optimizer, learning rate, weight decay) was used without a word."""
    from convlens.analysis import analyze_run
    from convlens.data.datasets import load_bundled
    from convlens.train import TrainConfig, Trainer

    data = load_bundled("faces", 0)
    for name, epochs, shuffle in (("run", 2, False), ("ctrl", 1, True)):
        cfg = TrainConfig(data="faces", epochs=epochs, ood=["noise"], ood_size=8)
        cfg.shuffle_labels = shuffle
        Trainer(cfg, data, tmp_path / name, progress=False).train()
    a = analyze_run(tmp_path / "run", n_null=100, control_runs=[tmp_path / "ctrl"])
    assert [n for n in a.notes if "another recipe" in n and "epochs 1 vs 2" in n]
