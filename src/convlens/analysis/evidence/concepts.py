"""Which channels detect a face part (issue 24, after Network Dissection, Bau et al. 2017).

**Part masks** (:func:`part_masks`) come from the mean of aligned face crops. The eyes are the
darkest point of each half of the band at 20-45% of the height (columns 20-80%, away from the dark
background), each with a box of 5 x 5 around it. The mouth is the darkest row of the central columns in the band at 60-85%: 5 rows, the middle
40% of the width. The nose is the column band between them: 4 px wide, from 3 rows under the eyes
to 2 rows above the mouth. ``docs/channels.md`` shows them over the mean face.

**Overlap** (:func:`iou_table`): a channel's map on each face image is brought to input
resolution. Each input pixel takes the value of the output unit whose receptive-field centre is
nearest. The map is thresholded at the channel's own top-:data:`QUANTILE` value over all images
and positions. IoU with a part is the sum over images of the intersection over the sum of the
union.

**Nulls**, per channel and part:

- *shift*: the same maps against the part mask moved by every offset of at least
  :data:`MIN_SHIFT` pixels (circularly); the null is its 95th percentile.
- *untrained*: :data:`N_UNTRAINED` fresh initialisations of the same architecture, measured the
  same way; the channel's IoU must have a rank p-value of at most ``FAMILY_ALPHA / (layers x
  parts)`` among their best channels' IoUs (a network-level null, Bonferroni over the layers and
  parts tested: "would some channel of an untrained network look like this?").

A channel *detects* a part when its IoU is above both nulls and above :data:`MIN_IOU`. Its false
positive rate and power are measured on planted parts (``docs/channels.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.ops.geometry import ReceptiveField

QUANTILE = 0.9
MIN_SHIFT = 4
MIN_IOU = 0.1
N_UNTRAINED = 240
"""Untrained initialisations in the network-level null (enough for a rank p-value of
``FAMILY_ALPHA / 6``: two layers x three parts, ``(K + 1) x 0.025 / 6 >= 1``)."""
FAMILY_ALPHA = 0.025
"""Family-wise false-positive rate per network by design: Bonferroni over the layers and parts
tested. Half the 5% target, so that the measured rate stays under it: at 0.05 the planted-parts
validation measured 15/200 = 7.5% [4.6, 12] untrained networks with a detector (docs/channels.md)."""
PARTS = ("eyes", "nose", "mouth")
RULE = (
    f"a channel's map on each face image brought to input resolution (nearest receptive-field "
    f"centre), thresholded at the channel's top-{round(100 * (1 - QUANTILE))}% value over all "
    "images and positions; IoU with a part mask pooled over images (intersections over unions); "
    f"detector when the IoU exceeds {MIN_IOU}, the 95th percentile of the same channel against "
    f"the part mask shifted by every offset of >= {MIN_SHIFT} px, and a rank p-value <= "
    f"{FAMILY_ALPHA}/(layers x parts) among the best channels of K untrained "
    f"initialisations (K >= {N_UNTRAINED}, and (K + 1) x {FAMILY_ALPHA} / (layers x parts) >= 1; "
    f"Bonferroni: at most {100 * FAMILY_ALPHA:g}% of untrained networks show any detector); part "
    "masks from the mean face (docs/channels.md)"
)


def part_masks(mean_face: NDArray[Any]) -> dict[str, NDArray[np.bool_]]:
    """Boolean masks of the eyes, nose and mouth on an aligned mean face ``(H, W)``."""
    m = np.asarray(mean_face, dtype=np.float64)
    h, w = m.shape
    masks = {p: np.zeros((h, w), dtype=bool) for p in PARTS}
    top, bottom = round(0.2 * h), round(0.45 * h)
    inner0, inner1 = round(0.2 * w), round(0.8 * w)  # away from the dark background
    eye_rows = []
    for lo, hi in ((inner0, w // 2), (w - w // 2, inner1)):
        band = m[top:bottom, lo:hi]
        r, c = np.unravel_index(int(np.argmin(band)), band.shape)
        r, c = r + top, c + lo
        eye_rows.append(r)
        masks["eyes"][max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = True
    c0, c1 = round(0.3 * w), round(0.7 * w)
    m0, m1 = round(0.6 * h), round(0.85 * h)
    mouth = m0 + int(np.argmin(m[m0:m1, c0:c1].mean(axis=1)))
    masks["mouth"][max(mouth - 2, 0) : mouth + 3, c0:c1] = True
    eye = int(max(eye_rows))
    mid = w // 2
    masks["nose"][eye + 3 : max(mouth - 2, eye + 4), mid - 2 : mid + 2] = True
    return masks


def upsample(maps: NDArray[Any], rf: ReceptiveField, shape: tuple[int, int]) -> NDArray[Any]:
    """Maps ``(N, C, h, w)`` at input resolution ``(N, C, H, W)``: each input pixel takes the unit
    whose receptive-field centre is nearest (clipped to the map)."""
    h, w = maps.shape[-2:]
    idx = []
    for axis, n in ((0, shape[0]), (1, shape[1])):
        pix = np.arange(n)
        unit = np.rint((pix - rf.start[axis]) / rf.jump[axis]).astype(int)
        idx.append(np.clip(unit, 0, (h, w)[axis] - 1))
    return maps[..., idx[0][:, None], idx[1][None, :]]


def _binary(maps: NDArray[Any]) -> NDArray[np.bool_]:
    """Per channel, the positions above the channel's top-quantile value over all images (the
    order statistic at rank ``floor(QUANTILE * (n - 1))``, by partition: no interpolation)."""
    c = maps.shape[1]
    flat = maps.transpose(1, 0, 2, 3).reshape(c, -1)
    k = int(np.floor(QUANTILE * (flat.shape[1] - 1)))
    t = np.partition(flat, k, axis=1)[:, k]
    return maps > t[None, :, None, None]


def _pooled_iou(count: NDArray[Any], n: int, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Pooled IoU per channel from ``count`` ``(C, H, W)``: how many of the ``n`` images have each
    position above threshold. Intersection = sum of count inside the mask, union = all positions
    above threshold + n x mask size - intersection."""
    inter = (count * mask).sum(axis=(1, 2))
    union = count.sum(axis=(1, 2)) + n * mask.sum() - inter
    return inter / np.maximum(union, 1)


def shifts(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Every circular offset with ``max(|dy|, |dx|) >= MIN_SHIFT``."""
    h, w = shape
    return [
        (dy, dx)
        for dy in range(-(h // 2), h - h // 2)
        for dx in range(-(w // 2), w - w // 2)
        if max(abs(dy), abs(dx)) >= MIN_SHIFT
    ]


def shift_ious(count: NDArray[Any], n: int, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Pooled IoU of every channel with the mask moved by every circular offset ``(dy, dx)``:
    ``(C, H, W)``, entry ``[c, dy % H, dx % W]`` (the intersections by one FFT cross-correlation;
    equal to :func:`_pooled_iou` with ``np.roll(mask, (dy, dx))``)."""
    m = mask.astype(np.float64)
    inter = np.fft.irfft2(np.fft.rfft2(count) * np.conj(np.fft.rfft2(m)), s=mask.shape)
    inter = np.rint(inter)  # sums of integer counts: exact up to rounding
    union = count.sum(axis=(1, 2))[:, None, None] + n * m.sum() - inter
    return inter / np.maximum(union, 1)


def iou_table(
    maps: NDArray[Any], masks: dict[str, NDArray[np.bool_]]
) -> tuple[dict[str, NDArray[np.float64]], dict[str, NDArray[np.float64]]]:
    """Per part: every channel's pooled IoU, and its shift null's 95th percentile."""
    binary = _binary(np.asarray(maps, dtype=np.float64))
    count = binary.sum(axis=0).astype(np.float64)
    n = binary.shape[0]
    h, w = count.shape[-2:]
    far = np.zeros((h, w), dtype=bool)
    for dy, dx in shifts((int(h), int(w))):
        far[dy % h, dx % w] = True
    out, null = {}, {}
    for part, mask in masks.items():
        out[part] = _pooled_iou(count, n, mask)
        null[part] = np.quantile(shift_ious(count, n, mask)[:, far], 0.95, axis=1)
    return out, null


def best_iou(maps: NDArray[Any], masks: dict[str, NDArray[np.bool_]]) -> dict[str, float]:
    """Per part, the best channel's pooled IoU (no shift null: what the untrained null needs)."""
    binary = _binary(np.asarray(maps, dtype=np.float64))
    count = binary.sum(axis=0).astype(np.float64)
    return {p: float(_pooled_iou(count, binary.shape[0], m).max()) for p, m in masks.items()}


def untrained_needed(tests: int) -> int:
    """Initialisations the untrained null needs for a rank p-value of ``FAMILY_ALPHA / tests``:
    at least :data:`N_UNTRAINED`, more for a network with more layers (``(K + 1) x alpha / tests
    >= 1``)."""
    import math

    return max(N_UNTRAINED, math.ceil(max(tests, 1) / FAMILY_ALPHA - 1e-9) - 1)


def untrained_floor(best: list[float], tests: int) -> float:
    """The network-level untrained null as a threshold: an IoU above it has the rank p-value
    ``(1 + #{initialisations whose best channel reaches it}) / (K + 1) <= FAMILY_ALPHA / tests``
    (exact under exchangeability; ``inf`` when K initialisations cannot reach that level)."""
    k = len(best)
    j = int(np.floor(FAMILY_ALPHA / max(tests, 1) * (k + 1))) - 1
    if j < 0:
        return float("inf")
    return float(sorted(best, reverse=True)[j])
