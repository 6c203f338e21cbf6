"""nb201 space: the benchmark's architecture strings and network sizes."""

from __future__ import annotations

import itertools

import pytest

from factory.spaces import get_space
from factory.spaces.nb201 import OPS, arch_string, parse_arch_string
from targets.errors import UserError

# NAS-Bench-201's own example string (its README) and its edges in genotype order
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"  # noqa: E501


def test_every_genotype_round_trips_through_its_arch_string() -> None:
    strings = {arch_string(g) for g in itertools.product(range(len(OPS)), repeat=6)}
    assert len(strings) == 15_625
    for text in list(strings)[:500]:
        assert arch_string(parse_arch_string(text)) == text
    g = parse_arch_string(EXAMPLE)
    assert [OPS[i] for i in g] == [
        "nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3",
        "skip_connect",
    ]  # fmt: skip
    assert get_space("nb201").parse(EXAMPLE) == g  # the CLI accepts the string too


@pytest.mark.parametrize(
    "bad",
    ["", "|nor_conv_3x3~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
     "|none~0|+|none~0|+|none~0|none~1|none~2|"],
)  # fmt: skip
def test_bad_arch_strings_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError, match="NAS-Bench-201 arch string"):
        parse_arch_string(bad)


def test_network_sizes_are_the_benchmarks() -> None:
    """NAS-Bench-201 lists CIFAR-10 networks from 0.0731 M (no conv on any edge) to 1.5316 M
    parameters (conv3x3 everywhere): stem, cells, residual reductions and head all count."""
    space = get_space("nb201")
    assert space.spec.shape == (3, 32, 32)  # CIFAR-10 by default
    sizes = {
        name: sum(p.numel() for p in space.build(g).parameters())
        for name, g in {"none": (0,) * 6, "skip": (1,) * 6, "conv3": (3,) * 6}.items()
    }
    assert sizes == {"none": 73_306, "skip": 73_306, "conv3": 1_531_546}
    rows = space.describe((3,) * 6)
    assert [r.out_shape for r in rows if r.name.startswith("reduction")] == [
        (32, 16, 16),
        (64, 8, 8),
    ]
    assert len([r for r in rows if r.name.startswith("cell")]) == 15
