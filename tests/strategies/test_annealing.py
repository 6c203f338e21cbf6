"""CANAS schedule and reward against the paper's formulas, with hand-computed numbers.

Reading under test (documented in annealing.py): the phase comes from the run's step; inside
each anneal phase the F cycle and the λ exponent count from the phase's first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from factory.strategies.annealing import FAST, SLOW, WARM, cas_reward, cas_schedule, cycle_target
from targets.errors import UserError

F_MIN, F_MAX = 10.0, 30.0  # span 20: δ_warm = 10, δ_anneal = 20/(2·2) = 5


@dataclass(frozen=True)
class Params:
    n_warm: int = 2
    n_slow: int = 9
    n_fast: int = 12
    period: int = 4
    alpha: float = 2.0
    lambda0: float = 0.5


PAPER = Params(n_warm=50, n_slow=50, n_fast=200, period=50, alpha=2.0, lambda0=0.9)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, (WARM, 10.0, 1.0, 10.0)),
        (1, (WARM, 10.0, 1.0, 10.0)),
        (2, (SLOW, 10.0, 1.0, 5.0)),  # s = 0: the cycle opens at F_min
        (3, (SLOW, 20.0, 1.0, 5.0)),  # s = 1 = T/4: 10 + 10·(1 − cos(π/2))
        (4, (SLOW, 30.0, 1.0, 5.0)),  # s = 2 = T/2: F_max
        (5, (SLOW, 20.0, 1.0, 5.0)),  # s = 3 = 3T/4
        (6, (SLOW, 10.0, 1.0, 5.0)),  # s = 4 = T: back at F_min
        (7, (SLOW, 10.0, 1.0, 5.0)),  # s = 5: 5 mod (T+1) = 0, F_min again
        (8, (SLOW, 20.0, 1.0, 5.0)),  # s = 6: 6 mod 5 = 1
        (11, (FAST, 10.0, 1.0, 5.0)),  # fast s = 0: F_min, λ = 0.5^0
        (12, (FAST, 20.0, 0.5, 5.0)),  # s = 1: λ = 0.5^ceil(1/4)
        (13, (FAST, 30.0, 0.5, 5.0)),  # s = 2
        (15, (FAST, 10.0, 0.5, 5.0)),  # s = T = 4: λ = 0.5^1
        (16, (FAST, 10.0, 0.25, 5.0)),  # s = 5: λ = 0.5^2, 5 mod 5 = 0
        (19, (FAST, 20.0, 0.25, 5.0)),  # s = 2T = 8: λ = 0.5^2; 8 mod 5 = 3 = 3T/4
        (20, (FAST, 10.0, 0.125, 5.0)),  # s = 9: λ = 0.5^3; 9 mod 5 = 4 = T
        (22, (FAST, 20.0, 0.125, 5.0)),  # s = 11, the last step; 11 mod 5 = 1
    ],
)
def test_small_schedule_matches_hand_values(step: int, expected: tuple) -> None:
    phase, F, lam, delta = cas_schedule(step, Params(), F_MIN, F_MAX)
    assert phase == expected[0]
    assert (F, lam, delta) == pytest.approx(expected[1:], abs=1e-9)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, (WARM, 10.0, 1.0, 10.0)),
        (49, (WARM, 10.0, 1.0, 10.0)),
        (50, (SLOW, 10.0, 1.0, 5.0)),  # slow anneal opens at F_min
        (75, (SLOW, 30.0, 1.0, 5.0)),  # s = 25 = T/2: F_max
        (100, (FAST, 10.0, 1.0, 5.0)),  # fast anneal opens at F_min with λ = 1
        (150, (FAST, 10.0, 0.9, 5.0)),  # s = T: λ = 0.9; 50 mod 51 = 50 → cos 2π = 1
        (200, (FAST, 10.078852986855223, 0.81, 5.0)),  # s = 2T; 100 mod 51 = 49
        # last step: s = 199, λ = 0.9^ceil(199/50) = 0.9^4; 199 mod 51 = 46: 10 + 10·(1 − cos 1.84π)
        (299, (FAST, 11.236933199561363, 0.6561, 5.0)),
    ],
)
def test_paper_schedule_matches_hand_values(step: int, expected: tuple) -> None:
    phase, F, lam, delta = cas_schedule(step, PAPER, F_MIN, F_MAX)
    assert phase == expected[0]
    assert (F, lam, delta) == pytest.approx(expected[1:], abs=1e-9)


def test_phase_lengths_follow_the_config() -> None:
    phases = [cas_schedule(k, PAPER, F_MIN, F_MAX)[0] for k in range(300)]
    assert phases.count(WARM) == 50 and phases.count(SLOW) == 50 and phases.count(FAST) == 200
    assert phases == sorted(phases, key=[WARM, SLOW, FAST].index)  # warm, then slow, then fast
    assert cas_schedule(400, PAPER, F_MIN, F_MAX)[0] == FAST  # past the end stays in fast


def test_target_stays_in_range_and_cycles() -> None:
    values = [cycle_target(s, 50, F_MIN, F_MAX) for s in range(200)]
    assert min(values) == pytest.approx(F_MIN) and max(values) == pytest.approx(F_MAX)
    assert all(F_MIN - 1e-9 <= v <= F_MAX + 1e-9 for v in values)
    assert values[:51] == values[51:102]  # period T + 1 = 51 steps


@pytest.mark.parametrize(
    ("acc", "cost", "F", "lam", "delta", "expected"),
    [
        (0.9, 20.0, 20.0, 1.0, 5.0, 0.9),  # at the target: the accuracy itself
        (0.9, 25.0, 20.0, 1.0, 5.0, 0.33109149705429813),  # one λδ away: 0.9·e^−1
        (0.9, 15.0, 20.0, 1.0, 5.0, 0.33109149705429813),  # symmetric below the target
        (0.9, 25.0, 20.0, 0.5, 5.0, 0.12180175491295143),  # λ = 0.5 sharpens: 0.9·e^−2
        (0.0, 20.0, 20.0, 1.0, 5.0, 0.0),
    ],
)
def test_cas_reward_values(
    acc: float, cost: float, F: float, lam: float, delta: float, expected: float
) -> None:
    assert cas_reward(acc, cost, F, lam, delta) == pytest.approx(expected, rel=1e-12)


def test_cas_reward_decreases_with_distance() -> None:
    rewards = [cas_reward(0.8, 20.0 + d, 20.0, 1.0, 5.0) for d in range(10)]
    assert rewards == sorted(rewards, reverse=True) and rewards[0] > rewards[-1]
    assert math.isclose(rewards[0], 0.8)


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="F_max > F_min"):
        cas_schedule(0, PAPER, 5.0, 5.0)
    with pytest.raises(ValueError, match="step"):
        cas_schedule(-1, PAPER, F_MIN, F_MAX)
