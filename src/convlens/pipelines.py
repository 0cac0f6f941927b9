"""The library functions behind the ``convlens`` commands: train a run, analyse a target, the demo.

Each command of :mod:`convlens.cli` parses its options and calls exactly one function here; every
step that decides something (rebuilding a config for a resumed run, where results go, the multi-seed
demo, the lines printed as a summary) lives here, where it is tested without click.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convlens._atomic import write_text
from convlens.errors import ConvlensError
from convlens.runs.layout import MODEL_ANALYSIS_SUFFIX, RunLayout

if TYPE_CHECKING:
    from convlens.analysis.result import AnalysisResult, LayerMatch
    from convlens.train import TrainConfig, TrainResult


def default_run_dir(data: str, seed: int) -> str:
    """``runs/<data>-seed<seed>`` with anything but ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return f"runs/{re.sub(r'[^A-Za-z0-9_.-]+', '_', data)}-seed{seed}"


def resume_config(out: str | Path, epochs: int | None = None) -> TrainConfig:
    """The config of the run in ``out`` (from its ``run.json``); ``epochs`` extends it."""
    from convlens.runs import read
    from convlens.runs.records import RunConfig

    cfg_dict = read.run_json(out).get("config")
    if not isinstance(cfg_dict, dict):
        raise ConvlensError(f"{str(out)!r}: run.json has no config to resume")
    cfg = RunConfig.from_dict(cfg_dict, f"{str(out)!r}: run.json config")
    if epochs is not None:
        cfg.epochs = max(cfg.epochs, epochs)
    return cfg


@dataclass
class TrainedRun:
    """What :func:`train_run` did: the result, where, on which device, on which data."""

    result: TrainResult
    out: str
    device: str
    dataset_name: str
    n_test: int

    def summary(self) -> list[str]:
        last = self.result.metrics[-1] if self.result.metrics else {}
        val = last.get("val_acc", float("nan"))
        return [
            f"{self.dataset_name}: {self.result.epochs} epochs in {self.result.seconds:.2f} s on "
            f"{self.device}; val acc {val:.4f}, test acc {self.result.test_accuracy:.4f} "
            f"(n={self.n_test})",
            f"run directory: {self.out}",
        ]


def train_run(
    cfg: TrainConfig | None,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    extend_epochs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda _line: None,
    keep: tuple[str, ...] = (),
    checkpoint_seconds: float | None = None,
) -> TrainedRun:
    """Train a new run from ``cfg`` into ``out``, or resume the run there (``cfg`` ignored; its
    own config, extended to ``extend_epochs`` when given). ``checkpoint_seconds``: the least time
    between checkpoints at snapshot epochs (default ``trainer.CHECKPOINT_MIN_SECONDS``; it changes
    only how much a kill loses, never the run, so it is not recorded).

    Holds the run directory's lock throughout. A run killed before its first checkpoint (its
    ``run.json`` says ``running``, no checkpoint) is started again from epoch 0 with its recorded
    config, and ``log`` says so. ``keep``: top-level names ``force`` leaves in place.

    Under torchrun every rank runs this (DistributedDataParallel, :mod:`convlens.train.ddp`);
    rank 0 alone takes the lock and writes, and an error on any rank ends every rank with one
    line from rank 0."""
    from convlens.parallel import dist
    from convlens.train.trainer import resolve_device

    dist.init(resolve_device(cfg.device).type if cfg is not None else "cpu")
    return dist.collective(
        lambda: _train_run(
            cfg, out, resume, force, extend_epochs, progress, log, keep, checkpoint_seconds
        ),
        "the training run",
    )


def _train_run(
    cfg: TrainConfig | None,
    out: str | Path,
    resume: bool,
    force: bool,
    extend_epochs: int | None,
    progress: bool,
    log: Callable[[str], None],
    keep: tuple[str, ...],
    checkpoint_seconds: float | None = None,
) -> TrainedRun:
    from convlens.data.loaders import load_dataset
    from convlens.train import Trainer
    from convlens.train.ddp import rank_run_dir

    run = rank_run_dir(out)
    if cfg is not None and not resume:
        from convlens.data.loaders import absolute_data_spec

        cfg.data = absolute_data_spec(cfg.data)  # recorded so it is found from any folder
        cfg.validate()
        # refuse before the (slow) data loading; checked again under the lock
        run.prepare_check(force)
    with run.lock():
        restart = False
        if resume:
            cfg = resume_config(out, extend_epochs)
            restart = not run.checkpoint.is_file() and run.status() == "running"
            if restart:
                log(
                    f"convlens: note: {str(out)!r} was stopped before its first checkpoint; "
                    "starting it again from epoch 0 with its recorded config"
                )
        if cfg is None:
            raise ConvlensError("a new run needs a training config")
        cfg.validate()
        dataset = load_dataset(cfg.data, cfg.seed)
        every = {} if checkpoint_seconds is None else {"checkpoint_seconds": checkpoint_seconds}
        trainer = Trainer(cfg, dataset, out, progress=progress, **every)
        if restart:
            result = trainer.train(force=True)
        elif resume:
            result = trainer.resume()
        else:
            result = trainer.train(force=force, keep=keep)
    return TrainedRun(
        result, str(out), str(trainer.device), dataset.name, len(dataset.splits["test"])
    )


def write_result(result: AnalysisResult, dest: str | Path) -> Path:
    """Write ``analysis.json`` atomically (indented JSON, trailing newline)."""
    try:
        return write_text(dest, result.to_json(indent=2) + "\n")
    except OSError as exc:
        raise ConvlensError(f"cannot write {str(dest)!r}: {exc.strerror or exc}") from None


def analyze_target(
    target: str | Path,
    *,
    out: str | Path | None = None,
    n_null: int = 2000,
    seed: int = 0,
    factory: str | None = None,
    data: str | None = None,
    ood: list[str] | None = None,
    control_runs: list[str] | None = None,
    fit: Any = None,
) -> tuple[AnalysisResult, Path]:
    """Analyse a run directory or a model file and write the result; return it and its path.

    Default destination: ``RUN/analysis.json``, or ``MODEL.analysis.json`` beside a model file.
    ``control_runs``: random-label runs of the same recipe (run directories only).
    ``fit`` (:class:`convlens.data.fit.FitOptions`) fits the data to a model file's input. When the
    data part of a model-file analysis fails, the weight analysis is written anyway and the error
    is raised after, naming the file written.

    Under torchrun every rank runs this (the activation pass is sharded, see
    :mod:`convlens.analysis.measure.shard`); rank 0 alone writes the file, and an error on any rank ends
    every rank, with one line from rank 0 (:func:`convlens.parallel.dist.collective`)."""
    from convlens.parallel import dist

    dist.init()
    return dist.collective(
        lambda: _analyze_target(
            target,
            out=out,
            n_null=n_null,
            seed=seed,
            factory=factory,
            data=data,
            ood=ood,
            control_runs=control_runs,
            fit=fit,
        ),
        "the analysis",
    )


def _analyze_target(
    target: str | Path,
    *,
    out: str | Path | None,
    n_null: int,
    seed: int,
    factory: str | None,
    data: str | None,
    ood: list[str] | None,
    control_runs: list[str] | None,
    fit: Any,
) -> tuple[AnalysisResult, Path]:
    from convlens.analysis import analyze_model_file, analyze_run
    from convlens.analysis.orchestration.model_file import DataStageError
    from convlens.parallel.dist import is_main

    path = Path(target)
    if out is not None:
        _check_destination(Path(out))
        _check_not_an_input(path, Path(out))
    if path.is_dir():
        given = [n for n, v in (("factory", factory), ("data", data), ("ood", ood)) if v]
        if fit is not None and fit != type(fit)():
            given.append("the data fitting options")
        if given:
            raise ConvlensError(
                f"{str(target)!r} is a run directory: its model, data and OOD sets are the ones "
                f"recorded in its run.json ({', '.join(given)}: for model files only)"
            )
        result = analyze_run(
            path, n_null=n_null, seed=seed, control_runs=list(control_runs or []) or None
        )
        dest = Path(out) if out else RunLayout(path).analysis
    elif path.is_file():
        if control_runs:
            raise ConvlensError(
                f"{str(target)!r} is a model file: a random-label control run is compared with a "
                "training run directory of the same recipe"
            )
        runnable = factory is not None or path.suffix.lower() == ".onnx"
        if not runnable and (data is not None or ood):
            raise ConvlensError(
                f"{str(target)!r} holds weights only: activations on data need the architecture "
                "(a factory building the model) or an .onnx file",
                hint_key="needs_factory",
            )
        if ood and data is None:
            raise ConvlensError("OOD sets are compared with a dataset: give the data as well")
        if data is None and fit is not None and fit != type(fit)():
            raise ConvlensError(
                "the data fitting options (layout, normalisation, scale, input size, output) "
                "apply to data run through the model: give the data as well"
            )
        dest = Path(out) if out else path.with_name(path.name + MODEL_ANALYSIS_SUFFIX)
        try:
            result = analyze_model_file(
                path, factory=factory, data=data, ood=ood, n_null=n_null, seed=seed, fit=fit
            )
        except DataStageError as exc:
            written = write_result(exc.result, dest) if is_main() else dest
            raise ConvlensError(
                f"the data part failed: {exc}; the weight analysis was written to {written}",
                hint_key=exc.hint_key,
            ) from None
    else:
        raise ConvlensError(f"{str(target)!r} is neither a run directory nor a model file")
    if not is_main():  # under torchrun only rank 0 writes
        return result, dest
    return result, write_result(result, dest)


def _check_destination(dest: Path) -> None:
    """Refuse an output file path that cannot be written, before any long computation."""
    if dest.is_dir():
        raise ConvlensError(f"cannot write {str(dest)!r}: it is a folder; give a file path")
    if not dest.parent.is_dir():
        state = "is not a folder" if dest.parent.exists() else "does not exist"
        raise ConvlensError(f"cannot write {str(dest)!r}: {str(dest.parent)!r} {state}")


def _check_not_an_input(target: Path, dest: Path) -> None:
    """Refuse ``--out`` naming the analysed model file itself or a file of the analysed run
    directory other than its ``analysis.json`` (the weights, run.json, a snapshot ...)."""
    if not dest.exists():
        return
    d = dest.resolve()
    t = target.resolve()
    inside = target.is_dir() and t in d.parents and d != RunLayout(t).analysis
    if d == t or inside:
        raise ConvlensError(
            f"--out {str(dest)!r} is part of what is analysed ({str(target)!r}); writing the "
            "analysis there would destroy it: give another --out"
        )


def layer_table(result: AnalysisResult, limit: int = 40) -> list[str]:
    """A compact per-layer table: layer, kernels (shape), fraction above the null's 95th
    percentile, top categories, check status and, where measured, the theoretical receptive
    field; at most ``limit`` rows (the rest counted)."""
    fields = {}
    if result.receptive_fields is not None:
        fields = {
            f.name: "global" if f.is_global else "x".join(map(str, f.size))
            for f in result.receptive_fields.theoretical
        }
    rows: list[tuple[str, ...]] = [
        ("layer", "kernels", "above null", "top categories", "check", "RF")
    ]
    for layer in result.layers[:limit]:
        ident, m, c = layer.identity, layer.matching, layer.check
        shape = "x".join(map(str, ident.kernel_size))
        frac = (
            "-"
            if m is None or m.fraction_above_null95 is None
            else f"{m.fraction_above_null95:.0%}"
        )
        if m is not None and m.skipped:
            frac = "skipped"
        cats = sorted((m.categories if m else {}).items(), key=lambda kv: (-kv[1], kv[0]))
        top = ", ".join(f"{k} {n}" for k, n in cats[:2]) or "-"
        status: str = c.status if c is not None else "-"
        if ident.order == "definition" and result.distribution is not None:
            status = "not executed"
        elif c is not None and c.status == "checked":
            status = "checked" if c.is_cross_correlation else "differs"
        rf = fields.get(ident.name, "-")
        rows.append((ident.name, f"{layer.n_kernels} x {shape}", frac, top, status, rf))
    if not fields:
        rows = [r[:5] for r in rows]
    n = len(rows[0])
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(n)]
    lines = [
        "  ".join(v[:40].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    if len(result.layers) > limit:
        lines.append(f"... and {len(result.layers) - limit} more layer(s) (see the JSON)")
    return lines


def analysis_summary(result: AnalysisResult) -> list[str]:
    """The lines ``convlens analyze`` prints: per layer matching (verdict on the first layer,
    categories), verification, AUROCs."""
    lines = []
    for layer in result.layers:
        m = layer.matching
        if m is None:
            continue
        if m.volume is not None:
            lines.append(_volume_line(m))
            continue
        if m.skipped:
            lines.append(f"{m.layer}: {m.n_kernels} kernels, matching skipped: {m.skipped}")
            continue
        if m.spectral is not None:
            lines.append(_one_d_line(m, _first_layer_verdict(result, layer.name)) + _caveat(m))
            continue
        init = m.init_fraction_above_null95
        init_text = f", epoch-000 kernels {init:.0%}" if init is not None else ""
        p95 = m.null.p95 if m.null is not None and m.null.p95 is not None else float("nan")
        cats = sorted(m.categories.items(), key=lambda kv: (-kv[1], kv[0]))
        cat_text = ", ".join(f"{c} {n}" for c, n in cats) or "none"
        verdict = _first_layer_verdict(result, layer.name)
        lines.append(
            f"{m.layer}: {m.n_kernels} kernels {m.kernel_size}x{m.kernel_size}, "
            f"{m.fraction_above_null95 or 0:.0%} above the random null's 95th percentile "
            f"({p95:.3f}; chance 5%{init_text}){verdict}; categories {cat_text}" + _caveat(m)
        )
    lines.extend(_kernel_learning_lines(result))
    lines.extend(_verify_lines(result))
    for name, per in result.headline.auroc.items():
        values = ", ".join(f"{o} {_f2(v)}" for o, v in per.items())
        lines.append(f"{name} ID-vs-OOD AUROC: {values}")
    lines.extend(_sources_line(result))
    lines.extend(_untrained_lines(result))
    lines.extend(_prediction_lines(result))
    lines.extend(f"note: {n}" for n in result.notes)
    lines.extend(f"error in {e.stage}: {e.message}" for e in result.errors)
    return lines


def _kernel_learning_lines(result: AnalysisResult) -> list[str]:
    """The per-unit kernel verdict and the three-way verdict with their controls."""
    lines = []
    v = result.verdicts.classical_kernels
    if v is not None and v.unit is not None and v.above is not None:
        lo, hi = v.ci
        ci = "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"
        lines.append(
            f"{v.layer}: {v.above} of {v.n} live units above the random null (Sidak over slices; "
            f"{v.n_dead} dead excluded), {v.fraction or 0:.0%}{ci} Wilson 95%; binomial p "
            f"{v.p_text}: {v.verdict}"
        )
    k = result.verdicts.kernel_learning
    if k is not None:
        props = "; ".join(
            f"{name} {p.x}/{p.n}"
            + ("" if p.ci[0] is None or p.ci[1] is None else f" [{p.ci[0]:.2f}, {p.ci[1]:.2f}]")
            for name, p in k.proportions.items()
        )
        tests = "; ".join(
            (c.control if " vs " in c.control else f"vs {c.control}") + f" p {c.p_text}"
            for c in k.comparisons
        )
        lines.append(
            f"kernel origin ({k.layer}): {k.verdict} (units above null: {props}; {tests}; "
            f"controls: {', '.join(k.controls) or 'none'})"
        )
    for c in result.controls:
        if c.kind == "input_statistics":
            lines.append(_patch_line(c.figures))
    r = result.representation
    if r is not None and r.layers:
        per = "; ".join(
            f"{x.layer} floor {_f2(x.floor)}, settles at epoch "
            + ("never" if x.settle_epoch is None else str(x.settle_epoch))
            for x in r.layers
        )
        lines.append(
            f"representation over training (linear CKA of {r.n_probes} probes vs epoch "
            f"{r.final_epoch}; floor = epoch 000; settled = stays >= {r.settle_threshold:g}): {per}"
        )
    return lines


def _patch_line(f: dict[str, float | None]) -> str:
    """``input statistics: patch PCA top 5 of 25 components; median energy ...`` (the control)."""

    def g(key: str) -> str:
        v = f.get(key)
        return "n/a" if v is None else f"{v:.2f}"

    sets = [s for s in ("trained", "random_labels", "init") if f"{s}.energy_median" in f]
    energy = ", ".join(f"{s} {g(s + '.energy_median')}" for s in sets)
    above = ", ".join(f"{s} {g(s + '.energy_above_spectrum_null95')}" for s in sets)
    zca = ", ".join(f"{s} {g(s + '.zca_median')}" for s in sets)
    return (
        f"input statistics: patch PCA top {int(f.get('m') or 0)} of {int(f.get('d') or 0)} "
        "components; median "
        f"energy inside them: {energy} (random null p95 {g('trained.energy_random_null_p95')}, "
        f"spectrum null p95 {g('trained.energy_spectrum_null_p95')}); units above the spectrum "
        f"null: {above}; median ZCA-filter |cos|: {zca} (random null p95 "
        f"{g('trained.zca_random_null_p95')})"
    )


def _caveat(m: LayerMatch) -> str:
    """The short form of a layer's quantisation and all-zero-kernel caveats (``LayerMatch.notes``)."""
    out = ""
    if m.n_zero_kernels and m.spectral is None:
        out += f"; {m.n_zero_kernels} all-zero kernel(s) left out of the fractions"
    if any(n.startswith("quantised weights") for n in m.notes):
        out += "; quantised weights: fractions not comparable with the float null"
    return out


def _first_layer_verdict(result: AnalysisResult, name: str) -> str:
    """``; first layer, classical kernels: yes, binomial p 0.006`` on the first layer, else ``""``."""
    first = result.first_layer
    v = result.verdicts.classical_kernels
    if first is None or name != first.name or v is None:
        return ""
    from convlens.analysis.measure.units import format_p

    p_text = "" if v.p_value is None else f", binomial p {format_p(v.p_value)}"
    return f"; first layer, classical kernels: {v.verdict}{p_text}"


def _one_d_line(m: LayerMatch, verdict: str = "") -> str:
    """``c1d: 64 kernels (1-D, 15 taps), 94% above null; Fourier/Gabor 60; peak frequencies ...``"""
    s = m.spectral
    assert s is not None
    p95 = m.null.p95 if m.null is not None and m.null.p95 is not None else float("nan")
    cats = sorted(m.categories.items(), key=lambda kv: (-kv[1], kv[0]))
    cat_text = ", ".join(f"{c} {n}" for c, n in cats) or "none"
    where = f"; {m.geometry}" if m.geometry else ""
    peaks = (
        f"peak frequencies {s.peak_min:.2f}-{s.peak_max:.2f} cycles/sample "
        f"(median {s.peak_median:.2f}), {s.fraction_concentrated or 0:.0%} with >50% of their "
        f"energy within 1/{m.kernel_size} of the peak"
        if s.peak_min is not None and s.peak_max is not None and s.peak_median is not None
        else "no spectrum"
    )
    if s.n_zero_kernels:
        peaks += f"; {s.n_zero_kernels} all-zero kernel(s) left out of the spectrum"
    frac = (
        f"{m.fraction_above_null95:.0%} above the random 1-D null's 95th percentile "
        f"({p95:.3f}; chance 5%)"
        if m.fraction_above_null95 is not None
        else f"no test power: the random 1-D null's 95th percentile is {p95:.4f}"
    )
    return (
        f"{m.layer}: {m.n_kernels} kernels (1-D, {m.kernel_size} taps{where}), "
        f"{frac}{verdict}; categories {cat_text}; {peaks}"
    )


def _volume_line(m: LayerMatch) -> str:
    """``c3d: 128 kernels (3-D, 3x3x3), not matched (no 3-D bank); separability ...``"""
    v = m.volume
    assert v is not None
    shape = "x".join(map(str, v.kernel_shape))
    if v.median_separability is None:
        return f"{m.layer}: {m.n_kernels} kernels (3-D, {shape}), nothing measured"
    return (
        f"{m.layer}: {m.n_kernels} kernels (3-D, {shape}), not matched (no classical 3-D bank); "
        f"median norm {v.median_norm:.3g}, median DC fraction {v.median_dc_fraction:.2f}, "
        f"space-time separability median {v.median_separability:.2f} "
        f"({v.fraction_separable or 0:.0%} >= {v.separable_threshold:g})"
    )


def _verify_lines(result: AnalysisResult) -> list[str]:
    h, v = result.headline, result.verdicts.cross_correlation
    if h.all_layers_cross_correlation is None or v is None:
        return []
    tol = "; ".join(f"{b}: tolerance {t:g}" for b, t in v.tolerances.items())
    rel = "n/a" if h.max_rel_diff_correlate is None else f"{h.max_rel_diff_correlate:.2e}"
    line = (
        f"layer == cross-correlation ({v.verdict}): max relative |diff| {rel} over "
        f"{h.n_layers_checked} layer(s) ({tol})"
    )
    if h.min_rel_diff_convolve is None:
        conv = "vs true convolution: not measurable, every checked layer is flip-invariant"
    else:
        conv = f"vs true convolution: min relative |diff| {h.min_rel_diff_convolve:.2e}"
    conv += f" ({h.n_flip_invariant} flip-invariant layer(s), e.g. 1x1, excluded)"
    lines = [f"{line}; {conv}"]
    for layer in result.layers:
        c = layer.check
        if c is not None and c.status != "checked":
            lines.append(f"{c.layer}: {c.status}" + (f" ({c.message})" if c.message else ""))
    return lines


def _untrained_lines(result: AnalysisResult) -> list[str]:
    """Per layer: AUROC trained minus the epoch-000 control, its interval and the learned verdict."""
    lines = []
    for layer in result.layers:
        d = layer.distribution
        if d is None or not any(c.controls for c in d.ood.values()):
            continue
        parts = []
        for o, c in d.ood.items():
            ctrl = c.controls[0] if c.controls else None
            if ctrl is None or ctrl.auroc_diff is None:
                continue
            lo, hi = ctrl.auroc_diff_ci
            parts.append(
                f"{o} {_f2(c.auroc)} vs {_f2(ctrl.auroc)} ({ctrl.auroc_diff:+.2f} "
                f"[{_f2(lo)}, {_f2(hi)}]): {c.learned_verdict}"
            )
        first = next((c.controls[0].control for c in d.ood.values() if c.controls), "untrained")
        lines.append(f"{layer.name} OOD AUROC trained vs untrained ({first}): " + "; ".join(parts))
    return lines


def _sources_line(result: AnalysisResult) -> list[str]:
    """How many source images each OOD set comes from (a one-photo set says what its CI means)."""
    from convlens.analysis.evidence.stats import ONE_SOURCE_LABEL

    d = result.distribution
    if d is None or not any(o.n_sources is not None for o in d.ood):
        return []
    parts = [f"{o.name} {o.n_sources}" for o in d.ood if o.n_sources is not None]
    one = [o.name for o in d.ood if o.n_sources == 1]
    tail = f"; {', '.join(one)}: {ONE_SOURCE_LABEL}" if one else ""
    return [f"ID: {d.id.name} (n {d.id.n}); source images per OOD set: {', '.join(parts)}{tail}"]


def _prediction_lines(result: AnalysisResult) -> list[str]:
    """What the network predicts on each set, trained vs untrained (one line per network)."""
    p = result.predictions
    if p is None:
        return []
    lines = []
    for model in list(dict.fromkeys(s.model for s in p.sets))[:2]:  # trained, epoch 000
        rows = [s for s in p.sets if s.model == model]
        if p.focus_class is not None:
            what = f"classified {p.focus_class!r}"
            vals = [f"{s.set} {s.class_fractions.get(p.focus_class, 0.0):.0%}" for s in rows]
        else:
            what = "top class"
            vals = [
                f"{s.set} {s.top_class} {s.class_fractions.get(s.top_class or '', 0.0):.0%}"
                for s in rows
            ]
        msp = ", ".join(_f2(s.mean_max_softmax) for s in rows)
        lines.append(f"predictions ({model}), {what}: {', '.join(vals)}; mean max-softmax {msp}")
    return lines


def _f2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def demo_recipe(data: str | None, epochs: int | None) -> dict[str, Any]:
    """The demo's training recipe (:data:`convlens.train.recipes.DEMO_RECIPE`). Another dataset
    keeps the recipe (optimizer, weight decay, learning rate, epochs, batch size) except the model,
    which is built for faces: that dataset gets its own default model (see :func:`recipe_notes`)."""
    from convlens.train.recipes import DEMO_RECIPE

    recipe = dict(DEMO_RECIPE)
    if data is not None and data != recipe["data"]:
        recipe["data"] = data
        recipe.pop("model", None)
    if epochs is not None:
        recipe["epochs"] = epochs
    return recipe


def recipe_notes(recipe: dict[str, Any]) -> list[str]:
    """What of the demo recipe does not apply to ``recipe`` (one line each; empty when all does)."""
    from convlens.train.recipes import DEMO_RECIPE

    if recipe.get("data") == DEMO_RECIPE["data"]:
        return []
    kept = ", ".join(f"{k} {recipe[k]}" for k in DEMO_RECIPE if k not in ("data", "model"))
    return [
        f"recipe: {DEMO_RECIPE['model']} is built for {DEMO_RECIPE['data']}; {recipe['data']} uses "
        f"its default model; kept: {kept}"
    ]


def run_demo(
    out_dir: str | Path,
    *,
    data: str | None = None,
    epochs: int | None = None,
    seed: int = 10,
    n_seeds: int = 3,
    n_null: int = 2000,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda _line: None,
) -> Path:
    """Train ``n_seeds`` runs of the demo recipe (seeds ``seed, seed+1, ...``; default 10-12,
    disjoint from the recipe sweep's seeds 0-2), each with a random-label control run
    (``seeds/random-labels-seed-N``, same recipe, permuted labels), analyse each against its
    control, write the across-seeds summary and the report of the first run; return its path.

    The first run is ``out_dir`` itself (with snapshots and probes); the others go to
    ``out_dir/seeds/seed-N`` without snapshots. ``out_dir`` must be missing, empty or a previous
    demo (marked by ``demo.json``); ``force`` also takes any other folder, and removes only the
    files convlens writes there (see :meth:`convlens.train.RunDir.remove_own`)."""
    from convlens.analysis import analyze_run
    from convlens.analysis.evidence.seeds import aggregate
    from convlens.parallel.dist import refuse_distributed
    from convlens.report import build_report
    from convlens.runs.layout import DEMO_FILE
    from convlens.train import RunDir, TrainConfig
    from convlens.train.recipes import RECIPE_SELECTION

    refuse_distributed("the demo")

    recipe = demo_recipe(data, epochs)
    for line in recipe_notes(recipe):
        log(line)
    seeds = [seed + i for i in range(n_seeds)]
    configs = []
    for i, s in enumerate(seeds):
        cfg = TrainConfig(seed=s, **recipe)
        if i > 0:
            cfg.snapshots = cfg.probes = False
        cfg.validate()
        configs.append(cfg)
    root = Path(out_dir)
    run = RunDir(root)
    _demo_check(run, force)
    t0 = time.perf_counter()
    with run.lock():
        _demo_check(run, force)
        run.remove_own()
        write_text(
            run.demo,
            json.dumps(
                {
                    "format": "convlens-demo/1",
                    "seeds": seeds,
                    "recipe": recipe,
                    "recipe_selection": RECIPE_SELECTION,
                }
            )
            + "\n",
        )
        analyses = []
        for i, (s, cfg) in enumerate(zip(seeds, configs, strict=True)):
            run_dir = root if i == 0 else run.seed_run(s)
            log(f"[train {i + 1}/{len(seeds)}] {cfg.data}, seed {s}, {cfg.epochs} epochs ...")
            outcome = train_run(
                cfg, run_dir, force=True, progress=progress, keep=(DEMO_FILE,) if i == 0 else ()
            )
            control = run.random_labels_run(s)
            log(f"      random-label control, seed {s} ...")
            train_run(_control_config(cfg), control, force=True, progress=progress)
            analysis = analyze_run(run_dir, n_null=n_null, seed=0, control_runs=[control])
            analysis.notes.append(selection_note(recipe, s))
            write_result(analysis, RunLayout(run_dir).analysis)
            analyses.append(analysis)
            first = analysis.first_layer
            frac = first.matching.fraction_above_null95 if first and first.matching else None
            log(
                f"      test accuracy {outcome.result.test_accuracy:.3f}; first layer above null "
                f"{frac or 0:.0%} ({time.perf_counter() - t0:.1f} s so far)"
            )
        write_text(run.seeds_json, aggregate(analyses, seeds).to_json(indent=2) + "\n")
        path = build_report(root)
    log(f"[report] done; total {time.perf_counter() - t0:.1f} s")
    return path


def _control_config(cfg: TrainConfig) -> TrainConfig:
    """The random-label control of a demo run: the same config, permuted labels, no snapshots."""
    from dataclasses import replace

    return replace(cfg, shuffle_labels=True, snapshots=False, probes=False)


def selection_note(recipe: dict[str, Any], seed: int) -> str:
    """What the analysis says about how the demo recipe was chosen and on which seeds."""
    from convlens.train.recipes import DEMO_RECIPE, RECIPE_SELECTION

    if recipe.get("data") != DEMO_RECIPE["data"]:
        return f"recipe: generic settings for {recipe.get('data')!r} (not from the recipe sweep)"
    sweep_seeds = RECIPE_SELECTION["seeds"]
    overlap = "disjoint from" if seed not in sweep_seeds else "ONE OF (selection bias)"
    return (
        f"recipe chosen by a sweep ({RECIPE_SELECTION['sweep']}) maximising the "
        f"{RECIPE_SELECTION['metric']} on seeds {sweep_seeds}; this run's seed {seed} is {overlap} "
        "the sweep's seeds"
    )


def _demo_check(run: Any, force: bool) -> None:
    """Refuse an output folder the demo may not write: anything but missing, empty or a previous
    demo, unless ``force``."""
    run.check_unlocked()
    if run.root.exists() and not run.root.is_dir():
        raise ConvlensError(
            f"demo directory {str(run.root)!r} exists and is not a folder",
            hint_key="not_a_folder",
        )
    if force or not run.has_content() or run.is_demo():
        return
    what = "a training run that is not a demo" if run.is_run() else "files that are not a demo run"
    raise ConvlensError(
        f"{str(run.root)!r} holds {what}; choose another directory",
        hint_key="folder_not_empty",
    )
