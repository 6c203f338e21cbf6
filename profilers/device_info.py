"""What machine a latency figure was measured on. Standard library only (runs on devices).

A latency means little without the CPU, the runtime version and, on a Jetson, the power
mode: they are recorded with every measurement.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_RUNTIMES = ("onnxruntime", "onnxruntime-gpu", "tensorrt")


@functools.lru_cache(maxsize=1)
def device_info() -> dict[str, Any]:
    """CPU, cores, OS, Python, runtime versions, GPU name and Jetson details when present."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": _usable_cores(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    for name in _RUNTIMES:
        version = _package_version(name)
        if version:
            info[name.replace("-", "_")] = version
    gpu = gpu_name()
    if gpu:
        info["gpu"] = gpu
    info.update(jetson_info())
    return info


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    text = _read("/proc/cpuinfo")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name via nvidia-smi (no CUDA bindings needed), else None."""
    out = _command(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if out:
        return out.splitlines()[0].strip()
    model = _read("/proc/device-tree/model").strip("\x00\n ")
    return model if "jetson" in model.lower() else None


def jetson_info() -> dict[str, str]:
    """L4T release, board model and `nvpmodel -q` power mode on a Jetson; {} elsewhere."""
    release = _read("/etc/nv_tegra_release").splitlines()
    if not release:
        return {}
    info = {"l4t": release[0].strip("# ").strip()}
    model = _read("/proc/device-tree/model").strip("\x00\n ")
    if model:
        info["board"] = model
    power = _command(["nvpmodel", "-q"])
    if power:
        info["power_mode"] = " ".join(power.split())
    return info


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _memory_gb() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)  # kB -> GiB
    return None


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _command(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
