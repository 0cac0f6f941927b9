"""Recipe sweep: fraction of first-layer kernels above the random null's 95th percentile (chance 5%)
vs epochs, weight decay (AdamW) and first-layer kernel size, on the bundled faces, several seeds.

Writes ``bench/recipes.json``, ``bench/recipes.md`` (a Markdown table) and ``bench/recipes.png``.
Run: python -m bench.recipes [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file

from convlens.analysis.measure.matching import match_layer
from convlens.data.datasets import load_bundled
from convlens.train import TrainConfig, Trainer

HERE = Path(__file__).resolve().parent


def one(seed: int, epochs: int, wd: float, k: int, data: str = "faces") -> dict[str, Any]:
    cfg = TrainConfig(
        data=data,
        seed=seed,
        epochs=epochs,
        optimizer="adamw" if wd > 0 else "adam",
        weight_decay=wd,
        first_kernel=k,
        ood=["noise"],
        ood_size=4,
        snapshots=False,
        probes=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = Trainer(cfg, load_bundled(data, seed), tmp + "/run", progress=False).train()
        seconds = time.perf_counter() - t0
        w = load_file(tmp + "/run/model.safetensors")["conv1.weight"]
    m = match_layer("conv1", w, n_null=2000, gabor=False)
    return {
        "seed": seed,
        "epochs": epochs,
        "weight_decay": wd,
        "kernel": k,
        "test_accuracy": res.test_accuracy,
        "fraction_above_null95": m.fraction_above_null95,
        "fraction_above_spectrum_null95": m.fraction_above_spectrum_null95,
        "seconds": seconds,
    }


def sweep(seeds: int, quick: bool) -> list[dict[str, Any]]:
    epochs = [30, 100] if quick else [30, 60, 100]
    wds = [0.0, 1.0, 4.0] if quick else [0.0, 0.5, 1.0, 2.0, 4.0]
    ks = [5] if quick else [3, 5, 7]
    rows = []
    for e, wd, k in itertools.product(epochs, wds, ks):
        runs = [one(s, e, wd, k) for s in range(seeds)]
        row = {"epochs": e, "weight_decay": wd, "kernel": k, "seeds": seeds}
        for key in (
            "fraction_above_null95",
            "fraction_above_spectrum_null95",
            "test_accuracy",
            "seconds",
        ):
            vals = [r[key] for r in runs]
            row[key] = statistics.mean(vals)
            row[key + "_min"] = min(vals)
            row[key + "_max"] = max(vals)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| epochs | weight decay (AdamW; 0 = Adam) | first-layer kernel | above random null p95 (mean [min, max]) | "
        "above spectrum-matched null p95 | test accuracy | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['epochs']} | {r['weight_decay']:g} | {r['kernel']}x{r['kernel']} | "
            f"{r['fraction_above_null95']:.0%} [{r['fraction_above_null95_min']:.0%}, {r['fraction_above_null95_max']:.0%}] | "
            f"{r['fraction_above_spectrum_null95']:.0%} | {r['test_accuracy']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(out) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ks = sorted({r["kernel"] for r in rows})
    fig, axes = plt.subplots(1, len(ks), figsize=(4 * len(ks), 3), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        for e in sorted({r["epochs"] for r in rows}):
            sel = sorted(
                (r for r in rows if r["kernel"] == k and r["epochs"] == e),
                key=lambda r: r["weight_decay"],
            )
            ax.plot(
                [r["weight_decay"] for r in sel],
                [r["fraction_above_null95"] for r in sel],
                marker="o",
                label=f"{e} epochs",
            )
        ax.axhline(0.05, color="k", ls=":", lw=1)
        ax.set_title(f"{k}x{k} first layer (faces)")
        ax.set_xlabel("weight decay (AdamW)")
        ax.set_ylabel("fraction above null p95")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    rows = sweep(a.seeds, a.quick)
    (HERE / "recipes.json").write_text(json.dumps(rows, indent=2))
    (HERE / "recipes.md").write_text(table(rows))
    plot(rows, HERE / "recipes.png")
    print(table(rows))


if __name__ == "__main__":
    main()
