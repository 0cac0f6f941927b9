"""Which epochs a training run snapshots (kernels + probe feature maps) and checkpoints.

Early training changes the kernels fastest, so the default cadence is log-spaced:

    epoch 0 (the initialisation), every distinct ``round(2 ** (k / 2))`` for k = 0, 1, 2, ...
    that is <= the last epoch, and the last epoch

which gives 0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128, ... (a factor sqrt(2) apart).
``every=N`` gives 0, N, 2N, ... and the last epoch; ``listed`` gives exactly those epochs plus
0 and the last. Epoch 0 is always kept: the analysis uses it as the epoch-000 null.

Pure Python (no torch), so the analysis, the docs and the tests can state the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from convlens.errors import ConvlensError

RULE = "epoch 0, every distinct round(2**(k/2)) <= epochs (k = 0, 1, ...), and the last epoch"
"""The default cadence, in words (written into docs and ``convlens train --help``)."""


def log_spaced(epochs: int) -> list[int]:
    """The default snapshot epochs for a run of ``epochs`` epochs.

    >>> log_spaced(30)
    [0, 1, 2, 3, 4, 6, 8, 11, 16, 23, 30]
    >>> log_spaced(1)
    [0, 1]
    """
    out = {0, epochs}
    k = 0
    while (e := round(2 ** (k / 2))) <= epochs:
        out.add(e)
        k += 1
    return sorted(out)


def snapshot_schedule(
    epochs: int, every: int | None = None, listed: Iterable[int] | None = None
) -> list[int]:
    """The sorted snapshot epochs: log-spaced by default, else every ``every`` epochs, else the
    ``listed`` epochs (0 and the last always included).

    >>> snapshot_schedule(10, every=4)
    [0, 4, 8, 10]
    >>> snapshot_schedule(10, listed=[5, 2])
    [0, 2, 5, 10]
    """
    if every is not None and listed is not None:
        raise ConvlensError(
            "give either a snapshot interval or a list of snapshot epochs, not both"
        )
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConvlensError(f"snapshot interval must be an integer >= 1, got {every!r}")
        return sorted({*range(0, epochs + 1, every), epochs})
    if listed is not None:
        chosen = list(listed)
        for e in chosen:
            if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= epochs:
                raise ConvlensError(
                    f"snapshot epochs must be integers from 0 to {epochs} (the last epoch), got {e!r}"
                )
        return sorted({0, *chosen, epochs})
    return log_spaced(epochs)


def parse_epochs(text: str) -> list[int]:
    """``"0,5,10"`` -> ``[0, 5, 10]``; a clear error for anything else.

    >>> parse_epochs("3, 1,10")
    [3, 1, 10]
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]{1,9}", part):
            raise ConvlensError(
                f"snapshot epochs must be a comma-separated list of epoch numbers, got {text!r}"
            )
        out.append(int(part))
    return out
