"""The search run loop: set up, run units, checkpoint after each, write the front.

A unit (a generation, a controller step) is the unit of work that a crash may lose: after
each one the supernet, optimizer, strategy and random streams are checkpointed atomically.
Evaluations are committed as they happen, and a resumed run replays the interrupted unit
from the same checkpointed state, taking the evaluations it already recorded from the
database.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory import distributed
from factory.data import DataSplits
from factory.progress import make_progress, status
from factory.search.challenge import cheaper_neighbours
from factory.search.checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from factory.search.config import SearchConfig
from factory.search.context import EvalSettings, RunContext
from factory.search.costs import CostModel
from factory.search.executor import Executor, ExecutorSpec, InProcessExecutor, make_executor
from factory.search.interrupt import (
    STOP_REASONS,
    RunInterrupted,
    StopSignals,
    UnitJournal,
    UnitStart,
    stop_reason,
)
from factory.search.pareto import ChanceFloor, Remeasure, ScoreError, pareto_front, write_outputs
from factory.search.refine import REFINE, gap_neighbours
from factory.search.remeasure import remeasure
from factory.search.rescore import RESCORE, rescore_pool
from factory.search.resolve import config_tuples, resolve
from factory.search.rundir import (
    RunResult,
    check_run_dir,
    create_run_dir,
    load_data,
    remove_new_run,
)
from factory.search.store import (
    RunStore,
)
from factory.spaces import get_space
from factory.spaces.base import Genotype
from factory.strategies import STRATEGIES
from factory.strategies.base import Record, Strategy
from factory.supernet import SupernetTrainConfig, make_optimizer
from profilers.farm import farm_resources
from profilers.flops import count_costs
from targets import get_target
from targets.atomic import check_writable_dir
from targets.errors import Terminated


class _Run:
    """The objects of one run, built from its config."""

    def __init__(
        self,
        config: SearchConfig,
        run_dir: Path,
        store: RunStore | None,  # None on the ranks > 0 of a data-parallel run
        device: torch.device,
        data: DataSplits,
        executor: Executor,
        farm_backend: str,
        dist: distributed.DistContext | None,
    ) -> None:
        self.config, self.run_dir, self.store = config, run_dir, store
        self.target = get_target(config.target)
        self.data = data
        self.space = get_space(config.space, self.data.info.input_spec(), config.space_options)
        cls = STRATEGIES.get(config.strategy)
        strategy_cfg = cls.Config(**config_tuples(cls.Config, config.strategy_config))
        torch.manual_seed(config.seed)  # supernet initialisation
        self.supernet = self.space.supernet().to(device)
        # B architectures per batch (CARS eq. 3) where the strategy has that setting
        archs = int(getattr(strategy_cfg, "archs_per_batch", 1))
        lr = float(getattr(strategy_cfg, "child_lr", config.lr))  # the controller's child lr
        self.train_cfg = SupernetTrainConfig(
            lr=lr,
            archs_per_batch=archs,
            sandwich=config.sandwich,
            distill=config.distill,
            uniform_paths=config.uniform_paths,
        )
        self.optimizer = make_optimizer(self.supernet, self.train_cfg)
        init = [self.space.parse(name) for name in config.init]
        self.strategy: Strategy = cls(self.space, strategy_cfg, init)
        costs = CostModel(
            self.space,
            self.target,
            config.objectives[1:],
            config.latency_mode,
            farm_backend=farm_backend,
            notify=self.notify,
        )
        self.resumed = UnitJournal()  # what a partial checkpoint kept of its unit
        self.ctx = RunContext(
            space=self.space,
            supernet=self.supernet,
            optimizer=self.optimizer,
            train_cfg=self.train_cfg,
            data=self.data,
            settings=EvalSettings(
                batch_size=config.batch_size,
                calib_steps=config.calib_steps,
                val_size=config.val_size,
                finetune_steps=rescore_steps(config, len(self.data.train)),
                finetune_val_size=config.rescore_images,
            ),
            costs=costs,
            store=store,
            executor=executor,
            device=device,
            space_options=config.space_options,
            dist=dist,
            rng=np.random.default_rng(config.seed),
            torch_gen=torch.Generator().manual_seed(config.seed),
            objectives=config.objectives,
            cost=config.cost,
            f_range=(config.f_min, config.f_max),
        )

    def notify(self, message: str) -> None:
        """Tell the user something about the run as it goes (e.g. a farm's agent is down)."""
        progress = self.ctx.progress if hasattr(self, "ctx") else None
        if progress is not None:
            progress.console.print(f"note: {message}", markup=False, soft_wrap=True)
        else:
            print(f"note: {message}", file=sys.stderr)

    def close(self) -> None:
        self.ctx.costs.close()

    def checkpoint(self, unit: int, start: UnitStart | None = None) -> None:
        """Checkpoint after `unit`; with `start` (the next unit's starting state), a partial
        one: that state plus the weights and journal of the unit under way."""
        if self.store is None:
            return  # rank 0 writes the run
        start = start or UnitStart.capture(self.strategy, self.ctx)
        state = dict(start.strategy)
        strategy_tensors = state.pop("tensors", {})
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors = {
            "supernet": self.supernet.state_dict(),
            "optimizer": opt_tensors,
            "strategy": strategy_tensors,
            "rng": {"torch": start.torch_rng},
        }
        if self.ctx.previous is not None:
            tensors["previous"] = self.ctx.previous.state_dict()
        extra: dict[str, Any] = {}
        if start.partial:
            tensors["journal"], extra["partial"] = self.ctx.journal.to_checkpoint()
        save_checkpoint(
            self.run_dir,
            unit,
            tensors,
            {
                "strategy": state,
                "optimizer": opt_meta,
                "numpy_rng": start.numpy_rng,
                "elapsed_s": self.ctx.elapsed(),
                "f_range": start.f_range,
                **extra,
            },
        )

    def restore(self) -> int:
        """Load the last checkpoint; returns the first unit still to run. In a data-parallel
        run rank 0 reads it and hands it to the others."""

        def read() -> tuple[Any, list[Record]]:
            assert self.store is not None
            return load_checkpoint(self.run_dir), self.store.records()

        ckpt, records = self.ctx.dist.from_main(read) if self.ctx.dist else read()
        for r in records:  # the same architecture keeps the same measured costs
            costs = {k: v for k, v in r.objectives.items() if k != "accuracy"}
            self.ctx.costs.seed(r.arch_id, costs, r.extra.get("latency_how"))
        if ckpt is None:
            start = 0
        else:
            self.supernet.load_state_dict(ckpt.tensors["supernet"])
            self.optimizer.load_state_dict(
                unflatten_optimizer_state(ckpt.tensors["optimizer"], ckpt.state["optimizer"])
            )
            state = dict(ckpt.state["strategy"])
            state["tensors"] = ckpt.tensors.get("strategy", {})
            self.strategy.load_state_dict(state)
            self.ctx.torch_gen.set_state(ckpt.tensors["rng"]["torch"])
            self.ctx.rng.bit_generator.state = ckpt.state["numpy_rng"]
            self.ctx.elapsed_offset = float(ckpt.state["elapsed_s"])
            self.ctx.f_range = tuple(ckpt.state["f_range"])  # type: ignore[assignment]
            if "previous" in ckpt.tensors:
                self.ctx.snapshot_weights()
                assert self.ctx.previous is not None
                self.ctx.previous.load_state_dict(ckpt.tensors["previous"])
            start = ckpt.unit + 1
            if "partial" in ckpt.state:  # stopped inside unit `start`: keep what it did
                journal = ckpt.tensors.get("journal", {})
                self.resumed = UnitJournal.from_checkpoint(journal, ckpt.state["partial"])
        self.ctx.replay = {(r.arch_id, r.phase, r.step): r for r in records if r.step >= start}
        return start

    def references(self) -> dict[str, Record]:
        """The manual architectures scored with the final weights (not recorded)."""
        manual = self.space.manual()
        finetuned = self.config.rescore > 0  # scored as the front was chosen
        done = self.ctx.evaluate(
            list(manual.values()), "reference", -1, record=False, finetuned=finetuned
        )
        return dict(zip(manual, done, strict=True))


def run_search(
    config: SearchConfig,
    run_dir: Path,
    resume: bool = False,
    quiet: bool = False,
    device: torch.device | None = None,
    executor: ExecutorSpec | None = None,
    download: bool = False,
) -> RunResult:
    """Run (or continue) a search in `run_dir` and write its front; the supernet trains on
    `device` (default the CPU), candidates are scored where `executor` says (default here).
    Nothing is written until the config and the data check out. Under torchrun every rank
    calls this; rank 0 writes the run."""
    config = resolve(config)
    check_writable_dir(run_dir, "--resume" if resume else "--out")
    dist = distributed.from_env(device or torch.device("cpu"))  # under torchrun: one rank
    device = dist.device if dist is not None else device or torch.device("cpu")
    main = dist is None or dist.is_main  # only rank 0 scores, so only it needs workers
    try:
        check = functools.partial(check_run_dir, config, run_dir, resume)
        done = dist.from_main(check) if dist is not None else check()
        if done is not None:
            return done  # a finished run says so; nothing is measured or rewritten again
        with status(f"loading {config.dataset}", quiet or not main):
            data = load_data(config, download, spare=True)  # fails before any write if missing
        where = executor or ExecutorSpec()
        # joined before anything is written: a cluster that does not answer leaves no run
        resources = farm_resources(get_target(config.target))
        pool = make_executor(where, device, resources) if main else InProcessExecutor(device)
        try:
            quiet = quiet or not main
            return _start(config, run_dir, resume, quiet, device, data, pool, where, dist)
        finally:
            pool.close()
    finally:
        distributed.close(dist)


def _start(
    config: SearchConfig,
    run_dir: Path,
    resume: bool,
    quiet: bool,
    device: torch.device,
    data: DataSplits,
    pool: Executor,
    where: ExecutorSpec,
    dist: distributed.DistContext | None,
) -> RunResult:
    """Create (or reopen) the run directory and run the loop; a run whose set-up fails is
    removed again, so it never blocks the next one with the same --out."""
    main = dist is None or dist.is_main
    create = functools.partial(create_run_dir, config, run_dir, resume)
    existed = dist.from_main(create) if dist is not None else create()
    backend = "ray" if where.kind == "ray" else "local"
    with RunStore(run_dir) if main else contextlib.nullcontext() as store:
        try:
            run = _Run(config, run_dir, store, device, data, pool, backend, dist)
            start = run.restore() if resume else 0
        except BaseException:
            if not resume and store is not None:
                store.close()
                remove_new_run(run_dir, existed)
            raise
        try:
            return _loop(run, start, quiet)
        finally:
            run.close()


def _loop(run: _Run, start: int, quiet: bool) -> RunResult:
    total = run.strategy.total_units()
    budget = run.config.time_budget_s
    stopped: str | None = None
    unit, kept = start, ""
    unit_seconds: list[float] = []  # of the units this process ran: the next one's forecast
    floor = _chance_floor(run)
    with StopSignals() as signals, make_progress(disable=quiet) as progress:
        run.ctx.progress, run.ctx.signals = progress, signals
        task = progress.add_task(
            f"{run.config.strategy} on {run.config.space}",
            total=total, completed=start, status="", start=start,
        )  # fmt: skip
        begun: UnitStart | None = None
        try:
            while unit < total:
                signals.check()
                if _over_budget(run, budget, unit_seconds):
                    stopped = f"time budget of {budget:.0f} s reached"
                    break
                began = time.monotonic()
                run.ctx.begin_unit(run.resumed if unit == start else None)  # journal first
                begun = UnitStart.capture(run.strategy, run.ctx, partial=True)
                run.strategy.run_unit(run.ctx, unit)
                with signals.deferring():
                    run.checkpoint(unit)
                    unit, begun = unit + 1, None
                unit_seconds.append(time.monotonic() - began)
                if run.store is not None:
                    front = pareto_front(run.store.records(), run.config.objectives, floor)
                    progress.update(task, advance=1, status=f"front {len(front)}")
        except (RunInterrupted, KeyboardInterrupt, Terminated) as exc:
            stopped = stop_reason(exc)
            kept = _keep_partial(run, unit, begun)
        run.ctx.progress = run.ctx.signals = None
    if run.store is None:  # a rank > 0 of a data-parallel run: rank 0 writes the outputs
        return RunResult(run.run_dir, [], unit, total, 0, stopped, rank=run.ctx.dist.rank)
    run.ctx.dist = None  # the ranks part here: rank 0 scores the references alone
    refs: dict[str, Record] = {}
    if stopped not in STOP_REASONS:
        # the run's own handlers here too: under a SIGINT handler that does not raise (one
        # an embedding program may install) a Ctrl-C here went unheard and the run finished
        try:
            with StopSignals() as signals, make_progress(disable=quiet) as run.ctx.progress:
                run.ctx.signals = signals
                _refine(run, floor, unit)  # a run continued after --time refines anew
                _rescore(run, floor, unit)
                refs = run.references()
        except (RunInterrupted, KeyboardInterrupt, Terminated) as exc:
            stopped = stop_reason(exc)
        run.ctx.progress = run.ctx.signals = None
    records = run.store.records()
    meta = {
        "space": run.config.space,
        "strategy": run.config.strategy,
        "target": run.config.target,
        "units_done": unit,
        "total_units": total,
        "stopped": stopped,
        "floor": {"num_classes": floor.num_classes, "val_images": floor.val_images},
        "latency_objective": run.ctx.costs.describe_latency(),
        "rescore": {
            "candidates": sum(r.phase == RESCORE for r in records),
            "steps": run.ctx.settings.finetune_steps,
            "images": run.ctx.rescore_images,  # each scored on (val, then spare training)
            "lr": run.ctx.settings.finetune_lr,
            # networks whose cheaper neighbours were rescored too, how many each (challenge.py)
            "challenge": list(run.config.challenge or ()),
            "challengers": run.config.challengers if run.config.challenge else 0,
        },
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with status("writing the front (and re-measuring its latency)", quiet):
            front = _write(run, records, refs, meta, floor)
    except (KeyboardInterrupt, Terminated) as exc:  # in the final re-measurement: skip it
        meta["stopped"] = stopped = stop_reason(exc)
        front = _write(run, records, refs, meta, floor)
    return RunResult(run.run_dir, front, unit, total, len(records), stopped, kept)


def _refine(run: _Run, floor: ChanceFloor, step: int) -> None:
    """`config.refine` evaluations of cheaper neighbours in the front's cost gaps, with the
    final weights (refine.py), recorded as phase 'refine' at `step`. The candidates come
    from the records before refinement and a generator of their own, so a resumed run
    draws the same ones and replays those already scored."""
    if run.config.refine <= 0 or run.store is None:
        return
    records = [r for r in run.store.records() if r.phase not in (REFINE, RESCORE)]
    cost = run.config.cost
    front = [
        (r.genotype, r.value(cost)) for r in pareto_front(records, run.config.objectives, floor)
    ]
    rng = np.random.default_rng([run.config.seed, step])
    seen = {r.arch_id for r in records}
    todo = gap_neighbours(run.space, front, _macs(run), seen, run.config.refine, rng)
    if todo:
        run.ctx.evaluate(todo, REFINE, step)


def _macs(run: _Run) -> Callable[[Genotype], float]:
    """A genotype's MAC count at batch 1, cached: the proxy that places an unmeasured
    neighbour by cost."""
    shape = (1, *run.space.spec.shape)
    return functools.cache(lambda g: count_costs(run.space.build(g), shape).macs)


def _challengers(run: _Run, step: int) -> list[Genotype]:
    """`config.challengers` cheaper neighbours of each `config.challenge` network
    (challenge.py), rescored with the candidates: the same ones on a resume (a generator
    of their own per network)."""
    if run.config.challengers <= 0:
        return []
    manual, macs = run.space.manual(), _macs(run)
    out: list[Genotype] = []
    for name in run.config.challenge or ():
        rng = np.random.default_rng([run.config.seed, step, 1 + list(manual).index(name)])
        out += cheaper_neighbours(run.space, manual[name], macs, run.config.challengers, rng)
    return out


def _rescore(run: _Run, floor: ChanceFloor, step: int) -> None:
    """The best `config.rescore` candidates by one-shot score and the challengers, each
    fine-tuned briefly on its own from the final weights and scored again (rescore.py),
    recorded as phase 'rescore' at `step`; the front is then chosen among these alone. A
    resumed run picks the same candidates and replays those already scored."""
    if run.config.rescore <= 0 or run.store is None:
        return
    records = run.store.records()
    pool = [
        r.genotype for r in rescore_pool(records, run.config.objectives, floor, run.config.rescore)
    ]
    todo = list({run.space.arch_id(g): g for g in [*pool, *_challengers(run, step)]}.values())
    if todo:
        run.ctx.evaluate(todo, RESCORE, step, finetuned=True)


def rescore_steps(config: SearchConfig, train_images: int) -> int:
    """`config.rescore_steps`, but at most one pass over the search's training images: a
    candidate never trains on more than the supernet saw in an epoch (a tiny search, e.g.
    a test's, fine-tunes a few batches instead of 50)."""
    return max(1, min(config.rescore_steps, train_images // config.batch_size))


def _write(
    run: _Run, records: list[Record], refs: dict[str, Record], meta: dict, floor: ChanceFloor
) -> list[Record]:
    return write_outputs(
        run.run_dir, records, run.config.objectives, run.space.format, refs, meta,
        floor=floor, remeasure=_final_latency(run, meta["stopped"]),
        error=ScoreError.of(run.ctx.rescore_images, run.ctx.val_images),
    )  # fmt: skip


def _keep_partial(run: _Run, unit: int, begun: UnitStart | None) -> str:
    """Checkpoint the unit under way (weights, journal) unless it did nothing or stopped in
    the middle of an optimizer step; says what was kept."""
    if begun is None or run.store is None or run.ctx.journal.in_step:
        return ""
    steps, evaluations = run.ctx.journal.steps, run.store.count() - begun.evaluations
    if not steps and not evaluations:
        return ""
    run.checkpoint(unit - 1, begun)
    return f"{steps} supernet steps and {evaluations} evaluations of unit {unit + 1}"


def _over_budget(run: _Run, budget: float | None, unit_seconds: Sequence[float]) -> bool:
    """Whether the time budget is spent or the next unit would overrun it, by rank 0's
    clock in a data-parallel run."""
    if budget is None:
        return False
    if run.ctx.dist is not None:
        return run.ctx.dist.from_main(lambda: overruns(run.ctx.elapsed(), unit_seconds, budget))
    return overruns(run.ctx.elapsed(), unit_seconds, budget)


def overruns(elapsed: float, unit_seconds: Sequence[float], budget: float) -> bool:
    """Whether a unit started now would end past `budget`, forecast as the mean of the
    units run so far (none yet: only whether the budget is spent).

    Why: stopping only once the budget was spent let a quick-preset `--time 20m` run end a
    whole generation late (~2.5-4 min on a 2-core CPU) before its refinement and rescoring."""
    forecast = sum(unit_seconds) / len(unit_seconds) if unit_seconds else 0.0
    return elapsed + forecast >= budget


def _chance_floor(run: _Run) -> ChanceFloor:
    """The floor for this run's classes and the validation images that scored candidates."""
    return ChanceFloor(run.data.info.num_classes, run.ctx.val_images)


def _final_latency(run: _Run, stopped: str | None) -> Remeasure:
    """The front's careful re-measurement (skipped after Ctrl-C: the user is waiting)."""
    skip = f"the run was {stopped}" if stopped in STOP_REASONS else None
    return functools.partial(remeasure, run.space, run.target, run.config.objectives, skip=skip)
