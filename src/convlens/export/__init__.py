"""Exports of a run directory to other tools (TensorBoard)."""
