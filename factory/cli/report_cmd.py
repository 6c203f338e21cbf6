"""`factory report RUN`: the Pareto front of a search run as a table or JSON, or a
Markdown report page (`--markdown`, written by `factory.run_report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from factory.cli.tables import Column, fitted
from factory.run_report import FORMATS, write_report
from targets.errors import UserError


def print_front(run_dir: Path) -> None:
    """Print the front of a run as a table (recomputed when pareto.json is behind the
    run's database, as after a SIGKILL)."""
    from factory.search.refresh import current_front

    doc = current_front(run_dir)
    objectives = doc["objectives"]
    refs = doc.get("references", {})
    final = any("latency_ms_final" in r for r in [*doc["front"], *refs.values()])
    columns = [
        Column("arch_id", key=True),
        *(Column(o, key=True) for o in objectives),
        *([Column("final ms", priority=1)] if final else []),
        Column("found"),
        Column("genotype", priority=2),
    ]
    rows = [[row["arch_id"] + ("~" if "within_error_of" in row else ""),
             *_cells(row, objectives, final), f"{row['phase']} {row['step']}",
             row["genotype"]] for row in doc["front"]]  # fmt: skip
    for name, row in refs.items():
        cells = [name, *_cells(row, objectives, final), "manual", row["genotype"]]
        rows.append([f"[dim]{c}[/dim]" for c in cells])
    title = (
        f"{run_dir}: front of {len(doc['front'])} / {doc['architectures']} architectures "
        f"({doc['evaluations']} evaluations)"
    )
    out = Console()
    table, dropped = fitted(columns, rows, out.width, title=title)
    out.print(table)
    if "genotype" in dropped:  # too wide to sit beside the rest: one whole line each
        for row in rows:
            out.print(f"{row[0]}  {row[-1]}", soft_wrap=True)
    if hidden := [d for d in dropped if d != "genotype"]:
        note = (
            f"(not shown at this width: {', '.join(hidden)}; see factory report {run_dir} --json)"
        )
        out.print(note, soft_wrap=True)
    for line in front_notes(doc):
        typer.echo(line)


def _cells(row: dict, objectives: list[str], final: bool) -> list[str]:
    return [*(FORMATS[o](row[o]) for o in objectives), *([_final(row)] if final else [])]


def _final(row: dict) -> str:
    ms = row.get("latency_ms_final")
    return "" if ms is None else f"{ms:.3f}"


def front_notes(doc: dict) -> list[str]:
    """One line each: candidates kept off the front as chance-level, and how far the
    latency objective strays from the final re-measurement (or why there is none)."""
    lines = [f"{doc['stale']}: front recomputed from evaluations.sqlite"] if "stale" in doc else []
    tabular = doc.get("tabular")
    if tabular:
        lines.append(
            f"tabular search on {tabular['benchmark']}, device column {tabular['device']}: "
            f"{tabular['queries']} queries in {tabular['wall_s']:.1f} s; hypervolume "
            f"{tabular['normalised_hypervolume']:.4f} of the exact front's"
        )
        if tabular.get("stopped"):
            lines.append(f"stopped before the budget of {tabular['budget']}: {tabular['stopped']}")
    dropped = doc.get("dropped") or {}
    if dropped.get("count"):
        lines.append(
            f"dropped {dropped['count']} architectures scoring below "
            f"{100 * dropped['threshold']:.1f} % ({dropped['from_front']} would have been on "
            f"the front): {dropped['rule']}"
        )
    near = {r["arch_id"]: r["within_error_of"] for r in doc["front"] if "within_error_of" in r}
    if near:
        pairs = ", ".join(f"{a} of {b}" for a, b in near.items())
        lines.append(
            f"~ {len(near)} kept within the score's error of a model that dominates them "
            f"({pairs}): {doc.get('score_error', 'see pareto.json')}"
        )
    rescore = doc.get("rescore") or {}
    if rescore.get("candidates"):
        lines.append(
            f"front chosen among {rescore['candidates']} candidates rescored after "
            f"{rescore['steps']} fine-tuning steps each (one-shot scores narrowed them down; "
            "the manual architectures were rescored alike)"
        )
    if rescore.get("candidates") and rescore.get("challenge") and rescore.get("challengers"):
        lines.append(
            f"challenged {', '.join(rescore['challenge'])}: up to {rescore['challengers']} "
            "cheaper one-decision neighbours of each rescored with the candidates"
        )
    final = doc.get("latency_final")
    if final and "skipped" in final:
        if "latency_ms" in doc["objectives"]:
            lines.append(f"final latency re-measurement skipped: {final['skipped']}")
    elif final and doc.get("latency_error") is not None:
        lines.append(
            f"latency objective vs final re-measurement: median error "
            f"{100 * doc['latency_error']:.1f} % over the front ({final['rounds']} rounds, "
            f"{final['models']} models, {final['seconds']:.0f} s; latency_ms_final in pareto.json)"
        )
    return lines


def report(
    run: Annotated[Path, typer.Argument(help="A run directory written by `factory search`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print pareto.json.")] = False,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="Write RUN/report.md (front, trained models, exported bundles, plots) "
            "and print its path.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Where --markdown writes the page (plots go next to it)."),
    ] = None,
) -> None:
    """Print the Pareto front of a search run (manual architectures shown dimmed), or with
    --markdown write a report page with plots."""
    if out is not None and not markdown:
        raise UserError("--out is where --markdown writes its page; add --markdown")
    if as_json and markdown:
        raise UserError("--json prints the front and --markdown writes a page; choose one")
    if markdown:
        typer.echo(str(write_report(run, out)))
        return
    if as_json:
        from factory.search.refresh import current_front

        typer.echo(json.dumps(current_front(run), indent=2))
        return
    print_front(run)
