"""Out-of-distribution and probe sets made from bundled images, in the training set's format.

Each set has the training set's size, channel count and normalisation (its pixels are mapped to
[0, 1] and then standardised with the *training* mean/std), and records how it was made.

- ``motorcycle``: random square crops of ``skimage.data.stereo_motorcycle()`` (left view), grey,
  resized with anti-aliasing (the seed's "bicycles").
- ``cat``: random crops of ``skimage.data.chelsea()`` (a cat's face: the "monkey faces" analogue).
- ``textures``: random crops of ``brick``, ``grass`` and ``gravel``.
- ``digits`` / ``faces``: the other bundled dataset resized to this one's size.
- ``noise``: i.i.d. uniform noise in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.data.datasets import Dataset, check_dataset_size
from convlens.errors import ConvlensError

OOD_NAMES = ("motorcycle", "cat", "textures", "digits", "faces", "noise")


@dataclass
class OODSet:
    name: str
    x: NDArray[np.float32]
    description: str
    size: int | None = None  # the recipe's size when only its first members were built

    def to_dict(self) -> dict[str, Any]:
        n = len(self.x) if self.size is None else self.size
        return {"name": self.name, "n": n, "description": self.description}


def _grey01(img: NDArray[Any]) -> NDArray[np.float64]:
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    x = img_as_float(img)
    return rgb2gray(x) if x.ndim == 3 else x


def random_crops(
    images: list[NDArray[np.float64]] | Callable[[], list[NDArray[np.float64]]],
    n: int,
    out_hw: tuple[int, int],
    crop_frac: tuple[float, float],
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """``n`` square crops (side a random fraction of the shorter image side), resized to ``out_hw``.

    Crop ``i`` depends only on the draws before it, so the first ``k`` of ``n`` crops are the ``k``
    crops of the same seed. ``images`` may be a function that loads them (not called when n == 0).
    """
    from skimage.transform import resize

    out = np.empty((n, *out_hw))
    if n == 0:
        return out
    imgs = images() if callable(images) else images
    for i in range(n):
        img = imgs[i % len(imgs)]
        short = min(img.shape)
        side = max(int(short * rng.uniform(*crop_frac)), 2)
        r = int(rng.integers(0, img.shape[0] - side + 1))
        c = int(rng.integers(0, img.shape[1] - side + 1))
        out[i] = resize(img[r : r + side, c : c + side], out_hw, anti_aliasing=True)
    return np.clip(out, 0.0, 1.0)


def make_ood(
    name: str, dataset: Dataset, n: int = 100, seed: int = 0, *, first: int | None = None
) -> OODSet:
    """Build one OOD set shaped and normalised like ``dataset``.

    ``first``: build only the first ``first`` members of the ``n``-member set (exactly the same
    images as ``make_ood(name, dataset, n, seed).x[:first]``); the set records ``n`` as its size.
    """
    from skimage import data
    from skimage.transform import resize

    if name not in OOD_NAMES:
        raise ConvlensError(f"unknown OOD set {name!r}; expected one of {', '.join(OOD_NAMES)}")
    if name == dataset.name:
        raise ConvlensError(f"{name!r} is the training set itself, not out-of-distribution")
    c, h, w = dataset.shape
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConvlensError(f"OOD set {name!r}: size must be an integer >= 0, got {n!r}")
    check_dataset_size(n * c * h * w, f"OOD set {name!r} of {n} images {c}x{h}x{w}")
    keep = n if first is None else max(0, min(first, n))
    rng = np.random.default_rng(seed + 1000 + OOD_NAMES.index(name))
    if name == "motorcycle":
        raw = random_crops(
            lambda: [_grey01(data.stereo_motorcycle()[0])], keep, (h, w), (0.15, 0.5), rng
        )
        desc = "random square crops (15-50% of the short side) of stereo_motorcycle (left), grey, resized"
    elif name == "cat":
        raw = random_crops(lambda: [_grey01(data.chelsea())], keep, (h, w), (0.3, 0.9), rng)
        desc = "random square crops (30-90% of the short side) of chelsea (a cat), grey, resized"
    elif name == "textures":
        raw = random_crops(
            lambda: [_grey01(getattr(data, t)()) for t in ("brick", "grass", "gravel")],
            keep,
            (h, w),
            (0.05, 0.2),
            rng,
        )
        desc = "random square crops (5-20% of the short side) of brick, grass and gravel, resized"
    elif name == "digits":
        from sklearn.datasets import load_digits

        imgs = load_digits().images / 16.0
        pick = rng.choice(len(imgs), size=n, replace=len(imgs) < n)[:keep]
        raw = np.array([resize(imgs[i], (h, w), anti_aliasing=True) for i in pick]).reshape(
            -1, h, w
        )
        desc = "sklearn load_digits images / 16, resized"
    elif name == "faces":
        imgs = np.asarray(data.lfw_subset()[:100])
        pick = rng.choice(len(imgs), size=n, replace=len(imgs) < n)[:keep]
        raw = np.array([resize(imgs[i], (h, w), anti_aliasing=True) for i in pick]).reshape(
            -1, h, w
        )
        desc = "the 100 face crops of lfw_subset, resized"
    else:
        raw = rng.uniform(0.0, 1.0, size=(n, h, w))[:keep]
        desc = "i.i.d. uniform noise in [0, 1]"
    x = np.repeat(raw[:, None], c, axis=1)
    return OODSet(
        name,
        dataset.normalise(x),
        desc + f"; standardised with the {dataset.name} training mean/std",
        size=None if keep == n else n,
    )


def default_ood_names(dataset: Dataset) -> list[str]:
    """Every OOD set except the dataset itself."""
    return [n for n in OOD_NAMES if n != dataset.name]
