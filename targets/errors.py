"""Errors a user can fix. The CLI prints them on one line and exits with code 2.

They live in `targets`, the bottom of the dependency graph, so every package can raise them.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad name, missing data, bad file)."""


class UnknownNameError(UserError, KeyError):
    """A registry lookup for a name that does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt (a BaseException, so `except
    Exception` never swallows it) and the command exits 143."""
