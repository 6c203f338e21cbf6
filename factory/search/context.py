"""The real `SearchContext`: shared weights, data, costs and the run database in one place.

Strategies call `train_supernet` and `evaluate`; every recorded evaluation is committed to
SQLite before `evaluate` returns. After a crash, evaluations of the unit being replayed are
taken from the database instead of being recomputed, so nothing is measured twice.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from factory.data import DataSplits, iterate_batches, num_batches
from factory.search.costs import CostModel, estimate_cost_range
from factory.search.executor import Executor
from factory.search.interrupt import StopSignals, UnitJournal
from factory.spaces.base import Genotype, SearchSpace, Supernet
from factory.strategies.base import PathSource, Record, Weights
from factory.supernet import SupernetTrainConfig, evaluate_genotype, train_epoch


@dataclass(frozen=True)
class EvalSettings:
    """How candidates are trained and scored during search."""

    batch_size: int = 64
    eval_batch_size: int = 500
    calib_steps: int = 2  # BN recalibration batches per evaluation
    calib_batch_size: int = 128
    val_size: int | None = 500  # validation images used to score a candidate (None: all)


class RunContext:
    """Implements `factory.strategies.base.SearchContext` for one run."""

    def __init__(
        self,
        space: SearchSpace,
        supernet: Supernet,
        optimizer: torch.optim.Optimizer,
        train_cfg: SupernetTrainConfig,
        data: DataSplits,
        settings: EvalSettings,
        costs: CostModel,
        store,  # factory.search.store.RunStore
        executor: Executor,
        rng: np.random.Generator,
        torch_gen: torch.Generator,
        objectives: tuple[str, ...],
        cost: str,
        f_range: tuple[float | None, float | None] = (None, None),
        device: torch.device | None = None,
    ) -> None:
        # channels-last activations run the depthwise/grouped convs and the elementwise ops
        # about 1.6x faster on CPU (measured on the shufflenet space, batch 500)
        supernet.to(memory_format=torch.channels_last)
        self.space, self.supernet, self.optimizer = space, supernet, optimizer
        self.train_cfg, self.data, self.settings = train_cfg, data, settings
        self.costs, self.store, self.executor = costs, store, executor
        self.rng, self.torch_gen = rng, torch_gen
        self.objectives, self.cost = objectives, cost
        self.f_range = f_range
        self.device = device or torch.device("cpu")
        self.previous: Supernet | None = None
        self.replay: dict[tuple[str, str, int], Record] = {}
        self.elapsed_offset = 0.0
        self.started = time.monotonic()
        self.progress = None  # a rich Progress, set by the runner
        self.signals: StopSignals | None = None  # set by the runner while its loop runs
        self.journal = UnitJournal()  # what the current unit has done
        self.resumed = UnitJournal()  # what it had done before a resume (skipped)
        val = data.val
        if settings.val_size is not None and settings.val_size < len(val):
            val = val.subset(torch.arange(settings.val_size))
        self._val = val

    # --- SearchContext -----------------------------------------------------------------
    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        per_epoch = num_batches(self.data.train, self.settings.batch_size, drop_last=True)
        steps = max(1, math.ceil(epochs * per_epoch))
        earlier = self.resumed.call(len(self.journal.calls))
        if earlier is not None:  # the same batch order as before the interruption
            self.torch_gen.set_state(earlier.torch_start)
        call = self.journal.start_call(self.torch_gen, self.rng)
        batches = self._endless_batches()
        if earlier is not None and earlier.steps:  # trained before: skip, keep the draws
            for _ in itertools.islice(batches, earlier.steps):
                pass
            self.rng.bit_generator.state = earlier.numpy_state
            call.steps, call.numpy_state = earlier.steps, earlier.numpy_state
        todo = steps - call.steps
        if todo <= 0:
            return call.loss
        with self._deferred():
            stats = train_epoch(
                self.space,
                self.supernet,
                self.journal.counted(call, itertools.islice(batches, todo), self.rng, self._check),
                self.optimizer,
                self.train_cfg,
                self.rng,
                paths,
                progress=self.progress,
                total=todo,
            )
        call.loss = stats.loss
        return stats.loss

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
    ) -> list[Record]:
        net = self.supernet if weights == "current" else self.previous
        if net is None:
            raise RuntimeError("evaluate(weights='previous') before snapshot_weights()")
        bar = self.progress
        task = bar.add_task(f"evaluate ({phase})", total=len(genotypes), status="") if bar else None

        def one(g: Genotype) -> Record:
            rec = self._evaluate_one(net, g, phase, step, record)
            if bar is not None and task is not None:
                bar.update(task, advance=1, status=f"acc {100 * rec.value('accuracy'):.1f} %")
            return rec

        try:
            with self._deferred():
                return self.executor.map(one, genotypes)
        finally:
            if bar is not None and task is not None:
                bar.remove_task(task)

    def snapshot_weights(self) -> None:
        with self._deferred():
            taken = self.journal.snapshots + 1
            if taken > self.resumed.snapshots:  # else the partial checkpoint restored it
                self.previous = copy.deepcopy(self.supernet)
            self.journal.snapshots = taken

    def cost_range(self) -> tuple[float, float]:
        """(F_min, F_max): the user's, else the range over the manual architectures and 20
        samples drawn from a generator of its own (so the main stream is not disturbed)."""
        lo, hi = self.f_range
        if lo is None or hi is None:
            est_lo, est_hi = estimate_cost_range(self.space, self.costs, self.cost)
            lo = est_lo if lo is None else lo
            hi = est_hi if hi is None else hi
            self.f_range = (lo, hi)
        return float(lo), float(hi)

    @property
    def val_images(self) -> int:
        """How many validation images score a candidate."""
        return len(self._val)

    # --- helpers ------------------------------------------------------------------------
    def begin_unit(self, resumed: UnitJournal | None = None) -> None:
        """A new unit starts (`resumed`: what it had done before an interruption)."""
        self.journal = UnitJournal()
        self.resumed = resumed or UnitJournal()

    def _deferred(self) -> contextlib.AbstractContextManager[None]:
        return self.signals.deferring() if self.signals else contextlib.nullcontext()

    def _check(self) -> None:
        if self.signals is not None:
            self.signals.check()

    def elapsed(self) -> float:
        return self.elapsed_offset + time.monotonic() - self.started

    def _endless_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from _prepared(
                self.device,
                iterate_batches(
                    self.data.train,
                    self.settings.batch_size,
                    shuffle=True,
                    generator=self.torch_gen,
                    drop_last=True,
                ),
            )

    def _calib_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _prepared(
            self.device, iterate_batches(self.data.train, self.settings.calib_batch_size)
        )

    def _evaluate_one(self, net: Supernet, g: Genotype, phase: str, step: int, record: bool):
        self._check()  # a safe point: every evaluation so far is in the database
        arch_id = self.space.arch_id(g)
        if record and (arch_id, phase, step) in self.replay:
            return self.replay[(arch_id, phase, step)]
        acc = evaluate_genotype(
            net,
            g,
            _prepared(self.device, iterate_batches(self._val, self.settings.eval_batch_size)),
            self._calib_batches(),
            self.settings.calib_steps,
        )
        costs, how = self.costs.costs(g)
        extra = {"latency_how": how} if how else {}
        rec = Record(
            genotype=tuple(g),
            arch_id=arch_id,
            objectives={"accuracy": acc, **costs},
            phase=phase,
            step=step,
            wall_s=round(self.elapsed(), 3),
            extra=extra,
        )
        if record:
            self.store.add(rec)
        return rec


def _prepared(
    device: torch.device, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches on the supernet's device, images channels-last."""
    for x, y in batches:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yield x, y.to(device, non_blocking=True)
