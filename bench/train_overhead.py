"""P3: trainer with snapshots + probes vs the same trainer with both off (same model, data, epochs).

Also times a bare PyTorch loop (no convlens trainer at all) for the same model/data/batch/epochs.
Run: python -m bench.train_overhead [--reps 5] [--data faces] [--cpu-time]

``--cpu-time`` times with ``time.process_time`` (CPU seconds of the whole process, the writer
thread included) instead of wall time: on a machine shared with other jobs, wall time mostly
measures the neighbours; CPU time measures the work (and counts background writes that an idle
core would otherwise hide, so it is the stricter figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.common import compare
from convlens.data.datasets import load_bundled
from convlens.models import DEFAULT_MODEL, build_model, make_spec
from convlens.train import TrainConfig, Trainer


def bare_loop(
    data: str,
    epochs: int,
    seed: int = 0,
    batch: int = 32,
    lr: float = 3e-3,
    ds: Any = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    ds = ds if ds is not None else load_bundled(data, seed)
    c, h, w = ds.shape
    # timed from here, as Trainer.train() is: building the network and its optimizer is part of
    # training in both
    t0 = clock()
    torch.manual_seed(seed)
    model = build_model(make_spec(DEFAULT_MODEL[data], c, (h, w), len(ds.classes)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = (torch.from_numpy(a) for a in ds.split("train"))
    xv, yv = (torch.from_numpy(a) for a in ds.split("val"))
    gen = torch.Generator().manual_seed(seed)
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
    return clock() - t0


def trainer_loop_seconds(
    data: str,
    epochs: int,
    snapshots: bool,
    seed: int = 0,
    ds: Any = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    ds = ds if ds is not None else load_bundled(data, seed)
    # the defaults of `convlens train --data DATA` (every bundled OOD set, probes, snapshots)
    cfg = TrainConfig(data=data, epochs=epochs, seed=seed, snapshots=snapshots, probes=snapshots)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, ds, tmp + "/run", progress=False)
        t0 = clock()
        tr.train()
        return clock() - t0


def run(data: str, epochs: int, reps: int, cpu_time: bool = False) -> dict[str, Any]:
    """Interleaved rounds (order rotating) of: trainer with snapshots+probes, trainer without, and
    the bare loop; the overheads are medians of the per-round ratios."""
    clock = time.process_time if cpu_time else time.perf_counter
    ds = load_bundled(data, 0)  # loaded once: each timed call is training plus its own set-up
    trainer_loop_seconds(data, 2, True, ds=ds)  # warm-up
    bare_loop(data, 2, ds=ds)
    res = compare(
        {
            "with": lambda: trainer_loop_seconds(data, epochs, True, ds=ds, clock=clock),
            "without": lambda: trainer_loop_seconds(data, epochs, False, ds=ds, clock=clock),
            "bare": lambda: bare_loop(data, epochs, ds=ds, clock=clock),
        },
        reps,
        reference="bare",
        warmup=0,
        returns_time=cpu_time,
    )
    # wall time: whole calls are timed: for the trainer that includes building the probe images of
    # the OOD sets, creating the run directory and waiting for its last writes; for the bare loop,
    # building the model and tensors. CPU time: Trainer.train() (run directory, loop, final writes)
    # vs the bare loop itself
    t = res["times"]
    with_vs_without = statistics.median(a / b for a, b in zip(t["with"], t["without"], strict=True))
    return {
        "data": data,
        "epochs": epochs,
        "clock": "process CPU time" if cpu_time else "wall time",
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
    p.add_argument("--cpu-time", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(a.data, a.epochs, a.reps, a.cpu_time), indent=2))


if __name__ == "__main__":
    main()
