"""Out-of-distribution and probe sets made from bundled images, in the training set's format.

Each set has the training set's size, channel count and normalisation (its pixels are mapped to
[0, 1] and then standardised with the *training* mean/std), and records how it was made.

- ``motorcycle``: random square crops of ``skimage.data.stereo_motorcycle()`` (left view), grey,
  resized with anti-aliasing (the seed's "bicycles").
- ``cat``: random crops of ``skimage.data.chelsea()`` (a cat's face: the "monkey faces" analogue).
- ``textures``: random crops of ``brick``, ``grass`` and ``gravel``.
- ``digits`` / ``faces``: the other bundled dataset resized to this one's size.
- ``noise``: i.i.d. uniform noise in [0, 1].

Every member records the **source image** it was made from (:attr:`OODSet.source_ids`): the crops of
``motorcycle`` and ``cat`` all come from one photo each, ``textures`` from three, while every digit,
face and noise image is its own source. Intervals are computed by resampling source images (a cluster
bootstrap), so a set of 100 crops of one photo is not mistaken for 100 independent examples of a
category.

:func:`id_split` picks the in-distribution (ID) images: for a dataset with a ``face`` class (the
bundled ``faces``: LFW faces + non-face crops) only the faces; the other classes of the test split are
returned separately, so "faces vs a bicycle" is not diluted by the non-face crops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    source_ids: NDArray[np.int64] | None = None  # per member: which source image it came from

    @property
    def sources(self) -> NDArray[np.int64]:
        """Source image id of every member (each member its own source when not recorded)."""
        if self.source_ids is None:
            return np.arange(len(self.x), dtype=np.int64)
        return self.source_ids

    @property
    def n_sources(self) -> int:
        """How many distinct source images the members come from."""
        return len(np.unique(self.sources))

    def to_dict(self) -> dict[str, Any]:
        n = len(self.x) if self.size is None else self.size
        return {"name": self.name, "n": n, "description": self.description}


def _grey01(img: NDArray[Any]) -> NDArray[np.float64]:
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    x = img_as_float(img)
    return rgb2gray(x) if x.ndim == 3 else x


def _motorcycle_left() -> NDArray[Any]:
    """``skimage.data.stereo_motorcycle()[0]``, without decoding the right view and the disparity
    map (the same file, read the same way, when the wheel ships it)."""
    from skimage import data, io

    path = Path(getattr(data, "data_dir", "")) / "motorcycle_left.png"
    if path.is_file():
        return np.asarray(io.imread(str(path)))
    return np.asarray(data.stereo_motorcycle()[0])


@functools.cache
def source_photos(name: str) -> tuple[NDArray[np.float64], ...]:
    """The grey ``[0, 1]`` source photos of OOD set ``name`` (motorcycle, cat, textures), decoded
    once per process and read-only: a training run, its analysis and the demo's several runs
    crop the same photos."""
    from skimage import data

    raw = {
        "motorcycle": lambda: [_motorcycle_left()],
        "cat": lambda: [data.chelsea()],
        "textures": lambda: [getattr(data, t)() for t in ("brick", "grass", "gravel")],
    }[name]()
    out = []
    for img in raw:
        grey = _grey01(img)
        grey.setflags(write=False)
        out.append(grey)
    return tuple(out)


@functools.cache
def _digit_images() -> NDArray[np.float64]:
    from sklearn.datasets import load_digits

    imgs = np.asarray(load_digits().images / 16.0)
    imgs.setflags(write=False)
    return imgs


@functools.cache
def _face_images() -> NDArray[Any]:
    from skimage import data

    imgs = np.asarray(data.lfw_subset()[:100])
    imgs.setflags(write=False)
    return imgs


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
    from skimage.transform import resize

    if name not in OOD_NAMES:
        raise ConvlensError(f"unknown OOD set {name!r}; expected one of {', '.join(OOD_NAMES)}")
    if is_id_dataset(name, dataset):
        raise ConvlensError(
            f"{name!r} is the training set itself ({dataset.source}), not out-of-distribution"
        )
    c, h, w = dataset.shape
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConvlensError(f"OOD set {name!r}: size must be an integer >= 0, got {n!r}")
    check_dataset_size(n * c * h * w, f"OOD set {name!r} of {n} images {c}x{h}x{w}")
    keep = n if first is None else max(0, min(first, n))
    rng = np.random.default_rng(seed + 1000 + OOD_NAMES.index(name))
    if name == "motorcycle":
        raw = random_crops(
            lambda: list(source_photos("motorcycle")), keep, (h, w), (0.15, 0.5), rng
        )
        desc = "random square crops (15-50% of the short side) of stereo_motorcycle (left), grey, resized"
        src = np.zeros(keep, dtype=np.int64)
    elif name == "cat":
        raw = random_crops(lambda: list(source_photos("cat")), keep, (h, w), (0.3, 0.9), rng)
        desc = "random square crops (30-90% of the short side) of chelsea (a cat), grey, resized"
        src = np.zeros(keep, dtype=np.int64)
    elif name == "textures":
        raw = random_crops(
            lambda: list(source_photos("textures")),
            keep,
            (h, w),
            (0.05, 0.2),
            rng,
        )
        desc = "random square crops (5-20% of the short side) of brick, grass and gravel, resized"
        src = np.arange(keep, dtype=np.int64) % 3  # random_crops takes image i % 3
    elif name == "digits":
        imgs = _digit_images()
        pick = rng.choice(len(imgs), size=n, replace=len(imgs) < n)[:keep]
        raw = np.array([resize(imgs[i], (h, w), anti_aliasing=True) for i in pick]).reshape(
            -1, h, w
        )
        desc = "sklearn load_digits images / 16, resized"
        src = np.asarray(pick, dtype=np.int64)
    elif name == "faces":
        imgs = _face_images()
        pick = rng.choice(len(imgs), size=n, replace=len(imgs) < n)[:keep]
        raw = np.array([resize(imgs[i], (h, w), anti_aliasing=True) for i in pick]).reshape(
            -1, h, w
        )
        desc = "the 100 face crops of lfw_subset, resized"
        src = np.asarray(pick, dtype=np.int64)
    else:
        raw = rng.uniform(0.0, 1.0, size=(n, h, w))[:keep]
        desc = "i.i.d. uniform noise in [0, 1]"
        src = np.arange(keep, dtype=np.int64)
    x = np.repeat(raw[:, None], c, axis=1)
    return OODSet(
        name,
        dataset.normalise(x),
        desc + f"; standardised with the {dataset.name} training mean/std",
        size=None if keep == n else n,
        source_ids=src,
    )


def make_oods(
    names: list[str], dataset: Dataset, n: int = 100, seed: int = 0, *, first: int | None = None
) -> list[OODSet]:
    """:func:`make_ood` for each name, in that order, built on up to two threads (the crops'
    anti-aliased resizing runs in scipy with the GIL released; nothing else runs yet when a run or
    an analysis builds its sets). The same sets as building them one by one."""
    if len(names) < 2 or first == 0:  # nothing to build but the recipes
        return [make_ood(name, dataset, n, seed, first=first) for name in names]
    from concurrent.futures import ThreadPoolExecutor

    # their first imports happen here, not concurrently in the workers
    import skimage.color
    import skimage.io
    import skimage.transform  # noqa: F401
    import sklearn.datasets  # noqa: F401

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="convlens-ood") as pool:
        return list(pool.map(lambda name: make_ood(name, dataset, n, seed, first=first), names))


_SOURCE_MARKERS = {
    "digits": ("load_digits",),
    "faces": ("lfw_subset",),
    "motorcycle": ("skimage.data.stereo_motorcycle",),
    "cat": ("skimage.data.chelsea",),
    "textures": ("skimage.data.brick", "skimage.data.grass", "skimage.data.gravel"),
}
"""Text in a dataset's ``source`` that says it is made of the same images as that OOD set (the
bundled ``natural`` patches are cut from the cat and texture photos among others)."""


def is_id_dataset(name: str, dataset: Dataset) -> bool:
    """Whether OOD set ``name`` would be the training data itself: same name, or the dataset was
    loaded from the same images (e.g. an ``npz:`` or folder copy of sklearn's digits, whose source
    names ``load_digits``)."""
    return name == dataset.name or any(
        m in str(dataset.source) for m in _SOURCE_MARKERS.get(name, ())
    )


def default_ood_names(dataset: Dataset) -> list[str]:
    """Every OOD set except the dataset itself (:func:`is_id_dataset`)."""
    return [n for n in OOD_NAMES if not is_id_dataset(n, dataset)]


@dataclass
class IdSplit:
    """The ID images of a test split and, separately, its other classes (each its own set)."""

    name: str
    x: NDArray[np.float32]
    description: str
    others: list[OODSet]
    classes: list[str] = field(default_factory=list)  # the dataset's class names


def id_split(dataset: Dataset, split: str = "test") -> IdSplit:
    """The in-distribution images of ``split``: only the ``face`` class when the dataset has one (the
    bundled ``faces`` test split is half non-face crops, which are not "faces"), else every image.
    The other classes come back as their own sets (each image its own source)."""
    x, y = dataset.split(split)
    if "face" not in dataset.classes:
        return IdSplit(
            f"{dataset.name} ({split} split)",
            x,
            f"the {dataset.name} {split} split, all {len(dataset.classes)} classes",
            [],
            list(dataset.classes),
        )
    face = dataset.classes.index("face")
    others = [
        OODSet(
            f"{cls} ({split} split)",
            x[y == i],
            f"the {cls!r} class of the {dataset.name} {split} split (in the training data, "
            "but not faces)",
        )
        for i, cls in enumerate(dataset.classes)
        if i != face and np.any(y == i)
    ]
    return IdSplit(
        f"{dataset.name} ({split}, face class)",
        x[y == face],
        f"the 'face' class of the {dataset.name} {split} split only (its other classes are "
        "compared separately)",
        others,
        list(dataset.classes),
    )
