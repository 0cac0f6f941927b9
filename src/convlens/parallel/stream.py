"""A streaming image-folder dataset: files listed up front, each image decoded when asked for.

``stream:DIR`` (``convlens analyze MODEL --factory F --data stream:DIR``) reads a folder of class
sub-folders like the in-memory ``DIR`` loader (same file order, same grey conversion,
:func:`convlens.data.images.load_image`), but never holds the images: a ``DataLoader`` (with
workers, ``CONVLENS_DATA_WORKERS``, default :data:`DEFAULT_WORKERS`) decodes them batch by batch,
and under torchrun each rank decodes only its shard. Rules, recorded in the dataset's
``normalisation``:

- size: the model's fixed input size when it states one, else the first image's (height, width)
  scaled down to at most :data:`MAX_STREAM_PIXELS` (aspect kept); every image is resized to it
  (``skimage.transform.resize``, anti-aliased), so mixed folders work and one huge image cannot
  set the size of all the others;
- normalisation: ``x = (x01 - mean) / std`` with the pixel mean/std of a sample of at most
  :data:`NORM_SAMPLE` images drawn with the analysis seed (the same on every rank, so the result
  does not depend on the world size), accumulated image by image in float64 (Chan et al.'s
  pairwise update): memory does not grow with the sample, and no image is held at its own size
  longer than it takes to resize it; the first :data:`KEEP_SAMPLE` sampled images are kept (float32,
  at the stream size) for the OOD sets;
- an image over the decoder's pixel cap (:data:`convlens.data.images.DEFAULT_MAX_PIXELS`) is
  refused in one line naming it;
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
KEEP_SAMPLE = 128
"""Sampled images kept in memory (float32, at the stream size) to build the OOD sets from."""
MAX_STREAM_PIXELS = 512 * 512
"""Without a fixed model input size, the stream size is the first image's, scaled to at most this."""
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


def stream_size(first: tuple[int, int], model_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size every streamed image is read at: the model's fixed size, else the first image's
    scaled down (aspect kept) to at most :data:`MAX_STREAM_PIXELS`.

    >>> stream_size((4000, 4000), None), stream_size((20, 30), None), stream_size((9, 9), (224, 224))
    ((512, 512), (20, 30), (224, 224))
    """
    if model_size is not None:
        return model_size
    h, w = first
    if h * w <= MAX_STREAM_PIXELS:
        return h, w
    f = (MAX_STREAM_PIXELS / (h * w)) ** 0.5
    return max(1, int(h * f)), max(1, int(w * f))


def _image_shape(path: str) -> tuple[int, int]:
    """An image's (height, width) from its header (Pillow reads no pixels for this)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
        return int(h), int(w)
    except Exception:  # not readable by Pillow's header parser: decode it (load_image says why)
        shape = load_image(path).pixels.shape
        return int(shape[0]), int(shape[1])


def open_folder(
    root: str | Path,
    seed: int = 0,
    channels: int = 1,
    model_size: tuple[int, int] | None = None,
) -> StreamedFolder:
    """List ``root`` and compute its normalisation from a seeded sample (see the module doc)."""
    path = Path(root)
    files, labels, classes = list_folder(path)
    first = _image_shape(files[0])
    size = stream_size(first, model_size)
    rng = np.random.default_rng(seed)
    k = min(NORM_SAMPLE, len(files))
    pick = np.sort(rng.choice(len(files), size=k, replace=False))
    count, mean, m2 = 0, 0.0, 0.0  # running pixel mean and sum of squared deviations (float64)
    kept: list[NDArray[np.float32]] = []
    for i in pick:
        img = read01(files[i], size)
        n_b, mean_b = img.size, float(img.mean())
        m2_b = float(((img - mean_b) ** 2).sum())
        delta = mean_b - mean
        total = count + n_b
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * count * n_b / total
        count = total
        if len(kept) < KEEP_SAMPLE:
            kept.append(img.astype(np.float32))
    std = (m2 / count) ** 0.5 if count else 0.0
    if not std > 0:
        raise ConvlensError(f"{str(root)!r}: the sampled images are constant (std 0)")
    where = "the model's input size" if model_size is not None else "the first image's size"
    if model_size is None and size != first:
        where += f", scaled to at most {MAX_STREAM_PIXELS} pixels"
    norm: dict[str, Any] = {
        "to_unit_range": "per image: see convlens.data.images (grey, / dtype max)",
        "mean": mean,
        "std": std,
        "rule": f"x = (x01 - mean) / std with the pixel mean/std of {k} of {len(files)} images "
        f"drawn with seed {seed}; every image resized to {size[0]}x{size[1]} ({where})",
    }
    raw = np.stack(kept)
    x = np.repeat(((raw - mean) / std)[:, None], channels, axis=1).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)[pick[: len(kept)]]
    every = np.arange(len(kept), dtype=np.int64)
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
