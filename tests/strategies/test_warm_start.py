"""`--init` with a hand-designed network of the space works for every strategy."""

from __future__ import annotations

import dataclasses

import pytest

from factory.search.config import SearchConfig
from factory.search.resolve import resolve
from factory.spaces import get_space
from factory.strategies.registry import STRATEGIES
from targets.errors import UserError


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


def test_a_search_defaults_to_widths_from_0_5_unless_init_or_set_says_otherwise() -> None:
    assert resolve(SearchConfig(space="mobilenet")).space_options == {"min_width": "0.5"}
    init = resolve(SearchConfig(space="mobilenet", init=("mobilenet_v2@0.35",)))
    assert init.space_options == {}
    user = resolve(SearchConfig(space="mobilenet", space_options={"min_width": "0.75"}))
    assert user.space_options == {"min_width": "0.75"}
    with pytest.raises(UserError, match=r"mobilenet_v2@0\.35"):
        resolve(SearchConfig(space="mobilenet", space_options={"min_width": "0.5"},
                             init=("mobilenet_v2@0.35",)))  # fmt: skip
