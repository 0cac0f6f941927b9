"""Data that fits the model: turn a loaded dataset into what a user's model expects (NumPy only).

A :class:`~convlens.data.datasets.Dataset` holds images ``(N, C, *spatial)`` standardised with its
training split's scalar mean/std. A user's model may want something else: three channels where the
data have one, a fixed input size, channels last, ImageNet normalisation, pixel values 0-255. A
:class:`DataFit` is planned once from the model's :class:`InputExpectation` and the user's
:class:`FitOptions`, refuses what cannot be converted (one clear line, never a silent misreading),
and is then applied in the same way to every set (ID and OOD). Every step it takes is a text note.

Steps, in this order (each only when needed; with nothing to do the data pass through unchanged):

1. rank: the data's spatial rank must be the model's conv rank (1-, 2- or 3-D); an ``npz`` array
   ``x`` of rank 3 is read as ``(N, C, L)`` for a 1-D model, or as ``(N, L, C)`` (channels last,
   transposed) when only its last dim is the model's channel count;
2. back to the ``[0, 1]`` pixel range the loader mapped the data to (undo the standardisation);
3. channels: grey -> RGB by repeating the channel, RGB -> grey by luminance
   (:data:`LUMINANCE`, the weights of ``skimage.color.rgb2gray``); other counts are refused;
4. size: ``skimage.transform.resize`` (linear interpolation, ``anti_aliasing=True``) to the model's
   fixed input size or the size asked for;
5. scale: ``0-1`` as is, or ``0-255`` (``x * 255``);
6. normalise: ``dataset`` (the training split's scalar mean/std, the default), ``imagenet`` (per
   channel :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`, times 255 on the 0-255 scale), ``none``, or
   ``MEAN,STD`` / ``M1,..,MC,S1,..,SC`` in the units of the scaled input;
7. layout: ``NCHW`` (channels first) as loaded, or ``NHWC`` (channels moved last).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMINANCE = (0.2125, 0.7154, 0.0721)
"""RGB -> grey weights (ITU-R BT.709 luma, as ``skimage.color.rgb2gray``)."""
LAYOUTS = ("NCHW", "NHWC")
SCALES = ("0-1", "0-255")
NORMALIZE_NAMES = ("dataset", "imagenet", "none")
MAX_INPUT_SIDE = 8192
"""Largest size asked for along one axis of the model's input (``input size``)."""
CHUNK = 256
"""Items fitted at a time (bounds the float64 working memory of a resize)."""


@dataclass(frozen=True)
class InputExpectation:
    """What a model reads: conv rank, channels, fixed spatial sizes (``None`` = any) and layout.

    ``source`` says where the channels/size come from (a graph input, the first conv layer)."""

    dims: int
    channels: int | None = None
    spatial: tuple[int | None, ...] | None = None
    layout: str = "NCHW"
    layout_reason: str = "PyTorch convention (channels first)"
    source: str = ""
    fixed_shape: tuple[int | None, ...] | None = None
    """The full fixed input shape in the model's own layout (batch first), when the model states one."""
    kernel: tuple[int, ...] | None = None
    """The kernel size of the conv layer that reads the input (its orientation lays out 1-D data
    for a ``k x 1`` Conv2d net)."""


OUTPUT_KINDS = ("auto", "logits", "probabilities", "log-probabilities")
"""What a model's output may hold (``--output-kind``; read by :mod:`convlens.analysis.model.forward`)."""


@dataclass(frozen=True)
class FitOptions:
    """The user's choices: ``layout`` (``None``: from the model), normalisation, scale, size."""

    layout: str | None = None
    normalize: str = "dataset"
    scale: str = "0-1"
    input_size: tuple[int, ...] | None = None
    output: str | None = None
    """Which head of a tuple/dict model output is the output (a key or an index; ``None``: the first)."""
    output_kind: str = "auto"
    """What that output holds: ``auto`` (detected), ``logits``, ``probabilities`` or
    ``log-probabilities`` (:data:`convlens.analysis.model.forward.OUTPUT_KIND_RULE`)."""
    inputs: tuple[tuple[str, str], ...] = ()
    """An ONNX graph's inputs besides the data, ``(NAME, VALUE)``: a number, ``zeros`` or a
    ``.npy`` file (``--input NAME=VALUE``)."""

    def check(self) -> None:
        """Refuse an unknown layout, scale, normalisation or output kind, or a bad input size."""
        if self.output_kind not in OUTPUT_KINDS:
            raise ConvlensError(
                f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {self.output_kind!r}"
            )
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConvlensError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.scale not in SCALES:
            raise ConvlensError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        parse_normalize(self.normalize)
        if self.input_size is not None:
            check_input_size(self.input_size)


def parse_normalize(text: str) -> str | tuple[tuple[float, ...], tuple[float, ...]]:
    """``dataset`` / ``imagenet`` / ``none``, or ``MEAN,STD`` (one pair for every channel) or
    ``M1,..,MC,S1,..,SC`` (per channel) as ``(means, stds)``."""
    t = str(text).strip().lower()
    if t in NORMALIZE_NAMES:
        return t
    parts = [p.strip() for p in t.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) < 2 or len(values) % 2 or not all(np.isfinite(values)):
        raise ConvlensError(
            f"normalisation must be dataset, imagenet, none, MEAN,STD or M1,..,MC,S1,..,SC "
            f"(finite numbers), got {text!r}"
        )
    half = len(values) // 2
    means, stds = tuple(values[:half]), tuple(values[half:])
    if any(s <= 0 for s in stds):
        raise ConvlensError(f"normalisation standard deviations must be > 0, got {text!r}")
    with np.errstate(over="ignore"):
        reach = max(max(abs(m), abs(255.0 - m)) / s for m, s in zip(means, stds, strict=True))
    if not np.isfinite(reach) or reach > MAX_NORMALISED:
        raise ConvlensError(
            f"normalisation {text!r} maps pixel values of 0..255 to magnitudes up to {reach:.3g}, "
            f"beyond what the model can compute with (at most {MAX_NORMALISED:.0e}); give a "
            "mean and std on the pixel scale"
        )
    return means, stds


MAX_NORMALISED = 1e30
"""A normalisation may not map pixel values (0..255) beyond this (float32 holds 3.4e38, and a
layer's sums of products must stay finite)."""


def check_input_size(size: Sequence[int]) -> tuple[int, ...]:
    """``size`` as a tuple of ints in ``1..MAX_INPUT_SIDE`` (refused otherwise)."""
    out = tuple(size)
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
        raise ConvlensError(f"input size must be positive integers, got {size!r}")
    if any(v < 1 or v > MAX_INPUT_SIDE for v in out):
        raise ConvlensError(
            f"input size must hold sizes 1..{MAX_INPUT_SIDE} (MAX_INPUT_SIDE in "
            f"convlens.data.fit), got {list(out)}"
        )
    return out


def parse_input_size(text: str) -> tuple[int, ...]:
    """``224x224`` (or ``64`` for 1-D, ``8x32x32`` for 3-D) as a tuple of ints."""
    try:
        values = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConvlensError(
            f"input size must look like HxW (e.g. 224x224), L or DxHxW, got {text!r}"
        ) from None
    return check_input_size(values)


def _size(shape: Sequence[int | None]) -> str:
    return "x".join("?" if v is None else str(v) for v in shape)


@dataclass
class DataFit:
    """The steps that make data ``(N, C, *spatial)`` (standardised by ``normalisation``) fit a model.

    Build it with :func:`plan_fit`; :meth:`apply` runs the same steps on any set of that shape."""

    expect: InputExpectation
    options: FitOptions
    normalisation: dict[str, Any]
    squeeze_channel: bool = False
    column: bool = False
    """1-D data ``(N, 1, L)`` for a 2-D model whose first conv is ``k x 1``: laid out as an
    ``L x 1`` column (height and width swapped), so the kernel runs along the signal."""
    time_major: bool = False
    """A rank-3 array read as ``(N, L, C)`` (channels last: audio ``[N, T, C]``) and transposed to
    ``(N, C, L)`` for a 1-D model."""
    convert: str | None = None  # "repeat" | "luminance"
    target: tuple[int, ...] | None = None
    layout: str = "NCHW"
    notes: list[str] = field(default_factory=list)

    @property
    def identity(self) -> bool:
        """True when the data are used exactly as loaded (no step at all)."""
        o = self.options
        return (
            not self.squeeze_channel
            and not self.column
            and self.convert is None
            and self.target is None
            and o.scale == "0-1"
            and o.normalize.strip().lower() == "dataset"
            and self.layout == "NCHW"
        )

    def apply(self, x: NDArray[Any]) -> NDArray[np.float32]:
        """The fitted copy of ``x`` (float32), computed :data:`CHUNK` items at a time; ``x`` as
        float32 when there is nothing to do. A result over ``MAX_DATASET_VALUES`` values (e.g. a
        large test split upsampled to 224x224) is refused before anything is allocated."""
        from convlens.data.datasets import check_dataset_size

        arr = np.asarray(x)
        if self.squeeze_channel:
            arr = arr[:, 0]
        if self.time_major:
            arr = arr.transpose(0, 2, 1)
        if self.column:
            arr = arr.transpose(0, 1, 3, 2)
        if self.identity:
            return np.asarray(arr, dtype=np.float32)
        c = {"repeat": 3, "luminance": 1}.get(self.convert or "", arr.shape[1])
        spatial = list(self.target or arr.shape[2:])
        shape = [len(arr), c, *spatial] if self.layout == "NCHW" else [len(arr), *spatial, c]
        check_dataset_size(int(np.prod(shape)), f"the data fitted to the model ({_size(shape)})")
        out = np.empty(shape, dtype=np.float32)
        for i in range(0, len(arr), CHUNK):
            out[i : i + CHUNK] = self._apply_chunk(arr[i : i + CHUNK])
        return out

    def _apply_chunk(self, arr: NDArray[Any]) -> NDArray[Any]:
        mean, std = float(self.normalisation["mean"]), float(self.normalisation["std"])
        x01 = np.asarray(arr, dtype=np.float64) * std + mean
        if self.convert == "repeat":
            x01 = np.repeat(x01, 3, axis=1)
        elif self.convert == "luminance":
            lum = np.asarray(LUMINANCE).reshape(1, 3, *([1] * (x01.ndim - 2)))
            x01 = (x01 * lum).sum(axis=1, keepdims=True)
        if self.target is not None:
            from skimage.transform import resize

            x01 = resize(
                x01,
                (*x01.shape[:2], *self.target),
                order=1,
                anti_aliasing=True,
                preserve_range=True,
            )
        k = 255.0 if self.options.scale == "0-255" else 1.0
        out = _normalise(x01 * k, self.options.normalize, k, mean, std)
        return np.moveaxis(out, 1, -1) if self.layout == "NHWC" else out


def _normalise(x: NDArray[np.float64], how: str, k: float, mean: float, std: float) -> Any:
    rule = parse_normalize(how)
    c = x.shape[1]
    shape = (1, c, *([1] * (x.ndim - 2)))
    if rule == "none":
        return x
    if rule == "dataset":
        return (x - mean * k) / (std * k)
    if rule == "imagenet":
        m, s = np.asarray(IMAGENET_MEAN) * k, np.asarray(IMAGENET_STD) * k
    else:
        assert not isinstance(rule, str)
        m, s = np.asarray(rule[0]), np.asarray(rule[1])
    return (x - np.broadcast_to(m, (c,)).reshape(shape)) / np.broadcast_to(s, (c,)).reshape(shape)


def plan_fit(
    data_shape: Sequence[int],
    expect: InputExpectation,
    options: FitOptions,
    normalisation: dict[str, Any],
    what: str,
    *,
    source_rank: int | None = None,
) -> DataFit:
    """Plan the steps for data of per-item shape ``data_shape`` ``(C, *spatial)`` (as loaded) and
    say each in ``notes``; raise a :class:`ConvlensError` naming what does not fit."""
    options.check()
    shape = [int(v) for v in data_shape]
    fit = DataFit(expect, options, dict(normalisation))
    fit.squeeze_channel = _check_rank(shape, expect, what, source_rank)
    if fit.squeeze_channel:
        shape = shape[1:]
        want = expect.channels
        if want is not None and shape[0] != want and shape[1] == want:  # (N, T, C): channels last
            fit.time_major = True
            fit.notes.append(
                f"data {what}: array x (N, {_size(shape)}) read as (N, L={shape[0]}, C={shape[1]}), "
                f"channels last (its last dim is the {want} channel(s) the model reads), and "
                f"transposed to (N, C={shape[1]}, L={shape[0]}) for a 1-D model"
            )
            shape = [shape[1], shape[0]]
        else:
            fit.notes.append(
                f"data {what}: array x (N, {_size(shape)}) read as (N, C={shape[0]}, "
                f"L={shape[1]}) for a 1-D model"
            )
    kh, kw = expect.kernel if expect.kernel is not None and len(expect.kernel) == 2 else (0, 0)
    if (
        expect.dims == 2
        and source_rank == 3
        and len(shape) == 3
        and kw == 1
        and shape[1] < kh <= shape[2]
    ):  # a signal held as a 1 x L image, for a net whose first kernels are k x 1 (along the height)
        fit.column = True
        fit.notes.append(
            f"data {what}: (N, {_size(shape)}) laid out as (N, {shape[0]}, {shape[2]}, "
            f"{shape[1]}), a column: the model's first conv has {kh}x{kw} kernels, which run "
            "along the height"
        )
        shape = [shape[0], shape[2], shape[1]]
    channels = _plan_channels(fit, shape[0], what)
    _plan_layout(fit)
    _plan_size(fit, shape[1:], what)
    _plan_values(fit, channels, what)
    _check_fixed(fit, channels, list(fit.target or shape[1:]), what)
    return fit


def _check_rank(
    shape: list[int], expect: InputExpectation, what: str, source_rank: int | None
) -> bool:
    spatial = len(shape) - 1
    if spatial == expect.dims:
        return False
    if expect.dims == 1 and spatial == 2 and shape[0] == 1 and source_rank == 3:
        return True
    want = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}.get(expect.dims, "?")
    raise ConvlensError(
        f"data {what} are (N, {', '.join(map(str, shape))}) ({spatial}-D items); the model's conv "
        f"layers are {expect.dims}-D and read {want}"
    )


def _plan_channels(fit: DataFit, c: int, what: str) -> int:
    want = fit.expect.channels
    if want is None or want == c:
        return c
    if c == 1 and want == 3:
        fit.convert = "repeat"
        fit.notes.append(f"data {what}: grey -> RGB by repeating the one channel 3 times")
        return 3
    if c == 3 and want == 1:
        fit.convert = "luminance"
        fit.notes.append(
            f"data {what}: RGB -> grey by luminance {LUMINANCE[0]} R + {LUMINANCE[1]} G + "
            f"{LUMINANCE[2]} B (ITU-R BT.709, as skimage.color.rgb2gray)"
        )
        return 1
    raise ConvlensError(
        f"data {what} have {c} channel(s); the model reads {want} ({fit.expect.source}); only grey "
        "<-> RGB (1 <-> 3 channels) is converted"
    )


def _plan_layout(fit: DataFit) -> None:
    """Channels first or last: as asked, else the model's stated layout; never a guess."""
    e, asked = fit.expect, fit.options.layout
    if asked is None:
        if e.layout in LAYOUTS:
            fit.layout = e.layout
            if e.layout == "NHWC":
                fit.notes.append(
                    f"layout NHWC from the model ({e.layout_reason}): channels moved last"
                )
        else:
            raise ConvlensError(
                f"cannot tell whether the model reads channels first (NCHW) or last (NHWC): "
                f"{e.layout_reason} ({e.source}); state the layout",
                hint_key="layout_unknown",
            )
        return
    fit.layout = asked
    if e.layout in LAYOUTS and e.layout != asked:
        fit.notes.append(
            f"layout {asked} as asked (the model's input looked {e.layout}: {e.layout_reason})"
        )
    else:
        fit.notes.append(f"layout {asked} as asked")


def _plan_size(fit: DataFit, spatial: list[int], what: str) -> None:
    e, asked = fit.expect, fit.options.input_size
    fixed = list(e.spatial) if e.spatial is not None else [None] * len(spatial)
    if len(fixed) != len(spatial):
        fixed = [None] * len(spatial)
    if asked is not None:
        if len(asked) != len(spatial):
            raise ConvlensError(
                f"input size {_size(asked)} has {len(asked)} value(s); the data {what} have "
                f"{len(spatial)} spatial axes ({_size(spatial)})"
            )
        clash = [(a, f) for a, f in zip(asked, fixed, strict=True) if f is not None and a != f]
        if clash:
            raise ConvlensError(
                f"input size {_size(asked)} was asked for, but the model's input is fixed at "
                f"{_size(fixed)} ({e.source})"
            )
        target = list(asked)
    else:
        target = [f if f is not None else s for f, s in zip(fixed, spatial, strict=True)]
    if target != spatial:
        fit.target = tuple(target)
        why = "as asked" if asked is not None else f"the model's fixed input size ({e.source})"
        fit.notes.append(
            f"data {what}: resized from {_size(spatial)} to {_size(target)}, {why} "
            "(skimage.transform.resize, linear, anti_aliasing=True)"
        )


def _plan_values(fit: DataFit, channels: int, what: str) -> None:
    o = fit.options
    rule = parse_normalize(o.normalize)
    k = 255 if o.scale == "0-255" else 1
    signal = fit.expect.dims == 1  # 1-D data (audio, signals) are samples, not pixels
    if o.scale == "0-255":
        fit.notes.append(
            "sample values x 255 (--scale 0-255)"
            if signal
            else "pixel values on the 0-255 scale (x01 * 255)"
        )
    if rule == "dataset":
        if not fit.identity:
            fit.notes.append(
                f"normalised with the data's training mean/std ({fit.normalisation['mean']:.4g}, "
                f"{fit.normalisation['std']:.4g}) on the 0-{k} scale"
            )
        return
    if rule == "none":
        fit.notes.append(
            "not normalised: the model reads the samples as loaded" + (" x 255" if k == 255 else "")
            if signal
            else f"not normalised: the model reads pixel values in 0-{k}"
        )
        return
    if rule == "imagenet":
        if channels != 3:
            raise ConvlensError(
                f"ImageNet normalisation is per RGB channel, but the model reads {channels} "
                f"channel(s) of {what}"
            )
        m = [round(v * k, 4) for v in IMAGENET_MEAN]
        s = [round(v * k, 4) for v in IMAGENET_STD]
        fit.notes.append(f"normalised per channel with ImageNet mean {m} and std {s} (0-{k} scale)")
        return
    assert not isinstance(rule, str)
    means, stds = rule
    if len(means) not in (1, channels):
        raise ConvlensError(
            f"normalisation {o.normalize!r} gives {len(means)} mean(s); the model reads "
            f"{channels} channel(s): give one MEAN,STD pair or one value per channel"
        )
    fit.notes.append(f"normalised with mean {list(means)} and std {list(stds)} (0-{k} scale)")


def _check_fixed(fit: DataFit, channels: int, spatial: list[int], what: str) -> None:
    """The fitted shape against the model's fixed dims, in the chosen layout."""
    fixed = fit.expect.fixed_shape
    if fixed is None:
        return
    shape = [channels, *spatial] if fit.layout == "NCHW" else [*spatial, channels]
    dims = list(fixed[1:])
    if len(dims) != len(shape) or any(
        d is not None and d != s for d, s in zip(dims, shape, strict=False)
    ):
        raise ConvlensError(
            f"the model's input is [N, {', '.join('?' if d is None else str(d) for d in dims)}] "
            f"({fit.expect.source}); the data {what} fitted as {fit.layout} are "
            f"[N, {', '.join(map(str, shape))}]: they do not fit"
        )


SIGNAL_OOD = ("noise", "tones", "chirps", "silence")
"""The OOD sets made for 1-D data (signals, audio); 3-D data get ``noise`` only."""
SIGNAL_OOD_TEXT = {
    "noise": "i.i.d. uniform noise in [0, 1]",
    "tones": "pure tones 0.5 + 0.5 sin(2 pi f t + phase), f uniform in [0.01, 0.45] cycles/sample",
    "chirps": "linear chirps 0.5 + 0.5 sin(...) sweeping from f0 in [0.01, 0.1] to f1 in [0.2, 0.45] "
    "cycles/sample",
    "silence": "a constant 0.5 (the middle of the same [0, 1] range)",
}


def signal_like(
    name: str, shape: Sequence[int], n: int, seed: int, normalisation: dict[str, Any]
) -> Any:
    """``n`` items of the 1-D OOD set ``name`` (:data:`SIGNAL_OOD`) of per-item ``shape``
    ``(..., L)`` (every row along the last axis a signal), in [0, 1] like :func:`noise_like` and
    standardised like the data; every item and channel its own frequency and phase."""
    if name == "noise":
        return noise_like(shape, n, seed, normalisation)
    c, length = int(np.prod(shape[:-1])), int(shape[-1])  # 1-D data may be held as (1, C, L)
    rng = np.random.default_rng([seed, 1005, SIGNAL_OOD.index(name)])
    t = np.arange(length, dtype=np.float64)
    phase0 = rng.uniform(0.0, 2 * np.pi, size=(n, c, 1))
    if name == "tones":
        f = rng.uniform(0.01, 0.45, size=(n, c, 1))
        raw = 0.5 + 0.5 * np.sin(2 * np.pi * f * t + phase0)
    elif name == "chirps":
        f0 = rng.uniform(0.01, 0.1, size=(n, c, 1))
        f1 = rng.uniform(0.2, 0.45, size=(n, c, 1))
        raw = 0.5 + 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * length)) + phase0)
    elif name == "silence":
        raw = np.full((n, c, length), 0.5)
    else:
        raise ConvlensError(f"OOD set {name!r}: for 1-D data the sets are {', '.join(SIGNAL_OOD)}")
    from convlens.data.datasets import standardise

    return standardise(raw.reshape((n, *shape)), normalisation)


def noise_like(shape: Sequence[int], n: int, seed: int, normalisation: dict[str, Any]) -> Any:
    """``n`` items of i.i.d. uniform noise in [0, 1] of per-item ``shape``, standardised like the
    data: the one OOD set for data that are not images (1-D signals, 3-D volumes)."""
    rng = np.random.default_rng(seed + 1000 + 5)
    from convlens.data.datasets import standardise

    return standardise(rng.uniform(0.0, 1.0, size=(n, *shape)), normalisation)
