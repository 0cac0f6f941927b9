"""``convlens validate``: the kernel verdicts on planted truths (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path

import click

START = "<!-- validation:start"
END = "<!-- validation:end -->"


def splice(path: Path, tables: str) -> str:
    """``path``'s text with the block between its validation markers replaced by ``tables`` (the
    whole file is ``tables`` when it has no markers or does not exist)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if START not in text or END not in text:
        return tables
    head, rest = text.split(START, 1)
    marker, _ = rest.split("\n", 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}{marker}\n{tables}{END}{tail}"


@click.command("validate")
@click.option(
    "--cases",
    default=None,
    help="Comma-separated planted cases (default: all; see convlens.data.planted).",
)
@click.option("--repetitions", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--seeds",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Seeds per repetition (as convlens demo).",
)
@click.option(
    "--epochs", default=None, type=click.IntRange(min=1), help="Override the recipe's epochs."
)
@click.option(
    "--null-layers",
    "null_repetitions",
    default=200,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Random and blurred-noise layers per null case.",
)
@click.option(
    "--ood-repetitions",
    default=None,
    type=click.IntRange(0, 1000),
    help="Draws per planted OOD case (default: --repetitions; 0 skips them).",
)
@click.option("--out", "out_file", default=None, help="Write the results as JSON here.")
@click.option(
    "--markdown", "md_file", default=None, help="Write the tables as Markdown here (docs)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def validate_cmd(
    cases: str | None,
    repetitions: int,
    seeds: int,
    epochs: int | None,
    null_repetitions: int,
    ood_repetitions: int | None,
    out_file: str | None,
    md_file: str | None,
    quiet: bool,
) -> None:
    """Train the demo recipe and its random-label control on planted truths and print each
    verdict's power and false-positive rate (docs/validation.md)."""
    from convlens._atomic import write_text
    from convlens.analysis.orchestration.validate import markdown, validate
    from convlens.data import planted

    names = [c.strip() for c in cases.split(",")] if cases else None
    for name in names or []:
        planted.parse_spec(f"planted:{name}")  # one line naming an unknown case, before any work
    log = (lambda _line: None) if quiet else (lambda line: click.echo(line, err=True))
    ood_reps = repetitions if ood_repetitions is None else ood_repetitions
    result = validate(
        names, repetitions, seeds, epochs, null_repetitions, log=log, ood_repetitions=ood_reps
    )
    text = markdown(result)
    if out_file:
        write_text(out_file, result.to_json() + "\n")
    if md_file:
        write_text(md_file, splice(Path(md_file), text))
    click.echo(text, nl=False)
