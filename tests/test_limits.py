"""Resource limits and non-finite input (issue 12, items 3 and 5).

Each limit is a module constant, named in its error message, and checked before anything of the
declared size is allocated. Files are tiny and crafted; where a realistic input would be large, the
test lowers the constant with ``monkeypatch``.
"""

import gzip
import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file
from torch import nn

from convlens.analysis import analyze_model_file, analyze_run, analyze_weights
from convlens.analysis.measure import matching
from convlens.analysis.measure.evolution import evolution
from convlens.analysis.measure.featuremaps import load_probes
from convlens.analysis.result import AnalysisResult
from convlens.data import datasets, loaders
from convlens.data.datasets import MAX_CLASSES, from_unit_range
from convlens.data.images import load_image
from convlens.data.loaders import load_dataset, read_idx
from convlens.errors import ConvlensError
from convlens.runs import read

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
}


def _idx_bytes(arr: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    dims = arr.shape if dims is None else dims
    code = IDX_CODES[arr.dtype]
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + arr.tobytes()


def _idx_folder(tmp_path, x, y, *, gz=False):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(x))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(y))
    return f"idx:{tmp_path}"


def _images(n=30, h=5, w=5):
    return np.random.default_rng(0).integers(0, 256, size=(n, h, w)).astype(np.uint8)


# ----------------------------------------------------------------------------- IDX
def test_idx_declared_dims_beyond_the_file_refused_before_allocating(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    # declares 4294967295 x 28 x 28 bytes (3.4 TB) and holds 100
    p.write_bytes(_idx_bytes(np.zeros(100, np.uint8), dims=(2**32 - 1, 28, 28)))
    with pytest.raises(ConvlensError, match=r"truncated: dims \(4294967295, 28, 28\) need"):
        read_idx(p)


def test_idx_gz_declared_size_over_the_byte_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_DATA_BYTES", 100_000)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(np.zeros((1000, 28, 28), np.uint8))))
    with pytest.raises(ConvlensError, match=r"over the limit of 100000 bytes \(MAX_DATA_BYTES"):
        read_idx(p)


def test_idx_gz_bomb_is_not_inflated_past_the_declared_size(tmp_path):
    # 30x5x5 declared, followed by 64 MB of zeros in the gzip stream (a few dozen KB on disk)
    x = _images()
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(x) + bytes(64 << 20), compresslevel=1))
    assert p.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        got = read_idx(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (got == x).all()
    assert peak < 4 << 20, f"peak {peak} bytes while reading a 750-byte IDX"


def test_corrupt_gzip_idx(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(_images()))[:40])
    with pytest.raises(ConvlensError, match=r"corrupt gzip data|truncated"):
        read_idx(p)


def test_idx_value_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DATASET_VALUES", 100)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(_idx_bytes(_images()))
    with pytest.raises(
        ConvlensError, match=r"750 pixel values, over the limit of 100 \(MAX_DATASET_VALUES"
    ):
        read_idx(p)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            np.full(30, 2**31 - 1, dtype=">i4"),
            r"label 2147483647 would mean 2147483648 classes, over the limit of 10000 \(MAX_CLASSES",
        ),
        (np.repeat(np.array([0, 1, -1], dtype="i1"), 10), "negative label -1"),
    ],
)
def test_idx_labels_checked_before_class_names_are_built(tmp_path, labels, message):
    with pytest.raises(ConvlensError, match=message) as info:
        load_dataset(_idx_folder(tmp_path, _images(), labels))
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_idx_float_images_with_nan_name_the_file(tmp_path):
    x = np.random.default_rng(0).random((30, 5, 5)).astype(">f4")
    x[4, 1, 1] = np.nan
    x[5, 1, 1] = np.inf
    y = np.repeat(np.arange(3), 10).astype(np.uint8)
    with pytest.raises(
        ConvlensError, match=r"train-images-idx3-ubyte'?: 2 of 750 values are NaN or Inf"
    ):
        load_dataset(_idx_folder(tmp_path, x, y))


def test_idx_with_zero_images(tmp_path):
    with pytest.raises(ConvlensError, match=r"0 images|no labels"):
        load_dataset(_idx_folder(tmp_path, np.zeros((0, 5, 5), np.uint8), np.zeros(0, np.uint8)))


# ----------------------------------------------------------------------------- npz
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize("label", [2**31 - 1, 10**12])
def test_npz_huge_label_refused_by_class_cap(tmp_path, label):
    y = np.repeat(np.array([0, 1, label], dtype=np.int64), 10)
    with pytest.raises(
        ConvlensError,
        match=rf"label {label} would mean .* over the limit of {MAX_CLASSES} \(MAX_CLASSES",
    ):
        load_dataset(_npz(tmp_path / "big.npz", x=_images(), y=y))


def test_npz_negative_labels_refused_up_front(tmp_path):
    y = np.repeat(np.array([0, 1, -3]), 10)
    with pytest.raises(ConvlensError, match=r"labels must be 0\.\.n-1, found a negative label -3"):
        load_dataset(_npz(tmp_path / "neg.npz", x=_images(), y=y))


def test_npz_zero_images(tmp_path):
    spec = _npz(tmp_path / "empty.npz", x=np.zeros((0, 5, 5), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(ConvlensError, match=r"empty.npz'?: 0 images"):
        load_dataset(spec)


def test_npz_nan_images_name_the_file(tmp_path):
    x = np.random.default_rng(0).random((30, 5, 5))
    x[0, 0, 0] = np.inf
    with pytest.raises(ConvlensError, match=r"nan.npz.*NaN or Inf"):
        load_dataset(_npz(tmp_path / "nan.npz", x=x, y=np.repeat([0, 1, 2], 10)))


def test_npz_header_shape_beyond_the_member_refused_before_allocating(tmp_path):
    path = tmp_path / "liar.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 28, 28)}
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + bytes(800))
        y = io.BytesIO()
        np.save(y, np.zeros(3, np.int64))
        zf.writestr("y.npy", y.getvalue())
    with pytest.raises(
        ConvlensError,
        match=r"array 'x' declares shape \(1000000000, 28, 28\) of float64 \(6272000000000 bytes\) but holds only 800 bytes",
    ):
        load_dataset(f"npz:{path}")


def test_npz_member_over_the_byte_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "MAX_DATA_BYTES", 1000)
    spec = _npz(tmp_path / "ok.npz", x=np.zeros((30, 6, 6), np.float32), y=np.repeat([0, 1, 2], 10))
    with pytest.raises(
        ConvlensError,
        match=r"array 'x': \d+ bytes of data, over the limit of 1000 bytes \(MAX_DATA_BYTES",
    ):
        load_dataset(spec)


def test_npz_value_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DATASET_VALUES", 500)
    spec = _npz(tmp_path / "ok.npz", x=_images(), y=np.repeat([0, 1, 2], 10))
    with pytest.raises(
        ConvlensError,
        match=r"array 'x'.*750 pixel values, over the limit of 500 \(MAX_DATASET_VALUES",
    ):
        load_dataset(spec)


def test_npz_that_is_not_a_zip(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(ConvlensError, match=r"bad.npz'?: cannot read"):
        load_dataset(f"npz:{p}")


# ----------------------------------------------------------------------------- CIFAR, labels in general
def test_cifar_negative_labels_and_file_cap(tmp_path, monkeypatch):
    import pickle

    batch = {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0, 1] * 9 + [-1, 1]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(
        ConvlensError, match=r"data_batch_1'?: labels must be 0..n-1, found a negative label -1"
    ):
        load_dataset(f"cifar:{tmp_path}")
    monkeypatch.setattr(loaders, "MAX_DATA_BYTES", 1000)
    with pytest.raises(
        ConvlensError, match=r"data_batch_1'?: \d+ bytes of data, over the limit of 1000 bytes"
    ):
        load_dataset(f"cifar:{tmp_path}")


def test_from_unit_range_checks_labels_against_classes():
    x = np.random.default_rng(0).random((30, 5, 5))
    with pytest.raises(
        ConvlensError, match=r"labels must be 0\.\.1 for its 2 classes, found label 2"
    ):
        from_unit_range("t", x, np.repeat([0, 1, 2], 10), ["a", "b"], "s", "r", 0)
    with pytest.raises(ConvlensError, match="negative label -1"):
        from_unit_range("t", x, np.repeat([0, 1, -1], 10), ["a", "b"], "s", "r", 0)
    with pytest.raises(ConvlensError, match="t: 0 images"):
        from_unit_range("t", x[:0], np.zeros(0, np.int64), ["a", "b"], "s", "r", 0)
    x[3, 3, 3] = np.nan
    with pytest.raises(ConvlensError, match="t: 1 of 750 pixel values are NaN or Inf"):
        from_unit_range("t", x, np.repeat([0, 1, 2], 10), ["a", "b", "c"], "s", "r", 0)


# ----------------------------------------------------------------------------- images
def _folder_of_pngs(root, classes=2, per_class=3, size=5):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size, size)).astype(np.uint8)
            Image.fromarray(arr).save(root / f"c{c}" / f"{i}.png")


def test_image_folder_total_pixel_cap(tmp_path, monkeypatch):
    _folder_of_pngs(tmp_path / "imgs")
    monkeypatch.setattr(datasets, "MAX_DATASET_VALUES", 60)
    with pytest.raises(
        ConvlensError,
        match=r"imgs'? \(at 2\.png\): 75 pixel values, over the limit of 60 \(MAX_DATASET_VALUES",
    ):
        load_dataset(str(tmp_path / "imgs"))


def test_image_with_nan_pixels_refused_naming_the_file(tmp_path):
    from PIL import Image

    arr = np.ones((6, 6), np.float32)
    arr[2, 2] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ConvlensError, match=r"nan\.tif'? contains NaN or Inf pixels"):
        load_image(str(tmp_path / "nan.tif"))
    np.save(tmp_path / "inf.npy", np.full((4, 4), np.inf))
    with pytest.raises(ConvlensError, match=r"inf\.npy"):
        load_image(str(tmp_path / "inf.npy"))


def test_image_pixel_cap_keeps_its_hint(tmp_path):
    _folder_of_pngs(tmp_path / "imgs")
    with pytest.raises(
        ConvlensError,
        match=r"^image .* over the cap of 10 \(max_pixels; default DEFAULT_MAX_PIXELS",
    ) as info:
        load_image(str(tmp_path / "imgs" / "c0" / "0.png"), max_pixels=10)
    assert info.value.hint_key == "pixel_cap"


def test_ood_set_size_checked_before_drawing(monkeypatch):
    from convlens.data.datasets import load_bundled
    from convlens.data.ood import make_ood

    faces = load_bundled("faces")
    with pytest.raises(
        ConvlensError,
        match=r"OOD set 'noise' of 1000000000 images 1x25x25: 625000000000 pixel values, over the limit of 268435456 \(MAX_DATASET_VALUES",
    ):
        make_ood("noise", faces, 10**9)
    with pytest.raises(ConvlensError, match="size must be an integer >= 0"):
        make_ood("noise", faces, -1)


# ----------------------------------------------------------------------------- null size
def test_null_size_cap():
    w = {"conv.weight": np.random.default_rng(0).standard_normal((2, 1, 3, 3))}
    with pytest.raises(
        ConvlensError, match=r"null size 100000000 is outside 1\.\.200000 \(MAX_NULL_SIZE"
    ):
        analyze_weights(w, n_null=10**8)
    with pytest.raises(ConvlensError, match="null size 0 is outside"):
        analyze_weights(w, n_null=0)
    with pytest.raises(ConvlensError, match="MAX_NULL_SIZE"):
        matching.random_null(3, matching.MAX_NULL_SIZE + 1)
    assert matching.MAX_NULL_SIZE == 200_000


def test_null_size_cap_checked_before_loading(tmp_path):
    p = tmp_path / "m.safetensors"
    save_file({"conv.weight": np.ones((2, 1, 3, 3), np.float32)}, str(p))
    with pytest.raises(ConvlensError, match="MAX_NULL_SIZE"):
        analyze_model_file(p, n_null=10**8)
    with pytest.raises(ConvlensError, match="MAX_NULL_SIZE"):
        analyze_run(tmp_path, n_null=10**8)
    with pytest.raises(ConvlensError, match="seed must be"):
        analyze_model_file(p, seed=-1)


# ----------------------------------------------------------------------------- weights
def _weights_file(tmp_path, **tensors):
    p = tmp_path / "m.safetensors"
    save_file({f"{k}.weight": v.astype(np.float32) for k, v in tensors.items()}, str(p))
    return p


def test_nan_weights_reported_per_layer_and_the_rest_analysed(tmp_path):
    rng = np.random.default_rng(0)
    bad = rng.standard_normal((8, 1, 5, 5))
    bad.flat[[3, 40, 77]] = [np.nan, np.inf, -np.inf]
    p = _weights_file(tmp_path, conv1=bad, conv2=rng.standard_normal((8, 8, 3, 3)))
    res = analyze_model_file(p, n_null=200)
    assert res.layer("conv1").matching is None
    assert res.layer("conv2").matching is not None
    assert res.layer("conv2").matching.fraction_above_null95 is not None
    assert [(e.stage, e.message) for e in res.errors] == [
        ("matching", "layer conv1: 3 of 200 weights are NaN or Inf; not analysed")
    ]
    assert res.headline.first_layer_fraction_above_null95 is None
    back = AnalysisResult.from_json(res.to_json())
    assert back.errors == res.errors


def test_all_weights_nan_is_an_error(tmp_path):
    p = _weights_file(
        tmp_path, conv1=np.full((4, 1, 3, 3), np.nan), conv2=np.full((4, 4, 3, 3), np.inf)
    )
    with pytest.raises(
        ConvlensError,
        match=r"every conv layer's weights hold NaN or Inf; nothing to analyse \(layer conv1: 36 of 36",
    ):
        analyze_model_file(p, n_null=200)
    with pytest.raises(ConvlensError, match="NaN or Inf"):
        matching.match_layer("conv1", np.full((4, 1, 3, 3), np.nan), n_null=100)


def test_even_kernels_are_matched_not_a_traceback(tmp_path):
    rng = np.random.default_rng(0)
    p = _weights_file(
        tmp_path, conv1=rng.standard_normal((8, 1, 4, 4)), conv2=rng.standard_normal((8, 8, 3, 3))
    )
    res = analyze_model_file(p, n_null=200)
    m1 = res.layer("conv1").matching
    assert m1 is not None and m1.skipped is None  # even sizes have a sampled bank (issue 14)
    assert m1.kernel_size == 4 and m1.n_kernels == 8 and m1.units is not None
    assert res.layer("conv2").matching.skipped is None
    assert res.headline.null_p95 is not None
    assert len(matching.random_null(4, 100)) == 100
    assert matching.has_bank(4) and matching.has_bank(5) and not matching.has_bank(1)


def build_even() -> nn.Module:
    """A factory with a 4x4 first layer (imported by name as ``tests.test_limits:build_even``)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 10),
    )


def test_even_kernels_through_factory_with_data(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(0)
    save_torch(build_even().state_dict(), str(tmp_path / "even.safetensors"))
    res = analyze_model_file(
        tmp_path / "even.safetensors",
        factory="tests.test_limits:build_even",
        data="digits",
        ood=["noise"],
        n_null=200,
    )
    assert res.first_layer.matching.skipped is None and res.first_layer.matching.kernel_size == 4
    assert res.first_layer.check is not None and res.first_layer.check.is_cross_correlation
    assert res.layers[1].matching.fraction_above_null95 is not None


def test_zero_channel_conv_is_skipped(tmp_path):
    p = tmp_path / "m.safetensors"
    rng = np.random.default_rng(0)
    save_file(
        {
            "conv1.weight": np.zeros((0, 1, 3, 3), np.float32),
            "conv2.weight": rng.standard_normal((4, 0, 3, 3)).astype(np.float32),
            "conv3.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
        },
        str(p),
    )
    res = analyze_model_file(p, n_null=200)
    assert (
        res.layer("conv1").matching.skipped
        == "no kernels: weight shape 0x1x3x3 has a zero dimension"
    )
    assert (
        res.layer("conv2").matching.skipped
        == "no kernels: weight shape 4x0x3x3 has a zero dimension"
    )
    assert res.layer("conv3").matching.skipped is None
    AnalysisResult.from_json(res.to_json())


def test_evolution_of_a_4x4_first_layer():
    rng = np.random.default_rng(0)
    snaps = {e: {"c.weight": rng.standard_normal((2, 1, 4, 4)).astype(np.float32)} for e in (0, 1)}
    ev = evolution(snaps, {"c": "c.weight"}, "c", np.zeros(0))
    assert ev.null_p95 is None
    assert [r.first_layer_fraction_above_null95 for r in ev.epochs] == [None, None]


# ----------------------------------------------------------------------------- ONNX
def _onnx_with_weight(path, weight_init):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight_init],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_string_typed_weight_refused(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from convlens.analysis.model.loading import load_weights

    init = helper.make_tensor("w", TensorProto.STRING, [1, 1, 1, 1], [b"x"])
    p = _onnx_with_weight(tmp_path / "s.onnx", init)
    with pytest.raises(
        ConvlensError, match=r"tensor 'w' has element type 8; expected a float tensor"
    ):
        load_weights(p)


def test_onnx_oversized_declared_dims_refused(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto

    from convlens.analysis.model.loading import load_weights

    init = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[100_000, 100_000, 3, 3])
    p = _onnx_with_weight(tmp_path / "big.onnx", init)
    with pytest.raises(
        ConvlensError,
        match=r"declares dims \[100000, 100000, 3, 3\] \(90000000000 values\), over the limit of 268435456 \(MAX_WEIGHT_VALUES",
    ):
        load_weights(p)
    init = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 1, 3, 3], raw_data=b"\0" * 8)
    p = _onnx_with_weight(tmp_path / "short.onnx", init)
    with pytest.raises(
        ConvlensError,
        match=r"tensor 'w' (cannot be decoded|declares dims \[4, 1, 3, 3\] but holds)",
    ):
        load_weights(p)


# ----------------------------------------------------------------------------- run directories
@pytest.mark.parametrize(
    "rel",
    [
        "model.safetensors",
        "snapshots/epoch-001.safetensors",
        "probes/inputs.safetensors",
        "probes/epoch-002.safetensors",
    ],
)
def test_corrupt_safetensors_in_a_run_dir_named(tiny_run_copy, rel):
    target = tiny_run_copy / rel
    if rel.startswith("probes/epoch-"):
        # runs with snapshots derive their probe maps (analysis/measure/probemaps.py); a probe file that
        # is there (older runs, runs without snapshots) is read first, so plant one
        assert not target.exists()
        target.write_bytes((tiny_run_copy / "probes/inputs.safetensors").read_bytes())
    assert target.is_file()
    target.write_bytes(target.read_bytes()[:50])
    with pytest.raises(ConvlensError, match=rf"{target.name}'? is not a valid safetensors file"):
        analyze_run(tiny_run_copy, n_null=200)


def test_misshapen_snapshot_and_probe_files(tmp_path):
    (tmp_path / "snapshots").mkdir()
    save_file(
        {"c.weight": np.zeros((2, 1, 3, 3), np.float32)},
        str(tmp_path / "snapshots/epoch-000.safetensors"),
    )
    save_file(
        {"c.weight": np.zeros((2, 1, 5, 5), np.float32)},
        str(tmp_path / "snapshots/epoch-001.safetensors"),
    )
    with pytest.raises(
        ConvlensError,
        match=r"epoch-001.safetensors'?: holds tensors c.weight 2x1x5x5, but the first snapshot holds c.weight 2x1x3x3",
    ):
        read.snapshots(tmp_path)
    (tmp_path / "probes").mkdir()
    save_file(
        {"x": np.zeros((3, 1, 5, 5), np.float32)}, str(tmp_path / "probes/inputs.safetensors")
    )
    save_file(
        {"c": np.zeros((2, 2, 5, 5), np.float32)}, str(tmp_path / "probes/epoch-000.safetensors")
    )
    with pytest.raises(
        ConvlensError,
        match=r"epoch-000.safetensors'?: feature maps 'c' have shape \(2, 2, 5, 5\), expected \(3, C, H, W\)",
    ):
        load_probes(tmp_path / "probes")
    save_file(
        {"c": np.zeros((3, 2, 5, 5), np.float32)}, str(tmp_path / "probes/epoch-000.safetensors")
    )
    save_file(
        {"c": np.zeros((3, 2, 5, 5), np.float32)}, str(tmp_path / "probes/epoch-x.safetensors")
    )
    with pytest.raises(ConvlensError, match=r"expected a file named epoch-NNN.safetensors"):
        load_probes(tmp_path / "probes")


# ----------------------------------------------------------------------------- analysis.json
def test_result_reading_limits(tmp_path, monkeypatch, tiny_run_analysis):
    from convlens.analysis.result import io as result_io

    p = tmp_path / "analysis.json"
    p.write_text(tiny_run_analysis.to_json())
    assert AnalysisResult.read(p).layers
    monkeypatch.setattr(result_io, "MAX_RESULT_BYTES", 100)
    with pytest.raises(
        ConvlensError,
        match=r"analysis.json'? is \d+ bytes, over the limit of 100 for a convlens result \(MAX_RESULT_BYTES",
    ):
        AnalysisResult.read(p)
    monkeypatch.undo()
    for text, message in [
        ("[" * 200_000, "nested too deeply"),
        ('{"schema_version": ' + "9" * 5000 + "}", "not valid JSON"),
        ('{"schema_version": NaN}', "holds NaN, which is not JSON"),
    ]:
        p.write_text(text)
        with pytest.raises(ConvlensError, match=message):
            AnalysisResult.read(p)


def test_nan_weights_with_a_factory_skip_the_stages_that_run_the_model(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    from tests.factory_model import build

    torch.manual_seed(0)
    state = build().state_dict()
    state["3.weight"][1, 2, 0, 0] = float("nan")
    save_torch(state, str(tmp_path / "m.safetensors"))
    res = analyze_model_file(
        tmp_path / "m.safetensors",
        factory="tests.factory_model:build",
        data="digits",
        ood=["noise"],
        n_null=200,
    )
    assert [(e.stage, e.message) for e in res.errors] == [
        ("matching", "layer 3: 1 of 144 weights are NaN or Inf; not analysed"),
        ("verify", "layer 3: weights hold NaN or Inf; not verified"),
        (
            "distribution",
            "not run: layer(s) 3 hold NaN or Inf weights, so the activations from them on are undefined",
        ),
    ]
    assert res.layer("0").matching is not None and res.layer("0").check is not None
    assert res.layer("3").check is None and res.distribution is None
    AnalysisResult.from_json(res.to_json())


def test_nan_weights_in_a_run(tiny_run_copy):
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    path = tiny_run_copy / "model.safetensors"
    state = load_torch(str(path))
    second = sorted(k for k, v in state.items() if k.endswith("weight") and v.ndim == 4)[1]
    state[second].view(-1)[:5] = float("inf")
    save_torch(state, str(path))
    res = analyze_run(tiny_run_copy, n_null=200)
    name = second.removesuffix(".weight")
    assert res.layer(name).matching is None
    assert res.first_layer.matching is not None
    assert {e.stage for e in res.errors} == {
        "verify",
        "matching",
        "distribution",
        "receptive_fields",
    }
    assert res.distribution is None and res.receptive_fields is None
    AnalysisResult.from_json(res.to_json())
    for k, v in state.items():
        if k.endswith("weight") and v.ndim == 4:
            v.view(-1)[0] = float("nan")
    save_torch(state, str(path))
    with pytest.raises(ConvlensError, match="every conv layer's weights hold NaN or Inf"):
        analyze_run(tiny_run_copy, n_null=200)


def test_nan_weights_in_an_onnx_model_with_data(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from tests.test_analysis import _onnx_digits_model

    _onnx_digits_model(tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "W2":
            arr = numpy_helper.to_array(init).copy()
            arr[0, 0, 0, 0] = np.nan
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, "W2"))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    res = analyze_model_file(tmp_path / "nan.onnx", data="digits", ood=["noise"], n_null=200)
    assert [e.stage for e in res.errors] == ["matching", "verify", "distribution"]
    assert res.errors[0].message == "layer conv2: 1 of 72 weights are NaN or Inf; not analysed"
    assert res.layer("conv1").matching is not None and res.distribution is None
    AnalysisResult.from_json(res.to_json())


def test_a_model_whose_only_conv_layers_are_zero_sized_is_refused_like_an_all_nan_one(tmp_path):
    # one rule (reliability round 3): nothing real to analyse is an error, whether the weights are
    # zero-sized or NaN; some such layers among real ones are skipped and named (above)
    from convlens.errors import ConvlensError

    p = tmp_path / "m.safetensors"
    save_file({"conv1.weight": np.zeros((0, 1, 3, 3), np.float32)}, str(p))
    with pytest.raises(ConvlensError, match="no conv layer has weights to analyse") as e:
        analyze_model_file(p, n_null=200)
    assert "conv1: zero-sized weight (0, 1, 3, 3)" in str(e.value)
    mixed = tmp_path / "mixed.safetensors"
    save_file(
        {
            "conv1.weight": np.zeros((0, 1, 3, 3), np.float32),
            "conv2.weight": np.full((4, 1, 3, 3), np.nan, np.float32),
        },
        str(mixed),
    )
    with pytest.raises(ConvlensError, match="zero-sized or holds NaN/Inf"):
        analyze_model_file(mixed, n_null=200)
