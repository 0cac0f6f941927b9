"""The process group, read from torchrun's environment, and an error-carrying gather.

torchrun (c10d rendezvous) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` for every process. :func:`init` joins the group once with the backend for the device
(``gloo`` on CPU, ``nccl`` when training on CUDA) and a timeout on every collective
(``CONVLENS_DIST_TIMEOUT`` seconds, default :data:`DEFAULT_TIMEOUT_S`), so a rank that dies or hangs
makes the others fail instead of waiting forever. Without those variables nothing is initialised and
the world size is 1: every helper here is then the identity, on the same code path.

**Errors.** Every collective of the analysis goes through :func:`gather`, which sends each rank's
payload *or its error* to every rank. When any rank failed, rank 0 raises one error naming the first
failed rank and its cause (``rank 1: image 'x.png' cannot be decoded ...``) and the other ranks exit
with status 2 without printing, so the job ends with one line. A rank that a signal kills cannot
report: the others then fail in the collective (gloo notices the closed connection, or the timeout
fires), and every surviving node says so in one line from its first local rank (``LOCAL_RANK`` 0;
its other ranks exit with status 2 silently): rank 0 may be among the lost, e.g. when the node that
hosts the rendezvous store and rank 0 dies, so no survivor waits for it to speak.

**Which process writes.** The process with global rank 0 writes every file and prints the results.
With the static rendezvous (``--master_addr``/``--master_port`` and ``--node_rank``) torchrun gives
node ``k`` the global ranks ``k * nproc_per_node ...``, so rank 0 runs on ``--node_rank 0``; with the
``c10d`` rendezvous ranks follow the order the nodes joined and ``--node_rank`` is not used.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from convlens.errors import ConvlensError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 600
"""Seconds a collective waits for the other ranks before failing (``CONVLENS_DIST_TIMEOUT``)."""
TIMEOUT_ENV = "CONVLENS_DIST_TIMEOUT"
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` (1 without torchrun), its backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True when torchrun (or another launcher with the same variables) started this process."""
    return all(k in os.environ for k in _ENV)


def timeout_s() -> int:
    """The collective timeout in seconds, from ``CONVLENS_DIST_TIMEOUT`` (a positive integer)."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConvlensError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def _group_possible() -> bool:
    """Whether a process group can exist: torchrun launched this process, or torch.distributed is
    already imported (a caller's own group). Otherwise nothing here imports torch: a weights-only
    analysis stays torch-free."""
    return launched() or "torch.distributed" in sys.modules


def init(device: str = "cpu") -> Context:
    """Join the process group when launched by torchrun (once; later calls return the same)."""
    if not _group_possible():
        return Context()
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        return context()
    if not launched() or int(os.environ["WORLD_SIZE"]) <= 1:
        return Context()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    seconds = timeout_s()
    try:
        tdist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))
    except Exception as exc:  # c10d raises RuntimeError/DistNetworkError/TimeoutError
        raise ConvlensError(
            f"rank {os.environ.get('RANK')}: cannot join the process group at "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} within {seconds} s "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    # leave the group when the interpreter exits (before the C++ teardown): a group still alive
    # then can abort the process ("terminate called without an active exception") after its work
    atexit.register(shutdown)
    if backend == "nccl":
        import torch

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return context()


def refuse_distributed(what: str) -> None:
    """Refuse to run ``what`` under torchrun with more than one process: one line from rank 0,
    the other ranks exit 2 silently."""
    if not launched() or int(os.environ["WORLD_SIZE"]) <= 1:
        return
    if os.environ["RANK"] != "0":
        raise SystemExit(2)
    raise ConvlensError(
        f"{what} runs in one process; under torchrun use `train` and `analyze` (world size "
        f"{os.environ['WORLD_SIZE']})"
    )


def context() -> Context:
    """The current :class:`Context` (world size 1 when no group is initialised)."""
    if not _group_possible():
        return Context()
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return Context()
    return Context(
        rank=tdist.get_rank(),
        world_size=tdist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(tdist.get_backend()),
    )


def is_main() -> bool:
    """True on rank 0, and always without torchrun."""
    return context().is_main


def shutdown() -> None:
    """Leave the process group (if joined)."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Failure:
    """A rank's error, as sent to the others: its one-line message and how it should exit."""

    message: str
    user_error: bool  # ConvlensError/OSError/MemoryError (exit 2) or a bug (exit 1)
    hint_key: str | None = None


class RankFailed(ConvlensError):
    """Raised on rank 0 when a rank failed (bad input or environment); already agreed by all ranks."""


class RankCrashed(RuntimeError):
    """Raised on rank 0 when a rank hit a bug; already agreed by all ranks."""


def failure_of(exc: BaseException) -> Failure:
    """The :class:`Failure` that describes ``exc`` in one line, as the CLI would print it."""
    from convlens.errors import describe_memory_error, describe_os_error

    if isinstance(exc, ConvlensError):
        return Failure(_first_line(exc), True, getattr(exc, "hint_key", None))
    if isinstance(exc, OSError):
        return Failure(describe_os_error(exc), True)
    if isinstance(exc, MemoryError):
        return Failure(describe_memory_error(exc), True)
    return Failure(f"{type(exc).__name__}: {_first_line(exc)}", False)


def gather(payload: T | Failure, what: str, *, to_main: bool = False) -> list[T]:
    """Every rank's ``payload`` in rank order (``all_gather_object``), or stop the job.

    A rank passes a :class:`Failure` instead of its payload when its part failed. If any rank did,
    rank 0 raises :class:`RankFailed` / :class:`RankCrashed` for the lowest such rank and the
    others raise ``SystemExit(2)`` (nothing printed). When the collective itself fails (a rank was
    killed, or the timeout passed), rank 0 raises a :class:`ConvlensError` naming ``what``.

    ``to_main``: only rank 0 receives the payloads (``gather_object``; the others get ``[]``), after
    every rank has learnt from a small ``all_gather_object`` of the statuses whether all succeeded:
    large per-image payloads then never reach the other ranks' memory."""
    import torch.distributed as tdist

    ctx = context()
    if not ctx.distributed:
        if isinstance(payload, Failure):  # pragma: no cover - callers re-raise locally instead
            raise ConvlensError(payload.message)
        return [payload]
    out: list[Any] = [None] * ctx.world_size
    status = payload if isinstance(payload, Failure) or not to_main else None
    _collective(lambda: tdist.all_gather_object(out, status), ctx, what)
    if to_main and not any(isinstance(p, Failure) for p in out):
        out = [None] * ctx.world_size if ctx.is_main else []
        _collective(
            lambda: tdist.gather_object(payload, out if ctx.is_main else None, dst=0), ctx, what
        )
        return out
    failed = [(r, p) for r, p in enumerate(out) if isinstance(p, Failure)]
    if failed:
        if not ctx.is_main:
            raise SystemExit(2)
        rank, f = failed[0]
        if f.user_error:
            raise RankFailed(f"rank {rank}: {f.message}", hint_key=f.hint_key)  # type: ignore[arg-type]
        raise RankCrashed(f"rank {rank}: {f.message}")
    return out


def _collective(op: Callable[[], object], ctx: Context, what: str) -> None:
    """Run one c10d collective; a lost peer or a timeout becomes one line per surviving node."""
    try:
        op()
    except Exception as exc:
        raise lost_peers(ctx, what, exc) from None


def lost_peers(ctx: Context, what: str, exc: BaseException) -> BaseException:
    """What a rank raises when a collective failed because other ranks were lost (killed, a node
    gone, or the timeout passed): on rank 0 and on the first local rank of every other node a
    :class:`RankFailed` with one line naming this rank and what it was doing (not rank 0: that
    nothing was written by it); on the other ranks ``SystemExit(2)``, silently."""
    if not (ctx.is_main or ctx.local_rank == 0):
        return SystemExit(2)
    writer = "" if ctx.is_main else "; rank 0, which writes the results, may be among them"
    return RankFailed(
        f"rank {ctx.rank}: lost the other ranks while gathering {what} (a rank or node was killed "
        f"or did not answer within {timeout_s()} s{writer}): "
        f"{_first_line(exc)}"
    )


def checked(fn: Callable[[], T], what: str, *, to_main: bool = False) -> list[T]:
    """Run ``fn`` on every rank and :func:`gather` its results (or its error)."""
    if not context().distributed:
        return [fn()]
    try:
        value: T | Failure = fn()
    except (RankFailed, RankCrashed):
        raise
    except Exception as exc:
        value = failure_of(exc)
    return gather(value, what, to_main=to_main)


def collective(fn: Callable[[], T], what: str) -> T:
    """Run a whole command on every rank: an error anywhere ends the job with one line from rank 0.

    After ``fn`` returns or fails on this rank, every rank meets in one last :func:`gather`; a
    rank that failed first inside a collective of ``fn`` has already been reported there."""
    if not context().distributed:
        return fn()
    try:
        value = fn()
    except (RankFailed, RankCrashed):
        raise
    except Exception as exc:
        gather(failure_of(exc), what)
        raise  # pragma: no cover - gather raises on every rank when one failed
    gather(None, what)
    return value
