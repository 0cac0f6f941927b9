"""Datasets held in memory as arrays: bundled (``faces``, ``digits``) and the user's (see loaders).

Normalisation is explicit and recorded: pixels are first mapped to [0, 1] by a stated rule, then
standardised with the *training split's* mean and standard deviation (one scalar each); the same
transform is applied to every split and to the out-of-distribution sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

BUNDLED = ("faces", "digits", "signals", "natural")

# Resource limits, checked before anything of that size is allocated (each error names its limit).
MAX_CLASSES = 10_000
"""Most classes a dataset may have: labels must be ``0..n-1`` with ``n <= MAX_CLASSES``."""
MAX_DATASET_VALUES = 1 << 28
"""Most pixel values (N x C x H x W) one dataset may hold: 268,435,456 (CIFAR-10 is 184,320,000);
held as float64 while it is standardised, that is 2 GiB."""


def check_labels(y: NDArray[Any], what: str) -> int:
    """The number of classes ``n`` of integer labels ``y``, which must lie in ``0..n-1`` with
    ``n <= MAX_CLASSES`` (checked before any per-class structure is built)."""
    labels = np.asarray(y)
    if labels.dtype.kind not in "iu":
        raise ConvlensError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    if labels.size == 0:
        raise ConvlensError(f"{what}: no labels (0 images); expected at least one per class")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ConvlensError(f"{what}: labels must be 0..n-1, found a negative label {lo}")
    if hi >= MAX_CLASSES:
        raise ConvlensError(
            f"{what}: label {hi} would mean {hi + 1} classes, over the limit of {MAX_CLASSES} "
            "(MAX_CLASSES in convlens.data.datasets); labels must be 0..n-1"
        )
    return hi + 1


def check_dataset_size(n_values: int, what: str) -> None:
    """Refuse a dataset of more than ``MAX_DATASET_VALUES`` pixel values (before reading it)."""
    if n_values > MAX_DATASET_VALUES:
        raise ConvlensError(
            f"{what}: {n_values} pixel values, over the limit of {MAX_DATASET_VALUES} "
            "(MAX_DATASET_VALUES in convlens.data.datasets)"
        )


@dataclass
class Dataset:
    """Images ``x`` ``(N, C, H, W)`` float32 (standardised), labels ``y`` ``(N,)`` int64, and splits."""

    name: str
    x: NDArray[np.float32]
    y: NDArray[np.int64]
    classes: list[str]
    splits: dict[str, NDArray[np.int64]]
    normalisation: dict[str, Any]
    source: str
    raw_range: tuple[float, float] = (0.0, 1.0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-item shape ``(C, H, W)`` (``(C, D, H, W)`` for volumes from an ``npz`` file)."""
        return tuple(int(v) for v in self.x.shape[1:])

    def split(self, name: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        idx = self.splits[name]
        return self.x[idx], self.y[idx]

    def normalise(self, raw01: NDArray[Any]) -> NDArray[np.float32]:
        """Apply this dataset's standardisation to images already mapped to [0, 1]."""
        return standardise(raw01, self.normalisation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "shape": list(self.shape),
            "n": len(self.y),
            "classes": list(self.classes),
            "class_counts": {c: int((self.y == i).sum()) for i, c in enumerate(self.classes)},
            "splits": {k: len(v) for k, v in self.splits.items()},
            "normalisation": dict(self.normalisation),
            **({"extra": self.extra} if self.extra else {}),
        }


def standardise(raw01: NDArray[Any], normalisation: dict[str, Any]) -> NDArray[np.float32]:
    """``(x01 - mean) / std`` with a dataset's ``normalisation`` (its training mean and std), in
    float64, returned as float32."""
    mean, std = float(normalisation["mean"]), float(normalisation["std"])
    return ((np.asarray(raw01, dtype=np.float64) - mean) / std).astype(np.float32)


def stratified_splits(
    y: NDArray[np.int64], seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, NDArray[np.int64]]:
    """Deterministic stratified train/val/test indices (each class split in the same proportions)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        n = len(idx)
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        n_train = n - n_val - n_test
        needed = [n_train] + [
            m for m, f in ((n_val, fractions[1]), (n_test, fractions[2])) if f > 0
        ]
        if min(needed) < 1:
            raise ConvlensError(
                f"class {int(cls)} has only {n} example(s); need at least 3 to split train/val/test"
            )
        parts["train"] += idx[:n_train].tolist()
        parts["val"] += idx[n_train : n_train + n_val].tolist()
        parts["test"] += idx[n_train + n_val :].tolist()
    return {k: np.sort(np.array(v, dtype=np.int64)) for k, v in parts.items()}


def from_unit_range(
    name: str,
    raw01: NDArray[Any],
    y: NDArray[Any],
    classes: list[str],
    source: str,
    scaling: str,
    seed: int,
    splits: dict[str, NDArray[np.int64]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from images in [0, 1] ``(N, C, H, W)``: split, then standardise."""
    x = np.asarray(raw01, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (4, 5):
        raise ConvlensError(
            f"{name}: expected images (N, H, W) or (N, C, H, W) (or volumes (N, C, D, H, W)), "
            f"got shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise ConvlensError(f"{name}: 0 images; expected at least three per class")
    check_dataset_size(x.size, name)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ConvlensError(f"{name}: {bad} of {x.size} pixel values are NaN or Inf")
    labels = np.asarray(y)
    if labels.shape != (x.shape[0],):
        raise ConvlensError(f"{name}: {x.shape[0]} images but labels of shape {labels.shape}")
    n_classes = check_labels(labels, name)
    labels = labels.astype(np.int64)
    if len(classes) > MAX_CLASSES:
        raise ConvlensError(
            f"{name}: {len(classes)} classes, over the limit of {MAX_CLASSES} "
            "(MAX_CLASSES in convlens.data.datasets)"
        )
    if n_classes > len(classes):
        raise ConvlensError(
            f"{name}: labels must be 0..{len(classes) - 1} for its {len(classes)} classes, "
            f"found label {n_classes - 1}"
        )
    if len(np.unique(labels)) < 2:
        raise ConvlensError(f"{name}: need at least two classes, found {len(np.unique(labels))}")
    sp = splits if splits is not None else stratified_splits(labels, seed)
    train = x[sp["train"]]
    mean = float(train.mean())
    std = float(train.std())
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise ConvlensError(
            f"{name}: the training images' mean/std overflow ({mean}, {std}); pixel values too large"
        )
    if std == 0.0:
        raise ConvlensError(f"{name}: training images are constant (std 0); nothing to learn")
    norm = {
        "to_unit_range": scaling,
        "mean": mean,
        "std": std,
        "rule": "x = (x01 - mean) / std with mean/std of the training split (scalars)",
    }
    xs = ((x - mean) / std).astype(np.float32)
    return Dataset(name, xs, labels, classes, sp, norm, source, extra=extra or {})


def load_faces(seed: int = 0) -> Dataset:
    """scikit-image ``lfw_subset``: 100 faces then 100 non-faces, 25x25 grey in [0, 1]."""
    from skimage import data

    x = np.asarray(data.lfw_subset(), dtype=np.float64)
    y = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    return from_unit_range(
        "faces",
        x,
        y,
        ["non-face", "face"],
        "skimage.data.lfw_subset(): 100 LFW face crops + 100 non-face crops, 25x25 grey",
        "as shipped (float64 already in [0, 1])",
        seed,
    )


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn ``load_digits``: 1797 handwritten digits, 8x8, values 0..16."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = d.images.astype(np.float64) / 16.0
    return from_unit_range(
        "digits",
        x,
        d.target.astype(np.int64),
        [str(i) for i in range(10)],
        "sklearn.datasets.load_digits(): 1797 handwritten digits (UCI), 8x8, 16 grey levels",
        "pixel / 16 (values 0..16)",
        seed,
    )


def load_signals(seed: int = 0) -> Dataset:
    """The generated 1-D task of :mod:`convlens.data.signals` (tones, chirps, noise; 1 x 128)."""
    from convlens.data import signals

    x, y = signals.signals01()
    return from_unit_range(
        "signals",
        x,
        y,
        list(signals.CLASSES),
        f"convlens.data.signals: {signals.PER_CLASS} tones, chirps and noise signals each, "
        f"{signals.LENGTH} samples, generated with seed {signals.SIGNALS_SEED}",
        "(s + 3) / 6, clipped to [0, 1]",
        seed,
    )


def load_natural(seed: int = 0) -> Dataset:
    """RGB patches of the bundled photographs, the oriented-seams task, split by photo
    (:mod:`convlens.data.natural`)."""
    from convlens.data import natural

    x, y, splits, _photos = natural.natural01()
    return from_unit_range(
        "natural",
        x,
        y,
        list(natural.CLASSES),
        natural.description(),
        "8-bit photos / 255 (sklearn's and skimage's uint8 arrays; grey ones repeated to RGB)",
        seed,
        splits=splits,
    )


def load_bundled(name: str, seed: int = 0) -> Dataset:
    if name == "faces":
        return load_faces(seed)
    if name == "digits":
        return load_digits(seed)
    if name == "signals":
        return load_signals(seed)
    if name == "natural":
        return load_natural(seed)
    raise ConvlensError(f"unknown bundled dataset {name!r}; expected one of {', '.join(BUNDLED)}")
