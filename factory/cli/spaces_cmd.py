"""`factory spaces`: the search spaces, their decisions, and sampled architectures.

torch is imported inside the commands, so `factory agent` starts on a device without it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from factory.cli import examples as ex
from factory.cli.tables import Column, fitted
from profilers.base import parse_input_shape

if TYPE_CHECKING:
    from factory.spaces import Genotype, SearchSpace

app = typer.Typer(
    help="List and inspect search spaces.", invoke_without_command=True, epilog=ex.SPACES
)


def console() -> Console:
    """A console made per call, so the terminal width is read when output is printed."""
    return Console()


@app.callback()
def list_spaces(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered search spaces."""
    if ctx.invoked_subcommand is not None:
        return
    from factory.spaces import SPACES, get_space

    spaces = [get_space(name) for name in SPACES.names()]
    if as_json:
        rows = [
            {
                "name": space.name,
                "decisions": len(space.choices()),
                "options_per_decision": [min(space.choices()), max(space.choices())],
                "genotypes": space.size(),
                "manual": list(space.manual()),
            }
            for space in spaces
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    rows = [
        [s.name, ", ".join(s.manual()), str(len(s.choices())), f"{s.size():.2e}",
         f"{min(s.choices())}–{max(s.choices())}"]
        for s in spaces
    ]  # fmt: skip
    columns = (
        Column("name", key=True),
        Column("manual architectures", key=True, wrap=True),
        Column("decisions"),
        Column("genotypes"),
        Column("options per decision"),
    )
    out = console()
    table, dropped = fitted(columns, rows, out.width)
    out.print(table)
    if dropped:
        out.print(f"(not shown at this width: {', '.join(dropped)}; see factory spaces --json)")


def _report(space: SearchSpace, label: str, g: Genotype) -> dict[str, object]:
    from profilers.flops import count_costs

    model = space.build(g)
    costs = count_costs(model, (1, *space.spec.shape))
    return {
        "label": label,
        "genotype": space.format(g),
        "macs": costs.macs,
        "params": costs.params,
        "layers": [
            {"name": row.name, "op": row.op, "out_shape": list(row.out_shape)}
            for row in space.describe(g)
        ],
    }


def _print(item: dict[str, object]) -> None:
    table = Table("layer", "op", "output (C×H×W)", title=f"{item['label']}: {item['genotype']}")
    for row in item["layers"]:  # type: ignore[attr-defined]
        table.add_row(row["name"], row["op"], "×".join(str(d) for d in row["out_shape"]))
    console().print(table)
    console().print(
        f"  MACs (1 multiply-add = 1, BatchNorm excluded): {item['macs'] / 1e6:.2f} M   "
        f"params: {item['params'] / 1e6:.3f} M\n"
    )


@app.command("show", epilog=ex.SPACES_SHOW)
def show(
    name: Annotated[str, typer.Argument(help="Space name (see `factory spaces`).")],
    sample: Annotated[
        int, typer.Option(min=0, help="Also show N random architectures (0: only manual ones).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    genotype: Annotated[
        list[str] | None,
        typer.Option("--genotype", "-g", help="Show this genotype ('-'-joined indices or a name)."),
    ] = None,
    input_shape: Annotated[
        str, typer.Option(help="Input C×H×W the stem and head adapt to.")
    ] = "1x28x28",
    classes: Annotated[int, typer.Option(min=2, help="Number of output classes.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a space's decisions and architectures: genotype, layers, MACs and params.

    Without --sample or --genotype it shows the space's named manual architectures.
    """
    import numpy as np

    from factory.spaces import InputSpec, get_space

    c, h, w = parse_input_shape(input_shape)
    space = get_space(name, InputSpec(channels=c, height=h, width=w, num_classes=classes))
    picks: list[tuple[str, Genotype]] = [(text, space.parse(text)) for text in genotype or []]
    rng = np.random.default_rng(seed)
    picks += [(f"sample {i + 1} (seed {seed})", space.sample(rng)) for i in range(sample)]
    if not picks:
        picks = list(space.manual().items())
    items = [_report(space, label, g) for label, g in picks]
    if as_json:
        decisions = [{"name": d.name, "options": list(d.options)} for d in space.decisions()]
        typer.echo(json.dumps({"space": name, "decisions": decisions, "models": items}, indent=2))
        return
    table = Table("decision", "options", title=f"space {name}: {len(space.choices())} decisions")
    for d in space.decisions():
        table.add_row(d.name, ", ".join(f"{i}:{o}" for i, o in enumerate(d.options)))
    console().print(table)
    for item in items:
        _print(item)
