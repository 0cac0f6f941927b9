"""Analysis of what a CNN learned: every figure with its null baseline (numpy + torch)."""

from convlens.analysis.run import analyze_model_file, analyze_run, analyze_weights

__all__ = ["analyze_model_file", "analyze_run", "analyze_weights"]
