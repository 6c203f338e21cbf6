"""The typed description of a device that models are profiled and exported for."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

RUNTIMES = ("onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


def cache_dir() -> Path:
    """The user cache (`$EMF_CACHE_DIR`, else `$XDG_CACHE_HOME/edge-model-factory`)."""
    env = os.environ.get("EMF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "edge-model-factory"


@dataclass(frozen=True)
class AgentRef:
    """How a remote target is reached: the agent's base URL and the env var holding its token."""

    url: str
    token_env: str | None = None

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None


@dataclass(frozen=True)
class Target:
    """A device: which runtime measures on it, with what precision and threads, and where."""

    name: str
    description: str
    runtime: str  # one of RUNTIMES
    execution_provider: str  # ONNX Runtime provider name, e.g. "CPUExecutionProvider"
    precision: str = "fp32"  # one of PRECISIONS
    threads: int | None = None  # intra-op threads pinned while measuring; None = runtime default
    input_shape: tuple[int, ...] = (1, 3, 224, 224)  # (N, C, H, W) when the model gives none
    aliases: tuple[str, ...] = ()
    agent: AgentRef | None = None  # None: measured on this machine
    # a farm: further boards of the same kind (YAML `agents: [...]`, the first is `agent`)
    more_agents: tuple[AgentRef, ...] = ()
    latency_table: str | None = None  # directory of latency tables; None = user cache
    needs_gpu: bool = False
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.agent is None

    @property
    def agents(self) -> tuple[AgentRef, ...]:
        """Every board that measures for this target (one measurement at a time each)."""
        return () if self.agent is None else (self.agent, *self.more_agents)

    def latency_table_dir(self) -> Path:
        """Where this target's latency lookup tables are stored."""
        if self.latency_table:
            return Path(os.path.expandvars(self.latency_table)).expanduser()
        return cache_dir() / "lut" / self.name
