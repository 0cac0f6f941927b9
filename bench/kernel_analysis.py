"""P5: kernel analysis of every conv weight of a ResNet-50-shaped state dict (random, generated here).

Run: python -m bench.kernel_analysis [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from convlens.analysis import analyze_weights


def resnet50_conv_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    in_c = 64
    for stage, (blocks, width) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        out_c = width * 4
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, in_c, 1, 1)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes[f"{p}.conv3.weight"] = (out_c, width, 1, 1)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (out_c, in_c, 1, 1)
            in_c = out_c
    return shapes


def make_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in resnet50_conv_shapes().items()}


def run(reps: int) -> dict[str, Any]:
    sd = make_state_dict()
    n_weights = sum(v.size for v in sd.values())
    analyze_weights(sd)  # warm-up (builds banks and nulls caches)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = analyze_weights(sd)
        times.append(time.perf_counter() - t0)
    return {
        "id": "P5",
        "conv_layers": len(sd),
        "conv_weights": int(n_weights),
        "kernels_matched": int(
            sum(r.matching.n_kernels for r in out if r.matching and not r.matching.skipped)
        ),
        "seconds": {
            "min": min(times),
            "median": statistics.median(times),
            "max": max(times),
            "n": reps,
        },
        "target_s": 2.0,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    print(json.dumps(run(p.parse_args().reps), indent=2))


if __name__ == "__main__":
    main()
