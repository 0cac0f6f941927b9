"""The OOD verdict's three arms on planted truths: power and false-positive rates.

Part of ``convlens validate`` (``--ood-repetitions N``, about 10 s per repetition on 2 cores); also
``python -m bench.ood_arms --reps 10``. Per planted case and layer, how often each level of
``verdicts.ood_learned`` came out, with Wilson 95% intervals. Each repetition draws new images and trains the
networks of the case afresh (seed = repetition); the untrained initialisations, the paired
bootstrap and the verdict are the analysis's own (:func:`convlens.analysis.measure.activations.compare`).

Cases (25 x 25 grey images, unit-variance Gaussian white noise ``z`` mapped by
``clip(0.5 + 0.15 z, 0, 1)``, the faces network of the demo):

- ``task``: class 1 has two 5 x 5 X marks (amplitude 4 on 9 pixels each), class 0 has the same 18
  spikes scattered: the same pixel values, only their arrangement differs, and only the labels make
  it relevant. Trained on the labels; the random-label control is the same recipe and seed with
  permuted labels. ID = fresh class-1 images, OOD = fresh class-0 images. Truth: **learned from the
  task**.
- ``task, shuffled``: the same images, but the analysed network itself is trained on permuted labels
  (its control: another permutation and seed). Truth: nothing from the task (a "learned from the
  task" here is a false positive).
- ``images``: blurred white noise (Gaussian, sigma 1.5 px; ``planted:blurred-random``, labels at
  random), the analysed network trained on permuted labels, its control another permutation and
  seed. ID = fresh blurred images, OOD = white noise of the same pixel variance: training on smooth
  images (AdamW, weight decay) makes the filters smooth whatever the labels. Truth: **learned from
  training on these images**.
- ``before``: the ``task`` network; ID = fresh class-1 images, OOD = the same kind of images at one
  fifth of the contrast: any ReLU network, trained or not, responds less to them. Truth: **present
  before training**.
- ``null``: the untrained arm's calibration: the "analysed" network is itself an untrained
  initialisation (seed ``draw + 5000``), on the ``task`` case's sets, with no epoch-000 and no
  random-label arm, so only the distribution decides: "no random-label control" (= above the
  untrained initialisations) is a false positive, expected at most ``1 / (1 + N)``.

Every case but ``null`` also has the analysed network's epoch-000 network (rebuilt under its seed,
as the trainer initialises it) as the paired untrained control, as ``convlens analyze`` has.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

SIZE = 25
N_IMAGES = 400
"""Training images per draw (60/20/20% train/val/test, two balanced classes)."""
N_SET = 100
"""Images per ID and OOD set (a fresh draw, never trained on)."""
RECIPE: dict[str, Any] = {
    "model": "faces-cnn",
    "epochs": 20,
    "batch_size": 32,
    "lr": 3e-3,
    "optimizer": "adamw",
    "weight_decay": 1.0,
}
"""The training recipe of every planted network (the demo's network, a shorter AdamW schedule)."""
N_BOOT = 1000
CASES = ("task", "task, shuffled", "images", "before", "null")
TRUTH = {
    "task": "learned from the task",
    "task, shuffled": "not from the task",
    "images": "learned from training on these images",
    "before": "present before training",
    "null": "present before training",
}
NULL_SEED_OFFSET = 5000


def _xmark(k: int) -> NDArray[np.float64]:
    m = np.zeros((k, k))
    i = np.arange(k)
    m[i, i] = 1.0
    m[i, k - 1 - i] = 1.0
    return m


def x_images(
    n: int, rng: np.random.Generator, labels: NDArray[Any], amp: float = 4.0, contrast: float = 1.0
) -> NDArray[np.float64]:
    """White noise; label 1: two X marks of amplitude ``amp`` at random places; label 0: the same
    number of spikes of the same amplitude scattered; all scaled by ``contrast`` before mapping
    to [0, 1]."""
    mark = _xmark(5)
    spikes = int(mark.sum()) * 2
    z = rng.normal(size=(n, SIZE, SIZE))
    for i in range(n):
        if labels[i]:
            for _ in range(2):
                r, c = rng.integers(0, SIZE - 4, size=2)
                z[i, r : r + 5, c : c + 5] += amp * mark
        else:
            z[i].flat[rng.choice(SIZE * SIZE, size=spikes, replace=False)] += amp
    return np.clip(0.5 + 0.15 * contrast * z, 0, 1)


def _balanced(n: int) -> NDArray[np.int64]:
    return np.repeat(np.array([0, 1], dtype=np.int64), n // 2)


def x_dataset(draw: int) -> Any:
    """The ``task`` case's training data for one draw (a convlens ``Dataset``)."""
    from convlens.data.datasets import from_unit_range

    y = _balanced(N_IMAGES)
    x = x_images(N_IMAGES, np.random.default_rng([draw, 77]), y)
    return from_unit_range("planted-x", x, y, ["spikes", "x"], "convlens validate", "as is", draw)


def blurred_dataset(draw: int) -> Any:
    """The ``images`` case's training data (``planted:blurred-random``, draw ``draw``)."""
    from convlens.data.datasets import from_unit_range
    from convlens.data.planted import planted01

    x, y = planted01("blurred-random", draw)
    return from_unit_range("planted-blurred", x, y, ["a", "b"], "convlens validate", "as is", draw)


def case_sets(case: str, ds: Any, draw: int) -> list[tuple[str, NDArray[np.float32]]]:
    """``[(ID name, images), (OOD name, images)]`` of ``case`` (fresh images, standardised like
    the training data)."""
    rng = np.random.default_rng([draw, 78])
    if case == "images":
        from convlens.data.planted import planted01

        x, _ = planted01("blurred-random", draw + 10_000)
        white = np.clip(0.5 + 0.15 * rng.normal(size=(N_SET, SIZE, SIZE)), 0, 1)
        return [("blurred", ds.normalise(x[:N_SET, None])), ("white", ds.normalise(white[:, None]))]
    ones = np.ones(N_SET, dtype=np.int64)
    ident = ds.normalise(x_images(N_SET, rng, ones)[:, None])
    if case == "before":
        low = x_images(N_SET, rng, ones, contrast=0.2)
        return [("x", ident), ("x, 1/5 contrast", ds.normalise(low[:, None]))]
    spikes = x_images(N_SET, rng, np.zeros(N_SET, dtype=np.int64))
    return [("x", ident), ("spikes", ds.normalise(spikes[:, None]))]


def train(ds: Any, out: Path, seed: int, shuffle: bool) -> tuple[Any, Any]:
    """One network of the recipe on ``ds``: ``(model in eval mode, its ModelSpec)``."""
    import torch

    from convlens.models import build_model
    from convlens.runs import read
    from convlens.runs.layout import RunLayout
    from convlens.train import TrainConfig, Trainer

    cfg = TrainConfig(
        data=ds.name,
        seed=seed,
        ood=[],
        snapshots=False,
        probes=False,
        shuffle_labels=shuffle,
        **RECIPE,
    )
    trainer = Trainer(cfg, ds, out, progress=False)
    trainer.train()
    model = build_model(trainer.spec)
    weights = read.model_weights(RunLayout(out))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    model.eval()
    return model, trainer.spec


def networks(
    case: str, draw: int, work: Path, seed: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """``(dataset, analysed network, random-label network, spec)`` of ``case`` for one draw (for
    ``null``: an untrained network and no random-label network); the networks' seed is ``seed``
    (default: the draw)."""
    seed = draw if seed is None else seed
    if case == "null":
        from convlens.analysis.measure.untrained import build_untrained
        from convlens.models import make_spec

        ds = x_dataset(draw)
        spec = make_spec(RECIPE["model"], 1, (SIZE, SIZE), 2)
        return ds, build_untrained(spec.to_dict(), seed + NULL_SEED_OFFSET), None, spec
    if case == "images":
        ds = blurred_dataset(draw)
        shuffled = True
    else:
        ds = x_dataset(draw)
        shuffled = case == "task, shuffled"
    trained, spec = train(ds, work / f"{draw}-{seed}-trained", seed, shuffled)
    # the demo's control: the same seed (same initial network), labels permuted; a shuffled
    # analysed network is compared with another permutation from another seed
    control, _ = train(ds, work / f"{draw}-{seed}-control", seed + 500 if shuffled else seed, True)
    return ds, trained, control, spec


@dataclass
class Judged:
    """One case, one draw: per layer the verdict level and the figures behind it."""

    case: str
    draw: int
    levels: dict[str, str]
    figures: dict[str, dict[str, Any]]
    comparisons: dict[str, Any] = field(default_factory=dict)
    """Per layer the :class:`~convlens.analysis.result.OodComparison` (for the across-seeds verdict)."""


def judge(
    case: str,
    draw: int,
    nets: tuple[Any, Any, Any, Any],
    *,
    n_untrained: int = 20,
    n_boot: int = N_BOOT,
    seed: int | None = None,
) -> Judged:
    """The three arms and the verdict for ``case`` with ``nets`` (:func:`networks`, trained under
    ``seed``, default the draw), measured as ``convlens analyze`` measures them (the untrained
    initialisations of the run seed)."""
    from convlens.analysis.measure.activations import compare
    from convlens.analysis.measure.untrained import fresh_seeds, initialisations, untrained_models
    from convlens.analysis.model.forward import batches_of, collect

    ds, trained, control, spec = nets
    named = case_sets("task" if case == "null" else case, ds, draw)

    def sets(model: Any) -> dict[str, Any]:
        return {n: collect(model, list(batches_of(x)), n) for n, x in named}

    seed = draw if seed is None else seed
    inits = initialisations(spec.to_dict(), seed, n_untrained)
    t = sets(trained)
    paired = {}
    if case != "null":  # the analysed network's initial weights (its seed is the draw)
        epoch0, _ = untrained_models(spec.to_dict(), seed, None)
        paired = {epoch0.name: sets(epoch0.model)}
    (id_name, _), (ood_name, _) = named
    _, layers = compare(
        t[id_name],
        [t[ood_name]],
        seed=seed,
        controls=paired,
        untrained=[sets(u.model) for u in inits],
        untrained_seeds=fresh_seeds(seed, n_untrained),
        random_labels=None if control is None else sets(control),
        n_boot=n_boot,
    )
    levels, figures = {}, {}
    for layer, d in layers.items():
        c = d.ood[ood_name]
        u, rl = c.untrained, c.random_labels
        assert u is not None
        levels[layer] = str(c.learned_verdict)
        figures[layer] = {
            "auroc": c.auroc,
            "untrained_median": u.median,
            "untrained_interval": u.interval,
            "untrained_p": u.p_value,
            "epoch000_diff_ci": c.controls[0].auroc_diff_ci if c.controls else None,
            "random_labels": None if rl is None else rl.auroc,
            "diff_ci": None if rl is None else rl.auroc_diff_ci,
            "random_labels_untrained_p": None if rl is None else rl.untrained_p,
        }
    return Judged(case, draw, levels, figures, {k: d.ood[ood_name] for k, d in layers.items()})


def rates(
    reps: int, cases: tuple[str, ...] = CASES, null_reps: int | None = None, log: Any = print
) -> dict[str, Any]:
    """Every case over ``reps`` draws (``null``: ``null_reps`` draws, 10 x ``reps`` by default; no
    training, so cheap): per layer, the count of each level, and every draw's figures. For
    ``null`` the count of ``untrained p <= OOD_ALPHA`` is added (the untrained arm's own false
    positive rate, before the trained verdict's "holds" gate)."""
    from convlens.analysis.evidence.verdicts import OOD_ALPHA

    counts: dict[str, dict[str, dict[str, int]]] = {}
    draws: list[dict[str, Any]] = []

    def add(j: Judged) -> None:
        for layer, level in j.levels.items():
            per = counts.setdefault(j.case, {}).setdefault(layer, {})
            per[level] = per.get(level, 0) + 1
            p = j.figures[layer]["untrained_p"]
            if j.case == "null" and p is not None and p <= OOD_ALPHA:
                per[NULL_P] = per.get(NULL_P, 0) + 1
        draws.append({"case": j.case, "draw": j.draw, "levels": j.levels, "figures": j.figures})

    with tempfile.TemporaryDirectory() as tmp:
        for draw in range(reps):
            t0 = time.perf_counter()
            task_nets = None
            for case in (c for c in cases if c != "null"):
                if case == "before" and task_nets is not None:
                    nets = task_nets  # the task network itself, other sets
                else:
                    nets = networks("task" if case == "before" else case, draw, Path(tmp) / case)
                task_nets = nets if case == "task" else task_nets
                add(judge(case, draw, nets))
            log(f"draw {draw}: {time.perf_counter() - t0:.1f} s")
        if "null" in cases:
            n_null = 10 * reps if null_reps is None else null_reps
            for draw in range(n_null):
                add(judge("null", draw, networks("null", draw, Path(tmp))))
            log(f"null: {n_null} draws")
    reps_of = {c: (null_reps or 10 * reps) if c == "null" else reps for c in cases}
    return {"reps": reps_of, "recipe": RECIPE, "truth": TRUTH, "counts": counts, "draws": draws}


NULL_P = "untrained p <= 0.05"


def table(result: dict[str, Any]) -> str:
    """The counts as a Markdown table: the rate of the truth's level (for ``task, shuffled``: of
    "learned from the task", a false positive) with its Wilson 95% interval, and every level."""
    from convlens.analysis.evidence.stats import wilson

    lines = [
        "| case | truth | layer | rate of the truth (Wilson 95%) | levels |",
        "|---|---|---|---|---|",
    ]
    for case, per_layer in result["counts"].items():
        truth = result["truth"][case]
        n = result["reps"][case]
        for layer, levels in per_layer.items():
            if case == "task, shuffled":
                k = levels.get("learned from the task", 0)
                what = "false positive 'learned from the task'"
            elif case == "null":
                k = levels.get(NULL_P, 0)
                what = f"false positive '{NULL_P}' (expected <= 1/21)"
            else:
                k = levels.get(truth, 0)
                what = ""
            lo, hi = wilson(k, n)
            rate = f"{k}/{n} [{lo:.2f}, {hi:.2f}]" + (f" {what}" if what else "")
            shown = ", ".join(f"{lv} {c}" for lv, c in sorted(levels.items(), key=lambda x: -x[1]))
            lines.append(f"| {case} | {truth} | {layer} | {rate} | {shown} |")
    return "\n".join(lines)


def rates_across_seeds(
    reps: int, seeds: int = 5, cases: tuple[str, ...] = CASES, log: Any = print
) -> dict[str, Any]:
    """Every case over ``reps`` draws with ``seeds`` networks per draw (network seeds ``100 * draw
    + s``), judged by the across-seeds verdict
    (:func:`convlens.analysis.evidence.seeds_ood.ood_learned_across_seeds`): per layer, the count
    of each level; for ``null`` (``seeds`` untrained networks as the analysed ones) the count of
    ``p(untrained) <= 0.05``."""
    from convlens.analysis.evidence.seeds_ood import ALPHA, ood_learned_across_seeds

    counts: dict[str, dict[str, dict[str, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for draw in range(reps):
            t0 = time.perf_counter()
            task_nets: dict[int, Any] = {}
            for case in cases:
                per: dict[str, list[Any]] = {}
                for s in range(seeds):
                    seed = 100 * draw + s
                    if case == "before" and seed in task_nets:
                        nets = task_nets[seed]  # the task network itself, other sets
                    else:
                        base = "task" if case == "before" else case
                        nets = networks(base, draw, Path(tmp) / case, seed=seed)
                    if case == "task":
                        task_nets[seed] = nets
                    for layer, c in judge(case, draw, nets, seed=seed).comparisons.items():
                        per.setdefault(layer, []).append(c)
                for layer, comps in per.items():
                    v = ood_learned_across_seeds(comps)
                    level = v.verdict
                    if case == "null":
                        level = NULL_P if (v.p_untrained or 1) <= ALPHA else "above: no"
                    cnt = counts.setdefault(case, {}).setdefault(layer, {})
                    cnt[level] = cnt.get(level, 0) + 1
            log(f"draw {draw} ({seeds} seeds per case): {time.perf_counter() - t0:.1f} s")
    return {"reps": dict.fromkeys(cases, reps), "seeds": seeds, "truth": TRUTH, "counts": counts}
