"""A background writer: run-directory writes happen in order on one thread, off the training path.

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


class OrderedWriter:
    def __init__(self) -> None:
        self._q: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="convlens-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        # Best effort: let the training threads win the CPU; the writes only need to finish eventually.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            job = self._q.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    fn, args = job
                    fn(*args)
            except BaseException as exc:  # re-raised in the training thread
                self._error = exc
            finally:
                self._q.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._q.put((fn, args))

    def close(self) -> None:
        self._q.join()
        self._q.put(None)
        self._thread.join()
        self._raise()
