"""The arithmetic of latency tables: the fit that turns a sum of block latencies into a
network's latency, and rank agreement (Kendall's tau) for validating it. Pure numpy, no
runtime: unit-testable on made-up numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_PARSIMONY = 0.1  # relative cut of the leave-one-out error that justifies the c term


def fit_overhead(calibration: list[dict[str, Any]], statistic: str) -> dict[str, Any]:
    """Least squares of measured = a·Σblocks + c·Σmparams + b over the calibration archs,
    in relative terms (rows weighted by 1 / measured: MAPE, not absolute ms, is the goal).

    a < 1 where the runtime fuses across blocks (ONNX Runtime keeps its blocked layout
    between convs, so the reorders each block pays alone vanish in a network). The c term
    is the weight traffic a block timed alone never pays: its weights stay in cache across
    runs, in a network they stream in from memory. c is kept only if it cuts the error on
    left-out calibration archs by `_PARSIMONY` (10 %); with too few points or an implausible
    fit (a outside [0.25, 4], c < 0): a = 1 and b = the median residual ('degenerate').
    """
    xs = np.array([c["sum"][f"{statistic}_ms"] for c in calibration], dtype=float)
    ms = np.array([c["sum"]["mparams"] for c in calibration], dtype=float)
    ys = np.array([c["measured"][f"{statistic}_ms"] for c in calibration], dtype=float)
    candidates = []  # simplest first
    for columns in ((xs,), (xs, ms)):
        design = np.column_stack([*columns, np.ones_like(xs)])
        coef = _plausible_lstsq(design, ys)
        if coef is not None and len(xs) >= design.shape[1] + 2:
            candidates.append((_loo_error_pct(design, ys), coef))
    if not candidates:
        shift = float(np.median(ys - xs)) if len(xs) else 0.0
        return _fit(np.array([1.0, shift]), len(xs), None)
    loo, coef = candidates[0]
    for more_loo, more_coef in candidates[1:]:  # an extra term must earn its keep
        if more_loo < (1 - _PARSIMONY) * loo:
            loo, coef = more_loo, more_coef
    return _fit(coef, len(xs), loo)


def relative_lstsq(design: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(design / ys[:, None], np.ones_like(ys), rcond=None)[0]


def _plausible_lstsq(design: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    if np.linalg.matrix_rank(design) < design.shape[1] or min(ys) <= 0:
        return None
    coef = relative_lstsq(design, ys)
    plausible = 0.25 <= coef[0] <= 4.0 and (design.shape[1] == 2 or coef[1] >= 0)
    return coef if plausible else None


def _loo_error_pct(design: np.ndarray, ys: np.ndarray) -> float:
    """Mean |error| in % of each point predicted by a fit on all the others."""
    errors = []
    for i in range(len(ys)):
        keep = np.arange(len(ys)) != i
        coef = relative_lstsq(design[keep], ys[keep])
        errors.append(abs(design[i] @ coef - ys[i]) / ys[i] * 100)
    return float(np.mean(errors))


def _fit(coef: np.ndarray, n: int, loo_pct: float | None) -> dict[str, Any]:
    """coef is (a, b) or (a, c, b); loo_pct None marks the degenerate fallback."""
    c = float(coef[1]) if len(coef) == 3 else 0.0
    return {
        "a": float(coef[0]),
        "c_ms_per_mparam": c,
        "b": float(coef[-1]),
        "n": n,
        "degenerate": loo_pct is None,
        "loo_error_pct": loo_pct,
    }


def apply_fit(fit: Mapping[str, Any], block_sum: Mapping[str, float], statistic: str) -> float:
    """a·Σblocks + c·Σmparams + b, ms."""
    a, c, b = fit["a"], fit["c_ms_per_mparam"], fit["b"]
    return a * block_sum[f"{statistic}_ms"] + c * block_sum["mparams"] + b


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties in either list handled); scipy's when installed."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 2:
        return math.nan
    try:
        from scipy.stats import kendalltau
    except ImportError:
        return kendall_tau_b(x, y)
    return float(kendalltau(x, y).statistic)


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """The O(n²) tau-b: (concordant - discordant) / sqrt((pairs - x ties)(pairs - y ties))."""
    score = ties_x = ties_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            pairs += 1
            ties_x += dx == 0
            ties_y += dy == 0
            score += int(dx * dy)
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return score / denominator if denominator else math.nan
