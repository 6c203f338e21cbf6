"""Latency lookup tables: a network's latency on a target, predicted from its blocks.

Each distinct block of a space (a layer choice at its input shape, plus stem and head) is
exported to ONNX and timed on the target once, minus the runtime's per-call overhead (an
identity model timed alongside). A network is predicted as a·Σblocks + b, with a and b fitted
by least squares on end-to-end measurements of a few random architectures (RESEARCH.md §2
"Latency tables"). Tables are JSON files in `target.latency_table_dir()`, one per (space,
target, input shape, classes, precision, runtime and version); a table is only ever used
with the key it was built for.

Every time is kept twice: the median of per-round medians and the minimum over rounds.
`predict` returns the minimum by default: it does not move with the machine's load, while
medians taken while building and medians taken later on the same machine differ by the load
in between (18 % MAPE vs 4 % for minima in docs/latency_tables.md). On a quiet device the
two differ by a small steady factor; `LutSettings.statistic` selects the median instead.
Measurements are taken in interleaved rounds (see `ModelTimer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from exporters.onnx_export import export_onnx
from factory.spaces import Block, Genotype, InputSpec, SearchSpace, get_space
from profilers.base import ProfileSettings
from profilers.lut_fit import apply_fit, fit_overhead, kendall_tau
from profilers.remote import profiler_for
from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import Target

FORMAT = 1
STATISTICS = ("median", "min")
SAMPLINGS = ("uniform", "biased")
_OVERHEAD = "__per_call_overhead__"
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class TableKey:
    """What a table is valid for; a table is refused for anything else."""

    space: str
    target: str
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    precision: str
    runtime: str
    runtime_version: str

    def filename(self) -> str:
        c, h, w = self.input_shape
        return (
            f"{self.target}_{self.space}_{c}x{h}x{w}_k{self.num_classes}_{self.precision}_"
            f"{self.runtime}-{self.runtime_version}.json"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableKey:
        return cls(**{**data, "input_shape": tuple(data["input_shape"])})

    def differences(self, other: TableKey) -> list[str]:
        """'field: mine != other' for each differing field."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k} {mine[k]} != {theirs[k]}" for k in mine if mine[k] != theirs[k]]


@dataclass(frozen=True)
class LutSettings:
    """How a table is built: timing per model, rounds, which statistic, how far to search."""

    warmup_ms: float = 100.0
    min_duration_ms: float = 300.0
    min_iters: int = 20
    rounds: int = 1  # interleaved timing rounds per model (median / min over rounds)
    statistic: str = "min"  # what `predict` returns (see the module docstring)
    calibration_archs: int = 10  # random architectures measured end to end for the fit
    patience: int = 20  # stop sampling once this many samples in a row bring no new block
    max_samples: int = 100  # random samples at most, after the one-hot variations
    max_blocks: int = 2000  # blocks profiled at build time at most

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise UserError(f"statistic must be one of {', '.join(STATISTICS)}")
        if min(self.rounds, self.calibration_archs, self.max_blocks) < 1:
            raise UserError("rounds, calibration archs and max blocks must be >= 1")
        if self.patience < 1 or self.max_samples < 0:
            raise UserError("patience must be >= 1 and max samples >= 0")
        self.profile_settings()  # validates the timing fields

    def profile_settings(self) -> ProfileSettings:
        return ProfileSettings(self.warmup_ms, self.min_duration_ms, self.min_iters)


@dataclass(frozen=True)
class Timing:
    """One model's latency over the rounds, ms: median of medians, min of mins."""

    median_ms: float
    min_ms: float

    def get(self, statistic: str) -> float:
        return self.median_ms if statistic == "median" else self.min_ms

    def minus(self, other: Timing) -> Timing:
        """Overhead removed, floored at 0."""
        median_ms, min_ms = self.median_ms - other.median_ms, self.min_ms - other.min_ms
        return Timing(max(0.0, median_ms), max(0.0, min_ms))

    def to_dict(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "min_ms": self.min_ms}


class ModelTimer:
    """Times ONNX models on a target through its profiler (an agent's too) in rounds whose
    order reverses every other round, so a drift in machine load hits every model alike."""

    def __init__(self, target: Target, settings: LutSettings) -> None:
        self.target = target
        self.settings = settings
        self.profiler = profiler_for(target)

    def time(
        self,
        models: Mapping[str, tuple[bytes, tuple[int, ...]]],
        progress: Progress | None = None,
        phase: str = "timing",
    ) -> dict[str, Timing]:
        """{name: (onnx bytes, input shape)} -> {name: Timing}."""
        names = list(models)
        runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        settings = self.settings.profile_settings()
        total, done = len(names) * self.settings.rounds, 0
        for r in range(self.settings.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                data, shape = models[name]
                stats = self.profiler.profile(data, self.target, shape, settings).latency_ms
                runs[name].append((stats.median, stats.min))
                done += 1
                if progress:
                    progress(phase, done, total)
        return {
            n: Timing(statistics.median(r[0] for r in rs), min(r[1] for r in rs))
            for n, rs in runs.items()
        }


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


# ---- building, loading ------------------------------------------------------------------


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


def build_table(
    space: SearchSpace,
    target: Target,
    settings: LutSettings | None = None,
    rng: np.random.Generator | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> LatencyTable:
    """Profile every distinct block of `space` on `target`, calibrate, save; a table that
    already exists for the same key is loaded instead unless `force`."""
    settings = settings or LutSettings()
    rng = rng if rng is not None else np.random.default_rng(0)
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
            _OVERHEAD: (identity_onnx(shape), shape),
            **blocks,
            **network_models(space, archs),
        }
        # one timing run, calibration networks shuffled in among the blocks: both see the
        # same machine states, so a and b fit structure (fusion, cache), not a load drift
        names = list(models)
        shuffled = {names[i]: models[names[i]] for i in rng.permutation(len(names))}
        timings = ModelTimer(target, settings).time(shuffled, progress, "timing blocks, networks")
        overhead = timings[_OVERHEAD]
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


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch's thread pool makes small exports slower (3x here), and its spinning workers
    would steal the core the runtime is being timed on."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runtime_version(target: Target) -> str:
    """The version of the runtime that measures on `target`: asked of its agent when remote."""
    if target.is_local:
        from profilers.registry import get_profiler

        return get_profiler(target)._runtime_version()
    from profilers.agent_client import AgentClient
    from profilers.remote import agent_token

    assert target.agent is not None
    with AgentClient(target.agent.url, agent_token(target.name, target.agent)) as client:
        device = client.health().get("device", {})
    names = ("tensorrt",) if target.runtime == "tensorrt" else ("onnxruntime", "onnxruntime_gpu")
    version = next((device[n] for n in names if device.get(n)), None)
    if version is None:
        raise UserError(f"the agent of target {target.name} reports no {target.runtime} version")
    return str(version)


# ---- blocks -------------------------------------------------------------------------------


def enumerate_blocks(
    space: SearchSpace,
    rng: np.random.Generator,
    settings: LutSettings,
    progress: Progress | None = None,
) -> tuple[dict[str, Block], dict[str, Any]]:
    """Distinct blocks by key: every choice at every position of each manual architecture
    (one-hot variations), then random samples until `patience` in a row add nothing."""
    found: dict[str, Block] = {}

    def add(g: Genotype) -> int:
        new = [b for b in space.blocks(g) if b.key not in found]
        for b in new[: settings.max_blocks - len(found)]:
            found[b.key] = b
        return len(new)

    variants = [
        (*base[:i], choice, *base[i + 1 :])
        for base in space.manual().values()
        for i, options in enumerate(space.choices())
        for choice in range(options)
    ]
    total = len(variants) + settings.max_samples
    for done, g in enumerate(variants, 1):
        if len(found) >= settings.max_blocks:
            break
        add(g)
        if progress:
            progress("finding blocks", done, total)
    samples = quiet = 0
    while quiet < settings.patience and samples < settings.max_samples:
        if len(found) >= settings.max_blocks:
            break
        quiet = 0 if add(space.sample(rng)) else quiet + 1
        samples += 1
        if progress:
            progress("finding blocks", len(variants) + samples, total)
    if progress:
        progress("finding blocks", total, total)
    info = {"samples": samples, "complete": quiet >= settings.patience, "blocks_found": len(found)}
    return found, info


def identity_onnx(shape: tuple[int, ...]) -> bytes:
    """An ONNX model that only copies its input: the runtime's per-call overhead."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _is_noop(data: bytes) -> bool:
    """True when the exported block only forwards its input ('skip', zero without pool)."""
    return all(n.op_type == "Identity" for n in onnx.load_from_string(data).graph.node)


def profile_blocks(
    blocks: list[Block],
    target: Target,
    settings: LutSettings,
    overhead: Timing,
    source: str = "on_demand",
) -> dict[str, dict[str, Any]]:
    """Export and time blocks, overhead removed (0 for those that only forward input)."""
    entries, models = export_blocks(blocks, source)
    for key, timing in ModelTimer(target, settings).time(models).items():
        entries[key] |= timing.minus(overhead).to_dict()
    return entries


def export_blocks(
    blocks: list[Block], source: str, progress: Progress | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[bytes, tuple[int, ...]]]]:
    """Table entries (times still 0) and the ONNX models to time: each block exported
    with the legacy exporter, in memory; blocks that only forward their input get none."""
    entries: dict[str, dict[str, Any]] = {}
    models: dict[str, tuple[bytes, tuple[int, ...]]] = {}
    for i, block in enumerate(blocks):
        shape = (1, *block.in_shape)
        data = export_onnx(block.module, shape, check_parity=False).data
        params = sum(p.numel() for p in block.module.parameters())
        entries[block.key] = {"median_ms": 0.0, "min_ms": 0.0, "params": params, "source": source}
        if _is_noop(data):
            entries[block.key]["source"] = "noop"
        else:
            models[block.key] = (data, shape)
        if progress:
            progress("exporting blocks", i + 1, len(blocks))
    return entries, models


# ---- end-to-end measurements, fit, validation ------------------------------------------------


def sample_biased(space: SearchSpace, rng: np.random.Generator, alpha: float = 0.5) -> Genotype:
    """A genotype drawn with a random preference per option label (Gamma(alpha) weights).

    Uniform samples average many independent choices, so they all land near the space's mean
    latency; these spread from its light to its heavy corners (a wider range to fit and rank).
    """
    labels = sorted({o for d in space.decisions() for o in d.options})
    weight = dict(zip(labels, rng.gamma(alpha, size=len(labels)) + 1e-9, strict=True))
    genotype = []
    for d in space.decisions():
        p = np.array([weight[o] for o in d.options])
        genotype.append(int(rng.choice(len(p), p=p / p.sum())))
    return tuple(genotype)


def distinct_samples(
    space: SearchSpace,
    n: int,
    rng: np.random.Generator,
    exclude: Iterable[Genotype] = (),
    sampling: str = "uniform",
) -> list[Genotype]:
    """n distinct random genotypes not in `exclude` (fewer if the space is smaller);
    `sampling` is 'uniform' (`space.sample`) or 'biased' (`sample_biased`)."""
    if sampling not in SAMPLINGS:
        raise UserError(f"sampling must be one of {', '.join(SAMPLINGS)}, not {sampling!r}")
    seen, out = set(exclude), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        g = space.sample(rng) if sampling == "uniform" else sample_biased(space, rng)
        if g not in seen:
            seen.add(g)
            out.append(g)
    return out


def measure_archs(
    space: SearchSpace,
    archs: list[Genotype],
    target: Target,
    settings: LutSettings,
    progress: Progress | None = None,
) -> list[Timing]:
    """End-to-end timings of `archs` (interleaved rounds, the same settings as the blocks)."""
    models = network_models(space, archs)
    timings = ModelTimer(target, settings).time(models, progress, "timing networks")
    return [timings[space.format(g)] for g in archs]


def network_models(
    space: SearchSpace, archs: list[Genotype]
) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """{genotype text: (ONNX of build(g), input shape)} for timing whole networks."""
    shape = (1, *space.spec.shape)
    return {
        space.format(g): (export_onnx(space.build(g), shape, check_parity=False).data, shape)
        for g in archs
    }


@dataclass(frozen=True)
class ValidationReport:
    """Prediction vs end-to-end measurement on architectures the table never saw."""

    statistic: str
    n: int
    mape_pct: float  # mean |pred - meas| / meas, %
    max_error_pct: float  # worst |pred - meas| / meas, %
    kendall_tau: float  # rank agreement (tau-b), 1 = same order
    rows: list[dict[str, Any]]  # genotype, predicted_ms, measured_ms, error_pct
    filled_on_demand: int  # blocks the table lacked and profiled during this validation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_table(
    table: LatencyTable,
    n: int = 50,
    rng: np.random.Generator | None = None,
    statistic: str | None = None,
    progress: Progress | None = None,
    sampling: str = "uniform",
) -> ValidationReport:
    """Measure n fresh random architectures (not used for calibration) end to end and
    compare with the predictions."""
    rng = rng if rng is not None else np.random.default_rng(1)
    stat = statistic or table.settings.statistic
    seen = [table.space.parse(c["genotype"]) for c in table.calibration]
    archs = distinct_samples(table.space, n, rng, exclude=seen, sampling=sampling)
    before = table.filled_on_demand
    with one_torch_thread():
        predicted = [table.predict(g, stat) for g in archs]
        timings = measure_archs(table.space, archs, table.target, table.settings, progress)
    measured = [t.get(stat) for t in timings]
    return report(table.space, archs, predicted, measured, stat, table.filled_on_demand - before)


def report(
    space: SearchSpace,
    archs: list[Genotype],
    predicted: list[float],
    measured: list[float],
    statistic: str,
    filled: int = 0,
) -> ValidationReport:
    """MAPE, max error and Kendall tau of `predicted` against `measured`."""
    errors = [abs(p - m) / m * 100 for p, m in zip(predicted, measured, strict=True)]
    rows = [
        {"genotype": space.format(g), "predicted_ms": p, "measured_ms": m, "error_pct": e}
        for g, p, m, e in zip(archs, predicted, measured, errors, strict=True)
    ]
    return ValidationReport(
        statistic=statistic,
        n=len(rows),
        mape_pct=statistics.fmean(errors) if errors else math.nan,
        max_error_pct=max(errors, default=math.nan),
        kendall_tau=kendall_tau(predicted, measured),
        rows=rows,
        filled_on_demand=filled,
    )
