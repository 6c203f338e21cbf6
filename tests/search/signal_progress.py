"""A real (hidden) progress display that interrupts the run it shows: the interruption tests
tie SIGINT to an event of the run, never to a delay."""

from __future__ import annotations

import os
import signal
from typing import Any

from rich.progress import Progress


class SignalAtAdvance(Progress):
    """Sends SIGINT to this process at the `at`-th advance of the tasks named `description`
    (e.g. "supernet": a training step; "evaluate (refine)": a scored candidate)."""

    def __init__(self, description: str, at: int) -> None:
        super().__init__(disable=True)
        self.description, self.at, self.advances = description, at, 0
        self.watched: set[Any] = set()

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> Any:
        task = super().add_task(description, *args, **kwargs)
        if description == self.description:
            self.watched.add(task)
        return task

    def update(self, task_id: Any, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        if task_id in self.watched and kwargs.get("advance"):
            self.advances += 1
            if self.advances == self.at:
                os.kill(os.getpid(), signal.SIGINT)


def assert_ctrl_c_in_phase_resumes(config: Any, phase: str, runs: Any, monkeypatch: Any) -> None:
    """Ctrl-C at the first scored candidate of `phase` stops a run of `config` in
    `runs / "run"` with exactly that one recorded, whatever SIGINT handler the process
    had; --resume then ends on the records of the uninterrupted run already in
    `runs / "reference"`."""
    from factory.search import runner
    from factory.search.store import RunStore

    first = SignalAtAdvance(f"evaluate ({phase})", 1)
    monkeypatch.setattr(runner, "make_progress", lambda disable: first)
    # a SIGINT handler that does not raise, as an embedding program may install: the run
    # must hear Ctrl-C through its own handlers in every phase
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        stopped = runner.run_search(config, runs / "run", quiet=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
    assert stopped.stopped == "interrupted"
    with RunStore(runs / "run") as store:
        assert sum(r.phase == phase for r in store.records()) == 1
    assert runner.run_search(config, runs / "run", resume=True, quiet=True).stopped is None

    def scored(name: str) -> list[tuple[Any, ...]]:
        with RunStore(runs / name) as store:
            return [(r.arch_id, r.phase, r.step, r.objectives) for r in store.records()]

    assert scored("run") == scored("reference")
