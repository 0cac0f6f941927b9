"""Analysis of what a CNN learned: every figure with its null baseline (numpy + torch).

The typed result (:mod:`convlens.analysis.result`) imports no torch; the analyses themselves are
imported lazily, so reading an ``analysis.json`` (the report, the notebook API) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convlens.analysis.result import SCHEMA_VERSION, AnalysisResult, LayerResult

if TYPE_CHECKING:
    from convlens.analysis.run import analyze_model_file, analyze_run, analyze_weights

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisResult",
    "LayerResult",
    "analyze_model_file",
    "analyze_run",
    "analyze_weights",
]


def __getattr__(name: str) -> Any:
    if name in ("analyze_model_file", "analyze_run", "analyze_weights"):
        from convlens.analysis import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
