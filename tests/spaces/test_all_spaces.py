"""Checks every registered space must pass; a new space is covered without editing this file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factory.spaces import SPACES, InputSpec, SearchSpace, get_space
from targets.errors import UserError

SPACE_NAMES = SPACES.names()
SPECS = [InputSpec(1, 28, 28, 10), InputSpec(3, 32, 32, 10)]


def _space(name: str, spec: InputSpec = SPECS[0]) -> SearchSpace:
    return get_space(name, spec)


def test_the_three_product_spaces_exist() -> None:
    assert {"shufflenet", "mobilenet", "vgg"} <= set(SPACE_NAMES)


def _randomise_bn(supernet: torch.nn.Module, space: SearchSpace, seed: int) -> None:
    """Give every BatchNorm non-trivial running statistics, so equality is not vacuous."""
    gen = torch.Generator().manual_seed(seed)
    for m in supernet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "x".join(map(str, s.shape)))
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_supernet_path_equals_extracted_standalone(name: str, spec: InputSpec) -> None:
    space = _space(name, spec)
    supernet = space.supernet()
    _randomise_bn(supernet, space, seed=1)
    supernet.eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, *spec.shape, generator=torch.Generator().manual_seed(0))
    genotypes = [space.sample(rng) for _ in range(3)] + list(space.manual().values())[:1]
    with torch.no_grad():
        for g in genotypes:
            expected = supernet(x, g)
            got = space.build_from_supernet(supernet, g)(x)
            assert got.shape == (2, spec.num_classes)
            diff = (expected - got).abs().max().item()
            assert diff <= 1e-5, f"{name} {space.format(g)}: max abs diff {diff}"


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_genetic_operators_stay_in_the_space(name: str) -> None:
    space = _space(name)
    rng = np.random.default_rng(1)
    a, b = space.sample(rng), space.sample(rng)
    for _ in range(20):
        child = space.mutate(a, rng)
        assert child != a and space.validate(child) == child
        mix = space.crossover(a, b, rng)
        assert all(ci in (ai, bi) for ci, ai, bi in zip(mix, a, b, strict=True))
    assert space.sample(np.random.default_rng(7)) == space.sample(np.random.default_rng(7))


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_text_form_round_trips_and_bad_text_is_a_user_error(name: str) -> None:
    space = _space(name)
    g = space.sample(np.random.default_rng(3))
    assert space.parse(space.format(g)) == g
    for label, manual in space.manual().items():
        assert space.parse(label) == manual
    with pytest.raises(UserError):
        space.parse("not-a-genotype")
    with pytest.raises(UserError):
        space.parse("0-0")
    with pytest.raises(UserError):
        space.validate(tuple(c for c in space.choices()))  # every index one past the end


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_describe_blocks_and_encoding_are_consistent(name: str) -> None:
    space = _space(name)
    g = space.sample(np.random.default_rng(5))
    torch.manual_seed(0)  # blocks(g) come from a fresh build(g): same seed, same weights
    model = space.build(g).eval()
    torch.manual_seed(0)
    blocks = space.blocks(g)
    x = torch.randn(1, *space.spec.shape)
    with torch.no_grad():
        out = model(x)
        h = x
        for block in blocks:
            assert tuple(h.shape[1:]) == block.in_shape, block.key
            h = block.module.eval()(h)
    torch.testing.assert_close(h, out, atol=1e-5, rtol=1e-5)
    rows = space.describe(g)
    assert rows[-1].out_shape[0] == space.spec.num_classes
    assert len(space.decisions()) == len(space.choices()) == len(g)
    assert all(c >= 2 for c in space.choices())
