"""Checks of a search's options that nothing later makes before work starts, so a bad one
is refused on one line before the run directory exists."""

from __future__ import annotations

import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from factory.search.config import SearchConfig
from targets.errors import UserError


def check_run_options(config: SearchConfig) -> None:
    """The options no later step checks before work starts: each refused with what to do."""
    from factory.data import DATASETS
    from factory.search.costs import LATENCY_MODES

    DATASETS.resolve(config.dataset)  # an unknown name lists the valid ones
    if config.data_root is not None and not Path(config.data_root).expanduser().is_dir():
        raise UserError(
            f"--data-root {config.data_root} is not a directory; give the folder holding the "
            "dataset, or leave --data-root out to use the copy found on this machine"
        )
    if config.latency_mode not in LATENCY_MODES:
        raise UserError(
            f"unknown latency mode {config.latency_mode!r}; valid: {', '.join(LATENCY_MODES)}"
        )
    if config.time_budget_s is not None and config.time_budget_s <= 0:
        raise UserError("--time must be longer than 0 s, e.g. --time 20m")
    if config.refine < 0:
        raise UserError(f"--refine must be >= 0 (0: no refinement), got {config.refine}")
    if config.rescore < 0:
        raise UserError(f"--rescore must be >= 0 (0: no rescoring), got {config.rescore}")
    if config.rescore_steps < 1:
        raise UserError(f"--rescore-steps must be >= 1, got {config.rescore_steps}")
    if config.rescore_images is not None and config.rescore_images < 1:
        raise UserError(f"--rescore-images must be >= 1, got {config.rescore_images}")
    if config.challengers < 0:
        raise UserError(f"--challengers must be >= 0 (0: none), got {config.challengers}")
    lo, hi = config.f_min, config.f_max
    if lo is not None and hi is not None and not lo < hi:
        raise UserError(f"--f-min ({lo:g}) must be below --f-max ({hi:g})")
    for name, value in (("--f-min", lo), ("--f-max", hi)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name} must be a finite cost >= 0, not {value:g}")


_KINDS = {int: "a whole number", float: "a number", str: "a word", bool: "true or false"}


def setting_fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value from `--set` suits a config field's type (bool is no number)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (types.UnionType, typing.Union):
        return any(setting_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple or hint is tuple:
        return isinstance(value, (list, tuple))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def setting_kind(hint: Any) -> str:
    """'a whole number', 'a number or null', ... for the message of a refused `--set`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(setting_kind(a) for a in args) + " or null"
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple or hint is tuple:
        return "a list, e.g. [1, 2]"
    return _KINDS.get(hint, getattr(hint, "__name__", str(hint)))
