"""The CANAS ShuffleNet space: layout, unit rules, shapes, weight sharing, ONNX export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from factory.spaces import InputSpec, get_space
from factory.spaces.shufflenet import OPS, ShuffleNetSpace, ShuffleUnit, pw1_groups
from targets.errors import UserError

SPECS = [InputSpec(), InputSpec(3, 32, 32, 10), InputSpec(3, 64, 64, 5)]
STRIDES = [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]
WIDTHS = [96] * 4 + [192] * 8 + [384] * 4


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so equivalence checks can fail."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)


def test_registered_with_16_layers_of_8_options() -> None:
    space = get_space("shufflenet")
    assert isinstance(space, ShuffleNetSpace)
    assert space.choices() == (8,) * 16
    labels = space.decisions()[0].options
    assert labels[:5] == tuple(f"shuffle_g{k}" for k in (1, 2, 3, 4, 8))
    assert len(set(labels)) == 8


def test_plan_follows_shufflenet_v1_layout() -> None:
    plan = get_space("shufflenet").plan()
    assert [p.stride for p in plan] == STRIDES
    assert [p.cout for p in plan] == WIDTHS
    assert plan[0].cin == 24 and plan[0].first and not any(p.first for p in plan[1:])
    assert [p.in_hw for p in plan if p.stride == 2] == [(28, 28), (14, 14), (7, 7)]
    assert plan[-1].out_hw == (4, 4)


@pytest.mark.parametrize(
    ("name", "groups"), [("shufflenet_g1", 1), ("shufflenet_g3", 3), ("shufflenet_g8", 8)]
)
def test_manual_architectures_use_one_group_count(name: str, groups: int) -> None:
    space = get_space("shufflenet")
    g = space.manual()[name]
    assert space.parse(name) == g and len(g) == 16
    model = space.build(g)
    for i, unit in enumerate(model.layers):
        pw1, pw2 = unit.pw1[0], unit.pw2[0]
        assert pw2.groups == groups
        assert pw1.groups == (1 if i == 0 else groups)  # stem-fed unit stays ungrouped
        assert len(unit.dw) == 1 and unit.dw[0][0].dilation == (1, 1)
    assert {d.op.split()[0] for d in space.describe(g)[2:-1]} == {f"shuffle_g{groups}"}


def test_first_pointwise_group_rule() -> None:
    assert pw1_groups(24, 24, 8, first=True) == 1
    assert pw1_groups(96, 24, 8, first=False) == 8
    assert pw1_groups(20, 24, 3, first=False) == 1  # 3 does not divide 20 input channels
    assert pw1_groups(24, 20, 8, first=False) == 1  # ... nor 8 the 20 bottleneck channels


def test_params_fall_with_group_count() -> None:
    space = get_space("shufflenet")
    params = [sum(p.numel() for p in space.build((k,) * 16).parameters()) for k in range(5)]
    assert params == sorted(params, reverse=True) and len(set(params)) == 5


def test_multiscale_units_split_bottleneck_across_dilations() -> None:
    plan = get_space("shufflenet").plan()[5]  # stage 2, stride 1, 192 channels
    for op in OPS[5:]:
        unit = ShuffleUnit(op, plan)
        dws = [branch[0] for branch in unit.dw]
        assert [c.dilation[0] for c in dws] == list(op.dilations)
        assert sum(c.in_channels for c in dws) == 48 and len({c.in_channels for c in dws}) == 1
        assert all(c.groups == c.in_channels for c in dws)  # depthwise


def test_dilated_unit_sees_farther_than_plain_unit() -> None:
    """A pixel 4 px away reaches the centre through dilation 4 only (one stride-1 unit)."""
    plan = get_space("shufflenet").plan()[1]  # 96 -> 96, stride 1
    torch.manual_seed(0)
    x = torch.rand(1, 96, 11, 11)
    far = x.clone()
    far[0, :, 5, 9] += 1.0
    for op, reaches in [(OPS[3], False), (OPS[7], True)]:
        unit = ShuffleUnit(op, plan).eval()
        _randomise_bn(unit)
        with torch.no_grad():
            delta = (unit(far) - unit(x))[0, :, 5, 5].abs().max().item()
        assert (delta > 1e-4) == reaches, op.label


def test_stride2_unit_concatenates_avgpool_shortcut() -> None:
    plan = get_space("shufflenet").plan()[4]  # 96 -> 192, stride 2
    unit = ShuffleUnit(OPS[6], plan).eval()
    x = torch.rand(2, 96, 14, 14)
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, 192, 7, 7)
    expected = nn.functional.avg_pool2d(x, 3, 2, 1)
    assert torch.allclose(y[:, :96], expected, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "x".join(map(str, s.shape)))
def test_describe_matches_real_shapes(spec: InputSpec) -> None:
    space = get_space("shufflenet", spec)
    g = space.sample(np.random.default_rng(1))
    model = space.build(g).eval()
    shapes = []
    x = torch.rand(1, *spec.shape)
    with torch.no_grad():
        x = model.stem(x)
        shapes.append(tuple(x.shape[1:]))
        for unit in model.layers:
            x = unit(x)
            shapes.append(tuple(x.shape[1:]))
        shapes.append((model.head(x).shape[1], 1, 1))
    rows = space.describe(g)
    assert [r.out_shape for r in rows] == shapes
    assert rows[0].name == "stem" and rows[-1].name == "head"
    assert shapes[-1][0] == spec.num_classes


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: "x".join(map(str, s.shape)))
def test_blocks_compose_to_build(spec: InputSpec) -> None:
    space = get_space("shufflenet", spec)
    g = space.sample(np.random.default_rng(2))
    torch.manual_seed(3)
    model = space.build(g).eval()
    _randomise_bn(model)
    torch.manual_seed(3)
    blocks = space.blocks(g)
    _randomise_bn(nn.ModuleList(b.module for b in blocks))  # same order -> same statistics
    assert len(blocks) == 18
    x = torch.rand(1, *spec.shape)
    with torch.no_grad():
        y = x
        for b in blocks:
            assert tuple(y.shape[1:]) == b.in_shape and not b.module.training
            y = b.module(y)
        assert torch.allclose(y, model(x), atol=1e-5)


def test_block_keys_equal_iff_blocks_equal() -> None:
    space = get_space("shufflenet")
    a = space.blocks((2,) * 16)
    b = space.blocks((2,) * 8 + (7,) * 8)
    assert a[0].key == "stem_conv3x3:1x28x28->24:s1"
    assert a[1].key == "shuffle_g3_pw1g1:24x28x28->96:s2"
    assert space.blocks((0,) * 16)[1].key == "shuffle_g1:24x28x28->96:s2"
    assert a[6].key == a[7].key == b[6].key == "shuffle_g3:192x7x7->192:s1"
    assert a[9].key != b[9].key and b[9].key == "msdil_d124_g4:192x7x7->192:s1"
    assert a[-1].key == "head_gap_fc:384x4x4->10"
    keys = {blk.key for blk in a[2:5]}
    assert len(keys) == 1


def test_supernet_extract_matches_build() -> None:
    space = get_space("shufflenet")
    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    sn = space.supernet()
    with torch.no_grad():  # a train-mode pass moves BN statistics, then randomise them all
        sn.train()(torch.randn(2, 1, 28, 28), space.sample(rng))
    _randomise_bn(sn)
    sn.eval()
    x = torch.randn(2, 1, 28, 28)
    for g in [space.sample(rng), space.manual()["shufflenet_g8"]]:
        model = space.build_from_supernet(sn, g)
        with torch.no_grad():
            assert (sn(x, g) - model(x)).abs().max().item() <= 1e-5
    assert len(sn.layers) == 16 and all(len(opts) == 8 for opts in sn.layers)


def test_invalid_genotype_is_a_user_error() -> None:
    space = get_space("shufflenet")
    with pytest.raises(UserError):
        space.build((0,) * 15)
    with pytest.raises(UserError):
        space.describe((8,) + (0,) * 15)


def test_onnx_export_matches_torch(tmp_path) -> None:
    space = get_space("shufflenet", InputSpec(3, 64, 64, 5))
    g = space.sample(np.random.default_rng(5))
    torch.manual_seed(5)
    model = space.build(g).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "shufflenet.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y_ort,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        y = model(x).numpy()
    assert y_ort.shape == (1, 5)
    np.testing.assert_allclose(y_ort, y, atol=1e-4)
