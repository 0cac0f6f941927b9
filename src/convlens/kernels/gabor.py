"""The Gabor family: a sinusoid under a Gaussian envelope.

``g(x, y) = exp(-(x'^2 / sigma^2 + y'^2 / (sigma/gamma)^2) / 2) * cos(2 pi f x' + phase) / (2 pi sigma^2/gamma)``
with ``x' = x cos(theta) + y sin(theta)``, ``y' = -x sin(theta) + y cos(theta)``, x = column offset,
y = row offset (downwards), ``theta = radians(angle)``. This is exactly the real part of
``skimage.filters.gabor_kernel(frequency, theta, sigma_x=sigma, sigma_y=sigma/gamma, offset=phase)``
cropped to ``size x size``.

``angle=0`` varies along x (vertical stripes: responds to vertical edges and bars); ``angle=90``
varies along y. ``phase=0`` is even (bar/line-like), ``phase=90`` is odd (edge-like).

>>> from convlens.kernels import get_kernel
>>> k = get_kernel("gabor", angle=0, frequency=0.25, phase=0, sigma=2.0, size=5)
>>> bool((k.weights == k.weights[::-1, ::-1]).all())     # phase 0: point-symmetric
True
"""

from __future__ import annotations

import math

import numpy as np

from convlens.errors import ConvlensError
from convlens.kernels.base import (
    GAMMA_MAX,
    GAMMA_MIN,
    Kernel,
    check_number,
    check_positive,
    check_range,
    check_sigma,
    check_size,
    register,
)


@register("gabor", "gabor", "Gabor filter (angle, frequency, phase, sigma, gamma, size)")
def gabor(
    angle: float = 0.0,
    frequency: float = 0.25,
    phase: float = 0.0,
    sigma: float = 2.0,
    gamma: float = 1.0,
    size: int = 7,
) -> Kernel:
    """Real Gabor kernel; ``angle`` and ``phase`` in degrees, ``frequency`` in cycles per pixel."""
    size = check_size(size, "gabor", minimum=1)
    sigma = check_sigma(sigma, "gabor: sigma")
    gamma = check_range(gamma, "gabor: gamma", GAMMA_MIN, GAMMA_MAX)
    frequency = check_positive(frequency, "gabor: frequency")
    if frequency > 0.5:
        raise ConvlensError(
            f"gabor: frequency must be <= 0.5 cycles/pixel (Nyquist), got {frequency}"
        )
    angle = check_number(angle, "gabor: angle")
    phase = check_number(phase, "gabor: phase")
    theta = math.radians(float(angle))
    sigma_y = sigma / gamma
    r = size // 2
    y, x = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    ct, st = math.cos(theta), math.sin(theta)
    rotx = x * ct + y * st
    roty = -x * st + y * ct
    envelope = np.exp(-0.5 * (rotx**2 / sigma**2 + roty**2 / sigma_y**2))
    carrier = np.cos(2 * np.pi * frequency * rotx + math.radians(float(phase)))
    w = envelope * carrier / (2 * np.pi * sigma * sigma_y)
    return Kernel(
        name="gabor",
        weights=w,
        family="gabor",
        description=f"Gabor, angle {float(angle):g} deg, {frequency:g} cycles/px, phase {float(phase):g} deg, "
        f"sigma {sigma:g}, gamma {gamma:g}, {size}x{size}",
        source="Gabor (1946); Daugman (1985), 2-D Gabor model of simple cells",
        normalisation="envelope / (2 pi sigma_x sigma_y), as skimage.filters.gabor_kernel (real part)",
        params={
            "angle": float(angle),
            "frequency": frequency,
            "phase": float(phase),
            "sigma": sigma,
            "gamma": gamma,
            "size": size,
        },
        skimage="skimage.filters.gabor_kernel(frequency, radians(angle), sigma_x=sigma, "
        "sigma_y=sigma/gamma, offset=radians(phase)).real (centre size x size crop) == K",
    )
