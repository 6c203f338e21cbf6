"""Latency lookup tables: a network's latency on a target, predicted from its blocks.

Each distinct block of a space (a layer choice at its input shape, plus stem and head) is
exported to ONNX and timed on the target once, minus the runtime's per-call overhead (an
identity model timed alongside). A network is predicted as a·Σblocks + b, with a and b fitted
by least squares on end-to-end measurements of a few random architectures (the method and its
measured error: docs/latency_tables.md). Tables are JSON files in `target.latency_table_dir()`,
one per (space, target, input shape, classes, precision, runtime and version); a table is only
ever used with the key it was built for.

Every time is kept twice: the median of per-round medians and the minimum over rounds.
`predict` returns the minimum by default: it does not move with the machine's load, while
medians taken while building and medians taken later on the same machine differ by the load
in between (18 % MAPE vs 4 % for minima in docs/latency_tables.md). On a quiet device the
two differ by a small steady factor; `LutSettings.statistic` selects the median instead.
Measurements are taken in interleaved rounds (see `ModelTimer`).

The modules, one job each: `settings` (key, settings, timing: plain data), `timer` (timing
models on a target), `blocks` (finding, exporting and timing blocks), `sampling` (random
architectures), `fit` (the arithmetic), `table` (a table: predict, fill, save, load),
`build` and `validate`. This `__init__` re-exports their public names.
"""

from __future__ import annotations

from factory.lut.blocks import (
    enumerate_blocks,
    export_blocks,
    network_models,
    profile_blocks,
)
from factory.lut.build import build_table
from factory.lut.sampling import distinct_samples, sample_biased
from factory.lut.settings import FORMAT, SAMPLINGS, STATISTICS, LutSettings, TableKey, Timing
from factory.lut.table import LatencyTable, load_table, space_for, table_key, table_path
from factory.lut.timer import ModelTimer, identity_onnx, one_torch_thread, runtime_version
from factory.lut.validate import ValidationReport, measure_archs, report, validate_table

__all__ = [
    "FORMAT",
    "SAMPLINGS",
    "STATISTICS",
    "LatencyTable",
    "LutSettings",
    "ModelTimer",
    "TableKey",
    "Timing",
    "ValidationReport",
    "build_table",
    "distinct_samples",
    "enumerate_blocks",
    "export_blocks",
    "identity_onnx",
    "load_table",
    "measure_archs",
    "network_models",
    "one_torch_thread",
    "profile_blocks",
    "report",
    "runtime_version",
    "sample_biased",
    "space_for",
    "table_key",
    "table_path",
    "validate_table",
]
