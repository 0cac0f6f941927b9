"""Slow, obviously-correct reference implementations (independent of convlens.ops)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np


def loop_correlate(
    x: Any,
    w: Any,
    *,
    bias: Any = None,
    stride: tuple[int, ...] | int = 1,
    pads: tuple[tuple[int, int], ...] | None = None,
    dilation: tuple[int, ...] | int = 1,
    groups: int = 1,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Plain nested loops over every output element and every tap. ``dtype=object`` stays exact."""
    x = np.asarray(x)
    w = np.asarray(w)
    nd = w.ndim - 2
    stride = (stride,) * nd if isinstance(stride, int) else tuple(stride)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    pads = pads or ((0, 0),) * nd
    n = x.shape[0]
    o, cg = w.shape[:2]
    og = o // groups
    sp = x.shape[2:]
    ks = w.shape[2:]
    out_sp = [
        (sp[a] + pads[a][0] + pads[a][1] - dilation[a] * (ks[a] - 1) - 1) // stride[a] + 1
        for a in range(nd)
    ]
    out = np.empty((n, o, *out_sp), dtype=dtype)
    for idx in itertools.product(range(n), range(o), *(range(m) for m in out_sp)):
        b, oc, pos = idx[0], idx[1], idx[2:]
        g = oc // og
        acc: Any = 0 if dtype is object else dtype(0) if callable(dtype) else 0
        for ci in range(cg):
            for tap in itertools.product(*(range(k) for k in ks)):
                src = [pos[a] * stride[a] + tap[a] * dilation[a] - pads[a][0] for a in range(nd)]
                if all(0 <= src[a] < sp[a] for a in range(nd)):
                    xv = x[(b, g * cg + ci, *src)]
                    wv = w[(oc, ci, *tap)]
                    if dtype is object:
                        acc = acc + _py(xv) * _py(wv)
                    else:
                        acc = acc + dtype(xv) * dtype(wv)
        if bias is not None:
            acc = acc + (_py(bias[oc]) if dtype is object else dtype(bias[oc]))
        out[idx] = acc
    return out


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def loop_ncc(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson r per valid position with numpy's corrcoef (0 where the patch is constant)."""
    h, w = template.shape
    out = np.zeros((image.shape[0] - h + 1, image.shape[1] - w + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            patch = image[i : i + h, j : j + w].ravel()
            if np.ptp(patch) == 0:
                out[i, j] = 0.0
            else:
                out[i, j] = np.corrcoef(patch, template.ravel())[0, 1]
    return out
