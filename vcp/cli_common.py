"""Helpers shared by the CLI commands: error reporting and exit codes."""

from __future__ import annotations

import contextlib
import sys
import traceback

import typer

from .devices import UsageError
from .layout import LayoutError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def fail(message: str, code: int) -> typer.Exit:
    print(f"vcp: error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code=code)


@contextlib.contextmanager
def user_errors(debug: bool = False):
    """Turn known errors into one stderr line + exit code; never a traceback for users."""
    try:
        yield
    except typer.Exit:
        raise
    except (UsageError, LayoutError, ValueError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # noqa: BLE001
        if debug:
            traceback.print_exc()
        raise fail(
            f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)", EXIT_ERROR
        ) from None
