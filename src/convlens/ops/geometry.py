"""Output-size, padding and receptive-field arithmetic (integer arithmetic, no arrays).

Every size, stride, padding, dilation and group count must be a Python or NumPy integer, as in
PyTorch: ``True``, ``1.5``, ``2.0``, ``"2"`` and pairs such as ``((1.5, 2.5),)`` are refused with a
``ConvlensError`` naming the value; ``np.int64(1)`` is accepted everywhere.

The output length of a cross-correlation along one axis, for input length ``L``, kernel length
``k``, stride ``s``, dilation ``d`` and padding ``(lo, hi)`` is::

    out = floor((L + lo + hi - d*(k - 1) - 1) / s) + 1

>>> output_length(4, 3)                       # the seed's 4x4 input, 3x3 kernel, no padding
2
>>> output_length(32, 7, stride=2, padding=(3, 3))
16
>>> resolve_padding("same", (5,), (3,))       # stride 1: total padding d*(k-1) = 2, split 1 / 1
((1, 1),)
>>> resolve_padding("full", (5,), (3,))
((2, 2),)
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from convlens.errors import ConvlensError

PaddingMode = Literal["valid", "same", "full"]
PaddingSpec = PaddingMode | int | Sequence[int] | Sequence[Sequence[int]]


def is_integer(value: Any) -> bool:
    """True for a Python or NumPy integer; False for bools (``True`` is not a size) and floats."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _index(value: Any) -> int:
    """A value that :func:`is_integer` accepted, as a Python int."""
    return operator.index(value)


def _integers(value: Any, name: str) -> tuple[int, ...] | None:
    """The elements of a (non-string) sequence as Python ints, or None when ``value`` is not one."""
    if type(value) is tuple and all(type(v) is int for v in value):
        return value  # the common case, checked cheaply
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        return None
    items = (
        list(np.asarray(value, dtype=object).ravel())
        if isinstance(value, np.ndarray)
        else list(value)
    )
    if not all(is_integer(v) for v in items):
        raise ConvlensError(f"{name} must be integers, got {_show(value)}")
    return tuple(int(v) for v in items)


def _show(value: Any) -> str:
    """``repr`` with NumPy scalars shown as plain numbers (``1.5``, not ``np.float64(1.5)``)."""
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, tuple | list):
        inner = ", ".join(_show(v) for v in value)
        return (
            f"({inner},)"
            if isinstance(value, tuple) and len(value) == 1
            else (f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
        )
    if isinstance(value, np.ndarray):
        return _show(value.tolist())
    return repr(value)


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """A Python or NumPy integer (not bool, not a float such as ``2.0``) as a Python int."""
    if type(value) is int:
        v = value
    elif is_integer(value):
        v = int(value)
    else:
        raise ConvlensError(f"{name} must be an integer, got {_show(value)}")
    if minimum is not None and v < minimum:
        raise ConvlensError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_shape(shape: Any, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """A sequence of integer sizes (Python or NumPy ints, each ``>= minimum``) as a tuple of ints."""
    values = _integers(shape, name)
    if values is None:
        raise ConvlensError(f"{name} must be a sequence of integers, got {_show(shape)}")
    for v in values:
        if v < minimum:
            raise ConvlensError(f"{name} must hold sizes >= {minimum}, got {_show(shape)}")
    return values


def as_tuple(
    value: int | Sequence[int], ndim: int, name: str, *, minimum: int = 1
) -> tuple[int, ...]:
    """Broadcast an int (or check a sequence) to ``ndim`` ints, each ``>= minimum``.

    Only Python and NumPy integers are accepted (as in PyTorch): ``True``, ``1.5`` and ``2.0`` and
    ``"2"`` are refused.

    >>> as_tuple(2, 2, "stride")
    (2, 2)
    >>> as_tuple(1.5, 2, "stride")
    Traceback (most recent call last):
    ...
    convlens.errors.ConvlensError: stride must be integers, got 1.5
    """
    if is_integer(value):
        values: tuple[int, ...] = (_index(value),) * ndim
    else:
        seq = _integers(value, name)
        if seq is None:
            raise ConvlensError(f"{name} must be integers, got {_show(value)}")
        values = seq
        if len(values) != ndim:
            raise ConvlensError(
                f"{name} must have {ndim} value(s), one per spatial axis, got {len(values)}: {_show(value)}"
            )
    for v in values:
        if v < minimum:
            raise ConvlensError(f"{name} must be >= {minimum}, got {_show(value)}")
    return values


def effective_kernel(k: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``d*(k-1) + 1``."""
    return dilation * (k - 1) + 1


def resolve_padding(
    padding: PaddingSpec,
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> tuple[tuple[int, int], ...]:
    """Turn a padding spec into explicit ``(lo, hi)`` zero-padding per spatial axis.

    - ``"valid"``: no padding.
    - ``"full"``: ``d*(k-1)`` on both sides (every partial overlap).
    - ``"same"``: output length ``ceil(L / stride)``; total padding
      ``max((out-1)*s + d*(k-1) + 1 - L, 0)``, ``lo = total // 2``, ``hi = total - lo``. For stride 1 this
      is exactly PyTorch's ``padding="same"`` (which refuses stride > 1); for larger strides it is the
      TensorFlow rule.
    - an int ``p``: ``(p, p)`` on every axis; a tuple of ints: one symmetric value per axis;
      a tuple of ``(lo, hi)`` pairs: explicit.
    """
    kernel_shape = check_shape(kernel_shape, "kernel sizes")
    input_shape = check_shape(input_shape, "input sizes", minimum=0)
    ndim = len(kernel_shape)
    strides = as_tuple(stride, ndim, "stride")
    dilations = as_tuple(dilation, ndim, "dilation")
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * ndim
        if mode == "full":
            return tuple(
                (d * (k - 1), d * (k - 1)) for k, d in zip(kernel_shape, dilations, strict=True)
            )
        if mode == "same":
            if len(input_shape) != ndim:
                raise ConvlensError(
                    f"input has {len(input_shape)} spatial axes but the kernel has {ndim}: "
                    f"input {tuple(input_shape)}, kernel {tuple(kernel_shape)}"
                )
            pads = []
            for length, k, s, d in zip(input_shape, kernel_shape, strides, dilations, strict=True):
                out = -(-length // s)  # ceil(length / s) in exact integer arithmetic
                total = max((out - 1) * s + effective_kernel(k, d) - length, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ConvlensError(
            f"padding must be 'valid', 'same', 'full', an int or a tuple, got {padding!r}"
        )
    if is_integer(padding):
        p = _index(padding)
        if p < 0:
            raise ConvlensError(f"padding must be >= 0, got {p}")
        return ((p, p),) * ndim
    if isinstance(padding, bytes) or not isinstance(padding, Sequence | np.ndarray):
        raise ConvlensError(
            f"padding must be 'valid', 'same', 'full', an integer or a tuple of integers, "
            f"got {_show(padding)}"
        )
    items = list(padding)
    if len(items) != ndim:
        raise ConvlensError(
            f"padding must have {ndim} entries, one per spatial axis, got {len(items)}: {_show(padding)}"
        )
    return tuple(_padding_pair(item, padding) for item in items)


def _padding_pair(item: Any, padding: Any) -> tuple[int, int]:
    """One axis of an explicit padding tuple: an integer ``p`` -> ``(p, p)``, or a ``(lo, hi)`` pair."""
    if is_integer(item):
        pair = (_index(item), _index(item))
    else:
        pair_values = None
        if not isinstance(item, str | bytes) and isinstance(item, Sequence | np.ndarray):
            pair_values = list(item)
        if pair_values is None or len(pair_values) != 2:
            raise ConvlensError(
                f"each padding entry must be an integer or a (lo, hi) pair of integers, "
                f"got {_show(item)}"
            )
        if not all(is_integer(v) for v in pair_values):
            raise ConvlensError(f"padding must be integers, got {_show(padding)}")
        pair = (int(pair_values[0]), int(pair_values[1]))
    if pair[0] < 0 or pair[1] < 0:
        raise ConvlensError(f"padding must be >= 0, got {_show(padding)}")
    return pair


def output_length(
    length: int,
    kernel: int,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    dilation: int = 1,
) -> int:
    """Output length along one axis; may be <= 0 when the kernel does not fit (callers check)."""
    length = check_int(length, "input length", minimum=0)
    kernel = check_int(kernel, "kernel size", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    dilation = check_int(dilation, "dilation", minimum=1)
    lo, hi = (check_int(p, "padding", minimum=0) for p in padding)
    span = effective_kernel(kernel, dilation)
    return (length + lo + hi - span) // stride + 1


def output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
) -> tuple[int, ...]:
    """Spatial output shape of a cross-correlation; raises if the kernel does not fit.

    >>> output_shape((4, 4), (3, 3))
    (2, 2)
    >>> output_shape((28, 28), (5, 5), padding="same")
    (28, 28)
    >>> output_shape((10,), (3,), stride=2, dilation=2, padding=1)
    (4,)
    """
    kernel_shape = check_shape(kernel_shape, "kernel sizes")
    input_shape = check_shape(input_shape, "input sizes", minimum=0)
    ndim = len(kernel_shape)
    if len(input_shape) != ndim:
        raise ConvlensError(
            f"input has {len(input_shape)} spatial axes but the kernel has {ndim}: "
            f"input {tuple(input_shape)}, kernel {tuple(kernel_shape)}"
        )
    strides = as_tuple(stride, ndim, "stride")
    dilations = as_tuple(dilation, ndim, "dilation")
    pads = resolve_padding(padding, input_shape, kernel_shape, strides, dilations)
    out = []
    for axis, (length, k, s, p, d) in enumerate(
        zip(input_shape, kernel_shape, strides, pads, dilations, strict=True)
    ):
        n = output_length(length, k, s, p, d)
        if n <= 0:
            raise ConvlensError(
                f"kernel does not fit along axis {axis}: input length {length} with padding {p} "
                f"is shorter than the dilated kernel span {effective_kernel(k, d)} "
                f"(kernel {k}, dilation {d}); pad the input (padding='same' or 'full') or use a smaller kernel"
            )
        out.append(n)
    return tuple(out)


@dataclass(frozen=True)
class LayerGeometry:
    """One layer of a stack for receptive-field arithmetic.

    ``kind`` is ``"conv"``, ``"pool"`` (same arithmetic as conv) or ``"dense"`` (sees everything).
    Sizes are per spatial axis (ints are broadcast).
    """

    name: str
    kind: Literal["conv", "pool", "dense"] = "conv"
    kernel: tuple[int, ...] = (1,)
    stride: tuple[int, ...] = (1,)
    padding: tuple[int, ...] = (0,)
    dilation: tuple[int, ...] = (1,)

    @staticmethod
    def make(
        name: str,
        kind: Literal["conv", "pool", "dense"] = "conv",
        kernel: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        ndim: int = 2,
    ) -> LayerGeometry:
        return LayerGeometry(
            name=name,
            kind=kind,
            kernel=as_tuple(kernel, ndim, f"{name}.kernel"),
            stride=as_tuple(stride, ndim, f"{name}.stride"),
            padding=as_tuple(padding, ndim, f"{name}.padding", minimum=0),
            dilation=as_tuple(dilation, ndim, f"{name}.dilation"),
        )


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one unit after a layer, per spatial axis, in input pixels.

    ``size``: how many input pixels one unit sees; ``jump``: input-pixel distance between adjacent
    units; ``start``: input coordinate of the centre of the first unit's field (may be negative when
    padding is used); ``is_global``: the unit sees the whole input (dense layers).
    """

    name: str
    kind: str
    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    output_shape: tuple[int, ...]
    is_global: bool = False
    input_shape: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def receptive_fields(
    layers: Sequence[LayerGeometry], input_shape: Sequence[int]
) -> list[ReceptiveField]:
    """Theoretical receptive field after each layer of a stack.

    Recurrence (Araujo et al., Distill 2019), per axis, with ``k' = d*(k-1) + 1``::

        size_out  = size_in + (k' - 1) * jump_in
        jump_out  = jump_in * stride
        start_out = start_in + ((k' - 1) / 2 - padding) * jump_in

    A dense layer sees the whole input: its size is the input shape and ``is_global`` is True.

    >>> stack = [LayerGeometry.make("stem", kernel=3), LayerGeometry.make("pool1", "pool", 2, 2),
    ...          LayerGeometry.make("block", kernel=3)]
    >>> [rf.size for rf in receptive_fields(stack, (28, 28))]
    [(3, 3), (4, 4), (8, 8)]
    """
    shape = check_shape(input_shape, "input_shape")
    ndim = len(shape)
    size = (1,) * ndim
    jump = (1,) * ndim
    start: tuple[float, ...] = (0.0,) * ndim
    current = shape
    out: list[ReceptiveField] = []
    dense_seen = False
    for layer in layers:
        if layer.kind == "dense" or dense_seen:
            dense_seen = True
            out.append(
                ReceptiveField(
                    layer.name,
                    layer.kind,
                    shape,
                    jump,
                    tuple((s - 1) / 2 for s in shape),
                    (1,) * ndim,
                    True,
                    shape,
                )
            )
            continue
        kernel = _broadcast(layer.kernel, ndim)
        stride = _broadcast(layer.stride, ndim)
        pad = _broadcast(layer.padding, ndim)
        dil = _broadcast(layer.dilation, ndim)
        spans = tuple(effective_kernel(k, d) for k, d in zip(kernel, dil, strict=True))
        new_current = output_shape(current, kernel, stride, [(p, p) for p in pad], dil)
        start = tuple(
            st + ((sp - 1) / 2 - p) * j
            for st, sp, p, j in zip(start, spans, pad, jump, strict=True)
        )
        size = tuple(sz + (sp - 1) * j for sz, sp, j in zip(size, spans, jump, strict=True))
        jump = tuple(j * s for j, s in zip(jump, stride, strict=True))
        is_global = all(sz >= n for sz, n in zip(size, shape, strict=True)) and all(
            n == 1 for n in new_current
        )
        out.append(
            ReceptiveField(layer.name, layer.kind, size, jump, start, new_current, is_global, shape)
        )
        current = new_current
    return out


def _broadcast(values: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    if len(values) == ndim:
        return values
    if len(values) == 1:
        return values * ndim
    raise ConvlensError(f"expected 1 or {ndim} values, got {values}")
