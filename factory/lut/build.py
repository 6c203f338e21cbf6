"""Building a table: find the space's blocks, time them with a few whole networks shuffled
in among them, fit the networks from their blocks, save."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np

from factory.lut.blocks import enumerate_blocks, export_blocks, network_models
from factory.lut.sampling import distinct_samples
from factory.lut.settings import LutSettings, Progress
from factory.lut.table import LatencyTable, load_table, table_key, table_path
from factory.lut.timer import OVERHEAD, ModelTimer, identity_onnx, one_torch_thread
from factory.spaces import SearchSpace
from targets.target import Target


def build_table(
    space: SearchSpace,
    target: Target,
    settings: LutSettings,
    rng: np.random.Generator,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> LatencyTable:
    """Profile every distinct block of `space` on `target`, calibrate, save; a table that
    already exists for the same key is loaded instead unless `force`."""
    key = table_key(space, target)
    path = table_path(target, key)
    if path.exists() and not force:
        return load_table(space, target, path)
    start = time.perf_counter()
    with one_torch_thread():
        found, info = enumerate_blocks(space, rng, settings, progress)
        archs = distinct_samples(space, settings.calibration_archs, rng, sampling="biased")
        for g in archs:  # calibration needs all their blocks, even past max_blocks
            found |= {b.key: b for b in space.blocks(g) if b.key not in found}
        entries, blocks = export_blocks(list(found.values()), "build", progress)
        shape = (1, *space.spec.shape)
        models = {
            OVERHEAD: (identity_onnx(shape), shape),
            **blocks,
            **network_models(space, archs),
        }
        # one timing run, calibration networks shuffled in among the blocks: both see the
        # same machine states, so a and b fit structure (fusion, cache), not a load drift
        names = list(models)
        shuffled = {names[i]: models[names[i]] for i in rng.permutation(len(names))}
        timings = ModelTimer(target, settings).time(shuffled, progress, "timing blocks, networks")
        overhead = timings[OVERHEAD]
        for name in blocks:
            entries[name] |= timings[name].minus(overhead).to_dict()
        table = LatencyTable(key, settings, overhead, entries, space, target, path)
        table.calibrate(archs, [timings[space.format(g)] for g in archs])
    table.build = {
        **info,
        "seconds": round(time.perf_counter() - start, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "blocks_profiled": len(table.blocks),
    }
    table.save()
    return table
