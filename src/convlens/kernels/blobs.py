"""Smoothing, blob (centre-surround), sharpening and emboss kernels.

Gaussian-based kernels are sampled at integer offsets ``-r..r`` (``r = size // 2``) and use the same
discrete construction as ``scipy.ndimage.gaussian_filter`` (the 1-D Gaussian is normalised to sum 1
*before* any derivative factor is applied), so they equal scipy's impulse responses.

>>> from convlens.kernels import get_kernel
>>> get_kernel("laplacian_4").weights
array([[ 0,  1,  0],
       [ 1, -4,  1],
       [ 0,  1,  0]])
>>> round(float(get_kernel("gaussian", sigma=1.0, size=5).weights.sum()), 12)
1.0
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError
from convlens.kernels.base import Kernel, check_sigma, check_size, register


def gaussian_1d(sigma: float, radius: int, order: int = 0) -> NDArray[np.float64]:
    """Sampled 1-D Gaussian (sum 1) or its ``order``-th derivative, as a correlation kernel.

    ``order=1`` is ``x / sigma**2 * g(x)`` (positive response to an increasing signal), ``order=2`` is
    ``(x**2 / sigma**4 - 1 / sigma**2) * g(x)``.
    """
    sigma = check_sigma(sigma, "sigma")
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise ConvlensError(f"radius must be a non-negative integer, got {radius!r}")
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / (sigma * sigma))
    g /= g.sum()
    if order == 0:
        return g
    if order == 1:
        return x / sigma**2 * g
    if order == 2:
        return (x * x / sigma**4 - 1.0 / sigma**2) * g
    raise ConvlensError(f"order must be 0, 1 or 2, got {order}")  # pragma: no cover


@register("box", "smoothing", "box (mean) filter")
def box(size: int = 3) -> Kernel:
    size = check_size(size, "box", odd=False)
    return Kernel(
        name="box",
        weights=np.full((size, size), 1.0 / (size * size)),
        family="smoothing",
        description=f"{size}x{size} moving average",
        source="the mean filter",
        normalisation=f"every weight 1/{size * size}; sums to 1",
        params={"size": size},
    )


@register("gaussian", "smoothing", "sampled Gaussian blur")
def gaussian(sigma: float = 1.0, size: int = 5) -> Kernel:
    sigma = check_sigma(sigma, "gaussian: sigma")
    size = check_size(size, "gaussian")
    g = gaussian_1d(sigma, size // 2)
    r = size // 2
    return Kernel(
        name="gaussian",
        weights=np.outer(g, g),
        family="smoothing",
        description=f"isotropic Gaussian, sigma {sigma:g}, {size}x{size}",
        source="sampled Gaussian, as scipy.ndimage.gaussian_filter",
        normalisation="1-D factors each sum to 1, so the kernel sums to 1",
        params={"sigma": sigma, "size": size},
        skimage=f"skimage.filters.gaussian(img, sigma={sigma:g}, truncate={r / sigma:g}, mode='constant') "
        "== correlate2d(img, K, padding='same')",
    )


def _gauss_deriv(axis: str, sigma: float, size: int) -> Kernel:
    name = f"gaussian_d{axis}"
    sigma = check_sigma(sigma, f"{name}: sigma")
    size = check_size(size, name, minimum=3)
    g0 = gaussian_1d(sigma, size // 2)
    g1 = gaussian_1d(sigma, size // 2, order=1)
    w = np.outer(g0, g1) if axis == "x" else np.outer(g1, g0)
    return Kernel(
        name=name,
        weights=w,
        family="edge",
        description=f"first derivative of a Gaussian along {axis}, sigma {sigma:g}, {size}x{size}",
        source="Gaussian derivative filter (scale-space derivative), as scipy.ndimage.gaussian_filter "
        "with order=1",
        normalisation="Gaussian factor sums to 1 before the x/sigma^2 factor",
        params={"sigma": sigma, "size": size},
        skimage=f"scipy.ndimage.gaussian_filter(img, {sigma:g}, order={(0, 1) if axis == 'x' else (1, 0)}, "
        f"radius={size // 2}, mode='constant') == correlate2d(img, K, padding='same')",
    )


@register("gaussian_dx", "edge", "derivative of Gaussian along x")
def gaussian_dx(sigma: float = 1.0, size: int = 5) -> Kernel:
    return _gauss_deriv("x", sigma, size)


@register("gaussian_dy", "edge", "derivative of Gaussian along y")
def gaussian_dy(sigma: float = 1.0, size: int = 5) -> Kernel:
    return _gauss_deriv("y", sigma, size)


@register("laplacian_4", "blob", "discrete Laplacian, 4-neighbour")
def laplacian_4() -> Kernel:
    return Kernel(
        name="laplacian_4",
        weights=np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.int64),
        family="blob",
        description="5-point discrete Laplacian (sum of second differences along x and y)",
        source="finite-difference Laplacian; Gonzalez & Woods",
        normalisation="integer weights, sum 0; negative centre (the Laplacian, not its negative)",
        skimage="skimage.filters.laplace(img, ksize=3) == -correlate2d(img, K)  (opposite sign)",
    )


@register("laplacian_8", "blob", "discrete Laplacian, 8-neighbour")
def laplacian_8() -> Kernel:
    w = np.ones((3, 3), dtype=np.int64)
    w[1, 1] = -8
    return Kernel(
        name="laplacian_8",
        weights=w,
        family="blob",
        description="9-point Laplacian including the diagonals",
        source="finite-difference Laplacian with diagonal neighbours; Gonzalez & Woods",
        normalisation="integer weights, sum 0; negative centre",
    )


@register("log", "blob", "Laplacian of Gaussian (Marr-Hildreth)")
def log(sigma: float = 1.0, size: int = 5) -> Kernel:
    sigma = check_sigma(sigma, "log: sigma")
    size = check_size(size, "log", minimum=3)
    r = size // 2
    g0, g2 = gaussian_1d(sigma, r), gaussian_1d(sigma, r, order=2)
    return Kernel(
        name="log",
        weights=np.outer(g0, g2) + np.outer(g2, g0),
        family="blob",
        description=f"Laplacian of Gaussian, sigma {sigma:g}, {size}x{size}: negative centre, positive ring",
        source="Marr & Hildreth (1980), 'Theory of edge detection'; sampled as "
        "scipy.ndimage.gaussian_laplace",
        normalisation="sum of second-derivative-of-Gaussian separable terms (sum close to, not exactly, 0)",
        params={"sigma": sigma, "size": size},
        skimage=f"scipy.ndimage.gaussian_laplace(img, {sigma:g}, radius={r}, mode='constant') "
        "== correlate2d(img, K, padding='same')",
    )


@register("dog", "blob", "difference of Gaussians (centre-surround)")
def dog(sigma1: float = 1.0, sigma2: float = 1.6, size: int = 7) -> Kernel:
    sigma1 = check_sigma(sigma1, "dog: sigma1")
    sigma2 = check_sigma(sigma2, "dog: sigma2")
    if sigma2 <= sigma1:
        raise ConvlensError(
            f"dog: sigma2 must be larger than sigma1, got sigma1={sigma1}, sigma2={sigma2}"
        )
    size = check_size(size, "dog", minimum=3)
    r = size // 2
    g1, g2 = gaussian_1d(sigma1, r), gaussian_1d(sigma2, r)
    return Kernel(
        name="dog",
        weights=np.outer(g1, g1) - np.outer(g2, g2),
        family="blob",
        description=f"difference of Gaussians, sigma {sigma1:g} minus sigma {sigma2:g}, {size}x{size}: "
        "positive centre, negative surround",
        source="Marr & Hildreth (1980); ratio 1.6 approximates the LoG",
        normalisation="each Gaussian sums to 1 on the grid, so the kernel sums to 0",
        params={"sigma1": sigma1, "sigma2": sigma2, "size": size},
        skimage=f"skimage.filters.difference_of_gaussians(img, {sigma1:g}, {sigma2:g}, mode='constant', "
        f"truncate=...) with both Gaussians truncated at radius {r} == correlate2d(img, K, padding='same')",
    )


@register("sharpen", "sharpen", "unsharp 3x3 sharpening")
def sharpen() -> Kernel:
    return Kernel(
        name="sharpen",
        weights=np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.int64),
        family="sharpen",
        description="identity minus the 4-neighbour Laplacian: boosts edges, keeps flat regions",
        source="delta - laplacian_4",
        normalisation="integer weights, sum 1 (brightness preserved)",
    )


@register("emboss", "emboss", "emboss (directional relief) 3x3")
def emboss() -> Kernel:
    return Kernel(
        name="emboss",
        weights=np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.int64),
        family="emboss",
        description="relief lit from the lower right: a diagonal derivative plus the identity",
        source="common 3x3 emboss mask (e.g. GIMP)",
        normalisation="integer weights, sum 1",
    )
