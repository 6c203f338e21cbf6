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
