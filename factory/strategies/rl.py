"""`cycle-annealing` (CANAS) and `mnas`: one LSTM-controller search with two rewards.

A unit is one controller step: (1) train the shared weights for `child_epochs_per_step`
with one controller-sampled path per batch, (2) sample N genotypes, evaluate them fully
(every sample is recorded) and make one REINFORCE update, (3) `inner_updates` more updates,
each on fresh samples scored cheaply (`evaluate(cheap=True)`: one validation batch through
the shared weights; never recorded). ENAS trains its controller for many updates per child
epoch; with one update per step the sampled cost did not follow the moving target F at all
(issue 13). Each update descends −Σ (R − b)·log p, where R is the reward plus
`entropy_weight` × the path's mean entropy per decision (a sum over 16 decisions drowned the
reward) and b a moving-average baseline. The two strategies differ only in the reward:
CANAS's Acc·exp(−|cost − F|/(λδ)) on the warm / slow / fast-anneal schedule
(`annealing.py`), or MnasNet's Acc·(cost/T)^w on a flat schedule. Cycle annealing's
controller also reads where F stands in [F_min, F_max] (`condition_on_target`, our
addition): a controller that only sees a reward whose peak keeps moving lags it. And after
each step it imitates the best members of the run's front at this step's F
(`imitate_front`, our addition after priority-queue training, Abolafia et al. 2018): the
reward Acc·exp(−|cost − F|/(λδ)) teaches where the cost is far more than which model is the
most accurate there, so the controller followed F but sampled like random search.

Baseline (*our choice*): the reward is non-stationary (F moves every step), so the decay
defaults to 0.9 (≈10 updates of memory) instead of ENAS's 0.99, and the baseline restarts —
from the next batch's mean — when the phase changes (δ changes) or when F has moved more
than `baseline_reset_fraction` of [F_min, F_max] since the last restart.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from factory.spaces.base import Genotype, SearchSpace
from factory.strategies.annealing import cas_reward, cas_schedule, check_schedule
from factory.strategies.base import SearchContext, Strategy
from factory.strategies.controller import (
    Baseline,
    Controller,
    UpdateStats,
    imitate,
    make_optimizer,
    optimizer_from_flat,
    optimizer_to_flat,
    reinforce_update,
)
from factory.strategies.registry import STRATEGIES
from targets.errors import UserError

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class RLConfig:
    """Hyper-parameters of the controller searches; defaults are the quick preset."""

    n_warm: int = 5  # N_warm controller steps (CANAS)
    n_slow: int = 5  # N_slow
    n_fast: int = 10  # N_fast; `mnas` runs n_warm + n_slow + n_fast flat steps
    period: int = 5  # T, steps per F cycle
    alpha: float = 2.0  # δ_anneal = (F_max − F_min)/(2α)
    lambda0: float = 0.9  # fast anneal: λ = λ0^ceil(s/T); our choice (the paper gives none)
    samples_per_step: int = 4  # N models sampled, evaluated and used per controller update
    # extra updates per step on fresh, cheaply scored samples (quick: 3, so a quick run's
    # latency measurements stay affordable; the paper presets 7, i.e. 8 updates a step)
    inner_updates: int = 3
    child_epochs_per_step: float = 0.1  # shared-weight epochs per step (controller paths)
    child_lr: float = 0.05  # SGD lr of the shared weights; read by the run loop, not here
    controller_lr: float = 1e-3
    hidden: int = 64
    tanh_constant: float = 1.5
    entropy_weight: float = 0.1
    baseline_decay: float = 0.9
    baseline_reset_fraction: float = 0.25  # restart b when F moved this share of the range
    # advantages / the batch's reward spread (`controller.reinforce_update`); our addition:
    # without it the sampled cost did not follow F on NAS-Bench-201 (docs/nb201.md)
    normalise_advantage: bool = True
    # cycle annealing: the controller's first input carries F's place in [F_min, F_max], so
    # it learns one mapping from target to architecture instead of chasing a moving reward
    # (our addition; on NAS-Bench-201 corr(F, sampled cost) rose from 0.27 to 0.84,
    # docs/nb201_notes.md). `mnas` has one target and ignores it.
    condition_on_target: bool = True
    # cycle annealing: after each step's updates, `imitation_steps` cross-entropy steps making
    # the `imitate_front` members of the run's front with the best reward at this F likelier
    # (our addition; 0 turns it off). On NAS-Bench-201 the queries to 0.99 of the exact
    # front fell from never (median) to ~330 / ~245 on raspi4 / fpga (docs/nb201_notes.md).
    imitate_front: int = 2
    imitation_steps: int = 20
    mnas_target: float | None = None  # T of the MnasNet reward; None: middle of cost_range()
    mnas_alpha: float = -0.07  # w when cost <= T (soft constraint: α = β = −0.07)
    mnas_beta: float = -0.07  # w when cost > T (hard constraint: α = 0, β = −1)
    # --init warm start: cross-entropy steps towards the manual genotypes. Measured on the
    # shufflenet space: the manual layer choices go from 1/8 to ~0.29 each, raw logits ~1.2,
    # so tanh is not saturated and REINFORCE can still move away from them.
    init_steps: int = 20
    init_lr: float = 0.005

    def __post_init__(self) -> None:
        check_schedule(self)
        if self.total_steps < 1:
            raise UserError("controller search needs at least one step")
        if self.samples_per_step < 1 or self.hidden < 1:
            raise UserError("samples per step and hidden size must be at least 1")
        counts = (self.init_steps, self.inner_updates, self.imitate_front, self.imitation_steps)
        if min(self.child_epochs_per_step, *counts) < 0:
            raise UserError(
                "child epochs per step, init steps, inner updates and imitation must be >= 0"
            )
        if min(self.controller_lr, self.init_lr, self.child_lr, self.tanh_constant) <= 0:
            raise UserError("learning rates and the tanh constant must be > 0")
        if not 0 <= self.baseline_decay < 1:
            raise UserError(f"baseline decay must be in [0, 1), got {self.baseline_decay}")
        if self.mnas_target is not None and self.mnas_target <= 0:
            raise UserError(f"MnasNet target cost must be > 0, got {self.mnas_target}")

    @property
    def total_steps(self) -> int:
        return self.n_warm + self.n_slow + self.n_fast

    @classmethod
    def preset(cls, name: str) -> RLConfig:
        """ "quick" (minutes on a 2-core CPU, Fashion-MNIST subset) or "paper" (CANAS)."""
        if name not in _PRESETS:
            raise UserError(f"unknown preset {name!r}; valid: {', '.join(sorted(_PRESETS))}")
        return cls(**_PRESETS[name])


# CANAS: 50 warm + 50 slow + 200 fast steps, T = 50, α = 2, N = 10, Adam 1e-3, child SGD 0.05;
# one child epoch per controller step (ENAS's alternation).
_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "paper": dict(
        n_warm=50,
        n_slow=50,
        n_fast=200,
        period=50,
        samples_per_step=10,
        child_epochs_per_step=1.0,
        inner_updates=7,
    ),
    # one GPU, the whole training split: ~8 child epochs over 60 steps
    "gpu": dict(
        n_warm=10,
        n_slow=10,
        n_fast=40,
        period=10,
        samples_per_step=8,
        child_epochs_per_step=0.13,
        inner_updates=7,
    ),
}


def mnas_reward(acc: float, cost: float, target: float, alpha: float, beta: float) -> float:
    """MnasNet: Acc · (cost/T)^w with w = α if cost ≤ T else β (soft: α = β = −0.07)."""
    if cost <= 0 or target <= 0:
        raise ValueError(f"MnasNet reward needs positive cost and target, got {cost}, {target}")
    w = alpha if cost <= target else beta
    return acc * (cost / target) ** w


RewardFn = Callable[[float, float], float]  # (accuracy, cost) -> reward


@dataclass(frozen=True)
class RewardAt:
    """The reward at one step: the phase name it is recorded under, the function, and where
    its target sits in [0, 1] of the cost range (a big move restarts the baseline)."""

    phase: str
    fn: RewardFn
    anchor: float


class ControllerSearch(Strategy):
    """The shared loop; subclasses resolve their cost constants and give the reward."""

    Config: ClassVar[type[RLConfig]] = RLConfig
    follows_target: ClassVar[bool] = False  # whether `condition_on_target` applies

    def __init__(
        self, space: SearchSpace, config: RLConfig | None = None, init: Sequence[Genotype] = ()
    ) -> None:
        self.space = space
        self.config = config if config is not None else RLConfig()
        self.conditioned = self.follows_target and self.config.condition_on_target
        self.target: float | None = None  # this step's target in [0, 1]; only a conditioned
        # controller reads it (`Controller.sample`)
        self.init = tuple(space.validate(g) for g in init)
        self.controller: Controller | None = None  # built by the first unit, from ctx.rng
        self.optimizer: torch.optim.Adam | None = None
        self.baseline = Baseline(self.config.baseline_decay)
        self.baseline_ref: tuple[str, float] | None = None  # (phase, anchor) at last restart
        self.resolved: dict[str, float] = {}  # cost constants fixed at the first unit
        self.next_unit = 0
        self.last: UpdateStats | None = None
        # every recorded evaluation, latest per genotype: (accuracy, cost); the front to imitate
        self.archive: dict[Genotype, tuple[float, float]] = {}

    def total_units(self) -> int:
        return self.config.total_steps

    @abstractmethod
    def _resolve(self, ctx: SearchContext) -> dict[str, float]:
        """Cost constants (F_min/F_max or the target), fixed once per run."""

    @abstractmethod
    def _reward_at(self, unit: int) -> RewardAt: ...

    def run_unit(self, ctx: SearchContext, unit: int) -> None:
        self.check_unit(unit)
        if self.controller is None:
            self._start(ctx)
        cfg, reward = self.config, self._reward_at(unit)
        self.target = reward.anchor
        if cfg.child_epochs_per_step > 0:
            ctx.train_supernet(self._sample_path, cfg.child_epochs_per_step)
        self._maybe_restart_baseline(reward)
        self._update(ctx, reward, unit, record=True)
        for _ in range(cfg.inner_updates):
            self._update(ctx, reward, unit, record=False)
        if self.follows_target and cfg.imitate_front > 0 and cfg.imitation_steps > 0:
            self._imitate_front(reward)
        self.next_unit = unit + 1

    def _update(self, ctx: SearchContext, reward: RewardAt, unit: int, record: bool) -> None:
        """Sample, score (fully and recorded, or cheaply), one REINFORCE step."""
        batch = self._sample(self.config.samples_per_step, ctx.rng)
        if record:
            records = ctx.evaluate(batch, phase=reward.phase, step=unit)
        else:
            records = ctx.evaluate(batch, reward.phase, unit, record=False, cheap=True)
        scored = [(r.value("accuracy"), r.value(ctx.cost)) for r in records]
        if record:
            self.archive.update(zip(batch, scored, strict=True))
        rewards = [reward.fn(acc, cost) for acc, cost in scored]
        assert self.controller is not None and self.optimizer is not None
        self.last = reinforce_update(
            self.controller, self.optimizer, batch, rewards, self.baseline,
            self.config.entropy_weight, self.config.normalise_advantage, self.target,
        )  # fmt: skip

    def _imitate_front(self, reward: RewardAt) -> None:
        """Cross-entropy steps towards the front members with the best reward at this step's
        target, conditioned on it: the controller's samples then vary around the best models
        found near F (as evolution's mutants vary around its parents) instead of anywhere at
        about F's cost."""
        front = front_of(self.archive)
        best = sorted(front, key=lambda g: -reward.fn(*self.archive[g]))
        assert self.controller is not None and self.optimizer is not None
        imitate(self.controller, self.optimizer, best[: self.config.imitate_front],
                self.config.imitation_steps, self.target)  # fmt: skip

    def _start(self, ctx: SearchContext) -> None:
        cfg = self.config
        self.resolved = self._resolve(ctx)
        self.controller = self._new_controller(int(ctx.rng.integers(MAX_SEED)))
        if self.init:
            self.controller.bias_towards(self.init, cfg.init_steps, cfg.init_lr)
        self.optimizer = make_optimizer(self.controller, cfg.controller_lr)

    def _new_controller(self, seed: int) -> Controller:
        gen = torch.Generator().manual_seed(seed)
        cfg = self.config
        return Controller(self.space.choices(), gen, cfg.hidden, cfg.tanh_constant,
                          conditioned=self.conditioned)  # fmt: skip

    def _sample(self, n: int, rng: np.random.Generator) -> list[Genotype]:
        assert self.controller is not None
        gen = torch.Generator().manual_seed(int(rng.integers(MAX_SEED)))
        with torch.no_grad():
            return self.controller.sample(n, gen, self.target).genotypes

    def _sample_path(self, rng: np.random.Generator) -> Genotype:
        """One training path per batch, drawn from the controller with the context's rng."""
        return self._sample(1, rng)[0]

    def _maybe_restart_baseline(self, reward: RewardAt) -> None:
        ref = self.baseline_ref
        moved = (
            ref is not None and abs(reward.anchor - ref[1]) > self.config.baseline_reset_fraction
        )
        if ref is None or ref[0] != reward.phase or moved:
            self.baseline.value = None
            self.baseline_ref = (reward.phase, reward.anchor)

    # --- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "next_unit": self.next_unit,
            "resolved": dict(self.resolved),
            "baseline": self.baseline.value,
            "baseline_ref": list(self.baseline_ref) if self.baseline_ref else None,
            "started": self.controller is not None,
            "archive": [[list(g), acc, cost] for g, (acc, cost) in self.archive.items()],
            "tensors": {},
        }
        if self.controller is not None and self.optimizer is not None:
            meta, optim = optimizer_to_flat(self.optimizer)
            weights = {
                f"controller.{k}": v.detach().clone()
                for k, v in self.controller.state_dict().items()
            }
            state["optimizer"] = meta
            state["tensors"] = {**weights, **optim}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_unit = int(state["next_unit"])
        self.resolved = {k: float(v) for k, v in state["resolved"].items()}
        self.baseline = Baseline(self.config.baseline_decay, state["baseline"])
        ref = state["baseline_ref"]
        self.baseline_ref = (str(ref[0]), float(ref[1])) if ref else None
        # a checkpoint from before imitation has no archive: it imitates what comes next
        self.archive = {tuple(int(c) for c in g): (float(acc), float(cost))
                        for g, acc, cost in state.get("archive", [])}  # fmt: skip
        self.controller = self.optimizer = None
        if not state["started"]:
            return
        tensors = state["tensors"]
        prefix = "controller."
        weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        # a run checkpointed before controllers took the target resumes as it started
        self.conditioned = self.conditioned and "target_embedding" in weights
        self.controller = self._new_controller(0)
        self.controller.load_state_dict(weights, strict=True)
        self.optimizer = make_optimizer(self.controller, self.config.controller_lr)
        optimizer_from_flat(self.optimizer, state["optimizer"], tensors)


def front_of(scored: dict[Genotype, tuple[float, float]]) -> list[Genotype]:
    """The genotypes no other beats on both accuracy (higher) and cost (lower)."""
    front, best = [], -np.inf
    for g, (acc, _) in sorted(scored.items(), key=lambda kv: (kv[1][1], -kv[1][0])):
        if acc > best:
            front.append(g)
            best = acc
    return front


@STRATEGIES.decorator("cycle-annealing")
class CycleAnnealing(ControllerSearch):
    """CANAS: the target cost F sweeps [F_min, F_max] so the records cover the whole front."""

    follows_target = True

    def _resolve(self, ctx: SearchContext) -> dict[str, float]:
        f_min, f_max = (float(x) for x in ctx.cost_range())
        if not f_max > f_min:
            raise UserError(f"cycle annealing needs F_max > F_min, got [{f_min}, {f_max}]")
        return {"f_min": f_min, "f_max": f_max}

    def _reward_at(self, unit: int) -> RewardAt:
        f_min, f_max = self.resolved["f_min"], self.resolved["f_max"]
        phase, target, lam, delta = cas_schedule(unit, self.config, f_min, f_max)

        def fn(acc: float, cost: float) -> float:
            return cas_reward(acc, cost, target, lam, delta)

        return RewardAt(phase, fn, (target - f_min) / (f_max - f_min))


@STRATEGIES.decorator("mnas")
class MnasSearch(ControllerSearch):
    """MnasNet's scalarised reward Acc·(cost/T)^w on a flat schedule (the baseline)."""

    def _resolve(self, ctx: SearchContext) -> dict[str, float]:
        target = self.config.mnas_target
        if target is None:
            f_min, f_max = ctx.cost_range()
            target = (float(f_min) + float(f_max)) / 2
        return {"target": float(target)}

    def _reward_at(self, unit: int) -> RewardAt:
        target, cfg = self.resolved["target"], self.config

        def fn(acc: float, cost: float) -> float:
            return mnas_reward(acc, cost, target, cfg.mnas_alpha, cfg.mnas_beta)

        return RewardAt("mnas", fn, 0.0)
