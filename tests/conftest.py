"""Shared test set-up: skip `gpu` tests where there is no NVIDIA GPU, keep torch small."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the custom resources of the test farm's two boards (profilers.farm.resource_name)
FARM_RESOURCES = {"device:farm:0": 1.0, "device:farm:1": 1.0}


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_RAY_AUTH = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
_saved_auth: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Ray >= 2.60 turns token authentication on for new clusters and writes the token to
    ~/.ray/auth_token; the tests give it one in the environment instead. Set before any
    test imports ray: a driver reads the mode once, when ray is imported."""
    for key in _RAY_AUTH:
        _saved_auth[key] = os.environ.get(key)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, value in _saved_auth.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_nvidia_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none found: nvidia-smi -L failed)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own user cache, so nothing leaks into ~/.cache."""
    monkeypatch.setenv("EMF_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray instance for the session, small (2 CPUs, 80 MB object store), stopped
    after (token authentication on: see `pytest_configure`). Workers import this checkout
    (PYTHONPATH), as the driver does."""
    ray = pytest.importorskip("ray")
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {"PYTHONPATH": os.pathsep.join(paths)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(
        num_cpus=2,
        object_store_memory=80_000_000,
        include_dashboard=False,
        log_to_driver=False,
        resources=FARM_RESOURCES,
    )
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
