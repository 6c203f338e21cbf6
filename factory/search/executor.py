"""The executor seam: where candidate work runs. In-process by default; `ray` sends each
candidate's scoring to a Ray cluster (`factory.search.ray_executor`), the driver still
recording every result. Strategies never see which one runs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from factory.search.scoring import Scorer
from factory.spaces.base import Genotype, Supernet
from targets.errors import UserError

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("in-process", "ray")


class Scores(Protocol):
    """Accuracies being computed for a list of genotypes."""

    def get(self, index: int) -> float:
        """The accuracy of genotype `index`, waiting for it."""


class Executor(Protocol):
    """Runs independent pieces of candidate work (scoring, generic jobs)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn applied to every item, results in input order."""

    def score(
        self, scorer: Scorer, net: Supernet, weights_key: str, genotypes: Sequence[Genotype]
    ) -> Scores:
        """Start scoring `genotypes` with `net`'s weights; `weights_key` names those weights
        (it changes whenever they do), so they travel to the workers once per key."""

    def close(self) -> None:
        """Release workers (nothing to do in-process)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Where candidate work runs: `in-process`, or `ray` at `address` (None: a Ray instance
    started on this machine with `num_cpus` CPUs, or the one this process already joined)."""

    kind: str = "in-process"
    address: str | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor {self.kind!r}; valid: {', '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise UserError("--ray-address needs --executor ray")


class InProcessExecutor:
    """Runs work one item at a time in this process: one measurement at a time per device."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def score(
        self, scorer: Scorer, net: Supernet, weights_key: str, genotypes: Sequence[Genotype]
    ) -> Scores:
        return _Lazy(lambda i: scorer.score(net, genotypes[i], self.device))

    def close(self) -> None:
        return None


class _Lazy:
    """Scores computed when asked for, in the caller's order (the in-process behaviour)."""

    def __init__(self, compute: Callable[[int], float]) -> None:
        self._compute = compute

    def get(self, index: int) -> float:
        return self._compute(index)


def make_executor(
    spec: ExecutorSpec, device: torch.device, resources: dict[str, float]
) -> Executor:
    """The executor `spec` names; Ray is imported only here, and only when asked for.
    `resources`: custom resources a Ray instance started here declares (device farms)."""
    if spec.kind == "in-process":
        return InProcessExecutor(device)
    try:
        from factory.search.ray_executor import RayExecutor
    except ImportError as exc:
        raise UserError(
            f"--executor ray needs Ray ({exc.msg}): pip install 'edge-model-factory[ray]'"
        ) from exc
    return RayExecutor.connect(spec, resources)
