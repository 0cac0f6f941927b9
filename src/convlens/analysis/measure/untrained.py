"""Untrained controls for the activation and OOD measurements: the same architecture, not trained.

Two controls, each run through exactly the same activation code as the trained network:

- ``epoch 000``: the run's own initial weights. The trainer initialises the model under
  ``torch.manual_seed(run seed)``, so rebuilding it that way gives the whole initial network (conv
  layers *and* head); the conv weights are then taken from ``snapshots/epoch-000.safetensors`` (the
  record of what the initial weights were), and a note says when the rebuilt ones differ.
- ``fresh init (seed S)``: the same architecture initialised under ``torch.manual_seed(S)`` with
  ``S = run seed + FRESH_SEED_OFFSET``: a second draw of random weights, so that a figure of the one
  initial network is not taken for a property of random networks in general.

Whatever the untrained networks already do (e.g. respond more weakly to low-contrast crops after
standardisation) is not evidence of anything learned from the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from convlens.analysis.result import Control, LayerResult

FRESH_SEED_OFFSET = 1000
"""The fresh-init control uses ``torch.manual_seed(run seed + FRESH_SEED_OFFSET)``."""

EPOCH0 = "epoch 000"


@dataclass
class Untrained:
    """One untrained network: its name, how it was made, and the module (eval mode)."""

    name: str
    description: str
    model: nn.Module


def _build(spec_dict: dict[str, Any], seed: int) -> nn.Module:
    from convlens.models import ModelSpec, build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(ModelSpec.from_dict(spec_dict))
    model.eval()
    return model


def untrained_models(
    spec_dict: dict[str, Any], run_seed: int, epoch0: dict[str, NDArray[Any]] | None
) -> tuple[list[Untrained], list[str]]:
    """The ``epoch 000`` and ``fresh init`` controls of a run (see the module docstring), and notes."""
    notes: list[str] = []
    init = _build(spec_dict, run_seed)
    desc = f"the run's initial weights (model rebuilt under torch.manual_seed({run_seed})"
    if epoch0:
        state = init.state_dict()
        differs = [
            k for k, v in epoch0.items() if k in state and not np.array_equal(state[k].numpy(), v)
        ]
        loaded = {k: torch.from_numpy(np.array(v)) for k, v in epoch0.items() if k in state}
        init.load_state_dict(loaded, strict=False)
        desc += "; conv weights from snapshots/epoch-000.safetensors)"
        if differs:
            notes.append(
                "untrained control: the rebuilt initial conv weights differ from "
                f"snapshots/epoch-000 ({', '.join(sorted(differs))}); the snapshot's are used, the "
                "head is the rebuilt one"
            )
    else:
        desc += "; no epoch-000 snapshot to check it against)"
    fresh_seed = run_seed + FRESH_SEED_OFFSET
    fresh = Untrained(
        f"fresh init (seed {fresh_seed})",
        f"the same architecture freshly initialised under torch.manual_seed({fresh_seed}) "
        f"(run seed + {FRESH_SEED_OFFSET})",
        _build(spec_dict, fresh_seed),
    )
    return [Untrained(EPOCH0, desc, init), fresh], notes


def fresh_from_factory(
    factory: str, trained_state: dict[str, NDArray[Any]], seed: int
) -> tuple[Untrained | None, str | None]:
    """A fresh-init control for a ``--factory`` model: the factory's module, not loaded with the
    file's weights, built under ``torch.manual_seed(seed + FRESH_SEED_OFFSET)``. ``None`` (with a
    note) when the factory already returns the file's weights (then nothing untrained is known)."""
    from convlens.analysis.model.loading import build_from_factory

    fresh_seed = seed + FRESH_SEED_OFFSET
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fresh_seed)
        model = build_from_factory(factory, None)
    model.eval()
    state = model.state_dict()
    same = [
        k
        for k, v in trained_state.items()
        if k in state and np.asarray(v).size > 1 and np.array_equal(state[k].numpy(), v)
    ]
    if same:
        return None, (
            f"no untrained control: the factory {factory!r} already returns trained weights "
            f"({len(same)} tensor(s) equal to the file's, e.g. {same[0]})"
        )
    return (
        Untrained(
            f"fresh init (seed {fresh_seed})",
            f"the factory's module freshly initialised under torch.manual_seed({fresh_seed}) "
            f"(analysis seed + {FRESH_SEED_OFFSET}), the file's weights not loaded",
            model,
        ),
        None,
    )


def ood_control(layers: list[LayerResult], descriptions: dict[str, str]) -> Control | None:
    """The ``untrained`` entry of ``AnalysisResult.controls``: per layer and OOD set, the AUROC of
    the trained network, of each untrained control, and trained minus control with its interval
    (keys ``LAYER/SET/...``; the full records are in ``layers[i].distribution``)."""
    figures: dict[str, float | None] = {}
    for r in layers:
        d = r.distribution
        if d is None:
            continue
        for set_name, comp in {**d.ood, **d.other}.items():
            key = f"{r.name}/{set_name}"
            figures[f"{key}/auroc_trained"] = comp.auroc
            for c in comp.controls:
                tag = "epoch000" if c.control == EPOCH0 else "fresh_init"
                figures[f"{key}/auroc_{tag}"] = c.auroc
                figures[f"{key}/auroc_diff_{tag}"] = c.auroc_diff
                figures[f"{key}/auroc_diff_{tag}_ci_low"] = c.auroc_diff_ci[0]
                figures[f"{key}/auroc_diff_{tag}_ci_high"] = c.auroc_diff_ci[1]
                figures[f"{key}/auroc_diff_{tag}_p"] = c.auroc_diff_p
    if not figures:
        return None
    text = "; ".join(f"{k}: {v}" for k, v in descriptions.items())
    return Control(
        name="untrained",
        description="the same architecture untrained, through the same activation and OOD code "
        f"({text}); figures: AUROC trained, untrained, and trained minus untrained with its 95% "
        "paired cluster-bootstrap interval and one-sided p (floored at 1/(n_boot+1)); the OOD "
        "verdict (verdicts.ood_learned) is about that difference",
        figures=figures,
    )
