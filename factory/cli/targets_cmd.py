"""`factory targets`: the devices models can be measured and exported for."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import targets
from factory.cli import examples as ex
from factory.cli.tables import Column, print_fitted

app = typer.Typer(
    help="List and inspect target devices.", invoke_without_command=True, epilog=ex.TARGETS
)


COLUMNS = (
    Column("name", key=True),
    Column("aliases", key=True),
    Column("runtime", key=True),
    Column("precision"),
    Column("reached"),
    Column("provider"),
)


def console() -> Console:
    """A console made per call, so the terminal width is read when output is printed."""
    return Console()


@app.callback()
def list_targets(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the known targets (built in, plus YAML files in $EMF_TARGETS_DIR)."""
    if ctx.invoked_subcommand is not None:
        return
    registry = targets.registry()
    items = [registry.get(name) for name in registry.names()]
    if as_json:
        typer.echo(json.dumps([asdict(t) for t in items], indent=2))
        return
    rows = []
    for t in items:
        reached = "local" if t.is_local else f"agent {t.agent.url}"  # type: ignore[union-attr]
        default = " (default)" if t.name == targets.DEFAULT_TARGET else ""
        aliases, provider = ", ".join(t.aliases), t.execution_provider
        rows.append([t.name + default, aliases, t.runtime, t.precision, reached, provider])
    out = console()
    print_fitted(out, COLUMNS, rows, "factory targets show NAME or factory targets --json")
    out.print("Details: factory targets show NAME")


@app.command("show", epilog=ex.TARGETS_SHOW)
def show(
    name: Annotated[str, typer.Argument(help="Target name or alias, e.g. x86-cpu or jetson.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every field of one target."""
    target = targets.get_target(name)
    data = asdict(target)
    data["latency_table_dir"] = str(target.latency_table_dir())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for key, value in data.items():
        table.add_row(key, "-" if value in (None, {}, (), []) else str(value))
    console().print(table)
