"""Loaders for the user's data. Nothing here executes code from a file.

- ``PATH`` (a folder): one sub-folder per class, images inside (grey; all the same size — mixed
  sizes are refused with the sizes found, so nothing is silently resized).
- ``idx:DIR``: MNIST / Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, optional ``t10k-*`` used as the test split).
- ``cifar:DIR``: CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``), read with a
  restricted unpickler that only rebuilds plain containers, bytes and numpy arrays.
- ``npz:FILE``: arrays ``x`` (N, H, W) or (N, C, H, W) and ``y`` (N,), ``allow_pickle=False``; also
  ``(N, C, L)`` signals for a 1-D model (held as ``(N, 1, C, L)``) and ``(N, C, D, H, W)`` volumes.

Pixels are mapped to [0, 1] by a recorded rule (integers / dtype max; floats used as is) and then
standardised with the training split's mean/std (see :mod:`convlens.data.datasets`).
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from convlens._npy import read_npy_header
from convlens.data.datasets import (
    BUNDLED,
    Dataset,
    check_dataset_size,
    check_labels,
    from_unit_range,
    load_bundled,
    stratified_splits,
)
from convlens.data.images import load_image
from convlens.errors import ConvlensError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}

MAX_DATA_BYTES = 1 << 30
"""Most bytes read from one data file (an IDX file after gzip decompression, a CIFAR batch, one
array of an ``.npz``): 1 GiB. Checked against the sizes a file declares before reading them, and
gzip data is decompressed as a stream that never goes past what the header declares."""


def _over_data_limit(what: str, n_bytes: int) -> ConvlensError:
    return ConvlensError(
        f"{what}: {n_bytes} bytes of data, over the limit of {MAX_DATA_BYTES} bytes "
        "(MAX_DATA_BYTES in convlens.data.loaders)"
    )


def absolute_data_spec(spec: str) -> str:
    """``spec`` with its path made absolute (``DIR``, ``idx:DIR``, ``cifar:DIR``, ``npz:FILE``;
    bundled names unchanged), so a run records data that can be found from any folder."""
    if spec in BUNDLED:
        return spec
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("idx", "cifar", "npz", "stream"):
        return f"{kind}:{Path(rest).expanduser().absolute()}" if rest else spec
    return str(Path(spec).expanduser().absolute()) if Path(spec).is_dir() else spec


def load_dataset(spec: str, seed: int = 0) -> Dataset:
    """``faces`` / ``digits`` / ``signals`` / ``natural`` / ``PATH`` / ``idx:DIR`` / ``cifar:DIR`` / ``npz:FILE`` /
    ``planted:NAME[:DRAW]`` (:mod:`convlens.data.planted`)."""
    if spec in BUNDLED:
        return load_bundled(spec, seed)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "idx":
        return load_idx(rest, seed)
    if sep and kind == "cifar":
        return load_cifar(rest, seed)
    if sep and kind == "npz":
        return load_npz(rest, seed)
    if sep and kind == "planted":
        return load_planted(spec, seed)
    path = Path(spec)
    if path.is_dir():
        return load_image_folder(path, seed)
    raise ConvlensError(
        f"dataset {spec!r}: expected faces, digits, signals, natural, a folder of class sub-folders, idx:DIR, cifar:DIR, npz:FILE or planted:NAME",
        hint_key="unknown_dataset",
    )


def load_planted(spec: str, seed: int) -> Dataset:
    """A planted-truth dataset (:mod:`convlens.data.planted`), split and standardised like the rest."""
    from convlens.data import planted

    name, draw = planted.parse_spec(spec)
    x, y = planted.planted01(name, draw)
    case = planted.CASES[name]
    return from_unit_range(
        spec,
        x,
        y,
        ["class 0", "class 1"],
        f"convlens.data.planted {name!r} draw {draw}: {case.description} (truth: {case.truth})",
        "generated in [0, 1]: clip(0.5 + 0.15 z, 0, 1)",
        seed,
        extra={"planted": name, "draw": draw, "truth": case.truth, "teacher": case.teacher},
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
    total = 0
    for f, ci in files:
        # each image under the per-image pixel cap (checked from its header, before decoding), and
        # all of them together under the dataset's limit
        img = load_image(str(f))  # raises a clear error for corrupt files
        total += img.pixels.size
        check_dataset_size(total, f"{str(root)!r} (at {f.name})")
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


def _read_exact(stream: Any, n: int, path: Path, what: str) -> bytes:
    try:
        data = stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "corrupt gzip data" if isinstance(stream, gzip.GzipFile) else "cannot read"
        raise ConvlensError(f"{str(path)!r}: {kind}: {exc}") from None
    if len(data) < n:
        raise ConvlensError(f"{str(path)!r}: truncated {what}: need {n} bytes, found {len(data)}")
    return bytes(data)


def read_idx(path: Path) -> NDArray[Any]:
    """Parse one IDX file (magic 0x0000TTDD: type TT, DD dimensions; big-endian sizes).

    The declared size is checked against the file (plain files) and against ``MAX_DATA_BYTES`` and
    ``MAX_DATASET_VALUES`` before anything is allocated; gzip data is decompressed as a stream, and
    never past the declared size."""
    with path.open("rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        size = path.stat().st_size
        stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            magic = stream.read(4)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConvlensError(f"{str(path)!r}: corrupt gzip data: {exc}") from None
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
            raise ConvlensError(
                f"{str(path)!r}: not an IDX file (wrong magic number {magic[:4].hex()})"
            )
        dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
        code, ndim = magic[2], magic[3]
        if code not in dtypes or ndim < 1:
            raise ConvlensError(
                f"{str(path)!r}: not an IDX file (wrong magic number {magic[:4].hex()})"
            )
        header = 4 + 4 * ndim
        dims = struct.unpack(f">{ndim}I", _read_exact(stream, 4 * ndim, path, "IDX header"))
        dtype = np.dtype(dtypes[code])
        count = math.prod(dims)
        need = count * dtype.itemsize
        if not gz and size - header < need:
            raise ConvlensError(
                f"{str(path)!r}: truncated: dims {dims} need {need} bytes, found {size - header}"
            )
        if need > MAX_DATA_BYTES:
            raise _over_data_limit(f"{str(path)!r} (dims {dims})", need)
        check_dataset_size(count, f"{str(path)!r} (dims {dims})")
        data = _read_exact(stream, need, path, f"IDX data (dims {dims})")
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(dims)
    if dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ConvlensError(f"{str(path)!r}: {bad} of {count} values are NaN or Inf")
    return arr.astype(dtype.newbyteorder("="))


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
        if y.dtype.kind == "f":
            raise ConvlensError(f"{str(lp)!r}: labels must be integers, got {y.dtype}")
        check_labels(y, str(lp))
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
    n_classes = check_labels(y, name)
    if len(x) == 0:
        raise ConvlensError(f"{name}: 0 images; expected at least three per class")
    x01, rule = _to_unit(x, name)
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
    if path.stat().st_size > MAX_DATA_BYTES:
        raise _over_data_limit(str(path), path.stat().st_size)
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
    try:
        y = np.asarray(d[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConvlensError(f"{str(path)!r}: labels must be a list of integers: {exc}") from None
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise ConvlensError(
            f"{str(path)!r}: expected data (N, 3072) and N labels, got {x.shape} and {y.shape}"
        )
    if len(y):
        check_labels(y, str(path))
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


def _npz_member_header(zf: zipfile.ZipFile, key: str, where: str) -> None:
    """Check array ``key`` of an ``.npz`` from its ``.npy`` header, before numpy allocates it: the
    declared shape x itemsize must fit in the member and under the limits."""
    try:
        info = zf.getinfo(f"{key}.npy")
    except KeyError:
        return  # reported by the caller as a missing array
    if info.file_size > MAX_DATA_BYTES:
        raise _over_data_limit(f"{where}: array {key!r}", info.file_size)
    with zf.open(info) as f:
        try:
            shape, dtype = read_npy_header(f)
        except ValueError as exc:  # bad magic or an unknown format version
            raise ConvlensError(f"{where}: array {key!r}: unreadable .npy header: {exc}") from None
        held = info.file_size - f.tell()
    if dtype.hasobject:
        raise ConvlensError(f"{where}: array {key!r} holds Python objects; expected numbers")
    count = math.prod(shape)
    need = count * dtype.itemsize
    if need > held:
        raise ConvlensError(
            f"{where}: array {key!r} declares shape {shape} of {dtype} ({need} bytes) but holds "
            f"only {held} bytes"
        )
    check_dataset_size(count, f"{where}: array {key!r}")


def load_npz(file: str, seed: int) -> Dataset:
    path = Path(file)
    where = f"npz:{file!r}"
    if not path.is_file():
        raise ConvlensError(f"{where} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            for key in ("x", "y"):
                _npz_member_header(zf, key, where)
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise ConvlensError(
                    f"{where}: needs arrays 'x' and 'y', found {', '.join(z.files) or 'none'}"
                )
            x, y = z["x"], z["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, ConvlensError):
            raise
        raise ConvlensError(f"{where}: cannot read: {exc}") from None
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ConvlensError(
            f"{where}: y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}"
        )
    if x.ndim not in (3, 4, 5):
        raise ConvlensError(
            f"{where}: x must be (N, H, W) or (N, C, L), (N, C, H, W) (or channels last "
            f"(N, H, W, C) with C = 1, 3 or 4) or (N, C, D, H, W), got shape {x.shape}"
        )
    if len(x) != len(y):
        raise ConvlensError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ConvlensError(f"{where}: 0 images; expected at least three per class")
    n_classes = check_labels(y, where)
    x, layout = channels_first(x)
    x01, rule = _to_unit(x, where)
    return from_unit_range(
        f"npz:{path.stem}",
        x01,
        y.astype(np.int64),
        [str(i) for i in range(n_classes)],
        f"arrays x, y in {str(path)!r}{layout}",
        rule,
        seed,
        extra={"x_rank": int(x.ndim)},  # rank 3 is (N, H, W) images or (N, C, L) signals
    )


CHANNEL_COUNTS = (1, 3, 4)
"""Channel counts that mark an axis as the channel axis of an image array (grey, RGB, RGBA)."""


def channels_first(x: NDArray[Any]) -> tuple[NDArray[Any], str]:
    """A rank-4 image array as ``(N, C, H, W)``: an ``(N, H, W, C)`` array (its last axis 1, 3 or 4
    long and its second axis not) is transposed, and the returned text says so; anything else is
    taken as channels first.

    >>> import numpy as np
    >>> channels_first(np.zeros((2, 224, 224, 3)))[0].shape, channels_first(np.zeros((2, 3, 8, 8)))[1]
    ((2, 3, 224, 224), '')
    """
    if x.ndim == 4 and x.shape[-1] in CHANNEL_COUNTS and x.shape[1] not in CHANNEL_COUNTS:
        note = (
            f"; x {tuple(x.shape)} read as (N, H, W, C) (channels last: its last axis is "
            f"{x.shape[-1]} long, its second {x.shape[1]}) and transposed to (N, C, H, W)"
        )
        return np.ascontiguousarray(np.moveaxis(x, -1, 1)), note
    return x, ""
