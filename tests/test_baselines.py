"""The hand-designed baselines: built from torchvision, adapted to small inputs, trainable."""

from __future__ import annotations

import pytest
import torch

from factory.baselines import FAMILIES, Baseline, default_baselines, parse_baseline
from factory.spaces.base import InputSpec
from profilers.flops import count_costs
from targets.errors import UnknownNameError, UserError

FMNIST = InputSpec(1, 28, 28, 10)


@pytest.mark.parametrize("baseline", default_baselines(), ids=lambda b: b.name)
def test_every_default_baseline_classifies_28x28_grey_images(baseline: Baseline) -> None:
    model = baseline.build(FMNIST).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_the_stem_keeps_full_resolution_at_28_px() -> None:
    """ImageNet's stride-2 stem (+ max-pool for ShuffleNetV2) would leave 1x1 maps at the end."""
    sizes = {}
    for family in FAMILIES.names():
        model = Baseline(family, 1.0).build(FMNIST)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        sizes[family] = (first.in_channels, first.stride)
    assert sizes == {f: (1, (1, 1)) for f in FAMILIES.names()}


def test_width_multiplier_scales_the_network() -> None:
    macs = [count_costs(parse_baseline(f"mobilenet_v2@{w}").build(FMNIST), (1, 1, 28, 28)).macs
            for w in (0.35, 0.5, 1.0)]  # fmt: skip
    assert macs[0] < macs[1] < macs[2]


def test_colour_input_and_other_class_counts() -> None:
    spec = InputSpec(3, 32, 32, 100)
    for family in FAMILIES.names():
        with torch.no_grad():
            out = Baseline(family, 0.5).build(spec).eval()(torch.randn(1, 3, 32, 32))
        assert out.shape == (1, 100)


def test_names_parse_and_bad_ones_say_why() -> None:
    assert parse_baseline("mobilenet_v3_small@0.75") == Baseline("mobilenet_v3_small", 0.75)
    assert parse_baseline("shufflenet_v2").width == 1.0
    with pytest.raises(UnknownNameError):
        parse_baseline("resnet18@1")
    with pytest.raises(UserError, match="must be a number"):
        parse_baseline("mobilenet_v2@wide")
    with pytest.raises(UserError, match=r"\[0.1, 4\]"):
        parse_baseline("mobilenet_v2@9")
    with pytest.raises(UserError, match=r"0\.5, 1, 1\.5, 2 only"):
        parse_baseline("shufflenet_v2@0.75").build(FMNIST)
