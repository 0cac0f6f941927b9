"""The pilot that chose the natural demo's task and weight decay (docs/natural.md, "Chosen by
measurement"): one network per call, seed 0 by default, trained on patches of the training photos
of :mod:`convlens.data.natural` and tested on its held-out photos; prints the held-out accuracy and
the first layer's figures (slices above the random null, units above the spectrum-matched null,
slices with a Gabor fit R^2 >= 0.7, orientation bins of the oriented units).

Run: python -m bench.natural_pilot --task oriented-seams [--weight-decay 1] [--epochs 12] [--seed 0]

Tasks: ``rotation`` (RotNet: 0/90/180/270 of a 32 px patch), ``seams`` (halves swapped left-right,
top-bottom or both: 4 classes), ``any-seam`` (none, one or two crossing seams at any angle: 3
classes), ``oriented-seams`` (the demo's task, :func:`convlens.data.natural.seams`). The pilot's
``collage`` task (two crops meeting along a line) is left out: it learned noisy kernels.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def _patches(task: str, names: tuple[str, ...], n: int, rng: np.random.Generator) -> Any:
    from skimage.transform import rotate

    from convlens.data import natural

    p, q = natural.P, natural.Q
    xs, ys = [], []
    for name in names:
        crops = natural.crops(name, n, rng)
        if task == "oriented-seams":
            x, y = natural.seams(crops, rng)
        elif task == "any-seam":
            half, o = q // 2, (q - p) // 2
            out, labels = [], []
            for c in crops:
                k = int(rng.integers(0, 3))
                a = np.concatenate([c[:, half:], c[:, :half]], axis=1) if k >= 1 else c
                a = np.concatenate([a[half:], a[:half]], axis=0) if k == 2 else a
                r = rotate(a, float(rng.uniform(0, 180)), order=1, mode="reflect")
                out.append(r[o : o + p, o : o + p].transpose(2, 0, 1))
                labels.append(k)
            x, y = np.stack(out), np.array(labels)
        else:
            base = crops[:, :p, :p].transpose(0, 3, 1, 2)
            if task == "rotation":
                x = np.concatenate([np.rot90(base, k, axes=(2, 3)) for k in range(4)])
            else:  # seams
                m = p // 2
                lr = np.concatenate([base[..., m:], base[..., :m]], axis=3)
                tb = np.concatenate([base[..., m:, :], base[..., :m, :]], axis=2)
                both = np.concatenate([lr[..., m:, :], lr[..., :m, :]], axis=2)
                x = np.concatenate([base, lr, tb, both])
            y = np.repeat(np.arange(4), len(base))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def run(task: str, weight_decay: float, epochs: int, seed: int, per_photo: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from convlens.analysis import analyze_weights
    from convlens.analysis.evidence.census import orientation_bins
    from convlens.data import natural
    from convlens.models.cnn import SmallCNN, make_spec

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    train = natural.SPLIT["train"] + natural.SPLIT["val"]
    xtr, ytr = _patches(task, train, per_photo, rng)
    xte, yte = _patches(task, natural.SPLIT["test"], per_photo // 2, rng)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = ((xtr - mean) / std).astype(np.float32), ((xte - mean) / std).astype(np.float32)
    torch.manual_seed(seed)
    n_classes = int(ytr.max()) + 1
    spec = make_spec("natural-cnn", 3, (natural.P, natural.P), n_classes)
    net = SmallCNN(spec)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean())
    w = net.conv1.weight.detach().numpy().astype(np.float64)
    layer = analyze_weights({"conv1.weight": w})[0]
    m = layer.matching
    assert m is not None and m.units is not None
    r2 = [k.gabor_fit.r2 for k in m.kernels or [] if k.gabor_fit is not None]
    u = m.units
    _, bins = orientation_bins(u.orientation, u.selectivity, u.unit_categories)
    return {
        "task": task, "weight_decay": weight_decay, "epochs": epochs, "seed": seed,
        "test_accuracy": round(acc, 3), "chance": round(1 / n_classes, 3),
        "slices_above_random_null": round(float(m.fraction_above_null95 or 0), 3),
        "units_above_spectrum_null": u.above_spectrum_null95, "units": u.n_live,
        "slices_gabor_r2_0.7": f"{sum(v >= 0.7 for v in r2)} of {len(r2)}",
        "orientation_bins": bins, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="oriented-seams",
                   choices=["rotation", "seams", "any-seam", "oriented-seams"])  # fmt: skip
    p.add_argument("--weight-decay", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-photo", type=int, default=200)
    a = p.parse_args()
    print(run(a.task, a.weight_decay, a.epochs, a.seed, a.per_photo))


if __name__ == "__main__":
    main()
