"""The OOD verdict's three arms on planted truths (:mod:`convlens.analysis.orchestration.validate_ood`).

``python -m bench.ood_arms --reps 10`` prints the table ``convlens validate`` writes into
docs/validation.md; ``--json FILE`` writes the counts and every draw's figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convlens.analysis.orchestration.validate_ood import rates, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # tiny networks: one thread is faster than two that contend
    result = rates(args.reps, log=lambda s: print(s, file=sys.stderr))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
