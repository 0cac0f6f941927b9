"""Matplotlib figures (Agg) embedded as PNG data URIs: the report needs no external file."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import EffectiveField, LayerDistribution
from convlens.ops.geometry import ReceptiveField

DPI = 90


def _num(v: float | None) -> float:
    """A figure's value for plotting: ``None`` (undefined) becomes NaN, which matplotlib skips."""
    return float("nan") if v is None else float(v)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "figure.dpi": DPI})
    return plt


def to_data_uri(fig: Any) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sym(ax: Any, a: NDArray[Any], title: str | None = None, cmap: str = "RdBu_r") -> None:
    m = float(np.abs(a).max()) or 1.0
    ax.imshow(a, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def _grey(ax: Any, a: NDArray[Any], title: str | None = None) -> None:
    ax.imshow(a, cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def kernels_and_maps(
    image: NDArray[Any], items: list[tuple[str, NDArray[Any], NDArray[Any]]]
) -> str:
    """Top row: kernels; bottom row: their feature maps on ``image``."""
    plt = _plt()
    n = len(items) + 1
    fig, axes = plt.subplots(2, n, figsize=(1.45 * n, 3.0))
    _grey(axes[0, 0], image, "probe image")
    axes[1, 0].axis("off")
    for i, (name, k, fmap) in enumerate(items, start=1):
        _sym(axes[0, i], k, name)
        _sym(axes[1, i], fmap)
    return to_data_uri(fig)


def learned_vs_bank(
    learned: list[NDArray[Any]], matched: list[NDArray[Any]], labels: list[str]
) -> str:
    """Each learned kernel above its best classical match (sign-aligned)."""
    plt = _plt()
    n = len(learned)
    cols = min(n, 8)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        axes[r, c].axis("on")
        axes[r + 1, c].axis("on")
        _sym(axes[r, c], learned[i], f"#{i}")
        _sym(axes[r + 1, c], matched[i], labels[i])
    return to_data_uri(fig)


def null_histogram(
    null: list[float] | NDArray[Any],
    scores: list[float],
    init_scores: list[float] | None,
    p95: float,
) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 2.4))
    ax.hist(null, bins=40, color="#bbbbbb", density=True, label="random kernels (null)")
    ax.axvline(p95, color="k", ls="--", lw=1, label="null 95th percentile")
    for s in scores:
        ax.axvline(s, color="#c0392b", lw=1.2, alpha=0.8)
    if init_scores:
        for s in init_scores:
            ax.axvline(s, color="#2e86c1", lw=1, alpha=0.6, ls=":")
    ax.plot([], [], color="#c0392b", label="trained kernels")
    if init_scores:
        ax.plot([], [], color="#2e86c1", ls=":", label="epoch-000 kernels")
    ax.set_xlabel("best |cosine| to a classical kernel (DC removed)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, loc="upper left")
    return to_data_uri(fig)


def kernel_grid_over_epochs(snaps: list[tuple[int, NDArray[Any]]]) -> str:
    """Rows: epochs; columns: first-layer kernels (input channel 0)."""
    plt = _plt()
    rows = len(snaps)
    cols = snaps[0][1].shape[0]
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols + 0.6, 0.95 * rows), squeeze=False)
    for r, (epoch, w) in enumerate(snaps):
        for c in range(cols):
            _sym(axes[r, c], w[c, 0])
        axes[r, 0].set_ylabel(f"epoch {epoch}", rotation=0, ha="right", va="center")
    return to_data_uri(fig)


def evolution_curves(
    epochs: list[int],
    fraction: list[float],
    median: list[float],
    p95: float,
    distance: dict[str, list[float]],
) -> str:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.5))
    a1.plot(epochs, fraction, marker=".", color="#c0392b", label="fraction above null p95")
    a1.axhline(0.05, color="k", ls=":", lw=1, label="chance (5%)")
    a1.set_xlabel("epoch")
    a1.set_ylim(-0.02, 1.02)
    a1b = a1.twinx()
    a1b.plot(epochs, median, color="#2e86c1", label="median best |cos|")
    a1b.axhline(p95, color="#2e86c1", ls="--", lw=0.8)
    a1.legend(fontsize=7, loc="upper left")
    a1b.legend(fontsize=7, loc="lower right")
    for layer, d in distance.items():
        a2.plot(epochs, d, label=layer)
    a2.set_xlabel("epoch")
    a2.set_ylabel("|W_e - W_0| / |W_0|")
    a2.legend(fontsize=7)
    return to_data_uri(fig)


def feature_maps_over_epochs(
    rows: list[tuple[str, NDArray[Any], list[tuple[int, NDArray[Any]]]]], channels: int = 6
) -> str:
    """Each row: a probe image and one layer's first channels at several epochs."""
    plt = _plt()
    n_rows = sum(len(eps) for _, _, eps in rows)
    fig, axes = plt.subplots(
        n_rows, channels + 1, figsize=(1.0 * (channels + 1), 1.0 * n_rows), squeeze=False
    )
    r = 0
    for label, image, eps in rows:
        for epoch, maps in eps:
            _grey(axes[r, 0], image)
            axes[r, 0].set_ylabel(
                f"{label}\nepoch {epoch}", rotation=0, ha="right", va="center", fontsize=7
            )
            for c in range(channels):
                if c < maps.shape[0]:
                    _sym(axes[r, c + 1], maps[c], f"ch {c}" if r == 0 else None)
                else:
                    axes[r, c + 1].axis("off")
            r += 1
    return to_data_uri(fig)


def ncc_figure(
    image: NDArray[Any], kernel: NDArray[Any], raw: NDArray[Any], ncc: NDArray[Any]
) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
    _grey(axes[0], image, "probe image")
    _sym(axes[1], kernel, "learned kernel")
    _sym(axes[2], raw, "raw output")
    axes[3].imshow(ncc, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    axes[3].set_title("NCC (r in [-1, 1])")
    axes[3].set_xticks([])
    axes[3].set_yticks([])
    return to_data_uri(fig)


def correlation_matrices(mats: dict[str, NDArray[Any]]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(mats), figsize=(2.8 * len(mats), 2.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats.items(), strict=True):
        im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("channel")
        ax.set_ylabel("channel")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return to_data_uri(fig)


def activation_bars(layers: dict[str, LayerDistribution]) -> str:
    """Mean activation per layer: ID and each OOD set with bootstrap 95% CIs."""
    plt = _plt()
    names = list(layers)
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 2.6), squeeze=False)
    for ax, layer in zip(axes[0], names, strict=True):
        e = layers[layer]
        labels = ["ID", *e.ood]
        means = [_num(e.id_mean)] + [_num(v.mean) for v in e.ood.values()]
        cis = [
            (_num(c[0]), _num(c[1])) for c in [e.id_mean_ci] + [v.mean_ci for v in e.ood.values()]
        ]
        err = np.array(
            [
                [m - lo for m, (lo, _) in zip(means, cis, strict=True)],
                [hi - m for m, (_, hi) in zip(means, cis, strict=True)],
            ]
        )
        colors = ["#2e86c1"] + [
            "#c0392b"
            if v.verdict == "holds"
            else "#999999"
            if v.verdict == "not supported"
            else "#27ae60"
            for v in e.ood.values()
        ]
        ax.bar(range(len(labels)), means, yerr=np.maximum(err, 0), color=colors, capsize=3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=35, ha="right")
        ax.set_title(f"{layer}: mean relu activation")
    return to_data_uri(fig)


def receptive_figure(
    effective: list[EffectiveField], theoretical: dict[str, ReceptiveField]
) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, len(effective), figsize=(2.4 * len(effective), 2.5), squeeze=False)
    for ax, e in zip(axes[0], effective, strict=True):
        g = np.asarray(e.gradient_map)
        ax.imshow(g, cmap="magma", interpolation="nearest")
        t = theoretical.get(e.layer)
        size = t.size[0] if t else None
        ax.set_title(
            f"{e.layer}: support {e.support_fraction:.0%}" + (f", theory {size}px" if size else "")
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return to_data_uri(fig)
