"""The CANAS ShuffleNet space: layout, width and depth, unit rules, shapes, weight sharing,
ONNX export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from factory.spaces import InputSpec, get_space
from factory.spaces.elastic import channel_shuffle
from factory.spaces.ops import ChannelShuffle
from factory.spaces.shufflenet import (
    OPS,
    SKIP_INDEX,
    STAGE_WIDTHS,
    WIDTH_MULTIPLIERS,
    ShuffleNetSpace,
    ShuffleUnit,
    pw1_groups,
)
from profilers.flops import count_costs
from targets.errors import UserError

SPECS = [InputSpec(), InputSpec(3, 32, 32, 10), InputSpec(3, 64, 64, 5)]
STRIDES = [2, 1, 1, 1] + [2] + [1] * 7 + [2, 1, 1, 1]
WIDTHS = [96] * 4 + [192] * 8 + [384] * 4
STAGE_FIRST = (0, 4, 12)  # layers that can not be skipped
W1 = WIDTH_MULTIPLIERS.index(1.0)


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


def _g(width: float, *layers: int) -> tuple[int, ...]:
    """A genotype from a width multiplier and 16 layer choices."""
    assert len(layers) == 16
    return (WIDTH_MULTIPLIERS.index(width), *layers)


def _costs(space: ShuffleNetSpace, g: tuple[int, ...]) -> tuple[int, int]:
    report = count_costs(space.build(g), (1, *space.spec.shape))
    assert report.complete
    return report.macs, report.params


def test_registered_with_a_width_and_16_layers() -> None:
    space = get_space("shufflenet")
    assert isinstance(space, ShuffleNetSpace) and space.widths == "small"
    skippable = tuple(8 if i in STAGE_FIRST else 9 for i in range(16))
    assert space.choices() == (3, *skippable)
    decisions = space.decisions()
    assert decisions[0].name == "width" and decisions[0].options == ("w0.5", "w0.75", "w1")
    labels = decisions[1].options
    assert labels[:5] == tuple(f"shuffle_g{k}" for k in (1, 2, 3, 4, 8))
    assert len(set(labels)) == 8 and decisions[2].options == (*labels, "skip")
    assert SKIP_INDEX == 8 and ShuffleNetSpace.options == {"widths": ("small", "paper")}


def test_plan_follows_shufflenet_v1_layout() -> None:
    plan = get_space("shufflenet").plan()
    assert [p.stride for p in plan] == STRIDES
    assert [p.cout for p in plan] == WIDTHS
    assert [p.mid for p in plan] == [c // 4 for c in WIDTHS]  # ShuffleNetV1's at width 1
    assert plan[0].cin == 24 and plan[0].first and not any(p.first for p in plan[1:])
    assert [p.in_hw for p in plan if p.stride == 2] == [(28, 28), (14, 14), (7, 7)]
    assert plan[-1].out_hw == (4, 4)


def test_width_multiplier_rounds_to_multiples_of_24() -> None:
    space = get_space("shufflenet")
    stages = {w: [p.cout for p in space.plan(w) if p.stride == 2] for w in WIDTH_MULTIPLIERS}
    assert stages == {0.5: [48, 96, 192], 0.75: [72, 144, 288], 1.0: [96, 192, 384]}
    # bottleneck: cout / 4 rounded up to a multiple of 24
    assert [p.mid for p in space.plan(0.5) if p.stride == 2] == [24, 24, 48]
    assert [p.mid for p in space.plan(0.75) if p.stride == 2] == [24, 48, 72]
    assert all(p.cin == 24 for p in (space.plan(w)[0] for w in WIDTH_MULTIPLIERS))  # stem


@pytest.mark.parametrize("widths", list(STAGE_WIDTHS))
def test_every_group_count_divides_at_every_width(widths: str) -> None:
    """Multiples of 24 everywhere, and the rules the supernet's slicing relies on."""
    space = ShuffleNetSpace(widths=widths)
    full = space.plan()
    for w in WIDTH_MULTIPLIERS:
        for p, big in zip(space.plan(w), full, strict=True):
            assert p.cout % 24 == p.mid % 24 == p.branch_out % 24 == 0 and p.branch_out > 0
            assert p.mid <= big.mid and p.branch_out <= big.branch_out and p.cin <= big.cin
            for op in OPS:
                assert p.mid % len(op.dilations) == 0
                assert pw1_groups(p.cin, p.mid, op.groups, p.first) == pw1_groups(
                    big.cin, big.mid, op.groups, big.first
                )
                assert pw1_groups(p.cin, p.mid, op.groups, p.first) in (1, op.groups)


@pytest.mark.parametrize(
    ("name", "groups", "width"),
    [
        ("shufflenet_g1", 1, 1.0),
        ("shufflenet_g3", 3, 1.0),
        ("shufflenet_g8", 8, 1.0),
        ("shufflenet_g3@0.5", 3, 0.5),
    ],
)
def test_manual_architectures_use_one_group_count(name: str, groups: int, width: float) -> None:
    space = get_space("shufflenet")
    g = space.manual()[name]
    assert space.parse(name) == g and len(g) == 17
    assert space.decode(g).width == width and SKIP_INDEX not in g
    model = space.build(g)
    assert len(model.layers) == 16
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
    params = [_costs(space, _g(1.0, *(k,) * 16))[1] for k in range(5)]
    assert params == sorted(params, reverse=True) and len(set(params)) == 5


def test_macs_and_params_fall_with_width() -> None:
    space = get_space("shufflenet")
    body = space.sample(np.random.default_rng(6))[1:]
    costs = [_costs(space, _g(w, *body)) for w in WIDTH_MULTIPLIERS]
    assert costs[0][0] < costs[1][0] < costs[2][0] and costs[0][1] < costs[1][1] < costs[2][1]


def test_skip_removes_a_unit() -> None:
    space = get_space("shufflenet")
    full = space.manual()["shufflenet_g3"]
    skipped = (*full[:3], SKIP_INDEX, *full[4:])  # layer2, stage 1's third unit
    model = space.build(skipped)
    assert len(model.layers) == 15
    assert [r.name for r in space.describe(skipped)][1:5] == [
        "layer0",
        "layer1",
        "layer3",
        "layer4",
    ]
    assert len(space.blocks(skipped)) == len(space.blocks(full)) - 1
    macs, params = _costs(space, skipped)
    full_macs, full_params = _costs(space, full)
    assert macs < full_macs and params < full_params
    x = torch.rand(1, 1, 28, 28)
    assert model.eval()(x).shape == (1, 10)
    shallowest = _g(1.0, *(SKIP_INDEX if space.plan()[i].skippable else 2 for i in range(16)))
    assert len(space.build(shallowest).layers) == 3


def test_canonical_moves_skips_to_the_end_of_a_stage() -> None:
    space = get_space("shufflenet")
    a = _g(0.5, 1, 8, 5, 6, 2, *(3,) * 6, 8, 7, 4, 8, 8)
    b = _g(0.5, 1, 5, 6, 8, 2, *(3,) * 6, 8, 7, 4, 8, 8)
    c = _g(0.5, 1, 5, 6, 8, 2, 8, *(3,) * 6, 7, 4, 8, 8)
    assert space.canonical(a) == space.canonical(c) == b == space.canonical(b)
    assert space.arch_id(a) == space.arch_id(b) == space.arch_id(c)
    assert space.arch_id(b) != space.arch_id(_g(0.75, *b[1:]))
    assert space.arch_id(b) != space.arch_id(_g(0.5, 1, 6, 5, 8, *b[5:]))  # order of kept units
    assert space.canonical(space.manual()["shufflenet_g8"]) == space.manual()["shufflenet_g8"]


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


@pytest.mark.parametrize(("width", "cin", "cout"), [(1.0, 96, 192), (0.5, 48, 96)])
def test_stride2_unit_concatenates_avgpool_shortcut(width: float, cin: int, cout: int) -> None:
    plan = get_space("shufflenet").plan(width)[4]  # stage 2's first unit, stride 2
    unit = ShuffleUnit(OPS[6], plan).eval()
    assert unit.pw2[0].out_channels == cout - cin
    x = torch.rand(2, cin, 14, 14)
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, cout, 7, 7)
    expected = nn.functional.avg_pool2d(x, 3, 2, 1)
    assert torch.allclose(y[:, :cin], expected, atol=1e-6)


def test_channel_shuffle_follows_the_input_channels() -> None:
    x = torch.arange(2 * 24 * 4, dtype=torch.float32).reshape(1, 48, 2, 2)
    assert torch.equal(channel_shuffle(x, 3), ChannelShuffle(48, 3)(x))
    assert torch.equal(channel_shuffle(x[:, :24], 8), ChannelShuffle(24, 8)(x[:, :24]))
    assert torch.equal(channel_shuffle(x, 1), x)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "x".join(map(str, s.shape)))
def test_describe_matches_real_shapes(spec: InputSpec) -> None:
    space = get_space("shufflenet", spec)
    g = space.sample(np.random.default_rng(1))
    assert SKIP_INDEX in g and g[0] != W1  # a narrower width, with skips
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
    assert len(blocks) == 2 + len(model.layers) == 2 + 16 - g.count(SKIP_INDEX)
    x = torch.rand(1, *spec.shape)
    with torch.no_grad():
        y = x
        for b in blocks:
            assert tuple(y.shape[1:]) == b.in_shape and not b.module.training
            y = b.module(y)
        assert torch.allclose(y, model(x), atol=1e-5)


def test_block_keys_equal_iff_blocks_equal() -> None:
    space = get_space("shufflenet")
    a = space.blocks(_g(1.0, *(2,) * 16))
    b = space.blocks(_g(1.0, *(2,) * 8 + (7,) * 8))
    assert a[0].key == "stem_conv3x3:1x28x28->24:s1"
    assert a[1].key == "shuffle_g3_pw1g1:24x28x28->96:s2"
    assert space.blocks(_g(1.0, *(0,) * 16))[1].key == "shuffle_g1:24x28x28->96:s2"
    assert a[6].key == a[7].key == b[6].key == "shuffle_g3:192x7x7->192:s1"
    assert a[9].key != b[9].key and b[9].key == "msdil_d124_g4:192x7x7->192:s1"
    assert a[-1].key == "head_gap_fc:384x4x4->10"
    assert len({blk.key for blk in a[2:5]}) == 1
    half = space.blocks(space.manual()["shufflenet_g3@0.5"])
    assert half[0].key == a[0].key  # the stem does not scale
    assert half[1].key == "shuffle_g3_pw1g1:24x28x28->48:s2"
    assert half[6].key == "shuffle_g3:96x7x7->96:s1" and half[-1].key == "head_gap_fc:192x4x4->10"
    assert not {blk.key for blk in half[1:]} & {blk.key for blk in a[1:]}


def _supernet(space: ShuffleNetSpace, seed: int) -> nn.Module:
    """A supernet after one train-mode pass at a narrow width, then random BN everywhere."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sn = space.supernet()
    with torch.no_grad():
        sn.train()(torch.randn(2, *space.spec.shape), _g(0.5, *space.sample(rng)[1:]))
    _randomise_bn(sn, seed)
    return sn.eval()


@pytest.mark.parametrize("width", WIDTH_MULTIPLIERS)
def test_supernet_extract_matches_build_at_every_width(width: float) -> None:
    space = get_space("shufflenet")
    rng = np.random.default_rng(4)
    sn = _supernet(space, 4)
    x = torch.randn(2, 1, 28, 28)
    genotypes = [_g(width, *space.sample(rng)[1:]) for _ in range(3)]
    genotypes.append(_g(width, *space.manual()["shufflenet_g8"][1:]))
    assert any(SKIP_INDEX in g for g in genotypes)
    for g in genotypes:
        model = space.build_from_supernet(sn, g)
        with torch.no_grad():
            assert (sn(x, g) - model(x)).abs().max().item() <= 1e-5, space.format(g)
    assert len(sn.layers) == 16 and all(len(opts) == 8 for opts in sn.layers)


def test_narrow_training_pass_moves_only_the_leading_bn_statistics() -> None:
    space = get_space("shufflenet")
    sn = space.supernet().train()
    g = space.manual()["shufflenet_g3@0.5"]
    with torch.no_grad():
        sn(torch.randn(4, 1, 28, 28) + 1.0, g)
    bn = sn.layers[15][2].pw2[1]  # last unit's branch output: 192 of 384 channels used
    assert (bn.running_var[:192] != 1).all() and (bn.running_var[192:] == 1).all()
    assert bn.num_batches_tracked == 1


def test_paper_widths_build_and_share_weights() -> None:
    space = ShuffleNetSpace(widths="paper")
    assert [p.cout for p in space.plan() if p.stride == 2] == [288, 576, 1152]
    assert [p.mid for p in space.plan() if p.stride == 2] == [72, 144, 288]
    assert [p.cout for p in space.plan(0.5) if p.stride == 2] == [144, 288, 576]
    g = space.manual()["shufflenet_g3"]
    small = get_space("shufflenet")
    assert _costs(space, g)[0] > 5 * _costs(small, g)[0]
    assert space.arch_id(g) != small.arch_id(g)  # same genotype, another network
    assert space.blocks(g)[1].key == "shuffle_g3_pw1g1:24x28x28->288:s2"
    rng = np.random.default_rng(8)
    sn = _supernet(space, 8)
    x = torch.randn(2, 1, 28, 28)
    for w in WIDTH_MULTIPLIERS:
        g = _g(w, *space.sample(rng)[1:])
        with torch.no_grad():
            diff = (sn(x, g) - space.build_from_supernet(sn, g)(x)).abs().max().item()
        assert diff <= 1e-5, space.format(g)


def test_bad_widths_option_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown shufflenet widths 'huge'; valid: small, paper"):
        ShuffleNetSpace(widths="huge")


def test_invalid_genotype_is_a_user_error() -> None:
    space = get_space("shufflenet")
    with pytest.raises(UserError, match="needs 17 choices, got 16"):
        space.build((0,) * 16)  # the layout before the width and skip decisions
    with pytest.raises(UserError, match=r"layer0 must be in 0\.\.7"):
        space.describe(_g(1.0, SKIP_INDEX, *(0,) * 15))  # a stage's first unit stays
    with pytest.raises(UserError, match=r"width must be in 0\.\.2"):
        space.build((3,) + (0,) * 16)


def test_onnx_export_matches_torch(tmp_path) -> None:
    space = get_space("shufflenet", InputSpec(3, 64, 64, 5))
    g = _g(0.75, *space.sample(np.random.default_rng(5))[1:])
    assert SKIP_INDEX in g
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
