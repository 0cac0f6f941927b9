"""``train --resume`` continues a run with the config recorded in its ``run.json``; only
``--epochs`` extends it. An option given on the command line that contradicts the recorded config
(``--data digits`` on a faces run, ``--shuffle-labels`` on a true-label run, another
``--snapshot-every``, ``--device cpu`` on a run trained on CUDA) would otherwise be ignored
silently: it is refused, naming the option."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import RunLayout
from convlens.runs.records import CLI_PARAMS, RunConfig, cli_option


def check_resume_options(out: str | Path, given: RunConfig, typed: Iterable[str]) -> None:
    """Refuse the options typed on the command line (``typed``: the ``train`` command's parameter
    names) whose value in ``given`` (:meth:`RunConfig.from_cli`) differs from the resumed run's
    recorded config (``--epochs`` extends a run and is never refused). ``--device`` agrees with
    a run recorded with ``auto`` when it names the device the run trained on. A missing or
    unreadable ``run.json`` is left to the resume itself, which says so."""
    names = [CLI_PARAMS[n] for n in typed if n in CLI_PARAMS and n != "epochs"]
    if not names or not RunLayout(out).run_json.is_file():
        return
    try:
        rec = read.run_json(out)
        recorded = RunConfig.from_dict(rec.get("config"))
    except ConvlensError:
        return
    for name in names:
        value, was = getattr(given, name), getattr(recorded, name)
        if name == "data":
            from convlens.data.loaders import absolute_data_spec

            value, was = absolute_data_spec(value), absolute_data_spec(was)
        trained_on = str(rec.get("device") or "").split(":")[0]
        if name == "device" and was == "auto" and value == trained_on:
            continue
        if value != was:
            on = f" (it trained on {rec.get('device')})" if name == "device" else ""
            raise ConvlensError(
                f"{cli_option(name, value)} contradicts the resumed run {str(out)!r}, recorded "
                f"with {name} = {was!r}{on}; --resume continues with the recorded config (only "
                "--epochs extends it): drop the option, or train a new run into another --out"
            )
