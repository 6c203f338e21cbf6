"""The `mobilenet` space: layout, skip/residual rules, weight sharing, shapes, export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torchvision.models import mobilenet_v2

from factory.spaces import InputSpec, get_space
from factory.spaces.mobilenet import (
    MBCONV_OPS,
    InvertedResidual,
    MobileNetSpace,
    op_index,
)
from targets.errors import UserError

STAGE_FIRST = {0, 1, 3, 6, 10, 13, 16}  # first layer of each MobileNetV2 stage
STRIDE_2 = {1, 3, 6, 13}


@pytest.fixture(scope="module")
def space() -> MobileNetSpace:
    return get_space("mobilenet")


def _largest(space: MobileNetSpace) -> tuple[int, ...]:
    return tuple(op_index(7, 6, True) for _ in space.choices())


def _smallest(space: MobileNetSpace) -> tuple[int, ...]:
    return tuple(18 if c == 19 else 0 for c in space.choices())


def _macs(model: nn.Module, shape: tuple[int, int, int]) -> float:
    fa = FlopCountAnalysis(model.eval(), torch.zeros(1, *shape))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    return fa.total()


@pytest.fixture(scope="module")
def supernet(space: MobileNetSpace) -> nn.Module:
    """A supernet with non-default BN statistics everywhere, so extraction is really tested."""
    torch.manual_seed(0)
    sn = space.supernet().train()
    with torch.no_grad():
        sn(torch.randn(4, *space.spec.shape) * 2 + 0.5, space.manual()["mobilenet_v2"])
        for bn in (m for m in sn.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return sn.eval()


def test_decisions_are_the_option_grid_plus_skip_where_shape_keeps(space):
    decisions = space.decisions()
    assert len(decisions) == 17
    assert [len(d.options) for d in decisions] == [
        18 if i in STAGE_FIRST else 19 for i in range(17)
    ]
    assert len({op.label for op in MBCONV_OPS}) == 18
    for d in decisions:
        assert d.options[:18] == tuple(op.label for op in MBCONV_OPS)
        assert d.options[18:] in ((), ("skip",))
    assert decisions[4].options[op_index(5, 3, True)] == "mbconv_k5_e3_se"


def test_strides_and_widths_follow_mobilenet_v2(space):
    assert [s.stride for s in space.slots] == [2 if i in STRIDE_2 else 1 for i in range(17)]
    widths = [s.cout for s in space.slots]
    assert widths == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert [s.skippable for s in space.slots] == [i not in STAGE_FIRST for i in range(17)]


@pytest.mark.parametrize(
    ("spec", "stem_hw", "last_hw"),
    [
        (InputSpec(), 28, 2),
        (InputSpec(3, 32, 32, 10), 32, 2),
        (InputSpec(3, 64, 64, 5), 32, 2),
        (InputSpec(3, 40, 56, 4), 20, 2),
    ],
)
def test_shapes_for_each_input(spec, stem_hw, last_hw):
    space = get_space("mobilenet", spec)
    g = space.sample(np.random.default_rng(1))
    assert space.slots[0].in_shape[1] == stem_hw
    assert space.slots[-1].out_shape[1] == last_hw
    with torch.no_grad():
        out = space.build(g).eval()(torch.randn(2, *spec.shape))
    assert out.shape == (2, spec.num_classes)


def test_mobilenet_v2_matches_torchvision_body(space):
    g = space.manual()["mobilenet_v2"]
    assert [r.op.split("_s")[0] for r in space.describe(g)[1:-1]] == ["mbconv_k3_e1"] + [
        "mbconv_k3_e6"
    ] * 16
    ours = space.build(g).layers
    theirs = mobilenet_v2(num_classes=10).features[1:18]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert _macs(ours, (32, 28, 28)) == _macs(theirs, (32, 28, 28)) > 0


def test_mnasnet_a1_layout(space):
    ops = [r.op for r in space.describe(space.manual()["mnasnet_a1"])[1:-1]]
    assert ops[12] == "skip"
    assert ops[3].startswith("mbconv_k5_e3_se") and ops[13].startswith("mbconv_k5_e6_se")
    assert all("_se" not in op for op in ops[:3] + ops[6:10] + ops[16:])
    assert space.parse("mnasnet_a1") == space.manual()["mnasnet_a1"]


def test_layer_modules_follow_their_option(space):
    g = (0, 5, 18, 17, 18, 2, 4, 18, 1, 18, 16, 18, 18, 3, 18, 11, 4)
    net = space.build(g)
    for slot, choice, layer in zip(space.slots, g, net.layers, strict=True):
        if choice == 18:
            assert isinstance(layer, nn.Identity) and slot.skippable
            continue
        op = MBCONV_OPS[choice]
        convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
        dw = [c for c in convs if c.groups > 1]
        assert len(dw) == 1 and dw[0].kernel_size == (op.kernel, op.kernel)
        assert dw[0].stride == (slot.stride, slot.stride)
        assert dw[0].in_channels == slot.cin * op.expansion
        assert len(convs) == 2 + (op.expansion != 1) + 2 * op.se  # SE adds two 1x1s
        assert layer.residual == slot.skippable


def test_residual_is_added(space):
    block = InvertedResidual(24, 24, 1, MBCONV_OPS[op_index(5, 3)]).eval()
    nn.init.zeros_(block.body[-1][1].weight)  # last BN: body outputs its bias
    nn.init.constant_(block.body[-1][1].bias, 0.5)
    x = torch.randn(2, 24, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + 0.5)
    assert not InvertedResidual(24, 32, 1, MBCONV_OPS[0]).residual
    assert not InvertedResidual(24, 24, 2, MBCONV_OPS[0]).residual


def test_supernet_weights_give_the_same_network(space, supernet):
    sn, rng = supernet, np.random.default_rng(6)
    x = torch.randn(3, *space.spec.shape)
    for g in [space.manual()["mnasnet_a1"], _largest(space), space.sample(rng)]:
        sd = space.extract(sn, g)
        assert set(sd) == set(space.build(g).state_dict())
        model = space.build_from_supernet(sn, g)
        with torch.no_grad():
            diff = (sn(x, g) - model(x)).abs().max().item()
        assert diff <= 1e-5


def test_extract_rejects_a_bad_genotype(space, supernet):
    sn = supernet
    with pytest.raises(UserError, match=r"layer01 must be in 0\.\.17"):
        space.extract(sn, (18,) + (0,) * 16)
    with pytest.raises(UserError, match="needs 17 choices"):
        space.extract(sn, (0,) * 3)


def test_describe_matches_the_blocks_real_shapes(space):
    g = space.manual()["mnasnet_a1"]
    blocks, rows = space.blocks(g), space.describe(g)
    assert [r.name for r in rows] == ["stem", *(f"layer{i:02d}" for i in range(1, 18)), "head"]
    assert len(blocks) == len(rows)
    h = torch.randn(1, *space.spec.shape)
    with torch.no_grad():
        for block, row in zip(blocks[:-1], rows[:-1], strict=True):
            assert not block.module.training and tuple(h.shape[1:]) == block.in_shape
            h = block.module(h)
            assert tuple(h.shape[1:]) == row.out_shape
        assert tuple(h.shape[1:]) == blocks[-1].in_shape
        assert blocks[-1].module(h).shape == (1, 10)
    assert rows[-1].out_shape == (10, 1, 1)


def test_blocks_reproduce_the_built_network(space):
    g = space.sample(np.random.default_rng(3))
    chain = nn.Sequential(*(b.module for b in space.blocks(g)))
    model = space.build(g)
    model.load_state_dict(_sequential_to_net(chain.state_dict()), strict=True)
    x = torch.randn(2, *space.spec.shape)
    with torch.no_grad():
        torch.testing.assert_close(chain(x), model.eval()(x), atol=1e-5, rtol=0)


def _sequential_to_net(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """nn.Sequential(stem, *layers, head) keys -> MobileNetNet keys."""
    out = {}
    for k, v in sd.items():
        i, rest = k.split(".", 1)
        i = int(i)
        name = "stem" if i == 0 else "head" if i == 18 else f"layers.{i - 1}"
        out[f"{name}.{rest}"] = v
    return out


def test_block_keys_identify_config_and_shape(space):
    keys = [b.key for b in space.blocks(space.manual()["mobilenet_v2"])]
    assert keys[1] == "mbconv_k3_e1:32x28x28->16:s1"
    assert keys[2] == "mbconv_k3_e6:16x28x28->24:s2"
    assert keys[5] == keys[6] == "mbconv_k3_e6:32x7x7->32:s1"
    assert keys[3] == "mbconv_k3_e6:24x14x14->24:s1"  # same op as keys[5], other shape
    assert keys[0] == "stem_conv3x3_s1:1x28x28->32"
    assert keys[-1] == "head_conv1x1_640_fc10:320x2x2"
    skips = space.blocks(_smallest(space))
    assert skips[3].key == "skip:24x14x14" and isinstance(skips[3].module, nn.Identity)
    other = get_space("mobilenet", InputSpec(3, 64, 64, 5)).blocks(_smallest(space))
    assert other[0].key != skips[0].key and other[-1].key != skips[-1].key


def test_macs_stay_in_the_cpu_budget(space):
    shape = space.spec.shape
    largest = _macs(space.build(_largest(space)), shape)
    smallest = _macs(space.build(_smallest(space)), shape)
    v2 = _macs(space.build(space.manual()["mobilenet_v2"]), shape)
    assert smallest < 5e6 < v2 < 40e6 < largest < 150e6


def test_onnx_export_matches_torch(space, supernet, tmp_path):
    g = space.sample(np.random.default_rng(4))
    model = space.build_from_supernet(supernet, g)
    x = torch.randn(2, *space.spec.shape)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (x,), str(path), opset_version=17, dynamo=False,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
    )  # fmt: skip
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, model(x).numpy(), atol=1e-4, rtol=0)
