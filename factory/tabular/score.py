"""Scoring a search against the exact front a tabular benchmark allows.

Hypervolume of (accuracy up, latency down) against the reference point of issue 13: accuracy
at the table's 5th percentile, latency at 1.01 x the table's largest. Architectures at
chance accuracy sit below that accuracy, so they never count. Dividing by the hypervolume of
all the table's architectures gives 1.0 exactly when the search found the whole front.
"""

from __future__ import annotations

import numpy as np

from factory.tabular.table import BenchmarkTable

REF_ACCURACY_PERCENTILE = 5.0
REF_LATENCY_FACTOR = 1.01


def reference_point(table: BenchmarkTable, device: str) -> tuple[float, float]:
    """(accuracy, latency_ms) of the hypervolume reference point for one device column."""
    acc = float(np.percentile(table.accuracy, REF_ACCURACY_PERCENTILE))
    return acc, REF_LATENCY_FACTOR * float(table.latency_ms[device].max())


def hypervolume(accuracy: np.ndarray, latency_ms: np.ndarray, ref: tuple[float, float]) -> float:
    """Area (accuracy fraction x ms) dominated by the points and bounded by `ref`."""
    acc, lat = np.asarray(accuracy, dtype=float), np.asarray(latency_ms, dtype=float)
    keep = (acc > ref[0]) & (lat < ref[1])
    if not keep.any():
        return 0.0
    order = np.argsort(lat[keep], kind="stable")
    lat_sorted, best = lat[keep][order], np.maximum.accumulate(acc[keep][order])
    widths = np.diff(np.append(lat_sorted, ref[1]))
    return float(np.sum(widths * (best - ref[0])))


def exact_front(table: BenchmarkTable, device: str) -> np.ndarray:
    """Rows of the table's Pareto front for one device, by increasing latency."""
    lat, acc = table.latency_ms[device], table.accuracy
    order = np.lexsort((-acc, lat))
    best = np.maximum.accumulate(acc[order])
    improves = np.concatenate([[True], best[1:] > best[:-1]])
    return order[improves & (acc[order] == best)]


class FrontScore:
    """Normalised hypervolume of any set of rows, for one device column."""

    def __init__(self, table: BenchmarkTable, device: str) -> None:
        self.acc, self.lat = table.accuracy, table.latency_ms[device]
        self.ref = reference_point(table, device)
        self.exact = hypervolume(self.acc, self.lat, self.ref)

    def of_rows(self, rows: np.ndarray) -> float:
        rows = np.asarray(rows, dtype=np.int64)
        return hypervolume(self.acc[rows], self.lat[rows], self.ref) / self.exact
