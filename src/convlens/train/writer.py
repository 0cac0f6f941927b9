"""Run-directory writers: :class:`OrderedWriter` writes in order on a background thread, off the
training path; :class:`InlineWriter` writes at once on the calling thread.

The trainer uses the background writer on CUDA, where the training thread only queues GPU work and
a CPU core is free for the writes, and the inline one on the CPU, where torch already runs an
intra-op thread per core: a writer thread there competes with those threads for cores and for the
GIL, and cost more wall time than the writes themselves (measured in docs/benchmarks.md, P3).

Jobs run strictly in submission order, so whatever a kill leaves on disk is a prefix of the
submitted writes: a checkpoint for epoch ``e`` is only ever written after the snapshots, probes and
metrics of every epoch up to ``e``. Errors in a job are re-raised on the next ``submit``/``close``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

NICE = 0
"""The writer thread's niceness (Linux, best effort; 0 leaves it alone). It was 19: on a busy
machine a starved thread that holds the GIL stalls the training thread too, and the last writes
took seconds; measured on a loaded 2-core machine, 0 was no slower than 10 or 19 (docs/benchmarks.md, P3)."""


class OrderedWriter:
    def __init__(self) -> None:
        self._q: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._handoff = False
        self._thread = threading.Thread(target=self._work, name="convlens-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        # optional, best effort: a lower priority for the writes (see NICE)
        if NICE:
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while not self._handoff:
            job = self._q.get()
            try:
                if job is None:
                    return
                self._run(job)
            finally:
                self._q.task_done()

    def _run(self, job: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
        try:
            if self._error is None:
                fn, args = job
                fn(*args)
        except BaseException as exc:  # re-raised in the training thread
            self._error = exc

    def _raise(self) -> None:
        # sticky: once a write failed, every later submit/close raises and no later job runs, so
        # nothing after a missing file (a checkpoint after a lost snapshot) reaches the disk
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._q.put((fn, args))

    def close(self) -> None:
        """Finish every submitted write, then re-raise the first error.

        The writer thread finishes the job it is running and stops; the calling thread (which
        would only wait otherwise) runs the rest, in order, at its own priority. A niced thread on
        a busy machine can otherwise take seconds to get through the last writes."""
        self._handoff = True
        self._q.put(None)  # wakes the thread if it waits for a job
        self._thread.join()
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._run(job)
        self._raise()


class InlineWriter:
    """The :class:`OrderedWriter` interface, writing at once: ``submit`` runs the job (so order and
    errors are the caller's), ``close`` does nothing."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    def close(self) -> None:
        return None
