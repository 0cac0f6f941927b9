"""Timing helpers: medians of >= 5 repetitions after a warm-up, interleaved side-by-side comparisons,
machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def timeit(fn: Callable[[], Any], reps: int = 5, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return summarize(times)


def compare(
    fns: dict[str, Callable[[], Any]],
    reps: int = 5,
    *,
    reference: str | None = None,
    warmup: int = 1,
    settle: bool = False,
    returns_time: bool = False,
) -> dict[str, Any]:
    """Time every function ``reps`` times in interleaved rounds, measured side by side.

    Each round runs every function once, in an order that rotates from round to round, so a slow
    drift of a shared machine (other tenants, clock changes) hits all of them alike. With ``settle``
    each timed call follows an untimed call of the same function (so one library's idle worker
    threads, still spinning from the previous call, do not land on the next). With ``reference``,
    the ratio ``time / reference time`` is taken within each round and summarised too: that is the
    figure to compare with a target. ``out["times"]`` keeps every round's times. With
    ``returns_time`` each function returns its own measured time (e.g. CPU seconds of its core
    part), which is used instead of the wall time of the whole call.
    """
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            if settle:
                fns[k]()
            t0 = time.perf_counter()
            got = fns[k]()
            times[k].append(float(got) if returns_time else time.perf_counter() - t0)
    out: dict[str, Any] = {k: summarize(v) for k, v in times.items()}
    out["times"] = times  # per round, for ratios between any two candidates
    if reference is not None:
        ref = times[reference]
        out["ratios"] = {
            k: summarize([a / b for a, b in zip(times[k], ref, strict=True)])
            for k in names
            if k != reference
        }
    return out


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> dict[str, Any]:
    import numpy as np
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        info = threadpool_info()
        blas = ", ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in info
        )
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "blas": blas,
    }
