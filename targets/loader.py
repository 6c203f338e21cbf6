"""Reads target YAML files into `Target`s and checks every field, naming the file on error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from targets.errors import UserError
from targets.target import PRECISIONS, RUNTIMES, AgentRef, Target

_REQUIRED = {"name", "description", "runtime", "execution_provider"}
_OPTIONAL = {"precision", "threads", "input_shape", "aliases", "agent", "latency_table"}
_OPTIONAL |= {"needs_gpu", "notes", "agents"}


def load_target(path: Path) -> Target:
    """Parse one YAML file; unknown or missing keys and bad values raise `UserError`."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read target file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"target file {path} must hold a mapping")
    try:
        return _from_dict(data)
    except (ValueError, TypeError) as exc:
        raise UserError(f"invalid target file {path}: {exc}") from exc


def _from_dict(data: dict[str, Any]) -> Target:
    missing = _REQUIRED - data.keys()
    unknown = data.keys() - _REQUIRED - _OPTIONAL
    if missing:
        raise ValueError(f"missing keys {sorted(missing)}")
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if data["runtime"] not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {data['runtime']!r}")
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    shape = tuple(int(d) for d in data.get("input_shape", (1, 3, 224, 224)))
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be 4 positive ints (N, C, H, W), not {shape}")
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or null, not {threads!r}")
    agents = _agents(data)
    return Target(
        name=str(data["name"]),
        description=str(data["description"]).strip(),
        runtime=data["runtime"],
        execution_provider=str(data["execution_provider"]),
        precision=precision,
        threads=threads,
        input_shape=shape,
        aliases=tuple(str(a) for a in data.get("aliases", ())),
        agent=agents[0] if agents else None,
        more_agents=tuple(agents[1:]),
        latency_table=data.get("latency_table"),
        needs_gpu=bool(data.get("needs_gpu", False)),
        notes={str(k): str(v) for k, v in (data.get("notes") or {}).items()},
    )


def _agents(data: dict[str, Any]) -> list[AgentRef]:
    """`agent: {url, token_env}` (one board) or `agents: [{url, token_env}, ...]` (a farm)."""
    if "agent" in data and "agents" in data:
        raise ValueError("give either 'agent' (one board) or 'agents' (a farm), not both")
    if data.get("agent") is not None:
        return [_agent(data["agent"])]
    listed = data.get("agents")
    if listed is None:
        return []
    if not isinstance(listed, list) or not listed:
        raise ValueError("agents must be a non-empty list of {url, token_env} mappings")
    agents = [_agent(a) for a in listed]
    urls = [a.url for a in agents]
    if len(set(urls)) != len(urls):
        raise ValueError(f"agents lists a URL twice: {urls}")
    return agents


def _agent(agent: Any) -> AgentRef:
    if not isinstance(agent, dict) or "url" not in agent or set(agent) - {"url", "token_env"}:
        raise ValueError("an agent must be a mapping with 'url' and optional 'token_env'")
    return AgentRef(url=str(agent["url"]).rstrip("/"), token_env=agent.get("token_env"))
