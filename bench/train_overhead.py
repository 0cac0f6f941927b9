"""P3: trainer with snapshots + probes vs the same trainer with both off (same model, data, epochs).

Also times a bare PyTorch loop (no convlens trainer at all) for the same model/data/batch/epochs,
twice (the second an A/A control for the machine's noise).
Run: python -m bench.train_overhead [--reps 21] [--data faces] [--cpu-time]

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

import numpy as np
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
    """``convlens train``'s work on an in-memory dataset: building the trainer (config checks, the
    probe images of every OOD set) and ``Trainer.train()`` (run directory, network, loop, writes).
    The temporary folder's creation and removal are not timed."""
    ds = ds if ds is not None else load_bundled(data, seed)
    # the defaults of `convlens train --data DATA` (every bundled OOD set, probes, snapshots)
    cfg = TrainConfig(data=data, epochs=epochs, seed=seed, snapshots=snapshots, probes=snapshots)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = clock()
        Trainer(cfg, ds, tmp + "/run", progress=False).train()
        return clock() - t0


def _median_ci(ratios: list[float]) -> list[float]:
    """95% bootstrap CI (scipy.stats.bootstrap, BCa) of the median of per-round ratios."""
    from scipy.stats import bootstrap

    if len(ratios) < 3 or len(set(ratios)) < 2:
        return [min(ratios), max(ratios)]
    res = bootstrap(
        (np.asarray(ratios),), np.median, n_resamples=4999, random_state=np.random.default_rng(0)
    )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def run(data: str, epochs: int, reps: int, cpu_time: bool = False) -> dict[str, Any]:
    """Interleaved rounds (order rotating) of: the trainer with snapshots+probes, the trainer
    without, the bare loop, and the bare loop again (an A/A control: how far two identical arms
    drift apart on this machine, the resolution of the other ratios). Overheads are medians of the
    per-round ratios to the bare loop, with a bootstrap CI."""
    clock = time.process_time if cpu_time else time.perf_counter
    ds = load_bundled(data, 0)  # loaded once: each timed call is training plus its own set-up
    trainer_loop_seconds(data, 2, True, ds=ds)  # warm-up (imports, decoded OOD photos)
    bare_loop(data, 2, ds=ds)
    res = compare(
        {
            "with": lambda: trainer_loop_seconds(data, epochs, True, ds=ds, clock=clock),
            "without": lambda: trainer_loop_seconds(data, epochs, False, ds=ds, clock=clock),
            "bare": lambda: bare_loop(data, epochs, ds=ds, clock=clock),
            "bare_again": lambda: bare_loop(data, epochs, ds=ds, clock=clock),
        },
        reps,
        reference="bare",
        warmup=0,
        returns_time=True,
    )
    t = res["times"]
    ratio = {k: [a / b for a, b in zip(t[k], t["bare"], strict=True)] for k in t}
    with_vs_without = statistics.median(a / b for a, b in zip(t["with"], t["without"], strict=True))
    return {
        "data": data,
        "epochs": epochs,
        "rounds": reps,
        "clock": "process CPU time" if cpu_time else "wall time",
        "with_snapshots_s": res["with"],
        "without_snapshots_s": res["without"],
        "bare_pytorch_s": res["bare"],
        "snapshot_overhead": with_vs_without - 1.0,
        "overhead_vs_bare": statistics.median(ratio["with"]) - 1.0,
        "overhead_vs_bare_ci95": [v - 1.0 for v in _median_ci(ratio["with"])],
        "overhead_vs_bare_range": [min(ratio["with"]) - 1.0, max(ratio["with"]) - 1.0],
        "without_vs_bare": statistics.median(ratio["without"]) - 1.0,
        "a_a_control": statistics.median(ratio["bare_again"]) - 1.0,
        "a_a_control_ci95": [v - 1.0 for v in _median_ci(ratio["bare_again"])],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--data", default="faces")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--cpu-time", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(a.data, a.epochs, a.reps, a.cpu_time), indent=2))


if __name__ == "__main__":
    main()
