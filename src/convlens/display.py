"""Notebook display of analysis results: ``convlens.load(path)``, ``_repr_html_`` and ``.plot()``.

``load`` returns a :class:`View` of the typed :class:`~convlens.analysis.result.AnalysisResult` of a
run directory (its ``analysis.json``) or of a model analysis JSON (``MODEL.analysis.json``, or any
file ``convlens analyze --out`` wrote). The view reads like the result (every attribute is the
result's; ``view.result`` is the dataclass itself) and adds the display: the result, each
:class:`LayerResult` and each :class:`KernelMatch` reached through it get a rich display in Jupyter
(``_repr_html_``: a few figures of the analysis and one inline PNG, the report's figure style) and
``.plot()``, which returns a matplotlib ``Figure``. The result types themselves know no display:
:func:`show` wraps any of them. The learned kernels are drawn from the weights beside the result (a run's
``model.safetensors`` or an analysed ``.safetensors`` file, read with ``safetensors.numpy``) when
they are there; otherwise only the matched bank kernels are drawn, and the display says so.

Torch-free; matplotlib is imported only when something is drawn.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from convlens.errors import ConvlensError

if TYPE_CHECKING:
    from convlens.analysis.result import AnalysisResult, KernelMatch, LayerChannels, LayerResult

MAX_KERNELS = 16
"""``LayerResult.plot()`` and its HTML draw at most this many kernels (the first ones, in kernel
order ``out * C + in``); ``plot(max_kernels=...)`` changes it."""

MAX_CHANNELS = 16
"""``LayerChannels.plot()`` and its HTML draw at most this many channels (the first ones)."""

_WEIGHTS = "_convlens_weights"  # attribute names attached by load() (not dataclass fields)
_CHANNELS = "_convlens_channels_file"
_PENDING = "_convlens_channel_arrays"  # a fresh analysis's arrays not yet written (orchestration)
_PARENT = "_convlens_parent"


class View:
    """A typed result with notebook display. Attributes are the wrapped object's; dataclass values
    (and lists of them, and what its methods return) come back wrapped too, so
    ``view.first_layer.matching.kernels[0].plot()`` works. ``_repr_html_`` and ``plot()`` draw an
    :class:`AnalysisResult`, a :class:`LayerResult`, a :class:`KernelMatch` or a
    :class:`LayerChannels` (``view.channels[i]``); ``result`` is the unwrapped dataclass, and so is
    ``value`` unless the dataclass has a field of that name."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        object.__setattr__(self, "_obj", obj)

    @property
    def value(self) -> Any:
        """The wrapped dataclass; where it has a field of its own named ``value`` (an exemplar's
        peak value), that field (the dataclass is then ``result``)."""
        o = self._obj
        if dataclasses.is_dataclass(o) and any(f.name == "value" for f in dataclasses.fields(o)):
            return _wrap(getattr(o, "value"))  # noqa: B009 (a dataclass field, not the property)
        return o

    @property
    def result(self) -> Any:
        """The wrapped dataclass (:class:`AnalysisResult` for a whole analysis)."""
        return self._obj

    def __getattr__(self, name: str) -> Any:
        return _wrap(getattr(self._obj, name))

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._obj, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._obj)) | {"value", "result", "plot", "_repr_html_"})

    def __repr__(self) -> str:
        return repr(self._obj)

    def __eq__(self, other: object) -> bool:
        return bool(self._obj == (other._obj if isinstance(other, View) else other))

    __hash__ = None  # type: ignore[assignment]

    def _repr_html_(self) -> str | None:
        from convlens.analysis.result import AnalysisResult, KernelMatch, LayerChannels, LayerResult

        o = self._obj
        if isinstance(o, AnalysisResult):
            return result_html(o)
        if isinstance(o, LayerChannels):
            return channels_html(o)
        if isinstance(o, LayerResult):
            return layer_html(o)
        if isinstance(o, KernelMatch):
            return kernel_html(o)
        return None  # Jupyter falls back to the text repr

    def plot(self, *args: Any, **kwargs: Any) -> Any:
        """A matplotlib Figure: :func:`plot_result`, :func:`plot_layer` (``max_kernels``),
        :func:`plot_kernel` or :func:`plot_channels` (``max_channels``), by what the view wraps."""
        from convlens.analysis.result import AnalysisResult, KernelMatch, LayerChannels, LayerResult

        o = self._obj
        if isinstance(o, AnalysisResult):
            return plot_result(o, *args, **kwargs)
        if isinstance(o, LayerChannels):
            return plot_channels(o, *args, **kwargs)
        if isinstance(o, LayerResult):
            return plot_layer(o, *args, **kwargs)
        if isinstance(o, KernelMatch):
            return plot_kernel(o, *args, **kwargs)
        raise TypeError(f"a {type(o).__name__} has no plot")


def _wrap(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return View(v)
    if isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
        return [_wrap(x) for x in v]
    if callable(v) and not isinstance(v, type) and hasattr(v, "__self__"):
        method = v

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return _wrap(method(*args, **kwargs))

        wrapped.__doc__ = getattr(method, "__doc__", None)
        return wrapped
    return v


def show(obj: Any) -> View:
    """Wrap a typed result (an :class:`AnalysisResult`, a layer, a kernel match) for display."""
    if isinstance(obj, View):
        return obj
    from convlens.analysis.result import AnalysisResult

    if isinstance(obj, AnalysisResult) and not hasattr(obj, _WEIGHTS):
        attach(obj, None)  # layers, kernels and channels know their parents; no files
    return View(obj)


def load(path: str | Path) -> View:
    """The analysis of a run directory (``RUN/analysis.json``) or a model analysis JSON file, as a
    :class:`View` (``load(path).result`` is the :class:`AnalysisResult`)."""
    from convlens.analysis.result import AnalysisResult
    from convlens.runs.layout import MODEL_ANALYSIS_SUFFIX, RunLayout, channels_path

    p = Path(path)
    if p.is_dir():
        run = RunLayout(p)
        if not run.analysis.is_file():
            raise ConvlensError(
                f"{str(p)!r} has no analysis.json: analyse the run first",
                hint_key="no_analysis",
            )
        result = AnalysisResult.read(run.analysis)
        weights = run.model
        arrays = channels_path(run.analysis)
    elif p.is_file():
        if p.suffix.lower() in (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".onnx"):
            raise ConvlensError(
                f"{str(p)!r} is a model file, not its analysis: run `convlens analyze {p}` and "
                f"load {str(p) + MODEL_ANALYSIS_SUFFIX!r}"
            )
        result = AnalysisResult.read(p)
        arrays = channels_path(p)
        src = Path(result.source.path)
        here = p.absolute().parent
        if not src.is_absolute():
            # a relative source: RUN/analysis.json of that run, else the model file beside it
            src = here if result.source.kind == "run" and here.name == src.name else here / src.name
        weights = RunLayout(src).model if src.is_dir() else src
    else:
        raise ConvlensError(f"{str(p)!r} is neither a run directory nor an analysis JSON file")
    attach(result, weights if weights.suffix == ".safetensors" else None, arrays)
    return View(result)


def attach(result: AnalysisResult, weights: Path | None, channels: Path | None = None) -> None:
    """Link layers, kernels and channel records to their result, the weights file and the channel
    arrays (``channels.safetensors``), both read on first use."""
    setattr(result, _WEIGHTS, {"path": weights, "loaded": None})
    setattr(result, _CHANNELS, {"path": channels, "loaded": None})
    for rec in result.channels or []:
        setattr(rec, _PARENT, result)
    for layer in result.layers:
        setattr(layer, _PARENT, result)
        for k in layer.matching.kernels if layer.matching is not None else []:
            setattr(k, _PARENT, layer)


def _weights(result: AnalysisResult | None, which: str = _WEIGHTS) -> dict[str, NDArray[Any]]:
    held = getattr(result, which, None) if result is not None else None
    if not held or held["path"] is None or not Path(held["path"]).is_file():
        return {}
    if held["loaded"] is None:
        from convlens.runs.read import read_tensors

        held["loaded"] = read_tensors(Path(held["path"]))
    return dict(held["loaded"])


def _layer_weight(layer: LayerResult) -> NDArray[Any] | None:
    w = _weights(getattr(layer, _PARENT, None))
    return w.get(layer.identity.weight_key, w.get(layer.identity.name))


def _bank_kernel(label: str, shape: tuple[int, ...]) -> NDArray[np.float64] | None:
    """The bank kernel called ``label`` with the kernel's shape (1-D bank for 1-D kernels)."""
    from convlens.kernels import matching_bank
    from convlens.kernels.bank1d import matching_bank_1d

    flat = [s for s in shape if s > 1]
    if len(flat) == 1:
        bank: list[Any] = matching_bank_1d(flat[0])
    elif len(shape) == 2 and shape[0] == shape[1]:
        bank = matching_bank(shape[0])
    else:
        return None
    for e in bank:
        if e.label == label:
            return np.asarray(e.weights, np.float64).reshape(shape)
    return None


def kernel_arrays(k: KernelMatch) -> tuple[NDArray[Any] | None, NDArray[Any] | None]:
    """(the learned kernel with its mean removed, or ``None`` without weights; its best bank match
    sign-aligned and scaled to the learned kernel's norm, or ``None``)."""
    layer = getattr(k, _PARENT, None)
    w = _layer_weight(layer) if layer is not None else None
    if w is None:
        size = layer.matching.kernel_size if layer is not None and layer.matching else None
        shape: tuple[int, ...] = (size,) * (layer.identity.dims if layer else 2) if size else ()
        return None, _bank_kernel(k.best_match, shape) if shape else None
    learned = np.asarray(w[k.out_channel, k.in_channel], np.float64)
    learned = learned - learned.mean()  # matched after removing the mean
    bank = _bank_kernel(k.best_match, learned.shape)
    if bank is not None:
        scale = float(np.linalg.norm(learned)) / (float(np.linalg.norm(bank)) or 1.0)
        bank = k.sign * bank * scale
    return learned, bank


def _draw(ax: Any, a: NDArray[Any] | None, title: str) -> None:
    from convlens.report.figures import _sym

    if a is None:
        ax.axis("off")
        ax.set_title(title + "\n(no weights)")
        return
    flat = np.squeeze(a)
    if flat.ndim == 1:  # a 1-D kernel: a stem plot reads better than a 1 x K image
        ax.axhline(0, color="#999999", lw=0.5)
        ax.plot(flat, "o-", color="#c0392b", ms=3, lw=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    else:
        _sym(ax, flat, title)


def plot_kernel(k: KernelMatch) -> Any:
    """The learned kernel beside its best classical match."""
    from convlens.report.figures import _plt

    learned, bank = kernel_arrays(k)
    fig, axes = _plt().subplots(1, 2, figsize=(3.0, 1.7))
    _draw(axes[0], learned, f"out {k.out_channel}, in {k.in_channel}")
    _draw(axes[1], bank, f"{k.best_match.split('(')[0]} {k.score:.2f}")
    return fig


def plot_layer(layer: LayerResult, max_kernels: int = MAX_KERNELS) -> Any:
    """The layer's first ``max_kernels`` kernels (top) above their best matches (bottom)."""
    from convlens.report.figures import _plt

    plt = _plt()
    kernels = layer.matching.kernels[:max_kernels] if layer.matching is not None else []
    if not kernels:
        fig, ax = plt.subplots(figsize=(3.0, 0.8))
        ax.axis("off")
        reason = layer.matching.skipped if layer.matching is not None else None
        ax.text(0, 0.5, f"{layer.name}: no per-kernel matches ({reason or 'not matched'})")
        return fig
    cols = min(len(kernels), 8)
    rows = int(np.ceil(len(kernels) / cols))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, k in enumerate(kernels):
        r, c = 2 * (i // cols), i % cols
        learned, bank = kernel_arrays(k)
        axes[r, c].axis("on")
        axes[r + 1, c].axis("on")
        _draw(axes[r, c], learned, f"#{i}")
        _draw(axes[r + 1, c], bank, f"{k.best_match.split('(')[0]} {k.score:.2f}")
    fig.suptitle(f"{layer.name}: learned (top) vs best classical match (bottom)", fontsize=8)
    return fig


def plot_result(result: AnalysisResult) -> Any:
    """Left: every layer's fraction of kernels above the random null's 95th percentile (5% is
    chance). Right: the first layer's fraction over the snapshot epochs, when the run has them."""
    from convlens.report.figures import _num, _plt

    evo = result.evolution.epochs if result.evolution is not None else []
    fig, axes = _plt().subplots(
        1, 2 if evo else 1, figsize=(7.0 if evo else 3.6, 2.4), squeeze=False
    )
    ax = axes[0, 0]
    names = [r.name for r in result.layers]
    fracs = [
        _num(r.matching.fraction_above_null95) if r.matching else np.nan for r in result.layers
    ]
    ax.bar(range(len(names)), fracs, color="#c0392b")
    ax.axhline(0.05, color="k", ls="--", lw=1, label="chance (5%)")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("kernels above null95")
    ax.legend(fontsize=7)
    if evo:
        ax = axes[0, 1]
        ax.plot(
            [r.epoch for r in evo],
            [_num(r.first_layer_fraction_above_null95) for r in evo],
            "o-",
            color="#c0392b",
            ms=3,
        )
        ax.axhline(0.05, color="k", ls="--", lw=1)
        ax.set_xlabel("epoch (snapshots)")
        ax.set_ylim(0, 1)
        ax.set_title(f"first layer ({result.evolution.first_layer if result.evolution else ''})")
    return fig


def _img(fig: Any) -> str:
    from convlens.report.figures import to_data_uri

    return f'<img src="{to_data_uri(fig)}" style="max-width:100%">'


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table style='font-size:90%'>{cells}</table>"


def _verdict(v: Any) -> str:
    return str(v.verdict) if v is not None else "n/a"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def result_html(result: AnalysisResult) -> str:
    """A summary table (source, layers, verdicts) and :func:`plot_result` as an inline PNG."""
    h = result.headline
    rows = [
        ("source", f"{result.source.kind}: {result.source.path}"),
        ("conv layers", ", ".join(r.name for r in result.layers) or "none"),
        ("test accuracy", "n/a" if h.test_accuracy is None else f"{h.test_accuracy:.4f}"),
        ("classical kernels", _verdict(result.verdicts.classical_kernels)),
        ("cross-correlation", _verdict(result.verdicts.cross_correlation)),
    ]
    for r in result.layers:
        m = r.matching
        if m is not None and m.fraction_above_null95 is not None:
            rows.append((r.name, f"{_pct(m.fraction_above_null95)} of kernels above null95"))
    if result.channels:
        n = sum(len(rec.channels) for rec in result.channels)
        found = [
            f"{rec.layer} ch {channel}: {c.part}"
            for rec in result.channels
            for channel, c in rec.detectors()
        ]
        rows.append(
            (
                "channels",
                f"{n} in {len(result.channels)} layer(s), with exemplars (view.channels[i])"
                + (f"; face-part detectors: {', '.join(found) or 'none'}" if any(
                    rec.concept_images for rec in result.channels) else ""),
            )
        )  # fmt: skip
    return f"<div><b>convlens analysis</b>{_table(rows)}{_img(plot_result(result))}</div>"


def layer_html(layer: LayerResult) -> str:
    """The layer's identity, its match figures and :func:`plot_layer` as an inline PNG."""
    m = layer.matching
    rows = [
        (
            "layer",
            f"{layer.name} ({layer.identity.module_type or 'conv'}, {layer.identity.dims}-D)",
        ),
        ("weight shape", "x".join(map(str, layer.identity.weight_shape))),
        ("kernels", str(layer.n_kernels)),
    ]
    if m is not None:
        rows.append(("above random null95", _pct(m.fraction_above_null95)))
        rows.append(("categories", ", ".join(f"{k} {v}" for k, v in m.categories.items())))
        if m.spectral is not None and m.spectral.peak_median is not None:
            rows.append(("median peak frequency", f"{m.spectral.peak_median:.3f} cycles/sample"))
    if _layer_weight(layer) is None:
        rows.append(("learned kernels", "not drawn: no weights file beside this result"))
    return f"<div>{_table(rows)}{_img(plot_layer(layer))}</div>"


def kernel_html(k: KernelMatch) -> str:
    """The kernel's match figures and :func:`plot_kernel` as an inline PNG."""
    rows = [
        ("kernel", f"out {k.out_channel}, in {k.in_channel}"),
        ("best match", f"{k.best_match} ({k.family})"),
        ("score", f"{k.score:.3f} (null percentile {k.percentile:.1f}, p = {k.p_value:.3g})"),
        ("category", k.category),
    ]
    return f"<div>{_table(rows)}{_img(plot_kernel(k))}</div>"


def _picture(a: NDArray[Any] | None) -> NDArray[Any] | None:
    """A crop or maximising input ``(C, H, W)`` (``(C, L)`` for 1-D) as something ``imshow``
    draws: RGB scaled to [0, 1] for 3 channels, else the mean over channels; NaN (padding) kept."""
    if a is None:
        return None
    x = np.asarray(a, dtype=np.float64)
    x = x[:, None, :] if x.ndim == 2 else x
    if x.shape[0] != 3:
        return x.mean(axis=0)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.moveaxis((x - lo) / (hi - lo if hi > lo else 1.0), 0, -1)


def plot_channels(rec: LayerChannels, max_channels: int = MAX_CHANNELS) -> Any:
    """One row per channel (the first ``max_channels``): its maximising input, then its top
    exemplars' receptive-field crops with their peak values (from ``channels.safetensors``)."""
    from convlens.report.figures import _plt

    plt = _plt()
    parent = getattr(rec, _PARENT, None)
    arrays = _weights(parent, _CHANNELS) or dict(
        getattr(parent, "__dict__", {}).get(_PENDING) or {}
    )
    chans = rec.channels[:max_channels]
    if not chans or not arrays:
        fig, ax = plt.subplots(figsize=(4.0, 0.8))
        ax.axis("off")
        why = rec.skipped or ("no channels" if not chans else "no channels.safetensors beside it")
        ax.text(0, 0.5, f"{rec.layer}: nothing to draw ({why})")
        return fig
    cols = 1 + rec.k
    fig, axes = plt.subplots(
        len(chans), cols, figsize=(0.9 * cols, 0.95 * len(chans) + 0.3), squeeze=False
    )
    for i, ch in enumerate(chans):
        pictures = [(arrays.get(ch.arrays.get("maximising", "")), f"ch {ch.channel}: max")]
        crops = arrays.get(ch.arrays.get("top", ""))
        for j, e in enumerate(ch.top[: rec.k]):
            crop = crops[j] if crops is not None and j < len(crops) else None
            pictures.append((crop, f"{e.value:.2f}"))
        for ax, (a, title) in zip(axes[i], pictures + [(None, "")] * cols, strict=False):
            ax.set_xticks([])
            ax.set_yticks([])
            picture = _picture(a)
            if picture is None:
                ax.axis("off")
            else:
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_title(title, fontsize=6)
    fig.suptitle(f"{rec.layer}: maximising input, then top exemplars (peak value)", fontsize=8)
    return fig


def channels_html(rec: LayerChannels) -> str:
    """The layer's channel summary (images, sets, named detectors against their nulls) and
    :func:`plot_channels` as an inline PNG."""
    detected = [
        f"channel {channel}: {c.part} (IoU {c.iou:.2f}; nulls: shifted {c.null_shift_p95:.2f}"
        + (f", untrained {c.null_untrained_p95:.2f}" if c.null_untrained_p95 is not None else "")
        + ")"
        for channel, c in rec.detectors()
    ]
    rows = [
        ("layer", rec.layer),
        ("images", f"{rec.n_images} ({', '.join(rec.sets)})"),
        ("channels", str(len(rec.channels))),
        ("exemplars", f"top and bottom {rec.k} per channel"),
    ]
    if rec.concept_images:
        rows.append(("face-part detectors", "; ".join(detected) or "none above both nulls"))
    if rec.random_label_detectors is not None:
        rows.append(
            (
                "random-label network",
                ", ".join(f"{p} {n}" for p, n in rec.random_label_detectors.items()),
            )
        )
    if rec.skipped:
        rows.append(("skipped", rec.skipped))
    return f"<div>{_table(rows)}{_img(plot_channels(rec))}</div>"
