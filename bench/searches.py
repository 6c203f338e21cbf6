"""Searches run back to back by a bench: one Ctrl-C or SIGTERM stops the whole bench.

`run_search` catches the first signal so that the run stops at a safe point and keeps its
work; a bench that loops over searches would otherwise go on with the next one, and only a
second signal (or SIGKILL) would stop it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from factory.search.config import SearchConfig
from factory.search.rundir import RunResult
from factory.search.runner import run_search

EXIT_CODES = {"interrupted": 128 + signal.SIGINT, "terminated": 128 + signal.SIGTERM}


def search_or_exit(config: SearchConfig, run_dir: Path) -> RunResult:
    """The finished run; SystemExit (130 or 143) when a signal stopped it."""
    result = run_search(config, run_dir, quiet=True)
    if result.stopped is not None:
        print(f"{run_dir}: {result.stopped}; the bench stops here (the run keeps its work)")
        raise SystemExit(EXIT_CODES.get(result.stopped, 1))
    return result
