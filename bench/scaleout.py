"""P8 worker: the sharded statistics pass over a streamed image folder, timed on rank 0.

python -m bench.scaleout --make DIR --n 20000      -> writes N 25x25 grey PNGs in 2 class folders
python -m bench.scaleout --data DIR                -> one process (world size 1)
torchrun --standalone --nproc_per_node 2 -m bench.scaleout --data DIR   -> 2 ranks

Each rank runs with 1 torch thread and no DataLoader workers (it decodes its own shard), so
"2 ranks x 1 thread" is compared with "1 rank x 1 thread". Rank 0 prints JSON: images, world size,
seconds of the pass (from a barrier to every rank's local statistics being done: the slowest rank),
seconds of the merge (gather of every rank's part + Chan merge + placing per-image scores), and
the CPU seconds of the pass summed over ranks (less sensitive to other load on the machine than
wall time: 1-rank CPU / 2-rank CPU is the parallel efficiency, the speedup an idle 2-core machine
would give is about twice that).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def make(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:25, 0:25]
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(0.1, 0.5)
        pattern = 127 + 100 * np.sin(f * (xx * np.cos(i) + yy * np.sin(i)))
        noise = rng.normal(0, 20, (25, 25))
        Image.fromarray(np.clip(pattern + noise, 0, 255).astype(np.uint8)).save(d / f"{i:06d}.png")


def measure(data: str) -> dict[str, float | int] | None:
    import torch

    torch.set_num_threads(1)
    os.environ["CONVLENS_DATA_WORKERS"] = "0"
    from convlens.analysis.model.forward import collect
    from convlens.analysis.model.shard import _batches, _payload, merge_parts, shard_indices
    from convlens.models import build_model, make_spec
    from convlens.parallel import dist
    from convlens.parallel.stream import open_folder

    ctx = dist.init()
    ds = open_folder(data, 0)
    torch.manual_seed(0)
    model = build_model(make_spec("faces-cnn", 1, ds.stream.size, 2)).eval()
    n = len(ds.stream)
    idx = shard_indices(n, ctx)
    dist.checked(lambda: None, "start")  # barrier: everyone starts together
    t0, c0 = time.perf_counter(), time.process_time()
    local = collect(model, _batches(ds.stream, idx, 256, None), "bench")
    payload = _payload(local, idx) if ctx.distributed else None
    cpu = time.process_time() - c0
    cpus = dist.checked(lambda: cpu, "pass done")  # the slowest rank ends the pass
    t1 = time.perf_counter()
    if ctx.distributed:
        parts = dist.checked(lambda: payload, "parts", to_main=True)
        if ctx.is_main:
            merged = merge_parts("bench", n, [p for p in parts if isinstance(p, dict)])
            assert merged.n == n
    t2 = time.perf_counter()
    dist.shutdown()
    if not ctx.is_main:
        return None
    return {
        "images": n,
        "world_size": ctx.world_size,
        "pass_s": t1 - t0,
        "merge_s": t2 - t1,
        "pass_cpu_s": float(sum(cpus)),  # CPU seconds of the pass, all ranks together
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--make", default=None)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--data", default=None)
    a = p.parse_args()
    if a.make:
        make(Path(a.make), a.n)
        return
    out = measure(a.data)
    if out is not None:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
