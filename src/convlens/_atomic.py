"""Atomic file writes: write to a temporary name in the same folder, then rename.

The temporary file is ``.NAME.XXXXXXXX.tmp`` beside ``NAME`` (``mkstemp``, so 0600 while it is
written); before the rename it gets the mode an ordinary ``open()`` would have given it
(``0o666 & ~umask``). A process killed mid-write leaves such a file behind; :data:`TMP_PATTERN`
matches them so their owner can clean them up (see ``RunDir.clean_tmp``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from convlens.errors import ConvlensError

#: the names ``atomic_path`` gives its temporary files (mkstemp: 8 characters of [a-z0-9_])
TMP_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _read_umask() -> int:
    """The process umask, read once: from /proc (no side effect) or by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0)
    os.umask(old)
    return old


_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK


def _refuse_special(target: Path) -> None:
    """Refuse to replace anything but a regular file: renaming onto a symlink, a device (``/dev/null``)
    or a named pipe would destroy it instead of writing through it."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError:
        return  # e.g. a path under a file: the write itself reports it
    if not stat.S_ISREG(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise ConvlensError(
            f"{str(target)!r} exists and is {what}; convlens only replaces regular files "
            "(choose another path)"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    if target.is_dir():  # os.replace would fail only after all the work
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    _refuse_special(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


_TMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # mkstemp's alphabet (TMP_PATTERN)


def write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Atomically write ``data`` to ``path``, with the few system calls a training loop can afford.

    The same contract as :func:`atomic_path` (a temporary ``.NAME.XXXXXXXX.tmp`` beside the
    target, created ``O_EXCL`` with the mode an ordinary ``open()`` gives, then renamed; anything
    but a regular file is refused; the temporary file is removed on failure), without a file object,
    ``chmod`` or a ``mkdir`` unless the folder is missing. No ``fsync``: the rename keeps a killed
    process's files whole (the kernel keeps the written pages), which is what resume needs.
    """
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        _refuse_special(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(100):
        name = "".join(_TMP_CHARS[b % len(_TMP_CHARS)] for b in os.urandom(8))
        tmp = target.with_name(f".{target.name}.{name}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as open() does
            break
        except FileExistsError:
            continue
        except FileNotFoundError:
            if attempt:
                raise
            target.parent.mkdir(parents=True, exist_ok=True)
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))
    try:
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        closing, fd = fd, -1  # never closed twice, even when close() itself fails
        os.close(closing)
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""

    def _write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            _fsync(fh)

    return write_with(path, _write)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _fsync(fh: IO[Any]) -> None:
    fh.flush()
    with contextlib.suppress(OSError):
        os.fsync(fh.fileno())
