"""Reading result files as untrusted data (size cap, JSON failures as one error) and the
schema versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convlens.errors import ConvlensError

SCHEMA_VERSION = 11
"""Version of the ``analysis.json`` layout. 1 was wave 1's untyped ``"format": "convlens-analysis/1"``;
3 added per-unit figures, kernel controls, the three-way kernel verdict, CKA, and the untrained OOD
controls with cluster-bootstrap intervals and predictions (issue 14); 4 typed ``run`` from the run
directory's records (``RunConfig``, ``DatasetSpec``, ``ModelSpec``) instead of free-form objects;
5 per-unit spectra and the content comparisons of the kernel verdict (issue 22); 6 the
rotation-invariant whitening tests of the ``input_statistics`` control (``Control.whitening``, over
training too) in place of the ZCA-filter similarity (issue 22, item 5); 7 the OOD verdict's three
arms: the distribution over untrained initialisations (``OodComparison.untrained``), the
random-label network (``OodComparison.random_labels``) and the new ``verdicts.ood_learned`` levels;
8 trained vs random labels decided on whole networks (``ContentComparison.test`` says which null) and
the ``recipe_reference`` control (``--reference-run``); 9 ``channels``: what each channel responds
to (exemplars with receptive-field crops, maximising inputs; issue 24); 10 the filter kind and
-3 dB band of each 1-D kernel (``SpectralSummary.responses``, ``bands_3db``; issue 25); 11 the Gabor
fit R^2 of each first-layer unit's best slice (``UnitSummary.gabor_r2``; issue 27)."""

SEEDS_SCHEMA_VERSION = 5
"""Version of ``seeds.json``; 3 added ``verdicts`` (the kernel verdict on all seeds at once); 4 the
OOD verdict on all seeds at once (``verdicts.ood_learned``, networks as the unit); 5 the first-layer
units counted by shape per seed (``census``: trained, random labels, init; issue 27)."""


MAX_RESULT_BYTES = 1 << 29
"""Largest ``analysis.json`` / ``seeds.json`` read (512 MiB), checked from the file size before
reading; JSON nested too deeply to parse is refused too (a result is at most about 8 levels deep)."""


def read_text(p: Path) -> str:
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ConvlensError(f"{str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConvlensError(f"cannot read {str(p)!r}: {exc}") from None
    if size > MAX_RESULT_BYTES:
        raise ConvlensError(
            f"{str(p)!r} is {size} bytes, over the limit of {MAX_RESULT_BYTES} for a convlens result "
            "(MAX_RESULT_BYTES in convlens.analysis.result.io)"
        )
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConvlensError(f"{str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvlensError(f"cannot read {str(p)!r}: {exc}") from None


def loads(text: str, where: str) -> Any:
    def no_constant(name: str) -> Any:  # convlens writes undefined numbers as null, never NaN
        raise ConvlensError(f"{where} holds {name}, which is not JSON; undefined numbers are null")

    try:
        return json.loads(text, parse_constant=no_constant)
    except ConvlensError:
        raise
    except json.JSONDecodeError as exc:
        raise ConvlensError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConvlensError(f"{where} is nested too deeply to be a convlens result") from None
    except ValueError as exc:  # e.g. an integer longer than Python's int-from-text limit
        raise ConvlensError(f"{where} is not valid JSON: {exc}") from None


def check_version(data: Any, where: str, key: str, expected: int, what: str) -> None:
    if not isinstance(data, dict):
        raise ConvlensError(f"{where} is not {what}: expected a JSON object")
    version = data.get(key)
    if version is None:
        old = data.get("format")
        if isinstance(old, str) and old.startswith("convlens-analysis/"):
            raise ConvlensError(
                f"{where} was written by an older convlens ({old}); this version reads "
                f"{key} {expected}: analyse the run again"
            )
        raise ConvlensError(f"{where} is not {what} (no {key}; expected {expected})")
    if version != expected:
        raise ConvlensError(
            f"{where} has {key} {version!r}; this version of convlens reads {expected}"
        )
