"""The library functions behind the ``convlens`` commands: train a run, analyse a target.

Each command of :mod:`convlens.cli` parses its options and calls exactly one function here or in a
sibling module (:mod:`convlens.demo`: the demo; :mod:`convlens.summary`: the lines ``analyze``
prints); every step that decides something (rebuilding a config for a resumed
run, where results go) lives in the library, where it is tested without click.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convlens._atomic import write_text
from convlens.errors import ConvlensError
from convlens.runs.layout import MODEL_ANALYSIS_SUFFIX, RunLayout

if TYPE_CHECKING:
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.analysis.result import AnalysisResult
    from convlens.train import TrainConfig, TrainResult

__all__ = [
    "TrainedRun",
    "analyze_target",
    "default_run_dir",
    "resume_config",
    "train_run",
    "write_result",
]


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


def analyze(
    target: Any,
    data: Any = None,
    *,
    ood: Any = None,
    options: AnalyzeOptions | None = None,
    **kw: Any,
) -> AnalysisResult:
    """Analyse and return the result, writing nothing: ``target`` is a training run directory, a
    model file (``data``: a dataset spec, with ``factory=``) or an in-memory ``torch.nn.Module``
    (``data``: arrays, a tensor, a DataLoader or a dataset spec; ``ood``: named arrays)."""
    from convlens.analysis import analyze_model_file, analyze_run

    if isinstance(target, (str, Path)):
        path = Path(target)
        if path.is_dir():
            if data is not None or ood is not None:
                raise ConvlensError(f"{str(target)!r} is a run directory: its data are its own")
            return analyze_run(path, options, **kw)
        if data is not None:
            kw["data"] = data
        if ood is not None:
            kw["ood"] = tuple(ood)
        return analyze_model_file(path, options, **kw)
    from convlens.analysis.orchestration.in_memory import analyze_module

    return analyze_module(target, data, ood=ood, options=options, **kw)


def write_result(result: AnalysisResult, dest: str | Path) -> Path:
    """Write ``analysis.json`` atomically (indented JSON, trailing newline), and the channel
    arrays of a fresh analysis beside it (:func:`~convlens.runs.layout.channels_path`)."""
    from safetensors import SafetensorError

    from convlens.analysis.result.channels import pending_arrays

    try:
        arrays = pending_arrays(result)
        if arrays:
            from safetensors.numpy import save_file

            from convlens._atomic import write_with
            from convlens.runs.layout import channels_path

            write_with(channels_path(Path(dest)), lambda tmp: save_file(arrays, str(tmp)))
        return write_text(dest, result.to_json(indent=2) + "\n")
    except (OSError, SafetensorError) as exc:
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        raise ConvlensError(f"cannot write {str(dest)!r}: {why}") from None


def analyze_target(
    target: str | Path,
    options: AnalyzeOptions | None = None,
    *,
    out: str | Path | None = None,
    **kw: Any,
) -> tuple[AnalysisResult, Path]:
    """Analyse a run directory or a model file and write the result; return it and its path.

    ``options`` (:class:`~convlens.analysis.orchestration.options.AnalyzeOptions`), or its fields
    as keyword arguments (``n_null``, ``seed``, ``factory``, ``data``, ``ood``, ``control_runs``,
    ``fit``, ...); an option the target does not read is refused before any work. Default
    destination ``out``: ``RUN/analysis.json``, or ``MODEL.analysis.json`` beside a model file;
    ``"-"`` writes no file (the caller prints the result).
    When the data part of a model-file analysis fails, the weight analysis is written anyway and
    the error is raised after, naming the file written.

    Under torchrun every rank runs this (the activation pass is sharded, see
    :mod:`convlens.analysis.model.shard`); rank 0 alone writes the file, and an error on any rank ends
    every rank, with one line from rank 0 (:func:`convlens.parallel.dist.collective`)."""
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.parallel import dist

    opts = AnalyzeOptions.of(options, kw)
    dist.init()
    return dist.collective(lambda: _analyze_target(target, opts, out), "the analysis")


def _analyze_target(
    target: str | Path, options: AnalyzeOptions, out: str | Path | None
) -> tuple[AnalysisResult, Path]:
    from convlens.analysis import analyze_model_file
    from convlens.analysis.orchestration.model_file import DataStageError
    from convlens.parallel.dist import is_main

    path = Path(target)
    to_stdout = str(out) == STDOUT
    if out is not None and not to_stdout:
        _check_destination(Path(out))
        _check_not_an_input(path, Path(out))
    if path.is_dir():
        from convlens.analysis import analyze_run  # torch: a run is analysed with its models

        result = analyze_run(path, options)
        dest = Path(out) if out else RunLayout(path).analysis
    elif path.is_file():
        dest = Path(out) if out else path.with_name(path.name + MODEL_ANALYSIS_SUFFIX)
        try:
            result = analyze_model_file(path, options)
        except DataStageError as exc:
            if to_stdout:  # nothing is written: the error says what failed
                raise ConvlensError(f"the data part failed: {exc}", hint_key=exc.hint_key) from None
            written = write_result(exc.result, dest) if is_main() else dest
            raise ConvlensError(
                f"the data part failed: {exc}; the weight analysis was written to {written}",
                hint_key=exc.hint_key,
            ) from None
    else:
        raise ConvlensError(f"{str(target)!r} is neither a run directory nor a model file")
    if not is_main() or to_stdout:  # under torchrun only rank 0 writes; "-": the caller prints
        return result, dest
    written = write_result(result, dest)
    if path.is_file():
        from convlens.analysis.orchestration.model_file import write_model_kernels

        write_model_kernels(result, path, written)
    return result, written


STDOUT = "-"
"""``--out -``: the analysis is not written to a file; ``convlens analyze`` prints its JSON on stdout."""


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
