"""What the report reads, loaded once, and where it may write (:func:`check_report_destination`): the typed analysis result, the across-seeds summary and the
run's arrays (probe images and feature maps, final weights; snapshots on demand), all through
:mod:`convlens.runs.read` (a truncated or corrupt file is one clear error naming it). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convlens.analysis.result import AnalysisResult, LayerResult, SeedsSummary
from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import (
    MODEL_ANALYSIS_SUFFIX,
    MODEL_REPORT_SUFFIX,
    REPORT_FILE,
    RunLayout,
    model_kernels_path,
)


@dataclass
class ReportInputs:
    """What the sections read: the typed result and the run's arrays (loaded once).

    ``root`` is the run directory, or the folder of a model-file analysis (``kind == "model"``),
    which has no snapshots, probes or metrics: those sections say "no data"."""

    root: Path
    a: AnalysisResult
    seeds: SeedsSummary | None
    probe_x: NDArray[np.float32] | None
    probe_maps: dict[int, dict[str, NDArray[np.float32]]]
    final: dict[str, NDArray[Any]]
    kind: str = "run"
    analysis_path: Path | None = None

    @property
    def first(self) -> LayerResult | None:
        return self.a.first_layer

    @property
    def probe_sets(self) -> list[str]:
        return self.a.feature_maps.probe_sets if self.a.feature_maps is not None else []

    def probe_image(self) -> NDArray[Any] | None:
        """The last training probe image (channel 0), the report's running example."""
        idx = [i for i, s in enumerate(self.probe_sets) if s == "train"]
        if self.probe_x is None or not idx:
            return None
        return self.probe_x[idx[-1], 0]

    def snapshot(self, epoch: int) -> dict[str, NDArray[Any]]:
        return drawable(read.read_tensors(RunLayout(self.root).snapshot(epoch)))

    def snapshot_epochs(self) -> list[int]:
        """The epochs with a kernel snapshot on disk, ascending (not necessarily contiguous)."""
        if self.kind != "run":
            return []
        return list(RunLayout(self.root).snapshot_files())


def drawable(tensors: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """A 1-D conv weight (O, C, K) as 1 x K images (what it computes on a 1 x L signal)."""
    return {k: v[:, :, None, :] if v.ndim == 3 else v for k, v in tensors.items()}


def load_inputs(target: str | Path) -> ReportInputs:
    """Read a run directory (``analysis.json`` and the arrays beside it) or a model-file analysis
    JSON (``MODEL.analysis.json`` written by ``convlens analyze MODEL``)."""
    from convlens.analysis.measure.featuremaps import load_probes

    root = Path(target)
    if root.is_file():
        if root.suffix.lower() != ".json":
            raise ConvlensError(
                f"{str(root)!r} is not an analysis: give a run directory or the MODEL.analysis.json "
                f"that `convlens analyze {root.name}` writes (analyse the model file first)",
                hint_key="no_analysis",
            )
        return _load_model_inputs(root)
    run = RunLayout(root)
    if not run.analysis.is_file():
        raise ConvlensError(
            f"{str(root)!r} has no analysis.json: analyse the run before building its report",
            hint_key="no_analysis",
        )
    a = AnalysisResult.read(run.analysis)
    if a.run is None:
        raise ConvlensError(
            f"{str(run.analysis)!r} is not the analysis of a training run; give the analysis file "
            "itself to report a model file"
        )
    seeds = SeedsSummary.read(run.seeds_json) if run.seeds_json.is_file() else None
    probe_x, probe_maps = load_probes(run.probes_dir)
    final = drawable(read.read_tensors(run.model)) if run.model.is_file() else {}
    return ReportInputs(root, a, seeds, probe_x, probe_maps, final, "run", run.analysis)


def _load_model_inputs(path: Path) -> ReportInputs:
    """A model-file analysis: the weights are read back from a ``.safetensors`` model file, or
    from the ``MODEL.kernels.safetensors`` that ``convlens analyze`` writes beside the analysis
    of any other format (the report never imports torch)."""
    a = AnalysisResult.read(path)
    final: dict[str, NDArray[Any]] = {}
    weights = Path(a.source.path)
    if not weights.is_absolute():
        weights = path.parent / weights
    kernels = model_kernels_path(path)
    if weights.suffix == ".safetensors" and weights.is_file():
        final = drawable(read.read_tensors(weights))
    elif kernels.is_file():  # the kernels `convlens analyze` kept of a .pt/.onnx file
        final = drawable(read.read_tensors(kernels))
    return ReportInputs(path.parent, a, None, None, {}, final, "model", path)


def default_report_path(inp: ReportInputs) -> Path:
    """``RUN/report.html``, or ``MODEL.report.html`` beside ``MODEL.analysis.json``."""
    if inp.kind == "run" or inp.analysis_path is None:
        return RunLayout(inp.root).report
    name = inp.analysis_path.name
    suffix = MODEL_ANALYSIS_SUFFIX
    stem = name[: -len(suffix)] if name.endswith(suffix) else inp.analysis_path.stem
    return inp.analysis_path.with_name(stem + MODEL_REPORT_SUFFIX)


def check_report_destination(inp: ReportInputs, dest: Path) -> None:
    """Refuse to write the report over what it reads or over any file that is not a report: the
    analysis itself, a file inside the run directory other than ``report.html``, the analysed
    model file, or any existing file that does not end in ``.html``."""
    if inp.analysis_path is not None and dest.resolve() == inp.analysis_path.resolve():
        raise ConvlensError(f"the report would overwrite its own analysis {str(dest)!r}")
    target = dest.resolve()
    if inp.kind == "run" and target.parent == inp.root.resolve() and dest.name != REPORT_FILE:
        raise ConvlensError(
            f"the report would overwrite {str(dest)!r} inside the run directory; write it to "
            "report.html there or outside the run"
        )
    model = inp.a.source.path if inp.a.source.kind == "model_file" else None
    if model is not None and Path(model).exists() and target == Path(model).resolve():
        raise ConvlensError(f"the report would overwrite the analysed model file {str(dest)!r}")
    if dest.exists() and dest.suffix.lower() not in (".html", ".htm"):
        raise ConvlensError(
            f"the report would overwrite {str(dest)!r}, which is not an HTML file; choose a "
            "new path ending in .html"
        )
    if dest.exists() and not _is_convlens_report(dest):
        raise ConvlensError(
            f"the report would overwrite {str(dest)!r}, which is not a convlens report; move it "
            "or choose another path (--out)"
        )


REPORT_MARKERS = (b'<meta name="generator" content="convlens">', b"<title>convlens report:")
"""What marks an existing file as a convlens report (the generator tag; reports written before it
have the title), so that rewriting the report never replaces a user's own HTML."""


def _is_convlens_report(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return any(m in head for m in REPORT_MARKERS)
