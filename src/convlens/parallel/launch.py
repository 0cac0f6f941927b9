"""``python -m convlens.parallel.launch``: torchrun, with a failed job reported once.

It takes torchrun's own arguments (``--nnodes``, ``--node_rank``, ``--nproc_per_node``,
``--master_addr``/``--master_port`` or ``--rdzv-*``, ``--standalone``) and runs
:func:`torch.distributed.run.run` exactly as ``torchrun`` does. What differs is the end of a failed
job: torchrun's agent logs the failure and prints its error summary with a Python traceback after
the worker's own line, and exits 1. Here the agent's log is kept at ``CRITICAL`` and its
``ChildFailedError`` caught, so the worker's one ``convlens: error: ...`` line (a bad input, a failed
rank, or a lost node: :mod:`convlens.parallel.dist`) is the whole output, and the exit status is the
worker's (2 for bad input or a lost peer). A failure of the agent itself (its rendezvous store gone
before the workers started, say) becomes one ``convlens: error:`` line, exit 2.

    python -m convlens.parallel.launch --nnodes 2 --node_rank 0 --nproc_per_node 8 \\
        --master_addr node0 --master_port 29500 -m convlens analyze ...
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LOGLEVEL", "CRITICAL")  # the agent's own loggers read it when made
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:  # a worker failed: it printed its own line
        codes = [int(f.exitcode) for f in exc.failures.values()]
        if any(c == 2 for c in codes):
            return 2
        bad = [c for c in codes if c > 0]
        if bad:
            return bad[0]
        signals = [-c for c in codes if c < 0]
        print(
            f"convlens: error: a worker was killed by signal {signals[0] if signals else '?'}",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # the agent itself (rendezvous, store): one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"convlens: error: the torchrun agent failed: {first}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
