"""P4 worker: one process per measurement so peak memory (ru_maxrss) belongs to that run alone.

python -m bench.stream_stats --n 50000 --mode stream|plain|exemplars  -> prints JSON {seconds, peak_rss_kib}
(exemplars: the channel stage's streaming top-k pass, issue 24)
python -m bench.stream_stats --n 50000 --mode both          -> also the per-round throughput ratio
(plain and streaming interleaved in one process, the order alternating each round)
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from convlens.analysis.model import forward
from convlens.models import build_model, make_spec


def batches(n: int, batch: int = 256):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    for i in range(0, n, batch):
        yield torch.randn(min(batch, n - i), 1, 25, 25, generator=g)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--mode", choices=["plain", "stream", "exemplars", "both"], required=True)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    reset_peak_rss()
    torch.manual_seed(0)
    model = build_model(make_spec("faces-cnn", 1, (25, 25), 2)).eval()

    def plain() -> None:
        with torch.no_grad():
            for xb in batches(a.n):
                model(xb)

    def stream() -> None:
        forward.collect(model, batches(a.n), "bench")

    def exemplar() -> None:
        from convlens.analysis.measure.exemplars import exemplar_pass

        exemplar_pass(model, [("bench", batches(a.n))])

    if a.mode == "both":
        from bench.common import compare

        res = compare({"plain": plain, "stream": stream}, a.reps, reference="plain")
        # throughput ratio = plain time / streaming time, per round
        ratios = res["ratios"]["stream"]
        print(
            json.dumps(
                {
                    "plain_seconds": res["plain"]["median"],
                    "stream_seconds": res["stream"]["median"],
                    "throughput_ratio": 1.0 / ratios["median"],
                    "throughput_ratio_range": [1.0 / ratios["max"], 1.0 / ratios["min"]],
                }
            )
        )
        return
    fn = {"plain": plain, "stream": stream, "exemplars": exemplar}[a.mode]
    fn()  # warm-up
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"seconds": times[len(times) // 2], "peak_rss_kib": peak_rss_kib()}))


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) from the current RSS: a forked child inherits its parent's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_kib() -> int:
    """This process's peak resident set since :func:`reset_peak_rss` (VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
