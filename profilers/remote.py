"""Profiling on a remote device through its agent, for targets whose YAML names
`agent: {url, token_env}`. The agent measures with its own runtime and sends back the
`Measurement`, so a remote figure has exactly the fields of a local one.

`profiler_for(target)` is the selector callers use: the `RemoteProfiler` for a target with
an agent, `get_profiler(target)` (this machine's runtime) otherwise. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

from profilers.agent_client import AgentClient
from profilers.base import LatencyProfiler, ProfileSettings, check_model_input
from profilers.measurement import Measurement
from profilers.registry import PROFILERS, get_profiler
from targets.errors import UserError
from targets.target import AgentRef, Target


class RemoteProfiler:
    """Same `profile()` as a `LatencyProfiler`; the timing loop runs on the agent's device,
    inside its own `LatencyProfiler`, so the invariants stay in one place."""

    runtime: ClassVar[str]  # "remote", set by its registration

    def profile(
        self,
        model: bytes | Path | str,
        target: Target,
        input_shape: tuple[int, ...] | None = None,
        settings: ProfileSettings | None = None,
    ) -> Measurement:
        """Upload the ONNX model (bytes or path) to the target's agent and time it there."""
        checked = check_model_input(model)
        data = checked if isinstance(checked, bytes) else checked.read_bytes()
        return profile_via_agent(data, target, input_shape, settings)


PROFILERS.register("remote", cast(type[LatencyProfiler], RemoteProfiler))


def profiler_for(target: Target) -> LatencyProfiler | RemoteProfiler:
    """The profiler that measures on `target`: its agent when it has one, else this machine."""
    return RemoteProfiler() if target.agent is not None else get_profiler(target)


def profile_via_agent(
    model_bytes: bytes,
    target: Target,
    input_shape: tuple[int, ...] | None = None,
    settings: ProfileSettings | None = None,
    **client_options: Any,
) -> Measurement:
    """Time `model_bytes` (ONNX) on the target's device; `client_options` go to AgentClient."""
    with agent_client_for(target, **client_options) as client:
        result = client.profile(
            model_bytes,
            target_name=target.name,
            runtime=target.runtime,
            provider=target.execution_provider,
            precision=target.precision,
            threads=target.threads,
            input_shape=input_shape,
            default_shape=target.input_shape,
            settings=settings,
        )
    return result.measurement


def agent_client_for(target: Target, **client_options: Any) -> AgentClient:
    """A client of the target's agent, with its token; `client_options` go to AgentClient."""
    if target.agent is None:
        raise UserError(f"target {target.name!r} has no agent (add `agent: {{url: ...}}`)")
    token = agent_token(target.name, target.agent)
    return AgentClient(target.agent.url, token, **client_options)


def agent_token(target_name: str, agent: AgentRef) -> str | None:
    """The target's token from its env var; a named but unset variable is an error."""
    if agent.token_env is None:
        return None
    token = agent.token()
    if not token:
        raise UserError(
            f"target {target_name!r}: set ${agent.token_env} to the token of the agent at "
            f"{agent.url}"
        )
    return token.strip()
