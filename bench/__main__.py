"""`make bench`: every benchmark of the suite, as ratios against references measured in the same run.

Writes bench/results.json and bench/results.md. `python -m bench --smoke` runs tiny sizes (tested).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import compare, machine, timeit

HERE = Path(__file__).resolve().parent


def p1(smoke: bool, reps: int) -> list[dict[str, Any]]:
    import scipy.ndimage as ndi
    import scipy.signal as sig
    import torch

    from convlens.ops import correlate2d

    try:
        import cv2
    except ImportError:
        cv2 = None
    rows = []
    sizes = [64] if smoke else [256, 1024]
    for n in sizes:
        for k in (3, 7):
            rng = np.random.default_rng(0)
            img = rng.standard_normal((n, n)).astype(np.float32)
            ker = rng.standard_normal((k, k)).astype(np.float32)
            timg = torch.from_numpy(img)[None, None]
            tker = torch.from_numpy(ker)[None, None]
            fns = {
                "convlens": partial(correlate2d, img, ker, padding="same"),
                "scipy.signal.correlate2d": partial(sig.correlate2d, img, ker, mode="same"),
                "scipy.ndimage.correlate": partial(ndi.correlate, img, ker, mode="constant"),
                "torch.conv2d": partial(torch.nn.functional.conv2d, timg, tker, padding=k // 2),
            }
            if cv2 is not None:
                fns["cv2.filter2D"] = partial(
                    cv2.filter2D, img, -1, ker, borderType=cv2.BORDER_CONSTANT
                )
            res = compare(fns, reps, reference="convlens", settle=True)
            row: dict[str, Any] = {"id": "P1", "case": f"{n}x{n}, {k}x{k}, float32"}
            row.update({name: res[name] for name in fns})
            # per-round ratios: reference time / ours = how many times faster we are
            row["speedup_vs_scipy_correlate2d"] = res["ratios"]["scipy.signal.correlate2d"][
                "median"
            ]
            row["speedup_vs_scipy_correlate2d_range"] = [
                res["ratios"]["scipy.signal.correlate2d"]["min"],
                res["ratios"]["scipy.signal.correlate2d"]["max"],
            ]
            if cv2 is not None:
                row["slowdown_vs_cv2"] = 1.0 / res["ratios"]["cv2.filter2D"]["median"]
                row["slowdown_vs_cv2_range"] = [
                    1.0 / res["ratios"]["cv2.filter2D"]["max"],
                    1.0 / res["ratios"]["cv2.filter2D"]["min"],
                ]
            row["targets"] = (
                ">= 5x faster than scipy.signal.correlate2d; within 10x of cv2.filter2D"
            )
            rows.append(row)
    return rows


def p2(smoke: bool, reps: int) -> list[dict[str, Any]]:
    import torch

    from convlens.ops import correlate

    cases = (
        [((8, 4, 16, 16), (8, 4, 3, 3), 1, 1)]
        if smoke
        else [
            ((64, 16, 32, 32), (32, 16, 3, 3), 1, 1),
            ((64, 3, 64, 64), (32, 3, 7, 7), 2, 3),
        ]
    )
    rows = []
    for xs, ws, stride, pad in cases:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        res = compare(
            {
                "convlens": partial(correlate, x, w, stride=stride, padding=pad),
                "torch.conv2d": partial(
                    torch.nn.functional.conv2d, tx, tw, stride=stride, padding=pad
                ),
            },
            reps,
            reference="torch.conv2d",
            settle=True,
        )
        rows.append(
            {
                "id": "P2",
                "case": f"x{xs} w{ws} stride {stride} pad {pad}, float32",
                "convlens": res["convlens"],
                "torch.conv2d": res["torch.conv2d"],
                "ratio_vs_torch": res["ratios"]["convlens"]["median"],
                "ratio_vs_torch_range": [
                    res["ratios"]["convlens"]["min"],
                    res["ratios"]["convlens"]["max"],
                ],
                "target": "<= 1.3x torch's time",
            }
        )
    return rows


def p3(smoke: bool, reps: int) -> list[dict[str, Any]]:
    from bench.train_overhead import run
    from convlens.train import TrainConfig

    if smoke:
        return [{"id": "P3", **run("faces", 2, 1)}]
    epochs = TrainConfig().epochs  # the defaults of `convlens train`
    return [{"id": "P3", **run(data, epochs, reps)} for data in ("faces", "digits")]


def p4(smoke: bool, reps: int) -> list[dict[str, Any]]:
    def measure(n: int, mode: str) -> dict[str, Any]:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.stream_stats",
                "--n",
                str(n),
                "--mode",
                mode,
                "--reps",
                str(1 if smoke else max(3, reps)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(r.stdout)

    sizes = [500, 2000] if smoke else [5000, 50000]
    rows = []
    for n in sizes:
        # peak memory: one process per mode; throughput: both modes interleaved in one process
        plain, stream, both = measure(n, "plain"), measure(n, "stream"), measure(n, "both")
        exemplar = measure(n, "exemplars")
        rows.append(
            {
                "id": "P4",
                "case": f"{n} inputs 1x25x25, faces-cnn, batch 256",
                "plain_forward": plain,
                "streaming_stats": stream,
                "exemplar_pass": exemplar,
                "interleaved": both,
                "throughput_ratio": both["throughput_ratio"],
                "throughput_ratio_range": both["throughput_ratio_range"],
                "target": ">= 0.9x throughput; peak memory flat from 5k to 50k (both passes)",
            }
        )
    rows[-1]["peak_rss_ratio_largest_vs_smallest"] = (
        rows[-1]["streaming_stats"]["peak_rss_kib"] / rows[0]["streaming_stats"]["peak_rss_kib"]
    )
    rows[-1]["exemplar_peak_rss_ratio_largest_vs_smallest"] = (
        rows[-1]["exemplar_pass"]["peak_rss_kib"] / rows[0]["exemplar_pass"]["peak_rss_kib"]
    )
    return rows


def p5(smoke: bool, reps: int) -> list[dict[str, Any]]:
    from bench.kernel_analysis import run

    if smoke:
        from convlens.analysis import analyze_weights

        w = {"c.weight": np.random.default_rng(0).standard_normal((16, 3, 5, 5)).astype(np.float32)}
        return [
            {
                "id": "P5",
                "case": "smoke",
                "seconds": timeit(lambda: analyze_weights(w, n_null=200), 1),
            }
        ]
    return [run(reps)]


def p10(smoke: bool, reps: int) -> list[dict[str, Any]]:
    from bench.weights_only import run

    real = [f for f in os.environ.get("CONVLENS_BENCH_REAL", "").split(os.pathsep) if f]
    return run(1 if smoke else max(3, reps // 2), real, smoke=smoke)


def p6(smoke: bool, reps: int) -> list[dict[str, Any]]:
    rows = []
    n = 1 if smoke else max(2, reps // 2)
    times = []
    for _ in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            args = [sys.executable, "-m", "convlens.cli", "demo", "--out", tmp + "/demo", "-q"]
            if smoke:
                args += ["--epochs", "2", "--seeds", "1", "--null-size", "200"]
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    rows.append(
        {
            "id": "P6",
            "case": "convlens demo end-to-end (subprocess)" + (" [smoke]" if smoke else ""),
            "seconds": {
                "min": min(times),
                "median": float(np.median(times)),
                "max": max(times),
                "n": n,
            },
            "target_s": 30,
        }
    )
    return rows


def p7(smoke: bool, reps: int) -> list[dict[str, Any]]:
    def run(args: list[str]) -> None:
        subprocess.run([sys.executable, *args], check=True, capture_output=True)

    r = 2 if smoke else reps
    res = compare(
        {
            "help": lambda: run(["-m", "convlens.cli", "--help"]),
            "torch": lambda: run(["-c", "import torch"]),
        },
        r,
    )
    helpt, torcht = res["help"], res["torch"]
    return [
        {
            "id": "P7",
            "case": "convlens --help process",
            "convlens_help": helpt,
            "python_import_torch": torcht,
            "target_s": 0.3,
        }
    ]


def p8(smoke: bool, reps: int, n: int | None = None) -> list[dict[str, Any]]:
    """Statistics over a generated image folder: 2 ranks x 1 thread (torchrun, gloo) vs 1 rank x
    1 thread, interleaved per round; the merge's share of the pass (see bench/scaleout.py)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    n = n or (200 if smoke else 20000)
    r = 1 if smoke else reps
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def run(cmd: list[str]) -> dict[str, Any]:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    one, two = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_make = [sys.executable, "-m", "bench.scaleout", "--make", tmp, "--n", str(n)]
        subprocess.run(run_make, check=True, env=env)
        mod = ["-m", "bench.scaleout", "--data", tmp]
        for i in range(r):  # alternate which goes first
            jobs = [
                ("one", [sys.executable, *mod]),
                (
                    "two",
                    [str(torchrun), "--standalone", "--nproc_per_node=2", *mod],
                ),
            ]
            for name, cmd in jobs if i % 2 == 0 else jobs[::-1]:
                (one if name == "one" else two).append(run(cmd))
    speed = [
        (a["pass_s"] + a["merge_s"]) / (b["pass_s"] + b["merge_s"])
        for a, b in zip(one, two, strict=True)
    ]
    merge = [b["merge_s"] / b["pass_s"] for b in two]
    eff = [a["pass_cpu_s"] / b["pass_cpu_s"] for a, b in zip(one, two, strict=True)]
    return [
        {
            "id": "P8",
            "case": f"{n} 25x25 PNGs, faces-cnn, stream:DIR",
            "one_rank_s": [a["pass_s"] + a["merge_s"] for a in one],
            "two_ranks_s": [b["pass_s"] + b["merge_s"] for b in two],
            "speedup": float(np.median(speed)),
            "speedup_range": [min(speed), max(speed)],
            "merge_share": float(np.median(merge)),
            "merge_share_range": [min(merge), max(merge)],
            "cpu_efficiency": float(np.median(eff)),
            "cpu_efficiency_range": [min(eff), max(eff)],
            "load_average": list(os.getloadavg()),
            "target": ">= 1.7x with 2 ranks; merge <= 2% of the pass",
        }
    ]


def exact(smoke: bool, reps: int) -> list[dict[str, Any]]:
    from convlens.ops import correlate2d

    n = 16 if smoke else 64
    rng = np.random.default_rng(0)
    ints = rng.integers(-100, 100, size=(n, n))
    ker = rng.integers(-5, 5, size=(3, 3))
    fr = np.array(
        [[Fraction(int(v), 7) for v in row] for row in ints[: n // 2, : n // 2]], dtype=object
    )
    return [
        {
            "id": "exact",
            "case": f"int64 {n}x{n} 3x3",
            "convlens": timeit(lambda: correlate2d(ints, ker), reps),
        },
        {
            "id": "exact",
            "case": f"Fraction {n // 2}x{n // 2} 3x3",
            "convlens": timeit(lambda: correlate2d(fr, ker), reps),
        },
    ]


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| id | case | measured (median) | reference(s) (median) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        rid, case = r["id"], r.get("case", "")
        if rid == "P1":
            refs = ", ".join(
                f"{k} {r[k]['median'] * 1e3:.2f} ms"
                for k in (
                    "scipy.signal.correlate2d",
                    "scipy.ndimage.correlate",
                    "torch.conv2d",
                    "cv2.filter2D",
                )
                if k in r
            )
            lo, hi = r["speedup_vs_scipy_correlate2d_range"]
            ratio = f"{r['speedup_vs_scipy_correlate2d']:.1f}x ({lo:.1f}-{hi:.1f}) faster than correlate2d"
            if "slowdown_vs_cv2" in r:
                lo, hi = r["slowdown_vs_cv2_range"]
                ratio += f"; {r['slowdown_vs_cv2']:.1f}x ({lo:.1f}-{hi:.1f}) cv2's time"
            lines.append(
                f"| P1 | {case} | {r['convlens']['median'] * 1e3:.2f} ms | {refs} | {ratio} | {r['targets']} |"
            )
        elif rid == "P2":
            lo, hi = r["ratio_vs_torch_range"]
            lines.append(
                f"| P2 | {case} | {r['convlens']['median'] * 1e3:.2f} ms | torch {r['torch.conv2d']['median'] * 1e3:.2f} ms | "
                f"{r['ratio_vs_torch']:.2f}x ({lo:.2f}-{hi:.2f}) torch | {r['target']} |"
            )
        elif rid == "P3":
            lo, hi = r["overhead_vs_bare_range"]
            lines.append(
                f"| P3 | {r['data']}, {r['epochs']} epochs | with snapshots+probes {r['with_snapshots_s']['median']:.3f} s | "
                f"bare loop {r['bare_pytorch_s']['median']:.3f} s; trainer without snapshots {r['without_snapshots_s']['median']:.3f} s | "
                f"overhead vs bare {r['overhead_vs_bare']:+.0%} ({lo:+.0%} to {hi:+.0%}); of snapshots alone {r['snapshot_overhead']:+.0%} | <= 5% |"
            )
        elif rid == "P4":
            lo, hi = r["throughput_ratio_range"]
            lines.append(
                f"| P4 | {case} | streaming {r['interleaved']['stream_seconds']:.3f} s, peak RSS "
                f"{r['streaming_stats']['peak_rss_kib'] / 1024:.0f} MiB; exemplar pass "
                f"{r['exemplar_pass']['seconds']:.3f} s, peak RSS {r['exemplar_pass']['peak_rss_kib'] / 1024:.0f} MiB | plain {r['interleaved']['plain_seconds']:.3f} s, "
                f"peak RSS {r['plain_forward']['peak_rss_kib'] / 1024:.0f} MiB | "
                f"{r['throughput_ratio']:.2f}x ({lo:.2f}-{hi:.2f}) throughput | {r['target']} |"
            )
        elif rid == "P5":
            lines.append(
                f"| P5 | {r.get('conv_weights', '')} conv weights ({r.get('kernels_matched', '')} kernels matched) | "
                f"{r['seconds']['median']:.2f} s | - | - | <= 2 s |"
            )
        elif rid == "P6":
            lines.append(f"| P6 | {case} | {r['seconds']['median']:.1f} s | - | - | <= 30 s |")
        elif rid == "P10":
            n = f", {r['conv_weights'] / 1e6:.1f}M conv weights" if r["conv_weights"] else ""
            lines.append(
                f"| P10 | `convlens analyze` on the weights alone, cold: {case}{n} | "
                f"{r['seconds']['median']:.2f} s ({r['seconds']['min']:.2f}-{r['seconds']['max']:.2f}), "
                f"peak RSS {r['peak_rss_mib_children']} MiB | - | - | <= 2 s |"
            )
        elif rid == "P7":
            lines.append(
                f"| P7 | {case} | {r['convlens_help']['median']:.3f} s | python -c 'import torch' "
                f"{r['python_import_torch']['median']:.3f} s | - | <= 0.3 s |"
            )
        elif rid == "P8":
            lo, hi = r["speedup_range"]
            mlo, mhi = r["merge_share_range"]
            lines.append(
                f"| P8 | {case} | 2 ranks x 1 thread {np.median(r['two_ranks_s']):.2f} s | "
                f"1 rank x 1 thread {np.median(r['one_rank_s']):.2f} s | {r['speedup']:.2f}x "
                f"({lo:.2f}-{hi:.2f}); merge {r['merge_share']:.2%} ({mlo:.2%}-{mhi:.2%}) of the "
                f"pass; CPU-time efficiency {r['cpu_efficiency']:.2f} (load avg "
                f"{r['load_average'][0]:.1f}) | {r['target']} |"
            )
        elif rid == "exact":
            lines.append(
                f"| exact | {case} | {r['convlens']['median'] * 1e3:.2f} ms | - | - | (no target) |"
            )
    m = results["machine"]
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
        f"torch {m['torch']} ({m['torch_threads']} threads); BLAS: {m['blas']}."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes (used by the test suite)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", default=None, help="comma-separated ids, e.g. P1,P2")
    p.add_argument("--out", default=str(HERE), help="folder for results.json / results.md")
    a = p.parse_args()
    benches = {
        "P1": p1,
        "P2": p2,
        "P3": p3,
        "P4": p4,
        "P5": p5,
        "P6": p6,
        "P7": p7,
        "P8": p8,
        "P10": p10,
        "exact": exact,
    }
    chosen = a.only.split(",") if a.only else list(benches)
    rows = []
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        rows += benches[name](a.smoke, a.reps)
    results = {"machine": machine(), "smoke": a.smoke, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    md = markdown(results)
    (out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
