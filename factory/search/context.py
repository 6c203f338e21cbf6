"""The real `SearchContext`: shared weights, data, costs and the run database in one place.

Strategies call `train_supernet` and `evaluate`; every recorded evaluation is committed to
SQLite before `evaluate` returns. After a crash, evaluations of the unit being replayed are
taken from the database instead of being recomputed, so nothing is measured twice.

Scoring goes through the executor (in this process, or Ray workers that get the weights
once per `weights_key`); the costs and the database stay here. Under torch.distributed
(`dist`), every rank trains its slice of each batch, and rank 0 alone evaluates and records,
then hands the records to the others so that their strategies take the same decisions.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from factory.data import DataSplits, num_batches
from factory.distributed import DistContext
from factory.search.costs import CostModel, estimate_cost_range
from factory.search.executor import Executor, Scores
from factory.search.interrupt import StopSignals, UnitJournal
from factory.search.scoring import EvalSettings, Scorer, endless_batches, prepared
from factory.spaces.base import Genotype, SearchSpace, Supernet
from factory.strategies.base import COST_RANGE_SEED, PathSource, Record, Weights
from factory.supernet import SupernetTrainConfig, train_epoch
from targets.errors import UserError

__all__ = ["EvalSettings", "RunContext"]


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
        store,  # factory.search.store.RunStore; None on the ranks > 0 of a distributed run
        executor: Executor,
        rng: np.random.Generator,
        torch_gen: torch.Generator,
        objectives: tuple[str, ...],
        cost: str,
        f_range: tuple[float | None, float | None] = (None, None),
        device: torch.device | None = None,
        space_options: dict[str, str] | None = None,
        dist: DistContext | None = None,
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
        self.dist = dist
        self.train_net = dist.wrap(supernet) if dist is not None else supernet
        self.previous: Supernet | None = None
        self.replay: dict[tuple[str, str, int], Record] = {}
        self.elapsed_offset = 0.0
        self.started = time.monotonic()
        self.progress = None  # a rich Progress, set by the runner
        self.scorer = Scorer.of(space, space_options or {}, data.train, data.val, settings)
        self._version, self._previous_key = 0, ""  # names of the weights for the executor
        self.cheap_scorer = self.scorer.cheapened()
        self.finetune_scorer = self.scorer.finetuned(data.train, data.spare)
        self.signals: StopSignals | None = None  # set by the runner while its loop runs
        self.journal = UnitJournal()  # what the current unit has done
        self.resumed = UnitJournal()  # what it had done before a resume (skipped)

    # --- SearchContext -----------------------------------------------------------------
    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        per_epoch = num_batches(self.data.train, self.settings.batch_size, drop_last=True)
        steps = max(1, math.ceil(epochs * per_epoch))
        earlier = self.resumed.call(len(self.journal.calls))
        if earlier is not None:  # the same batch order as before the interruption
            self.torch_gen.set_state(earlier.torch_start)
        call = self.journal.start_call(self.torch_gen, self.rng)
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = self._endless_batches()
        if earlier is not None and earlier.steps:  # trained before: skip, keep the draws
            for _ in itertools.islice(batches, earlier.steps):
                pass
            self.rng.bit_generator.state = earlier.numpy_state
            call.steps, call.numpy_state = earlier.steps, earlier.numpy_state
        todo = steps - call.steps
        if todo <= 0:
            return call.loss
        if self.dist is not None:
            self.dist.check_same_stream(self.rng, f"weights version {self._version}")
            batches = (self.dist.shard(x, y) for x, y in batches)
        with self._deferred():
            stats = train_epoch(
                self.space,
                self.train_net,
                self.journal.counted(call, itertools.islice(batches, todo), self.rng, self._check),
                self.optimizer,
                self.train_cfg,
                self.rng,
                paths,
                progress=self.progress,
                total=todo,
            )
        self._version += 1
        call.loss = stats.loss if self.dist is None else self.dist.mean(stats.loss)
        return call.loss

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
        cheap: bool = False,
        finetuned: bool = False,
    ) -> list[Record]:
        """Score and (unless `record` is off) record `genotypes` with the shared weights:
        `cheap` on one batch for a controller's inner updates, `finetuned` after a short
        training of each path on its own (the final rescoring, rescore.py)."""
        record = record and not cheap
        if self.dist is not None:
            return self.dist.from_main(
                lambda: self._evaluate(genotypes, phase, step, weights, record, cheap, finetuned)
            )
        return self._evaluate(genotypes, phase, step, weights, record, cheap, finetuned)

    def snapshot_weights(self) -> None:
        with self._deferred():
            taken = self.journal.snapshots + 1
            if taken > self.resumed.snapshots:  # else the partial checkpoint restored it
                self.previous = copy.deepcopy(self.supernet)
            self.journal.snapshots = taken
        self._previous_key = f"previous-{self._version}"

    def cost_range(self) -> tuple[float, float]:
        """(F_min, F_max): the user's, else the range over the manual architectures and 20
        samples drawn from a generator of its own (so the main stream is not disturbed)."""
        lo, hi = self.f_range
        if lo is None or hi is None:
            est_lo, est_hi = (
                self.dist.from_main(self._estimate_range)
                if self.dist is not None
                else self._estimate_range()
            )
            lo = est_lo if lo is None else lo
            hi = est_hi if hi is None else hi
            self.f_range = (lo, hi)
        return float(lo), float(hi)

    @property
    def val_images(self) -> int:
        """How many validation images score a candidate."""
        return len(self.scorer.val)

    @property
    def rescore_images(self) -> int:
        """How many images score a rescored candidate."""
        return len(self.finetune_scorer.val)

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

    def _estimate_range(self) -> tuple[float, float]:
        rng = np.random.default_rng(COST_RANGE_SEED)
        return estimate_cost_range(self.space, self.costs, self.cost, rng)

    def _endless_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = endless_batches(self.data.train, self.settings.batch_size, self.torch_gen)
        return prepared(self.device, batches)

    def _evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights,
        record: bool,
        cheap: bool = False,
        finetuned: bool = False,
    ) -> list[Record]:
        net = self.supernet if weights == "current" else self.previous
        if net is None:
            raise RuntimeError("evaluate(weights='previous') before snapshot_weights()")
        if cheap:  # a controller's inner updates: one batch each, here, never recorded
            return [
                self._record(g, self.cheap_scorer.score(net, g, self.device), phase, step, False)
                for g in genotypes
            ]
        key = f"current-{self._version}" if weights == "current" else self._previous_key
        done: dict[int, Record] = {}
        for i, g in enumerate(genotypes):
            replayed = self.replay.get((self.space.arch_id(g), phase, step))
            if record and replayed is not None:
                done[i] = replayed
        todo = [i for i in range(len(genotypes)) if i not in done]
        new = [genotypes[i] for i in todo]
        self.costs.prefetch(new)  # a device farm measures them in parallel
        if self.costs.times_here:  # before workers load this machine
            for g in new:
                self.costs.costs(g)
        bar = self.progress
        task = bar.add_task(f"evaluate ({phase})", total=len(todo), status="") if bar else None
        try:
            with self._deferred():
                scorer = self.finetune_scorer if finetuned else self.scorer
                scores = self.executor.score(scorer, net, key, new)
                for j, i in enumerate(todo):  # recorded in order, each as soon as it is known
                    self._check()  # a safe point: every evaluation so far is in the database
                    rec = self._record(genotypes[i], self._score(scores, j), phase, step, record)
                    done[i] = rec
                    if bar is not None and task is not None:
                        acc = 100 * rec.value("accuracy")
                        bar.update(task, advance=1, status=f"acc {acc:.1f} %")
        finally:
            if bar is not None and task is not None:
                bar.remove_task(task)
        return [done[i] for i in range(len(genotypes))]

    def _score(self, scores: Scores, index: int) -> float:
        try:
            return scores.get(index)
        except UserError as exc:
            kept = self.store.count() if self.store is not None else 0
            raise UserError(
                f"{exc}; the {kept} evaluations recorded so far are kept: continue with "
                f"`factory search --resume {self.store.run_dir if self.store else 'RUN'}`"
            ) from exc

    def _record(self, g: Genotype, acc: float, phase: str, step: int, record: bool) -> Record:
        costs, how = self.costs.costs(g)
        rec = Record(
            genotype=tuple(g),
            arch_id=self.space.arch_id(g),
            objectives={"accuracy": acc, **costs},
            phase=phase,
            step=step,
            wall_s=round(self.elapsed(), 3),
            extra={"latency_how": how} if how else {},
        )
        if record:
            self.store.add(rec)
        return rec
