"""Load one image as a float64 grey matrix, with the conversion recorded (no silent rescaling).

Sources: ``sample:NAME`` (an image shipped inside scikit-image's wheel, so it works offline), an
image file (PNG, JPEG, TIFF, BMP, ... via Pillow), or a ``.npy`` 2-D array (used as is).

Conversion, recorded in :attr:`LoadedImage.conversion`:
- integer pixels are divided by the dtype's maximum (uint8 / 255, uint16 / 65535) into [0, 1];
- colour is converted to grey with ``skimage.color.rgb2gray`` (ITU-R BT.709 luma:
  0.2125 R + 0.7154 G + 0.0721 B); an alpha channel is dropped;
- ``.npy`` arrays and float images are used unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

# Images that ship inside the scikit-image wheel (others are downloaded by pooch: not allowed here).
SAMPLE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "moon",
    "page",
    "rocket",
    "stereo_motorcycle",
    "text",
)
DEFAULT_MAX_PIXELS = 16_777_216  # 4096 x 4096


@dataclass(frozen=True)
class LoadedImage:
    """A grey float64 image and how it was made."""

    pixels: NDArray[np.float64]
    source: str
    original_shape: tuple[int, ...]
    original_dtype: str
    conversion: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "shape": list(self.pixels.shape),
            "original_shape": list(self.original_shape),
            "original_dtype": self.original_dtype,
            "conversion": self.conversion,
        }


def load_image(spec: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load ``sample:NAME``, an image file or a ``.npy`` array as a grey float64 matrix."""
    if max_pixels < 1:
        raise ConvlensError(f"max_pixels must be >= 1, got {max_pixels}")
    if spec.startswith("sample:"):
        return _sample(spec[len("sample:") :], max_pixels)
    path = Path(spec)
    if not path.exists():
        hint = (
            " (bundled images are named sample:camera, sample:astronaut, ...)"
            if ":" not in spec
            else ""
        )
        raise ConvlensError(f"image {spec!r} does not exist{hint}")
    if not path.is_file():
        raise ConvlensError(f"image {spec!r} is not a file")
    if path.suffix.lower() == ".npy":
        return _npy(path, max_pixels)
    return _file(path, max_pixels)


def _check_pixels(shape: tuple[int, ...], source: str, max_pixels: int) -> None:
    n = int(np.prod(shape[:2]))
    if n > max_pixels:
        raise ConvlensError(
            f"image {source!r} has {shape[0]}x{shape[1]} = {n} pixels, over the cap of {max_pixels} "
            f"(max_pixels; default DEFAULT_MAX_PIXELS = {DEFAULT_MAX_PIXELS} in convlens.data.images)",
            hint_key="pixel_cap",
        )


def _sample(name: str, max_pixels: int) -> LoadedImage:
    if name not in SAMPLE_IMAGES:
        raise ConvlensError(
            f"unknown sample image {name!r}; bundled offline: {', '.join(SAMPLE_IMAGES)}"
        )
    from skimage import data

    raw = getattr(data, name)()
    if name == "stereo_motorcycle":
        raw = raw[0]  # (left, right, disparity): the left view
    return _to_grey(np.asarray(raw), f"sample:{name}", max_pixels)


def _npy(path: Path, max_pixels: int) -> LoadedImage:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ConvlensError(f"cannot read {str(path)!r} as a .npy array: {exc}") from None
    if arr.ndim != 2 or arr.dtype.kind not in "biuf" or arr.size == 0:
        raise ConvlensError(
            f"{str(path)!r}: expected a non-empty 2-D numeric array, got shape {arr.shape} dtype {arr.dtype}"
        )
    _check_pixels(arr.shape, str(path), max_pixels)
    x = arr.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise ConvlensError(f"image {str(path)!r} contains NaN or Inf pixels ({bad} of {x.size})")
    return LoadedImage(
        x,
        str(path),
        arr.shape,
        str(arr.dtype),
        "none (.npy used as is, cast to float64)",
    )


def _file(path: Path, max_pixels: int) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            _check_pixels((opened.height, opened.width), str(path), max_pixels)
            img: Image.Image = opened
            if img.mode == "P":
                img = img.convert("RGBA")
            elif img.mode == "CMYK":
                img = img.convert("RGB")
            arr = np.asarray(img)
    except ConvlensError:
        raise
    except UnidentifiedImageError:
        raise ConvlensError(f"{str(path)!r} is not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ConvlensError(f"{str(path)!r} is too large to open safely: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ConvlensError(f"cannot decode image {str(path)!r}: {exc}") from None
    return _to_grey(arr, str(path), max_pixels)


def _to_grey(arr: NDArray[Any], source: str, max_pixels: int) -> LoadedImage:
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ConvlensError(
            f"image {source!r}: expected a 2-D or colour image, got shape {arr.shape}"
        )
    _check_pixels(arr.shape, source, max_pixels)
    steps = []
    shape, dtype = tuple(arr.shape), str(arr.dtype)
    if arr.dtype == bool:
        x = arr.astype(np.float64)
        steps.append("bool -> 0.0/1.0")
    elif arr.dtype.kind in "iu":
        top = np.iinfo(arr.dtype).max
        x = arr.astype(np.float64) / top
        steps.append(f"{arr.dtype} / {top} -> [0, 1]")
    elif arr.dtype.kind == "f":
        x = arr.astype(np.float64)
        steps.append("float used as is")
    else:
        raise ConvlensError(f"image {source!r}: unsupported pixel type {arr.dtype}")
    if x.ndim == 3:
        channels = x.shape[2]
        if channels in (2, 4):
            x = x[..., :-1]
            steps.append("alpha dropped")
        if x.shape[2] == 3:
            from skimage.color import rgb2gray

            x = rgb2gray(x)
            steps.append("RGB -> grey (skimage.color.rgb2gray, BT.709)")
        elif x.shape[2] == 1:
            x = x[..., 0]
        else:
            raise ConvlensError(f"image {source!r}: {channels} channels, expected 1-4")
    if not np.all(np.isfinite(x)):
        raise ConvlensError(f"image {source!r} contains NaN or Inf pixels")
    return LoadedImage(
        np.ascontiguousarray(x, dtype=np.float64), source, shape, dtype, "; ".join(steps)
    )
