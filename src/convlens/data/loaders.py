"""Loaders for the user's data. Nothing here executes code from a file.

- ``PATH`` (a folder): one sub-folder per class, images inside (grey; all the same size — mixed
  sizes are refused with the sizes found, so nothing is silently resized).
- ``idx:DIR``: MNIST / Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, optional ``t10k-*`` used as the test split).
- ``cifar:DIR``: CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``), read with a
  restricted unpickler that only rebuilds plain containers, bytes and numpy arrays.
- ``npz:FILE``: arrays ``x`` (N, H, W) or (N, C, H, W) and ``y`` (N,), ``allow_pickle=False``.

Pixels are mapped to [0, 1] by a recorded rule (integers / dtype max; floats used as is) and then
standardised with the training split's mean/std (see :mod:`convlens.data.datasets`).
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from convlens.data.datasets import (
    BUNDLED,
    Dataset,
    from_unit_range,
    load_bundled,
    stratified_splits,
)
from convlens.data.images import load_image
from convlens.errors import ConvlensError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def load_dataset(spec: str, seed: int = 0) -> Dataset:
    """``faces`` / ``digits`` / ``PATH`` / ``idx:DIR`` / ``cifar:DIR`` / ``npz:FILE``."""
    if spec in BUNDLED:
        return load_bundled(spec, seed)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "idx":
        return load_idx(rest, seed)
    if sep and kind == "cifar":
        return load_cifar(rest, seed)
    if sep and kind == "npz":
        return load_npz(rest, seed)
    path = Path(spec)
    if path.is_dir():
        return load_image_folder(path, seed)
    raise ConvlensError(
        f"dataset {spec!r}: expected faces, digits, a folder of class sub-folders, idx:DIR, cifar:DIR or npz:FILE",
        hint_key="unknown_dataset",
    )


def _to_unit(x: NDArray[Any], what: str) -> tuple[NDArray[np.float64], str]:
    if x.dtype.kind in "iu":
        top = np.iinfo(x.dtype).max
        return x.astype(np.float64) / top, f"{x.dtype} / {top}"
    if x.dtype.kind == "f":
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise ConvlensError(f"{what}: images contain NaN or Inf")
        return xf, "float used as is"
    if x.dtype == bool:
        return x.astype(np.float64), "bool -> 0/1"
    raise ConvlensError(f"{what}: unsupported pixel dtype {x.dtype}")


def load_image_folder(root: Path, seed: int) -> Dataset:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for ci, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append((f, ci))
    if not files:
        raise ConvlensError(
            f"{str(root)!r}: no images found (expected one sub-folder per class with image files)"
        )
    used = sorted({ci for _, ci in files})
    if len(used) < 2:
        raise ConvlensError(
            f"{str(root)!r}: images for only one class ({classes[used[0]]!r}); need at least two class folders"
        )
    images, labels = [], []
    sizes: dict[tuple[int, int], list[str]] = {}
    for f, ci in files:
        img = load_image(str(f))  # raises a clear error for corrupt files
        images.append(img.pixels)
        labels.append(ci)
        sizes.setdefault(img.pixels.shape, []).append(f.name)
    if len(sizes) > 1:
        found = "; ".join(f"{h}x{w}: {len(v)} (e.g. {v[0]})" for (h, w), v in sizes.items())
        raise ConvlensError(
            f"{str(root)!r}: images have different sizes ({found}); resize them to one size first"
        )
    return from_unit_range(
        root.name,
        np.stack(images),
        np.array(labels),
        [classes[i] for i in range(len(classes))],
        f"image folder {str(root)!r}: {len(files)} images",
        "per image: see convlens.data.images (grey, / dtype max)",
        seed,
        extra={"files": len(files)},
    )


def _open_maybe_gz(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ConvlensError(f"{str(path)!r}: corrupt gzip data: {exc}") from None
    return raw


def read_idx(path: Path) -> NDArray[Any]:
    """Parse one IDX file (magic 0x0000TTDD: type TT, DD dimensions; big-endian sizes)."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConvlensError(f"{str(path)!r}: not an IDX file (wrong magic number {data[:4].hex()})")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = data[2], data[3]
    if code not in dtypes or ndim < 1:
        raise ConvlensError(f"{str(path)!r}: not an IDX file (wrong magic number {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConvlensError(f"{str(path)!r}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(dtypes[code])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header < need:
        raise ConvlensError(
            f"{str(path)!r}: truncated: dims {dims} need {need} bytes, found {len(data) - header}"
        )
    return (
        np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=header)
        .reshape(dims)
        .astype(dtype.newbyteorder("="))
    )


def _find(root: Path, stem: str) -> Path | None:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (root / name).is_file():
            return root / name
    return None


def load_idx(folder: str, seed: int) -> Dataset:
    root = Path(folder)
    if not root.is_dir():
        raise ConvlensError(f"idx:{folder!r} is not a folder")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ip, lp = (
            _find(root, f"{prefix}-images-idx3-ubyte"),
            _find(root, f"{prefix}-labels-idx1-ubyte"),
        )
        if ip is None or lp is None:
            if split == "train":
                raise ConvlensError(
                    f"idx:{folder!r}: needs train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"
                )
            continue
        x, y = read_idx(ip), read_idx(lp)
        if x.ndim != 3 or y.ndim != 1:
            raise ConvlensError(
                f"idx:{folder!r}: expected images (N, H, W) and labels (N,), got {x.shape} and {y.shape}"
            )
        if len(x) != len(y):
            raise ConvlensError(f"idx:{folder!r}: {len(x)} {prefix} images but {len(y)} labels")
        parts[split] = (x, y.astype(np.int64))
    return _with_optional_test(f"idx:{root.name}", parts, f"IDX files in {str(root)!r}", seed)


def _with_optional_test(
    name: str, parts: dict[str, tuple[NDArray[Any], NDArray[np.int64]]], source: str, seed: int
) -> Dataset:
    x_tr, y_tr = parts["train"]
    if "test" in parts:
        x_te, y_te = parts["test"]
        x = np.concatenate([x_tr, x_te])
        y = np.concatenate([y_tr, y_te])
        inner = stratified_splits(y_tr, seed, (0.85, 0.15, 0.0))
        splits = {
            "train": inner["train"],
            "val": inner["val"],
            "test": np.arange(len(x_tr), len(x), dtype=np.int64),
        }
    else:
        x, y, splits = x_tr, y_tr, None
    x01, rule = _to_unit(x, name)
    n_classes = int(y.max()) + 1
    return from_unit_range(
        name, x01, y, [str(i) for i in range(n_classes)], source, rule, seed, splits
    )


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and plain containers; any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise ConvlensError(
            f"refusing to unpickle {module}.{name}: only CIFAR-style data batches are read"
        )


def _read_cifar_batch(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    try:
        d = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except ConvlensError:
        raise
    except Exception as exc:
        raise ConvlensError(f"{str(path)!r}: not a CIFAR python batch: {exc}") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ConvlensError(
            f"{str(path)!r}: not a CIFAR python batch (expected keys b'data' and b'labels')"
        )
    x = np.asarray(d[b"data"])
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise ConvlensError(
            f"{str(path)!r}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}"
        )
    return x.reshape(-1, 3, 32, 32).astype(np.uint8), y


def load_cifar(folder: str, seed: int) -> Dataset:
    root = Path(folder)
    batches = sorted(root.glob("data_batch_*"))
    if not root.is_dir() or not batches:
        raise ConvlensError(
            f"cifar:{folder!r}: expected a folder with data_batch_1 ... data_batch_5"
        )
    xs, ys = zip(*(_read_cifar_batch(b) for b in batches), strict=True)
    parts = {"train": (np.concatenate(xs), np.concatenate(ys))}
    if (root / "test_batch").is_file():
        parts["test"] = _read_cifar_batch(root / "test_batch")
    return _with_optional_test(
        f"cifar:{root.name}", parts, f"CIFAR python batches in {str(root)!r}", seed
    )


def load_npz(file: str, seed: int) -> Dataset:
    path = Path(file)
    if not path.is_file():
        raise ConvlensError(f"npz:{file!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise ConvlensError(
                    f"npz:{file!r}: needs arrays 'x' and 'y', found {', '.join(z.files) or 'none'}"
                )
            x, y = z["x"], z["y"]
    except (ValueError, OSError) as exc:
        raise ConvlensError(f"npz:{file!r}: cannot read: {exc}") from None
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ConvlensError(
            f"npz:{file!r}: y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}"
        )
    if len(x) != len(y):
        raise ConvlensError(f"npz:{file!r}: {len(x)} images but {len(y)} labels")
    if y.min() < 0:
        raise ConvlensError(f"npz:{file!r}: labels must be >= 0, found {int(y.min())}")
    x01, rule = _to_unit(x, f"npz:{file!r}")
    n_classes = int(y.max()) + 1
    return from_unit_range(
        f"npz:{path.stem}",
        x01,
        y.astype(np.int64),
        [str(i) for i in range(n_classes)],
        f"arrays x, y in {str(path)!r}",
        rule,
        seed,
    )
