"""Data that fits the model (issue 13 item 3) and model files' receptive fields, feature maps and
per-layer table (item 7): grey <-> RGB, resizing, layout, normalisation, scale, tuple/dict outputs,
convs that never run, a model that fails, 1-D and 3-D data, all through ``convlens analyze``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from convlens.cli import cli
from convlens.data.datasets import load_digits
from convlens.data.fit import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LUMINANCE,
    FitOptions,
    InputExpectation,
    parse_input_size,
    parse_normalize,
    plan_fit,
)
from convlens.errors import ConvlensError
from tests import model_zoo
from tests.onnx_tools import analyze, export, needs_onnx, torchscript_export

N_NULL = "100"


def _weights(tmp_path: Path, name: str) -> Path:
    m = getattr(model_zoo, name)()
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def _analyze(*args: str):
    return CliRunner().invoke(cli, ["analyze", "--null-size", N_NULL, *args])


def _one_line_error(r, exit_code: int = 2) -> str:
    assert r.exit_code == exit_code, r.output
    assert "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("convlens: error")]
    assert len(errors) == 1, r.output
    return errors[0]


def _rgb_npz(tmp_path: Path, channels: int = 3, hw: int = 8) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(60, channels, hw, hw), dtype=np.uint8)
    y = np.arange(60) % 2
    path = tmp_path / f"c{channels}.npz"
    np.savez(path, x=x, y=y)
    return path, x


def _fed(n_test: int) -> np.ndarray:
    """What the last model that ran was fed for the ID set: its first call of a full first batch
    (the activation pass runs batches of 256; the trace runs 2 items, the probes 4, OOD sets 100).
    A model built after it and never run (the fresh-init control the factory's fixed seed makes
    equal to the file, so it is refused) is skipped."""
    calls = next(m[0].calls for m in reversed(model_zoo.BUILT) if m[0].calls)
    first = next(c for c in calls if len(c) == min(256, n_test))
    return first.numpy().astype(np.float64)


def _test_split(npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """The test split as loaded (standardised) and as [0, 1] pixels read independently."""
    from convlens.data.loaders import load_dataset

    ds = load_dataset(f"npz:{npz}", 0)
    raw = np.load(npz)["x"].astype(np.float64)[ds.splits["test"]] / 255.0
    return ds.split("test")[0], raw


# ----------------------------------------------------------------------------- channels
def test_grey_data_into_an_rgb_torch_model(tmp_path):
    w = _weights(tmp_path, "rgb")
    r = _analyze(str(w), "--factory", "tests.model_zoo:rgb", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "rgb.safetensors.analysis.json").read_text())
    assert any("grey -> RGB by repeating" in n for n in a["notes"])
    ds = load_digits(0)
    x_test = ds.split("test")[0]
    fed = _fed(len(x_test))
    assert fed.shape[1] == 3 and np.array_equal(fed[:, 0], fed[:, 1])
    assert np.array_equal(fed[:, 0], fed[:, 2])
    # digits: standardised with its own training mean/std (the default): the values as loaded
    np.testing.assert_allclose(fed[:, 0], x_test[: len(fed), 0], atol=1e-5)
    assert a["layers"][0]["distribution"] is not None


def test_rgb_data_into_a_grey_model_by_luminance(tmp_path):
    npz, _ = _rgb_npz(tmp_path)
    w = _weights(tmp_path, "grey16")
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:grey16", "--data", f"npz:{npz}", "--ood", "noise",
        "--input-size", "16x16", "--normalize", "none",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "RGB -> grey by luminance" in r.output and "resized from 8x8 to 16x16" in r.output
    from skimage.transform import resize

    x_test, raw = _test_split(npz)
    fed = _fed(len(x_test))
    grey = np.einsum("nchw,c->nhw", raw, np.asarray(LUMINANCE))[:, None]
    want = resize(grey, (len(grey), 1, 16, 16), order=1, anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(fed, want, atol=1e-5)


@pytest.mark.parametrize("normalize", ["none", "imagenet", "0.5,0.25", "0.1,0.2,0.3,0.5,0.5,0.5"])
def test_normalisation_values_fed_to_the_model(tmp_path, normalize):
    npz, _ = _rgb_npz(tmp_path)
    w = _weights(tmp_path, "rgb")
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:rgb", "--data", f"npz:{npz}", "--ood", "noise",
        "--normalize", normalize,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    x_test, raw = _test_split(npz)
    fed = _fed(len(x_test))
    if normalize == "none":
        want = raw
    elif normalize == "imagenet":
        m, sd = np.reshape(IMAGENET_MEAN, (1, 3, 1, 1)), np.reshape(IMAGENET_STD, (1, 3, 1, 1))
        want = (raw - m) / sd
    elif normalize == "0.5,0.25":
        want = (raw - 0.5) / 0.25
    else:
        want = (raw - np.reshape([0.1, 0.2, 0.3], (1, 3, 1, 1))) / 0.5
    np.testing.assert_allclose(fed, want, atol=2e-5)
    note = {"none": "not normalised", "imagenet": "ImageNet mean"}.get(
        normalize, "normalised with mean"
    )
    assert note in r.output


def test_hook_sees_the_fitted_values_and_0_255_scale(tmp_path):
    npz, _ = _rgb_npz(tmp_path)
    w = _weights(tmp_path, "rgb")
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:rgb", "--data", f"npz:{npz}", "--ood", "noise",
        "--normalize", "none", "--scale", "0-255",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "0-255 scale" in r.output
    x_test, raw = _test_split(npz)
    np.testing.assert_allclose(_fed(len(x_test)), raw * 255, atol=1e-3)


def test_unconvertible_channels_and_wrong_rank_are_one_line(tmp_path):
    npz, _ = _rgb_npz(tmp_path, channels=2)
    w = _weights(tmp_path, "rgb")
    line = _one_line_error(
        _analyze(str(w), "--factory", "tests.model_zoo:rgb", "--data", f"npz:{npz}")
    )
    assert "have 2 channel(s); the model reads 3" in line and "written to" in line
    w1 = _weights(tmp_path, "one_d")
    line = _one_line_error(
        _analyze(str(w1), "--factory", "tests.model_zoo:one_d", "--data", "digits")
    )
    assert "model's conv layers are 1-D and read (N, C, L)" in line


# ----------------------------------------------------------------------------- size
def test_fixed_input_size_needs_resize(tmp_path):
    w = _weights(tmp_path, "grey16")
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:grey16", "--data", "digits", "--ood", "noise"
    )
    line = _one_line_error(r)  # 8x8 digits do not fit the 16x16 Linear layer: said, not crashed
    assert "running the model" in line and "weight analysis was written" in line
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:grey16", "--data", "digits", "--ood", "noise",
        "--input-size", "16x16",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "resized from 8x8 to 16x16, as asked" in r.output
    from skimage.transform import resize

    ds = load_digits(0)
    x_test = ds.split("test")[0].astype(np.float64)
    fed = _fed(len(x_test))
    mean, std = ds.normalisation["mean"], ds.normalisation["std"]
    x01 = x_test[: len(fed)] * std + mean
    want = resize(x01, (len(fed), 1, 16, 16), order=1, anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(fed, (want - mean) / std, atol=1e-4)


def test_fit_option_parsing():
    assert parse_input_size("224x224") == (224, 224) and parse_input_size("64") == (64,)
    assert parse_normalize("IMAGENET") == "imagenet"
    assert parse_normalize("0.5,0.25") == ((0.5,), (0.25,))
    for bad in ("0.5", "a,b", "0.5,0", "1,2,3"):
        with pytest.raises(ConvlensError, match="normalis"):
            parse_normalize(bad)
    for bad in ("axb", "0x3", "99999"):
        with pytest.raises(ConvlensError, match="input size"):
            parse_input_size(bad)
    with pytest.raises(ConvlensError, match="ImageNet normalisation is per RGB channel"):
        plan_fit((1, 8, 8), InputExpectation(2, 1), FitOptions(normalize="imagenet"),
                 {"mean": 0.0, "std": 1.0}, "d")  # fmt: skip
    r = _analyze("x.safetensors", "--input-size", "3xq")
    assert "input size must look like HxW" in _one_line_error(r)


def test_fit_options_need_data_and_a_model_file(tmp_path):
    w = _weights(tmp_path, "rgb")
    line = _one_line_error(_analyze(str(w), "--factory", "tests.model_zoo:rgb", "--scale", "0-255"))
    assert "apply to data run through the model: give the data as well" in line
    line = _one_line_error(_analyze(str(tmp_path), "--normalize", "imagenet"))  # a run directory
    assert "(the data fitting options: for model files only)" in line


# ----------------------------------------------------------------------------- outputs
@pytest.mark.slow
def test_tuple_and_dict_outputs_with_output(tmp_path):
    wt = _weights(tmp_path, "tuple_out")
    r = _analyze(str(wt), "--factory", "tests.model_zoo:tuple_out", "--data", "digits",
                 "--ood", "noise")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "element 0 of a tuple of 2 used as the logits" in r.output
    a = json.loads((tmp_path / "tuple_out.safetensors.analysis.json").read_text())
    assert a["distribution"]["baselines"]["noise"]["max_softmax_auroc"] is not None
    line = _one_line_error(
        _analyze(
            str(wt), "--factory", "tests.model_zoo:tuple_out", "--data", "digits", "--output", "1"
        )
    )
    assert "output '1' of the model is Tensor (2, 4, 8, 8)" in line
    line = _one_line_error(
        _analyze(
            str(wt), "--factory", "tests.model_zoo:tuple_out", "--data", "digits", "--output", "7"
        )
    )
    assert "must be an index 0..1" in line

    wd = _weights(tmp_path, "dict_out")
    r = _analyze(str(wd), "--factory", "tests.model_zoo:dict_out", "--data", "digits",
                 "--ood", "noise")  # fmt: skip
    assert r.exit_code == 0, r.output  # first entry is a feature map: no baselines, said so
    assert "output-level baselines (max-softmax, energy) not computed" in r.output
    a = json.loads((tmp_path / "dict_out.safetensors.analysis.json").read_text())
    assert a["distribution"]["baselines"] == {} and a["layers"][0]["distribution"] is not None
    r = _analyze(str(wd), "--factory", "tests.model_zoo:dict_out", "--data", "digits",
                 "--ood", "noise", "--output", "logits")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "entry 'logits' of a dict with keys ['feat', 'logits'] used as the logits" in r.output
    a = json.loads((tmp_path / "dict_out.safetensors.analysis.json").read_text())
    assert a["distribution"]["baselines"]["noise"]["energy_auroc"] is not None
    line = _one_line_error(
        _analyze(
            str(wd),
            "--factory",
            "tests.model_zoo:dict_out",
            "--data",
            "digits",
            "--output",
            "boxes",
        )
    )
    assert "dict with keys ['feat', 'logits']; it has no output 'boxes'" in line


# ----------------------------------------------------------------------------- running
def test_unused_conv_is_reported_not_executed(tmp_path):
    w = _weights(tmp_path, "unused")
    r = _analyze(str(w), "--factory", "tests.model_zoo:unused", "--data", "digits",
                 "--ood", "noise")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "not executed by the model's forward on the data: unused" in r.output
    row = [ln for ln in r.output.splitlines() if ln.startswith("unused ")]
    assert row and row[0].split()[-2:] == ["executed", "-"]  # check: not executed; RF: none
    a = json.loads((tmp_path / "unused.safetensors.analysis.json").read_text())
    layers = {x["identity"]["name"]: x for x in a["layers"]}
    assert layers["unused"]["distribution"] is None and layers["c"]["distribution"] is not None
    assert layers["unused"]["identity"]["order"] == "definition"


def test_model_that_raises_keeps_the_weight_analysis(tmp_path):
    w = _weights(tmp_path, "raises")
    r = _analyze(str(w), "--factory", "tests.model_zoo:raises", "--data", "digits")
    line = _one_line_error(r)
    assert "ZeroDivisionError: this model always fails in forward" in line
    out = tmp_path / "raises.safetensors.analysis.json"
    assert str(out) in line
    a = json.loads(out.read_text())
    assert a["errors"][-1]["stage"] == "activations"
    assert "ZeroDivisionError" in a["errors"][-1]["message"]
    assert a["layers"][0]["matching"] is not None and a["layers"][0]["check"] is not None
    assert a["distribution"] is None


# ----------------------------------------------------------------------------- 1-D and 3-D
def test_one_d_model_with_npz_signals_end_to_end(tmp_path):
    rng = np.random.default_rng(2)
    t = np.arange(32)
    y = np.arange(60) % 2
    x = rng.standard_normal((60, 2, 32)) * 0.1 + np.sin(2 * np.pi * (1 + y[:, None, None]) * t / 32)
    np.savez(tmp_path / "sig.npz", x=x.astype(np.float32), y=y)
    w = _weights(tmp_path, "one_d")
    r = _analyze(
        str(w), "--factory", "tests.model_zoo:one_d", "--data", f"npz:{tmp_path / 'sig.npz'}"
    )
    assert r.exit_code == 0, r.output
    assert "read as (N, C=2, L=32) for a 1-D model" in r.output
    a = json.loads((tmp_path / "one_d.safetensors.analysis.json").read_text())
    assert [d["name"] for d in a["distribution"]["ood"]] == ["noise", "tones", "chirps", "silence"]
    assert all(x["distribution"] is not None for x in a["layers"])
    rf = a["receptive_fields"]["theoretical"]
    assert [f["size"] for f in rf] == [[5], [7]] and [f["jump"] for f in rf] == [[1], [2]]
    line = _one_line_error(
        _analyze(
            str(w),
            "--factory",
            "tests.model_zoo:one_d",
            "--data",
            f"npz:{tmp_path / 'sig.npz'}",
            "--ood",
            "cat",
        )
    )
    assert "OOD set 'cat' is made of images; for 1-D data the sets are noise, tones" in line


def test_three_d_model_with_npz_volumes_end_to_end(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((40, 1, 4, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "vol.npz", x=x, y=np.arange(40) % 2)
    w = _weights(tmp_path, "three_d")
    r = _analyze(str(w), "--factory", "tests.model_zoo:three_d", "--data",
                 f"npz:{tmp_path / 'vol.npz'}")  # fmt: skip
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "three_d.safetensors.analysis.json").read_text())
    assert all(x["distribution"] is not None for x in a["layers"])
    assert a["layers"][0]["feature_maps"]["shape"] == [4, 4, 8, 8]
    assert a["receptive_fields"]["theoretical"][1]["size"] == [3, 5, 5]


# ----------------------------------------------------------------------------- receptive fields
def test_receptive_fields_of_a_model_file_by_hand(tmp_path):
    from convlens.ops import LayerGeometry, receptive_fields

    w = _weights(tmp_path, "chain")
    r = _analyze(str(w), "--factory", "tests.model_zoo:chain", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "chain.safetensors.analysis.json").read_text())
    rf = a["receptive_fields"]["theoretical"]
    # by hand on 8x8: conv 3x3 p1 -> size 3, jump 1, start 0; pool 2 -> size 4, jump 2, start 0.5;
    # conv 3x3 s2 p1 -> size 4 + 2*2 = 8, start 0.5 + (1 - 1)*2, jump 4; conv 1x2 -> size (8, 12),
    # start (0.5, 0.5 + 0.5*4), jump 4
    assert [f["name"] for f in rf] == ["0", "3", "5"]
    # the last field (8, 12) covers the whole 8x8 input: reported clipped to it, flagged global
    assert [f["size"] for f in rf] == [[3, 3], [8, 8], [8, 8]]
    assert [f["is_global"] for f in rf] == [False, True, True]
    assert [f["jump"] for f in rf] == [[1, 1], [4, 4], [4, 4]]
    assert [f["start"] for f in rf] == [[0.0, 0.0], [0.5, 0.5], [0.5, 2.5]]
    assert [f["output_shape"] for f in rf] == [[8, 8], [2, 2], [2, 1]]
    stack = [
        LayerGeometry.make("0", kernel=3, padding=1),
        LayerGeometry.make("p", "pool", kernel=2, stride=2),
        LayerGeometry.make("3", kernel=3, stride=2, padding=1),
        LayerGeometry.make("5", kernel=(1, 2)),
    ]
    oracle = [f for f in receptive_fields(stack, (8, 8)) if f.name != "p"]
    clipped = [[min(v, 8) for v in f.size] for f in oracle]
    assert clipped == [f["size"] for f in rf]
    assert [list(f.size) for f in oracle][-1] == [8, 12]
    assert [list(f.start) for f in oracle] == [f["start"] for f in rf]
    assert any("assuming a chain" in n and "pooling layers traced: 2" in n for n in a["notes"])
    # the compact table and the probe feature maps
    table = r.output.splitlines()
    assert table[0].split() == [
        "layer",
        "kernels",
        "above",
        "null",
        "top",
        "categories",
        "check",
        "RF",
    ]
    assert table[3].split()[0] == "5" and table[3].split()[-2:] == ["checked", "global"]
    fm = a["layers"][0]["feature_maps"]
    assert fm["shape"] == [4, 8, 8] and fm["per_epoch"][0]["epoch"] == -1
    assert len(fm["channel_correlation_final"]) == 4 and fm["channel_correlation_init"] == []
    assert set(fm["per_epoch"][0]["mean_activation"]) == {"digits (test split)", "noise"}
    assert a["feature_maps"]["probe_sets"].count("noise") == 4


# ----------------------------------------------------------------------------- ONNX layout
def _export_nhwc(path: Path) -> None:
    m = model_zoo.nhwc().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            (torch.zeros(2, 8, 8, 1),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        )


def test_nhwc_onnx_model_auto_detected_and_layout_override(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    p = tmp_path / "nhwc.onnx"
    _export_nhwc(p)
    r = _analyze(str(p), "--data", "digits", "--ood", "noise")
    assert r.exit_code == 0, r.output
    assert "layout NHWC from the model (last dim is 1 (channels)" in r.output
    a = json.loads((tmp_path / "nhwc.onnx.analysis.json").read_text())
    assert a["layers"][0]["check"]["is_cross_correlation"] and a["layers"][0]["distribution"]
    assert a["receptive_fields"]["theoretical"][0]["size"] == [3, 3]
    # the model's activations equal torch's on the same NHWC data (no silent misreading)
    r = _analyze(str(p), "--data", "digits", "--ood", "noise", "--layout", "NHWC",
                 "--out", str(tmp_path / "b.json"))  # fmt: skip
    assert r.exit_code == 0, r.output and "layout NHWC as asked" in r.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["layers"][0]["distribution"]["id_mean"] == a["layers"][0]["distribution"]["id_mean"]
    line = _one_line_error(_analyze(str(p), "--data", "digits", "--layout", "NCHW"))
    assert "input is [N, 8, 8, 1]" in line and "fitted as NCHW are [N, 1, 8, 8]" in line


def test_onnx_layout_that_cannot_be_told_asks_for_it(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["X", "W"], ["Y"], name="conv1", pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "C", "H", "W"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "sym.onnx"
    onnx.save(model, str(p))
    line = _one_line_error(_analyze(str(p), "--data", "digits", "--ood", "noise"))
    assert "cannot tell whether the model reads channels first" in line
    assert "give --layout NCHW or NHWC" in line
    r = _analyze(str(p), "--data", "digits", "--ood", "noise", "--layout", "NCHW")
    assert r.exit_code == 0, r.output
    assert "model output 'Y' has shape [" in r.output  # a 4-D output: no baselines, said so


def test_fitting_is_chunked_and_bounded():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 1, 6, 6)).astype(np.float32)
    norm = {"mean": 0.3, "std": 0.2}
    plan = plan_fit((1, 6, 6), InputExpectation(2, 3, (9, 9)), FitOptions(), norm, "d")
    whole = plan._apply_chunk(x).astype(np.float32)  # one go, no chunks
    np.testing.assert_array_equal(plan.apply(x), whole)
    big = plan_fit((1, 6, 6), InputExpectation(2, 3, (4096, 4096)), FitOptions(), norm, "d")
    with pytest.raises(ConvlensError, match="over the limit of 268435456"):
        big.apply(x)


def test_onnx_model_that_cannot_run_keeps_the_weight_analysis(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["X", "W"], ["Y"], name="conv1"),
            helper.make_node("Add", ["Y", "S"], ["Z"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 1, 8, 8]),
            helper.make_tensor_value_info("S", TensorProto.FLOAT, [1]),  # a second input
        ],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "two.onnx"
    onnx.save(model, str(p))
    line = _one_line_error(_analyze(str(p), "--data", "digits"))
    assert "takes the graph inputs ['X', 'S']" in line and "--input NAME=VALUE" in line
    assert "weight analysis was written" in line
    a = json.loads((tmp_path / "two.onnx.analysis.json").read_text())
    assert a["layers"][0]["identity"]["name"] == "conv1" and a["layers"][0]["matching"]
    assert a["errors"][-1]["stage"] == "activations"


def test_torch_model_reading_channels_last_with_layout(tmp_path):
    w = _weights(tmp_path, "nhwc")
    r = _analyze(str(w), "--factory", "tests.model_zoo:nhwc", "--data", "digits", "--ood", "noise",
                 "--layout", "NHWC")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "layout NHWC as asked" in r.output
    a = json.loads((tmp_path / "nhwc.safetensors.analysis.json").read_text())
    assert a["layers"][0]["distribution"] is not None
    assert a["receptive_fields"]["theoretical"][0]["output_shape"] == [8, 8]
    # without it the model gets NCHW, fails inside, and that is one line (weights kept)
    line = _one_line_error(
        _analyze(
            str(w),
            "--factory",
            "tests.model_zoo:nhwc",
            "--data",
            "digits",
            "--out",
            str(tmp_path / "b.json"),
        )
    )
    assert "running the model" in line and "RuntimeError" in line
    assert json.loads((tmp_path / "b.json").read_text())["layers"][0]["matching"] is not None


def _analyze_npz_files(tmp_path: Path, zoo: str, names: tuple[str, ...]) -> dict[str, Any]:
    """``analyze`` the ``tests.model_zoo`` model ``zoo`` on each ``tmp_path/NAME.npz`` (OOD
    ``noise``): per name, the printed output and the written analysis."""
    w = _weights(tmp_path, zoo)
    got = {}
    for name in names:
        out = tmp_path / f"{name}.json"
        r = _analyze(str(w), "--factory", f"tests.model_zoo:{zoo}", "--data",
                     f"npz:{tmp_path / (name + '.npz')}", "--ood", "noise", "--out", str(out))  # fmt: skip
        assert r.exit_code == 0, r.output
        got[name] = (r.output, json.loads(out.read_text()))
    return got


def test_channels_last_signals_are_transposed_for_a_1d_model(tmp_path):
    """Audio laid out ``(N, T, C)`` (basic-pitch's ``[N, 43844, 1]`` kind) is read channels last
    when only its last dim is the model's channel count: the same activations as ``(N, C, T)``."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 2, 32)).astype(np.float32)
    np.savez(tmp_path / "first.npz", x=x, y=np.arange(40) % 2)
    np.savez(tmp_path / "last.npz", x=x.transpose(0, 2, 1).copy(), y=np.arange(40) % 2)
    runs = _analyze_npz_files(tmp_path, "one_d", ("first", "last"))
    assert "read as (N, L=32, C=2), channels last" in runs["last"][0]
    assert "channels last" not in runs["first"][0]
    a, b = runs["first"][1]["layers"], runs["last"][1]["layers"]
    assert [x["distribution"]["id_mean"] for x in a] == [x["distribution"]["id_mean"] for x in b]


def test_signals_for_a_k_by_1_conv2d_net_are_laid_out_as_a_column(tmp_path):
    """CREPE-like: 1-D data ``(N, 1, L)`` for a Conv2d net with 9x1 kernels are laid out as
    ``(N, 1, L, 1)`` (a column), not a 1 x L image the kernels cannot run along: the same
    activations as the data given as that column, and signal OOD sets instead of images."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 1, 64)).astype(np.float32)
    np.savez(tmp_path / "sig.npz", x=x, y=np.arange(40) % 2)
    np.savez(tmp_path / "col.npz", x=x[..., None].copy(), y=np.arange(40) % 2)
    got = _analyze_npz_files(tmp_path, "column", ("sig", "col"))
    w = tmp_path / "column.safetensors"
    assert "laid out as (N, 1, 64, 1), a column" in got["sig"][0]
    a, b = got["sig"][1]["layers"], got["col"][1]["layers"]
    assert [x["distribution"]["id_mean"] for x in a] == [x["distribution"]["id_mean"] for x in b]
    r = _analyze(str(w), "--factory", "tests.model_zoo:column", "--data",
                 f"npz:{tmp_path / 'sig.npz'}", "--out", str(tmp_path / "d.json"))  # fmt: skip
    assert r.exit_code == 0, r.output
    ood = json.loads((tmp_path / "d.json").read_text())["distribution"]["ood"]
    assert [d["name"] for d in ood] == ["noise", "tones", "chirps", "silence"]


def test_one_d_onnx_model_with_symbolic_length_end_to_end(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    m = model_zoo.one_d().eval()
    p = tmp_path / "one_d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m, (torch.zeros(2, 2, 32),), str(p), dynamo=False, input_names=["x"],
            output_names=["logits"], dynamic_axes={"x": {0: "N", 2: "L"}, "logits": {0: "N"}},
        )  # fmt: skip
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 2, 32)).astype(np.float32)
    np.savez(tmp_path / "sig.npz", x=x, y=np.arange(40) % 2)
    r = _analyze(str(p), "--data", f"npz:{tmp_path / 'sig.npz'}")
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "one_d.onnx.analysis.json").read_text())
    assert all(x["distribution"] is not None and x["check"] is not None for x in a["layers"])
    # signals get signal OOD sets, not images squashed to 1 x L
    assert [d["name"] for d in a["distribution"]["ood"]] == ["noise", "tones", "chirps", "silence"]
    assert [f["size"] for f in a["receptive_fields"]["theoretical"]] == [[5], [7]]
    line = _one_line_error(
        _analyze(str(p), "--data", f"npz:{tmp_path / 'sig.npz'}", "--ood", "cat")
    )
    assert "for 1-D data the sets are noise, tones, chirps, silence" in line


def test_signal_ood_sets_are_what_they_say():
    """Tones: one spectral line in [0.01, 0.45] cycles/sample; chirps: a rising instantaneous
    frequency inside [0.01, 0.45]; silence: constant; all in [0, 1] before standardising, seeded."""
    from convlens.data.fit import signal_like

    norm = {"mean": 0.0, "std": 1.0}
    tones = signal_like("tones", (2, 256), 30, 7, norm)
    assert tones.shape == (30, 2, 256) and tones.min() >= 0 and tones.max() <= 1
    spec = np.abs(np.fft.rfft(tones - tones.mean(axis=-1, keepdims=True), n=4096, axis=-1))
    peaks = spec.argmax(axis=-1) / 4096
    assert peaks.min() >= 0.01 - 1 / 256 and peaks.max() <= 0.45 + 1 / 256
    top = np.sort(spec, axis=-1)
    assert np.all(top[..., -40] < 0.5 * top[..., -1])  # one line, not a spread spectrum
    chirps = signal_like("chirps", (1, 512), 10, 7, norm)[:, 0].astype(np.float64)
    from scipy.signal import hilbert

    inst = np.diff(np.unwrap(np.angle(hilbert(chirps - 0.5)))) / (2 * np.pi)
    early, late = np.median(inst[:, 40:120], axis=1), np.median(inst[:, -120:-40], axis=1)
    assert np.all(late > early) and early.min() > 0.005 and late.max() < 0.46
    silence = signal_like("silence", (1, 64), 3, 7, {"mean": 0.5, "std": 2.0})
    assert np.all(silence == 0.0)
    np.testing.assert_array_equal(tones, signal_like("tones", (2, 256), 30, 7, norm))


@pytest.mark.slow
@needs_onnx
@torchscript_export
def test_silent_layer_is_named_in_a_note(tmp_path: Path) -> None:
    """A layer whose ID activations are all 0 (zero weights and bias): no ratio, a note names it.

    Regression: real-model fix 6 (ID mean 0)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU()
    )
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].bias.zero_()
    f = export(model, torch.zeros(1, 1, 28, 28), tmp_path / "m.onnx")
    r, data = analyze(f, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert r.exit_code == 0, r.output
    assert data is not None
    assert "All-NaN" not in r.output
    silent = [n for n in data["notes"] if n.startswith("mean ID activation 0 at ")]
    assert len(silent) == 1 and "/2/Conv" in silent[0], data["notes"]
    dist = next(x for x in data["layers"] if x["identity"]["name"] == "/2/Conv")["distribution"]
    assert dist["ood"]["noise"]["ratio"] is None and dist["ood"]["noise"]["ratio_ci"] == [
        None,
        None,
    ]


@pytest.mark.slow
def test_not_normalised_note_is_worded_by_data_kind() -> None:
    """1-D data (audio) are samples as loaded, not 'pixel values in 0-1'; images keep the wording.

    Regression: real-model fix 12 (notes by data kind)."""
    from convlens.data.fit import FitOptions, InputExpectation, plan_fit

    norm = {"mean": 0.0, "std": 1.0}
    one = plan_fit(
        [1, 576], InputExpectation(dims=1, channels=1), FitOptions(normalize="none"), norm, "a"
    )
    assert "not normalised: the model reads the samples as loaded" in one.notes
    assert not any("pixel" in n for n in one.notes)
    two = plan_fit(
        [1, 8, 8], InputExpectation(dims=2, channels=1), FitOptions(normalize="none"), norm, "b"
    )
    assert "not normalised: the model reads pixel values in 0-1" in two.notes


@pytest.mark.slow
@needs_onnx
@torchscript_export
def test_wide_layers_keep_a_correlation_summary_not_the_matrix(tmp_path: Path) -> None:
    """Over FEATURE_MAP_CHANNEL_LIMIT (64) channels only the mean |r| between channels is stored
    (checked against numpy's corrcoef), and the note says so; narrow layers keep the matrix.

    Regression: real-model fix 13 (JSON size of feature maps)."""
    from convlens.analysis.measure.featuremaps import mean_abs_offdiagonal
    from convlens.analysis.orchestration.model_file import FEATURE_MAP_CHANNEL_LIMIT

    assert FEATURE_MAP_CHANNEL_LIMIT == 64
    x = np.random.default_rng(0).standard_normal((5, 40))
    r = np.corrcoef(x)
    want = np.abs(r[np.triu_indices(5, 1)]).mean()
    assert mean_abs_offdiagonal(r) == pytest.approx(want, rel=1e-12)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 80, 3)
    )
    f = export(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    res, data = analyze(f, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert res.exit_code == 0, res.output
    assert data is not None
    narrow, wide = (lay["feature_maps"] for lay in data["layers"])
    assert len(narrow["channel_correlation_final"]) == 8
    assert wide["channel_correlation_final"] == [] and 0 < wide["mean_abs_channel_correlation"] <= 1
    assert any("only the mean |r| between channels is stored" in n for n in data["notes"])


@pytest.mark.parametrize("name", ["small", "chain", "rgb"])
def test_the_shipped_example_factories_run_as_the_docs_say(name, tmp_path):
    # real models round 2: the docs' examples imported tests.* and ran only from a checkout;
    # convlens.examples ships in the wheel
    from safetensors.torch import save_file

    from convlens import examples
    from convlens.analysis import analyze_model_file

    save_file(getattr(examples, name)().state_dict(), str(tmp_path / "m.safetensors"))
    a = analyze_model_file(
        tmp_path / "m.safetensors",
        factory=f"convlens.examples:{name}",
        data="digits",
        ood=["noise"],
        n_null=100,
    )
    assert a.headline.all_layers_cross_correlation and a.distribution is not None
