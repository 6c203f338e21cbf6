"""VGG-Lite space: VGG-11 layout, pooling arithmetic, zero layers, channel-sliced supernet."""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from factory.spaces import SPACES, InputSpec, get_space
from factory.spaces.ops import out_size
from factory.spaces.vgg import ACTS, FILTERS, OPS, POOLS, VGG11_WIDTHS, VGGSpace, make_pool
from targets.errors import UserError

POOL_NAMES = tuple(POOLS)


def layer(op: str, filters: int, pool: str, act: str, width: int) -> tuple[int, int, int, int]:
    """The four genotype indices of one layer, given by name."""
    opts = [f for f in FILTERS if f <= width]
    return (OPS.index(op), opts.index(filters), POOL_NAMES.index(pool), ACTS.index(act))


def genotype(*layers: tuple[str, int, str, str]) -> tuple[int, ...]:
    return tuple(
        x
        for spec, width in zip(layers, VGG11_WIDTHS, strict=True)
        for x in layer(*spec, width=width)
    )


# every op, pool and activation once; at 28 px: 28-14-7-4-2-1-1-1-1 with ceil pools
MIXED = genotype(
    ("sep5x5", 32, "avg3x3", "sigmoid"),
    ("conv1x1", 64, "avg2x2", "none"),
    ("sep3x3", 64, "avg2x2", "relu"),  # 7 -> 4: avg window overhangs
    ("zero", 8, "max3x3", "sigmoid"),
    ("conv3x3", 128, "max5x5", "relu"),
    ("sep3x3", 256, "max2x2", "relu"),
    ("zero", 16, "none", "relu"),
    ("conv3x3", 64, "none", "sigmoid"),
)


@pytest.fixture(scope="module")
def space() -> VGGSpace:
    return get_space("vgg")


@pytest.fixture(scope="module")
def trained_supernet(space: VGGSpace) -> nn.Module:
    """A supernet whose BN stats and affine params are all randomised (non-trivial check)."""
    torch.manual_seed(0)
    sn = space.supernet()
    gen = torch.Generator().manual_seed(1)
    for m in sn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    sn.train()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(3):
            sn(torch.randn(4, 1, 28, 28), space.sample(rng))
    return sn.eval()


def macs(model: nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    logging.disable(logging.WARNING)
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, *shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return dict(analysis.by_operator())


def test_registered_and_decisions(space: VGGSpace) -> None:
    assert SPACES.get("vgg") is VGGSpace and SPACES.get("vgg-lite") is VGGSpace
    names = [d.name for d in space.decisions()]
    assert len(names) == 32
    assert names[:4] == ["layer1_op", "layer1_filters", "layer1_pool", "layer1_act"]
    choices = space.choices()
    assert choices[0::4] == (5,) * 8 and choices[2::4] == (6,) * 8 and choices[3::4] == (3,) * 8
    assert choices[1::4] == (4, 5, 6, 6, 7, 7, 7, 7)  # capped at VGG-11's widths
    assert space.decisions()[1].options == ("8", "16", "32", "64")


def test_vgg11_layout_and_closed_form_costs(space: VGGSpace) -> None:
    g = space.manual()["vgg11"]
    model = space.build(g)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(VGG11_WIDTHS)
    assert all(c.kernel_size == (3, 3) for c in convs)
    pools = [i + 1 for i, lay in enumerate(model.layers) if isinstance(lay.pool, nn.MaxPool2d)]
    assert pools == [1, 2, 4, 6, 8]
    assert all(isinstance(lay.op[2], nn.ReLU) for lay in model.layers)
    shapes = [row.out_shape for row in space.describe(g)]
    assert shapes[1:9] == [
        (64, 14, 14), (128, 7, 7), (256, 7, 7), (256, 4, 4),
        (512, 4, 4), (512, 2, 2), (512, 2, 2), (512, 1, 1),
    ]  # fmt: skip
    cins, sides = (1, *VGG11_WIDTHS[:-1]), (28, 14, 7, 7, 4, 4, 2, 2)
    conv_macs = sum(
        9 * ci * co * s * s for ci, co, s in zip(cins, VGG11_WIDTHS, sides, strict=True)
    )
    assert macs(model, (1, 28, 28))["conv"] == conv_macs  # ~133 M
    conv_params = sum(9 * ci * co + 2 * co for ci, co in zip(cins, VGG11_WIDTHS, strict=True))
    assert sum(p.numel() for p in model.parameters()) == conv_params + 512 * 10 + 10
    lite = space.build(space.manual()["vgg11_lite"])
    lite_convs = [m.out_channels for m in lite.modules() if isinstance(m, nn.Conv2d)]
    assert lite_convs == [w // 4 for w in VGG11_WIDTHS]


@pytest.mark.parametrize("name", POOL_NAMES)
def test_pooling_halves_with_ceil(name: str) -> None:
    pool = make_pool(name)
    for side in range(1, 10):
        out = pool(torch.randn(1, 2, side, side)).shape[-1]
        assert out == (side if name == "none" else out_size(side, 2))


def test_zero_layer_passes_channels_and_only_pools(space: VGGSpace) -> None:
    g = genotype(
        ("conv3x3", 32, "none", "relu"),
        ("zero", 128, "none", "sigmoid"),
        ("zero", 8, "max2x2", "relu"),
        ("conv1x1", 16, "none", "relu"),
        *[("zero", 8, "none", "relu")] * 4,
    )
    model = space.build(g).eval()
    assert isinstance(model.layers[1].op, nn.Identity)
    assert model.layers[3].op[0].in_channels == 32  # from layer 1, skipping the zeros
    x = torch.randn(1, 32, 28, 28)
    assert torch.equal(model.layers[1](x), x)
    assert model.layers[2](x).shape == (1, 32, 14, 14)
    assert model.head.fc.in_features == 16
    all_zero = genotype(*[("zero", 8, "avg2x2", "relu")] * 8)
    assert space.build(all_zero)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_canonical_merges_ignored_decisions(space: VGGSpace, trained_supernet) -> None:
    a = genotype(*[("zero", 8, "max2x2", "relu")] * 2, *[("conv1x1", 32, "none", "relu")] * 6)
    b = genotype(*[("zero", 64, "max2x2", "sigmoid")] * 2, *[("conv1x1", 32, "none", "relu")] * 6)
    c = genotype(*[("zero", 8, "avg2x2", "relu")] * 2, *[("conv1x1", 32, "none", "relu")] * 6)
    assert a != b and space.canonical(a) == space.canonical(b) == a
    assert space.canonical(c) != space.canonical(a)  # pooling is not ignored
    assert space.canonical(MIXED)[12:16] == (OPS.index("zero"), 0, POOL_NAMES.index("max3x3"), 0)
    assert space.canonical(space.canonical(MIXED)) == space.canonical(MIXED)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ya = space.build_from_supernet(trained_supernet, a)(x)
        yb = space.build_from_supernet(trained_supernet, b)(x)
    assert torch.equal(ya, yb)


def test_supernet_matches_extracted_models(space: VGGSpace, trained_supernet) -> None:
    rng = np.random.default_rng(7)
    gs = [*space.manual().values(), MIXED, *(space.sample(rng) for _ in range(4))]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        for g in gs:
            model = space.build_from_supernet(trained_supernet, g)
            diff = (trained_supernet(x, g) - model(x)).abs().max().item()
            assert diff <= 1e-5, space.format(g)


def test_supernet_updates_only_the_sliced_stats(space: VGGSpace) -> None:
    sn = space.supernet().train()
    g = genotype(("conv3x3", 16, "max2x2", "relu"), *[("zero", 8, "none", "relu")] * 7)
    bn = sn.layers[0].ops["conv3x3"][1]
    sn(torch.randn(4, 1, 28, 28), g)
    assert (bn.running_mean[:16] != 0).all() and (bn.running_mean[16:] == 0).all()
    assert (sn.layers[0].ops["conv1x1"][1].running_mean == 0).all()


def _recalibrate(bns: list[nn.BatchNorm2d], run, batches: list[torch.Tensor]) -> None:
    """Cumulative BN re-estimation (momentum=None), as the search does before evaluating."""
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for x in batches:
            run(x)
    for bn in bns:
        bn.eval()


def test_bn_recalibration_matches_standalone(space: VGGSpace, trained_supernet) -> None:
    sn = copy.deepcopy(trained_supernet)
    batches = [torch.randn(4, 1, 28, 28) for _ in range(3)]
    for g in (MIXED, space.manual()["vgg11_lite"]):
        model = space.build_from_supernet(sn, g)
        _recalibrate([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)], model, batches)
        sn_bns = [m for m in sn.modules() if isinstance(m, nn.BatchNorm2d)]
        _recalibrate(sn_bns, lambda x, g=g: sn(x, g), batches)
        with torch.no_grad():
            x = torch.randn(2, 1, 28, 28)
            assert (sn(x, g) - model(x)).abs().max().item() <= 1e-5


def test_blocks_compose_and_describe_shapes(space: VGGSpace) -> None:
    rng = np.random.default_rng(3)
    for g in (MIXED, space.manual()["vgg11_lite"], space.sample(rng)):
        torch.manual_seed(5)
        model = space.build(g).eval()
        torch.manual_seed(5)  # blocks(g) cuts one build(g): same seed, same weights
        blocks, rows = space.blocks(g), space.describe(g)
        assert len(blocks) == len(rows) == 10
        x = torch.randn(1, 1, 28, 28)
        y = x
        with torch.no_grad():
            for block, row in zip(blocks, rows, strict=True):
                assert tuple(y.shape[1:]) == block.in_shape
                y = block.module(y)
                assert tuple(y.reshape(1, *row.out_shape).shape[1:]) == row.out_shape
            assert torch.equal(y, model(x))


def test_block_keys_identify_configs(space: VGGSpace) -> None:
    keys = [b.key for b in space.blocks(space.manual()["vgg11"])]
    assert keys[1] == "conv3x3_relu_max2x2:1x28x28->64"
    assert keys[7] != keys[8]  # same op, different pooling
    same = [b.key for b in space.blocks(MIXED)]
    assert same == [b.key for b in space.blocks(space.canonical(MIXED))]
    assert same[4] == "zero_max3x3:64x4x4->64"
    assert len(set(keys[1:9])) == 8


@pytest.mark.parametrize(
    ("spec", "stem_side"), [(InputSpec(3, 32, 32, 10), 32), (InputSpec(3, 64, 64, 5), 32)]
)
def test_other_input_specs(spec: InputSpec, stem_side: int) -> None:
    space = get_space("vgg", spec)
    sn = space.supernet().eval()
    for g in (space.manual()["vgg11_lite"], MIXED):
        rows = space.describe(g)
        assert rows[0].out_shape[1:] == (stem_side, stem_side)
        x = torch.randn(2, *spec.shape)
        with torch.no_grad():
            model = space.build_from_supernet(sn, g)
            y = model(x)
            assert (sn(x, g) - y).abs().max().item() <= 1e-5
        assert y.shape == (2, spec.num_classes)
        assert [b.in_shape for b in space.blocks(g)][-1] == rows[-2].out_shape


def test_onnx_export_matches_torch(space: VGGSpace, trained_supernet) -> None:
    model = space.build_from_supernet(trained_supernet, MIXED)
    x = torch.randn(2, 1, 28, 28)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, opset_version=17, dynamo=False, input_names=["x"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4


def test_bad_genotypes_raise(space: VGGSpace) -> None:
    with pytest.raises(UserError, match="32 choices"):
        space.build((0,) * 31)
    with pytest.raises(UserError, match="layer1_filters"):
        space.validate((0, 4) + (0,) * 30)  # layer 1 has 4 filter options
    assert space.parse("vgg11") == space.manual()["vgg11"]
    assert space.parse(space.format(MIXED)) == MIXED
