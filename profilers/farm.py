"""A device farm: the several agents (boards of one kind) a target lists, measuring a batch
of models in parallel while each board runs one measurement at a time.

The farm hands an agent its next job only when its last one finished, so a free board takes
the next model off one shared queue (a slow board does fewer). With Ray (`backend="ray"`)
every job is a task that holds the custom resource `device:<target>:<n>` of capacity 1, so
the cluster keeps the promise even for several searches sharing it; without Ray a thread per
agent does the same here. An agent that stops answering is dropped and its job goes back to
the queue for the others; `notify` says so. Standard library, httpx and (lazily) Ray only.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from profilers.agent_client import AgentUnreachable
from profilers.base import ProfileSettings
from profilers.measurement import Measurement
from targets.errors import UserError
from targets.target import AgentRef, Target

T = TypeVar("T")
R = TypeVar("R")
BACKENDS = ("local", "ray")
Job = Callable[[Target, T], R]  # runs one item on the target narrowed to one agent


def resource_name(target: Target, n: int) -> str:
    """The Ray custom resource of the target's n-th agent (capacity 1 on one node)."""
    return f"device:{target.name}:{n}"


def farm_resources(target: Target) -> dict[str, float]:
    """What a Ray instance started for this target declares: one unit per agent."""
    return {resource_name(target, n): 1.0 for n in range(len(target.agents))}


class Farm:
    """Runs jobs on a target's agents, at most one at a time per agent."""

    def __init__(
        self, target: Target, backend: str = "local", notify: Callable[[str], None] | None = None
    ) -> None:
        if not target.agents:
            raise UserError(f"target {target.name} has no agents: it is measured on this machine")
        if backend not in BACKENDS:
            raise UserError(f"unknown farm backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.target, self.backend = target, backend
        self.notify = notify or (lambda _message: None)
        self.down: dict[str, str] = {}  # agent URL -> why it was dropped
        self._pool: ThreadPoolExecutor | None = None
        self._env: dict[str, str] = {}  # the agents' tokens, for Ray workers elsewhere
        if backend == "ray":
            _check_ray_resources(target)
            self._env = _token_env(target)

    def boards(self) -> list[int]:
        """Indices of the agents still in service."""
        return [n for n, a in enumerate(self.target.agents) if a.url not in self.down]

    def map(self, job: Job[T, R], items: Sequence[T]) -> list[R]:
        """job(target narrowed to one agent, item) for every item, results in input order.
        With Ray, `job` must pickle (a module-level function)."""
        results: dict[int, R] = {}
        queue = deque(range(len(items)))
        idle = self.boards()
        running: dict[Future, tuple[int, int]] = {}  # future -> (agent, item)
        while queue or running:
            while queue and idle:
                n, i = idle.pop(0), queue.popleft()
                running[self._submit(job, n, items[i])] = (n, i)
            if not running:
                raise UserError(self._all_down())
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                n, i = running.pop(future)
                try:
                    results[i] = future.result()
                    idle.append(n)
                except Exception as exc:  # Ray wraps the job's own error: `_cause`
                    self._failed(n, _cause(exc))
                    queue.appendleft(i)
        return [results[i] for i in range(len(items))]

    def measure(
        self, models: Sequence[bytes], shape: tuple[int, ...], settings: ProfileSettings
    ) -> list[Measurement]:
        """Each ONNX model timed once on some board of the farm."""
        return self.map(_measure_job, [(m, shape, settings) for m in models])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _submit(self, job: Job[T, R], n: int, item: T) -> Future:
        one = narrowed(self.target, self.target.agents[n])
        if self.backend == "ray":
            options: dict[str, Any] = {"resources": {resource_name(self.target, n): 1.0}}
            if self._env:
                options["runtime_env"] = {"env_vars": self._env}
            task = _ray_task().options(**options)
            return task.remote(job, one, item).future()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.target.agents), thread_name_prefix="farm")
        return self._pool.submit(job, one, item)

    def _failed(self, n: int, exc: BaseException) -> None:
        """Drop an unreachable agent (its job returns to the queue); re-raise anything else."""
        if not isinstance(exc, AgentUnreachable):
            raise exc
        url = self.target.agents[n].url
        self.down[url] = str(exc)
        left = len(self.boards())
        if left:
            self.notify(
                f"agent {url} of {self.target.name} is down ({exc}); its work moves to the "
                f"{left} other agent{'s' if left > 1 else ''}"
            )

    def _all_down(self) -> str:
        why = "; ".join(f"{url}: {reason}" for url, reason in self.down.items())
        return f"every agent of target {self.target.name} is down ({why})"


def narrowed(target: Target, agent: AgentRef) -> Target:
    """The target as seen by one board of its farm."""
    return dataclasses.replace(target, agent=agent, more_agents=())


def _measure_job(target: Target, item: tuple[bytes, tuple[int, ...], ProfileSettings]) -> Any:
    from profilers.remote import profile_via_agent

    model, shape, settings = item
    return profile_via_agent(model, target, shape, settings)


def _cause(exc: BaseException) -> BaseException:
    """The job's own exception where Ray wrapped it in a RayTaskError."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


_RAY_TASK: Any = None


def _ray_task() -> Any:
    """The farm's Ray task, made on first use (Ray is imported only by farms that use it).
    No CPU: the board does the work, the task waits on HTTP. No retries: the farm decides."""
    global _RAY_TASK
    if _RAY_TASK is None:
        import ray

        @ray.remote(num_cpus=0, max_retries=0)
        def farm_job(job: Callable[[Target, Any], Any], target: Target, item: Any) -> Any:
            return job(target, item)

        _RAY_TASK = farm_job
    return _RAY_TASK


def _token_env(target: Target) -> dict[str, str]:
    """The agents' token variables as set here (an unset one is an error now, not on a
    worker later): a worker on another node does not share this shell's environment."""
    from profilers.remote import agent_token

    env = {}
    for agent in target.agents:
        token = agent_token(target.name, agent)
        if agent.token_env and token:
            env[agent.token_env] = token
    return env


def _check_ray_resources(target: Target) -> None:
    """Every agent needs its resource somewhere in the cluster, or its jobs would wait forever."""
    import ray

    have = ray.cluster_resources()
    missing = [r for r in farm_resources(target) if have.get(r, 0) < 1]
    if missing:
        spec = ", ".join(f'"{r}": 1' for r in missing)
        raise UserError(
            f"the Ray cluster has no {', '.join(missing)}: start a node with "
            f"`ray start --resources '{{{spec}}}'` (one unit per board of {target.name})"
        )
