"""``convlens demo``: the demo recipe trained on several seeds, each with its random-label control,
analysed, summarised across seeds and reported (:func:`run_demo`, options in :class:`DemoOptions`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convlens._atomic import write_text
from convlens.errors import ConvlensError

if TYPE_CHECKING:
    from convlens.train import TrainConfig


@dataclass(frozen=True)
class DemoOptions:
    """What ``convlens demo`` is asked to do: ``data`` (``None``: the recipe's, bundled faces;
    ``natural``: its own recipe; another dataset keeps the recipe but gets its own default model),
    ``epochs`` (``None``: the recipe's), ``seed`` of the first run (10: disjoint from the recipe sweep's seeds 0-2),
    ``n_seeds`` training runs (``seed, seed+1, ...``), ``n_null`` random kernels in each null
    baseline, ``force`` (write into a folder that is not a previous demo) and ``beside`` (another
    analysed run, e.g. the natural-image demo, shown beside this one's first layer in the report's
    answer; checked before anything is trained)."""

    data: str | None = None
    epochs: int | None = None
    seed: int = 10
    n_seeds: int = 5
    n_null: int = 2000
    force: bool = False
    beside: str | None = None

    @classmethod
    def of(cls, options: DemoOptions | None, kw: dict[str, Any]) -> DemoOptions:
        """``options``, or one built from the keyword arguments ``kw`` (both at once is refused)."""
        if options is None:
            return cls(**kw)
        if kw:
            raise TypeError(f"give DemoOptions or keyword arguments, not both ({', '.join(kw)})")
        return options


def demo_recipe(data: str | None, epochs: int | None) -> dict[str, Any]:
    """The demo's training recipe (:data:`convlens.train.recipes.DEMO_RECIPE`; for ``natural``
    :data:`~convlens.train.recipes.NATURAL_RECIPE`). Another dataset keeps the recipe (optimizer,
    weight decay, learning rate, epochs, batch size) except the model,
    which is built for faces: that dataset gets its own default model (see :func:`recipe_notes`)."""
    from convlens.train.recipes import DEMO_RECIPE, DEMO_RECIPES

    recipe = dict(DEMO_RECIPES[data][0] if data in DEMO_RECIPES else DEMO_RECIPE)
    if data is not None and data != recipe["data"]:
        recipe["data"] = data
        recipe.pop("model", None)
    if epochs is not None:
        recipe["epochs"] = epochs
    return recipe


def recipe_notes(recipe: dict[str, Any]) -> list[str]:
    """What of the demo recipe does not apply to ``recipe`` (one line each; empty when all does)."""
    from convlens.train.recipes import DEMO_RECIPE, DEMO_RECIPES

    if recipe.get("data") in DEMO_RECIPES:
        return []
    kept = ", ".join(f"{k} {recipe[k]}" for k in DEMO_RECIPE if k not in ("data", "model"))
    return [
        f"recipe: {DEMO_RECIPE['model']} is built for {DEMO_RECIPE['data']}; {recipe['data']} uses "
        f"its default model; kept: {kept}"
    ]


def run_demo(
    out_dir: str | Path,
    options: DemoOptions | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = lambda _line: None,
    **kw: Any,
) -> Path:
    """Train ``n_seeds`` runs of the demo recipe (seeds ``seed, seed+1, ...``; default 10-14,
    disjoint from the recipe sweep's seeds 0-2), each with a random-label control run
    (``seeds/random-labels-seed-N``, same recipe, permuted labels), analyse each against its
    control, write the across-seeds summary and the report of the first run; return its path.
    ``options`` (:class:`DemoOptions`), or its fields as keyword arguments.

    The first run is ``out_dir`` itself (with snapshots and probes); the others go to
    ``out_dir/seeds/seed-N`` without snapshots. ``out_dir`` must be missing, empty or a previous
    demo (marked by ``demo.json``); ``force`` also takes any other folder, and removes only the
    files convlens writes there (see :meth:`convlens.train.RunDir.remove_own`)."""
    from convlens.analysis import analyze_run
    from convlens.analysis.evidence.seeds import aggregate
    from convlens.analysis.orchestration.options import AnalyzeOptions
    from convlens.parallel.dist import refuse_distributed
    from convlens.pipelines import train_run, write_result
    from convlens.report import build_report
    from convlens.runs.layout import DEMO_FILE, RunLayout
    from convlens.train import RunDir, TrainConfig
    from convlens.train.recipes import DEMO_RECIPES, RECIPE_SELECTION

    opts = DemoOptions.of(options, kw)
    refuse_distributed("the demo")

    recipe = demo_recipe(opts.data, opts.epochs)
    for line in recipe_notes(recipe):
        log(line)
    seeds = [opts.seed + i for i in range(opts.n_seeds)]
    configs = []
    for i, s in enumerate(seeds):
        cfg = TrainConfig(seed=s, **recipe)
        if i > 0:
            cfg.snapshots = cfg.probes = False
        cfg.validate()
        configs.append(cfg)
    root = Path(out_dir)
    run = RunDir(root)
    _demo_check(run, opts.force)
    if opts.beside is not None:
        from convlens.report.beside import read_beside

        read_beside(opts.beside, root)
    t0 = time.perf_counter()
    with run.lock():
        _demo_check(run, opts.force)
        run.remove_own()
        write_text(
            run.demo,
            json.dumps(
                {
                    "format": "convlens-demo/1",
                    "seeds": seeds,
                    "recipe": recipe,
                    "recipe_selection": DEMO_RECIPES[recipe["data"]][1]
                    if recipe["data"] in DEMO_RECIPES
                    else RECIPE_SELECTION,
                }
            )
            + "\n",
        )
        analyses = []
        for i, (s, cfg) in enumerate(zip(seeds, configs, strict=True)):
            run_dir = root if i == 0 else run.seed_run(s)
            log(f"[train {i + 1}/{len(seeds)}] {cfg.data}, seed {s}, {cfg.epochs} epochs ...")
            outcome = train_run(
                cfg, run_dir, force=True, progress=progress, keep=(DEMO_FILE,) if i == 0 else ()
            )
            control = run.random_labels_run(s)
            log(f"      random-label control, seed {s} ...")
            train_run(_control_config(cfg), control, force=True, progress=progress)
            references: tuple[Path, ...] = ()
            if i == 0 and cfg.weight_decay:
                references = (run.reference_run(s),)
                log(f"      reference run without weight decay, seed {s} ...")
                train_run(_reference_config(cfg), references[0], force=True, progress=progress)
            analysis = analyze_run(
                run_dir,
                AnalyzeOptions(
                    n_null=opts.n_null,
                    seed=0,
                    control_runs=(control,),
                    reference_runs=references,
                    channels=i == 0,  # the report shows the first seed's channels
                ),
            )
            analysis.notes.append(selection_note(recipe, s))
            write_result(analysis, RunLayout(run_dir).analysis)
            analyses.append(analysis)
            first = analysis.first_layer
            frac = first.matching.fraction_above_null95 if first and first.matching else None
            log(
                f"      test accuracy {outcome.result.test_accuracy:.3f}; first layer above null "
                f"{frac or 0:.0%} ({time.perf_counter() - t0:.1f} s so far)"
            )
        write_text(run.seeds_json, aggregate(analyses, seeds).to_json(indent=2) + "\n")
        path = build_report(root, beside=opts.beside)
    log(f"[report] done; total {time.perf_counter() - t0:.1f} s")
    return path


def _control_config(cfg: TrainConfig) -> TrainConfig:
    """The random-label control of a demo run: the same config, permuted labels, no snapshots."""
    from dataclasses import replace

    return replace(cfg, shuffle_labels=True, snapshots=False, probes=False)


def _reference_config(cfg: TrainConfig) -> TrainConfig:
    """The demo's reference run: the same config without weight decay (the recipe was selected on
    the kernel metric; this one was not), true labels, no snapshots."""
    from dataclasses import replace

    return replace(cfg, weight_decay=0.0, snapshots=False, probes=False)


def selection_note(recipe: dict[str, Any], seed: int) -> str:
    """What the analysis says about how the demo recipe was chosen and on which seeds."""
    from convlens.train.recipes import (
        DEMO_RECIPE,
        NATURAL_RECIPE,
        NATURAL_SELECTION,
        RECIPE_SELECTION,
    )

    if recipe.get("data") == NATURAL_RECIPE["data"]:
        pilot = NATURAL_SELECTION["seeds"]
        overlap = "disjoint from" if seed not in pilot else "ONE OF (selection bias)"
        return (
            f"recipe and task chosen on a pilot ({NATURAL_SELECTION['pilot']}) on seeds {pilot}, "
            f"on the {NATURAL_SELECTION['metric']}; this run's seed {seed} is {overlap} the "
            "pilot's seeds"
        )
    if recipe.get("data") != DEMO_RECIPE["data"]:
        return f"recipe: generic settings for {recipe.get('data')!r} (not from the recipe sweep)"
    sweep_seeds = RECIPE_SELECTION["seeds"]
    overlap = "disjoint from" if seed not in sweep_seeds else "ONE OF (selection bias)"
    return (
        f"recipe chosen by a sweep ({RECIPE_SELECTION['sweep']}) maximising the "
        f"{RECIPE_SELECTION['metric']} on seeds {sweep_seeds}; this run's seed {seed} is {overlap} "
        f"the sweep's seeds ({RECIPE_SELECTION['width']})"
    )


def _demo_check(run: Any, force: bool) -> None:
    """Refuse an output folder the demo may not write: anything but missing, empty or a previous
    demo, unless ``force``."""
    run.check_unlocked()
    if run.root.exists() and not run.root.is_dir():
        raise ConvlensError(
            f"demo directory {str(run.root)!r} exists and is not a folder",
            hint_key="not_a_folder",
        )
    if force or not run.has_content() or run.is_demo():
        return
    what = "a training run that is not a demo" if run.is_run() else "files that are not a demo run"
    raise ConvlensError(
        f"{str(run.root)!r} holds {what}; choose another directory",
        hint_key="folder_not_empty",
    )


README_START = (
    "<!-- answer:start (generated by `convlens demo --readme README.md`; do not edit) -->"
)
README_END = "<!-- answer:end -->"


def demo_results(out_dir: str | Path) -> tuple[Any, Any]:
    """A finished demo's typed results: ``(analysis of the first seed, seeds summary or None)``."""
    from convlens.analysis.result import AnalysisResult, SeedsSummary
    from convlens.runs.layout import RunLayout

    run = RunLayout(Path(out_dir))
    seeds = SeedsSummary.read(run.seeds_json) if run.seeds_json.is_file() else None
    return AnalysisResult.read(run.analysis), seeds


def demo_answer(out_dir: str | Path) -> list[str]:
    """The one answer (:mod:`convlens.analysis.evidence.answer`) of a finished demo, as text."""
    from convlens.analysis.evidence.answer import answer_lines

    return answer_lines(*demo_results(out_dir))


def readme_answer(out_dir: str | Path) -> str:
    """The README's answer block, generated from a demo's ``analysis.json`` and ``seeds.json``."""
    from convlens.analysis.evidence.answer import readme_block

    return readme_block(*demo_results(out_dir))


def readme_block_of(text: str, where: str = "README") -> str:
    """The generated block between the answer markers of a README's ``text``."""
    if README_START not in text or README_END not in text:
        raise ConvlensError(f"{where} has no answer markers ({README_START} ... {README_END})")
    return text.split(README_START, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"


def update_readme(out_dir: str | Path, readme: str | Path) -> None:
    """Rewrite the block between the answer markers of ``readme`` from the demo in ``out_dir``."""
    p = Path(readme)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConvlensError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    readme_block_of(text, repr(str(p)))
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    block = readme_answer(out_dir)
    write_text(p, f"{head}{README_START}\n{block}{README_END}{tail}")
