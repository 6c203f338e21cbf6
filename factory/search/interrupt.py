"""Stopping a search without losing work.

SIGINT and SIGTERM are caught while a run loop is inside `StopSignals`. Inside a *deferred*
region (a supernet step, an evaluation, a checkpoint save) the first signal only sets a
flag; the region stops at its next safe point (between steps, between candidates) by
raising `RunInterrupted`, so the weights are never half-updated. Elsewhere, and for a second
signal, the usual exception is raised at once (KeyboardInterrupt, `Terminated`).

`UnitJournal` records what the current unit has done: for every `train_supernet` call the
steps completed, the batch-order generator's state when the call began and the path
sampler's state after the last step; and how many weight snapshots were taken. Saved with
the weights in a partial checkpoint, it lets a resumed run replay the unit's strategy code
with the same random draws while skipping the steps already trained.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import torch

from targets.errors import Terminated

T = TypeVar("T")
REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
STOP_REASONS = frozenset(REASONS.values())


class RunInterrupted(Exception):
    """Raised at a safe point after SIGINT/SIGTERM asked a deferred region to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(REASONS.get(signum, "stopped"))
        self.signum = signum


def stop_reason(exc: BaseException) -> str:
    """'interrupted' (SIGINT, Ctrl-C) or 'terminated' (SIGTERM) for an exception that
    stopped a run."""
    if isinstance(exc, RunInterrupted):
        return REASONS.get(exc.signum, "interrupted")
    return "terminated" if isinstance(exc, Terminated) else "interrupted"


class StopSignals:
    """SIGINT/SIGTERM handlers for the duration of a run loop (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferred = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in REASONS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum if first else self.signum
        if self._deferred and first:
            return  # the region stops at its next safe point
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """A region that checks `check()` often; leaving it acts on a pending signal."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        self.check()

    def check(self) -> None:
        """Raise `RunInterrupted` if a signal asked the run to stop."""
        if self.signum is not None:
            raise RunInterrupted(self.signum)


@dataclass
class TrainCall:
    """One `train_supernet` call of the current unit, as far as it got."""

    torch_start: torch.Tensor  # the batch-order generator's state when the call began
    numpy_state: dict[str, Any]  # the path sampler's state after the last completed step
    steps: int = 0  # optimizer steps completed
    loss: float = 0.0  # mean loss of the steps this process ran


@dataclass
class UnitJournal:
    """What the current unit has done; see the module docstring."""

    calls: list[TrainCall] = field(default_factory=list)
    snapshots: int = 0
    in_step: bool = False  # an optimizer step is under way: the weights are not consistent

    def call(self, index: int) -> TrainCall | None:
        return self.calls[index] if index < len(self.calls) else None

    def start_call(self, torch_gen: torch.Generator, rng: np.random.Generator) -> TrainCall:
        call = TrainCall(torch_gen.get_state().clone(), rng.bit_generator.state)
        self.calls.append(call)
        return call

    def counted(
        self,
        call: TrainCall,
        batches: Iterable[T],
        rng: np.random.Generator,
        check: Callable[[], None],
    ) -> Iterator[T]:
        """`batches`, counting each step as done once the next batch is asked for."""
        for batch in batches:
            check()
            self.in_step = True
            yield batch
            self.in_step = False
            call.steps += 1
            call.numpy_state = rng.bit_generator.state

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self.calls)

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (the generator states) and JSON for a partial checkpoint."""
        tensors = {f"call{i}.torch_start": c.torch_start for i, c in enumerate(self.calls)}
        state = {
            "snapshots": self.snapshots,
            "calls": [{"steps": c.steps, "numpy_state": c.numpy_state} for c in self.calls],
        }
        return tensors, state

    @classmethod
    def from_checkpoint(
        cls, tensors: dict[str, torch.Tensor], state: dict[str, Any]
    ) -> UnitJournal:
        calls = [
            TrainCall(tensors[f"call{i}.torch_start"], c["numpy_state"], int(c["steps"]))
            for i, c in enumerate(state["calls"])
        ]
        return cls(calls, int(state["snapshots"]))


@dataclass(frozen=True)
class UnitStart:
    """The strategy's and random streams' state as a unit begins: what a partial checkpoint
    stores, so a resume replays the unit from its start with the same draws."""

    strategy: dict[str, Any]
    numpy_rng: dict[str, Any]
    torch_rng: torch.Tensor
    f_range: list[float | None]
    evaluations: int  # recorded before the unit began
    partial: bool = False

    @classmethod
    def capture(cls, strategy: Any, ctx: Any, partial: bool = False) -> UnitStart:
        """A copy that the unit's work cannot change (`strategy`: a `Strategy`, `ctx`: the
        run's `RunContext`)."""
        return cls(
            copy.deepcopy(strategy.state_dict()),
            copy.deepcopy(ctx.rng.bit_generator.state),
            ctx.torch_gen.get_state().clone(),
            list(ctx.f_range),
            ctx.store.count() if ctx.store is not None else 0,
            partial,
        )
