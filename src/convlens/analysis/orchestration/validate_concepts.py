"""The part-detector rule on planted parts (issue 24): its power and false-positive rates.

Each repetition draws 200 images of smooth noise (25 x 25, Gaussian-blurred white noise, 1 px).
Each image has one dark disc (radius 2): at the *planted part* A (row 8, column 6) in class 1, at
B (row 8, column 18) in class 0. The label is where the disc is, so a network that solves the task
must respond to the disc where it is. The demo's recipe (``faces-cnn``, AdamW, weight decay 4,
100 epochs) trains on it, and the rule of :mod:`convlens.analysis.evidence.concepts` runs on the
class-1 images:

- **hit**: some channel of the trained network detects part A (power);
- **false positive, misplaced**: some channel of the trained network detects a part where no disc
  ever is, C (row 18, column 12);
- **false positive, untrained**: some channel of a fresh initialisation detects A (the untrained
  null is :data:`N_NULL` other initialisations' best channels); :data:`FRESH_PER_REPETITION`
  fresh initialisations per repetition.

The rates are per network (any of its conv channels), with Wilson 95% intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from convlens.analysis.evidence import concepts
from convlens.analysis.evidence.stats import wilson
from convlens.analysis.orchestration.channels import _detects, layer_maps, untrained_bests

SIDE = 25
A, B, C = (8, 6), (8, 18), (18, 12)
RADIUS = 2.0
N_IMAGES = 200
FRESH_PER_REPETITION = 25
"""Fresh initialisations tested per repetition for the untrained false-positive rate."""
N_NULL = concepts.N_UNTRAINED
"""Untrained initialisations in the untrained null (as in the analysis)."""


def disc(centre: tuple[int, int], radius: float = RADIUS) -> NDArray[np.bool_]:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def planted_parts(seed: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The planted images ``(N, 1, 25, 25)`` (standardised) and labels (1: disc at A)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 2424])
    x = gaussian_filter(rng.standard_normal((N_IMAGES, SIDE, SIDE)), (0, 1.0, 1.0), mode="wrap")
    x /= x.std()
    y = np.arange(N_IMAGES) % 2
    rng.shuffle(y)
    for i, label in enumerate(y):
        x[i][disc(A if label else B)] -= 3.0
    x = (x - x.mean()) / x.std()
    return x[:, None].astype(np.float32), y.astype(np.int64)


def _train(x: NDArray[Any], y: NDArray[Any], seed: int, epochs: int) -> tuple[Any, Any]:
    """The demo recipe on the planted images: (trained network, its initialisation)."""
    from convlens.models import build_model
    from convlens.models.cnn import make_spec
    from convlens.train.recipes import DEMO_RECIPE

    r = DEMO_RECIPE
    torch.manual_seed(seed)
    spec = make_spec(r["model"], 1, (SIDE, SIDE), 2)
    net, init = build_model(spec), build_model(spec)
    init.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), r["batch_size"]):
            idx = perm[i : i + r["batch_size"]]
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), init.eval()


def _null_bests(
    null_nets: list[Any], x: NDArray[Any], mask: NDArray[np.bool_]
) -> list[dict[str, float]]:
    """Per untrained network, each layer's best channel IoU with ``mask`` on ``x``."""
    from convlens.analysis.measure import receptive

    rfs = {r.name: r for r in receptive.theoretical(null_nets[0])}
    return [
        {name: b["p"] for name, b in net.items()}
        for net in untrained_bests(null_nets, x, rfs, {"p": mask})
    ]


def _any_detector(
    net: Any, nulls: list[dict[str, float]], x: NDArray[Any], mask: NDArray[np.bool_]
) -> bool:
    """Does some conv channel of ``net`` detect ``mask`` on ``x`` (untrained null: the best
    channels of untrained networks, :func:`_null_bests`)?"""
    from convlens.analysis.measure import receptive

    rfs = {r.name: r for r in receptive.theoretical(net)}
    maps = layer_maps(net, x)
    for name, m in maps.items():
        ious, shift = concepts.iou_table(concepts.upsample(m, rfs[name], (SIDE, SIDE)), {"p": mask})
        floor = concepts.untrained_floor([t[name] for t in nulls], len(maps))
        if any(
            _detects(float(v), float(s), floor) for v, s in zip(ious["p"], shift["p"], strict=True)
        ):
            return True
    return False


def validate_concepts(
    repetitions: int = 10,
    epochs: int | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Hit and false-positive rates of the detector rule on planted parts (module docstring)."""
    from convlens.train.recipes import DEMO_RECIPE

    t0 = time.perf_counter()
    n_ep = int(epochs or DEMO_RECIPE["epochs"])
    hits, misplaced, untrained, acc = [], [], [], []
    for rep in range(repetitions):
        x, y = planted_parts(rep)
        net, _init = _train(x, y, 100 + rep, n_ep)
        with torch.no_grad():
            acc.append(float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean()))
        xa = x[y == 1]
        null_nets = [_train(x[:2], y[:2], 20_000 + 1000 * rep + k, 0)[0] for k in range(N_NULL)]
        null_a, null_c = _null_bests(null_nets, xa, disc(A)), _null_bests(null_nets, xa, disc(C))
        hits.append(_any_detector(net, null_a, xa, disc(A)))
        misplaced.append(_any_detector(net, null_c, xa, disc(C)))
        for k in range(FRESH_PER_REPETITION):
            fresh, _ = _train(x[:2], y[:2], 10_000 + 100 * rep + k, 0)
            untrained.append(_any_detector(fresh, null_a, xa, disc(A)))
        log(
            f"parts repetition {rep + 1}/{repetitions}: hit {hits[-1]}, misplaced {misplaced[-1]}, "
            f"untrained {sum(untrained[-FRESH_PER_REPETITION:])}/{FRESH_PER_REPETITION}, "
            f"training accuracy {acc[-1]:.2f}"
        )

    def rate(v: list[bool]) -> dict[str, Any]:
        k, n = int(sum(v)), len(v)
        lo, hi = wilson(k, n)
        return {"k": k, "n": n, "rate": k / n if n else None, "ci": [lo, hi]}

    return {
        "repetitions": repetitions,
        "epochs": n_ep,
        "rule": concepts.RULE,
        "hit": rate(hits),
        "false_misplaced": rate(misplaced),
        "false_untrained": rate(untrained),
        "training_accuracy": float(np.mean(acc)) if acc else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(v: dict[str, Any]) -> str:
    """The results as the Markdown table docs/channels.md holds."""

    def pct(r: dict[str, Any]) -> str:
        lo, hi = r["ci"]
        return f"{r['k']}/{r['n']} = {100 * r['rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"

    return (
        f"{v['repetitions']} repetitions, the demo recipe for {v['epochs']} epochs (training "
        f"accuracy {v['training_accuracy']:.2f}); {v['seconds']:.0f} s.\n\n"
        "| case | truth | rate (Wilson 95%) |\n|---|---|---|\n"
        f"| trained, part A (the planted disc) | a detector exists | power {pct(v['hit'])} |\n"
        f"| trained, part C (no disc there) | none | false positives {pct(v['false_misplaced'])} |\n"
        f"| untrained (fresh initialisations), part A | none | false positives "
        f"{pct(v['false_untrained'])} |\n"
    )


START = "<!-- channels-validation:start"
END = "<!-- channels-validation:end -->"


def splice(text: str, block: str) -> str:
    """``text`` with the block between the channel-validation markers replaced by ``block``."""
    if START not in text or END not in text:
        raise ValueError(f"no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    marker, _ = rest.split("\n", 1)
    return f"{head}{START}{marker}\n{block}{END}{rest.split(END, 1)[1]}"


def mask_figure(path: str) -> None:
    """The part masks over the bundled faces' mean face (docs/channels-masks.png)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from convlens.data.loaders import load_dataset

    ds = load_dataset("faces", 0)
    face = list(ds.classes).index("face")
    xs = np.concatenate([ds.split(s)[0][ds.split(s)[1] == face] for s in ("train", "val", "test")])
    mean = xs[:, 0].mean(axis=0)
    masks = concepts.part_masks(mean)
    fig, axes = plt.subplots(1, 4, figsize=(8, 2.3), layout="constrained")
    axes[0].imshow(mean, cmap="gray")
    axes[0].set_title(f"mean of {len(xs)} faces", fontsize=9)
    for ax, (part, m) in zip(axes[1:], masks.items(), strict=True):
        ax.imshow(mean, cmap="gray")
        ax.contour(m, levels=[0.5], colors=["#E69F00"], linewidths=1.5)
        ax.set_title(part, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m convlens.analysis.orchestration.validate_concepts``: run (or render) the
    planted-parts validation and write docs/channels.md's table."""
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repetitions", type=int, default=10)
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--from", dest="source", help="render a recorded JSON instead of running")
    ap.add_argument("--markdown", help="rewrite the block between this file's markers")
    ap.add_argument("--figure", help="write the part-mask figure (PNG) here")
    a = ap.parse_args(argv)
    if a.source:
        v = json.loads(Path(a.source).read_text(encoding="utf-8"))
    else:
        v = validate_concepts(a.repetitions, log=print)
    if a.out:
        Path(a.out).write_text(json.dumps(v, indent=1) + "\n", encoding="utf-8")
    if a.markdown:
        md = Path(a.markdown)
        md.write_text(splice(md.read_text(encoding="utf-8"), markdown(v)), encoding="utf-8")
    if a.figure:
        mask_figure(a.figure)
    print(markdown(v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
