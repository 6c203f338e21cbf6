"""A built latency table: its JSON data bound to the space and target it predicts for;
prediction, on-demand filling, calibration, saving and loading."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.lut.blocks import profile_blocks
from factory.lut.fit import apply_fit, fit_overhead
from factory.lut.settings import FORMAT, STATISTICS, LutSettings, TableKey, Timing
from factory.lut.timer import one_torch_thread, runtime_version
from factory.spaces import Block, Genotype, InputSpec, SearchSpace, get_space
from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import Target


@dataclass
class LatencyTable:
    """A built table (the JSON data) bound to the space and target it predicts for."""

    key: TableKey
    settings: LutSettings
    overhead: Timing
    blocks: dict[str, dict[str, Any]]  # key -> {median_ms, min_ms, source, params}
    space: SearchSpace
    target: Target
    path: Path
    calibration: list[dict[str, Any]] = field(default_factory=list)
    fit: dict[str, dict[str, Any]] = field(default_factory=dict)  # statistic -> {a, b, ...}
    build: dict[str, Any] = field(default_factory=dict)
    filled_on_demand: int = 0

    # ---- prediction ------------------------------------------------------------------
    def predict(self, g: Genotype, statistic: str | None = None) -> float:
        """Predicted end-to-end latency of g in ms (the table's statistic by default)."""
        stat = statistic or self.settings.statistic
        with one_torch_thread():
            return apply_fit(self.fit[stat], self.block_sum(g), stat)

    def block_sum(self, g: Genotype) -> dict[str, float]:
        """Σ over g's blocks of median_ms, min_ms (overhead removed) and mparams; missing
        blocks are profiled first when the target is local, else they are an error."""
        blocks = self.space.blocks(self.space.validate(g))
        self.fill([b for b in blocks if b.key not in self.blocks])
        entries = [self.blocks[b.key] for b in blocks]
        return {
            "median_ms": sum(e["median_ms"] for e in entries),
            "min_ms": sum(e["min_ms"] for e in entries),
            "mparams": sum(e["params"] for e in entries) / 1e6,
        }

    def fill(self, missing: list[Block]) -> None:
        """Profile blocks the table lacks (a space whose blocks depend on earlier choices
        cannot be enumerated), on a local target only; counted and saved."""
        missing = list({b.key: b for b in missing}.values())
        if not missing:
            return
        if not self.target.is_local:
            raise UserError(
                f"the {self.key.space} latency table for target {self.key.target} lacks "
                f"{len(missing)} block(s), e.g. {missing[0].key}; run `factory profile lut "
                f"build --space {self.key.space} --target {self.key.target}` (with more "
                "--samples)"
            )
        self.blocks |= profile_blocks(missing, self.target, self.settings, self.overhead)
        self.filled_on_demand += len(missing)
        self.save()

    # ---- calibration ------------------------------------------------------------------
    def calibrate(self, archs: list[Genotype], measured: list[Timing]) -> None:
        """Fit a, b (and c) per statistic on end-to-end timings of `archs`."""
        self.calibration = [
            {"genotype": self.space.format(g), "measured": t.to_dict(), "sum": s}
            for g, t, s in zip(archs, measured, map(self.block_sum, archs), strict=True)
        ]
        self.fit = {s: fit_overhead(self.calibration, s) for s in STATISTICS}

    # ---- persistence ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": self.key.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "overhead": self.overhead.to_dict(),
            "fit": self.fit,
            "build": self.build,
            "filled_on_demand": self.filled_on_demand,
            "calibration": self.calibration,
            "blocks": dict(sorted(self.blocks.items())),
        }

    def save(self) -> Path:
        """Atomic write (temp file + rename): a reader never sees half a table."""
        return write_atomic(self.path, json.dumps(self.to_dict(), indent=1).encode())


def table_key(space: SearchSpace, target: Target) -> TableKey:
    """The key of `space` (with its input spec) on `target` with its runtime's version."""
    spec = space.spec
    return TableKey(
        space.name,
        target.name,
        spec.shape,
        spec.num_classes,
        target.precision,
        target.runtime,
        runtime_version(target),
    )


def table_path(target: Target, key: TableKey) -> Path:
    return target.latency_table_dir() / key.filename()


def load_table(space: SearchSpace, target: Target, path: Path | None = None) -> LatencyTable:
    """The table for `space` on `target`; a missing file or a different key is an error."""
    key = table_key(space, target)
    path = path or table_path(target, key)
    if not path.is_file():
        raise UserError(
            f"no latency table for space {space.name} on target {target.name} "
            f"({path.name}); run `factory profile lut build --space {space.name} "
            f"--target {target.name}`"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')}, not {FORMAT}")
        stored = TableKey.from_dict(data["key"])
        settings, overhead = LutSettings(**data["settings"]), Timing(**data["overhead"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read latency table {path}: {exc}") from exc
    if stored != key:
        raise UserError(
            f"latency table {path} was built for another setup "
            f"({'; '.join(stored.differences(key))}); rebuild it with `factory profile lut build`"
        )
    table = LatencyTable(stored, settings, overhead, data["blocks"], space, target, path)
    table.calibration, table.fit, table.build = data["calibration"], data["fit"], data["build"]
    table.filled_on_demand = data["filled_on_demand"]
    return table


def space_for(name: str, input_shape: tuple[int, int, int], num_classes: int) -> SearchSpace:
    c, h, w = input_shape
    return get_space(name, InputSpec(channels=c, height=h, width=w, num_classes=num_classes))
