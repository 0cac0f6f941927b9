"""The bundled ``natural`` dataset: RGB patches of the photographs that ship inside scikit-image
and scikit-learn, with a task that needs oriented features and a split by source photo.

**Photos** (:data:`PHOTOS`; provenance and licences in docs/natural.md): colour photographs
(astronaut, chelsea, coffee, rocket, sklearn's china and flower) and grey ones repeated to RGB (camera, coins, text, brick, grass, gravel, cell), each
rescaled by :data:`SCALE` with anti-aliasing.

**Task** ("oriented seams", :data:`CLASSES`): a ``Q x Q`` crop is shown intact or with its left and
right halves swapped (a straight discontinuity, a seam, down its centre), then rotated by 0, 45, 90
or 135 degrees (plus a jitter of up to :data:`JITTER` degrees; bilinear, edges reflected) and its
central ``P x P`` patch kept. The classes: intact (at a random one of the four angles), or a seam at
one of the four angles. A seam is there wherever the patch came from, so the task carries over to
photos never seen in training; to tell the classes apart a network has to find a straight
discontinuity and its orientation. Every crop appears in all five classes (balanced; the classes
differ only by the rearrangement, not by the photo statistics).

**Split by source photo** (:data:`SPLIT`): no patch of a validation or test photo is in training.
Patch positions are drawn with :data:`PATCH_SEED`, whatever the run seed: the data are the same
for every run. Pure NumPy and scikit-image; no network.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

P = 32
"""Patch side in pixels."""
Q = 48
"""Side of the crop that is rearranged and rotated (>= P * sqrt(2), so no corner is outside it)."""
ANGLES = (0.0, 45.0, 90.0, 135.0)
JITTER = 5.0
SCALE = 0.5
"""Each photo is rescaled by this factor before patches are cut (more structure per patch)."""
PER_PHOTO = 200
"""Crops per photo (each in the five classes)."""
PATCH_SEED = 0
CLASSES = ("intact", "seam at 0 deg", "seam at 45 deg", "seam at 90 deg", "seam at 135 deg")
"""A vertical seam rotated counter-clockwise as displayed (``skimage.transform.rotate``) by the
angle: 0 ``|``, 45 ``\\`` (top left to bottom right), 90 ``-``, 135 ``/``. The report measures a
kernel's orientation as that of its gradient, across the seam: a detector of the 0-degree seam
has gradient orientation 0, of the 45-degree seam 135, of the 90-degree seam 90, of 135 45."""
SPLIT = {
    "train": ("astronaut", "chelsea", "coffee", "camera", "coins", "brick", "gravel", "cell"),
    "val": ("china", "text"),
    "test": ("rocket", "flower", "grass"),
}  # fmt: skip
"""Which photos each split is cut from: test holds colour (rocket, flower) and grey (grass)."""
PHOTOS = tuple(name for part in SPLIT.values() for name in part)
SOURCES = {
    "china": "sklearn.datasets.load_sample_images (china.jpg)",
    "flower": "sklearn.datasets.load_sample_images (flower.jpg)",
}
"""Where each photo comes from (``skimage.data.NAME`` unless listed)."""


def source(name: str) -> str:
    return SOURCES.get(name, f"skimage.data.{name}")


def photo(name: str) -> NDArray[np.float64]:
    """Photo ``name`` as RGB in [0, 1] ``(H, W, 3)`` at full size (grey ones repeated)."""
    from skimage import data

    grey_or_rgb: Any
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        grey_or_rgb = load_sample_images().images[0 if name == "china" else 1]
    else:
        grey_or_rgb = getattr(data, name)()
    a = np.asarray(grey_or_rgb, dtype=np.float64)
    a = a / (255.0 if a.max() > 1.0 else 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.clip(a[..., :3], 0.0, 1.0)


def seams(
    crops: NDArray[Any], rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The five classes of :data:`CLASSES` for crops ``(N, Q, Q, C)``: patches ``(5N, C, P, P)`` and
    labels (class-major: all intact, then every seam at 0 degrees, ...)."""
    from skimage.transform import rotate

    x = np.asarray(crops, dtype=np.float64)
    half, o = x.shape[2] // 2, (x.shape[1] - P) // 2
    seamed = np.concatenate([x[:, :, half:], x[:, :, :half]], axis=2)
    out, labels = [], []
    for cls in range(len(CLASSES)):
        for i in range(len(x)):
            k = int(rng.integers(0, len(ANGLES))) if cls == 0 else cls - 1
            angle = ANGLES[k] + float(rng.uniform(-JITTER, JITTER))
            src = x[i] if cls == 0 else seamed[i]
            r = rotate(src, angle, order=1, mode="reflect")
            out.append(r[o : o + P, o : o + P].transpose(2, 0, 1))
            labels.append(cls)
    return np.stack(out), np.asarray(labels, dtype=np.int64)


def natural01() -> tuple[
    NDArray[np.float64], NDArray[np.int64], dict[str, NDArray[np.int64]], NDArray[np.int64]
]:
    """Images in [0, 1] ``(N, 3, P, P)``, labels, the split indices by photo, and each image's photo
    (an index into :data:`PHOTOS`). Built once per process (about 5 s: the rotations), then
    served from a read-only cache."""
    x, y, splits, photos = _natural01()
    return x, y, dict(splits), photos


def crops(name: str, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``n`` crops of :data:`Q` x :data:`Q` pixels ``(n, Q, Q, 3)`` of the photo ``name`` rescaled by
    :data:`SCALE`, at positions drawn from ``rng`` (all rows, then all columns)."""
    from skimage.transform import rescale

    im = rescale(photo(name), SCALE, channel_axis=-1, anti_aliasing=True)
    hh, ww = im.shape[:2]
    rows = rng.integers(0, hh - Q + 1, n)
    cols = rng.integers(0, ww - Q + 1, n)
    return np.stack([im[r : r + Q, c : c + Q] for r, c in zip(rows, cols, strict=True)])


@lru_cache(maxsize=1)
def _natural01() -> tuple[
    NDArray[np.float64], NDArray[np.int64], dict[str, NDArray[np.int64]], NDArray[np.int64]
]:
    """Images in [0, 1] ``(N, 3, P, P)``, labels, the split indices by photo, and each image's photo
    (an index into :data:`PHOTOS`)."""
    rng = np.random.default_rng(PATCH_SEED)
    xs, ys, photo_of, split_of = [], [], [], []
    for part, names in SPLIT.items():
        for name in names:
            x, y = seams(crops(name, PER_PHOTO, rng), rng)
            xs.append(x)
            ys.append(y)
            photo_of.append(np.full(len(y), PHOTOS.index(name), dtype=np.int64))
            split_of += [part] * len(y)
    x_all = np.clip(np.concatenate(xs), 0.0, 1.0)
    parts = np.array(split_of)
    splits = {k: np.flatnonzero(parts == k).astype(np.int64) for k in SPLIT}
    out = (x_all, np.concatenate(ys), splits, np.concatenate(photo_of))
    for a in (out[0], out[1], out[3], *splits.values()):
        a.flags.writeable = False
    return out


def description() -> str:
    kinds = ", ".join(f"{k}: {', '.join(source(n) for n in v)}" for k, v in SPLIT.items())
    return (
        f"convlens.data.natural: {P}x{P} RGB patches of {len(PHOTOS)} photographs bundled with "
        f"scikit-image and scikit-learn (rescaled by {SCALE}), {PER_PHOTO} {Q}x{Q} crops per photo "
        f"at positions drawn with seed {PATCH_SEED}, each intact or with a seam down its centre "
        f"(left and right halves swapped), rotated by 0/45/90/135 degrees (+-{JITTER:g}), centre "
        f"{P}x{P} kept: 5 classes (intact, a seam at each angle); split by photo ({kinds})"
    )
