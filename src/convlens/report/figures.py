"""Matplotlib figures (Agg) embedded as PNG data URIs: the report needs no external file.

One colour-blind-safe palette throughout (Okabe-Ito, no red/green pairs): blue for trained or ID,
orange/vermillion for OOD or "reversed", grey for nulls and "not supported". Heatmaps use a
diverging blue-white-orange map with a stated symmetric scale and a colour bar."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import EffectiveField, LayerDistribution
from convlens.ops.geometry import ReceptiveField

DPI = 90
#: every figure text in points: 9 pt at 90 dpi is 11.25 px, shown at natural size (figures scroll
#: sideways in their own region rather than shrink), so no figure text is below 11 px
FONT_PT = 9
#: Okabe-Ito colours
BLUE, ORANGE, SKY, GREEN, VERMILLION, PURPLE, GREY, BLACK = (
    "#0072B2",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#999999",
    "#000000",
)
#: diverging heatmap: blue (negative) - white - orange (positive); colour-blind safe; the same
#: end colours as the page's own canvases and SVG kernels (report/interactive.py)
DIVERGING = "convlens_diverging"
SEQUENTIAL = "cividis"


def _num(v: float | None) -> float:
    """A figure's value for plotting: ``None`` (undefined) becomes NaN, which matplotlib skips."""
    return float("nan") if v is None else float(v)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams.update({"font.size": FONT_PT, "axes.titlesize": FONT_PT, "figure.dpi": DPI})
    if DIVERGING not in matplotlib.colormaps:
        from matplotlib.colors import LinearSegmentedColormap

        from convlens.report.interactive import NEG_RGB, POS_RGB

        ends = [tuple(c / 255 for c in NEG_RGB), (1.0, 1.0, 1.0), tuple(c / 255 for c in POS_RGB)]
        matplotlib.colormaps.register(LinearSegmentedColormap.from_list(DIVERGING, ends))
    return plt


def to_data_uri(fig: Any) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sym(
    ax: Any,
    a: NDArray[Any],
    title: str | None = None,
    cmap: str = DIVERGING,
    scale: float | None = None,
) -> Any:
    """A symmetric heatmap: +-max|a| (or +-``scale`` when shared); returns the image for a colour bar."""
    m = scale if scale is not None else float(np.abs(a).max())
    m = m or 1.0
    im = ax.imshow(a, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return im


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
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 3.2), layout="constrained")
    _grey(axes[0, 0], image, "probe image")
    axes[1, 0].axis("off")
    for i, (name, k, fmap) in enumerate(items, start=1):
        fig.colorbar(_sym(axes[0, i], k, name), ax=axes[0, i], shrink=0.7)
        fig.colorbar(_sym(axes[1, i], fmap), ax=axes[1, i], shrink=0.7)
    return to_data_uri(fig)


def null_histogram(
    null: list[float] | NDArray[Any],
    scores: list[float],
    init_scores: list[float] | None,
    p95: float,
    spectrum: NDArray[Any] | None = None,
    spectrum_p95: float | None = None,
) -> str:
    """Both nulls (random, spectrum-matched) as histograms with their 95th percentiles, and the
    trained (and epoch-000) kernels' scores as a rug."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 2.8), layout="constrained")
    bins = np.linspace(0, 1, 51)
    ax.hist(null, bins=bins, color=GREY, density=True, alpha=0.8, label="random null")
    ax.axvline(p95, color=BLACK, ls="--", lw=1, label=f"random null p95 = {p95:.3f}")
    if spectrum is not None and len(spectrum):
        ax.hist(
            spectrum,
            bins=bins,
            density=True,
            histtype="step",
            lw=1.5,
            color=PURPLE,
            label="spectrum-matched null",
        )
        sp = spectrum_p95 if spectrum_p95 is not None else float(np.percentile(spectrum, 95))
        ax.axvline(sp, color=PURPLE, ls=":", lw=1.5, label=f"spectrum null p95 = {sp:.3f}")
    top = ax.get_ylim()[1]
    ax.plot(
        scores, [top * 0.97] * len(scores), "|", color=BLUE, ms=14, mew=1.5, label="trained kernels"
    )
    if init_scores:
        ax.plot(
            init_scores,
            [top * 0.88] * len(init_scores),
            "|",
            color=ORANGE,
            ms=10,
            mew=1,
            label="epoch-000 kernels",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, top * 1.02)  # keep the rug of scores inside the axes
    ax.set_xlabel("best |cosine| to a classical kernel (DC removed)")
    ax.set_ylabel("density")
    ax.legend(fontsize=FONT_PT, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_data_uri(fig)


def evolution_curves(
    epochs: list[int],
    fraction: list[float | None],
    median: list[float | None],
    p95: float | None,
    distance: dict[str, list[float | None]],
) -> str:
    """Left: first-layer fraction above the null p95 per snapshot epoch; middle: median score with
    the null p95; right: each layer's relative distance from its initialisation."""
    plt = _plt()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(9.6, 2.6), layout="constrained")
    a1.plot(epochs, [_num(v) for v in fraction], marker=".", color=BLUE, label="above null p95")
    a1.axhline(0.05, color=BLACK, ls=":", lw=1, label="chance (5%)")
    a1.set_xlabel("epoch")
    a1.set_ylabel("fraction of kernels")
    a1.set_ylim(-0.02, 1.02)
    a1.legend(fontsize=FONT_PT)
    a2.plot(epochs, [_num(v) for v in median], marker=".", color=BLUE, label="median best |cos|")
    if p95 is not None:
        a2.axhline(p95, color=BLACK, ls="--", lw=0.8, label="null p95")
    a2.set_xlabel("epoch")
    a2.set_ylabel("score")
    a2.legend(fontsize=FONT_PT)
    colours = [BLUE, ORANGE, SKY, VERMILLION, PURPLE, GREEN, BLACK]
    for i, (layer, d) in enumerate(distance.items()):
        a3.plot(epochs, [_num(v) for v in d], color=colours[i % len(colours)], label=layer)
    a3.set_xlabel("epoch")
    a3.set_ylabel("|W_e - W_0| / |W_0|")
    a3.legend(fontsize=FONT_PT)
    return to_data_uri(fig)


def training_curves(metrics: dict[str, list[dict[str, Any]]]) -> str:
    """Loss and accuracy per epoch (train solid, validation dashed), one colour per seed."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.4, 2.7), layout="constrained")
    colours = [BLUE, ORANGE, SKY, VERMILLION, PURPLE, GREEN, BLACK]
    for i, (label, rows) in enumerate(metrics.items()):
        c = colours[i % len(colours)]
        ep = [r["epoch"] for r in rows]
        for ax, key in ((a1, "loss"), (a2, "acc")):
            ax.plot(
                ep,
                [_num(r.get(f"train_{key}")) for r in rows],
                color=c,
                lw=1.2,
                label=f"{label} train",
            )
            ax.plot(
                ep,
                [_num(r.get(f"val_{key}")) for r in rows],
                color=c,
                lw=1.2,
                ls="--",
                label=f"{label} validation",
            )
    a1.set_ylabel("cross-entropy loss")
    a2.set_ylabel("accuracy")
    for ax in (a1, a2):
        ax.set_xlabel("epoch")
    a2.legend(fontsize=FONT_PT, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_data_uri(fig)


def _mosaic(tiles: list[list[NDArray[Any]]], pad: int = 1) -> NDArray[Any]:
    """Tiles (rows of equal-shape 2-D arrays) in one array, separated by NaN (drawn blank)."""
    h, w = tiles[0][0].shape
    n_r, n_c = len(tiles), max(len(r) for r in tiles)
    out = np.full((n_r * (h + pad) - pad, n_c * (w + pad) - pad), np.nan)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = t
    return out


def feature_maps_over_epochs(
    rows: list[tuple[str, NDArray[Any], list[tuple[int, NDArray[Any]]]]], channels: int = 8
) -> str:
    """Each row: a probe image and one layer's first ``channels`` maps at an epoch, all maps on ONE
    shared symmetric scale (+-max|value| over the figure) so that ID and OOD rows compare. Drawn as
    two mosaics (probe images; maps), not one axes per map: fast and label-free of overlaps."""
    plt = _plt()
    probes, tiles, labels = [], [], []
    for label, image, eps in rows:
        for epoch, maps in eps:
            probes.append([(image - image.min()) / (np.ptp(image) or 1.0)])
            tiles.append([maps[c] for c in range(min(channels, maps.shape[0]))])
            labels.append(f"{label}, epoch {epoch}")
    scale = max((float(np.nanmax(np.abs(t))) for r in tiles for t in r), default=1.0) or 1.0
    maps_m, probe_m = _mosaic(tiles), _mosaic(probes)
    n_rows, n_cols = len(tiles), max(len(r) for r in tiles)
    w = tiles[0][0].shape[1]
    width = 1.4 + 0.75 * n_cols + 1.0
    fig, (a0, a1, cax) = plt.subplots(
        1,
        3,
        figsize=(width, 0.75 * n_rows + 0.6),
        gridspec_kw={
            "width_ratios": [
                probe_m.shape[1] * maps_m.shape[0] / probe_m.shape[0],
                maps_m.shape[1],
                0.04 * maps_m.shape[1],
            ]
        },
    )
    # both mosaics fill the same height (aspect "auto"), so probe rows line up with map rows
    a0.imshow(probe_m, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ph = probe_m.shape[0] / n_rows
    a0.set_yticks([ph * (i + 0.5) for i in range(n_rows)], labels, fontsize=FONT_PT)
    a0.set_xticks([])
    a0.set_title("probe")
    im = a1.imshow(
        maps_m, cmap=DIVERGING, vmin=-scale, vmax=scale, interpolation="nearest", aspect="auto"
    )
    a1.set_xticks(
        [(w + 1) * c + w / 2 for c in range(n_cols)],
        [f"ch {c}" for c in range(n_cols)],
        fontsize=FONT_PT,
        rotation=90,
    )
    a1.xaxis.tick_top()
    a1.set_yticks([])
    fig.colorbar(im, cax=cax, label="output (one shared scale)")
    return to_data_uri(fig)


def ncc_figure(
    image: NDArray[Any], kernel: NDArray[Any], raw: NDArray[Any], ncc: NDArray[Any]
) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.4), layout="constrained")
    _grey(axes[0], image, "probe image")
    fig.colorbar(_sym(axes[1], kernel, "learned kernel"), ax=axes[1], shrink=0.8)
    fig.colorbar(_sym(axes[2], raw, "raw output"), ax=axes[2], shrink=0.8)
    fig.colorbar(_sym(axes[3], ncc, "NCC (r in [-1, 1])", scale=1.0), ax=axes[3], shrink=0.8)
    return to_data_uri(fig)


def correlation_matrices(mats: dict[str, NDArray[Any]]) -> str:
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(mats), figsize=(3.2 * len(mats) + 0.8, 3.0), squeeze=False, layout="constrained"
    )
    from matplotlib.ticker import MaxNLocator

    for ax, (name, m) in zip(axes[0], mats.items(), strict=True):
        im = ax.imshow(m, cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("channel")
        ax.set_ylabel("channel")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Pearson r")
    return to_data_uri(fig)


#: OOD verdict colours (Okabe-Ito; hatching too, so that they read in black and white)
VERDICT_COLOURS = {"holds": SKY, "reversed": VERMILLION, "not supported": GREY}
VERDICT_HATCH = {"holds": "", "reversed": "//", "not supported": ".."}


def activation_bars(layers: dict[str, LayerDistribution]) -> str:
    """Mean activation per layer: ID and each OOD set with bootstrap 95% CIs."""
    plt = _plt()
    names = list(layers)
    fig, axes = plt.subplots(
        1, len(names), figsize=(3.6 * len(names), 2.9), squeeze=False, layout="constrained"
    )
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
        colors = [BLUE] + [VERDICT_COLOURS.get(v.verdict, GREY) for v in e.ood.values()]
        hatches = [""] + [VERDICT_HATCH.get(v.verdict, "") for v in e.ood.values()]
        bars = ax.bar(
            range(len(labels)),
            means,
            yerr=np.nan_to_num(np.maximum(err, 0)),
            color=colors,
            capsize=3,
            edgecolor=BLACK,
            linewidth=0.5,
        )
        for bar, h in zip(bars, hatches, strict=True):
            bar.set_hatch(h)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90)
        ax.set_title(f"{layer}: mean relu activation")
    return to_data_uri(fig)


def receptive_figure(
    effective: list[EffectiveField], theoretical: dict[str, ReceptiveField]
) -> str:
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(effective), figsize=(2.9 * len(effective), 2.8), squeeze=False, layout="constrained"
    )
    for ax, e in zip(axes[0], effective, strict=True):
        g = np.asarray(e.gradient_map, dtype=np.float64)
        top = float(np.nanmax(g)) if g.size else 0.0
        im = ax.imshow(
            g / top if top > 0 else g, cmap=SEQUENTIAL, vmin=0, vmax=1, interpolation="nearest"
        )
        fig.colorbar(im, ax=ax, shrink=0.8, label="|grad| / max")
        t = theoretical.get(e.layer)
        size = t.size[0] if t else None
        ax.set_title(
            f"{e.layer}: support {e.support_fraction:.0%}" + (f", theory {size}px" if size else "")
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return to_data_uri(fig)


#: trained, then the untrained initialisations, the paired controls and the random-label network in
#: order: colour and marker shape both differ (legible in black and white and for colour-blind readers)
NETWORK_STYLES = ((BLUE, "o"), (ORANGE, "s"), (GREY, "^"), (PURPLE, "D"))


def _network_points(row: dict[str, Any], net: str) -> dict[str, Any] | None:
    """One network's AUROC and interval in one table row (:func:`convlens.report.ood.layer_tables`):
    the trained network, ``untrained`` (median and 2.5/97.5 percentiles of the initialisations),
    ``random labels`` or a paired control by name."""
    if net == "trained":
        return row
    if net == UNTRAINED_NET:
        u = row.get("untrained")
        return None if u is None else {"auroc": u["median"], "auroc_ci": u["interval"]}
    if net == RANDOM_LABELS_NET:
        rl: dict[str, Any] | None = row.get("random_labels")
        return rl
    paired: dict[str, Any] | None = row["controls"].get(net)
    return paired


UNTRAINED_NET = "untrained initialisations (median, 2.5-97.5%)"
RANDOM_LABELS_NET = "random labels"


def auroc_vs_untrained(tables: list[dict[str, Any]]) -> str:
    """Per layer: ID-vs-set AUROC of the trained network with its 95% CI, the untrained
    initialisations' median with their 2.5-97.5 percentile range, and each paired control and the
    random-label network with their 95% CIs; one column per set (the OOD sets, then the data's
    other classes)."""
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(tables), figsize=(3.8 * len(tables), 3.3), squeeze=False, layout="constrained"
    )
    nets = ["trained"]
    nets += [UNTRAINED_NET] if any(t.get("n_untrained") for t in tables) else []
    nets += [*dict.fromkeys(c for t in tables for c in t["control_names"])]
    nets += [RANDOM_LABELS_NET] if any(t.get("random_labels") for t in tables) else []
    for ax, t in zip(axes[0], tables, strict=True):
        rows = [*t["ood"], *t["other"]]
        width = 0.7 / len(nets)
        for k, net in enumerate(nets):
            colour, marker = NETWORK_STYLES[k % len(NETWORK_STYLES)]
            pts = [_network_points(r, net) for r in rows]
            y = np.array([_num(p["auroc"]) if p else np.nan for p in pts])
            cis = [p["auroc_ci"] if p else (None, None) for p in pts]
            lo = np.array([_num(c[0]) for c in cis])
            hi = np.array([_num(c[1]) for c in cis])
            err = np.nan_to_num(np.maximum(np.array([y - lo, hi - y]), 0))
            x = np.arange(len(rows)) + (k - (len(nets) - 1) / 2) * width
            ax.errorbar(x, y, yerr=err, fmt=marker, color=colour, capsize=2, ms=5, label=net)
        ax.axhline(0.5, color=BLACK, lw=0.6, ls="--")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["set"] for r in rows], rotation=90)
        ax.set_ylabel("AUROC (ID vs set)")
        ax.set_title(f"{t['layer']}: trained vs controls")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(nets), 2), frameon=False)
    return to_data_uri(fig)
