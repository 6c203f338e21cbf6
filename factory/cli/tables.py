"""Tables that never cut what a user types or compares, at any terminal width (80 columns,
or piped output, which rich renders 80 wide).

A column is a *key* (names, versions, arch_ids, targets, the numbers a table exists to
compare): it is never wrapped or cut. The other columns are dropped, the last first, until
the table fits; the caller says where they can be read in full (`show`, `--json`). A value
too long for any table (a genotype) can go below it as one line per row instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

BORDER = 3  # "│ " before a cell and one space after it
# rich's console width: $COLUMNS, the terminal's, else 80 (piped output)


@dataclass(frozen=True)
class Column:
    """A column of a fitted table."""

    name: str
    key: bool = False  # never cut; never dropped
    justify: str = "left"
    priority: int = 0  # of the other columns, lower ones are dropped first (ties: last first)
    wrap: bool = False  # a key column of several names: wraps between them, never inside one


def _width(cell: str, words: bool = False) -> int:
    """Cells a value needs on one line (`words`: its longest word)."""
    parts = cell.split() if words else cell.splitlines()
    return max((Text.from_markup(p).cell_len for p in parts), default=0)


def fitted(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int,
    **table_options: object,
) -> tuple[Table, list[str]]:
    """A table of the key columns and as many others as fit in `width` cells (dropped by
    priority, then last first); returns it with the names of the dropped columns."""
    needed = [
        max([len(c.name), *(_width(r[i], c.wrap) for r in rows)]) for i, c in enumerate(columns)
    ]
    kept = list(range(len(columns)))
    optional = sorted(
        (i for i in kept if not columns[i].key), key=lambda i: (columns[i].priority, -i)
    )
    optional.reverse()  # pop() takes the lowest priority, the last of equals
    while optional and sum(needed[i] + BORDER for i in kept) + 1 > width:
        kept.remove(optional.pop())
    table = Table(**table_options)  # type: ignore[arg-type]
    for i in kept:
        c = columns[i]
        if c.key and c.wrap:
            table.add_column(c.name, justify=c.justify, min_width=needed[i])  # type: ignore[arg-type]
        elif c.key:
            table.add_column(c.name, justify=c.justify, no_wrap=True, min_width=needed[i])  # type: ignore[arg-type]
        else:
            table.add_column(c.name, justify=c.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table, [columns[i].name for i in range(len(columns)) if i not in kept]


def print_fitted(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    more: str,
    **table_options: object,
) -> list[str]:
    """Print a fitted table at the console's width, then a line naming the dropped
    columns and `more`, where they can be read (e.g. "factory models --json")."""
    table, dropped = fitted(columns, rows, console.width, **table_options)
    console.print(table)
    if dropped:
        console.print(
            f"(not shown at this width: {', '.join(dropped)}; see {more})", soft_wrap=True
        )
    return dropped
