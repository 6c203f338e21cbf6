"""The `mobilenet` space: MBConv layers (MnasNet/ProxylessNAS style) on MobileNetV2's layout,
with an elastic width and elastic depth (Once-for-All style).

The frame is MobileNetV2's: a conv3x3 stem, seven stages (t, c, n, s below), a conv1x1 to
1280 channels and the classifier. Decisions, in genotype order:
- `width`: one multiplier for the whole network, {0.35, 0.5, 0.75, 1}; every width (stem,
  stages) is scaled and rounded as torchvision's MobileNetV2 does (`make_divisible`), the
  last conv keeps 1280 as there;
- `stageN_depth` for each stage of more than one layer: keep its first d layers (1..n);
- `layerNN` for each of the 17 layers: an inverted-residual block, kernel {3,5,7} x
  expansion {1,3,6} x squeeze-excite {off,on}. Choices of layers past a stage's depth do not
  change the network (`canonical` sets them to 0).

So MobileNetV2 at widths 0.35/0.5/0.75/1 are exact points of the space (same parameters and
MACs as `factory.baselines`' networks), and the space reaches well below MobileNetV3-Small@0.5
in cost. Squeeze-excite is MobileNetV3's (`ops.SqueezeExcite` on the expanded channels,
hard-sigmoid), where MnasNet uses a sigmoid and a quarter of the block's input width.

The supernet holds one block per layer at the largest option and width 1: every option and
width runs on slices of it (`factory.spaces.elastic`), as Once-for-All does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
from factory.spaces.elastic import (
    make_divisible,
    slice_state,
    sliced_conv_bn,
    sliced_se,
)
from factory.spaces.ops import (
    ClassifierHead,
    SqueezeExcite,
    conv_bn,
    dims_key,
    out_size,
    stem_stride,
    zero_init_last_bn,
)
from factory.spaces.registry import SPACES

STEM_CHANNELS = 32
LAST_CHANNELS = 1280  # as MobileNetV2 (it keeps 1280 at every width below 1)
ACT = "relu6"  # as MobileNetV2
WIDTHS = (0.35, 0.5, 0.75, 1.0)

# t, c, n, s  (MobileNetV2, Sandler et al. 2018, table 2: expansion, width, repeats, stride)
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
ELASTIC_STAGES = tuple(i for i, (_t, _c, n, _s) in enumerate(MOBILENET_V2_STAGES) if n > 1)

# The option grid of one layer; option index = (kernel, expansion, se) in this nested order.
KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 6)
SQUEEZE_EXCITE = (False, True)


@dataclass(frozen=True)
class MBConvOp:
    """One MBConv choice: depthwise kernel size, expansion ratio, squeeze-excite on/off."""

    kernel: int
    expansion: int
    se: bool

    @property
    def label(self) -> str:
        return f"mbconv_k{self.kernel}_e{self.expansion}" + ("_se" if self.se else "")


MBCONV_OPS: tuple[MBConvOp, ...] = tuple(
    MBConvOp(k, e, se) for k in KERNELS for e in EXPANSIONS for se in SQUEEZE_EXCITE
)


def op_index(kernel: int, expansion: int, se: bool = False) -> int:
    """The option index of an MBConv choice (the same in every layer)."""
    return MBCONV_OPS.index(MBConvOp(kernel, expansion, se))


@dataclass(frozen=True)
class Slot:
    """The frame of one layer at one width: channels, stride, input shape (C, H, W), stage."""

    cin: int
    cout: int
    stride: int
    in_shape: tuple[int, int, int]
    stage: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    @property
    def out_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        return (self.cout, out_size(h, self.stride), out_size(w, self.stride))


def stem_channels(width: float) -> int:
    return make_divisible(STEM_CHANNELS * width)


def _slots(spec: InputSpec, width: float = 1.0) -> tuple[Slot, ...]:
    """MobileNetV2's stage table unrolled into 17 layers at one width, with shapes."""
    s = stem_stride(spec)
    shape = (stem_channels(width), out_size(spec.height, s), out_size(spec.width, s))
    slots = []
    for stage, (_t, c, n, stage_stride) in enumerate(MOBILENET_V2_STAGES):
        for j in range(n):
            stride = stage_stride if j == 0 else 1
            slots.append(Slot(shape[0], make_divisible(c * width), stride, shape, stage))
            shape = slots[-1].out_shape
    return tuple(slots)


@dataclass(frozen=True)
class Arch:
    """A decoded genotype: the width, and the (slot index, op) of every layer kept."""

    width: float
    layers: tuple[tuple[int, MBConvOp], ...]


ROLES = ("expand", "depthwise", "se", "project")  # a block's body, at its largest option
LARGEST_OP = MBConvOp(max(KERNELS), max(EXPANSIONS), True)


class InvertedResidual(nn.Module):
    """MBConv: [expand 1x1] -> depthwise kxk -> [SE] -> linear project 1x1, + x if shapes keep.

    `forward_sliced` runs a smaller option on fewer channels with this block's weights (the
    supernet's shared layer, built at the largest option); the residual follows the channels
    actually present, as in MobileNetV2."""

    def __init__(self, cin: int, cout: int, stride: int, op: MBConvOp) -> None:
        super().__init__()
        hidden = cin * op.expansion
        layers: list[nn.Module] = []
        if op.expansion != 1:  # expansion 1 has no expand conv, as MobileNetV2's first block
            layers.append(conv_bn(cin, hidden, 1, act=ACT))
        layers.append(conv_bn(hidden, hidden, op.kernel, stride, groups=hidden, act=ACT))
        if op.se:
            layers.append(SqueezeExcite(hidden))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.roles = roles(op)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            zero_init_last_bn(layers[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, cout, H', W')
        y = self.body(x)
        return x + y if self.residual else y

    def forward_sliced(self, x: torch.Tensor, cout: int, op: MBConvOp) -> torch.Tensor:
        """Option `op` on x's channels (<= cin) to `cout` channels, from this block's weights:
        leading channels, the central op.kernel window of the depthwise kernel, no expand
        conv at expansion 1, SE only if op.se (OFA's elastic kernel, expansion and width)."""
        layer = dict(zip(self.roles, self.body, strict=True))
        hidden = x.shape[1] * op.expansion
        y = x if op.expansion == 1 else sliced_conv_bn(layer["expand"], x, hidden)
        y = sliced_conv_bn(layer["depthwise"], y, hidden, op.kernel)
        if op.se:
            y = sliced_se(layer["se"], y)
        y = sliced_conv_bn(layer["project"], y, cout)
        return x + y if self.residual and x.shape[1] == cout else y


def roles(op: MBConvOp) -> tuple[str, ...]:
    """What each entry of a block's body is, for this option."""
    return tuple(r for r in ROLES if (r != "expand" or op.expansion != 1) and (r != "se" or op.se))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC activations: PyTorch's CPU conv backward is much faster in this layout (one
    thread, 64x96x28x28: depthwise 7x7 0.15 s vs 0.50 s; a supernet step ~2x faster).
    Done after the stem because a 1-channel input is both layouts; ONNX export ignores it.
    """
    return x.contiguous(memory_format=torch.channels_last)


def _stem(spec: InputSpec, width: float) -> nn.Module:
    return conv_bn(spec.channels, stem_channels(width), 3, stem_stride(spec), act=ACT)


def _head(cin: int, spec: InputSpec) -> nn.Module:
    return nn.Sequential(
        conv_bn(cin, LAST_CHANNELS, 1, act=ACT), ClassifierHead(LAST_CHANNELS, spec.num_classes)
    )


class MobileNetNet(nn.Module):
    """A standalone network of the space: stem, the layers kept, head."""

    def __init__(self, spec: InputSpec, slots: tuple[Slot, ...], arch: Arch) -> None:
        super().__init__()
        self.stem = _stem(spec, arch.width)
        self.layers = nn.Sequential(
            *(
                InvertedResidual(slots[i].cin, slots[i].cout, slots[i].stride, op)
                for i, op in arch.layers
            )
        )
        self.head = _head(slots[-1].cout, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.head(self.layers(_channels_last(self.stem(x))))


class MobileNetSupernet(Supernet):
    """One shared block per layer at width 1 and the largest option (`layers.i`); every path
    runs on slices of it, so all options of a layer train the same weights."""

    def __init__(self, space: MobileNetSpace) -> None:
        super().__init__()
        self.space = [space]  # in a list: a plain attribute, not a submodule
        spec, slots = space.spec, _slots(space.spec)
        self.stem = _stem(spec, 1.0)
        self.layers = nn.ModuleList(
            InvertedResidual(s.cin, s.cout, s.stride, LARGEST_OP) for s in slots
        )
        self.head = _head(slots[-1].cout, spec)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        space = self.space[0]
        arch = space.decode(g)
        slots = space.slots_at(arch.width)
        x = _channels_last(sliced_conv_bn(self.stem, x, stem_channels(arch.width)))
        for i, op in arch.layers:
            x = self.layers[i].forward_sliced(x, slots[i].cout, op)
        x = sliced_conv_bn(self.head[0], x, LAST_CHANNELS)
        return self.head[1](x)


@SPACES.decorator("mobilenet")
class MobileNetSpace(SearchSpace):
    """MobileNetV2's frame with elastic width, elastic stage depth and 18 MBConv options."""

    def __init__(self, spec: InputSpec | None = None) -> None:
        super().__init__(spec)
        self.slots = _slots(self.spec)
        self._by_width = {w: _slots(self.spec, w) for w in WIDTHS}

    def slots_at(self, width: float) -> tuple[Slot, ...]:
        """The 17 layer frames at one width multiplier."""
        return self._by_width[width]

    # --- genotype layout ----------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        width = Decision("width", tuple(f"w{w:g}" for w in WIDTHS))
        depths = tuple(
            Decision(
                f"stage{i + 1}_depth",
                tuple(f"d{d}" for d in range(1, MOBILENET_V2_STAGES[i][2] + 1)),
            )
            for i in ELASTIC_STAGES
        )
        labels = tuple(op.label for op in MBCONV_OPS)
        layers = tuple(Decision(f"layer{i + 1:02d}", labels) for i in range(len(self.slots)))
        return (width, *depths, *layers)

    def decode(self, g: Genotype) -> Arch:
        """Width and the kept layers of g."""
        g = self.validate(g)
        head = 1 + len(ELASTIC_STAGES)
        depth = {stage: g[1 + k] + 1 for k, stage in enumerate(ELASTIC_STAGES)}
        first = {}
        for i, slot in enumerate(self.slots):
            first.setdefault(slot.stage, i)
        kept = tuple(
            (i, MBCONV_OPS[g[head + i]])
            for i, slot in enumerate(self.slots)
            if i - first[slot.stage] < depth.get(slot.stage, 1)
        )
        return Arch(WIDTHS[g[0]], kept)

    def encode(self, width: float, depths: dict[int, int], ops: list[MBConvOp]) -> Genotype:
        """A genotype from a width, {stage index: depth} (others full) and 17 layer ops."""
        stage_depth = [depths.get(i, MOBILENET_V2_STAGES[i][2]) - 1 for i in ELASTIC_STAGES]
        layer = [MBCONV_OPS.index(op) for op in ops]
        return self.canonical((WIDTHS.index(width), *stage_depth, *layer))

    def canonical(self, g: Genotype) -> Genotype:
        """Layers past their stage's depth set to option 0 (they are not in the network)."""
        g = self.validate(g)
        kept = {i for i, _ in self.decode(g).layers}
        head = 1 + len(ELASTIC_STAGES)
        return tuple(gi if k < head or (k - head) in kept else 0 for k, gi in enumerate(g))

    # --- networks -----------------------------------------------------------------------
    def build(self, g: Genotype) -> nn.Module:
        arch = self.decode(g)
        return MobileNetNet(self.spec, self.slots_at(arch.width), arch)

    def supernet(self) -> MobileNetSupernet:
        return MobileNetSupernet(self)

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        arch = self.decode(g)
        shapes = {k: v.shape for k, v in self.build(g).state_dict().items()}
        keys = {}
        for key in shapes:
            part, _, rest = key.partition(".")
            if part == "layers":  # layers.K.body.J.rest -> layers.I.body.ROLE.rest
                k, _body, j, rest = rest.split(".", 3)
                i, op = arch.layers[int(k)]
                keys[key] = f"layers.{i}.body.{ROLES.index(roles(op)[int(j)])}.{rest}"
            else:
                keys[key] = key
        return slice_state(supernet.state_dict(), shapes, keys)

    # --- descriptions -------------------------------------------------------------------
    def describe(self, g: Genotype) -> list[LayerInfo]:
        arch = self.decode(g)
        slots, s = self.slots_at(arch.width), stem_stride(self.spec)
        rows = [LayerInfo("stem", f"conv3x3_s{s}", slots[0].in_shape)]
        for i, op in arch.layers:
            res = "+res" if slots[i].residual else ""
            label = f"{op.label}_s{slots[i].stride}{res}"
            rows.append(LayerInfo(f"layer{i + 1:02d}", label, slots[i].out_shape))
        op = f"conv1x1_{LAST_CHANNELS}+avgpool+fc{self.spec.num_classes}"
        rows.append(LayerInfo("head", op, (self.spec.num_classes, 1, 1)))
        return rows

    def blocks(self, g: Genotype) -> list[Block]:
        arch = self.decode(g)
        net = self.build(g).eval()
        slots, spec, s = self.slots_at(arch.width), self.spec, stem_stride(self.spec)
        stem_c = stem_channels(arch.width)
        stem_key = f"stem_conv3x3_s{s}:{dims_key(spec.shape)}->{stem_c}"
        blocks = [Block(stem_key, net.stem, spec.shape)]
        for (i, op), module in zip(arch.layers, net.layers, strict=True):
            blocks.append(Block(_layer_key(slots[i], op), module, slots[i].in_shape))
        last = slots[-1].out_shape
        key = f"head_conv1x1_{LAST_CHANNELS}_fc{spec.num_classes}:{dims_key(last)}"
        blocks.append(Block(key, net.head, last))
        return blocks

    def extremes(self) -> tuple[Genotype, Genotype]:
        """Widest, deepest, k7_e6_se everywhere; narrowest, shallowest, k3_e1 everywhere."""
        n = len(self.slots)
        full = {i: MOBILENET_V2_STAGES[i][2] for i in ELASTIC_STAGES}
        one = {i: 1 for i in ELASTIC_STAGES}
        return (
            self.encode(max(WIDTHS), full, [LARGEST_OP] * n),
            self.encode(min(WIDTHS), one, [MBConvOp(3, 1, False)] * n),
        )

    def manual(self) -> dict[str, Genotype]:
        v2 = [(3, t, False) for t, *_ in MOBILENET_V2_STAGES]
        out = {f"mobilenet_v2@{w:g}": self._from_stage_ops(w, v2) for w in WIDTHS}
        # MnasNet-A1's per-stage choices (Tan et al. 2019, fig. 7) on MobileNetV2's widths;
        # A1's 5th stage has 2 layers where V2 has 3.
        a1 = [(3, 1, False), (3, 6, False), (5, 3, True), (3, 6, False), (3, 6, True),
              (5, 6, True), (3, 6, False)]  # kernel, expansion, se per stage  # fmt: skip
        out["mnasnet_a1"] = self._from_stage_ops(1.0, a1, {4: 2})
        return out

    def _from_stage_ops(
        self,
        width: float,
        stage_ops: list[tuple[int, int, bool]],
        depths: dict[int, int] | None = None,
    ) -> Genotype:
        """A genotype from one (kernel, expansion, se) per stage, at one width."""
        ops = []
        for (_t, _c, n, _s), (k, e, se) in zip(MOBILENET_V2_STAGES, stage_ops, strict=True):
            ops += [MBConvOp(k, e, se)] * n
        return self.encode(width, depths or {}, ops)


def _layer_key(slot: Slot, op: MBConvOp) -> str:
    """Latency-table key: op config, input shape, output width and stride."""
    return f"{op.label}:{dims_key(slot.in_shape)}->{slot.cout}:s{slot.stride}"
