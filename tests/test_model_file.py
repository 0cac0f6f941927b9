"""The error boundaries of a model-file analysis (``analysis/orchestration/model_file.py``) through
``convlens analyze``: a failure of the user's data or model (third-party code) keeps the weight
analysis, exits 2 with one line and records the stage that failed ("data" while preparing the data,
"activations" while running the model on them); a bug of convlens exits 1, traceback with --debug."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from convlens.cli import cli
from convlens.errors import ConvlensError
from tests import model_zoo


class _RuntimeFails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ = self.c(x)
        raise RuntimeError("the user's model fails\non two lines")


def runtime_fails() -> nn.Module:
    """A factory (``tests.test_model_file:runtime_fails``) whose model's forward raises."""
    torch.manual_seed(0)
    return _RuntimeFails()


def _weights(tmp_path: Path, model: nn.Module, name: str) -> Path:
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _analyze(*args: str, debug: bool = False):
    head = ["--debug"] if debug else []
    return CliRunner().invoke(cli, [*head, "analyze", "--null-size", "100", *args])


def _one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("convlens: error")]
    assert len(errors) == 1, r.output
    return errors[0]


def _errors(path: Path) -> list[dict[str, str]]:
    a = json.loads(path.read_text())
    assert a["layers"] and a["layers"][0]["matching"] is not None  # the weight analysis stands
    return a["errors"]


def test_a_model_whose_forward_raises_is_exit_2_stage_activations(tmp_path):
    w = _weights(tmp_path, runtime_fails(), "fails")
    r = _analyze(str(w), "--factory", "tests.test_model_file:runtime_fails", "--data", "digits")
    line = _one_line_error(r)
    assert "RuntimeError: the user's model fails on two lines" in line
    out = tmp_path / "fails.safetensors.analysis.json"
    assert f"weight analysis was written to {out}" in line
    assert _errors(out)[-1]["stage"] == "activations"
    # --debug prints the traceback of a failure of the user's model too; the exit code stays 2
    r = _analyze(str(w), "--factory", "tests.test_model_file:runtime_fails", "--data", "digits",
                 debug=True)  # fmt: skip
    assert r.exit_code == 2 and "Traceback" in r.output


def test_data_that_do_not_fit_are_exit_2_stage_data(tmp_path):
    w = _weights(tmp_path, model_zoo.one_d(), "one_d")
    r = _analyze(str(w), "--factory", "tests.model_zoo:one_d", "--data", "digits")
    line = _one_line_error(r)
    assert "the model's conv layers are 1-D" in line
    assert _errors(tmp_path / "one_d.safetensors.analysis.json")[-1]["stage"] == "data"


def test_an_image_the_decoder_refuses_is_exit_2_stage_data(tmp_path):
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{i}.png")
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    w = _weights(tmp_path, model_zoo.chain(), "chain")
    r = _analyze(str(w), "--factory", "tests.model_zoo:chain", "--data", str(folder))
    line = _one_line_error(r)
    assert "broken.png" in line
    assert _errors(tmp_path / "chain.safetensors.analysis.json")[-1]["stage"] == "data"


def test_a_bug_in_data_preparation_is_exit_1_with_the_traceback(tmp_path, monkeypatch):
    import convlens.data.fit

    def buggy_plan(*_args, **_kw):
        raise TypeError("a bug in convlens's data preparation")

    monkeypatch.setattr(convlens.data.fit, "plan_fit", buggy_plan)
    w = _weights(tmp_path, model_zoo.chain(), "chain")
    args = (str(w), "--factory", "tests.model_zoo:chain", "--data", "digits", "--ood", "noise")
    r = _analyze(*args)
    assert r.exit_code == 1, r.output
    assert "convlens: internal error: TypeError: a bug in convlens's data preparation" in r.output
    assert "Traceback" not in r.output and "convlens: error" not in r.output
    r = _analyze(*args, debug=True)
    assert r.exit_code == 1, r.output
    assert "Traceback" in r.output and "buggy_plan" in r.output


def test_a_bug_in_a_convlens_hook_inside_the_model_is_exit_1(tmp_path, monkeypatch):
    """The activation hooks run inside the user's model: a failure there is still convlens's."""
    from convlens.analysis.model import forward

    def buggy_reduce(_zmap):
        raise TypeError("a bug in convlens's activation hook")

    monkeypatch.setattr(forward, "reduce_map", buggy_reduce)
    w = _weights(tmp_path, model_zoo.chain(), "chain")
    args = (str(w), "--factory", "tests.model_zoo:chain", "--data", "digits", "--ood", "noise")
    r = _analyze(*args, debug=True)
    assert r.exit_code == 1, r.output
    assert "Traceback" in r.output and "buggy_reduce" in r.output
    assert "internal error: TypeError: a bug in convlens's activation hook" in r.output


def broken_factory() -> nn.Module:
    """A factory (``tests.test_model_file:broken_factory``) with a bug of its own."""
    return nn.Conv2d(1, 4, 3).missing_attribute


def test_a_factory_that_fails_is_exit_2_naming_it(tmp_path):
    w = _weights(tmp_path, runtime_fails(), "fails")
    r = _analyze(str(w), "--factory", "tests.test_model_file:broken_factory")
    line = _one_line_error(r)
    assert "factory 'tests.test_model_file:broken_factory' failed: AttributeError" in line


def test_factory_mismatch_names_the_keys(tmp_path: Path) -> None:
    """Weights that do not fit ``--factory`` said only "Error(s) in loading state_dict for
    Sequential:" (torch's first line), not which keys were missing or unexpected.

    Regression: integration QA of the merged branches (factory mismatch names the keys)."""
    from safetensors.torch import save_file

    from convlens.analysis.model.loading import build_from_factory
    from tests.model_zoo import chain

    save_file(chain().state_dict(), str(tmp_path / "chain.safetensors"))
    with pytest.raises(ConvlensError) as err:
        build_from_factory("tests.model_zoo:rgb", tmp_path / "chain.safetensors")
    msg = str(err.value)
    assert "\n" not in msg and "Missing key(s)" in msg and '"1.weight"' in msg


def test_a_conv_subclass_returning_a_2d_tensor_is_analysed(tmp_path):
    # real models round 2: pesto-pitch's ToeplitzLinear (Conv1d whose forward maps (B, L) to
    # (B, L')) crashed the activation pass ("Dimension out of range") and blamed model or data
    import numpy as np
    from safetensors.torch import save_file

    from convlens.analysis import analyze_model_file
    from tests.toeplitz_model import build

    save_file(build().state_dict(), str(tmp_path / "tz.safetensors"))
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "sig.npz",
        x=rng.random((30, 1, 32)).astype(np.float32),
        y=np.repeat([0, 1, 2], 10),
    )
    a = analyze_model_file(
        tmp_path / "tz.safetensors",
        factory="tests.toeplitz_model:build",
        data=f"npz:{tmp_path / 'sig.npz'}",
        ood=["noise"],
        n_null=100,
    )
    toe = a.layer("toe")
    # its forward takes (B, L), not the (B, C, L) the check feeds a Conv1d: not verified, said so
    assert toe.check is not None and toe.check.status == "failed"
    assert [e.stage for e in a.errors] == ["verify"] and "toe" in a.errors[0].message
    assert a.layer("conv").check is not None and a.layer("conv").check.status == "checked"
    assert toe.distribution is None and a.layer("conv").distribution is not None
    assert any("no (batch, channels, ...) feature map" in n and "toe" in n for n in a.notes)


_NO_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch imported by a weights-only analysis")
sys.meta_path.insert(0, _Block())
from convlens.pipelines import analyze_target
result, dest = analyze_target(sys.argv[1], out=sys.argv[2])
assert "torch" not in sys.modules
print(len(result.layers), dest)
"""


@pytest.mark.slow  # a fresh interpreter each
@pytest.mark.parametrize("which", ["safetensors", "onnx"])
def test_a_weights_only_analysis_imports_no_torch(tmp_path, which):
    """Issue 25: weights-only analysis of a safetensors or ONNX file never imports torch (about
    0.7 s of a 1-2 s analysis), checked in a fresh interpreter where importing torch fails."""
    import subprocess
    import sys

    from safetensors.numpy import save_file

    if which == "safetensors":
        rng = np.random.default_rng(0)
        model = tmp_path / "m.safetensors"
        save_file({"conv1.weight": rng.normal(size=(8, 3, 5, 5)).astype(np.float32),
                   "conv2.weight": rng.normal(size=(4, 8, 3, 3)).astype(np.float32)}, str(model))  # fmt: skip
        layers = 2
    else:
        pytest.importorskip("onnx")
        model = Path(__file__).parent / "data" / "real" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
        layers = 53
    out = tmp_path / "a.json"
    done = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(model), str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == str(layers) and out.is_file()
