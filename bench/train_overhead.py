"""P3: trainer with snapshots + probes vs the same trainer with both off (same model, data, epochs).

Also times a bare PyTorch loop (no convlens trainer at all) for the same model/data/batch/epochs.
Run: python -m bench.train_overhead [--reps 5] [--data faces]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import nn

from bench.common import compare
from convlens.data.datasets import load_bundled
from convlens.models import DEFAULT_MODEL, build_model, make_spec
from convlens.train import TrainConfig, Trainer


def bare_loop(
    data: str, epochs: int, seed: int = 0, batch: int = 32, lr: float = 3e-3, ds: Any = None
) -> float:
    ds = ds if ds is not None else load_bundled(data, seed)
    c, h, w = ds.shape
    torch.manual_seed(seed)
    model = build_model(make_spec(DEFAULT_MODEL[data], c, (h, w), len(ds.classes)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = (torch.from_numpy(a) for a in ds.split("train"))
    xv, yv = (torch.from_numpy(a) for a in ds.split("val"))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            model.eval()
            (model(xv).argmax(1) == yv).float().mean()
            model.train()
    return time.perf_counter() - t0


def trainer_loop_seconds(
    data: str, epochs: int, snapshots: bool, seed: int = 0, ds: Any = None
) -> float:
    ds = ds if ds is not None else load_bundled(data, seed)
    # the defaults of `convlens train --data DATA` (every bundled OOD set, probes, snapshots)
    cfg = TrainConfig(data=data, epochs=epochs, seed=seed, snapshots=snapshots, probes=snapshots)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, ds, tmp + "/run", progress=False)
        t0 = time.perf_counter()
        tr.train()
        return time.perf_counter() - t0


def run(data: str, epochs: int, reps: int) -> dict[str, Any]:
    """Interleaved rounds (order rotating) of: trainer with snapshots+probes, trainer without, and
    the bare loop; the overheads are medians of the per-round ratios."""
    ds = load_bundled(data, 0)  # loaded once: each timed call is training plus its own set-up
    trainer_loop_seconds(data, 2, True, ds=ds)  # warm-up
    bare_loop(data, 2, ds=ds)
    res = compare(
        {
            "with": lambda: trainer_loop_seconds(data, epochs, True, ds=ds),
            "without": lambda: trainer_loop_seconds(data, epochs, False, ds=ds),
            "bare": lambda: bare_loop(data, epochs, ds=ds),
        },
        reps,
        reference="bare",
        warmup=0,
    )
    # whole calls are timed: for the trainer that includes creating the run directory and waiting
    # for its last writes; for the bare loop, building the model and tensors
    t = res["times"]
    with_vs_without = statistics.median(a / b for a, b in zip(t["with"], t["without"], strict=True))
    return {
        "data": data,
        "epochs": epochs,
        "with_snapshots_s": res["with"],
        "without_snapshots_s": res["without"],
        "bare_pytorch_s": res["bare"],
        "snapshot_overhead": with_vs_without - 1.0,
        "overhead_vs_bare": res["ratios"]["with"]["median"] - 1.0,
        "overhead_vs_bare_range": [
            res["ratios"]["with"]["min"] - 1.0,
            res["ratios"]["with"]["max"] - 1.0,
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data", default="faces")
    p.add_argument("--epochs", type=int, default=30)
    a = p.parse_args()
    print(json.dumps(run(a.data, a.epochs, a.reps), indent=2))


if __name__ == "__main__":
    main()
