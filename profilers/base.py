"""The profiler base class: it owns warm-up, the measuring loop, statistics and the result.

Subclasses (one per runtime) implement only how to load a model, run it once, say which
execution provider really ran it, and optionally a per-op profile. Standard library only:
the agent imports this on devices that have nothing but a runtime installed.
"""

from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from profilers.measurement import LatencyStats, Measurement
from targets.errors import UserError
from targets.target import Target

ModelInput = bytes | Path
Dim = int | str | None  # a model input dimension: static size, symbolic name or unknown


# The largest input a profile accepts, in elements (64 MiB of float32); activations take
# tens of times more, so 100000x1x28x28 would be killed for memory long before it ran.
MAX_INPUT_ELEMENTS = 1 << 24


def check_input_size(shape: Sequence[int], what: str = "--input-shape") -> None:
    """Refuse, before anything is allocated, an input with more than `MAX_INPUT_ELEMENTS`."""
    elements = 1
    for d in shape:
        elements *= int(d)
    if elements > MAX_INPUT_ELEMENTS:
        raise UserError(
            f"{what} {'x'.join(str(d) for d in shape)} has {elements:,} elements, more than "
            f"the {MAX_INPUT_ELEMENTS:,} a profile allows; use a smaller batch or image size"
        )


@dataclass(frozen=True)
class ProfileSettings:
    """How long and how to measure. Defaults follow trtexec: warm up by time, then time both
    a minimum duration and a minimum number of iterations (docs/references.md)."""

    warmup_ms: float = 200.0  # warm-up by time
    min_duration_ms: float = 1000.0  # summed timed runs must reach this
    min_iters: int = 10
    max_iters: int = 100_000  # hard stop, even before min_duration_ms is reached
    per_op: bool = False  # also collect a per-op-type profile (separate run)
    batch: int | None = None  # override the batch of the input shape

    def __post_init__(self) -> None:
        if self.warmup_ms < 0 or self.min_duration_ms < 0:
            raise UserError("warm-up and minimum duration must be >= 0 ms")
        if self.min_iters < 1 or self.max_iters < self.min_iters:
            raise UserError(
                f"need 1 <= min_iters <= max_iters, got {self.min_iters}, {self.max_iters}"
            )
        if self.batch is not None and self.batch < 1:
            raise UserError(f"batch must be >= 1, got {self.batch}")


@dataclass(frozen=True)
class TimedRuns:
    """Raw output of the measuring loop: per-iteration times and the warm-up really spent."""

    samples_ms: list[float]
    warmup_ms: float
    warmup_iters: int


@dataclass(frozen=True)
class PairedComparison:
    """Alternating paired measurements of two models; the ratio is a's median over b's."""

    pairs: tuple[tuple[Measurement, Measurement], ...]

    @property
    def ratios(self) -> list[float]:
        return [a.latency_ms.median / b.latency_ms.median for a, b in self.pairs]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-pair ratios: how much to trust `ratio`."""
        return relative_spread(self.ratios)

    @property
    def unstable(self) -> bool:
        return any(a.unstable or b.unstable for a, b in self.pairs)


class LatencyProfiler(ABC):
    """Times one model on one target. Public `profile()`; subclasses fill the `_hooks`."""

    runtime: ClassVar[str]  # the registry key, set by `@PROFILERS.decorator(...)`

    def profile(
        self,
        model: ModelInput | str,
        target: Target,
        input_shape: tuple[int, ...] | None = None,
        settings: ProfileSettings | None = None,
    ) -> Measurement:
        """Warm up, time, and return a `Measurement` with how="measured".

        `input_shape` None: taken from the model's input, dynamic dims from
        `target.input_shape`; `settings.batch` then overrides the batch dimension.
        """
        settings = settings or ProfileSettings()
        with self.opened(model, target, input_shape, settings.batch) as state:
            return self.measure(state, target, settings)

    @contextmanager
    def opened(
        self,
        model: ModelInput | str,
        target: Target,
        input_shape: tuple[int, ...] | None = None,
        batch: int | None = None,
    ) -> Iterator[Any]:
        """The model loaded and ready to time with `measure` or `time_runs`, released on exit:
        for callers that interleave windows of several models without reloading them."""
        state = self._prepare(check_model_input(model), target, input_shape, batch)
        try:
            yield state
        finally:
            self._close(state)

    def measure(self, state: Any, target: Target, settings: ProfileSettings) -> Measurement:
        """One `Measurement` of a model that `opened` loaded: warm up, time, statistics."""
        timed = self.time_runs(state, settings)
        per_op_ms = self._per_op(state, settings) if settings.per_op else {}
        return self._measurement(state, target, timed, per_op_ms)

    def compare(
        self,
        model_a: ModelInput | str,
        model_b: ModelInput | str,
        target: Target,
        rounds: int = 5,
        settings: ProfileSettings | None = None,
    ) -> PairedComparison:
        """Median latency ratio a/b from `rounds` pairs whose order alternates (ab, ba, ...):
        on a shared machine the load drifts by more than the differences being compared."""
        if rounds < 1:
            raise UserError(f"rounds must be >= 1, got {rounds}")
        pairs: list[tuple[Measurement, Measurement]] = []
        for i in range(rounds):
            if i % 2 == 0:
                a = self.profile(model_a, target, settings=settings)
                b = self.profile(model_b, target, settings=settings)
            else:
                b = self.profile(model_b, target, settings=settings)
                a = self.profile(model_a, target, settings=settings)
            pairs.append((a, b))
        return PairedComparison(tuple(pairs))

    def time_runs(self, state: Any, settings: ProfileSettings) -> TimedRuns:
        """Warm up for `warmup_ms`, then run until both the summed timed time reaches
        `min_duration_ms` and `min_iters` runs are done (or `max_iters` is hit)."""
        warm_start = time.perf_counter_ns()
        warm_iters = 0
        warmup_ns = settings.warmup_ms * 1e6
        while warm_iters == 0 or time.perf_counter_ns() - warm_start < warmup_ns:
            self._run_once(state)
            warm_iters += 1
        warm_ms = (time.perf_counter_ns() - warm_start) / 1e6

        samples: list[float] = []
        total_ms = 0.0
        while len(samples) < settings.max_iters and (
            len(samples) < settings.min_iters or total_ms < settings.min_duration_ms
        ):
            ms = self._timed_once(state)
            samples.append(ms)
            total_ms += ms
        return TimedRuns(samples, warm_ms, warm_iters)

    def _timed_once(self, state: Any) -> float:
        start = time.perf_counter_ns()
        own_ms = self._run_once(state)
        wall_ms = (time.perf_counter_ns() - start) / 1e6
        return wall_ms if own_ms is None else own_ms

    def _measurement(
        self, state: Any, target: Target, timed: TimedRuns, per_op_ms: dict[str, float]
    ) -> Measurement:
        from profilers.device_info import device_info  # stdlib only; cached

        return Measurement(
            target=target.name,
            runtime=self.runtime,
            runtime_version=self._runtime_version(),
            provider=self._provider_used(state),
            precision=self._precision(state, target),
            threads=target.threads,
            input_shape=self._input_shape(state),
            latency_ms=LatencyStats.from_samples(timed.samples_ms),
            warmup_ms=timed.warmup_ms,
            how="measured",
            device=device_info(),
            per_op_ms=per_op_ms,
        )

    # ---- subclass hooks -------------------------------------------------------------

    @abstractmethod
    def _prepare(
        self,
        model: ModelInput,
        target: Target,
        input_shape: tuple[int, ...] | None,
        batch: int | None,
    ) -> Any:
        """Load the model for the target, check the provider, build inputs (outside the
        timed region). Use `resolve_input_shape` for the shape. Returns runner state."""

    @abstractmethod
    def _run_once(self, state: Any) -> float | None:
        """Run one inference, synchronously. Return None to be timed with perf_counter_ns,
        or the run's own device time in ms (e.g. from CUDA events)."""

    @abstractmethod
    def _provider_used(self, state: Any) -> str:
        """The execution provider (or engine) that really ran the model."""

    @abstractmethod
    def _input_shape(self, state: Any) -> tuple[int, ...]:
        """The concrete input shape that was timed."""

    @abstractmethod
    def _runtime_version(self) -> str:
        """Version string of the runtime."""

    def _precision(self, state: Any, target: Target) -> str:
        return target.precision

    def _per_op(self, state: Any, settings: ProfileSettings) -> dict[str, float]:
        """Per-op-type milliseconds per run, from a run separate from the timing run."""
        raise UserError(f"the {self.runtime} profiler has no per-op profile")

    def _close(self, state: Any) -> None:  # noqa: B027 - optional hook
        """Release the runner state."""


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far repeated figures of one quantity stray from each other."""
    return (max(values) - min(values)) / statistics.median(values)


def check_model_input(model: ModelInput | str) -> ModelInput:
    """Bytes pass through; a path must name a readable file (str is taken as a path)."""
    if isinstance(model, bytes | bytearray | memoryview):
        if not model:
            raise UserError("the ONNX model is empty (0 bytes)")
        return bytes(model)
    path = Path(model).expanduser()
    if not path.is_file():
        raise UserError(f"ONNX model not found: {path}")
    return path


def resolve_input_shape(
    model_dims: Sequence[Dim],
    requested: tuple[int, ...] | None,
    target: Target,
    batch: int | None = None,
) -> tuple[int, ...]:
    """The concrete shape to time: the requested one (checked against the model's static
    dims), else the model's own, with dynamic dims taken from `target.input_shape`."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in model_dims]
    if requested is not None:
        shape = tuple(int(s) for s in requested)
        if len(shape) != len(dims):
            raise UserError(
                f"input shape {shape} has rank {len(shape)}; the model wants {_fmt(dims)}"
            )
    elif all(d is not None for d in dims):
        shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    elif len(target.input_shape) == len(dims):
        shape = tuple(
            d if d is not None else t for d, t in zip(dims, target.input_shape, strict=True)
        )
    else:
        raise UserError(
            f"model input {_fmt(dims)} has dynamic dims and target {target.name!r} "
            f"input shape {target.input_shape} has another rank; pass an input shape"
        )
    if batch is not None:
        shape = (batch, *shape[1:])
    for i, (want, got) in enumerate(zip(dims, shape, strict=True)):
        if want is not None and want != got:
            raise UserError(
                f"input shape {shape} does not fit the model input {_fmt(dims)} (dim {i})"
            )
    if any(s < 1 for s in shape):
        raise UserError(f"input shape {shape} has a non-positive dimension")
    check_input_size(shape, "input shape")  # a model's static dims or --batch can be huge too
    return shape


def _fmt(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def parse_input_shape(text: str, batch: bool = False) -> tuple[int, ...]:
    """'1x28x28' -> (1, 28, 28). With `batch`, 'CxHxW' or 'NxCxHxW' -> (N, C, H, W), N = 1
    when only C×H×W is given. Anything else is a user error naming the expected form."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    ranks, form = ((3, 4), "CxHxW or NxCxHxW") if batch else ((3,), "CxHxW")
    if len(dims) not in ranks or min(dims) < 1:
        raise UserError(f"input shape must look like {form}, e.g. 1x28x28, not {text!r}")
    check_input_size(dims)
    return (1, *dims) if batch and len(dims) == 3 else dims
