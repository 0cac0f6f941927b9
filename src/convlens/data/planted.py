"""Planted-truth datasets: images whose labels depend on a structure we choose, so the right answer
about what a first conv layer learns from them is known before training (``planted:NAME``).

All are 25 x 25 grey images (the bundled faces' size, so the demo recipe's network applies), 200
per draw, two balanced classes, generated from a stated seed (``planted:NAME`` draws with seed 0,
``planted:NAME:K`` with seed ``K``). A unit-variance field ``z`` is mapped to [0, 1] by
``clip(0.5 + 0.15 z, 0, 1)`` (clipping affects about 0.1% of pixels).

===================  ================================================  =============================
name                 images and labels                                 truth (what the layer learns)
===================  ================================================  =============================
``oriented``         Gaussian fields with power ``1 + 0.9 s cos 2phi``  from the task: the labels
                     (``s = +1`` class 0, ``-1`` class 1; ``phi`` the    need orientation, and the
                     frequency's angle): pooled over the classes the     pooled image statistics are
                     spectrum is flat (white)                           exactly white
``orismooth``        the same, times a Gaussian low-pass spectrum        from the task (on smooth,
                     (``sigma_f = 0.12`` cycles/pixel)                  correlated images)
``white-random``     binary white noise, labels drawn at random          nothing to learn
``blurred-random``   white noise blurred (Gaussian, sigma 1.5 px),       image statistics only
                     labels drawn at random
``teacher-sobel``    white noise blurred (sigma 0.5 px); of 600 drawn,   from the task: the teacher
``teacher-prewitt``  the 100 lowest (label 0) and 100 highest (label 1)  kernel (``sobel_x``,
``teacher-gabor``    by the mean of relu(teacher kernel response)        ``prewitt_y``,
                                                                         ``gabor(angle=45,f=0.2,
                                                                         phase=90)`` of the 5 x 5
                                                                         bank)
===================  ================================================  =============================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

SIZE = 25
N_IMAGES = 200
TEACHER_POOL = 3
"""Teacher cases draw ``3 x 200`` images and keep the 100 with the lowest and the 100 with the
highest teacher response energy (labels 0 and 1): a margin between the classes."""
TEACHERS = {
    "teacher-sobel": "sobel_x",
    "teacher-prewitt": "prewitt_y",
    "teacher-gabor": "gabor(angle=45,f=0.2,phase=90)",
}


@dataclass(frozen=True)
class Planted:
    """One planted case: what it is and the truth a verdict must find."""

    name: str
    description: str
    truth: str
    """``"from the task"``, ``"image statistics"`` or ``"nothing"``."""
    teacher: str | None = None
    """The bank label of the hidden kernel the labels were computed with (teacher cases)."""


CASES: dict[str, Planted] = {
    "oriented": Planted(
        "oriented",
        "Gaussian fields whose orientation of energy is the label; pooled spectrum white",
        "from the task",
    ),
    "orismooth": Planted(
        "orismooth",
        "smooth Gaussian fields whose orientation of energy is the label",
        "from the task",
    ),
    "white-random": Planted("white-random", "binary white noise, random labels", "nothing"),
    "blurred-random": Planted(
        "blurred-random", "blurred white noise (sigma 1.5 px), random labels", "image statistics"
    ),
    **{
        name: Planted(
            name,
            f"slightly blurred white noise labelled by the {label} response energy",
            "from the task",
            teacher=label,
        )
        for name, label in TEACHERS.items()
    },
}


def _freqs(n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    return np.hypot(fx, fy), np.arctan2(fy, fx)


def _field(rng: np.random.Generator, power: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """A real Gaussian field with the given power spectrum, scaled to unit variance per image."""
    white = rng.standard_normal((n, SIZE, SIZE))
    z = np.real(np.fft.ifft2(np.fft.fft2(white) * np.sqrt(power)[None]))
    z -= z.mean(axis=(1, 2), keepdims=True)
    return z / z.std(axis=(1, 2), keepdims=True)


def _blur(z: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    from scipy.ndimage import gaussian_filter

    out = np.stack([gaussian_filter(im, sigma, mode="wrap") for im in z])
    out -= out.mean(axis=(1, 2), keepdims=True)
    return out / out.std(axis=(1, 2), keepdims=True)


def _to01(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.clip(0.5 + 0.15 * z, 0.0, 1.0)


def _oriented(
    rng: np.random.Generator, smooth: bool
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    radius, angle = _freqs(SIZE)
    envelope = np.exp(-0.5 * (radius / 0.12) ** 2) if smooth else np.ones_like(radius)
    envelope[0, 0] = 0.0  # no DC
    y = np.repeat(np.array([0, 1], dtype=np.int64), N_IMAGES // 2)
    x = np.empty((N_IMAGES, SIZE, SIZE))
    for cls, s in ((0, 1.0), (1, -1.0)):
        power = envelope * (1.0 + 0.9 * s * np.cos(2 * angle))
        x[y == cls] = _field(rng, power, int((y == cls).sum()))
    order = rng.permutation(N_IMAGES)
    return _to01(x[order]), y[order]


def _teacher(rng: np.random.Generator, label: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    from convlens.kernels import matching_bank
    from convlens.ops import correlate

    kernel = next(e.weights for e in matching_bank(5) if e.label == label)
    pool = N_IMAGES * TEACHER_POOL
    x = _to01(_blur(rng.standard_normal((pool, SIZE, SIZE)), 0.5))
    resp = correlate(x[:, None], np.asarray(kernel, np.float64)[None, None])[:, 0]
    energy = np.maximum(resp, 0.0).mean(axis=(1, 2))
    order = np.argsort(energy, kind="stable")
    half = N_IMAGES // 2
    keep = np.concatenate([order[:half], order[-half:]])  # the lowest and the highest energies
    y = np.repeat(np.array([0, 1], dtype=np.int64), half)
    shuffle = rng.permutation(N_IMAGES)
    return x[keep][shuffle], y[shuffle]


def planted01(name: str, draw: int = 0) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The images in [0, 1] ``(200, 25, 25)`` and labels of planted case ``name``, draw ``draw``."""
    if name not in CASES:
        raise ConvlensError(f"unknown planted dataset {name!r}; expected one of {', '.join(CASES)}")
    rng = np.random.default_rng([int(draw), 7919, sorted(CASES).index(name)])
    if name in ("oriented", "orismooth"):
        return _oriented(rng, smooth=name == "orismooth")
    if name in TEACHERS:
        return _teacher(rng, TEACHERS[name])
    y = rng.permutation(np.repeat(np.array([0, 1], dtype=np.int64), N_IMAGES // 2))
    if name == "white-random":
        return np.where(rng.random((N_IMAGES, SIZE, SIZE)) < 0.5, 0.35, 0.65), y
    return _to01(_blur(rng.standard_normal((N_IMAGES, SIZE, SIZE)), 1.5)), y


def parse_spec(spec: str) -> tuple[str, int]:
    """``planted:NAME`` or ``planted:NAME:DRAW`` -> ``(NAME, DRAW)``."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] != "planted":
        raise ConvlensError(f"dataset {spec!r}: expected planted:NAME or planted:NAME:DRAW")
    draw = 0
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) > 2**32 - 1:
            raise ConvlensError(
                f"dataset {spec!r}: the draw must be an integer 0..4294967295, got {parts[2]!r}"
            )
        draw = int(parts[2])
    if parts[1] not in CASES:
        raise ConvlensError(
            f"dataset {spec!r}: unknown planted case {parts[1]!r}; expected one of {', '.join(CASES)}"
        )
    return parts[1], draw
