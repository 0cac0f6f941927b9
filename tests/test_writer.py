"""OrderedWriter: jobs run in submission order, the rest is finished by close(), errors surface."""

from __future__ import annotations

import threading
import time

import pytest

from convlens.train.writer import OrderedWriter


def test_order_is_kept_across_the_close_handoff():
    done: list[tuple[int, str]] = []
    started = threading.Event()

    def job(i: int) -> None:
        if i == 0:  # a slow first job: the others are still queued when close() takes over
            started.set()
            time.sleep(0.05)
        done.append((i, threading.current_thread().name))

    w = OrderedWriter()
    w.submit(job, 0)
    assert started.wait(10)
    for i in range(1, 200):
        w.submit(job, i)
    w.close()
    assert [i for i, _ in done] == list(range(200))
    assert done[0][1] == "convlens-writer"
    assert done[-1][1] == threading.current_thread().name  # finished by the closing thread


def test_error_stops_later_jobs_and_is_raised():
    done: list[int] = []
    w = OrderedWriter()

    def boom() -> None:
        raise OSError("disk full")

    w.submit(done.append, 1)
    w.submit(boom)
    w.submit(done.append, 2)
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert done == [1]
