"""Analyse a training run directory into a typed :class:`AnalysisResult` (``analyze_run``):
weights, evolution over the snapshots, probe feature maps, activations against the untrained
controls, receptive fields and the kernel controls."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.measure import (
    activations,
    cka,
    evolution,
    featuremaps,
    matching,
    receptive,
)
from convlens.analysis.model import forward
from convlens.analysis.model.layers import identify_modules
from convlens.analysis.orchestration import controls
from convlens.analysis.orchestration.options import AnalyzeOptions
from convlens.analysis.orchestration.stages import (
    Timer,
    attach_distribution,
    by_name,
    call_checks,
    finish,
    match_layers,
    new_result,
    nonfinite_layers,
    skip_for_nonfinite,
)
from convlens.analysis.result import (
    AnalysisResult,
    Evolution,
    ReceptiveFields,
    RunInfo,
    Settings,
    Source,
)
from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import RunLayout
from convlens.runs.records import RunRecord


@dataclass
class _RunInputs:
    """Everything :func:`analyze_run` reads from a run directory."""

    root: Path
    rec: RunRecord
    model: nn.Module
    dataset: Any
    oods: list[Any]
    snaps: dict[int, dict[str, NDArray[np.float32]]]
    probe_x: NDArray[np.float32] | None
    probe_maps: dict[int, dict[str, NDArray[np.float32]]]


def _load_run(run_dir: str | Path) -> _RunInputs:
    from convlens.data.loaders import load_dataset
    from convlens.data.ood import make_oods
    from convlens.models import build_model

    run = RunLayout(run_dir)
    rec = read.run_record(run)
    weights = read.model_weights(run)
    model = build_model(rec.model)
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    except Exception as exc:
        raise ConvlensError(f"{str(run.model)!r} does not fit the run's model: {exc}") from None
    model.eval()
    cfg = rec.config
    dataset = load_dataset(cfg.data, cfg.seed)
    oods = make_oods([o.name for o in rec.ood], dataset, cfg.ood_size, cfg.seed)
    snaps = read.snapshots(run)
    probe_x, probe_maps = featuremaps.load_probes(run.probes_dir)
    return _RunInputs(run.root, rec, model, dataset, oods, snaps, probe_x, probe_maps)


def _run_info(rec: RunRecord) -> RunInfo:
    return RunInfo(
        config=rec.config,
        dataset=rec.dataset,
        model=rec.model,
        result=rec.result,
        versions=dict(rec.versions),
        device=rec.device,
        world_size=rec.world_size,
    )


def _example_input(inp: _RunInputs) -> torch.Tensor:
    x_train, _ = inp.dataset.split("train")
    return torch.from_numpy(np.asarray(x_train[:2]))


def _evolution_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    first = result.first_layer
    if first is None:
        return
    if not inp.snaps:
        result.evolution = Evolution(first.name, None, [], "no snapshots in this run")
        return
    ident = first.identity
    k = ident.kernel_size[-1] if ident.dims == 2 else 1
    s = result.settings
    null = matching.random_null(k, s.n_null, s.seed) if matching.has_bank(k) else np.zeros(0)
    keys = {r.name: r.identity.weight_key for r in result.layers}
    result.evolution = evolution.evolution(inp.snaps, keys, first.name, null)


def _feature_map_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    info, per_layer = featuremaps.feature_map_summary(
        inp.probe_x, inp.probe_maps, [asdict(p) for p in inp.rec.probes]
    )
    result.feature_maps = info
    layers = by_name(result)
    for name, fm in per_layer.items():
        if name in layers:
            layers[name].feature_maps = fm


def _collect_all(model: nn.Module, sets: list[tuple[str, Any]]) -> list[forward.SetActivations]:
    """Every set through ``model``: sharded across ranks under torchrun, merged on rank 0."""
    from convlens.analysis.model.shard import collect_sharded

    return [collect_sharded(model, x, name) for name, x in sets]


def _distribution_stage(result: AnalysisResult, inp: _RunInputs, opts: AnalyzeOptions) -> None:
    """ID (the face class only, for faces data) vs every OOD set and vs the other classes, for the
    trained network and the three arms of the OOD verdict: the run's epoch-000 network, the
    untrained initialisations (:mod:`convlens.analysis.measure.untrained`; one pass over the same
    batches for all of them) and the random-label network of the first ``--control-run``; and what
    the trained, epoch-000 and first fresh network predict on every set."""
    from convlens.analysis.measure.untrained import (
        fresh_seeds,
        initialisations,
        initialisations_text,
        ood_control,
        untrained_models,
    )
    from convlens.analysis.model.shard import collect_each
    from convlens.data.ood import id_split
    from convlens.parallel.dist import is_main

    split = id_split(inp.dataset)
    id_name = split.name
    sets = [(id_name, split.x)] + [(o.name, o.x) for o in inp.oods + split.others]
    sources = {o.name: o.sources for o in inp.oods + split.others}
    desc = {id_name: "ID: " + split.description, **{o.name: o.description for o in inp.oods}}
    desc.update({o.name: o.description for o in split.others})
    trained = _collect_all(inp.model, sets)
    n_ood = len(inp.oods)
    seed = inp.rec.config.seed
    spec = inp.rec.model.to_dict()
    epoch0, notes = untrained_models(spec, seed, inp.snaps.get(0))
    result.notes.extend(notes)
    epoch0_sets = _collect_all(epoch0.model, sets)
    inits = initialisations(spec, seed, opts.n_untrained)
    per_set = [collect_each([u.model for u in inits], x, name) for name, x in sets]
    init_sets = [[s[i] for s in per_set] for i in range(len(inits))]
    rl_sets, rl_desc = None, None
    if opts.control_runs:
        rl_model, rl_desc = controls.random_label_network(opts.control_runs[0], inp.rec)
        rl_sets = _collect_all(rl_model, sets)
    if not is_main():  # every rank took part in the sharded passes; rank 0 alone merges and writes
        return
    seeds = fresh_seeds(seed, opts.n_untrained)
    u_text = initialisations_text(seeds)
    attach_distribution(
        result,
        trained[0],
        trained[1 : 1 + n_ood],
        desc,
        sources=sources,
        others=trained[1 + n_ood :],
        controls={epoch0.name: {s.name: s for s in epoch0_sets}},
        control_descriptions={epoch0.name: epoch0.description},
        untrained=[{s.name: s for s in v} for v in init_sets],
        untrained_seeds=seeds,
        untrained_description=u_text,
        random_labels={s.name: s for s in rl_sets} if rl_sets is not None else None,
        random_labels_description=rl_desc,
    )
    if len(opts.control_runs) > 1:
        result.notes.append(
            f"OOD verdict: the random-label arm is the first --control-run "
            f"({str(opts.control_runs[0])!r}); the others are kernel controls only"
        )
    if rl_sets is None:
        result.notes.append(
            "no random-label control run: the OOD verdict cannot tell learning from the task "
            "from training on these images (train one with --shuffle-labels and pass it with "
            "--control-run)"
        )
    result.predictions = activations.predictions(
        {"trained": trained, epoch0.name: epoch0_sets, inits[0].name: init_sets[0]},
        list(inp.dataset.classes),
        sources=sources,
        seed=result.settings.seed,
    )
    descriptions = {epoch0.name: epoch0.description, "untrained initialisations": u_text}
    if rl_desc is not None:
        descriptions["random labels"] = rl_desc
    control = ood_control(result.layers, descriptions, seeds)
    if control is not None:
        result.controls.append(control)


def _receptive_stage(result: AnalysisResult, inp: _RunInputs) -> None:
    train_probes = None
    if inp.probe_x is not None:
        idx = [i for i, p in enumerate(inp.rec.probes) if p.set == "train"]
        train_probes = torch.from_numpy(inp.probe_x[idx]) if idx else None
    if train_probes is None:
        train_probes = torch.from_numpy(inp.dataset.split("train")[0][:8])
    model: Any = inp.model
    result.receptive_fields = ReceptiveFields(
        theoretical=receptive.theoretical(model),
        effective=receptive.effective(model, train_probes),
    )


def analyze_run(
    run_dir: str | Path, options: AnalyzeOptions | None = None, **kw: Any
) -> AnalysisResult:
    """Every analysis of a training run directory, with its nulls (see the module docstring).
    ``options`` (:class:`AnalyzeOptions`), or its fields as keyword arguments: ``n_null``,
    ``seed``, ``detail_limit``/``detail_total`` (the per-kernel records, :func:`match_layers`) and
    ``control_runs`` (random-label runs of the same recipe, :mod:`convlens.analysis.orchestration.controls`);
    the model, data and OOD sets are the run's own (other options are refused)."""
    opts = AnalyzeOptions.of(options, kw)
    opts.check_for(run_dir)
    n_null, seed = opts.n_null, opts.seed
    timer = Timer()
    with timer("load"):
        inp = _load_run(run_dir)
        modules = identify_modules(inp.model, _example_input(inp))
    result = new_result(
        Source("run", str(inp.root)), Settings(n_null, seed), [i for i, _ in modules]
    )
    result.run = _run_info(inp.rec)
    weights = {k: v.detach().numpy() for k, v in inp.model.state_dict().items()}
    bad = nonfinite_layers(result, weights)
    with timer("verify"):
        call_checks(result, modules, bad, seed)
    with timer("matching"):
        match_layers(
            result,
            weights,
            init=inp.snaps.get(0),
            detail_limit=opts.detail_limit,
            detail_total=opts.detail_total,
        )
        if not inp.snaps:
            result.notes.append(
                "no snapshots in this run (trained without snapshots): no epoch-000 null"
            )
    with timer("kernel_controls"):
        if not bad:
            controls.attach_kernel_controls(
                result,
                weights,
                inp.snaps.get(0),
                inp.rec,
                inp.dataset.split("train")[0],
                list(opts.control_runs) or None,
                inp.snaps,
                list(opts.reference_runs) or None,
            )
    with timer("evolution"):
        _evolution_stage(result, inp)
    with timer("feature_maps"):
        _feature_map_stage(result, inp)
        result.representation = cka.representation_drift(
            inp.probe_maps, [r.name for r in result.layers]
        )
    with timer("distribution"):
        if not skip_for_nonfinite(result, "distribution", bad):
            _distribution_stage(result, inp, opts)
    with timer("receptive_fields"):
        if not skip_for_nonfinite(result, "receptive_fields", bad):
            _receptive_stage(result, inp)
    with timer("channels"):
        if opts.channels and not bad:
            _channels_stage(result, inp, opts)
    return finish(result, timer)


def _channels_stage(result: AnalysisResult, inp: _RunInputs, opts: AnalyzeOptions) -> None:
    """Exemplars and maximising inputs of every channel on the ID split and the OOD sets (under
    torchrun every rank runs its share of the exemplar pass and rank 0 merges it, then alone
    makes the crops, the maximising inputs and the concepts; the arrays go to
    ``channels.safetensors``)."""
    from convlens.analysis.orchestration.channels import channels_stage
    from convlens.analysis.result.channels import attach_arrays
    from convlens.data.ood import id_split
    from convlens.parallel.dist import is_main

    split = id_split(inp.dataset)
    sets = [(split.name, split.x)] + [(o.name, o.x) for o in inp.oods]
    rfs = result.receptive_fields.theoretical if result.receptive_fields is not None else None
    attach_arrays(result, channels_stage(result, inp.model, sets, rfs, seed=result.settings.seed))
    if not is_main():
        return
    if "face" in inp.dataset.classes and inp.dataset.name == "faces":  # aligned face crops
        _concepts(result, inp, rfs, opts)


def _concepts(result: AnalysisResult, inp: _RunInputs, rfs: Any, opts: AnalyzeOptions) -> None:
    """Eyes, nose and mouth detectors on every face image of the run's data, against the
    untrained initialisations of the OOD verdict (their best channel per part), at every snapshot
    epoch, and in the first random-label run."""
    from convlens.analysis.measure.untrained import initialisations
    from convlens.analysis.orchestration.channels import concepts_stage
    from convlens.models import build_model

    face = list(inp.dataset.classes).index("face")
    splits = [inp.dataset.split(s) for s in ("train", "val", "test")]
    faces = np.concatenate([x[y == face] for x, y in splits])
    spec = inp.rec.model.to_dict()
    import hashlib
    import json

    def fresh(n: int) -> list[nn.Module]:  # as many as the concept null's level needs
        return [u.model for u in initialisations(spec, inp.rec.config.seed, n)]

    key = json.dumps(
        [spec, inp.rec.config.seed, hashlib.sha1(np.ascontiguousarray(faces).tobytes()).hexdigest()]
    )
    snapshots: dict[int, nn.Module] = {}
    for e, state in inp.snaps.items():
        net = build_model(inp.rec.model)
        net.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False
        )
        snapshots[e] = net
    rl = None
    if opts.control_runs:
        rl, _ = controls.random_label_network(opts.control_runs[0], inp.rec)
    concepts_stage(
        result,
        inp.model,
        faces,
        rfs,
        untrained=fresh,
        null_key=key,
        snapshots=snapshots,
        random_labels=rl,
    )
