"""The `mobilenet` space: layout, width and depth, residual rules, weight sharing, export."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torchvision.models import mobilenet_v2

from factory.baselines import Baseline
from factory.spaces import InputSpec, get_space
from factory.spaces.mbconv import MBCONV_OPS, InvertedResidual, op_index
from factory.spaces.mobilenet import MobileNetSpace
from profilers.flops import count_costs
from targets.errors import UserError

STAGE_FIRST = {0, 1, 3, 6, 10, 13, 16}  # first layer of each MobileNetV2 stage
STRIDE_2 = {1, 3, 6, 13}
HEAD = 6  # width + five stage depths come before the 17 layer choices


@pytest.fixture(scope="module")
def space() -> MobileNetSpace:
    return get_space("mobilenet")


def _largest(space: MobileNetSpace) -> tuple[int, ...]:
    return (3, 1, 2, 3, 2, 2) + (op_index(7, 6, True),) * 17


def _smallest(space: MobileNetSpace) -> tuple[int, ...]:
    return (0,) * 6 + (op_index(3, 1),) * 17


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
        sn(torch.randn(4, *space.spec.shape) * 2 + 0.5, space.manual()["mobilenet_v2@1"])
        for bn in (m for m in sn.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return sn.eval()


def test_decisions_are_width_depths_then_the_option_grid(space):
    decisions = space.decisions()
    assert [d.name for d in decisions[:HEAD]] == [
        "width",
        *(f"stage{i}_depth" for i in (2, 3, 4, 5, 6)),
    ]
    assert decisions[0].options == ("w0.35", "w0.5", "w0.75", "w1")
    assert [len(d.options) for d in decisions[1:HEAD]] == [2, 3, 4, 3, 3]
    assert len(decisions) == HEAD + 17
    assert len({op.label for op in MBCONV_OPS}) == 18
    for d in decisions[HEAD:]:
        assert d.options == tuple(op.label for op in MBCONV_OPS)
    assert decisions[HEAD + 4].options[op_index(5, 3, True)] == "mbconv_k5_e3_se"


def test_strides_and_widths_follow_mobilenet_v2(space):
    assert [s.stride for s in space.slots] == [2 if i in STRIDE_2 else 1 for i in range(17)]
    widths = [s.cout for s in space.slots]
    assert widths == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert [s.residual for s in space.slots] == [i not in STAGE_FIRST for i in range(17)]
    # torchvision's rounding: 0.35 x 16 = 5.6 -> 8, 0.35 x 32 = 11.2 -> 16 (never 10 % down)
    assert [s.cout for s in space.slots_at(0.35)][:4] == [8, 8, 8, 16]
    assert space.slots_at(0.35)[0].cin == 16


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.0])
def test_mobilenet_v2_at_each_width_is_the_baseline_network(space, width):
    """The manual architecture and factory.baselines' torchvision network: same params, MACs."""
    ours = space.build(space.manual()[f"mobilenet_v2@{width:g}"])
    theirs = Baseline("mobilenet_v2", width).build(space.spec)
    shape = (1, *space.spec.shape)
    a, b = count_costs(ours, shape), count_costs(theirs, shape)
    assert a.params == b.params == count_parameters(theirs)
    assert a.macs == b.macs > 0 and not a.unsupported_ops and not b.unsupported_ops
    assert space.parse(f"mobilenet_v2@{width:g}") == space.manual()[f"mobilenet_v2@{width:g}"]


def test_mobilenet_v2_matches_torchvision_body(space):
    g = space.manual()["mobilenet_v2@1"]
    assert [r.op.split("_s")[0] for r in space.describe(g)[1:-1]] == ["mbconv_k3_e1"] + [
        "mbconv_k3_e6"
    ] * 16
    ours = space.build(g).layers
    theirs = mobilenet_v2(num_classes=10).features[1:18]
    assert count_parameters(ours) == count_parameters(theirs)
    assert _macs(ours, (32, 28, 28)) == _macs(theirs, (32, 28, 28)) > 0


def test_depth_keeps_the_first_layers_of_a_stage(space):
    full = space.manual()["mobilenet_v2@0.5"]
    shallow = (full[0], 0, 0, 0, 0, 0, *full[HEAD:])  # every elastic stage at depth 1
    rows = space.describe(shallow)[1:-1]
    assert [r.name for r in rows] == [f"layer{i + 1:02d}" for i in sorted(STAGE_FIRST)]
    assert len(space.build(shallow).layers) == 7
    assert _macs(space.build(shallow), space.spec.shape) < _macs(space.build(full), (1, 28, 28))


def test_choices_of_dropped_layers_do_not_change_the_architecture(space):
    g = list(space.manual()["mobilenet_v2@0.5"])
    g[1] = 0  # stage 2 keeps one layer: layer03's choice no longer matters
    other = list(g)
    other[HEAD + 2] = op_index(7, 3, True)
    assert space.arch_id(tuple(g)) == space.arch_id(tuple(other))
    assert space.canonical(tuple(other)) == space.canonical(tuple(g))
    other[HEAD + 1] = op_index(7, 3, True)  # layer02 is kept: a different network
    assert space.arch_id(tuple(g)) != space.arch_id(tuple(other))


def test_mnasnet_a1_layout(space):
    rows = space.describe(space.manual()["mnasnet_a1"])[1:-1]
    assert "layer13" not in [r.name for r in rows]  # A1's 5th stage has two layers
    ops = [r.op for r in rows]
    assert ops[3].startswith("mbconv_k5_e3_se") and ops[12].startswith("mbconv_k5_e6_se")
    assert all("_se" not in op for op in ops[:3] + ops[6:10] + ops[15:])
    assert space.parse("mnasnet_a1") == space.manual()["mnasnet_a1"]


def test_layer_modules_follow_their_option(space):
    rng = np.random.default_rng(2)
    g = space.sample(rng)
    arch = space.decode(g)
    net = space.build(g)
    slots = space.slots_at(arch.width)
    for (i, op), layer in zip(arch.layers, net.layers, strict=True):
        convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
        dw = [c for c in convs if c.groups > 1]
        assert len(dw) == 1 and dw[0].kernel_size == (op.kernel, op.kernel)
        assert dw[0].stride == (slots[i].stride, slots[i].stride)
        assert dw[0].in_channels == slots[i].cin * op.expansion
        assert len(convs) == 2 + (op.expansion != 1) + 2 * op.se  # SE adds two 1x1s
        assert layer.residual == slots[i].residual


def test_residual_is_added(space):
    block = InvertedResidual(24, 24, 1, MBCONV_OPS[op_index(5, 3)]).eval()
    nn.init.zeros_(block.body[-1][1].weight)  # last BN: body outputs its bias
    nn.init.constant_(block.body[-1][1].bias, 0.5)
    x = torch.randn(2, 24, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + 0.5)
        torch.testing.assert_close(
            block.forward_sliced(x[:, :16], 16, MBCONV_OPS[op_index(5, 3)]), x[:, :16] + 0.5
        )
    assert not InvertedResidual(24, 32, 1, MBCONV_OPS[0]).residual
    assert not InvertedResidual(24, 24, 2, MBCONV_OPS[0]).residual


@pytest.mark.parametrize("width", [0, 1, 2, 3])
def test_supernet_weights_give_the_same_network_at_every_width(space, supernet, width):
    sn, rng = supernet, np.random.default_rng(6 + width)
    x = torch.randn(3, *space.spec.shape)
    for g in [space.manual()["mnasnet_a1"], _largest(space), space.sample(rng)]:
        g = (width, *g[1:])
        sd = space.extract(sn, g)
        assert set(sd) == set(space.build(g).state_dict())
        model = space.build_from_supernet(sn, g)
        with torch.no_grad():
            diff = (sn(x, g) - model(x)).abs().max().item()
        assert diff <= 1e-5


def test_every_option_of_a_layer_trains_one_shared_block(space, supernet):
    assert len(supernet.layers) == 17
    block = supernet.layers[5]  # 32 -> 32 channels, stride 1, built as k7_e6_se
    assert block.roles == ("expand", "depthwise", "se", "project")
    assert block.body[1][0].kernel_size == (7, 7) and block.body[1][0].in_channels == 192
    g = list(space.manual()["mobilenet_v2@1"])
    g[HEAD + 5] = op_index(5, 1, True)  # layer06 as k5_e1_se: no expand conv, the 5x5 centre
    model = space.build_from_supernet(supernet, tuple(g))
    dw = model.layers[5].body[0][0].weight  # (32, 1, 5, 5)
    torch.testing.assert_close(dw, block.body[1][0].weight[:32, :, 1:6, 1:6])


def test_narrow_paths_train_the_leading_channels_of_the_shared_weights(space):
    torch.manual_seed(0)
    sn = space.supernet().train()
    g = space.manual()["mobilenet_v2@0.35"]
    sn(torch.randn(4, *space.spec.shape), g).sum().backward()
    stem_grad = sn.stem[0].weight.grad
    assert stem_grad[:16].abs().sum() > 0 and stem_grad[16:].abs().sum() == 0
    bn = sn.stem[1]
    assert bn.running_mean[:16].abs().sum() > 0 and bn.running_mean[16:].abs().sum() == 0


def test_extract_rejects_a_bad_genotype(space, supernet):
    sn = supernet
    with pytest.raises(UserError, match=r"width must be in 0\.\.3"):
        space.extract(sn, (4,) + (0,) * 22)
    with pytest.raises(UserError, match="needs 23 choices"):
        space.extract(sn, (0,) * 3)


def test_describe_matches_the_blocks_real_shapes(space):
    g = space.manual()["mnasnet_a1"]
    blocks, rows = space.blocks(g), space.describe(g)
    assert [r.name for r in rows] == [
        "stem",
        *(f"layer{i:02d}" for i in range(1, 18) if i != 13),
        "head",
    ]
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
    blocks = space.blocks(g)
    chain = nn.Sequential(*(b.module for b in blocks))
    model = space.build(g)
    model.load_state_dict(_sequential_to_net(chain.state_dict(), len(blocks) - 1), strict=True)
    x = torch.randn(2, *space.spec.shape)
    with torch.no_grad():
        torch.testing.assert_close(chain(x), model.eval()(x), atol=1e-5, rtol=0)


def _sequential_to_net(sd: dict[str, torch.Tensor], head: int) -> dict[str, torch.Tensor]:
    """nn.Sequential(stem, *layers, head) keys -> MobileNetNet keys."""
    out = {}
    for k, v in sd.items():
        i, rest = k.split(".", 1)
        i = int(i)
        name = "stem" if i == 0 else "head" if i == head else f"layers.{i - 1}"
        out[f"{name}.{rest}"] = v
    return out


def test_block_keys_identify_config_and_shape(space):
    keys = [b.key for b in space.blocks(space.manual()["mobilenet_v2@1"])]
    assert keys[1] == "mbconv_k3_e1:32x28x28->16:s1"
    assert keys[2] == "mbconv_k3_e6:16x28x28->24:s2"
    assert keys[5] == keys[6] == "mbconv_k3_e6:32x7x7->32:s1"
    assert keys[3] == "mbconv_k3_e6:24x14x14->24:s1"  # same op as keys[5], other shape
    assert keys[0] == "stem_conv3x3_s1:1x28x28->32"
    assert keys[-1] == "head_conv1x1_1280_fc10:320x2x2"
    narrow = [b.key for b in space.blocks(space.manual()["mobilenet_v2@0.5"])]
    assert narrow[0] == "stem_conv3x3_s1:1x28x28->16" and narrow[-1].endswith(":160x2x2")
    other = get_space("mobilenet", InputSpec(3, 64, 64, 5)).blocks(_smallest(space))
    smallest = space.blocks(_smallest(space))
    assert other[0].key != smallest[0].key and other[-1].key != smallest[-1].key


def test_macs_span_below_mobilenet_v3_small_to_above_mobilenet_v2(space):
    shape = space.spec.shape
    largest = _macs(space.build(_largest(space)), shape)
    smallest = _macs(space.build(_smallest(space)), shape)
    v3_small = _macs(Baseline("mobilenet_v3_small", 0.5).build(space.spec), shape)
    v2 = _macs(space.build(space.manual()["mobilenet_v2@1"]), shape)
    assert smallest < v3_small and smallest < 2e6 < v2 < 40e6 < largest < 150e6


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


def test_min_width_narrows_the_width_decision_and_keeps_ids(space):
    narrow = get_space("mobilenet", options={"min_width": "0.5"})
    assert narrow.decisions()[0].options == ("w0.5", "w0.75", "w1")
    assert "mobilenet_v2@0.35" not in narrow.manual()
    for name, g in narrow.manual().items():  # the same network, the same id, other indices
        full = space.manual()[name]
        assert narrow.arch_id(g) == space.arch_id(full)
        assert narrow.format(g) != space.format(full) or name == "mnasnet_a1"
        assert count_parameters(narrow.build(g)) == count_parameters(space.build(full))
    with pytest.raises(UserError, match="below this space's min_width"):
        narrow.encode(0.35, {}, [MBCONV_OPS[0]] * len(narrow.slots))


def test_min_width_search_region_still_reaches_below_mobilenet_v3_small(space):
    narrow = get_space("mobilenet", options={"min_width": "0.5"})
    shape = narrow.spec.shape
    smallest = _macs(narrow.build(narrow.extremes()[1]), shape)
    v3_small = _macs(Baseline("mobilenet_v3_small", 0.5).build(narrow.spec), shape)
    assert smallest < v3_small


def test_an_unknown_min_width_is_refused():
    with pytest.raises(UserError, match=re.escape("min_width='0.4'; valid: 0.35, 0.5, 0.75, 1")):
        get_space("mobilenet", options={"min_width": "0.4"})
