"""Turns user mistakes into one line on stderr and exit code 2, never a traceback.

Also the one place a command learns it was asked to stop: SIGTERM becomes `Terminated`, so
every `with` block (progress bars hide the cursor) unwinds as it does for Ctrl-C, and the
command exits 143 (SIGINT: 130) with one line saying so.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import click
import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click
from typer.core import TyperGroup

from targets.errors import Terminated, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
# OS errors that mean a path the user gave cannot be used, not a bug of ours
_PATH_ERRORS = (
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def fail(message: str) -> None:
    """Print `error: message` on one line and exit with code 2."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def usage_line(exc: UsageError) -> str:
    """A click usage error as one line that says where to read more."""
    text = exc.format_message().rstrip(".")
    ctx = exc.ctx
    where = " ".join(["factory", *ctx.command_path.split()[1:]]) if ctx is not None else "factory"
    return f"{text[:1].lower()}{text[1:]} (see `{where} --help`)"


class UserErrorGroup(TyperGroup):
    """The root command group: any `UserError` or bad option below it becomes a one-line
    error; SIGINT and SIGTERM end the command with 130 and 143."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:
            raise  # `factory` alone prints its help, as asked
        except UsageError as exc:  # the root's own options, e.g. `factory --bogus`
            fail(usage_line(exc))

    def invoke(self, ctx: click.Context) -> object:
        try:
            with sigterm_unwinds():
                return super().invoke(ctx)
        except UserError as exc:
            fail(str(exc))
        except NoArgsIsHelpError:
            raise  # `factory profile` alone prints its help, as asked
        except UsageError as exc:
            fail(usage_line(exc))
        except _PATH_ERRORS as exc:
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"cannot use{where}: {exc.strerror or exc}; choose another path")
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            click.echo("terminated", err=True)
            raise typer.Exit(EXIT_TERMINATED) from None
        return None
