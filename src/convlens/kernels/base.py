"""The :class:`Kernel` record and the registry of named kernels.

Every kernel is stored as the **correlation** kernel: the array you would copy into a
``torch.nn.Conv2d`` weight (which cross-correlates) to get the named response. Textbooks and
scikit-image define many of these operators by convolution, which flips the kernel; each kernel's
``skimage`` field states the exact relation, and the tests pin it.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

FAMILIES = ("edge", "line", "blob", "smoothing", "gabor", "sharpen", "emboss")

# Parameter limits (every bank kernel is finite, and integer kernels exact, inside them).
MAX_SIZE = 99  # largest kernel side
SIGMA_MIN = 1e-3  # below this every sampled Gaussian is already a delta (exp(-0.5 / 1e-6) == 0)
SIGMA_MAX = 1e6  # above this a size-99 Gaussian is flat to 1e-9; sigma**4 stays finite
GAMMA_MIN, GAMMA_MAX = 1e-3, 1e3  # Gabor aspect ratio (sigma_y = sigma / gamma)


@dataclass(frozen=True)
class Kernel:
    """A named 2-D correlation kernel with its provenance.

    ``family`` is one of :data:`FAMILIES`; ``normalisation`` says how the weights are scaled;
    ``skimage`` (when scikit-image has the operator) is the identity the tests check, e.g.
    ``"skimage.filters.sobel_v(img) == correlate2d(img, K) / 4"`` away from the border.
    """

    name: str
    weights: NDArray[Any]
    family: str
    description: str
    source: str
    normalisation: str
    params: dict[str, Any] = field(default_factory=dict)
    skimage: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "family": self.family,
            "description": self.description,
            "source": self.source,
            "normalisation": self.normalisation,
            "params": dict(self.params),
            "skimage": self.skimage,
            "weights": self.weights.tolist(),
        }


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Kernel]
    family: str
    summary: str


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str, family: str, summary: str
) -> Callable[[Callable[..., Kernel]], Callable[..., Kernel]]:
    """Decorator: register ``factory(**params) -> Kernel`` under ``name``."""
    if family not in FAMILIES:  # pragma: no cover - programming error
        raise ValueError(f"unknown family {family!r}")

    def deco(factory: Callable[..., Kernel]) -> Callable[..., Kernel]:
        _REGISTRY[name] = _Entry(factory, family, summary)
        return factory

    return deco


def list_kernels() -> list[str]:
    """Names of every kernel in the bank, grouped by family (in :data:`FAMILIES` order)."""
    return sorted(_REGISTRY, key=lambda n: FAMILIES.index(_REGISTRY[n].family))


def kernel_summary(name: str) -> tuple[str, str]:
    """``(family, one-line summary)`` of a registered kernel."""
    entry = _lookup(name)
    return entry.family, entry.summary


def kernel_parameters(name: str) -> dict[str, Any]:
    """The parameters a kernel accepts, with their defaults."""
    sig = inspect.signature(_lookup(name).factory)
    return {p.name: p.default for p in sig.parameters.values()}


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConvlensError(f"unknown kernel {name!r}{hint}", hint_key="unknown_kernel") from None


def get_kernel(name: str, **params: Any) -> Kernel:
    """Build the named kernel, e.g. ``get_kernel("gabor", angle=45, frequency=0.2)``.

    >>> get_kernel("sobel_x").weights
    array([[-1,  0,  1],
           [-2,  0,  2],
           [-1,  0,  1]])
    """
    entry = _lookup(name)
    allowed = kernel_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConvlensError(
            f"kernel {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(allowed) or 'no parameters'}"
        )
    kernel = entry.factory(**params)
    weights = kernel.weights
    if weights.dtype.kind in "fc" and not np.all(np.isfinite(weights)):  # pragma: no cover - guard
        raise ConvlensError(f"kernel {name!r} with {params} has non-finite weights")
    if weights.size and float(np.max(np.abs(weights.astype(np.float64)))) <= ZERO_KERNEL_ATOL:
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "its defaults"
        raise ConvlensError(
            f"kernel {name!r} with {shown} is all zero: the parameters leave nothing to "
            "detect; change them"
        )
    return kernel


ZERO_KERNEL_ATOL = 0.0
"""A bank kernel whose every weight is at most this in magnitude is refused as all zero (e.g.
``gaussian_dx`` with a width far below a pixel). Exactly zero: tiny but real kernels (a LoG with a
width of 1e6 pixels on 99 pixels) stay valid."""


def parse_kernel_spec(spec: str) -> Kernel:
    """``"sobel_x"`` or ``"gabor:angle=45,frequency=0.2,size=9"`` -> :class:`Kernel`.

    >>> parse_kernel_spec("gaussian:sigma=1,size=3").shape
    (3, 3)
    """
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, raw = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ConvlensError(
                    f"kernel spec {spec!r}: expected name:key=value,key=value, got item {item!r}"
                )
            params[key] = _parse_value(raw.strip(), spec)
    return get_kernel(name.strip(), **params)


def _parse_value(raw: str, spec: str) -> int | float:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise ConvlensError(f"kernel spec {spec!r}: {raw!r} is not a number") from None
    if not np.isfinite(value):
        raise ConvlensError(f"kernel spec {spec!r}: {raw!r} is not a finite number")
    return value


def check_size(
    size: Any, name: str, *, odd: bool = True, minimum: int = 1, maximum: int = MAX_SIZE
) -> int:
    """Validate a kernel size parameter."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ConvlensError(f"{name}: size must be an integer, got {size!r}")
    size = int(size)
    if size < minimum or size > maximum or (odd and size % 2 == 0):
        kind = "an odd integer" if odd else "an integer"
        raise ConvlensError(f"{name}: size must be {kind} in [{minimum}, {maximum}], got {size}")
    return size


def check_number(value: Any, name: str) -> float:
    """A finite real number (Python or NumPy int/float; not bool, not a string) as a float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ConvlensError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ConvlensError(f"{name} must be a finite number, got {value!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """Validate a strictly positive finite float parameter."""
    v = check_number(value, name)
    if v <= 0:
        raise ConvlensError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_range(value: Any, name: str, lo: float, hi: float) -> float:
    """A finite number in ``[lo, hi]`` (``lo > 0``); the message names both limits."""
    v = check_number(value, name)
    if not lo <= v <= hi:
        raise ConvlensError(f"{name} must be a positive number in [{lo:g}, {hi:g}], got {value!r}")
    return v


def check_sigma(value: Any, name: str) -> float:
    """A Gaussian width in ``[SIGMA_MIN, SIGMA_MAX]`` (outside it the sampled kernels underflow)."""
    return check_range(value, name, SIGMA_MIN, SIGMA_MAX)
