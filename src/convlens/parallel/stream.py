"""A streaming image-folder dataset: files listed up front, each image decoded when asked for.

``stream:DIR`` (``convlens analyze MODEL --factory F --data stream:DIR``) reads a folder of class
sub-folders like the in-memory ``DIR`` loader (same file order, same grey conversion,
:func:`convlens.data.images.load_image`), but never holds the images: a ``DataLoader`` (with
workers, ``CONVLENS_DATA_WORKERS``, default :data:`DEFAULT_WORKERS`) decodes them batch by batch,
and under torchrun each rank decodes only its shard. Rules, recorded in the dataset's
``normalisation``:

- size: the first image's (height, width); other sizes are resized to it
  (``skimage.transform.resize``, anti-aliased), so mixed folders work;
- normalisation: ``x = (x01 - mean) / std`` with the pixel mean/std of a sample of at most
  :data:`NORM_SAMPLE` images drawn with the analysis seed (the same on every rank, so the result
  does not depend on the world size);
- the in-distribution set is every image of the folder (a pretrained model has no split here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from convlens.data.datasets import Dataset
from convlens.data.images import load_image
from convlens.data.loaders import IMAGE_SUFFIXES
from convlens.errors import ConvlensError

NORM_SAMPLE = 1000
"""Images (at most) whose pixels give the normalisation mean/std of a streamed folder."""
DEFAULT_WORKERS = 2
"""DataLoader worker processes for a streamed folder (``CONVLENS_DATA_WORKERS`` overrides)."""


def list_folder(root: Path) -> tuple[list[str], list[int], list[str]]:
    """Image files of ``root/<class>/`` in the in-memory loader's order, their labels, classes."""
    if not root.is_dir():
        raise ConvlensError(f"stream:{str(root)!r}: not a folder of class sub-folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[str] = []
    labels: list[int] = []
    for ci, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(f))
                labels.append(ci)
    if not files:
        raise ConvlensError(
            f"{str(root)!r}: no images found (expected one sub-folder per class with image files)"
        )
    return files, labels, classes


def read01(path: str, size: tuple[int, int]) -> NDArray[np.float64]:
    """One image as grey float64 in [0, 1] at ``size`` (resized, anti-aliased, if it differs)."""
    pixels = load_image(path).pixels
    if pixels.shape != size:
        from skimage.transform import resize

        pixels = resize(pixels, size, anti_aliasing=True)
    return np.asarray(pixels, dtype=np.float64)


class ImageFolderStream(torch.utils.data.Dataset[torch.Tensor]):
    """Item ``i``: image ``files[i]`` as a float32 tensor ``(C, H, W)``, standardised."""

    def __init__(
        self, files: list[str], size: tuple[int, int], channels: int, mean: float, std: float
    ) -> None:
        self.files = files
        self.size = size
        self.channels = channels
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = (read01(self.files[i], self.size) - self.mean) / self.std
        x32 = np.repeat(x[None], self.channels, axis=0).astype(np.float32)
        return torch.from_numpy(x32)


class StreamedFolder(Dataset):
    """A :class:`Dataset` holding only the normalisation sample; ``stream`` is the whole folder."""

    stream: ImageFolderStream


def workers() -> int:
    """DataLoader workers for streamed data: ``CONVLENS_DATA_WORKERS`` or :data:`DEFAULT_WORKERS`."""
    raw = os.environ.get("CONVLENS_DATA_WORKERS", str(DEFAULT_WORKERS))
    if not raw.isdigit():
        raise ConvlensError(f"CONVLENS_DATA_WORKERS must be an integer >= 0, got {raw!r}")
    return int(raw)


def open_folder(root: str | Path, seed: int = 0, channels: int = 1) -> StreamedFolder:
    """List ``root`` and compute its normalisation from a seeded sample (see the module doc)."""
    path = Path(root)
    files, labels, classes = list_folder(path)
    first = load_image(files[0]).pixels.shape
    size = (int(first[0]), int(first[1]))
    rng = np.random.default_rng(seed)
    k = min(NORM_SAMPLE, len(files))
    pick = np.sort(rng.choice(len(files), size=k, replace=False))
    raw = np.stack([read01(files[i], size) for i in pick])
    mean, std = float(raw.mean()), float(raw.std())
    if not std > 0:
        raise ConvlensError(f"{str(root)!r}: the sampled images are constant (std 0)")
    norm: dict[str, Any] = {
        "to_unit_range": "per image: see convlens.data.images (grey, / dtype max)",
        "mean": mean,
        "std": std,
        "rule": f"x = (x01 - mean) / std with the pixel mean/std of {k} of {len(files)} images "
        f"drawn with seed {seed}; every image resized to {size[0]}x{size[1]} (the first one's size)",
    }
    x = np.repeat(((raw - mean) / std)[:, None], channels, axis=1).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)[pick]
    every = np.arange(k, dtype=np.int64)
    ds = StreamedFolder(
        path.name,
        x,
        y,
        classes,
        {"train": every, "val": every[:0], "test": every},
        norm,
        f"image folder {str(path)!r}, streamed: {len(files)} images",
    )
    ds.stream = ImageFolderStream(files, size, channels, mean, std)
    return ds
