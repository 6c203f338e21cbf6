"""The cost objectives of a genotype (MACs, params, latency on the target), cached per
architecture: costs do not change as the shared weights train."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from factory.spaces.base import Genotype, SearchSpace
from profilers.base import ProfileSettings
from targets.errors import UserError
from targets.target import Target

COSTS = ("latency_ms", "macs", "params")
LATENCY_MODES = ("auto", "measure", "table")

# Short timing for search: enough to rank candidates; final models are re-measured carefully.
SEARCH_TIMING = ProfileSettings(warmup_ms=50.0, min_duration_ms=200.0, min_iters=20)


@dataclass
class CostModel:
    """Computes and caches the costs a search asked for."""

    space: SearchSpace
    target: Target
    names: tuple[str, ...]  # subset of COSTS
    latency_mode: str = "auto"
    settings: ProfileSettings = SEARCH_TIMING
    _cache: dict[str, dict[str, float]] = field(default_factory=dict)
    _how: dict[str, str] = field(default_factory=dict)
    _table: object | None = None

    def __post_init__(self) -> None:
        unknown = set(self.names) - set(COSTS)
        if unknown:
            raise UserError(f"unknown cost {sorted(unknown)}; valid: {', '.join(COSTS)}")
        if self.latency_mode not in LATENCY_MODES:
            raise UserError(f"latency mode must be one of {', '.join(LATENCY_MODES)}")
        if "latency_ms" in self.names:
            self._how_latency = self._choose_latency_source()

    def _choose_latency_source(self) -> str:
        """Measured end to end when local and cheap; the latency table otherwise."""
        mode = self.latency_mode
        if mode == "auto":
            mode = "measure" if self.target.is_local else "table"
        if mode == "table":
            self._table = _load_table(self.space, self.target)
        elif not self.target.is_local:
            _check_agent(self.target)
        return mode

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
        from exporters.onnx_export import export_onnx
        from profilers.remote import profiler_for

        shape = (1, *self.space.spec.shape)
        onnx = export_onnx(self.space.build(g), shape, check_parity=False).data
        m = profiler_for(self.target).profile(onnx, self.target, shape, self.settings)
        return m.latency_ms.median, "measured"


def _load_table(space: SearchSpace, target: Target) -> object:
    """The target's latency table for this space, or an error saying how to get one."""
    from profilers import lut

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
    """A remote target must answer before a long search starts."""
    from profilers.agent_client import AgentClient
    from profilers.remote import agent_token

    assert target.agent is not None
    try:
        with AgentClient(target.agent.url, agent_token(target.name, target.agent)) as client:
            client.health()
    except UserError as exc:
        raise UserError(
            f"target {target.name} is remote and its agent does not answer ({exc}); start "
            f"`factory agent` on the device, or build a latency table with `factory profile "
            f"lut build --target {target.name}` and search with --latency table"
        ) from exc


def estimate_cost_range(space: SearchSpace, costs: CostModel, cost: str) -> tuple[float, float]:
    """(F_min, F_max) of one cost over the space's manual architectures and 20 samples drawn
    from a generator of their own (so a search's main random stream is not disturbed)."""
    rng = np.random.default_rng(12345)
    sample = [*space.manual().values(), *(space.sample(rng) for _ in range(20))]
    values = [costs.costs(g)[0][cost] for g in sample]
    return float(min(values)), float(max(values))
