"""The cost objectives of a genotype (MACs, params, latency on the target), cached per
architecture: costs do not change as the shared weights train."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from factory.spaces.base import Genotype, SearchSpace
from profilers.base import ProfileSettings
from profilers.paired import PairedSettings, PairedTimer
from targets.errors import UserError
from targets.target import Target

COSTS = ("latency_ms", "macs", "params")
# measure: the median of one window; robust: windows alternating with a reference model
# (profilers.paired), which ranks alike whether or not other jobs load the machine
LATENCY_MODES = ("auto", "measure", "robust", "table")

# Short timing for search: enough to rank candidates; the final front is re-measured
# carefully (factory.search.remeasure).
SEARCH_TIMING = ProfileSettings(warmup_ms=50.0, min_duration_ms=200.0, min_iters=20)
ROBUST_TIMING = PairedSettings()  # 10 pairs of ~25 ms windows: ~0.5 s a candidate


@dataclass
class CostModel:
    """Computes and caches the costs a search asked for. Latency (`latency_mode`): robust
    (paired with a reference model, `profilers.paired`), measure (one window), table (the
    target's latency table) or auto (robust locally, table for remote targets)."""

    space: SearchSpace
    target: Target
    names: tuple[str, ...]  # subset of COSTS
    latency_mode: str = "auto"
    settings: ProfileSettings = SEARCH_TIMING
    robust: PairedSettings = ROBUST_TIMING
    farm_backend: str = "local"  # how a remote target's agents are driven: local or ray
    notify: Callable[[str], None] | None = None  # e.g. an agent of the farm went down
    _cache: dict[str, dict[str, float]] = field(default_factory=dict)
    _farmed: dict[str, float] = field(default_factory=dict)  # arch_id -> latency_ms
    _farm: object | None = None
    _how: dict[str, str] = field(default_factory=dict)
    _table: object | None = None
    _timer: PairedTimer | None = None

    def __post_init__(self) -> None:
        unknown = set(self.names) - set(COSTS)
        if unknown:
            raise UserError(f"unknown cost {sorted(unknown)}; valid: {', '.join(COSTS)}")
        if self.latency_mode not in LATENCY_MODES:
            raise UserError(f"latency mode must be one of {', '.join(LATENCY_MODES)}")
        if "latency_ms" in self.names:
            self._how_latency = self._choose_latency_source()

    def _choose_latency_source(self) -> str:
        """Measured end to end (robust) when local; the latency table otherwise."""
        mode = self.latency_mode
        if mode == "auto":
            mode = "robust" if self.target.is_local else "table"
        if mode == "table":
            self._table = _load_table(self.space, self.target)
        elif mode == "robust" and not self.target.is_local:
            raise UserError(
                f"--latency robust times candidates against a reference model on this machine; "
                f"target {self.target.name} is remote: use --latency measure or table"
            )
        elif not self.target.is_local:
            _check_agent(self.target)
        return mode

    def describe_latency(self) -> dict[str, object] | None:
        """How the latency objective is obtained, for pareto.json (None: not an objective)."""
        if "latency_ms" not in self.names:
            return None
        out: dict[str, object] = {"mode": self._how_latency, "target": self.target.name}
        if self._farms():
            out["agents"] = [a.url for a in self.target.agents]
            if self._farm is not None and self._farm.down:  # type: ignore[attr-defined]
                out["agents_down"] = dict(self._farm.down)  # type: ignore[attr-defined]
        if self._how_latency == "measure":
            out["window_ms"] = self.settings.min_duration_ms
        elif self._how_latency == "robust":
            out |= {"pairs": self.robust.pairs, "window_ms": self.robust.window.min_duration_ms}
            if self._timer is not None:
                out |= {
                    "reference": self._reference_name(),
                    "reference_ms": self._timer.reference_ms,
                }
        return out

    @property
    def times_here(self) -> bool:
        """Whether latency is timed on this machine (other work here would disturb it)."""
        measured = getattr(self, "_how_latency", None) in ("robust", "measure")
        return "latency_ms" in self.names and measured and self.target.is_local

    def prefetch(self, genotypes: Sequence[Genotype]) -> None:
        """Time the new architectures of a batch on the target's farm at once (its boards
        in parallel, one job each at a time); anything else is computed when asked for."""
        if not self._farms():
            return
        new: dict[str, Genotype] = {}
        for g in genotypes:
            key = self.space.arch_id(g)
            if key not in self._cache and key not in self._farmed:
                new.setdefault(key, g)
        if new:
            models = [self._onnx(g) for g in new.values()]
            found = self._the_farm().measure(models, self._shape(), self.settings)
            self._farmed.update((k, m.latency_ms.median) for k, m in zip(new, found, strict=True))

    def close(self) -> None:
        if self._farm is not None:
            self._farm.close()  # type: ignore[attr-defined]
            self._farm = None

    def _farms(self) -> bool:
        return (
            "latency_ms" in self.names
            and self._how_latency == "measure"
            and not (self.target.is_local)
        )

    def _the_farm(self):  # -> profilers.farm.Farm
        if self._farm is None:
            from profilers.farm import Farm

            self._farm = Farm(self.target, self.farm_backend, self.notify)
        return self._farm

    def seed(self, arch_id: str, costs: dict[str, float], how: str | None = None) -> None:
        """Pre-fill the cache (from a resumed run's records)."""
        self._cache[arch_id] = {k: v for k, v in costs.items() if k in self.names}
        if how:
            self._how[arch_id] = how

    def costs(self, g: Genotype) -> tuple[dict[str, float], str | None]:
        """(costs, how latency was obtained) for g; computed once per architecture."""
        key = self.space.arch_id(g)
        if key not in self._cache:
            self._cache[key], how = self._compute(g)
            if how:
                self._how[key] = how
        return dict(self._cache[key]), self._how.get(key)

    def _compute(self, g: Genotype) -> tuple[dict[str, float], str | None]:
        out: dict[str, float] = {}
        how = None
        if "macs" in self.names or "params" in self.names:
            from profilers.flops import count_costs

            report = count_costs(self.space.build(g), (1, *self.space.spec.shape))
            if "macs" in self.names:
                out["macs"] = float(report.macs)
            if "params" in self.names:
                out["params"] = float(report.params)
        if "latency_ms" in self.names:
            out["latency_ms"], how = self._latency(g)
        return out, how

    def _latency(self, g: Genotype) -> tuple[float, str]:
        if self._how_latency == "table":
            return float(self._table.predict(g)), "table"  # type: ignore[union-attr]
        from profilers.remote import profiler_for

        if self._farms():
            self.prefetch([g])
            return self._farmed.pop(self.space.arch_id(g)), "measured"
        onnx = self._onnx(g)
        if self._how_latency == "robust":
            return self._paired_timer().latency_ms(onnx), "measured-paired"
        m = profiler_for(self.target).profile(onnx, self.target, self._shape(), self.settings)
        return m.latency_ms.median, "measured"

    def _shape(self) -> tuple[int, ...]:
        return (1, *self.space.spec.shape)

    def _onnx(self, g: Genotype) -> bytes:
        from exporters.onnx_export import export_onnx

        return export_onnx(self.space.build(g), self._shape(), check_parity=False).data

    def _reference_name(self) -> str:
        """The reference of robust timing: the space's cheapest manual architecture (in
        MACs), so that a window holds many runs of it."""
        from profilers.flops import count_costs

        manual = self.space.manual()
        return min(
            manual, key=lambda n: count_costs(self.space.build(manual[n]), self._shape()).macs
        )

    def _paired_timer(self) -> PairedTimer:
        """Opened (and the reference calibrated) at the first candidate; a resumed run
        calibrates again, so its new figures may differ from the old ones by the load."""
        if self._timer is None:
            from profilers.registry import get_profiler

            reference = self._onnx(self.space.manual()[self._reference_name()])
            profiler = get_profiler(self.target)
            self._timer = PairedTimer(profiler, reference, self.target, self._shape(), self.robust)
        return self._timer


def _load_table(space: SearchSpace, target: Target) -> object:
    """The target's latency table for this space, or an error saying how to get one."""
    from factory import lut

    try:
        return lut.load_table(space, target)
    except UserError as exc:
        hint = (
            f"build it with `factory profile lut build --space {space.name} --target {target.name}`"
        )
        if not target.is_local:
            hint += " (start `factory agent` on the device first)"
        raise UserError(f"no usable latency table for {target.name}: {exc}; {hint}") from exc


def _check_agent(target: Target) -> None:
    """A remote target must answer before a long search starts: one of its agents at least
    (a farm goes on without the boards that are down, and says so when it meets them)."""
    from profilers.agent_client import AgentClient
    from profilers.remote import agent_token

    errors = []
    for agent in target.agents:
        try:
            with AgentClient(agent.url, agent_token(target.name, agent)) as client:
                client.health()
            return
        except UserError as exc:
            errors.append(str(exc))
    if errors:
        exc = UserError("; ".join(errors))
        raise UserError(
            f"target {target.name} is remote and its agent does not answer ({exc}); start "
            f"`factory agent` on the device, or build a latency table with `factory profile "
            f"lut build --target {target.name}` and search with --latency table"
        ) from exc


def estimate_cost_range(
    space: SearchSpace, costs: CostModel, cost: str, rng: np.random.Generator
) -> tuple[float, float]:
    """(F_min, F_max) of one cost: the 5th and 95th percentile over 20 uniform samples
    (from `rng`: the contexts pass `default_rng(COST_RANGE_SEED)`).

    A window a controller can follow: the corners of the space (the manual architectures'
    extremes, all-g8 to all-g1 in shufflenet) are rarely sampled and stretched the sweep so far
    that F moved faster than the sampled cost could (issue 13)."""
    values = [costs.costs(space.sample(rng))[0][cost] for _ in range(20)]
    lo, hi = np.percentile(values, [5.0, 95.0])
    return float(lo), float(hi)
