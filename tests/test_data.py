"""Bundled datasets, OOD sets and user-data loaders, including bad input."""

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from convlens.data.datasets import load_bundled, stratified_splits
from convlens.data.loaders import load_dataset, read_idx
from convlens.data.ood import OOD_NAMES, default_ood_names, make_ood
from convlens.errors import ConvlensError


def test_faces_split_is_stratified_and_deterministic():
    a, b = load_bundled("faces", 7), load_bundled("faces", 7)
    assert a.x.shape == (200, 1, 25, 25) and a.x.dtype == np.float32
    for split in ("train", "val", "test"):
        assert (a.splits[split] == b.splits[split]).all()
        y = a.split(split)[1]
        assert (y == 0).sum() == (y == 1).sum()
    assert not np.array_equal(load_bundled("faces", 8).splits["test"], a.splits["test"])
    all_idx = np.concatenate(list(a.splits.values()))
    assert sorted(all_idx.tolist()) == list(range(200))
    x_train = a.split("train")[0]
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-4


def test_digits():
    d = load_bundled("digits", 0)
    assert d.x.shape == (1797, 1, 8, 8) and len(d.classes) == 10
    assert d.normalisation["to_unit_range"] == "pixel / 16 (values 0..16)"


@pytest.mark.parametrize("name", [n for n in OOD_NAMES if n != "faces"])
def test_ood_sets_match_training_format(name):
    faces = load_bundled("faces", 0)
    s = make_ood(name, faces, n=10, seed=0)
    assert s.x.shape == (10, 1, 25, 25) and s.x.dtype == np.float32
    assert np.isfinite(s.x).all()
    assert "standardised with the faces training mean/std" in s.description
    again = make_ood(name, faces, n=10, seed=0)
    assert np.array_equal(s.x, again.x)


def test_faces_as_ood_for_digits():
    s = make_ood("faces", load_bundled("digits", 0), n=5)
    assert s.x.shape == (5, 1, 8, 8)


def _png(path, value, size=(6, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)


def test_image_folder(tmp_path):
    for i in range(5):
        _png(tmp_path / "data" / "cats" / f"{i}.png", 10 * i)
        _png(tmp_path / "data" / "dogs" / f"{i}.png", 200 + 10 * i)
    d = load_dataset(str(tmp_path / "data"))
    assert d.classes == ["cats", "dogs"] and d.x.shape == (10, 1, 6, 6)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no images found"),
        ("one_class", "only one class"),
        ("mixed", "different sizes"),
        ("corrupt", "not an image file"),
    ],
)
def test_image_folder_bad(tmp_path, setup, message):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    if setup == "one_class":
        for i in range(3):
            _png(root / "a" / f"{i}.png", i)
    elif setup == "mixed":
        for i in range(3):
            _png(root / "a" / f"{i}.png", i)
            _png(root / "b" / f"{i}.png", i, size=(7, 6))
    elif setup == "corrupt":
        for i in range(3):
            _png(root / "a" / f"{i}.png", i)
        (root / "b" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ConvlensError, match=message):
        load_dataset(str(root))


def _idx(path, arr, code=0x08, gz=False, magic_ok=True):
    header = bytes([0, 0, code if magic_ok else 0x42, arr.ndim]) + struct.pack(
        f">{arr.ndim}I", *arr.shape
    )
    data = header + arr.astype(">u1").tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 5, 5)).astype(np.uint8)
    y = np.repeat(np.arange(3), 10).astype(np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", x, gz=True)
    _idx(tmp_path / "train-labels-idx1-ubyte", y)
    _idx(tmp_path / "t10k-images-idx3-ubyte", x[:9])
    _idx(tmp_path / "t10k-labels-idx1-ubyte", y[:9])
    d = load_dataset(f"idx:{tmp_path}")
    assert d.x.shape == (39, 1, 5, 5)
    assert len(d.splits["test"]) == 9 and d.splits["test"].min() == 30
    assert (read_idx(tmp_path / "train-images-idx3-ubyte.gz") == x).all()


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("magic", "wrong magic number"),
        ("truncated", "truncated"),
        ("count", "30 train images but 29 labels"),
    ],
)
def test_idx_bad(tmp_path, problem, message):
    x = np.zeros((30, 5, 5), dtype=np.uint8)
    y = np.zeros(30 if problem != "count" else 29, dtype=np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte", x, magic_ok=problem != "magic")
    _idx(tmp_path / "train-labels-idx1-ubyte", y)
    if problem == "truncated":
        p = tmp_path / "train-images-idx3-ubyte"
        p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ConvlensError, match=message):
        load_dataset(f"idx:{tmp_path}")


def test_cifar_batches_and_malicious_pickle(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2):
        batch = {
            b"data": rng.integers(0, 256, size=(20, 3072)).astype(np.uint8),
            b"labels": [0, 1] * 10,
        }
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    d = load_dataset(f"cifar:{tmp_path}")
    assert d.x.shape == (40, 3, 32, 32)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    (evil_dir / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ConvlensError, match="refusing to unpickle"):
        load_dataset(f"cifar:{evil_dir}")
    assert not marker.exists()


def test_npz(tmp_path):
    x = np.random.default_rng(0).random((30, 6, 6)).astype(np.float32)
    y = np.repeat([0, 1, 2], 10)
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    assert load_dataset(f"npz:{tmp_path / 'ok.npz'}").x.shape == (30, 1, 6, 6)
    x[3, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    with pytest.raises(ConvlensError, match="NaN"):
        load_dataset(f"npz:{tmp_path / 'nan.npz'}")
    np.savez(tmp_path / "count.npz", x=x[:29], y=y)
    with pytest.raises(ConvlensError, match="29 images but 30 labels"):
        load_dataset(f"npz:{tmp_path / 'count.npz'}")
    np.savez(tmp_path / "keys.npz", images=x)
    with pytest.raises(ConvlensError, match="needs arrays 'x' and 'y'"):
        load_dataset(f"npz:{tmp_path / 'keys.npz'}")


def test_stratified_split_needs_three_per_class():
    with pytest.raises(ConvlensError, match="at least 3"):
        stratified_splits(np.array([0, 0, 0, 1]), 0)


@pytest.mark.parametrize("train_set", ["faces", "digits"])
def test_make_ood_first_members_are_the_prefix_of_the_whole_set(train_set):
    ds = load_bundled(train_set, 0)
    for name in default_ood_names(ds):
        whole = make_ood(name, ds, 12, seed=3)
        part = make_ood(name, ds, 12, seed=3, first=5)
        np.testing.assert_array_equal(part.x, whole.x[:5], err_msg=name)
        assert part.to_dict() == whole.to_dict()  # records the recipe's size, 12
        none = make_ood(name, ds, 12, seed=3, first=0)
        assert none.x.shape == (0, *ds.shape) and none.to_dict()["n"] == 12


def test_channels_last_npz_is_transposed_and_says_so(tmp_path):
    # real models round 2: (N, 224, 224, 3) data for an NHWC model were read as 224 channels
    from convlens.data.loaders import load_dataset

    rng = np.random.default_rng(0)
    x = rng.random((12, 10, 9, 3)).astype(np.float32)
    y = np.repeat([0, 1], 6)
    np.savez(tmp_path / "nhwc.npz", x=x, y=y)
    np.savez(tmp_path / "nchw.npz", x=np.moveaxis(x, -1, 1), y=y)
    a = load_dataset(f"npz:{tmp_path / 'nhwc.npz'}", 0)
    b = load_dataset(f"npz:{tmp_path / 'nchw.npz'}", 0)
    assert a.shape == b.shape == (3, 10, 9)
    assert np.array_equal(a.x, b.x)
    assert "read as (N, H, W, C)" in a.source and "read as" not in b.source
    grey = rng.random((12, 3, 8, 1)).astype(np.float32)  # both axes could be channels: first wins
    np.savez(tmp_path / "amb.npz", x=grey, y=y)
    assert load_dataset(f"npz:{tmp_path / 'amb.npz'}", 0).shape == (3, 8, 1)
