"""The bundled ``natural`` dataset: RGB patches of the photographs that ship inside scikit-image
and scikit-learn, with a task that needs oriented features and a split by source photo.

**Photos** (:data:`PHOTOS`; provenance and licences in docs/natural.md): colour photographs
(astronaut, chelsea, coffee, rocket, the left view of stereo_motorcycle, sklearn's china and flower)
and grey ones repeated to RGB (camera, coins, moon, page, text, brick, grass, gravel, cell), each
rescaled by :data:`SCALE` with anti-aliasing.

**Task** ("seams", :data:`CLASSES`): a ``P x P`` patch is shown intact, with its left and right
halves swapped, with its top and bottom halves swapped, or both. A swap puts a discontinuity along
the vertical (left-right) or horizontal (top-bottom) centre line, wherever the patch came from, so
the task carries over to photos never seen in training; to tell the classes apart a network has to
find a discontinuity and its orientation. Every base patch appears in all four classes (balanced;
the classes differ only by the rearrangement, not by the photo statistics).

**Split by source photo** (:data:`SPLIT`): no patch of a validation or test photo is in training.
Patch positions are drawn with :data:`PATCH_SEED`, whatever the run seed: the data are the same
for every run. Pure NumPy and scikit-image; no network.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

P = 32
"""Patch side in pixels."""
SCALE = 0.5
"""Each photo is rescaled by this factor before patches are cut (more structure per patch)."""
PER_PHOTO = 200
"""Base patches per photo (each in the four classes)."""
PATCH_SEED = 0
CLASSES = ("intact", "left-right swapped", "top-bottom swapped", "both swapped")
SPLIT = {
    "train": ("astronaut", "chelsea", "coffee", "motorcycle", "camera", "coins", "moon", "page",
              "brick", "gravel", "cell"),
    "val": ("china", "text"),
    "test": ("rocket", "flower", "grass"),
}  # fmt: skip
"""Which photos each split is cut from: test holds colour (rocket, flower) and grey (grass)."""
PHOTOS = tuple(name for part in SPLIT.values() for name in part)
COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "china", "flower")
SOURCES = {
    "motorcycle": "skimage.data.stereo_motorcycle (left view)",
    "china": "sklearn.datasets.load_sample_images (china.jpg)",
    "flower": "sklearn.datasets.load_sample_images (flower.jpg)",
}
"""Where each photo comes from (``skimage.data.NAME`` unless listed)."""


def source(name: str) -> str:
    return SOURCES.get(name, f"skimage.data.{name}")


def photo(name: str) -> NDArray[np.float64]:
    """Photo ``name`` as RGB in [0, 1] ``(H, W, 3)`` at full size (grey ones repeated)."""
    from skimage import data

    if name == "motorcycle":
        grey_or_rgb: Any = _motorcycle_rgb()
    elif name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        grey_or_rgb = load_sample_images().images[0 if name == "china" else 1]
    else:
        grey_or_rgb = getattr(data, name)()
    a = np.asarray(grey_or_rgb, dtype=np.float64)
    a = a / (255.0 if a.max() > 1.0 else 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.clip(a[..., :3], 0.0, 1.0)


def _motorcycle_rgb() -> NDArray[Any]:
    """The left view of ``stereo_motorcycle`` in colour, without decoding the right one."""
    from pathlib import Path

    from skimage import data, io

    path = Path(getattr(data, "data_dir", "")) / "motorcycle_left.png"
    if path.is_file():
        return np.asarray(io.imread(path))
    return np.asarray(data.stereo_motorcycle()[0])


def seams(patches: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The four classes of :data:`CLASSES` for base patches ``(N, C, P, P)``: ``(4N, C, P, P)`` and
    labels (class-major: all intact, then all left-right, ...)."""
    x = np.asarray(patches)
    h = x.shape[2] // 2
    w = x.shape[3] // 2
    lr = np.concatenate([x[..., w:], x[..., :w]], axis=3)
    tb = np.concatenate([x[..., h:, :], x[..., :h, :]], axis=2)
    both = np.concatenate([lr[..., h:, :], lr[..., :h, :]], axis=2)
    out = np.concatenate([x, lr, tb, both])
    return out, np.repeat(np.arange(4, dtype=np.int64), len(x))


def natural01() -> tuple[
    NDArray[np.float64], NDArray[np.int64], dict[str, NDArray[np.int64]], NDArray[np.int64]
]:
    """Images in [0, 1] ``(N, 3, P, P)``, labels, the split indices by photo, and each image's photo
    (an index into :data:`PHOTOS`)."""
    from skimage.transform import rescale

    rng = np.random.default_rng(PATCH_SEED)
    xs, ys, photo_of, split_of = [], [], [], []
    for part, names in SPLIT.items():
        for name in names:
            im = rescale(photo(name), SCALE, channel_axis=-1, anti_aliasing=True)
            hh, ww = im.shape[:2]
            rows = rng.integers(0, hh - P + 1, PER_PHOTO)
            cols = rng.integers(0, ww - P + 1, PER_PHOTO)
            base = np.stack(
                [
                    im[r : r + P, c : c + P].transpose(2, 0, 1)
                    for r, c in zip(rows, cols, strict=True)
                ]
            )
            x, y = seams(base)
            xs.append(x)
            ys.append(y)
            photo_of.append(np.full(len(y), PHOTOS.index(name), dtype=np.int64))
            split_of += [part] * len(y)
    x_all = np.clip(np.concatenate(xs), 0.0, 1.0)
    parts = np.array(split_of)
    splits = {k: np.flatnonzero(parts == k).astype(np.int64) for k in SPLIT}
    return x_all, np.concatenate(ys), splits, np.concatenate(photo_of)


def description() -> str:
    kinds = ", ".join(f"{k}: {', '.join(source(n) for n in v)}" for k, v in SPLIT.items())
    return (
        f"convlens.data.natural: {P}x{P} RGB patches of {len(PHOTOS)} photographs bundled with "
        f"scikit-image and scikit-learn (rescaled by {SCALE}), {PER_PHOTO} per photo at positions "
        f"drawn with seed {PATCH_SEED}, each shown intact and with its halves swapped left-right, "
        f"top-bottom or both (4 classes); split by photo ({kinds})"
    )
