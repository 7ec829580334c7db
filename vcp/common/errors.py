"""The errors that end a command with exit 2 (a usage error), one line each."""

from __future__ import annotations


class UsageError(ValueError):
    """A user error that should end the CLI with exit code 2 and a one-line message.

    A ValueError, so API callers that catch ValueError for bad settings still do; the CLI
    maps only this (and LayoutError) to exit 2 — any other ValueError is a bug (exit 1)."""


class LayoutError(Exception):
    """The input tree does not have the expected layout (a usage error: exit 2)."""
