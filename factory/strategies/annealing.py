"""CANAS's cycle-annealing schedule and reward, as pure functions of the controller step.

The reward R = Acc · exp(−|cost − F| / (λ·δ)) pulls the controller towards models whose
cost is near a moving target F. Three phases over the run (Yao et al. 2021):

- ``warm`` (N_warm steps): F = F_min, λ = 1, δ = (F_max − F_min)/2 — find accurate small
  models first.
- ``slow-anneal`` (N_slow steps): λ = 1, δ = (F_max − F_min)/(2α), and F sweeps
  F_min → F_max → F_min: F = F_min + (F_max − F_min)/2 · (1 − cos(2π · (s mod (T+1)) / T)).
- ``fast-anneal`` (N_fast steps): as slow, but λ = λ0^ceil(s/T) (0 < λ0 < 1), so the
  penalty sharpens every cycle.

Step reading (the paper's text is ambiguous; *our choice*): `step` is the 0-based controller
step of the run and decides the phase; inside the anneal formulas ``s`` counts from the start
of the current phase (s = step − phase start). So every anneal phase opens its F cycle at
F_min (continuing smoothly from the warm phase's F = F_min), and fast anneal opens with
λ = λ0^0 = 1 (continuing slow anneal's λ = 1), then λ0 for s = 1..T, λ0² for s = T+1..2T, ….
Steps past the end of the run stay in fast anneal.
"""

from __future__ import annotations

import math
from typing import Protocol

from targets.errors import UserError

WARM, SLOW, FAST = "warm", "slow-anneal", "fast-anneal"
PHASES = (WARM, SLOW, FAST)


class CasScheduleParams(Protocol):
    """The schedule's hyper-parameters (an `RLConfig` has them)."""

    n_warm: int  # N_warm, steps
    n_slow: int  # N_slow, steps
    n_fast: int  # N_fast, steps
    period: int  # T, steps per F cycle (mod T+1, as in the paper)
    alpha: float  # α: δ_anneal = (F_max − F_min)/(2α)
    lambda0: float  # λ0 in (0, 1): fast anneal's λ = λ0^ceil(s/T)


def check_schedule(cfg: CasScheduleParams) -> None:
    """`UserError` for hyper-parameters the formulas cannot use."""
    if min(cfg.n_warm, cfg.n_slow, cfg.n_fast) < 0:
        raise UserError("cycle annealing: phase lengths must be >= 0")
    if cfg.period < 1:
        raise UserError(f"cycle annealing: period T must be >= 1, got {cfg.period}")
    if cfg.alpha <= 0:
        raise UserError(f"cycle annealing: alpha must be > 0, got {cfg.alpha}")
    if not 0 < cfg.lambda0 < 1:
        raise UserError(f"cycle annealing: lambda0 must be in (0, 1), got {cfg.lambda0}")


def cycle_target(s: int, period: int, f_min: float, f_max: float) -> float:
    """F at step s of an anneal phase: F_min at s = 0, F_max at s = T/2, back at s = T."""
    phase = (s % (period + 1)) / period
    return f_min + (f_max - f_min) / 2 * (1 - math.cos(2 * math.pi * phase))


def cas_schedule(
    step: int, cfg: CasScheduleParams, f_min: float, f_max: float
) -> tuple[str, float, float, float]:
    """(phase, F, λ, δ) at controller step `step` (0-based, counted from the run's start)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not f_max > f_min:
        raise UserError(f"cycle annealing needs F_max > F_min, got [{f_min}, {f_max}]")
    span = f_max - f_min
    if step < cfg.n_warm:
        return WARM, f_min, 1.0, span / 2
    delta = span / (2 * cfg.alpha)
    s = step - cfg.n_warm
    if s < cfg.n_slow:
        return SLOW, cycle_target(s, cfg.period, f_min, f_max), 1.0, delta
    s -= cfg.n_slow
    lam = cfg.lambda0 ** math.ceil(s / cfg.period)
    return FAST, cycle_target(s, cfg.period, f_min, f_max), lam, delta


def cas_reward(acc: float, cost: float, F: float, lam: float, delta: float) -> float:
    """Acc · exp(−|cost − F| / (λ·δ)): full accuracy at cost F, decaying with the distance."""
    return acc * math.exp(-abs(cost - F) / (lam * delta))
