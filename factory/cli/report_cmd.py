"""`factory report RUN`: the Pareto front of a search run as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from targets.errors import UserError


def _load(run_dir: Path) -> dict:
    path = run_dir / "pareto.json"
    if not path.exists():
        raise UserError(
            f"{run_dir} has no pareto.json (is it a run directory of `factory search`?)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc


_FORMATS = {
    "accuracy": lambda v: f"{100 * v:.2f} %",
    "latency_ms": lambda v: f"{v:.3f} ms",
    "macs": lambda v: f"{v / 1e6:.2f} M",
    "params": lambda v: f"{v / 1e6:.3f} M",
}


def print_front(run_dir: Path) -> None:
    """Print the front of a run as a table."""
    doc = _load(run_dir)
    objectives = doc["objectives"]
    table = Table(
        "arch_id",
        *objectives,
        "found",
        "genotype",
        title=f"{run_dir}: front of {len(doc['front'])} / {doc['architectures']} architectures "
        f"({doc['evaluations']} evaluations)",
    )
    for row in doc["front"]:
        table.add_row(
            row["arch_id"],
            *(_FORMATS[o](row[o]) for o in objectives),
            f"{row['phase']} {row['step']}",
            row["genotype"],
        )
    for name, row in doc.get("references", {}).items():
        table.add_row(
            f"[dim]{name}[/dim]",
            *(f"[dim]{_FORMATS[o](row[o])}[/dim]" for o in objectives),
            "[dim]manual[/dim]",
            f"[dim]{row['genotype']}[/dim]",
        )
    Console().print(table)


def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by `factory search`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print pareto.json.")] = False,
) -> None:
    """Print the Pareto front of a search run (manual architectures shown dimmed)."""
    if as_json:
        typer.echo(json.dumps(_load(run), indent=2))
        return
    print_front(run)
