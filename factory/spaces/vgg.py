"""VGG-Lite: a chain space whose starting point is VGG-11 (Bao et al., J. BJUT 2021).

Eight searchable layers sit at VGG-11's conv positions. Each layer makes four decisions, in
this genotype order: op, filters (capped at VGG-11's width there), pooling, activation.
A layer is op (conv/BN) -> activation -> pooling. The op 'zero' removes the layer: channels
pass through and only its pooling still applies, so its filters and activation are ignored
(`canonical` zeroes them, giving one genotype per distinct network).

Our choices where the paper is silent:
- Stem: none up to 32 px (layer 1 takes the image); above, a strided conv-BN-ReLU with
  `stem_stride(spec)` brings the input near 32 px so costs stay comparable.
- Head: global average pool + linear (`ClassifierHead`). VGG-11's two 4096-wide FC layers
  are dropped: at 1x28x28 they would hold ~19 M parameters (more than all convs), they
  were designed for 7x7x512 ImageNet features, and VGG-Lite's point is a light network.
- Separable convs apply the layer's activation after the depthwise conv as well, so 'none'
  really gives a linear layer.
- Every pooling halves the side with ceil rounding (7 -> 4, 1 -> 1): 2x2 pools use
  ceil_mode, odd kernels pad k//2 in floor mode (which already rounds up); average pools
  exclude padding from the divisor.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from factory.spaces.base import (
    Block,
    Decision,
    Genotype,
    InputSpec,
    LayerInfo,
    SearchSpace,
    Supernet,
)
from factory.spaces.ops import ClassifierHead, conv_bn, dims_key, out_size, stem_stride
from factory.spaces.registry import SPACES

# VGG-11 (configuration "A") conv widths; its 'M' max-pools follow layers 1, 2, 4, 6, 8.
VGG11_WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)
VGG11_POOL_AFTER = (1, 2, 4, 6, 8)
FILTERS = (8, 16, 32, 64, 128, 256, 512)
OPS = ("conv1x1", "conv3x3", "sep3x3", "sep5x5", "zero")
# name: (kind, kernel); all stride 2
POOLS = {
    "max2x2": ("max", 2),
    "avg2x2": ("avg", 2),
    "avg3x3": ("avg", 3),
    "max3x3": ("max", 3),
    "max5x5": ("max", 5),
    "none": ("none", 1),
}
ACTS = ("relu", "sigmoid", "none")
STEM_WIDTH = 32  # channels of the strided stem, used only above 32 px
_ACT_FN = {"relu": torch.relu, "sigmoid": torch.sigmoid, "none": lambda t: t}


@dataclass(frozen=True)
class LayerPlan:
    """One decoded layer with its channel counts (for 'zero': cout == cin, act 'none')."""

    op: str
    cin: int
    cout: int
    pool: str
    act: str

    def label(self) -> str:
        if self.op == "zero":
            return f"zero_{self.pool}"
        return f"{self.op}_{self.act}_{self.pool}"


def filter_options(width: int) -> tuple[int, ...]:
    """Filter counts a layer may choose: those in FILTERS not above its VGG-11 width."""
    return tuple(f for f in FILTERS if f <= width)


def _act(name: str) -> str | None:
    return None if name == "none" else name


def make_pool(name: str) -> nn.Module:
    """A stride-2 pooling whose output side is ceil(side / 2), or identity for 'none'."""
    kind, k = POOLS[name]
    if kind == "none":
        return nn.Identity()
    pad, ceil = (0, True) if k % 2 == 0 else (k // 2, False)
    if kind == "max":
        return nn.MaxPool2d(k, 2, pad, ceil_mode=ceil)
    return nn.AvgPool2d(k, 2, pad, ceil_mode=ceil, count_include_pad=False)


def make_op(op: str, cin: int, cout: int, act: str | None) -> nn.Sequential:
    """The op's conv-BN(-act) stack; the supernet builds the same at max width, act=None."""
    k = int(op[-1])
    if op.startswith("conv"):
        return conv_bn(cin, cout, k, act=act)
    return nn.Sequential(conv_bn(cin, cin, k, groups=cin, act=act), conv_bn(cin, cout, 1, act=act))


def _stem_config(spec: InputSpec) -> tuple[int, int]:
    """(stride, output channels) of the stem: identity up to 32 px, else a strided conv."""
    stride = stem_stride(spec)
    return stride, spec.channels if stride == 1 else STEM_WIDTH


def _make_stem(spec: InputSpec) -> nn.Module:
    stride, cout = _stem_config(spec)
    if stride == 1:
        return nn.Identity()
    return conv_bn(spec.channels, cout, stride + 1, stride=stride)


def _built_layer(layer: LayerPlan) -> nn.Sequential:
    """A standalone layer; its 'op' keys match the supernet's 'ops.<name>' keys."""
    op = (
        nn.Identity()
        if layer.op == "zero"
        else make_op(layer.op, layer.cin, layer.cout, _act(layer.act))
    )
    return nn.Sequential(OrderedDict(op=op, pool=make_pool(layer.pool)))


class VGGNet(nn.Module):
    """A standalone VGG-Lite network: stem -> 8 layers -> head."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem, self.layers, self.head = stem, nn.Sequential(*layers), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.head(self.layers(self.stem(x)))


def _sliced_conv_bn(block: nn.Sequential, x: torch.Tensor, cout: int) -> torch.Tensor:
    """A max-width conv-BN run on the first x.shape[1] inputs and first cout outputs."""
    conv, bn = block[0], block[1]
    cin = x.shape[1]
    if conv.groups > 1:  # depthwise: one filter per input channel
        weight, groups, cout = conv.weight[:cin], cin, cin
    else:
        weight, groups = conv.weight[:cout, :cin], 1
    y = F.conv2d(x, weight, None, 1, conv.padding, 1, groups)
    factor = 0.0
    if bn.training and bn.track_running_stats:  # as nn.BatchNorm2d, incl. momentum=None
        bn.num_batches_tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.item()
    # slices are views, so train-mode updates land in the shared running stats
    return F.batch_norm(
        y, bn.running_mean[:cout], bn.running_var[:cout], bn.weight[:cout], bn.bias[:cout],
        bn.training, factor, bn.eps,
    )  # fmt: skip


class _SuperLayer(nn.Module):
    """One searchable layer of the supernet: each op once, at the layer's max widths."""

    def __init__(self, cin_max: int, cout_max: int) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({op: make_op(op, cin_max, cout_max, None) for op in OPS[:-1]})
        self.pools = nn.ModuleDict({name: make_pool(name) for name in POOLS})

    def forward(self, x: torch.Tensor, layer: LayerPlan) -> torch.Tensor:
        if layer.op != "zero":
            act, block = _ACT_FN[layer.act], self.ops[layer.op]
            if layer.op.startswith("sep"):
                x = act(_sliced_conv_bn(block[0], x, layer.cin))
                block = block[1]
            x = act(_sliced_conv_bn(block, x, layer.cout))
        return self.pools[layer.pool](x)


class _VGGSupernet(Supernet):
    """Single-path supernet: OFA-style channel slicing of one module per op and layer."""

    def __init__(self, space: VGGSpace) -> None:
        super().__init__()
        self._plan = space.plan  # a bound method, not a module: nothing extra in state_dict
        self.stem, (_, stem_ch) = _make_stem(space.spec), _stem_config(space.spec)
        widest = [max((stem_ch, *VGG11_WIDTHS[:i])) for i in range(len(VGG11_WIDTHS) + 1)]
        self.layers = nn.ModuleList(_SuperLayer(widest[i], w) for i, w in enumerate(VGG11_WIDTHS))
        self.head = ClassifierHead(widest[-1], space.spec.num_classes)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        x = self.stem(x)
        for module, layer in zip(self.layers, self._plan(g), strict=True):
            x = module(x, layer)
        fc = self.head.fc
        x = self.head.dropout(x.mean((2, 3)))
        return F.linear(x, fc.weight[:, : x.shape[1]], fc.bias)


@SPACES.decorator("vgg", aliases=("vgg-lite",))
class VGGSpace(SearchSpace):
    """VGG-Lite chain space started from VGG-11; see the module docstring."""

    def decisions(self) -> tuple[Decision, ...]:
        out: list[Decision] = []
        for i, width in enumerate(VGG11_WIDTHS, start=1):
            out += [
                Decision(f"layer{i}_op", OPS),
                Decision(f"layer{i}_filters", tuple(str(f) for f in filter_options(width))),
                Decision(f"layer{i}_pool", tuple(POOLS)),
                Decision(f"layer{i}_act", ACTS),
            ]
        return tuple(out)

    def plan(self, g: Genotype) -> list[LayerPlan]:
        """g decoded into layers with the channels each one actually sees."""
        g = self.validate(g)
        _, cin = _stem_config(self.spec)
        layers = []
        for i, width in enumerate(VGG11_WIDTHS):
            op_i, f_i, pool_i, act_i = g[4 * i : 4 * i + 4]
            pool = tuple(POOLS)[pool_i]
            if OPS[op_i] == "zero":
                layers.append(LayerPlan("zero", cin, cin, pool, "none"))
                continue
            cout = filter_options(width)[f_i]
            layers.append(LayerPlan(OPS[op_i], cin, cout, pool, ACTS[act_i]))
            cin = cout
        return layers

    def canonical(self, g: Genotype) -> Genotype:
        """g with the ignored decisions of 'zero' layers set to 0: one genotype per network."""
        g = list(self.validate(g))
        for i in range(len(VGG11_WIDTHS)):
            if OPS[g[4 * i]] == "zero":
                g[4 * i + 1] = g[4 * i + 3] = 0
        return tuple(g)

    def build(self, g: Genotype) -> VGGNet:
        plan = self.plan(g)
        layers = [_built_layer(layer) for layer in plan]
        head = ClassifierHead(plan[-1].cout, self.spec.num_classes)
        return VGGNet(_make_stem(self.spec), layers, head)

    def supernet(self) -> Supernet:
        return _VGGSupernet(self)

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        """Each tensor of build(g) is the leading slice of the supernet tensor it maps to."""
        plan, source = self.plan(g), supernet.state_dict()
        with torch.device("meta"):  # shapes only, nothing allocated
            shapes = {k: v.shape for k, v in self.build(g).state_dict().items()}
        out = {}
        for key, shape in shapes.items():
            parts = key.split(".")
            if parts[0] == "layers" and parts[2] == "op":
                parts[2:3] = ["ops", plan[int(parts[1])].op]
            tensor = source[".".join(parts)]
            out[key] = tensor[tuple(slice(0, n) for n in shape)].detach().clone()
        return out

    def _shapes(self, g: Genotype) -> list[tuple[int, int, int]]:
        """Output shape (C, H, W) after the stem and after each layer."""
        stride, cin = _stem_config(self.spec)
        h, w = out_size(self.spec.height, stride), out_size(self.spec.width, stride)
        shapes = [(cin, h, w)]
        for layer in self.plan(g):
            if layer.pool != "none":
                h, w = out_size(h, 2), out_size(w, 2)
            shapes.append((layer.cout, h, w))
        return shapes

    def _stem_label(self) -> str:
        stride, cout = _stem_config(self.spec)
        return "identity" if stride == 1 else f"conv{stride + 1}x{stride + 1}_s{stride}_{cout}"

    def describe(self, g: Genotype) -> list[LayerInfo]:
        shapes = self._shapes(g)
        rows = [LayerInfo("stem", self._stem_label(), shapes[0])]
        for i, (layer, shape) in enumerate(zip(self.plan(g), shapes[1:], strict=True), 1):
            op = layer.label() if layer.op == "zero" else f"{layer.label()}_{layer.cout}"
            rows.append(LayerInfo(f"layer{i}", op, shape))
        rows.append(LayerInfo("head", "gap_fc", (self.spec.num_classes, 1, 1)))
        return rows

    def blocks(self, g: Genotype) -> list[Block]:
        """Stem, the 8 layers ('zero' ones too, so indices match), head: cut from one build(g)."""
        model, shapes = self.build(g).eval(), self._shapes(g)
        spec = self.spec
        stem_key = f"vgg_stem_{self._stem_label()}:{dims_key(spec.shape)}"
        out = [Block(stem_key, model.stem, spec.shape)]
        for layer, module, shape in zip(self.plan(g), model.layers, shapes[:-1], strict=True):
            out.append(Block(f"{layer.label()}:{dims_key(shape)}->{layer.cout}", module, shape))
        head_key = f"head_gap_fc:{dims_key(shapes[-1])}->{spec.num_classes}"
        out.append(Block(head_key, model.head, shapes[-1]))
        return out

    def manual(self) -> dict[str, Genotype]:
        """VGG-11 (conv3x3, ReLU, max-pool at its 'M' positions) and a quarter-width copy."""
        return {
            "vgg11": _vgg11_genotype(divisor=1),
            "vgg11_lite": _vgg11_genotype(divisor=4),
        }


def _vgg11_genotype(divisor: int) -> Genotype:
    """VGG-11's layout with every width divided by `divisor` (a power of two)."""
    g: list[int] = []
    for i, width in enumerate(VGG11_WIDTHS, start=1):
        pool = "max2x2" if i in VGG11_POOL_AFTER else "none"
        filters = filter_options(width).index(width // divisor)
        g += [OPS.index("conv3x3"), filters, tuple(POOLS).index(pool), ACTS.index("relu")]
    return tuple(g)
