"""Candidate scoring as Ray tasks (`factory search --executor ray`).

The driver puts the `Scorer` (space, validation and calibration images) into the object
store once per run and the shared weights once per `weights_key` (a generation, a step), and
hands every task references to both. A worker keeps what it rebuilt: the supernet once per
run, the weights loaded once per key, so a generation costs one transfer per node and one
load per worker. Results come back to the driver, which alone writes the run's database.

A worker that dies is replaced and its task retried by Ray (`MAX_RETRIES`); a candidate that
still fails becomes a one-line `UserError`, and everything recorded before it stays.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import ray
import ray.exceptions
import torch

from factory.allocator import keep_freed_memory
from factory.search.scoring import Scorer, load_weights, weights_of
from factory.spaces.base import Genotype, Supernet
from targets.errors import UserError

if TYPE_CHECKING:  # executor.py imports this module lazily; no cycle at run time
    from factory.search.executor import ExecutorSpec

T = TypeVar("T")
R = TypeVar("R")
MAX_RETRIES = 2  # a task whose worker died runs up to 1 + MAX_RETRIES times
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # a Ray instance this process starts on a shared box
_LOST = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
_LOST += (ray.exceptions.ObjectLostError, ray.exceptions.TaskUnschedulableError)

# --- the worker side: what one worker process keeps between tasks ---------------------------
_KEPT: dict[str, Any] = {}


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _score_task(scorer_box: list, scorer_key: str, weights_box: list, weights_key: str, g: tuple):
    """One candidate's accuracy. The references come in lists so that Ray does not fetch
    them for every task: a worker fetches a scorer or weights only when its key changed."""
    if _KEPT.get("scorer_key") != scorer_key:
        keep_freed_memory()  # a worker's first task: it scores as fast as the driver would
        scorer: Scorer = ray.get(scorer_box[0])
        _KEPT.update(scorer_key=scorer_key, scorer=scorer, net=scorer.build_supernet())
        _KEPT.pop("weights_key", None)
    net = _KEPT["net"]
    if _KEPT.get("weights_key") != weights_key:
        load_weights(net, ray.get(weights_box[0]))
        _KEPT["weights_key"] = weights_key
    return _KEPT["scorer"].score(net, g, torch.device("cpu"))


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _call_task(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


# --- the driver side -------------------------------------------------------------------------


class RayExecutor:
    """Scores candidates on a Ray cluster; use `connect`."""

    def __init__(self, owns_ray: bool, address: str) -> None:
        self.owns_ray, self.address = owns_ray, address
        self._scorer: tuple[int, Any] | None = None  # (id of the scorer, its object ref)
        self._weights: dict[str, Any] = {}  # weights_key -> object ref, the last two

    @classmethod
    def connect(cls, spec: ExecutorSpec, resources: dict[str, float]) -> RayExecutor:
        """Join the cluster at `spec.address`, reuse the Ray this process already joined,
        or start one here with `resources` (e.g. a device farm's `device:<target>:<n>`)."""
        if spec.address not in (None, "auto"):
            _probe(spec.address)
        if ray.is_initialized():
            return cls(owns_ray=False, address="this process's Ray")
        options: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
        )
        if spec.address is None:
            options |= dict(
                num_cpus=spec.num_cpus,
                resources=resources or None,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
        where = spec.address or "a Ray instance on this machine"
        try:
            ray.init(address=spec.address, **options)
        except ray.exceptions.AuthenticationError as exc:
            raise UserError(
                f"the Ray cluster at {where} wants its token ({_one_line(exc)}): set "
                "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (`ray get-auth-token` on the head node)"
            ) from exc
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise UserError(f"cannot join Ray at {where}: {_one_line(exc)}") from exc
        return cls(owns_ray=True, address=where)

    def workers(self) -> int:
        """CPUs the cluster offers: how many candidates are scored at once."""
        return int(ray.cluster_resources().get("CPU", 0))

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn(item) as Ray tasks (fn must pickle: a module-level function)."""
        items = list(items)
        refs = [_call_task.remote(fn, item) for item in items]
        return [_get(ref, f"item {item!r}") for ref, item in zip(refs, items, strict=True)]

    def score(
        self, scorer: Scorer, net: Supernet, weights_key: str, genotypes: Sequence[Genotype]
    ) -> _RayScores:
        if self._scorer is None or self._scorer[0] != id(scorer):
            self._scorer = (id(scorer), ray.put(scorer))
            self._weights.clear()
        if weights_key not in self._weights:
            if len(self._weights) >= 2:  # current and previous weights are all a unit uses
                self._weights.pop(next(iter(self._weights)))
            self._weights[weights_key] = ray.put(weights_of(net))
        scorer_box, weights_box = [self._scorer[1]], [self._weights[weights_key]]
        scorer_key = f"{id(scorer)}"
        refs = [
            _score_task.remote(scorer_box, scorer_key, weights_box, weights_key, tuple(g))
            for g in genotypes
        ]
        return _RayScores(refs, [tuple(g) for g in genotypes])

    def close(self) -> None:
        self._scorer, self._weights = None, {}
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()


class _RayScores:
    """The tasks of one `score` call; `get` waits for one of them."""

    def __init__(self, refs: list, genotypes: list[tuple]) -> None:
        self._refs, self._genotypes = refs, genotypes

    def get(self, index: int) -> float:
        genotype = "-".join(str(c) for c in self._genotypes[index])
        return float(_get(self._refs[index], f"candidate {genotype}"))


def _get(ref: Any, what: str) -> Any:
    """ray.get with the engine's failures turned into one line naming the work."""
    try:
        return ray.get(ref)
    except _LOST as exc:
        raise UserError(
            f"{what}: the Ray worker was lost {MAX_RETRIES + 1} times ({type(exc).__name__})"
        ) from exc
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(f"{what}: {cause}") from exc
        raise UserError(f"{what} failed on a Ray worker: {_one_line(cause or exc)}") from exc
    except ray.exceptions.RayError as exc:
        raise UserError(f"{what}: Ray failed ({_one_line(exc)})") from exc


def _probe(address: str) -> None:
    """A refusal within seconds, not Ray's minute of retries, when nothing listens there."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(
            f"--ray-address must be auto, HOST:PORT or ray://HOST:PORT, not {address!r}"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=3.0):
            pass
    except OSError as exc:
        raise UserError(
            f"no Ray cluster answers at {address} ({_one_line(exc)}); start one with "
            "`ray start --head` there, or check the address"
        ) from exc


def _one_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]
