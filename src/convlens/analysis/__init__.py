"""Analysis of what a CNN learned: every figure with its null baseline (numpy + torch).

Sub-packages by concern: ``model/`` (the user's model: adapters, loading, layers, ONNX graph and
runner, call verification), ``measure/`` (matching, units, patches, CKA, evolution, receptive fields,
feature maps, activations, untrained passes), ``evidence/`` (statistics, verdicts, controls, seeds),
``result/`` (the typed result) and ``orchestration/`` (the shared stages, the run path and the
model-file path). The typed result imports no torch; the analyses themselves are imported lazily,
so reading an ``analysis.json`` (the report, the notebook API) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convlens.analysis.result import SCHEMA_VERSION, AnalysisResult, LayerResult

if TYPE_CHECKING:
    from convlens.analysis.orchestration.model_file import analyze_model_file
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.analysis.orchestration.run_path import analyze_run
    from convlens.analysis.orchestration.stages import analyze_weights

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisResult",
    "AnalyzeOptions",
    "LayerResult",
    "analyze_model_file",
    "analyze_run",
    "analyze_weights",
]


_LAZY = {
    "AnalyzeOptions": "convlens.analysis.orchestration.options",
    "analyze_model_file": "convlens.analysis.orchestration.model_file",
    "analyze_run": "convlens.analysis.orchestration.run_path",
    "analyze_weights": "convlens.analysis.orchestration.stages",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
