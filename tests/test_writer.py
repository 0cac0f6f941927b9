"""Run-directory writers: OrderedWriter keeps submission order, close() finishes the rest, errors
surface; InlineWriter writes at once; the trainer writes inline on the CPU, in order."""

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


def test_inline_writer_writes_at_once_on_the_calling_thread():
    from convlens.train.writer import InlineWriter

    done: list[tuple[int, str]] = []
    w = InlineWriter()
    for i in range(3):
        w.submit(lambda i: done.append((i, threading.current_thread().name)), i)
        assert len(done) == i + 1  # written before submit returns
    w.close()
    assert {name for _, name in done} == {threading.current_thread().name}

    def boom() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        w.submit(boom)


@pytest.mark.slow
def test_training_on_the_cpu_writes_inline(tmp_path, monkeypatch):
    """On the CPU the trainer makes its writes on the training thread (no writer thread: it would
    compete with torch's threads for the cores); the deferred writes land in order."""
    import convlens.train.trainer as trainer_mod
    from convlens.data.datasets import load_bundled
    from convlens.train import RunDir, TrainConfig, Trainer

    threads: set[str] = set()
    order: list[str] = []
    real_save, real_ckpt = RunDir.save_tensors, RunDir.save_checkpoint

    def save(self, path, *a):
        threads.add(threading.current_thread().name)
        order.append(path.parent.name + "/" + path.name)
        return real_save(self, path, *a)

    def ckpt(self, state):
        threads.add(threading.current_thread().name)
        order.append(f"checkpoint@{state['epoch']}")
        return real_ckpt(self, state)

    monkeypatch.setattr(RunDir, "save_tensors", save)
    monkeypatch.setattr(RunDir, "save_checkpoint", ckpt)
    monkeypatch.setattr(trainer_mod, "OrderedWriter", None)  # would fail if the CPU used it
    cfg = TrainConfig(data="faces", epochs=3, ood=["noise"], ood_size=4, device="cpu")
    # a spacing no epoch reaches, whatever the machine's load: one checkpoint, at the end
    ds = load_bundled("faces", 0)
    Trainer(cfg, ds, tmp_path / "r", progress=False, checkpoint_seconds=1e6).train()
    assert threads == {threading.current_thread().name}
    # epochs 0-3 snapshot; the run checkpoints at its end, after its snapshots; then the model
    assert order == [
        "probes/inputs.safetensors",
        "snapshots/epoch-000.safetensors",
        "snapshots/epoch-001.safetensors",
        "snapshots/epoch-002.safetensors",
        "snapshots/epoch-003.safetensors",
        "checkpoint@3",
        "r/model.safetensors",
    ]


def test_a_write_error_is_sticky():
    """After a failed write no later job runs and every later submit/close raises, so nothing
    after a missing file (a checkpoint after a lost snapshot) reaches the disk."""
    done: list[int] = []
    w = OrderedWriter()

    def boom() -> None:
        raise OSError("disk full")

    w.submit(boom)
    w.submit(done.append, 1)
    with pytest.raises(OSError, match="disk full"):
        w.close()
    with pytest.raises(OSError, match="disk full"):
        w.submit(done.append, 2)
    assert done == []


@pytest.mark.slow
def test_a_failing_write_does_not_hide_the_training_error(tmp_path, monkeypatch):
    """A non-finite loss before the first checkpoint, on a disk that refuses the checkpoint: the
    training error is the one raised, the write error a note on it."""
    from convlens.data.datasets import load_bundled
    from convlens.train import RunDir, TrainConfig, Trainer, TrainingError

    def refuse(self, state):
        raise OSError("disk full")

    monkeypatch.setattr(RunDir, "save_checkpoint", refuse)
    cfg = TrainConfig(data="faces", epochs=3, ood=["noise"], ood_size=4, lr=1e30, optimizer="sgd")
    with pytest.raises(TrainingError, match="loss became") as info:
        Trainer(cfg, load_bundled("faces", 0), tmp_path / "r", progress=False).train()
    assert any("disk full" in n for n in getattr(info.value, "__notes__", []))


@pytest.mark.slow
def test_nothing_after_a_failed_snapshot_write_reaches_the_disk(tmp_path, monkeypatch):
    """A snapshot write fails at the run's only flush: neither the metrics nor the checkpoint after
    it are written (a checkpoint past a missing snapshot would make resume skip it), and the error
    is the write's."""
    from convlens.data.datasets import load_bundled
    from convlens.train import RunDir, TrainConfig, Trainer

    real = RunDir.save_tensors

    def save(self, path, *a):
        if path.name == "epoch-002.safetensors":
            raise OSError("disk full")
        return real(self, path, *a)

    monkeypatch.setattr(RunDir, "save_tensors", save)
    cfg = TrainConfig(data="faces", epochs=3, ood=["noise"], ood_size=4)
    ds = load_bundled("faces", 0)
    with pytest.raises(OSError, match="disk full"):  # one flush, at the end, whatever the load
        Trainer(cfg, ds, tmp_path / "r", progress=False, checkpoint_seconds=1e6).train()
    run = RunDir(tmp_path / "r")
    assert not run.checkpoint.exists() and not run.metrics.exists()
    assert sorted(p.name for p in (tmp_path / "r" / "snapshots").iterdir()) == [
        "epoch-000.safetensors",
        "epoch-001.safetensors",
    ]
