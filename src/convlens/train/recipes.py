"""The demo's training recipe, and why.

Measured with ``python -m bench.recipes`` (faces, 5x5 first layer, 3 seeds per cell; table in
bench/recipes.md, summary in docs/findings.md): with Adam and no weight decay the first-layer kernels stay close to their random
initialisation in shape (about 12% above the random null's 95th percentile after 30-100 epochs,
chance 5%), while decoupled weight decay (AdamW) removes the components the data does not support and
leaves smooth, oriented derivative- and Gabor-like kernels: 54% at weight decay 2 and about 90% at 4
after 100 epochs, with test accuracy unchanged (about 99%). The demo therefore trains the face
classifier itself with AdamW, weight decay 4, 100 epochs; one network serves both the first-layer
story and the in- vs out-of-distribution story. The report also shows a stricter null (random
kernels with the learned kernels' own power spectrum), because weight decay makes kernels smooth and
smooth random kernels also match smooth classical kernels better.
"""

from __future__ import annotations

from typing import Any

DEMO_RECIPE: dict[str, Any] = {
    "data": "faces",
    "model": "faces-cnn",
    "epochs": 100,
    "batch_size": 32,
    "lr": 3e-3,
    "optimizer": "adamw",
    "weight_decay": 4.0,
}

NATURAL_RECIPE: dict[str, Any] = {
    "data": "natural",
    "model": "natural-cnn",
    "epochs": 12,
    "batch_size": 64,
    "lr": 3e-3,
    "optimizer": "adamw",
    "weight_decay": 1.0,
}
"""The recipe of ``convlens demo --data natural`` (docs/natural.md): AdamW as for faces; weight decay
1 chosen on seed 0 of the pilot (``python -m bench.natural_pilot``: 10/16 units above the
spectrum-matched null and 22/48 slices with a Gabor fit R^2 >= 0.7, against 8/16 and 6/48 at 0.05 and
6/16 and 14/48 at 2); 12 epochs keep two seeds with their controls within two minutes on two cores."""

NATURAL_SELECTION: dict[str, Any] = {
    "pilot": "python -m bench.natural_pilot --task TASK --weight-decay WD (docs/natural.md)",
    "seeds": [0],
    "metric": "held-out test accuracy and the first layer's figures (above the nulls, Gabor fits, "
    "orientation bins), one network per task and weight decay",
}
"""How :data:`NATURAL_RECIPE` and its task were chosen: a pilot on seed 0; the demo reports seeds
10-14."""

RECIPE_SELECTION: dict[str, Any] = {
    "sweep": "python -m bench.recipes --seeds 3",
    "seeds": [0, 1, 2],
    "metric": "fraction of first-layer kernels above the random null's 95th percentile",
    "grid": "epochs x AdamW weight decay x first-layer kernel size (bench/recipes.md)",
    "width": "the sweep's network had 8 first-layer units; the demo's has 16 since wave 3, chosen "
    "for the power of the kernel-origin verdict on planted truths (docs/validation.md), not on the "
    "kernel metric",
}
"""How :data:`DEMO_RECIPE` was chosen: by a sweep that maximised the kernel metric on seeds 0-2. The
demo reports seeds disjoint from these (10-14 by default), so its figures are not the ones the
recipe was selected on."""

DEMO_RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    DEMO_RECIPE["data"]: (DEMO_RECIPE, RECIPE_SELECTION),
    NATURAL_RECIPE["data"]: (NATURAL_RECIPE, NATURAL_SELECTION),
}
"""The demo's recipes by dataset, each with how it was chosen (``convlens demo --data``; any other
dataset gets :data:`DEMO_RECIPE` with its own model, and the sweep's record)."""
DEMO_SEED = 10
