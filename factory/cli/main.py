"""The root `factory` command: registers each command group."""

from __future__ import annotations

from typing import Annotated

import typer

from factory import __version__
from factory.allocator import keep_freed_memory
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
from factory.cli import examples as ex
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
app.command("search", epilog=ex.SEARCH)(search_cmd.search)
app.command("report", epilog=ex.REPORT)(report_cmd.report)
app.add_typer(profile_cmd.app, name="profile")
app.command("agent", epilog=ex.AGENT)(agent_cmd.agent)
app.command("train", epilog=ex.TRAIN)(train_cmd.train)
app.command("export", epilog=ex.EXPORT)(export_cmd.export)
app.command("push", epilog=ex.PUSH)(models_cmd.push)
app.command("models", epilog=ex.MODELS)(models_cmd.models)
app.command("pull", epilog=ex.PULL)(models_cmd.pull)


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
    keep_freed_memory()  # training steps run ~2x faster on glibc (allocator.py)
    app()


if __name__ == "__main__":
    run()
