"""Latency figures that a change of machine load touches alike: candidates timed in short
windows that alternate with a fixed reference model, and several models timed round by
round in a rotating order.

On a shared machine the load drifts by more than the differences a search has to rank; a
slowdown that lasts longer than a window slows the candidate and the reference beside it
alike, so their ratio keeps its value (docs/latency_stability.md has the numbers). Standard
library only, like `profilers.base`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from profilers.base import LatencyProfiler, ModelInput, ProfileSettings
from profilers.measurement import Measurement
from targets.errors import UserError
from targets.target import Target


@dataclass(frozen=True)
class PairedSettings:
    """How a candidate is timed against the reference: `pairs` window pairs whose order
    alternates (candidate first, then reference first, ...), after one warm-up."""

    pairs: int = 10
    warmup_ms: float = 30.0  # once per candidate, after loading it
    # one window: about 25 ms of runs after one untimed run (caches are cold after a switch)
    window: ProfileSettings = field(
        default_factory=lambda: ProfileSettings(warmup_ms=0.0, min_duration_ms=25.0, min_iters=5)
    )

    def __post_init__(self) -> None:
        if self.pairs < 1:
            raise UserError(f"pairs must be >= 1, got {self.pairs}")


class PairedTimer:
    """Times candidates against one reference model that stays loaded.

    A candidate's latency is the median over pairs of (candidate window median / reference
    window median), times the reference's own latency: the least of 2 x `pairs` window
    medians taken once, when the timer opens. Use as a context manager, or call `close`.
    """

    def __init__(
        self,
        profiler: LatencyProfiler,
        reference: ModelInput,
        target: Target,
        input_shape: tuple[int, ...] | None = None,
        settings: PairedSettings | None = None,
    ) -> None:
        self.profiler, self.target, self.input_shape = profiler, target, input_shape
        self.settings = settings or PairedSettings()
        self._stack = ExitStack()
        self._reference = self._stack.enter_context(
            profiler.opened(reference, target, input_shape, self.settings.window.batch)
        )
        self._warm_up(self._reference)
        # the scale of every figure: the fastest of 2 x pairs windows, the one that other
        # jobs slowed least (their median moved ~50 % under load for a 10 ms reference)
        self.reference_ms = min(
            self._window_ms(self._reference) for _ in range(2 * self.settings.pairs)
        )

    def latency_ms(self, model: ModelInput) -> float:
        """The candidate's latency in the reference's units (ms)."""
        batch = self.settings.window.batch
        with self.profiler.opened(model, self.target, self.input_shape, batch) as state:
            self._warm_up(state)
            ratios = []
            for i in range(self.settings.pairs):
                if i % 2 == 0:
                    ours = self._window_ms(state)
                    ref = self._window_ms(self._reference)
                else:
                    ref = self._window_ms(self._reference)
                    ours = self._window_ms(state)
                ratios.append(ours / ref)
        return statistics.median(ratios) * self.reference_ms

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PairedTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _warm_up(self, state: object) -> None:
        warm = ProfileSettings(warmup_ms=self.settings.warmup_ms, min_duration_ms=0.0, min_iters=1)
        self.profiler.time_runs(state, warm)

    def _window_ms(self, state: object) -> float:
        return statistics.median(self.profiler.time_runs(state, self.settings.window).samples_ms)


def time_in_rounds(
    profiler: LatencyProfiler,
    models: Sequence[ModelInput],
    target: Target,
    rounds: int,
    settings: ProfileSettings,
    input_shape: tuple[int, ...] | None = None,
    deadline: Callable[[], bool] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[list[Measurement]]:
    """One measurement of every model per round, all loaded at once, the order rotating from
    round to round, so a change of load touches all of them alike. Returns, per model, its
    measurements in round order. Stops after the first round at which `deadline()` is true
    (every model then has the same number of rounds)."""
    if rounds < 1 or not models:
        raise UserError(f"need >= 1 round and >= 1 model, got {rounds} and {len(models)}")
    out: list[list[Measurement]] = [[] for _ in models]
    with ExitStack() as stack:
        states = [
            stack.enter_context(profiler.opened(m, target, input_shape, settings.batch))
            for m in models
        ]
        for r in range(rounds):
            first = r % len(models)
            for i in [*range(first, len(models)), *range(first)]:
                out[i].append(profiler.measure(states[i], target, settings))
            if on_round is not None:
                on_round(r)
            if deadline is not None and deadline():
                break
    return out
