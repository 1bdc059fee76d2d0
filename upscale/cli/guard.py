"""Errors, disk faults and signals turned into one clear panel and an exit code (2 for the user's input)."""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import threading

import typer

from upscale.cli.display import console, panel
from upscale.errors import UpscaleError


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a person's ``kill``), raised like Ctrl-C so the same cleanup runs."""


_ELSEWHERE = "write to another disk or folder (--run-dir, --output)"
#: OS errors that are the user's disk or paths, not upscale's bug: errno -> (what, what to do).
DISK_ERRORS = {
    errno.ENOSPC: ("no space left on the disk", f"Free space there, or {_ELSEWHERE}"),
    errno.EDQUOT: ("the disk quota is exceeded", f"Free space there, or {_ELSEWHERE}"),
    errno.EFBIG: ("a file is too large for the file system", f"It limits file sizes (FAT32?): {_ELSEWHERE}"),
    errno.EACCES: ("permission denied", f"Change the folder's permissions, or {_ELSEWHERE}"),
    errno.EPERM: ("operation not permitted", f"Change the folder's permissions, or {_ELSEWHERE}"),
    errno.EROFS: ("the file system is read-only", _ELSEWHERE.capitalize()),
    errno.ENOTDIR: ("a file stands where a folder is expected", "Move the file, or choose another path"),
    errno.EISDIR: ("a folder stands where a file is expected", "Move the folder, or choose another path"),
}


def _disk_error(exc: BaseException) -> OSError | None:
    """The OS error of :data:`DISK_ERRORS` behind ``exc`` (itself, or what it was raised from)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def _sigterm_interrupts():
    """While the command runs, SIGTERM raises :class:`Terminated` (in the main thread; other threads leave it)."""

    def terminate(signum, frame):
        raise Terminated

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def guard(func):
    """Turn UpscaleErrors and the user's disk errors into one clear panel and exit code 2; bugs into exit code 1.

    Ctrl-C exits 130 and SIGTERM 143, each with one line saying the run can be resumed.
    """

    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            with _sigterm_interrupts():
                return func(*args, **kwargs)
        except UpscaleError as exc:
            if debug:
                raise
            panel(exc.message, exc.kind)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
            console.print(f"[yellow]{how}; the same command again resumes where it stopped", soft_wrap=True)
            raise typer.Exit(code) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if debug:
                raise
            disk = _disk_error(exc)
            if disk is not None:
                what, fix = DISK_ERRORS[disk.errno]
                where = disk.filename or "the folder being written (the run directory or --output)"
                panel(f"{what} (in {where}). {fix}.", "disk error")
                raise typer.Exit(2) from None
            panel(
                f"{type(exc).__name__}: {exc}\nThis is a bug in upscale or an unexpected input. "
                "Re-run with --debug for the traceback; the run's log.txt has details.",
                "unexpected error",
            )
            raise typer.Exit(1) from None

    return wrapper
