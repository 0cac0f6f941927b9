"""Untrained controls for the activation and OOD measurements: the same architecture, not trained.

Two kinds, each run through exactly the same activation code as the trained network:

- ``epoch 000``: the run's own initial weights. The trainer initialises the model under
  ``torch.manual_seed(run seed)``, so rebuilding it that way gives the whole initial network (conv
  layers *and* head); the conv weights are then taken from ``snapshots/epoch-000.safetensors`` (the
  record of what the initial weights were), and a note says when the rebuilt ones differ.
- the untrained initialisations: ``N`` networks of the same architecture initialised under
  ``torch.manual_seed(S + i)``, ``S = run seed + FRESH_SEED_OFFSET``, ``i = 0..N-1``
  (:data:`~convlens.analysis.evidence.verdicts.OOD_N_UNTRAINED` by default): a distribution of
  random networks, so that a figure of one initial network is not taken for a property of random
  networks in general (two initialisations can disagree widely). The first of them is the one
  called ``fresh init (seed S)`` in the predictions.

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
"""The untrained initialisations use ``torch.manual_seed(run seed + FRESH_SEED_OFFSET + i)``."""

EPOCH0 = "epoch 000"


@dataclass
class Untrained:
    """One untrained network: its name, how it was made, and the module (eval mode)."""

    name: str
    description: str
    model: nn.Module


def build_untrained(spec_dict: dict[str, Any], seed: int) -> nn.Module:
    """The model of ``spec_dict`` built under ``torch.manual_seed(seed)`` (the global RNG state
    is restored after), in eval mode."""
    from convlens.models import ModelSpec, build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(ModelSpec.from_dict(spec_dict))
    model.eval()
    return model


def fresh_name(seed: int) -> str:
    """The name of the untrained initialisation made under ``torch.manual_seed(seed)``."""
    return f"fresh init (seed {seed})"


def fresh_seeds(seed: int, n: int) -> list[int]:
    """The seeds of ``n`` untrained initialisations for a run or analysis seed ``seed``."""
    return [seed + FRESH_SEED_OFFSET + i for i in range(n)]


def initialisations(spec_dict: dict[str, Any], run_seed: int, n: int) -> list[Untrained]:
    """``n`` untrained initialisations of a run's architecture (see the module docstring)."""
    return [
        Untrained(
            fresh_name(s),
            f"the same architecture freshly initialised under torch.manual_seed({s})",
            build_untrained(spec_dict, s),
        )
        for s in fresh_seeds(run_seed, n)
    ]


def initialisations_text(seeds: list[int], offset_of: str = "run seed") -> str:
    """What the untrained initialisations are, in one line."""
    n = len(seeds)
    which = f"s = {seeds[0]}" if n == 1 else f"s = {seeds[0]}..{seeds[-1]}"
    return (
        f"{n} initialisations of the same architecture, untrained: torch.manual_seed(s), {which} "
        f"({offset_of} + {FRESH_SEED_OFFSET} + i); the distribution of their AUROCs is the "
        "untrained reference"
    )


def untrained_models(
    spec_dict: dict[str, Any], run_seed: int, epoch0: dict[str, NDArray[Any]] | None
) -> tuple[Untrained, list[str]]:
    """The ``epoch 000`` control of a run (see the module docstring), and notes."""
    notes: list[str] = []
    init = build_untrained(spec_dict, run_seed)
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
    return Untrained(EPOCH0, desc, init), notes


def _from_factory(factory: str, seed: int) -> nn.Module:
    from convlens.analysis.model.loading import build_from_factory

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_from_factory(factory, None)
    model.eval()
    return model


def fresh_from_factory(
    factory: str, trained_state: dict[str, NDArray[Any]], seed: int, n: int
) -> tuple[list[Untrained], str | None]:
    """``n`` untrained initialisations of a ``--factory`` model: the factory's module, not loaded
    with the file's weights, built under ``torch.manual_seed(seed + FRESH_SEED_OFFSET + i)``. None
    (with a note) when the factory already returns the file's weights (then nothing untrained is
    known: the first one is checked before the others are built)."""
    seeds = fresh_seeds(seed, n)
    first = _from_factory(factory, seeds[0])
    state = first.state_dict()
    same = [
        k
        for k, v in trained_state.items()
        if k in state and np.asarray(v).size > 1 and np.array_equal(state[k].numpy(), v)
    ]
    if same:
        return [], (
            f"no untrained control: the factory {factory!r} already returns trained weights "
            f"({len(same)} tensor(s) equal to the file's, e.g. {same[0]})"
        )
    return [
        Untrained(
            fresh_name(s),
            f"the factory's module freshly initialised under torch.manual_seed({s}), the file's "
            "weights not loaded",
            first if i == 0 else _from_factory(factory, s),
        )
        for i, s in enumerate(seeds)
    ], None


def ood_control(
    layers: list[LayerResult], descriptions: dict[str, str], seeds: list[int] | None = None
) -> Control | None:
    """The ``untrained`` entry of ``AnalysisResult.controls``: per layer and OOD set, the AUROC of
    the trained network; of the epoch-000 network and trained minus it with its interval; the
    untrained initialisations' median and 2.5/97.5 percentiles and the trained AUROC's empirical p
    among them; and the random-label network's AUROC and trained minus it (keys
    ``LAYER/SET/...``; the full records are in ``layers[i].distribution``)."""
    figures: dict[str, float | None] = {}
    for r in layers:
        d = r.distribution
        if d is None:
            continue
        for set_name, comp in {**d.ood, **d.other}.items():
            key = f"{r.name}/{set_name}"
            figures[f"{key}/auroc_trained"] = comp.auroc
            paired = [("epoch000" if c.control == EPOCH0 else "control", c) for c in comp.controls]
            if comp.random_labels is not None:
                paired.append(("random_labels", comp.random_labels))
            for tag, c in paired:
                figures[f"{key}/auroc_{tag}"] = c.auroc
                figures[f"{key}/auroc_diff_{tag}"] = c.auroc_diff
                figures[f"{key}/auroc_diff_{tag}_ci_low"] = c.auroc_diff_ci[0]
                figures[f"{key}/auroc_diff_{tag}_ci_high"] = c.auroc_diff_ci[1]
                figures[f"{key}/auroc_diff_{tag}_p"] = c.auroc_diff_p
            u = comp.untrained
            if u is not None:
                figures[f"{key}/auroc_untrained_median"] = u.median
                figures[f"{key}/auroc_untrained_p2_5"] = u.interval[0]
                figures[f"{key}/auroc_untrained_p97_5"] = u.interval[1]
                figures[f"{key}/untrained_p"] = u.p_value
    if not figures:
        return None
    text = "; ".join(f"{k}: {v}" for k, v in descriptions.items())
    return Control(
        name="untrained",
        kind="untrained",
        description="the same architecture untrained, through the same activation and OOD code "
        f"({text}); figures: AUROC trained; the epoch-000 network's AUROC and trained minus it with "
        "its 95% paired cluster-bootstrap interval and one-sided p (floored at 1/(n_boot+1)); the "
        "untrained initialisations' median AUROC, 2.5th and 97.5th percentiles and the trained "
        "AUROC's empirical p (1 + k)/(1 + N) among them; the random-label network's AUROC and "
        "trained minus it (paired, as for epoch 000). The OOD verdict (verdicts.ood_learned) is "
        "about these",
        figures=figures,
        seeds=list(seeds or []),
    )
