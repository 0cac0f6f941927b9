"""Kernel controls, computed by the same code as the claims, attached to ``AnalysisResult.controls``.

- ``init``: the first layer's epoch-000 kernels (the snapshot, or rebuilt from the recorded seed when
  the run kept no snapshots: ``torch.manual_seed(seed)`` then the model, as the trainer does),
  matched and counted per unit exactly like the trained kernels (same bank, null and seed).
- ``random_labels``: a run of the same recipe trained on permuted labels (``convlens train
  --shuffle-labels``); its first-layer kernels matched and counted the same way. Must have the same
  model and data as the analysed run and ``shuffle_labels`` in its config.
- ``input_statistics``: PCA of the training patches (:mod:`convlens.analysis.measure.patches`) and
  the subspace energy and principal angles of the trained, random-label and init kernels, each
  against the random and spectrum-matched nulls; and the rotation-invariant whitening tests of each
  set (energy-vs-eigenvalue and filter-power-vs-spectrum slopes against random layers), with the
  energy slope of the trained first layer at every snapshot epoch (``Control.whitening``).

The three-way verdict on these is :func:`convlens.analysis.evidence.verdicts.three_way_verdict`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.measure import matching, patches
from convlens.analysis.measure.units import dead_mask
from convlens.analysis.result import (
    AnalysisResult,
    Control,
    LayerMatch,
    UnitSummary,
    Whitening,
    WhiteningEpoch,
)
from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import RunLayout
from convlens.runs.records import RunRecord


def rebuilt_init(rec: RunRecord) -> dict[str, NDArray[Any]]:
    """The epoch-000 weights of a run, rebuilt from its recorded seed and model (no snapshots)."""
    import torch

    from convlens.models import build_model

    torch.manual_seed(rec.config.seed)
    model = build_model(rec.model)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def first_layer_units(result: AnalysisResult, weight: NDArray[Any]) -> LayerMatch:
    """Match a first-layer weight exactly like the analysed run's first layer (same null, seed)."""
    first = result.first_layer
    assert first is not None and first.matching is not None
    s = result.settings
    k = int(weight.shape[-1])
    colour = first.matching.units is not None and first.matching.units.colour_rule is not None
    return matching.match_layer(
        first.name,
        weight,
        null_scores=matching.random_null(k, s.n_null, s.seed),
        n_null=s.n_null,
        seed=s.seed,
        gabor=False,
        colour=colour,
        spectra=True,
    )


def _unit_figures(u: UnitSummary) -> dict[str, float | None]:
    lo, hi = u.ci_above_null95
    slo, shi = u.ci_above_spectrum_null95
    return {
        "n_units": float(u.n_units),
        "n_live": float(u.n_live),
        "n_dead": float(u.n_dead),
        "fraction_above_null95": u.fraction_above_null95,
        "fraction_above_null95_ci_low": lo,
        "fraction_above_null95_ci_high": hi,
        "fraction_above_spectrum_null95": u.fraction_above_spectrum_null95,
        "fraction_above_spectrum_null95_ci_low": slo,
        "fraction_above_spectrum_null95_ci_high": shi,
        "median_unit_score": float(np.median(u.best_scores)) if u.best_scores else None,
    }


def init_control(result: AnalysisResult, init_w: NDArray[Any], rebuilt: bool) -> Control:
    """The epoch-000 kernels as a control (the untrained floor of the kernel claim)."""
    m = first_layer_units(result, init_w)
    where = "rebuilt from the recorded seed (no snapshots)" if rebuilt else "snapshot epoch 000"
    return Control(
        name="init (epoch 000)",
        description=f"the first layer's initial kernels ({where}), matched and counted per unit "
        "like the trained kernels",
        figures=_unit_figures(m.units) if m.units else {},
        kind="init",
        null=m.null.source if m.null else None,
        units=m.units,
    )


RECIPE_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer")


def _read_control_run(
    path: str | Path, rec: RunRecord, reference: bool = False
) -> tuple[RunLayout, RunRecord]:
    """The control run at ``path`` checked (a random-label run of the same model and data, or with
    ``reference`` a run of the same model and data with the true labels and another recipe, with
    its final weights) before anything is read from it: ``(its layout, its run.json record)``."""
    from convlens.data.loaders import absolute_data_spec

    run = RunLayout(path)
    crec = read.run_record(run)
    if reference:
        if crec.config.shuffle_labels:
            raise ConvlensError(
                f"{str(path)!r} is a random-label run; a reference run is trained on the true "
                "labels with another recipe (give a random-label run with --control-run)"
            )
        if all(getattr(crec.config, k) == getattr(rec.config, k) for k in RECIPE_KEYS):
            raise ConvlensError(
                f"{str(path)!r} has the analysed run's recipe; a reference run differs in at "
                f"least one of {', '.join(RECIPE_KEYS)}"
            )
    elif not crec.config.shuffle_labels:
        raise ConvlensError(
            f"{str(path)!r} is not a random-label run (its config does not have shuffle_labels); "
            "train it with shuffled labels"
        )
    for key, mine, theirs in (
        ("model", rec.model, crec.model),
        ("data", absolute_data_spec(rec.config.data), absolute_data_spec(crec.config.data)),
    ):
        if mine != theirs:
            # a model spec: name it, not all its fields
            what = (getattr(theirs, "name", theirs), getattr(mine, "name", mine))
            if what[0] == what[1]:
                what = ("another configuration", "the analysed run's")
            raise ConvlensError(
                f"control run {str(path)!r} has another {key} than the analysed run "
                f"({what[0]!r} vs {what[1]!r}); a control must use the same recipe"
            )
    if not run.model.is_file():
        raise ConvlensError(f"control run {str(path)!r} is a partial run (no model.safetensors)")
    return run, crec


def random_label_control(
    result: AnalysisResult, path: str | Path, rec: RunRecord
) -> tuple[Control, NDArray[Any]]:
    """The random-label run at ``path`` as a control: its first layer matched like the claim's."""
    run, crec = _read_control_run(path, rec)
    ccfg, cfg = crec.config, rec.config
    differ = _recipe_differences(ccfg, cfg)
    if differ:
        result.notes.append(
            f"control run {str(path)!r} was trained with another recipe than the analysed run "
            f"({'; '.join(differ)}): the three-way verdict compares unlike runs"
        )
    w, m, figures = _run_first_layer(result, run, crec, f"control run {str(path)!r}")
    res = crec.result
    figures["final_val_accuracy"] = None if res is None else res.final_val_accuracy
    figures.update(label_fit(run, crec))
    return (
        Control(
            name="random labels",
            description="the same recipe trained on permuted training labels (nothing about the "
            "classes can be learned); its first-layer kernels matched and counted per unit like "
            "the trained kernels",
            figures=figures,
            kind="random_labels",
            command=ccfg.command(path, world_size=crec.world_size),
            source=str(path),
            null=m.null.source if m.null else None,
            notes=[crec.label_permutation] if crec.label_permutation else [],
            units=m.units,
        ),
        w,
    )


def label_fit(run: RunLayout, crec: RunRecord) -> dict[str, float | None]:
    """Whether a random-label run fitted its permuted training labels: its last epoch's training
    accuracy, the majority-class rate (what a run that learned nothing gets) and the binomial
    p-value of at least that many correct out of the training images by chance. A control that did
    not fit shows what training without the task left unshaped, not what fitting these images
    without it would teach."""
    from convlens.analysis.evidence.stats import binom_sf

    rows = read.metrics(run)
    acc = rows[-1].train_acc if rows else None
    ds = crec.dataset
    n = int(ds.splits.get("train", 0))
    chance = max(ds.class_counts.values()) / ds.n if ds.class_counts and ds.n else None
    p = None
    if acc is not None and n and chance is not None:
        p = binom_sf(round(acc * n) - 1, n, chance)
    return {"final_train_accuracy": acc, "chance_accuracy": chance, "label_fit_p": p}


def _live(units: UnitSummary | None) -> NDArray[np.bool_] | None:
    if units is None or not units.unit_categories:
        return None
    return np.array([c != "dead" for c in units.unit_categories])


def whitening_over_training(
    whitening: Whitening,
    basis: patches.PatchBasis,
    snapshots: dict[int, dict[str, NDArray[Any]]] | None,
    key: str,
) -> None:
    """The whitening test of the first layer (weight ``key``) at every snapshot epoch (the
    snapshots as read by :func:`convlens.runs.read.snapshots`; live units of
    each epoch by the dead-unit rule), into ``whitening.over_training``."""
    if not snapshots:
        whitening.over_training_skipped = "no snapshots in this run"
        return
    for epoch in sorted(snapshots):
        w = snapshots[epoch].get(key)
        if w is None:
            whitening.over_training_skipped = f"snapshot epoch {epoch} has no weight {key!r}"
            whitening.over_training = []
            return
        w64 = np.asarray(w, dtype=np.float64)
        test = patches.whitening_test(
            basis,
            w64,
            ~dead_mask(w64.reshape(len(w64), -1)),
            n_null=whitening.n_null,
            seed=whitening.seed,
            n_boot=whitening.n_boot,
        )
        whitening.over_training.append(WhiteningEpoch(epoch, test))


def random_label_network(path: str | Path, rec: RunRecord) -> tuple[Any, str]:
    """The random-label run at ``path`` (checked like :func:`random_label_control`) as a network
    for the OOD verdict's random-label arm: its final weights in its model, eval mode, and what it
    is (one line)."""
    import torch

    from convlens.models import build_model

    run, crec = _read_control_run(path, rec)
    model = build_model(crec.model)
    state = read.model_weights(run)
    try:
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    except Exception as exc:
        raise ConvlensError(
            f"control run {str(path)!r}: model.safetensors does not fit its model: {exc}"
        ) from None
    model.eval()
    res = crec.result
    acc = (
        ""
        if res is None or res.test_accuracy is None
        else f", test accuracy {res.test_accuracy:.2f}"
    )
    return model, (
        f"the same recipe trained on permuted labels ({str(path)!r}, seed {crec.config.seed}"
        f"{acc}): what training on these images does without the task"
    )


def input_statistics_control(
    result: AnalysisResult,
    images: NDArray[Any],
    sets: dict[str, tuple[NDArray[Any], UnitSummary | None]],
    seed: int,
    snapshots: dict[int, dict[str, NDArray[Any]]] | None = None,
) -> Control | None:
    """PCA of the training patches, each kernel set's figures and whitening tests, and the trained
    layer's whitening slope over the ``snapshots`` (``None`` when the first layer cannot be compared
    with image patches: not 2-D square or not reading the images' channels)."""
    first = result.first_layer
    trained = sets.get("trained")
    if first is None or trained is None:
        return None
    w = trained[0]
    if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] < 2 or images.shape[1] != w.shape[1]:
        result.notes.append(
            f"input-statistics control skipped: first layer {list(w.shape)} is not a square 2-D "
            f"layer reading the images' {images.shape[1]} channel(s)"
        )
        return None
    k = int(w.shape[2])
    n = patches.N_PATCHES
    basis = patches.PatchBasis(patches.sample_patches(images, k, n, seed), int(w.shape[1]))
    figures: dict[str, float | None] = {
        "d": float(basis.d),
        "m": float(basis.m),
        "n_patches": float(n),
        "patch_seed": float(seed),
        "explained_variance_top_m": basis.explained_top_m,
    }
    n_null = result.settings.n_null
    order = ("trained", "random_labels", "init")  # the trained set first: the references' size
    sets = dict(sorted(sets.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 3))
    layers: dict[str, dict[str, float | None]] = {}
    for name, (weight, units) in sets.items():
        f = patches.layer_figures(
            basis, weight, _live(units), n_null=n_null, seed=result.settings.seed
        )
        layers[name] = f
    whitening = patches.whitening_summary(
        basis,
        {name: (weight, _live(units)) for name, (weight, units) in sets.items()},
        n_null=n_null,
        seed=result.settings.seed,
    )
    for name, test in whitening.sets.items():
        layers[name].update(patches.whitening_figures(test))
    for name, f in layers.items():
        figures.update({f"{name}.{key}": v for key, v in f.items()})
    whitening_over_training(whitening, basis, snapshots, first.identity.weight_key)
    ref = whitening.reference_energy
    return Control(
        name="input correlation structure (patch PCA, whitening tests)",
        description=f"{n} random {w.shape[1]}x{k}x{k} training patches (seed {seed}, per-channel "
        f"mean removed); PCA: top m = ceil(d/5) = {basis.m} of d = {basis.d} components; figures "
        "per kernel set: energy inside the top-m subspace, principal angles (mean cos^2) between "
        "the layer's span and the top-m components, and two whitening tests that any rotation of "
        "the units leaves unchanged: the log-log slope of the layer's energy along each principal "
        f"component on its eigenvalue ({whitening.n_components} components; PCA whitening "
        f"{_f2(ref.get('pca_whitening'))}, the top {whitening.reference_units} components "
        f"{_f2(ref.get('top_components'))}) and of its mean power spectrum on the patches' "
        "(whitening about -1, matched filter +1)",
        figures={
            k2: (None if v is None or not math.isfinite(v) else v) for k2, v in figures.items()
        },
        kind="input_statistics",
        command="convlens analyze RUN [--control-run RANDOM_LABEL_RUN]",
        layers=layers,
        null=f"i.i.d. uniform kernels and kernels with each set's own mean power spectrum "
        f"({n_null} units each; unit above a null when > its 95th percentile, chance 5%); layer "
        f"figure vs up to {patches.N_LAYER_NULL} random layers of the same size; whitening slopes "
        f"vs {n_null} random layers of the same shape (2.5-97.5 percentiles), 95% bootstrap "
        f"interval over units ({whitening.n_boot} resamples); rule: {whitening.rule}",
        whitening=whitening,
    )


def _run_first_layer(
    result: AnalysisResult, run: RunLayout, crec: RunRecord, what: str
) -> tuple[NDArray[Any], LayerMatch, dict[str, float | None]]:
    """Another run's final first-layer weight (the analysed layer's key), matched like the claim's:
    ``(weight, its match, its per-unit figures with the run's test accuracy)``."""
    first = result.first_layer
    assert first is not None
    key = first.identity.weight_key
    state = read.read_tensors(run.model)
    if key not in state:
        raise ConvlensError(f"{what} has no weight {key!r}")
    w = np.asarray(state[key])
    m = first_layer_units(result, w)
    figures = _unit_figures(m.units) if m.units else {}
    figures["test_accuracy"] = None if crec.result is None else crec.result.test_accuracy
    return w, m, figures


def _recipe_differences(theirs: Any, mine: Any) -> list[str]:
    return [
        f"{k} {getattr(theirs, k)!r} vs {getattr(mine, k)!r}"
        for k in RECIPE_KEYS
        if getattr(theirs, k) != getattr(mine, k)
    ]


def reference_control(result: AnalysisResult, path: str | Path, rec: RunRecord) -> Control:
    """A reference run at ``path`` (same model and data, true labels, another recipe: e.g. the
    demo's run without weight decay) as a control: its first layer matched and counted per unit
    like the claim's, beside its test accuracy, so a recipe chosen on the kernel metric is shown
    next to one that was not."""
    run, crec = _read_control_run(path, rec, reference=True)
    _, m, figures = _run_first_layer(result, run, crec, f"reference run {str(path)!r}")
    differ = _recipe_differences(crec.config, rec.config)
    return Control(
        name="reference recipe (" + "; ".join(differ) + ")",
        description="the same model and data with the true labels, trained with another recipe "
        "(not selected on the kernel metric); its first-layer kernels matched and counted per "
        "unit like the trained kernels",
        figures=figures,
        kind="recipe_reference",
        command=crec.config.command(path, world_size=crec.world_size),
        source=str(path),
        null=m.null.source if m.null else None,
        notes=differ,
        units=m.units,
    )


def _f2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def attach_kernel_controls(
    result: AnalysisResult,
    weights: dict[str, NDArray[Any]],
    init: dict[str, NDArray[Any]] | None,
    rec: RunRecord,
    images: NDArray[Any],
    control_runs: list[str | Path] | None = None,
    snapshots: dict[int, dict[str, NDArray[Any]]] | None = None,
    reference_runs: list[str | Path] | None = None,
) -> None:
    """The stage: ``init``, ``random_labels`` (one per run in ``control_runs``) and
    ``input_statistics`` controls of the first layer, appended to ``result.controls``; the
    whitening test over training reads the run's ``snapshots``."""
    first = result.first_layer
    m = first.matching if first is not None else None
    if first is None or m is None or m.skipped or m.units is None:
        for path in control_runs or []:
            _read_control_run(path, rec)  # a wrong --control-run is still an error
        for path in reference_runs or []:
            _read_control_run(path, rec, reference=True)
        if control_runs:
            why = "no first layer" if first is None else f"first layer {first.name!r} has "
            if first is not None:
                why += "no per-unit kernel matching (square 2-D kernels only)"
            result.notes.append(
                f"kernel controls (init, random labels, patch PCA) not computed: {why}; "
                "the --control-run was checked but not used"
            )
        return
    key = first.identity.weight_key
    w = np.asarray(weights.get(key, weights.get(first.name)))
    rebuilt = init is None or key not in init
    if rebuilt:
        init = rebuilt_init(rec)
        result.notes.append(
            "no epoch-000 snapshot: the init control is rebuilt from the recorded seed"
        )
    assert init is not None
    init_c = init_control(result, np.asarray(init[key]), rebuilt)
    sets: dict[str, tuple[NDArray[Any], UnitSummary | None]] = {"trained": (w, m.units)}
    sets["init"] = (np.asarray(init[key]), init_c.units)
    result.controls.append(init_c)
    for path in control_runs or []:
        c, cw = random_label_control(result, path, rec)
        result.controls.append(c)
        sets.setdefault("random_labels", (cw, c.units))
    for path in reference_runs or []:
        result.controls.append(reference_control(result, path, rec))
    if not control_runs:
        result.notes.append(
            "no random-label control run: the kernel verdict is limited to trained vs init "
            "(train one with --shuffle-labels and pass it with --control-run)"
        )
    stats = input_statistics_control(result, images, sets, result.settings.seed, snapshots)
    if stats is not None:
        result.controls.append(stats)
