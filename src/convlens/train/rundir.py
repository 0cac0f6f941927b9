"""The run directory's writer: atomic tensor/JSON writes, the lock, and refusing to clobber what
is not a run. Every path comes from :class:`convlens.runs.layout.RunLayout` (the layout is
described there) and every read goes through :mod:`convlens.runs.read`.

A run directory may also hold files that are not convlens's: ``--force`` removes only the names
in :data:`~convlens.runs.layout.OWN_FILES` / :data:`~convlens.runs.layout.OWN_FOLDERS` (and the
demo's ``seeds/seed-N`` runs), never anything else.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from convlens._atomic import TMP_PATTERN, write_bytes
from convlens.errors import ConvlensError
from convlens.runs import read
from convlens.runs.layout import (
    LOCK_FILE,
    OWN_FILES,
    OWN_FOLDERS,
    SEED_RUN,
    SEEDS_DIR,
    RunLayout,
)
from convlens.runs.records import RunRecord

_NUMPY_DTYPES = frozenset(
    {torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32}
    | {torch.int64, torch.uint8, torch.bool}
)

# run directories this process holds the lock of (the lock is re-entrant within a process)
_HELD: dict[str, int] = {}


def _remove_own(root: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove what convlens wrote in ``root`` (see :data:`OWN_FILES`) but ``keep``; leave
    everything else."""
    if not root.is_dir():
        return
    for name in (n for n in OWN_FILES if n not in keep):
        path = root / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    _remove_tmp(root)
    for sub, pattern in OWN_FOLDERS.items():
        folder = root / sub
        if not folder.is_dir() or folder.is_symlink():
            continue
        for p in folder.iterdir():
            if (pattern.match(p.name) or TMP_PATTERN.match(p.name)) and not p.is_dir():
                p.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing foreign is left in it
    seeds = root / SEEDS_DIR
    if seeds.is_dir() and not seeds.is_symlink():
        for p in seeds.iterdir():
            if SEED_RUN.match(p.name) and p.is_dir() and not p.is_symlink():
                _remove_own(p)
                with contextlib.suppress(OSError):
                    p.rmdir()
        with contextlib.suppress(OSError):
            seeds.rmdir()


def _remove_tmp(folder: Path) -> None:
    for p in folder.iterdir():
        if TMP_PATTERN.match(p.name) and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)


def _is_own_leftover(name: str) -> bool:
    """The lock file or an orphaned temporary file: not content of a folder."""
    return name == LOCK_FILE or bool(TMP_PATTERN.match(name))


class RunDir(RunLayout):
    """Atomic writers (and the lock) for one run directory; its paths are :class:`RunLayout`'s."""

    def is_demo(self) -> bool:
        """A run written by ``convlens demo`` (a ``demo.json`` marker; older demos: ``seeds.json``
        beside ``run.json``)."""
        return self.demo.is_file() or (self.is_run() and self.seeds_json.is_file())

    def has_content(self) -> bool:
        """``root`` is a folder holding anything besides the lock and orphaned temporary files."""
        if not self.root.is_dir():
            return False
        return any(not _is_own_leftover(p.name) for p in self.root.iterdir())

    def status(self) -> str | None:
        """The ``status`` recorded in ``run.json``; ``None`` without a readable one."""
        return read.status(self)

    def remove_own(self, keep: tuple[str, ...] = ()) -> None:
        """Remove every file and folder convlens writes here (run, analysis, report, demo seeds),
        and orphaned temporary files; foreign files and folders stay, and so do the top-level
        names in ``keep``."""
        _remove_own(self.root, keep)

    def clean_tmp(self) -> None:
        """Remove the temporary files (``.NAME.XXXXXXXX.tmp``) a killed writer left in the run
        directory and its own sub-folders."""
        folders = [self.root, *(self.root / sub for sub in OWN_FOLDERS)]
        seeds = self.seeds_dir
        if seeds.is_dir():
            for p in seeds.iterdir():
                if SEED_RUN.match(p.name) and p.is_dir():
                    folders += [p, *(p / sub for sub in OWN_FOLDERS)]
        for folder in folders:
            if folder.is_dir() and not folder.is_symlink():
                _remove_tmp(folder)

    def check_unlocked(self) -> None:
        """Raise the :meth:`lock` error if another process holds the lock now; touches nothing."""
        import fcntl

        path = self.lock_file
        if os.path.realpath(self.root) in _HELD:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return  # no lock file (or none we can read): lock() itself decides
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise self._locked_error(fd) from None
        finally:
            os.close(fd)

    def _locked_error(self, fd: int) -> ConvlensError:
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        return ConvlensError(
            f"run directory {str(self.root)!r} is in use by another convlens process "
            f"(pid {holder}); wait for it to finish or choose another directory"
        )

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive advisory lock (``flock`` on ``RUN/.lock``, holding our pid) while
        writing the run; a second writer gets a :class:`ConvlensError` naming the holder.

        Creates ``root`` (and its missing parents) when needed and removes those again if they
        are still empty at the end. Re-entrant within one process. A lock file left by a killed
        process does not block: the kernel drops its lock with the process.
        """
        import fcntl

        if self.root.exists() and not self.root.is_dir():
            raise ConvlensError(
                f"run directory {str(self.root)!r} exists and is not a folder",
                hint_key="not_a_folder",
            )
        created = [p for p in (self.root, *self.root.parents) if not p.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.root)
        if key in _HELD:
            yield
            return
        path = self.lock_file
        fd = -1
        try:
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    err = self._locked_error(fd)
                    os.close(fd)
                    fd = -1
                    raise err from None
                # the holder before us may have removed the file between our open and our lock
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
                fd = -1
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            _HELD[key] = fd
            yield
        finally:
            if fd >= 0:
                _HELD.pop(key, None)
                with contextlib.suppress(OSError):
                    path.unlink()  # while still locked: the next writer re-checks the inode
                os.close(fd)
            for p in created:  # deepest first
                with contextlib.suppress(OSError):
                    p.rmdir()

    def read_run(self) -> dict[str, Any]:
        """``run.json`` as the JSON object it holds (:func:`convlens.runs.read.run_json`)."""
        return read.run_json(self)

    def read_record(self) -> RunRecord:
        """``run.json``, typed (:func:`convlens.runs.read.run_record`)."""
        return read.run_record(self)

    # The run directory's own files are written atomically (temporary file, then rename) but not
    # fsync'ed: a killed process leaves whole files either way, and the training loop cannot afford
    # an fsync per write (README, P3).
    def write_run(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
        write_bytes(self.run_json, text.encode("utf-8"))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (:func:`convlens.runs.read.metrics`) as plain dicts."""
        return [row.to_dict() for row in read.metrics(self)]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        write_bytes(self.metrics, text.encode("utf-8"))

    def save_tensors(
        self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None
    ) -> None:
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        if all(v.dtype in _NUMPY_DTYPES for v in clean.values()):
            from safetensors.numpy import save as save_numpy

            # the same bytes as safetensors.torch.save, in about a third of the time
            data = save_numpy({k: v.numpy() for k, v in clean.items()}, metadata=meta)
        else:  # bfloat16 and other dtypes numpy lacks
            from safetensors.torch import save

            data = save(clean, metadata=meta)
        write_bytes(path, data)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        # serialise in memory first: one write of the finished bytes is cheaper than torch.save's
        # many small writes to a file
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes(self.checkpoint, buf.getbuffer())

    def load_checkpoint(self) -> dict[str, Any]:
        if not self.checkpoint.is_file():
            raise ConvlensError(
                f"{str(self.root)!r} has no checkpoint to resume from (its run is {self.status()})"
            )
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise ConvlensError(f"cannot load checkpoint {str(self.checkpoint)!r}: {exc}") from None
        if not isinstance(state, dict):
            raise ConvlensError(f"checkpoint {str(self.checkpoint)!r} does not hold a state dict")
        return state

    def prepare_new(self, force: bool, keep: tuple[str, ...] = ()) -> None:
        """Create the folder for a new run; refuse an existing non-empty folder unless ``force``,
        which removes only convlens's own files (:meth:`remove_own`, but ``keep``), never
        foreign ones."""
        self.prepare_check(force)
        if self.root.is_dir():
            self.remove_own(keep)
        self.root.mkdir(parents=True, exist_ok=True)

    def prepare_check(self, force: bool) -> None:
        """What :meth:`prepare_new` refuses, without touching anything."""
        self.check_unlocked()
        if self.root.exists() and not self.root.is_dir():
            raise ConvlensError(
                f"run directory {str(self.root)!r} exists and is not a folder",
                hint_key="not_a_folder",
            )
        if self.has_content() and not force:
            if self.is_run():
                raise ConvlensError(
                    f"{str(self.root)!r} already holds a previous run; resume it or choose "
                    "another directory",
                    hint_key="run_exists",
                )
            raise ConvlensError(
                f"{str(self.root)!r} exists, is not empty and is not a run; choose another "
                "directory",
                hint_key="folder_not_empty",
            )
