"""Convolution as a dense matrix: the (doubly block) Toeplitz matrix of a correlation.

``conv_matrix(w, input_shape)`` returns ``M`` with ``M @ x.ravel() == correlate(x[None], w)[0].ravel()``
for any input ``x`` of shape ``input_shape = (C, *S)``. Every row is one output unit; its non-zeros are
the kernel taps that unit sees, which makes the locality of a conv layer (and the weight sharing)
visible: a dense layer would fill the whole row with independent weights.

>>> import numpy as np
>>> M = conv_matrix(np.array([[[1, 2]]]), (1, 4))        # 1-D kernel [1, 2] on a length-4 signal
>>> M
array([[1, 2, 0, 0],
       [0, 1, 2, 0],
       [0, 0, 1, 2]])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from convlens.errors import ConvlensError
from convlens.ops.correlate import cast_exact, result_dtype
from convlens.ops.geometry import (
    PaddingSpec,
    as_tuple,
    check_int,
    check_shape,
    output_shape,
    resolve_padding,
)

_MAX_ENTRIES = 50_000_000


def conv_matrix(
    w: ArrayLike,
    input_shape: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: PaddingSpec = "valid",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> NDArray[Any]:
    """Dense matrix of the correlation of an input of shape ``(C, *S)`` with ``w`` ``(O, C/g, *K)``.

    A 2-D ``w`` with a 2-D ``input_shape`` is taken as one kernel on one matrix.
    Built by index arithmetic (not by calling ``correlate``), so tests can use it as an oracle.
    """
    wa = np.asarray(w)
    if wa.dtype.kind == "O":
        wa = cast_exact(wa, wa.dtype)  # NumPy scalars -> Python numbers (exact)
    shape = check_shape(input_shape, "input_shape")
    if wa.ndim == 2 and len(shape) == 2:
        wa = wa[None, None]
        shape = (1, *shape)
    if wa.ndim < 3:
        raise ConvlensError(f"w: expected (O, C/groups, *kernel), got shape {wa.shape}")
    nd = wa.ndim - 2
    if len(shape) != nd + 1:
        raise ConvlensError(
            f"input_shape: expected (C, *spatial) with {nd} spatial axes, got {shape}"
        )
    c, spatial = shape[0], shape[1:]
    o, cg = wa.shape[:2]
    groups = check_int(groups, "groups", minimum=1)
    if c % groups or o % groups or cg != c // groups:
        raise ConvlensError(
            f"groups={groups} does not fit input channels {c} and weight shape {wa.shape}"
        )
    ksize = wa.shape[2:]
    strides = as_tuple(stride, nd, "stride")
    dils = as_tuple(dilation, nd, "dilation")
    pads = resolve_padding(padding, spatial, ksize, strides, dils)
    out_sp = output_shape(spatial, ksize, strides, pads, dils)
    rows = o * int(np.prod(out_sp))
    cols = c * int(np.prod(spatial))
    if rows * cols > _MAX_ENTRIES:
        raise ConvlensError(
            f"conv_matrix would have {rows}x{cols} = {rows * cols} entries (limit {_MAX_ENTRIES}); "
            "use a smaller input"
        )
    dtype = result_dtype(wa)
    if dtype.kind == "i" and wa.dtype.kind in "iu" and wa.size:
        # an entry sums at most every tap of one kernel: keep int64 only where that cannot wrap
        # (a uint64 weight above 2**63 cannot even be held); else Python ints, exact
        bound = float(np.abs(wa.astype(np.float64)).reshape(o, -1).sum(axis=1).max())
        if bound >= 2.0**62:
            dtype = np.dtype(object)
            wa = cast_exact(wa, dtype)
        else:
            wa = wa.astype(np.int64)  # uint64 + int64 would promote to float64
    m = np.zeros((rows, cols), dtype=dtype)
    og = o // groups
    out_strides = np.array([int(np.prod(out_sp[i + 1 :])) for i in range(nd)], dtype=np.int64)
    in_strides = np.array([int(np.prod(spatial[i + 1 :])) for i in range(nd)], dtype=np.int64)
    pos = np.stack(np.meshgrid(*(np.arange(n) for n in out_sp), indexing="ij"), axis=-1).reshape(
        -1, nd
    )
    for oc in range(o):
        g = oc // og
        for ci in range(cg):
            cin = g * cg + ci
            for tap in itertools.product(*(range(k) for k in ksize)):
                src = (
                    pos * np.array(strides)
                    + np.array(tap) * np.array(dils)
                    - np.array([p[0] for p in pads])
                )
                ok = np.all((src >= 0) & (src < np.array(spatial)), axis=1)
                r = oc * int(np.prod(out_sp)) + pos[ok] @ out_strides
                col = cin * int(np.prod(spatial)) + src[ok] @ in_strides
                m[r, col] += wa[(oc, ci, *tap)]
    return m
