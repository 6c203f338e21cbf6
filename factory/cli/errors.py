"""Turns user mistakes into one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import click
import typer
from typer.core import TyperGroup

from targets.errors import UserError

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print `error: message` on one line and exit with code 2."""
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


class UserErrorGroup(TyperGroup):
    """The root command group: any `UserError` raised below it becomes a one-line error."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        return None
