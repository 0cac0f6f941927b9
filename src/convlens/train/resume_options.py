"""``train --resume`` continues a run with the config recorded in its ``run.json``; only
``--epochs`` extends it. An option given on the command line that contradicts the recorded config
(``--data digits`` on a faces run, ``--shuffle-labels`` on a true-label run, another
``--snapshot-every``) would otherwise be ignored silently: it is refused, naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convlens.errors import ConvlensError

# CLI option (as collected by `convlens train`) -> run.json config key
_OPTIONS: dict[str, str] = {
    "data": "data",
    "model": "model",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "optimizer": "optimizer",
    "seed": "seed",
    "shuffle_labels": "shuffle_labels",
    "snapshot_every": "snapshot_every",
    "snapshot_epochs": "snapshot_epochs",
    "snapshots": "snapshots",
}


def check_resume_options(out: str | Path, given: dict[str, Any]) -> None:
    """Refuse options in ``given`` (CLI name -> value, only those typed on the command line)
    whose value differs from the resumed run's recorded config. A missing or unreadable
    ``run.json`` is left to the resume itself, which says so."""
    from convlens.train import RunDir

    if not any(name in _OPTIONS for name in given) or not (Path(out) / "run.json").is_file():
        return
    try:
        rec = RunDir(out).read_run()
    except ConvlensError:
        return
    cfg = rec.get("config") if isinstance(rec, dict) else None
    if not isinstance(cfg, dict):
        return
    for name, value in given.items():
        key = _OPTIONS.get(name)
        if key is None:
            continue
        recorded = cfg.get(key)
        if key == "shuffle_labels":
            recorded = bool(recorded)
        if key == "snapshots":
            recorded = recorded is not False
        if key == "data" and isinstance(value, str) and isinstance(recorded, str):
            from convlens.data.loaders import absolute_data_spec

            value, recorded = absolute_data_spec(value), absolute_data_spec(recorded)
        if value != recorded:
            flag = "--" + ("no-snapshots" if key == "snapshots" else name.replace("_", "-"))
            shown = flag if isinstance(value, bool) else f"{flag} {value!r}"
            raise ConvlensError(
                f"{shown} contradicts the resumed run {str(out)!r}, recorded with "
                f"{key} = {recorded!r}; --resume continues with the recorded config (only "
                "--epochs extends it): drop the option, or train a new run into another --out"
            )
