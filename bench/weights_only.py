"""P10: `convlens analyze FILE` on weights alone, cold, as a user runs it (a fresh process: imports,
loading, matching, writing the JSON), on stand-ins with the conv shapes of real models (random
weights, generated here), and on real files given with ``--real``.

The stand-ins: CRAFT (VGG16 + U-net head, 23.1M conv weights) and a ResNet-50 (23.5M, an upper bound
for open_nsfw's thinner ResNet). Peak RSS of the same run is recorded beside the time.

Run: python -m bench.weights_only [--reps 3] [--real FILE ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.kernel_analysis import resnet50_conv_shapes


def craft_conv_shapes() -> dict[str, tuple[int, ...]]:
    """The conv weights of CRAFT (Baek et al. 2019; VGG16-BN backbone, fc6/fc7, four up-conv
    blocks, the region/affinity head), named as in its state dict."""
    vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
    shapes: dict[str, tuple[int, ...]] = {
        f"basenet.slice.{i}.weight": (o, c, 3, 3) for i, (c, o) in enumerate(vgg)
    }
    shapes["basenet.slice5.1.weight"] = (1024, 512, 3, 3)  # fc6, dilation 6
    shapes["basenet.slice5.2.weight"] = (1024, 1024, 1, 1)  # fc7
    for i, (c, mid, o) in enumerate([(1536, 512, 256), (768, 256, 128), (384, 128, 64),
                                      (192, 64, 32)], start=1):  # fmt: skip
        shapes[f"upconv{i}.conv.0.weight"] = (mid, c, 1, 1)
        shapes[f"upconv{i}.conv.3.weight"] = (o, mid, 3, 3)
    for i, (c, o, k) in enumerate([(32, 32, 3), (32, 32, 3), (32, 16, 3), (16, 16, 1), (16, 2, 1)]):
        shapes[f"conv_cls.{2 * i}.weight"] = (o, c, k, k)
    return shapes


def _write(shapes: dict[str, tuple[int, ...]], path: Path) -> int:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    save_file(tensors, str(path))
    return sum(v.size for v in tensors.values())


_CHILD = """
import re, runpy, sys
sys.argv = ["convlens", "analyze", sys.argv[1], "--out", sys.argv[2]]
try:
    runpy.run_module("convlens.cli", run_name="__main__")
finally:  # the child's own high-water mark (ru_maxrss would carry the parent's, copied at exec)
    status = open("/proc/self/status").read()
    print("VmHWM", re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1), file=sys.stderr)
"""


def _time_cli(path: Path, out: Path, reps: int) -> tuple[list[float], float]:
    """Wall seconds of each cold run and the largest peak RSS (MiB) among these runs (each
    child's own VmHWM)."""
    times, peak = [], 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(out)], capture_output=True, text=True
        )
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"convlens analyze {path} failed: {done.stderr[-500:]}")
        hwm = [ln for ln in done.stderr.splitlines() if ln.startswith("VmHWM ")][-1]
        peak = max(peak, int(hwm.split()[1]) / 1024)
    return times, peak


def run(reps: int, real: list[str] | None = None, smoke: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Path, int | None]] = []
        stand_ins = {
            "CRAFT-shaped": craft_conv_shapes(),
            "ResNet-50-shaped": resnet50_conv_shapes(),
        }
        if smoke:
            stand_ins = {"tiny": {"conv1.weight": (8, 3, 5, 5), "conv2.weight": (4, 8, 3, 3)}}
        for name, shapes in stand_ins.items():
            path = Path(tmp) / f"{name}.safetensors"
            cases.append((name, path, _write(shapes, path)))
        cases += [(Path(r).name, Path(r), None) for r in real or []]
        for name, path, n in cases:
            times, peak = _time_cli(path, Path(tmp) / "out.json", reps)
            rows.append({
                "id": "P10",
                "case": name,
                "conv_weights": n,
                "seconds": {"min": min(times), "median": statistics.median(times),
                            "max": max(times), "n": reps},
                "peak_rss_mib_children": round(peak),
                "target_s": 2.0,
            })  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--real", nargs="*", default=[], help="real model files to time as well")
    args = p.parse_args()
    print(json.dumps(run(args.reps, args.real), indent=2))


if __name__ == "__main__":
    main()
