"""Reference CNNs (torch)."""

from convlens.models.cnn import (
    DEFAULT_MODEL,
    PRESETS,
    ModelSpec,
    SmallCNN,
    build_model,
    make_spec,
    model_names,
)

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "ModelSpec",
    "SmallCNN",
    "build_model",
    "make_spec",
    "model_names",
]
