"""Training under torchrun: ``DistributedDataParallel``, each global batch split across ranks.

**Data order.** Every rank draws the epoch's permutation from the run's checkpointed
``torch.Generator`` (seeded with the run's seed, so identical on every rank: this generator state
*is* the sampler state, with the epoch and the world size, in the checkpoint). The permutation is
cut into global batches of ``W x b`` images (``b`` = ``--batch-size`` per rank) and rank ``r``
takes positions ``r, r + W, ...`` of each global batch, the assignment ``DistributedSampler``
makes. Nothing is padded or dropped: a short last batch is split as evenly as it goes.

**Exact gradients.** Each rank's loss is its *sum* of per-image losses times ``W / m`` (``m`` =
images in the global batch); DDP averages gradients over the ``W`` ranks, which gives the mean
gradient over the ``m`` images: the single-process step with batch ``W x b``, up to float
reassociation. The logged loss is summed over ranks (one ``all_reduce`` per batch, so that a non-finite loss stops
every rank at once), the correct count once per epoch.

**Writes.** Rank 0 alone writes the run directory (:func:`rank_run_dir`); the other ranks read it
only to resume. For multi-node resume the run directory must be on a file system every node sees.

**Resume.** The checkpoint records the world size; resuming with another one is refused with one
line (the global batch, hence the run, would change).

With a world size of 1 all of this is the identity: the same batches, ``cross_entropy`` with its
mean, no wrapper, the plain run directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convlens.errors import ConvlensError
from convlens.parallel import dist
from convlens.train.rundir import RunDir


class Step:
    """How one training step is split across the ranks of ``ctx``."""

    def __init__(self, ctx: dist.Context) -> None:
        self.ctx = ctx

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` under torchrun, else ``model`` itself."""
        if not self.ctx.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.ctx.local_rank] if self.ctx.backend == "nccl" else None
        return DistributedDataParallel(model, device_ids=ids)

    def batches(self, perm: torch.Tensor, per_rank: int) -> Iterator[tuple[torch.Tensor, int]]:
        """``(this rank's indices, images in the global batch)`` for each step of an epoch."""
        w = self.ctx.world_size
        size = per_rank * w
        for i in range(0, len(perm), size):
            chunk = perm[i : i + size]
            yield chunk[self.ctx.rank :: w] if w > 1 else chunk, len(chunk)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, m: int) -> torch.Tensor:
        """The loss to differentiate: the batch mean (one process), or this rank's share of it."""
        if not self.ctx.distributed:
            return nn.functional.cross_entropy(logits, y)
        total = nn.functional.cross_entropy(logits, y, reduction="sum")
        return total * (self.ctx.world_size / m)

    def batch_loss(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss, for the log and the NaN check (one sync per batch; one
        ``all_reduce`` under DDP, so every rank sees the same value and stops together)."""
        if not self.ctx.distributed:
            return loss.item()
        import torch.distributed as tdist

        share = loss.item() / self.ctx.world_size  # this rank's sum / m
        t = torch.tensor([share], dtype=torch.float64, device=self._device())
        tdist.all_reduce(t)
        return float(t[0])

    def correct(self, predicted: list[torch.Tensor], labels: list[torch.Tensor]) -> int:
        """How many of the epoch's predictions (per batch, this rank's) hit their labels, summed
        over the ranks: one comparison and one sync per epoch instead of per batch."""
        right = int((torch.cat(predicted) == torch.cat(labels)).sum()) if predicted else 0
        if not self.ctx.distributed:
            return right
        import torch.distributed as tdist

        t = torch.tensor([right], dtype=torch.int64, device=self._device())
        tdist.all_reduce(t)
        return int(t[0])

    def _device(self) -> torch.device:
        """Where a collective's tensor must live: NCCL reduces CUDA tensors only."""
        if self.ctx.backend == "nccl":
            return torch.device("cuda", self.ctx.local_rank)
        return torch.device("cpu")

    def state(self, epoch: int) -> dict[str, Any]:
        """What the checkpoint records about the sharding (the generator state is saved beside)."""
        return {
            "world_size": self.ctx.world_size,
            "backend": self.ctx.backend,
            "sampler": {
                "epoch": epoch,
                "rule": "global permutation from the checkpointed generator; global batch "
                "W x batch_size; rank r takes positions r, r + W, ...",
            },
        }

    def check_resume(self, state: dict[str, Any], where: str) -> None:
        """Refuse a checkpoint written with another world size (one line, exit 2)."""
        saved = int(state.get("world_size", 1))
        if saved != self.ctx.world_size:
            raise ConvlensError(
                f"checkpoint in {where!r} was written by {saved} rank(s) (global batch = {saved} x "
                f"batch size); resuming it with {self.ctx.world_size} would change the run. Resume "
                f"with {saved} rank(s) (torchrun --nproc_per_node {saved}, or no torchrun for 1)"
            )


class _FollowerRunDir(RunDir):
    """The run directory as seen by ranks other than 0: read-only (writes are dropped), and the
    steps that change the folder wait for rank 0 and share its errors."""

    def lock(self) -> AbstractContextManager[None]:  # type: ignore[override]
        return nullcontext()

    def prepare_check(self, force: bool) -> None:
        return None

    def write_run(self, data: dict[str, Any]) -> None:
        return None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        return None

    def save_tensors(self, *_args: Any, **_kw: Any) -> None:
        return None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        return None

    def prepare_new(self, force: bool, keep: tuple[str, ...] = ()) -> None:
        dist.checked(lambda: None, "preparing the run directory")

    def clean_tmp(self) -> None:
        dist.checked(lambda: None, "preparing the run directory")


class _LeaderRunDir(RunDir):
    """Rank 0's run directory: it writes, and shares the outcome of preparing the folder."""

    def prepare_new(self, force: bool, keep: tuple[str, ...] = ()) -> None:
        dist.checked(lambda: RunDir.prepare_new(self, force, keep), "preparing the run directory")

    def clean_tmp(self) -> None:
        dist.checked(lambda: RunDir.clean_tmp(self), "preparing the run directory")


def rank_run_dir(out: str | Path) -> RunDir:
    """The :class:`RunDir` this rank uses: the plain one without torchrun."""
    ctx = dist.context()
    if not ctx.distributed:
        return RunDir(out)
    return _LeaderRunDir(out) if ctx.is_main else _FollowerRunDir(out)
