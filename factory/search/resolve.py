"""A search config made whole: the strategy's preset, unit budget and `--set` overrides
resolved into plain values and checked, before a run directory exists."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from factory.search.config import SearchConfig
from factory.search.store import load_config
from factory.search.validate import check_run_options, setting_fits, setting_kind
from factory.spaces import SPACES, get_space
from factory.strategies import STRATEGIES
from targets import get_target
from targets.errors import UserError


def resolve(config: SearchConfig) -> SearchConfig:
    """The config with the strategy's preset and unit budget resolved into plain values."""
    cls = STRATEGIES.get(config.strategy)
    strategy_cfg = cls.Config.preset(config.preset)
    if config.units is not None:
        strategy_cfg = with_units(strategy_cfg, config.units)
    strategy_cfg = with_settings(strategy_cfg, config.strategy_config)
    get_target(config.target)  # unknown names fail before anything is written
    space_options = _space_options(config)
    if config.cost not in config.objectives:
        raise UserError(
            f"--cost {config.cost} is not one of the objectives ({', '.join(config.objectives)}); "
            f"add it: --objectives {','.join((*config.objectives, config.cost))}"
        )
    check_run_options(config)
    return dataclasses.replace(
        config,
        strategy_config=_jsonable(dataclasses.asdict(strategy_cfg)),
        space_options=space_options,
        challenge=_challenge(config, space_options),
    )


def _challenge(config: SearchConfig, options: dict[str, str]) -> tuple[str, ...]:
    """The networks whose cheaper neighbours the run challenges: the user's, else the
    space's yardstick where the space so made holds it (`--set space.min_width=0.75` drops
    MobileNetV2@0.5)."""
    if config.challenge is None and (config.benchmark is not None or config.rescore <= 0):
        return ()  # nothing rescored: nothing to challenge with
    manual = get_space(config.space, options=options).manual()
    if config.challenge is None:
        yardstick = SPACES.get(config.space).yardstick
        return (yardstick,) if yardstick in manual else ()
    unknown = [n for n in config.challenge if n not in manual]
    if unknown:
        raise UserError(
            f"--challenge {unknown[0]}: no manual architecture of the {config.space} space so "
            f"configured; valid: {', '.join(manual)} (or none)"
        )
    return tuple(dict.fromkeys(config.challenge))


def _space_options(config: SearchConfig) -> dict[str, str]:
    """The user's `--set space.*` over the space's search defaults; the defaults yield where
    an `--init` architecture lies outside them (`--init mobilenet_v2@0.35`)."""
    user = dict(config.space_options)
    options = {**SPACES.get(config.space).search_defaults, **user}
    try:
        _parse_init(config, options)
    except UserError:
        if options == user:
            raise
        options = user
        _parse_init(config, options)
    return options


def _parse_init(config: SearchConfig, options: dict[str, str]) -> None:
    """Fails (UserError) where an `--init` name is no architecture of the space so made."""
    space = get_space(config.space, options=options)
    for name in config.init:
        space.parse(name)


def with_units(strategy_cfg: Any, units: int) -> Any:
    """The strategy config with its number of units set (`--generations` / `--steps`)."""
    if units < 1:
        raise UserError("the number of generations/steps must be >= 1")
    names = {f.name for f in dataclasses.fields(strategy_cfg)}
    if "generations" in names:
        return dataclasses.replace(strategy_cfg, generations=units)
    if {"n_warm", "n_slow", "n_fast"} <= names:  # keep the paper's 1:1:4 phase proportions
        warm = slow = max(1, round(units / 6))
        # and the period's share of a phase (paper: T = N_slow), so F does not jump between
        # the ends of its range when a run is shorter than the preset
        period = max(1, round(strategy_cfg.period * slow / max(1, strategy_cfg.n_slow)))
        return dataclasses.replace(
            strategy_cfg, n_warm=warm, n_slow=slow, n_fast=max(1, units - warm - slow),
            period=period,
        )  # fmt: skip
    if "steps" in names:
        return dataclasses.replace(strategy_cfg, steps=units)
    raise UserError(f"strategy config {type(strategy_cfg).__name__} has no unit budget")


def with_settings(strategy_cfg: Any, settings: dict[str, Any]) -> Any:
    """The strategy config with `--set KEY=VALUE` overrides; unknown keys list valid ones."""
    fields = {f.name: f for f in dataclasses.fields(strategy_cfg)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise UserError(
            f"unknown setting {unknown[0]!r} for {type(strategy_cfg).__name__}; "
            f"valid: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(type(strategy_cfg))
    for key, value in settings.items():
        if not setting_fits(value, hints.get(key, Any)):
            raise UserError(
                f"--set {key}={json.dumps(value)}: {key} takes {setting_kind(hints[key])} "
                f"(the default is {json.dumps(_jsonable(getattr(strategy_cfg, key)))})"
            )
    values = config_tuples(type(strategy_cfg), dict(settings))
    try:
        return dataclasses.replace(strategy_cfg, **values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid strategy setting: {exc}") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def config_tuples(config_cls: Any, values: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to tuples where the config field is a tuple."""
    out = dict(values)
    for f in dataclasses.fields(config_cls):
        if f.name in out and isinstance(out[f.name], list):
            out[f.name] = tuple(out[f.name])
    return out


def load_run_config(run_dir: Path) -> SearchConfig:
    """The saved config of a run directory (for `--resume` and `factory report`)."""
    if not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} is not a run directory (no config.json)")
    return SearchConfig.from_dict(load_config(run_dir))
