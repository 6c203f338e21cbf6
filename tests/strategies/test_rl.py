"""`cycle-annealing` and `mnas` on a closed-form toy context: loop, rewards, presets, resume."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from factory.spaces.base import Decision, Genotype, SearchSpace
from factory.strategies.annealing import FAST, SLOW, WARM
from factory.strategies.base import PathSource, Record, Weights
from factory.strategies.registry import STRATEGIES
from factory.strategies.rl import (
    ControllerSearch,
    CycleAnnealing,
    MnasSearch,
    RLConfig,
    front_of,
    mnas_reward,
)
from targets.errors import UserError


class ToySpace(SearchSpace):
    """4 decisions x 4 options; only the genotype side of a space is used here."""

    name = "toy"

    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"layer{i}", ("a", "b", "c", "d")) for i in range(4))

    def manual(self) -> dict[str, Genotype]:
        return {"small": (0, 0, 0, 0), "big": (3, 3, 3, 3)}

    def build(self, g):  # pragma: no cover - networks are not needed by the strategies
        raise NotImplementedError

    supernet = extract = describe = blocks = build


SPACE = ToySpace()


class ToyContext:
    """A documented toy problem standing in for the supernet (tested elsewhere).

    Size s = mean choice / 3 in [0, 1]; accuracy = 0.6 + 0.3 s + N(0, 0.005) drawn from
    `rng` (big is more accurate); latency_ms = 1 + 9 s, so cost_range() = (1, 10). Training
    draws 20 controller paths per epoch through the callable with `rng`, as the real context
    draws one per batch."""

    def __init__(self, seed: int) -> None:
        self.space = SPACE
        self.rng = np.random.default_rng(seed)
        self.objectives = ("accuracy", "latency_ms")
        self.cost = "latency_ms"
        self.records: list[Record] = []
        self.paths: list[Genotype] = []
        self.epochs: list[float] = []

    def train_supernet(self, paths: PathSource = None, epochs: float = 1.0) -> float:
        assert callable(paths), "controller searches train on controller-drawn paths"
        for _ in range(max(1, round(20 * epochs))):
            self.paths.append(self.space.validate(paths(self.rng)))
        self.epochs.append(epochs)
        return 0.0

    def evaluate(
        self,
        genotypes: Sequence[Genotype],
        phase: str,
        step: int,
        weights: Weights = "current",
        record: bool = True,
        cheap: bool = False,
    ) -> list[Record]:
        out = []
        for g in genotypes:
            s = float(np.mean(g)) / 3
            acc = 0.6 + 0.3 * s + float(self.rng.normal(0, 0.005))
            objectives = {"accuracy": acc, "latency_ms": 1 + 9 * s}
            out.append(Record(tuple(g), self.space.format(g), objectives, phase, step))
        if record:
            self.records.extend(out)
        return out

    def snapshot_weights(self) -> None:  # pragma: no cover - not used by these strategies
        pass

    def cost_range(self) -> tuple[float, float]:
        return 1.0, 10.0


TINY = RLConfig(n_warm=2, n_slow=3, n_fast=3, period=2, samples_per_step=3)


def run(
    name: str, config: RLConfig, seed: int, units: range, ctx: ToyContext | None = None, **kw
) -> tuple[ControllerSearch, ToyContext]:
    ctx = ctx or ToyContext(seed)
    strategy = STRATEGIES.get(name)(SPACE, config, **kw)
    for unit in units:
        strategy.run_unit(ctx, unit)
    return strategy, ctx


def rows(records: list[Record]) -> list[tuple]:
    return [(r.genotype, r.objectives["accuracy"], r.phase, r.step) for r in records]


def mean_cost(ctx: ToyContext, steps: Callable[[int], bool]) -> float:
    return float(np.mean([r.value("latency_ms") for r in ctx.records if steps(r.step)]))


def test_registered_with_their_config() -> None:
    assert STRATEGIES.get("cycle-annealing") is CycleAnnealing
    assert STRATEGIES.get("mnas") is MnasSearch
    for name in ("cycle-annealing", "mnas"):
        cls = STRATEGIES.get(name)
        assert cls.Config is RLConfig and cls.name == name


def test_presets() -> None:
    paper = RLConfig.preset("paper")
    assert (paper.n_warm, paper.n_slow, paper.n_fast, paper.period, paper.alpha) == (
        50, 50, 200, 50, 2.0,
    )  # fmt: skip
    assert (paper.samples_per_step, paper.controller_lr, paper.tanh_constant) == (10, 1e-3, 1.5)
    assert (paper.entropy_weight, paper.child_lr, paper.hidden) == (0.1, 0.05, 64)
    assert paper.total_steps == 300
    quick = RLConfig.preset("quick")
    assert quick == RLConfig() and quick.total_steps == 20 and quick.samples_per_step == 4
    with pytest.raises(UserError, match="valid: gpu, paper, quick"):
        RLConfig.preset("huge")


@pytest.mark.parametrize(
    "bad",
    [
        dict(lambda0=1.0),
        dict(alpha=0.0),
        dict(period=0),
        dict(samples_per_step=0),
        dict(baseline_decay=1.0),
        dict(n_warm=0, n_slow=0, n_fast=0),
        dict(mnas_target=-1.0),
        dict(controller_lr=0.0),
    ],
)
def test_bad_config_is_a_user_error(bad: dict) -> None:
    with pytest.raises(UserError):
        RLConfig(**bad)


def test_mnas_reward_values() -> None:
    assert mnas_reward(0.8, 5.0, 5.0, -0.07, -0.07) == pytest.approx(0.8)  # LAT = T
    assert mnas_reward(0.8, 10.0, 5.0, -0.07, -0.07) == pytest.approx(0.7621103984351499)
    assert mnas_reward(0.8, 2.5, 5.0, -0.07, -0.07) == pytest.approx(0.8 * 2**0.07)
    assert mnas_reward(0.8, 2.5, 5.0, 0.0, -1.0) == pytest.approx(0.8)  # hard: flat below T
    assert mnas_reward(0.8, 10.0, 5.0, 0.0, -1.0) == pytest.approx(0.4)  # hard: 1/x above T


def test_cycle_annealing_end_to_end_quick_preset() -> None:
    cfg = RLConfig.preset("quick")
    strategy, ctx = run("cycle-annealing", cfg, seed=0, units=range(cfg.total_steps))
    assert strategy.total_units() == 20
    assert len(ctx.records) == 20 * 4  # every sampled model is recorded
    phases = [r.phase for r in ctx.records]
    assert phases == [WARM] * 20 + [SLOW] * 20 + [FAST] * 40
    assert [r.step for r in ctx.records] == [k for k in range(20) for _ in range(4)]
    assert ctx.epochs == [0.1] * 20 and len(ctx.paths) == 20 * 2
    assert strategy.resolved == {"f_min": 1.0, "f_max": 10.0}
    assert strategy.last is not None and np.isfinite(strategy.last.loss)


def test_mnas_end_to_end_flat_schedule() -> None:
    strategy, ctx = run("mnas", TINY, seed=0, units=range(TINY.total_steps))
    assert {r.phase for r in ctx.records} == {"mnas"}
    assert len(ctx.records) == TINY.total_steps * TINY.samples_per_step
    assert strategy.resolved == {"target": 5.5}  # middle of cost_range()
    fixed = dataclasses.replace(TINY, mnas_target=3.0)
    assert run("mnas", fixed, seed=0, units=range(1))[0].resolved == {"target": 3.0}


def test_rewards_steer_the_controller() -> None:
    """Warm CANAS (F = F_min) pulls the samples small; soft MnasNet (w = −0.07, T = 5.5) lets
    accuracy win and pushes them big. Same seed, same start: only the reward differs."""
    base = RLConfig(n_warm=12, n_slow=0, n_fast=0, samples_per_step=8, controller_lr=0.03)
    cfg = dataclasses.replace(base, child_epochs_per_step=0.0)
    _, cas = run("cycle-annealing", cfg, seed=1, units=range(12))
    _, mnas = run("mnas", cfg, seed=1, units=range(12))
    at_start, last = (lambda k: k == 0), (lambda k: k >= 9)
    assert mean_cost(cas, at_start) == mean_cost(mnas, at_start)  # identical first samples
    uniform = 5.5  # expected latency_ms of a uniform sample
    # seeds 0-3 measured: CANAS ends at 2.3-2.5 ms, MnasNet at 7.0-8.2 ms
    assert mean_cost(cas, last) < uniform - 2.0
    assert mean_cost(mnas, last) > uniform + 1.0


def test_same_seed_same_records() -> None:
    a = run("cycle-annealing", TINY, seed=3, units=range(TINY.total_steps))[1]
    b = run("cycle-annealing", TINY, seed=3, units=range(TINY.total_steps))[1]
    c = run("cycle-annealing", TINY, seed=4, units=range(2))[1]
    assert rows(a.records) == rows(b.records) and a.paths == b.paths
    assert rows(a.records)[: len(c.records)] != rows(c.records)


def _through_disk(state: dict) -> dict:
    """What the run loop does: JSON for the values, safetensors for the tensors."""
    tensors = st_load(st_save(state["tensors"])) if state["tensors"] else {}
    values = json.loads(json.dumps({k: v for k, v in state.items() if k != "tensors"}))
    return {**values, "tensors": tensors}


@pytest.mark.parametrize("name", ["cycle-annealing", "mnas"])
@pytest.mark.parametrize("stop", [0, 4])
def test_resume_continues_identically(name: str, stop: int) -> None:
    full, ctx_full = run(name, TINY, seed=5, units=range(TINY.total_steps))

    first, ctx = run(name, TINY, seed=5, units=range(stop))
    state, rng_state = _through_disk(first.state_dict()), ctx.rng.bit_generator.state
    resumed_ctx = ToyContext(seed=999)  # a fresh process: the run loop restores its rng
    resumed_ctx.rng.bit_generator.state = rng_state
    resumed = STRATEGIES.get(name)(SPACE, TINY)
    resumed.load_state_dict(state)
    for unit in range(stop, TINY.total_steps):
        resumed.run_unit(resumed_ctx, unit)

    tail = [r for r in ctx_full.records if r.step >= stop]
    assert rows(resumed_ctx.records) == rows(tail)
    for a, b in zip(full.controller.parameters(), resumed.controller.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.baseline.value == full.baseline.value
    assert resumed.archive == full.archive and len(full.archive) > stop


def test_front_of_keeps_only_the_non_dominated() -> None:
    scored = {(0,): (0.80, 1.0), (1,): (0.85, 2.0), (2,): (0.84, 3.0), (3,): (0.90, 3.0),
              (4,): (0.80, 1.5), (5,): (0.90, 4.0)}  # fmt: skip
    assert front_of(scored) == [(0,), (1,), (3,)]
    assert front_of({}) == []


@pytest.mark.parametrize("name", ["cycle-annealing", "mnas"])
def test_only_cycle_annealing_imitates_its_front(name: str) -> None:
    """Turning imitation off changes cycle annealing's samples after the first step and
    leaves MnasNet's (the baseline, as its paper has it) untouched."""
    off = dataclasses.replace(TINY, imitate_front=0)
    with_it = run(name, TINY, seed=2, units=range(TINY.total_steps))[1]
    without = run(name, off, seed=2, units=range(TINY.total_steps))[1]
    first = TINY.samples_per_step
    assert rows(with_it.records)[:first] == rows(without.records)[:first]
    differs = rows(with_it.records) != rows(without.records)
    assert differs == (name == "cycle-annealing")


def test_a_checkpoint_from_before_conditioning_resumes_unconditioned() -> None:
    """Runs checkpointed before cycle annealing's controller read F have no target
    embedding: they resume with the controller they started with, step for step."""
    old = dataclasses.replace(TINY, condition_on_target=False)
    _, ctx_full = run("cycle-annealing", old, seed=5, units=range(TINY.total_steps))
    first, ctx = run("cycle-annealing", old, seed=5, units=range(2))
    resumed_ctx = ToyContext(seed=999)
    resumed_ctx.rng.bit_generator.state = ctx.rng.bit_generator.state
    resumed = CycleAnnealing(SPACE, TINY)  # today's config: conditioned
    assert resumed.conditioned
    resumed.load_state_dict(_through_disk(first.state_dict()))
    assert not resumed.conditioned
    for unit in range(2, TINY.total_steps):
        resumed.run_unit(resumed_ctx, unit)
    assert rows(resumed_ctx.records) == rows([r for r in ctx_full.records if r.step >= 2])


def test_units_must_come_in_order() -> None:
    strategy = CycleAnnealing(SPACE, TINY)
    with pytest.raises(ValueError, match="expected unit 0"):
        strategy.run_unit(ToyContext(0), 1)


def test_init_biases_the_first_samples() -> None:
    big = SPACE.manual()["big"]
    cfg = dataclasses.replace(TINY, init_steps=5, init_lr=0.02)
    plain = run("cycle-annealing", cfg, seed=2, units=range(1))[0]
    biased = run("cycle-annealing", cfg, seed=2, units=range(1), init=[big])[0]
    with torch.no_grad():
        lp_plain = float(plain.controller.log_prob([big])[0][0])
        lp_biased = float(biased.controller.log_prob([big])[0][0])
    assert lp_biased > lp_plain + 2
    with pytest.raises(UserError, match="toy genotype"):
        CycleAnnealing(SPACE, TINY, init=[(9, 9, 9, 9)])


def test_degenerate_cost_range_is_a_user_error() -> None:
    ctx = ToyContext(0)
    ctx.cost_range = lambda: (4.0, 4.0)  # type: ignore[method-assign]
    with pytest.raises(UserError, match="F_max > F_min"):
        CycleAnnealing(SPACE, TINY).run_unit(ctx, 0)
