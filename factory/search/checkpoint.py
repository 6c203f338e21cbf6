"""Checkpoints of a run: tensors as safetensors, everything else as JSON, swapped in atomically.

A checkpoint is a directory `RUN/checkpoint/` with one `<group>.safetensors` per tensor
group (e.g. "supernet", "supernet_prev", "strategy", "optimizer") and a `state.json`. It is
written whole into `RUN/checkpoint.tmp-<pid>/`, fsynced, then swapped in by two renames
(current -> `checkpoint.old`, new -> `checkpoint`). A crash at any point leaves one complete
checkpoint that `load_checkpoint` finds and puts back in place. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from targets.atomic import fsync_dir, write_atomic
from targets.errors import UserError

FORMAT_VERSION = 1
CURRENT = "checkpoint"
OLD = "checkpoint.old"
TMP_PREFIX = "checkpoint.tmp-"
STATE_NAME = "state.json"
_GROUP = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass
class Checkpoint:
    """What a run needs to continue after unit `unit` ended."""

    unit: int
    tensors: dict[str, dict[str, torch.Tensor]]  # group -> flat name -> tensor
    state: dict[str, Any]  # JSON: strategy state (tensors removed), rng states, ...
    saved_at: str = ""  # UTC, ISO 8601
    groups: list[str] = field(default_factory=list)


def save_checkpoint(
    run_dir: Path,
    unit: int,
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    state: Mapping[str, Any],
) -> Path:
    """Save a checkpoint taken after unit `unit`; returns its directory once it is in place."""
    run_dir = Path(run_dir)
    for group in tensors:
        if not _GROUP.match(group):
            raise ValueError(f"tensor group name {group!r} must match {_GROUP.pattern}")
    tmp = run_dir / f"{TMP_PREFIX}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for group, named in tensors.items():
        path = tmp / f"{group}.safetensors"
        save_file(_prepare(named), path)
        _fsync_file(path)
    meta = {
        "format": FORMAT_VERSION,
        "unit": int(unit),
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "groups": sorted(tensors),
        "state": state,
    }
    # state.json is written last: its presence marks the directory complete.
    write_atomic(tmp / STATE_NAME, json.dumps(meta, indent=1).encode())
    _swap_in(run_dir, tmp)
    return run_dir / CURRENT


def _prepare(named: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own, contiguous CPU copies: safetensors refuses views that share storage."""
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in named.items()}


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _swap_in(run_dir: Path, tmp: Path) -> None:
    current, old = run_dir / CURRENT, run_dir / OLD
    fsync_dir(tmp)
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)  # a leftover of an earlier crash; current is good
        os.rename(current, old)
    os.rename(tmp, current)
    fsync_dir(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(run_dir: Path, device: str | torch.device = "cpu") -> Checkpoint | None:
    """The last complete checkpoint of a run, or None if it has none.

    After a crash mid-save, the newest complete one of `checkpoint.old` and the temporary
    directories is put back as `checkpoint/`; incomplete leftovers are removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    _recover(run_dir)
    meta = _read_meta(run_dir / CURRENT)
    if meta is None:
        if (run_dir / CURRENT).exists():  # never left so by a save: someone changed it
            raise UserError(f"checkpoint {run_dir / CURRENT} is incomplete or damaged")
        return None
    tensors = {
        g: load_file(run_dir / CURRENT / f"{g}.safetensors", device=str(device))
        for g in meta["groups"]
    }
    return Checkpoint(
        unit=int(meta["unit"]),
        tensors=tensors,
        state=meta["state"],
        saved_at=meta["saved_at"],
        groups=list(meta["groups"]),
    )


def _recover(run_dir: Path) -> None:
    """Leave exactly one complete `checkpoint/` (if any was ever complete) and no leftovers."""
    current = run_dir / CURRENT
    leftovers = [run_dir / OLD, *sorted(run_dir.glob(f"{TMP_PREFIX}*"))]
    if _read_meta(current) is None:
        # Only a crash between the two renames of a swap gets here with a complete leftover.
        complete = [(m["unit"], p) for p in leftovers if (m := _read_meta(p)) is not None]
        if complete:
            best = max(complete, key=lambda c: c[0])[1]
            shutil.rmtree(current, ignore_errors=True)
            os.rename(best, current)
            fsync_dir(run_dir)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _read_meta(directory: Path) -> dict[str, Any] | None:
    """The checkpoint's state.json if the directory holds a complete checkpoint, else None."""
    try:
        meta = json.loads((directory / STATE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("format", 0) > FORMAT_VERSION:
        raise UserError(
            f"checkpoint {directory} has format {meta['format']}, newer than this factory "
            f"reads ({FORMAT_VERSION}): upgrade edge-model-factory to resume it"
        )
    if not all((directory / f"{g}.safetensors").is_file() for g in meta.get("groups", [])):
        return None
    return meta


# --- random number generator states as JSON --------------------------------------------------


def numpy_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state (plain ints and strings, so JSON holds it exactly)."""
    return _plain(rng.bit_generator.state)


def set_numpy_rng_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    rng.bit_generator.state = dict(state)


def torch_rng_state(generator: torch.Generator | None = None) -> list[int]:
    """State of a torch.Generator (the global CPU one by default) as a list of byte values."""
    state = generator.get_state() if generator is not None else torch.get_rng_state()
    return state.tolist()


def set_torch_rng_state(state: list[int], generator: torch.Generator | None = None) -> None:
    tensor = torch.tensor(state, dtype=torch.uint8)
    if generator is None:
        torch.set_rng_state(tensor)
    else:
        generator.set_state(tensor)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- optimizer state: tensors for safetensors, the rest as JSON ------------------------------


def flatten_optimizer_state(
    sd: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `optimizer.state_dict()` into a flat name -> tensor dict and JSON metadata.

    Tensors are named "state.<i>.<key>" (e.g. momentum_buffer, exp_avg, step) and
    "group.<j>.<key>" (a tensor learning rate); the metadata keeps everything else, with
    the original key types and tuples (Adam's betas) marked so they come back the same."""
    tensors: dict[str, torch.Tensor] = {}
    state = []
    for i, (key, per_param) in enumerate(sd["state"].items()):
        state.append([_encode(key), _encode_dict(per_param, f"state.{i}", tensors)])
    groups = [_encode_dict(g, f"group.{j}", tensors) for j, g in enumerate(sd["param_groups"])]
    return tensors, {"state": state, "param_groups": groups}


def unflatten_optimizer_state(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """Rebuild the state dict `flatten_optimizer_state` split, for `optimizer.load_state_dict`."""
    state = {_decode(key, tensors): _decode(value, tensors) for key, value in meta["state"]}
    groups = [_decode(g, tensors) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _encode_dict(d: Mapping[str, Any], prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    out = {}
    for key, value in d.items():
        if isinstance(value, torch.Tensor):
            name = f"{prefix}.{key}"
            tensors[name] = value
            out[key] = {"__tensor__": name}
        else:
            out[key] = _encode(value)
    return {"__dict__": out}


def _encode(value: Any) -> Any:
    """JSON for the plain values an optimizer state holds, keeping tuples and int keys."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {"__pairs__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, torch.Tensor):
        raise TypeError("nested tensors in an optimizer state are not supported")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"optimizer state value {value!r} ({type(value).__name__}) is not JSON-able")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__pairs__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__pairs__"]}
    return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
