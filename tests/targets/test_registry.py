from __future__ import annotations

import pytest

from targets.errors import UnknownNameError, UserError
from targets.registry import Registry


def test_register_get_alias_and_listing() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("one", 1, aliases=("uno",))

    @reg.decorator("two")
    def two() -> int:
        return 2

    assert reg.get("one") == 1 and reg.get("uno") == 1
    assert reg.get("two") is two
    assert reg.names() == ["one", "two"]
    assert reg.aliases_of("one") == ["uno"]
    assert "uno" in reg and "three" not in reg and len(reg) == 2


def test_duplicates_raise() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("one", 1, aliases=("uno",))
    with pytest.raises(ValueError, match="duplicate"):
        reg.register("one", 2)
    with pytest.raises(ValueError, match="duplicate"):
        reg.register("other", 2, aliases=("uno",))


def test_unknown_name_lists_valid_ones() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("b", 1)
    reg.register("a", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("c")
    assert isinstance(info.value, UserError)
    assert str(info.value) == "unknown thing 'c'; valid: a, b"


def test_key_attr_writes_the_name_onto_the_registered_class() -> None:
    reg: Registry[type] = Registry("thing", key_attr="name")

    @reg.decorator("fast-one")
    class Thing:
        name: str

    assert Thing.name == "fast-one" and reg.get("fast-one") is Thing
