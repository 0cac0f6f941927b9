"""``convlens validate``: the kernel verdicts on planted truths (thin: parse, call, print)."""

from __future__ import annotations

from pathlib import Path

import click

START = "<!-- validation:start"
END = "<!-- validation:end -->"
SUMMARY_START = "<!-- validation-summary:start"
SUMMARY_END = "<!-- validation-summary:end -->"


def splice(path: Path, tables: str, start: str = START, end: str = END) -> str:
    """``path``'s text with the block between its ``start``/``end`` markers replaced by ``tables``
    (the whole file is ``tables`` when it has no markers or does not exist)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if start not in text or end not in text:
        return tables
    head, rest = text.split(start, 1)
    marker, _ = rest.split("\n", 1)
    tail = rest.split(end, 1)[1]
    return f"{head}{start}{marker}\n{tables}{end}{tail}"


@click.command("validate")
@click.option(
    "--cases",
    default=None,
    help="Comma-separated planted cases (default: all; see convlens.data.planted).",
)
@click.option("--repetitions", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--first-repetition",
    default=0,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="The first draw of the planted kernel cases' images (a later one gives draws independent "
    "of a recorded run; the null layers and OOD cases keep their draws).",
)
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
@click.option(
    "--readme",
    "readme_file",
    default=None,
    help="Rewrite the short summary between this file's validation-summary markers (README.md).",
)
@click.option(
    "--from",
    "from_file",
    default=None,
    help="Render a recorded validation.json (--markdown/--readme) instead of running one.",
)
@click.option(
    "--redecide",
    "recorded_at",
    default=None,
    metavar="WHERE",
    help="With --from: re-decide the recorded verdicts under the current level for trained vs "
    "random labels (WHERE: the commit the run was recorded at); nothing is retrained.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def validate_cmd(
    cases: str | None,
    repetitions: int,
    first_repetition: int,
    seeds: int,
    epochs: int | None,
    null_repetitions: int,
    ood_repetitions: int | None,
    out_file: str | None,
    md_file: str | None,
    readme_file: str | None,
    from_file: str | None,
    recorded_at: str | None,
    quiet: bool,
) -> None:
    """Train the demo recipe and its random-label control on planted truths and print each
    verdict's power and false-positive rate (docs/validation.md)."""
    from convlens._atomic import write_text
    from convlens.analysis.orchestration.validate import (
        ValidationResult,
        markdown,
        redecide,
        summary_markdown,
        validate,
    )
    from convlens.data import planted
    from convlens.errors import ConvlensError

    names = [c.strip() for c in cases.split(",")] if cases else None
    for name in names or []:
        planted.parse_spec(f"planted:{name}")  # one line naming an unknown case, before any work
    for what, f in (("--markdown", md_file), ("--readme", readme_file)):
        if f and Path(f).exists() and not Path(f).is_file():
            raise ConvlensError(f"{what} {f!r} is not a file")
    if readme_file:
        text = Path(readme_file).read_text(encoding="utf-8") if Path(readme_file).is_file() else ""
        if SUMMARY_START not in text or SUMMARY_END not in text:
            raise ConvlensError(
                f"--readme {readme_file!r} has no {SUMMARY_START} ... {SUMMARY_END} markers; add "
                "them where the summary goes"
            )
    if recorded_at and not from_file:
        raise ConvlensError("--redecide re-decides a recorded run: give it with --from")
    if from_file:
        try:
            result = ValidationResult.from_json(Path(from_file).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ConvlensError(
                f"--from {from_file!r}: not a readable validation.json ({exc})"
            ) from None
        if recorded_at:
            result = redecide(result, recorded_at)
    else:
        log = (lambda _line: None) if quiet else (lambda line: click.echo(line, err=True))
        ood_reps = repetitions if ood_repetitions is None else ood_repetitions
        result = validate(
            names,
            repetitions,
            seeds,
            epochs,
            null_repetitions,
            log=log,
            ood_repetitions=ood_reps,
            first_repetition=first_repetition,
        )
    text = markdown(result)
    if out_file:
        write_text(out_file, result.to_json() + "\n")
    if md_file:
        write_text(md_file, splice(Path(md_file), text))
    if readme_file:
        summary = summary_markdown(result)
        write_text(readme_file, splice(Path(readme_file), summary, SUMMARY_START, SUMMARY_END))
    click.echo(text, nl=False)
