"""Errors raised for bad input.

Every user-facing error is a :class:`ConvlensError` (a :class:`ValueError`), whose message names the
offending value and what was expected. The CLI turns it into a one-line message and exit code 2.

Messages speak in library terms (values, paths, states), never in command-line flags. Where the CLI
has a flag that fixes the problem, the error carries a ``hint_key`` naming the situation, and the
CLI adds its own hint for it:

- ``"run_exists"``: a new run's directory already holds a previous run;
- ``"folder_not_empty"``: a new run's directory is a non-empty folder that is not a run;
- ``"not_a_folder"``: an output directory's path exists and is not a folder;
- ``"pixel_cap"``: an image has more pixels than the cap allows;
- ``"unknown_kernel"``: a kernel name is not in the bank;
- ``"unknown_dataset"``: a dataset spec is none of the known forms;
- ``"cuda_unavailable"``: CUDA was requested and is not available;
- ``"partial_run"``: a run directory has no final model yet (training did not finish);
- ``"no_analysis"``: a run directory has no ``analysis.json`` yet.
"""

from __future__ import annotations

from typing import Literal

HintKey = Literal[
    "run_exists",
    "folder_not_empty",
    "not_a_folder",
    "pixel_cap",
    "unknown_kernel",
    "unknown_dataset",
    "cuda_unavailable",
    "partial_run",
    "no_analysis",
]


class ConvlensError(ValueError):
    """Bad input from the user: the message says which value and what was expected.

    ``hint_key`` (see the module docstring) names a situation the CLI has a flag for; ``None`` when
    the message says all there is to say.
    """

    def __init__(self, message: str, *, hint_key: HintKey | None = None) -> None:
        super().__init__(message)
        self.hint_key: HintKey | None = hint_key


def describe_shape(shape: tuple[int, ...]) -> str:
    """``(2, 3)`` -> ``'2x3'``; ``()`` -> ``'scalar'``."""
    return "x".join(str(s) for s in shape) if shape else "scalar"
