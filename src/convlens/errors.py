"""Errors raised for bad input.

Every user-facing error is a :class:`ConvlensError` (a :class:`ValueError`), whose message names the
offending value and what was expected. The CLI turns it into a one-line message and exit code 2.

Messages speak in library terms (values, paths, states), never in command-line flags. Where the CLI
has a flag that fixes the problem, the error carries a ``hint_key`` naming the situation, and the
CLI adds its own hint for it:

- ``"run_exists"``: a new run's directory already holds a previous run;
- ``"folder_not_empty"``: a new run's directory is a non-empty folder that is not a run;
- ``"not_a_folder"``: an output directory's path exists and is not a folder;
- ``"pixel_cap"``: an image has more pixels than the cap allows;
- ``"unknown_kernel"``: a kernel name is not in the bank;
- ``"unknown_dataset"``: a dataset spec is none of the known forms;
- ``"cuda_unavailable"``: CUDA was requested and is not available;
- ``"partial_run"``: a run directory has no final model yet (training did not finish);
- ``"no_analysis"``: a run directory has no ``analysis.json`` yet;
- ``"needs_factory"``: activations were asked for on a weights-only file;
- ``"layout_unknown"``: a model's input does not say whether channels come first or last.

Errors from the environment (:class:`OSError`: missing/unreadable files, permission denied, disk
full, symlink loops, ...) and :class:`MemoryError` are user errors too; :func:`describe_os_error`
and :func:`describe_memory_error` turn them into the same kind of one-line message.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Literal

HintKey = Literal[
    "run_exists",
    "folder_not_empty",
    "not_a_folder",
    "pixel_cap",
    "unknown_kernel",
    "unknown_dataset",
    "cuda_unavailable",
    "partial_run",
    "no_analysis",
    "needs_factory",
    "layout_unknown",
]


class ConvlensError(ValueError):
    """Bad input from the user: the message says which value and what was expected.

    ``hint_key`` (see the module docstring) names a situation the CLI has a flag for; ``None`` when
    the message says all there is to say.
    """

    def __init__(self, message: str, *, hint_key: HintKey | None = None) -> None:
        super().__init__(message)
        self.hint_key: HintKey | None = hint_key


def describe_shape(shape: tuple[int, ...]) -> str:
    """``(2, 3)`` -> ``'2x3'``; ``()`` -> ``'scalar'``."""
    return "x".join(str(s) for s in shape) if shape else "scalar"


# convlens._atomic's temporary files (``.NAME.XXXXXXXX.tmp``)
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")

# What to do about an OSError, by errno (the message already names the file and the reason).
_OS_ADVICE = {
    errno.ENOSPC: "free some disk space or write somewhere else",
    errno.EDQUOT: "free some disk space or write somewhere else",
    errno.EACCES: "check its permissions or use another path",
    errno.EPERM: "check its permissions or use another path",
    errno.EROFS: "the file system is read-only; use another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is not a folder; check the path",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ELOOP: "it is a symbolic link loop; fix the link or use another path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EEXIST: "remove it or use another path",
    errno.ENOTEMPTY: "remove its contents or use another path",
    errno.EXDEV: "use a path on the same file system",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "the device reported an I/O error; check the disk",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an :class:`OSError`: the file(s), the reason and what to do.

    >>> describe_os_error(FileNotFoundError(2, "No such file or directory", "/x/y"))
    "'/x/y': No such file or directory (check the path)"
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    if len(names) == 2 and _TMP_NAME.match(os.path.basename(names[0])):
        names = names[1:]  # an atomic write's temporary file: name the real target only
    where = " -> ".join(repr(n) for n in names)
    advice = _OS_ADVICE.get(exc.errno or -1)
    text = f"{where}: {reason}" if where else f"{reason}"
    return one_line(text + (f" ({advice})" if advice else ""))


def describe_memory_error(exc: BaseException) -> str:
    """One line for running out of memory on a size the user chose."""
    detail = one_line(str(exc))
    return (
        "not enough memory for this command"
        + (f" ({detail})" if detail else "")
        + "; use smaller sizes (fewer images, null kernels, pixels or a smaller batch)"
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: :class:`MemoryError`, torch's ``OutOfMemoryError`` or
    its CPU allocator's ``RuntimeError`` (matched by name, without importing torch)."""
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))
    )


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input or environment (exit 2): a :class:`ConvlensError` (which is
    what a failure of third-party code becomes where convlens calls it), an :class:`OSError` or
    running out of memory. Anything else is a bug of convlens (exit 1)."""
    return isinstance(exc, ConvlensError | OSError) or is_out_of_memory(exc)


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_REFERENCE_MODELS = os.path.join(_PACKAGE, "models")


def raised_in_convlens(exc: BaseException) -> bool:
    """Whether convlens's own code was running when ``exc`` was raised, below the frame that caught
    it: a frame of its traceback after the first one lies in a convlens source file (the reference
    models of ``convlens/models`` aside: they run as a user's model does). A call into a user's
    model or another library that fails there is not; a failure in a convlens hook that the model
    ran is (a bug, to be reported as one)."""
    tb = exc.__traceback__
    tb = tb.tb_next if tb is not None else None
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if path.startswith(_PACKAGE + os.sep) and not path.startswith(_REFERENCE_MODELS + os.sep):
            return True
        tb = tb.tb_next
    return False


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the blanks around them) replaced by single spaces."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
