"""Defects found by an outside review of issues 11-12, each pinned by a test."""

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from convlens._atomic import write_text
from convlens._serde import SchemaError, from_jsonable
from convlens.analysis.model import forward
from convlens.analysis.model.layers import identify_modules
from convlens.errors import ConvlensError
from convlens.explain import parse_matrix
from convlens.train import TrainConfig
from tests.model_zoo import Unused


def test_atomic_write_refuses_symlinks_fifos_and_devices(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(ConvlensError, match="is a symbolic link"):
        write_text(link, "x")
    assert link.is_symlink() and target.read_text() == "keep"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConvlensError, match="not a regular file"):
        write_text(fifo, "x")
    assert not fifo.is_file()
    with pytest.raises(ConvlensError, match="not a regular file"):
        write_text("/dev/null", "x")
    assert not os.path.isfile("/dev/null")
    assert not list(tmp_path.glob(".*.tmp"))
    write_text(tmp_path / "plain.json", "ok")  # regular files are still replaced atomically
    write_text(tmp_path / "plain.json", "ok2")
    assert (tmp_path / "plain.json").read_text() == "ok2"


def test_activations_skip_convs_that_never_run_and_name_data_misfits():
    model = Unused()
    x = torch.zeros(5, 1, 8, 8)
    acts = forward.collect(model, forward.batches_of(x), "digits")
    assert set(acts.layer_scores) == {"c"} and acts.n == 5
    with pytest.raises(ConvlensError, match=r"running the model on 'rgb' .* failed: RuntimeError"):
        forward.collect(model, forward.batches_of(torch.zeros(2, 3, 8, 8)), "rgb")
    with pytest.raises(ConvlensError, match="does the data fit the model"):
        identify_modules(model, torch.zeros(2, 3, 8, 8))


def test_explain_json_nesting_and_huge_integers_are_one_line_errors():
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


@pytest.mark.slow
def test_learning_rate_and_weight_decay_are_bounded_before_anything_is_written(tmp_path):
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


@dataclass
class _Num:
    i: int
    f: float


def test_reader_agrees_with_the_schema_on_integral_floats_and_refuses_infinities():
    assert from_jsonable(_Num, {"i": 2.0, "f": 1}) == _Num(2, 1.0)
    with pytest.raises(SchemaError, match="expected integer"):
        from_jsonable(_Num, {"i": 2.5, "f": 1})
    with pytest.raises(SchemaError, match="finite number"):
        from_jsonable(_Num, {"i": 1, "f": float("inf")})
    assert np.isfinite(from_jsonable(_Num, {"i": 1, "f": 1e308}).f)


def test_data_on_a_weights_only_file_is_refused_not_ignored(tmp_path):
    from safetensors.numpy import save_file

    from convlens.pipelines import analyze_target

    save_file({"stem.weight": np.ones((2, 1, 3, 3), np.float32)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(ConvlensError, match="weights only") as info:
        analyze_target(tmp_path / "m.safetensors", data="digits")
    assert info.value.hint_key == "needs_factory"
    with pytest.raises(ConvlensError, match="weights only"):
        analyze_target(tmp_path / "m.safetensors", ood=["noise"])
    assert not (tmp_path / "m.safetensors.analysis.json").exists()
