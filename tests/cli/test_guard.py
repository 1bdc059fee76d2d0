"""The CLI's guard: the user's errors and disk faults exit 2 with one panel, bugs exit 1, signals end in one line."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import typer

from upscale.cli.guard import DISK_ERRORS, Terminated, _disk_error, guard
from upscale.errors import DataError


def test_disk_error_is_found_behind_the_exception_that_wraps_it():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/product.zarr")
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("zarr failed") from exc
    except RuntimeError as wrapped:
        assert _disk_error(wrapped) is full
    assert _disk_error(OSError(errno.ECONNRESET, "reset")) is None
    assert _disk_error(ValueError("x")) is None
    assert errno.ENOSPC in DISK_ERRORS and errno.EROFS in DISK_ERRORS


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DataError("bad", where="f.csv"), 2),
        (OSError(errno.EACCES, "Permission denied", "/ro/run"), 2),
        (OSError(errno.ECONNRESET, "Connection reset"), 1),
        (RuntimeError("a bug"), 1),
        (KeyboardInterrupt(), 130),
        (Terminated(), 143),
    ],
)
def test_exit_codes(error, code, capsys):
    def fail():
        raise error

    with pytest.raises(typer.Exit) as info:
        guard(fail)()
    assert info.value.exit_code == code
    assert "Traceback" not in capsys.readouterr().err


def test_sigterm_becomes_terminated_while_a_command_runs():
    before = signal.getsignal(signal.SIGTERM)

    def command():
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(typer.Exit) as info:
        guard(command)()
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored after the command
