"""Small ONNX models built in a test, for the regressions found running convlens on real pretrained
CNNs (``tests/data/real``): ``torch.onnx.export`` (the TorchScript exporter) of a small model, and
``convlens analyze`` run in process on the file, so each check runs in seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

#: a test that exports or reads ONNX files: skipped without onnx and onnxruntime (``.[onnx]``)
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs onnx and onnxruntime",
)

#: the TorchScript exporter (dynamo=False) is what builds the small models here
torchscript_export = pytest.mark.filterwarnings(
    "ignore:You are using the legacy TorchScript-based ONNX export",
    "ignore:The feature will be removed",
)


def export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """``model`` as an ONNX file (TorchScript exporter, opset 17, weights as initializers)."""
    model.eval()
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    return path


def analyze(target: Path, out: Path, *args: str) -> tuple[Any, dict[str, Any] | None]:
    """``convlens analyze TARGET --out OUT ARGS`` in process; the written JSON if any."""
    from click.testing import CliRunner

    from convlens.cli import cli

    r = CliRunner().invoke(cli, ["analyze", str(target), "--out", str(out), *args])
    data = json.loads(out.read_text()) if out.exists() else None
    return r, data
