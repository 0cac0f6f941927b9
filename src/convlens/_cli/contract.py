"""The error contract of the ``convlens`` command (see :mod:`convlens.cli` for the rules):
exit codes, one-line messages, flag hints, warnings collected and printed once, ``--debug``."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from convlens.errors import (
    ConvlensError,
    describe_memory_error,
    describe_os_error,
    is_out_of_memory,
    one_line,
)

HINTS = {
    "run_exists": "use --resume to continue it or --force to overwrite it",
    "folder_not_empty": "or use --force: only the files convlens writes are replaced",
    "not_a_folder": "choose another --out",
    "pixel_cap": "raise it with --max-pixels",
    "unknown_kernel": "run `convlens kernels` for the list",
    "unknown_dataset": "see `convlens train --help` for --data",
    "cuda_unavailable": "use --device cpu or auto",
    "partial_run": "finish it with `convlens train --resume --out RUN`",
    "no_analysis": "run `convlens analyze RUN` first",
    "needs_factory": "add --factory package.module:function",
    "layout_unknown": "give --layout NCHW or NHWC",
}


# Warnings known to be harmless for convlens's use (dropped unless --debug).
_HARMLESS_WARNINGS = (
    r"The given NumPy array is not writable",
    r"TypedStorage is deprecated",
    r"weights_only",
    r"os\.fork\(\) was called",
)
EXIT_USAGE = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE


def _debug_requested(args: Sequence[str] | None) -> bool:
    argv = list(sys.argv[1:] if args is None else args)
    head = argv[: argv.index("--")] if "--" in argv else argv
    return os.environ.get("CONVLENS_DEBUG", "") not in ("", "0") or "--debug" in head


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _user_error_line(exc: BaseException) -> str | None:
    """The one line for a user/environment error; ``None`` for a bug."""
    if isinstance(exc, ConvlensError):
        hint = HINTS.get(exc.hint_key or "")
        return f"convlens: error: {one_line(str(exc))}" + (f" ({hint})" if hint else "")
    if isinstance(exc, OSError):
        return f"convlens: error: {describe_os_error(exc)}"
    if is_out_of_memory(exc):
        return f"convlens: error: {describe_memory_error(exc)}"
    return None


class ConvlensGroup(click.Group):
    """The error contract of every ``convlens`` command (see the module docstring)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        debug = _debug_requested(args)
        collected: list[str] = []
        with warnings.catch_warnings():
            warnings.showwarning = _collector(collected, debug)
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.exceptions.NoArgsIsHelpError as exc:
                exc.show()
                code = exc.exit_code
            except click.UsageError as exc:
                sub = exc.ctx.command_path.split()[1:] if exc.ctx is not None else []
                where = " ".join(["convlens", *sub])
                click.echo(
                    f"convlens: error: {one_line(exc.format_message())} (see `{where} --help`)",
                    err=True,
                )
                code = EXIT_USAGE
            except click.ClickException as exc:
                click.echo(f"convlens: error: {one_line(exc.format_message())}", err=True)
                code = EXIT_USAGE
            except click.Abort:
                click.echo("convlens: interrupted", err=True)
                code = EXIT_INTERRUPTED
            else:
                code = rv if isinstance(rv, int) else 0
                for line in collected:
                    click.echo(line, err=True)
        if not standalone_mode:
            return code
        sys.exit(code)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug")) or _debug_requested([])
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # the reader went away (`convlens kernels | head`): stop quietly, like a shell tool
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            _fail("convlens: interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            line = _user_error_line(exc)
            if line is not None:
                _fail(line, EXIT_USAGE)
            detail = one_line(str(exc))
            _fail(
                f"convlens: internal error: {type(exc).__name__}"
                + (f": {detail}" if detail else "")
                + " (rerun with --debug for the traceback)",
                EXIT_BUG,
            )


def _collector(collected: list[str], debug: bool) -> Any:
    """A ``warnings.showwarning`` that keeps one line per distinct warning (printed when the
    command succeeds; on an error its one line is all the user sees)."""

    def show(message: Any, category: type[Warning], *_args: Any, **_kw: Any) -> None:
        text = one_line(str(message))
        if not debug and any(re.search(p, text) for p in _HARMLESS_WARNINGS):
            return
        line = f"convlens: warning: {text} ({category.__name__})"
        if debug:
            click.echo(line, err=True)
        elif line not in collected:
            collected.append(line)

    return show
