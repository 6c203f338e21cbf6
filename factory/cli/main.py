"""The root `factory` command: registers each command group."""

from __future__ import annotations

from typing import Annotated

import typer

from factory import __version__
from factory.cli import (
    agent_cmd,
    export_cmd,
    models_cmd,
    profile_cmd,
    report_cmd,
    search_cmd,
    spaces_cmd,
    targets_cmd,
    train_cmd,
)
from factory.cli.errors import UserErrorGroup

app = typer.Typer(
    cls=UserErrorGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: wraps at any width, never cuts an option name
    help="Edge Model Factory: find, measure and export lightweight models for a target device.",
)
app.add_typer(targets_cmd.app, name="targets")
app.add_typer(spaces_cmd.app, name="spaces")
app.command("search")(search_cmd.search)
app.command("report")(report_cmd.report)
app.add_typer(profile_cmd.app, name="profile")
app.command("agent")(agent_cmd.agent)
app.command("train")(train_cmd.train)
app.command("export")(export_cmd.export)
app.command("push")(models_cmd.push)
app.command("models")(models_cmd.models)
app.command("pull")(models_cmd.pull)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"factory {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Edge Model Factory: find, measure and export lightweight models for a target device."""


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
