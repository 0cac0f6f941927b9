"""What each channel responds to: streaming top-k exemplars and maximising inputs (issue 24).

**Exemplars.** One pass over the analysed images with a forward hook on every conv layer: each
output map ``(B, C, *S)`` is reduced at once to the per-image, per-channel spatial max and min and
their positions, merged into running top-k tables ``(C, k)`` (:class:`TopK`) and dropped, so memory
is ``O(layers x channels x k)`` whatever the number of images; the tables of two shards merge
exactly (:meth:`TopK.merge`, ties to the lower image index), which is what a multi-rank pass needs.
The receptive-field crop of an exemplar is the input box the unit at that position sees
(:func:`crop_box`, from the traced theoretical receptive field).

**Maximising inputs** (torch models): for each channel of a layer an input is optimised to maximise
the channel's mean activation, all channels of a layer at once as one batch. The regularisers are
the ones Olah et al. (2017, "Feature Visualization") found necessary: a decorrelated Fourier
parameterisation (spectrum scaled by 1/frequency), random jitter each step and an L2 penalty;
seeded, fixed steps, CPU time reported.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.model.layers import run_model
from convlens.analysis.model.verify import conv_layers
from convlens.ops.geometry import ReceptiveField

K = 6
"""Exemplars kept per channel and direction (top and bottom)."""
RULE = (
    "top exemplars: the k analysed images with the largest spatial max of the channel's output "
    "(pre-activation), bottom: the k with the smallest spatial min; ties to the lower image index; "
    "each with the position of that value and the input box its unit's theoretical receptive field "
    "covers there (streaming top-k over one pass, merged exactly across shards)"
)
STEPS = 64
BOUND = 3.0
"""Maximising inputs stay within +/- this many units of the normalised data (std 1)."""
MAXIMISE_RULE = (
    f"maximising input: {STEPS} Adam steps (lr 0.05) on a Fourier-parameterised input (spectrum "
    f"scaled by 1/frequency) squashed into +/-{BOUND:g} by tanh (the normalised data have std 1), "
    "jittered by up to 2 pixels each step, with an L2 penalty of 1e-3 per pixel, maximising the "
    "channel's mean output; one batch per layer (one input per channel), seeded; the forward pass "
    "stops at the layer"
)


class _Stop(Exception):
    """Raised by a hook to end a forward pass at the layer it watches."""


@dataclass
class TopK:
    """Running top-k per channel: values ``(C, k)`` (descending), image indices and flat spatial
    positions; empty slots hold ``-inf`` and index ``-1``."""

    values: NDArray[np.float64]
    index: NDArray[np.int64]
    pos: NDArray[np.int64]

    @staticmethod
    def empty(channels: int, k: int) -> TopK:
        return TopK(
            np.full((channels, k), -np.inf),
            np.full((channels, k), -1, dtype=np.int64),
            np.full((channels, k), -1, dtype=np.int64),
        )

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def _take(self, v: NDArray[Any], i: NDArray[Any], p: NDArray[Any]) -> TopK:
        # descending value, then ascending image index: a total order, so merging is exact
        order = np.lexsort((i, -v), axis=1)[:, : self.k]
        return TopK(
            np.take_along_axis(v, order, 1),
            np.take_along_axis(i, order, 1),
            np.take_along_axis(p, order, 1),
        )

    def update(self, values: NDArray[Any], pos: NDArray[Any], first_index: int) -> TopK:
        """Add a batch: ``values``/``pos`` ``(B, C)`` of images ``first_index ..``."""
        b = values.shape[0]
        idx = np.broadcast_to(first_index + np.arange(b)[None, :], (values.shape[1], b))
        return self._take(
            np.concatenate([self.values, np.asarray(values, np.float64).T], 1),
            np.concatenate([self.index, idx], 1),
            np.concatenate([self.pos, np.asarray(pos, np.int64).T], 1),
        )

    def merge(self, other: TopK) -> TopK:
        """The top-k of the union of two shards' images (indices are global)."""
        return self._take(
            np.concatenate([self.values, other.values], 1),
            np.concatenate([self.index, other.index], 1),
            np.concatenate([self.pos, other.pos], 1),
        )


@dataclass
class LayerExtremes:
    """A layer's running top (max) and bottom (min, stored negated) tables, its map shape, and
    per channel the largest spatial-mean output over the images (the scale a maximising input is
    read against)."""

    top: TopK
    bottom: TopK
    map_shape: tuple[int, ...]
    best_mean: NDArray[np.float64]


@dataclass
class ExemplarPass:
    """The result of :func:`exemplar_pass`: per layer its tables, and the images' set names."""

    layers: dict[str, LayerExtremes] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)
    not_maps: dict[str, str] = field(default_factory=dict)


def _observe(out: ExemplarPass, name: str, z: Any, offset: int, k: int) -> None:
    """Fold one batch of a layer's output maps ``z`` ``(B, C, *S)`` (images ``offset`` on) into
    ``out``'s running tables; an output that is not a map is named in ``out.not_maps``."""
    if not isinstance(z, torch.Tensor) or z.ndim < 3:
        out.not_maps[name] = f"{type(z).__name__} {tuple(getattr(z, 'shape', ()))}"
        return
    flat = z.detach().double().flatten(2)
    mx, am = flat.max(dim=2)
    mn, an = flat.min(dim=2)
    ext = out.layers.get(name)
    if ext is None:
        c = z.shape[1]
        ext = LayerExtremes(
            TopK.empty(c, k), TopK.empty(c, k), tuple(z.shape[2:]), np.full(c, -np.inf)
        )
        out.layers[name] = ext
    ext.top = ext.top.update(mx.cpu().numpy(), am.cpu().numpy(), offset)
    ext.bottom = ext.bottom.update(-mn.cpu().numpy(), an.cpu().numpy(), offset)
    ext.best_mean = np.maximum(ext.best_mean, flat.mean(dim=2).amax(dim=0).cpu().numpy())


@torch.no_grad()
def exemplar_pass(
    model: nn.Module,
    sets: Iterable[tuple[str, Iterable[torch.Tensor]]],
    k: int = K,
    starts: list[int] | None = None,
) -> ExemplarPass:
    """One pass over every set's batches: the top-k and bottom-k images of each channel of each
    conv layer (see the module docstring). Image indices count across the sets in order; with
    ``starts`` (a shard's pass) set ``i``'s first batch is image ``starts[i]`` and ``sets`` is
    left for the caller to fill."""
    out = ExemplarPass()
    state: dict[str, Any] = {"offset": 0}

    def hook(name: str) -> Any:
        def fn(_m: nn.Module, _inp: Any, z: Any) -> None:
            _observe(out, name, z, state["offset"], k)

        return fn

    with conv_hooks(model, hook):
        for i, (name, batches) in enumerate(sets):
            if starts is not None:
                state["offset"] = starts[i]
            for xb in batches:
                run_model(model, xb, f"{name!r} (a batch)")
                state["offset"] += len(xb)
                if starts is None:
                    out.sets.extend([name] * len(xb))
    return out


def merge_passes(parts: list[ExemplarPass], sets: list[str]) -> ExemplarPass:
    """One pass from the passes of disjoint shards (global image indices), exactly as if one
    process had seen every image (:meth:`TopK.merge`); ``sets`` names every image's set."""
    out = ExemplarPass(sets=list(sets))
    for p in parts:
        out.not_maps.update(p.not_maps)
        for name, ext in p.layers.items():
            have = out.layers.get(name)
            if have is None:
                out.layers[name] = LayerExtremes(
                    ext.top, ext.bottom, ext.map_shape, ext.best_mean.copy()
                )
            else:
                have.top = have.top.merge(ext.top)
                have.bottom = have.bottom.merge(ext.bottom)
                have.best_mean = np.maximum(have.best_mean, ext.best_mean)
    return out


def exemplar_pass_maps(
    maps_of: Callable[[NDArray[Any]], dict[str, NDArray[Any]]],
    sets: Iterable[tuple[str, NDArray[Any]]],
    batches: Callable[[NDArray[Any]], Iterable[Any]],
    k: int = K,
    starts: list[int] | None = None,
) -> ExemplarPass:
    """:func:`exemplar_pass` for a model run outside torch (an ONNX graph): ``maps_of(batch)`` gives
    every conv layer's output maps ``(B, C, *S)`` on a batch, ``batches(x)`` the batches of a set
    the model accepts (a model with a fixed batch size may leave out a set's last images: indices
    still count every image of every set, so they name the same images as the sets); ``starts``
    as in :func:`exemplar_pass`."""
    out = ExemplarPass()
    offset = 0
    for i, (name, x) in enumerate(sets):
        at = offset if starts is None else starts[i]
        for xb in batches(x):
            for layer, z in maps_of(np.asarray(xb)).items():
                _observe(out, layer, torch.from_numpy(np.asarray(z)), at, k)
            at += len(xb)
        offset += len(x)
        if starts is None:
            out.sets.extend([name] * len(x))
    return out


@contextlib.contextmanager
def conv_hooks(model: nn.Module, hook_for: Callable[[str], Any]) -> Iterator[None]:
    """A forward hook ``hook_for(name)`` on every conv layer of ``model``, in eval mode, for the
    ``with`` block; hooks removed and the mode restored after."""
    handles = [m.register_forward_hook(hook_for(n)) for n, m in conv_layers(model)]
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def crop_box(rf: ReceptiveField, position: tuple[int, ...]) -> list[int]:
    """The input box ``[r0, r1, c0, c1]`` (end exclusive; may reach past the image) seen by the
    unit at ``position`` of a layer whose theoretical receptive field is ``rf`` (2-D; a 1-D layer's
    field is 2-D with a height-1 axis)."""
    if len(position) not in (1, 2):
        return []  # a 3-D layer: no crop (its exemplars keep their positions)
    box: list[int] = [0, 1] if len(position) == 1 else []
    axes = range(len(rf.size) - len(position), len(rf.size))  # a 1-D field may carry a height axis
    for axis, p in zip(axes, position, strict=True):
        centre = rf.start[axis] + p * rf.jump[axis]
        lo = math.floor(centre - (rf.size[axis] - 1) / 2 + 1e-9)
        box += [lo, lo + rf.size[axis]]
    return box


def cut(image: NDArray[Any], box: list[int]) -> NDArray[np.float32]:
    """``image`` ``(C, H, W)`` inside ``box``, NaN where the box leaves the image (padding)."""
    c, h, w = image.shape
    r0, r1, c0, c1 = box
    out = np.full((c, r1 - r0, c1 - c0), np.nan, dtype=np.float32)
    rs, re_ = max(r0, 0), min(r1, h)
    cs, ce = max(c0, 0), min(c1, w)
    if rs < re_ and cs < ce:
        out[:, rs - r0 : re_ - r0, cs - c0 : ce - c0] = image[:, rs:re_, cs:ce]
    return out


def unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    return [int(v) for v in np.unravel_index(int(flat), shape)]


def maximising_inputs(
    model: nn.Module,
    layer: str,
    input_shape: tuple[int, ...],
    *,
    steps: int = STEPS,
    seed: int = 0,
    lr: float = 0.05,
    jitter: int = 2,
    l2: float = 1e-3,
) -> tuple[NDArray[np.float32], NDArray[np.float64], float]:
    """One optimised input per channel of ``layer`` (``(C_out, *input_shape)``), the mean activation
    each reaches, and the CPU seconds taken (:data:`MAXIMISE_RULE`)."""
    modules = dict(conv_layers(model))
    if layer not in modules:
        raise KeyError(layer)
    t0 = time.process_time()
    gen = torch.Generator().manual_seed(seed)
    conv = modules[layer]
    n_out = int(getattr(conv, "out_channels", 0))
    c, *spatial = input_shape
    if len(spatial) not in (1, 2):
        raise ValueError(f"maximising inputs are made for 1-D and 2-D inputs, not {input_shape}")
    h, w = (1, spatial[0]) if len(spatial) == 1 else (spatial[0], spatial[1])
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    scale = 1.0 / torch.sqrt(fy**2 + fx**2).clamp(min=1.0 / max(h, w))
    spec = (0.01 * torch.randn(n_out, c, h, w // 2 + 1, 2, generator=gen)).requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, z: torch.Tensor) -> None:
        captured["z"] = z
        raise _Stop

    handle = conv.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    params = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    dtype = next(model.parameters()).dtype
    opt = torch.optim.Adam([spec], lr=lr)
    eye = torch.arange(n_out)

    def image() -> torch.Tensor:
        z = torch.view_as_complex(spec) * scale
        x = BOUND * torch.tanh(torch.fft.irfft2(z, s=(h, w), norm="ortho"))
        return x.reshape(n_out, c, *([w] if len(spatial) == 1 else [h, w]))

    try:
        for _ in range(steps):
            x = image()
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
            x = (
                torch.roll(x, shifts=(dx,), dims=(-1,))
                if len(spatial) == 1
                else torch.roll(x, (dy, dx), (-2, -1))
            )
            z = _forward_to(model, x.to(dtype), captured).flatten(2).mean(dim=2)[eye, eye]
            loss = -z.sum() + l2 * (x**2).mean(dim=tuple(range(1, x.ndim))).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            x = image()
            z = _forward_to(model, x.to(dtype), captured)
            reached = z.flatten(2).mean(dim=2)[eye, eye].double().numpy()
    finally:
        handle.remove()
        for p, r in zip(model.parameters(), params, strict=True):
            p.requires_grad_(r)
        model.train(was_training)
    return x.detach().float().numpy(), reached, time.process_time() - t0


def _forward_to(
    model: nn.Module, x: torch.Tensor, captured: dict[str, torch.Tensor]
) -> torch.Tensor:
    captured.clear()
    with contextlib.suppress(_Stop):
        model(x)
    return captured["z"]
