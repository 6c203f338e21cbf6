"""`--init` with a hand-designed network of the space works for every strategy."""

from __future__ import annotations

import dataclasses

import pytest

from factory.search.config import SearchConfig
from factory.search.resolve import resolve
from factory.spaces import get_space
from factory.strategies.registry import STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES.names())
@pytest.mark.parametrize("width", ["0.35", "0.5", "0.75", "1"])
def test_every_strategy_warm_starts_from_mobilenet_v2(strategy: str, width: str) -> None:
    name = f"mobilenet_v2@{width}"
    config = resolve(SearchConfig(space="mobilenet", strategy=strategy, init=(name,)))
    space = get_space("mobilenet")
    cls = STRATEGIES.get(strategy)
    cfg = cls.Config(**{k: tuple(v) if isinstance(v, list) else v
                        for k, v in config.strategy_config.items()})  # fmt: skip
    strategy_obj = cls(space, dataclasses.replace(cfg), [space.parse(name)])
    assert strategy_obj.init == (space.manual()[name],)
