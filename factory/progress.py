"""One look for every long-running loop: a rich progress bar with ETA on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class TimeLeftColumn(ProgressColumn):
    """Time left at the average pace since the task began. rich's own estimate looks at the
    last 30 s only, so for steps of minutes (a search's units) it never showed one. A task
    added with `start=N` (steps done before, e.g. by a resumed run) counts from there."""

    def render(self, task: Task) -> Text:
        done = task.completed - float(task.fields.get("start", 0))
        if task.total is None or not task.elapsed or done <= 0:
            return Text("-:--:--", style="progress.remaining")
        left = max(0.0, task.elapsed / done * (task.total - task.completed))
        return Text(str(timedelta(seconds=round(left))), style="progress.remaining")


def make_progress(disable: bool = False) -> Progress:
    """A progress display for loops whose length is known; `disable` for tests and --quiet."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeLeftColumn(),
        console=Console(stderr=True),
        disable=disable,
    )


@contextlib.contextmanager
def status(text: str, disable: bool = False) -> Iterator[None]:
    """A spinner with `text` on stderr for work of unknown length (nothing when disabled)."""
    if disable:
        yield
        return
    with Console(stderr=True).status(text):
        yield
