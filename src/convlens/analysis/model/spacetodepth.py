"""Space-to-depth stems: a first conv that reads the image rearranged into ``s x s`` pixel phases
stacked as channels (YOLOv5/YOLOX's Focus: four strided ``Slice`` pairs and a ``Concat``; ONNX
``SpaceToDepth``), found in an ONNX graph and analysed on its de-interleaved kernels.

A conv ``k x k`` (dilation 1, stride 1, padding p) over the ``s^2 C`` phase channels computes exactly what a
conv ``s k x s k`` with stride ``s`` and padding ``s p`` computes over the ``C`` image channels, with
the kernel ``W'[o, c, s a + dy, s b + dx] = W[o, phase(c, dy, dx), a, b]`` (:func:`deinterleave`).
Analysed as stored, the 12 channels of a Focus stem read as independent 3x3 slices with no colour;
de-interleaved they are the 6x6 RGB kernels the layer applies to the image. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.model.onnxdecode import node_attrs

RULE = (
    "space-to-depth stem: the conv's input is the image cut into s x s pixel phases stacked as "
    "channels (Slice/Concat or SpaceToDepth of the graph input); its kernels are analysed "
    "de-interleaved, W'[o, c, s*a + dy, s*b + dx] = W[o, phase(c, dy, dx), a, b]: the s*k x s*k "
    "kernels with stride s (times the conv's own) that the layer applies to the image (exactly the "
    "same output; convs with dilation > 1 are not de-interleaved)"
)


@dataclass(frozen=True)
class SpaceToDepth:
    """Block size ``s`` and, per input channel of the conv, its source ``(c, dy, dx)``."""

    block: int
    phases: tuple[tuple[int, int, int], ...]

    @property
    def channels(self) -> int:
        return len(self.phases) // (self.block * self.block)


def deinterleave(weight: NDArray[Any], s2d: SpaceToDepth) -> NDArray[Any]:
    """The ``(O, C, s k, s k)`` kernels of a conv weight ``(O, s^2 C, k, k)`` over phase channels."""
    w = np.asarray(weight)
    o, _, kh, kw = w.shape
    s = s2d.block
    out = np.zeros((o, s2d.channels, s * kh, s * kw), dtype=w.dtype)
    for k, (c, dy, dx) in enumerate(s2d.phases):
        out[:, c, dy::s, dx::s] = w[:, k]
    return out


def note(name: str, weight_shape: list[int], s2d: SpaceToDepth, stride: int = 1) -> str:
    """What the analysis says about a space-to-depth stem (``stride``: the conv's own)."""
    o, _, kh, kw = weight_shape
    s = s2d.block
    return (
        f"{name} reads a space-to-depth rearrangement of the image ({s}x{s} pixel phases x "
        f"{s2d.channels} channels = {len(s2d.phases)} input channels): its {o} units are analysed "
        f"as {s2d.channels}-channel {s * kh}x{s * kw} kernels with stride {s * stride} on the image, not as "
        f"{len(s2d.phases)} independent {kh}x{kw} slices; rule: {RULE}"
    )


def _slice_steps(node: Any, const: Callable[[str], NDArray[Any]]) -> dict[int, tuple[int, int]]:
    """``{axis: (start, step)}`` of one ``Slice`` node (attribute form before opset 10)."""
    a = node_attrs(node)
    if "starts" in a:  # opset 1-9: no steps
        starts, axes = list(a["starts"]), list(a.get("axes", range(len(a["starts"]))))
        steps = [1] * len(starts)
    else:
        inp = list(node.input) + [""] * 5
        starts = [int(v) for v in np.ravel(const(inp[1]))]
        axes = [int(v) for v in np.ravel(const(inp[3]))] if inp[3] else list(range(len(starts)))
        steps = [int(v) for v in np.ravel(const(inp[4]))] if inp[4] else [1] * len(starts)
    return {int(ax) % 4: (int(st), int(sp)) for ax, st, sp in zip(axes, starts, steps, strict=True)}


def _branch(
    name: str, producers: dict[str, Any], const: Callable[[str], NDArray[Any]]
) -> tuple[str, int, int, int] | None:
    """``(graph tensor, dy, dx, step)`` of a chain of ``Slice`` nodes on the H and W axes of a
    4-D tensor, or ``None`` when the chain is anything else."""
    cut: dict[int, tuple[int, int]] = {}
    while name in producers and producers[name].op_type == "Slice":
        node = producers[name]
        for axis, (start, step) in _slice_steps(node, const).items():
            if axis in cut or axis not in (2, 3):
                return None
            cut[axis] = (start, step)
        name = node.input[0]
    if set(cut) != {2, 3} or cut[2][1] != cut[3][1]:
        return None
    (dy, step), (dx, _) = cut[2], cut[3]
    if not 0 <= dy < step or not 0 <= dx < step:
        return None
    return name, dy, dx, step


def find(
    producers: dict[str, Any],
    conv_input: str,
    in_channels: int,
    sources: set[str],
    const: Callable[[str], Any],
) -> SpaceToDepth | None:
    """The space-to-depth rearrangement feeding a conv whose input tensor is ``conv_input`` (with
    ``in_channels`` channels) straight from one of the graph tensors ``sources`` (the data input),
    or ``None``. ``producers`` maps each tensor of the graph to the node that makes it;
    ``const(name)`` gives a constant tensor's value. The conv must have dilation 1 (the caller
    checks): its taps are then ``s`` pixels apart on the image."""
    node = producers.get(conv_input)
    if node is None:
        return None
    if node.op_type == "SpaceToDepth" and node.input[0] in sources:
        s = int(node_attrs(node).get("blocksize", 0))
        if s < 2 or in_channels % (s * s):
            return None
        c = in_channels // (s * s)  # ONNX: output channel (dy * s + dx) * C + c
        return SpaceToDepth(s, tuple((k % c, k // c // s, k // c % s) for k in range(in_channels)))
    if node.op_type != "Concat" or int(node_attrs(node).get("axis", 0)) not in (1, -3):
        return None
    try:
        branches = [_branch(t, producers, const) for t in node.input]
    except Exception:  # a Slice whose starts/steps are not constants
        return None
    if not branches or any(b is None for b in branches):
        return None
    found = [b for b in branches if b is not None]
    s = found[0][3]
    if (
        s < 2
        or len({b[0] for b in found}) != 1
        or found[0][0] not in sources
        or any(b[3] != s for b in found)
        or sorted((b[1], b[2]) for b in found) != [(y, x) for y in range(s) for x in range(s)]
        or in_channels % len(found)
    ):
        return None
    c = in_channels // len(found)
    return SpaceToDepth(s, tuple((ch, b[1], b[2]) for b in found for ch in range(c)))
