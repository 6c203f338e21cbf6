"""The `mobilenet` space: MBConv layers (MnasNet/ProxylessNAS style) on MobileNetV2's layout.

The frame is fixed: a 32-channel conv3x3 stem, MobileNetV2's seven stages (17 layers with
its output widths and strides), a conv1x1 to 640 channels and the classifier. Each layer
chooses an inverted-residual block, kernel {3,5,7} x expansion {1,3,6} x squeeze-excite
{off,on}, or `skip` (the layer removed) where the layer keeps shape (stride 1, cin == cout).

The last conv has 640 channels, not MobileNetV2's 1280: at our 2x2 final map 1280 would
cost only 1.6 M MACs (vs 0.8 M), but would hold a fifth of MobileNetV2's parameters (422 K of
2.2 M) just to feed 10 classes; half the width keeps the head in proportion with the body.
Squeeze-excite is `ops.SqueezeExcite` on the expanded channels (MobileNetV3 style: hard-sigmoid,
hidden = expanded / 4), where MnasNet uses a sigmoid and a quarter of the block's input width.
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
from factory.spaces.ops import (
    ClassifierHead,
    SqueezeExcite,
    conv_bn,
    out_size,
    stem_stride,
    with_prefix,
    zero_init_last_bn,
)
from factory.spaces.registry import SPACES

STEM_CHANNELS = 32
LAST_CHANNELS = 640
ACT = "relu6"  # as MobileNetV2

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

# The option grid of one layer; option index = (kernel, expansion, se) in this nested order.
KERNELS = (3, 5, 7)
EXPANSIONS = (1, 3, 6)
SQUEEZE_EXCITE = (False, True)
SKIP = "skip"


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
LayerOp = MBConvOp | None  # None is `skip`


def op_index(kernel: int, expansion: int, se: bool = False) -> int:
    """The option index of an MBConv choice (the same in every layer; skip is last)."""
    return MBCONV_OPS.index(MBConvOp(kernel, expansion, se))


@dataclass(frozen=True)
class Slot:
    """The fixed frame of one searchable layer: widths, stride and input shape (C, H, W)."""

    cin: int
    cout: int
    stride: int
    in_shape: tuple[int, int, int]

    @property
    def skippable(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    @property
    def out_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        return (self.cout, out_size(h, self.stride), out_size(w, self.stride))

    def options(self) -> tuple[LayerOp, ...]:
        return (*MBCONV_OPS, None) if self.skippable else MBCONV_OPS


def _slots(spec: InputSpec) -> tuple[Slot, ...]:
    """MobileNetV2's stage table unrolled into 17 layers, with shapes for this input."""
    s = stem_stride(spec)
    shape = (STEM_CHANNELS, out_size(spec.height, s), out_size(spec.width, s))
    slots = []
    for _t, c, n, stage_stride in MOBILENET_V2_STAGES:
        for j in range(n):
            slot = Slot(shape[0], c, stage_stride if j == 0 else 1, shape)
            slots.append(slot)
            shape = slot.out_shape
    return tuple(slots)


class InvertedResidual(nn.Module):
    """MBConv: [expand 1x1] -> depthwise kxk -> [SE] -> linear project 1x1, + x if shapes keep."""

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
        self.residual = stride == 1 and cin == cout
        if self.residual:
            zero_init_last_bn(layers[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, cout, H', W')
        y = self.body(x)
        return x + y if self.residual else y


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC activations: PyTorch's CPU conv backward is much faster in this layout (one
    thread, 64x96x28x28: depthwise 7x7 0.15 s vs 0.50 s; a supernet step ~2x faster).
    Done after the stem because a 1-channel input is both layouts; ONNX export ignores it.
    """
    return x.contiguous(memory_format=torch.channels_last)


def _layer(slot: Slot, op: LayerOp) -> nn.Module:
    return nn.Identity() if op is None else InvertedResidual(slot.cin, slot.cout, slot.stride, op)


def _stem(spec: InputSpec) -> nn.Module:
    return conv_bn(spec.channels, STEM_CHANNELS, 3, stem_stride(spec), act=ACT)


def _head(cin: int, spec: InputSpec) -> nn.Module:
    return nn.Sequential(
        conv_bn(cin, LAST_CHANNELS, 1, act=ACT), ClassifierHead(LAST_CHANNELS, spec.num_classes)
    )


class MobileNetNet(nn.Module):
    """A standalone network of the space: stem, 17 layers (skips are identities), head."""

    def __init__(self, spec: InputSpec, slots: tuple[Slot, ...], ops: list[LayerOp]) -> None:
        super().__init__()
        self.stem = _stem(spec)
        self.layers = nn.Sequential(*(_layer(s, op) for s, op in zip(slots, ops, strict=True)))
        self.head = _head(slots[-1].cout, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.head(self.layers(_channels_last(self.stem(x))))


class MobileNetSupernet(Supernet):
    """SPOS supernet: per layer one candidate module per option (`layers.i.j`), shared frame."""

    def __init__(self, spec: InputSpec, slots: tuple[Slot, ...]) -> None:
        super().__init__()
        self.stem = _stem(spec)
        self.layers = nn.ModuleList(
            nn.ModuleList(_layer(s, op) for op in s.options()) for s in slots
        )
        self.head = _head(slots[-1].cout, spec)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        x = _channels_last(self.stem(x))
        for candidates, choice in zip(self.layers, g, strict=True):
            x = candidates[choice](x)
        return self.head(x)


@SPACES.decorator("mobilenet")
class MobileNetSpace(SearchSpace):
    """17 MBConv layers on MobileNetV2's widths/strides; 18 or 19 options per layer."""

    name = "mobilenet"

    def __init__(self, spec: InputSpec | None = None) -> None:
        super().__init__(spec)
        self.slots = _slots(self.spec)

    def ops(self, g: Genotype) -> list[LayerOp]:
        """g's choice in each layer (None where the layer is skipped)."""
        g = self.validate(g)
        return [slot.options()[i] for slot, i in zip(self.slots, g, strict=True)]

    def decisions(self) -> tuple[Decision, ...]:
        return tuple(
            Decision(
                f"layer{i + 1:02d}", tuple(SKIP if op is None else op.label for op in s.options())
            )
            for i, s in enumerate(self.slots)
        )

    def build(self, g: Genotype) -> nn.Module:
        return MobileNetNet(self.spec, self.slots, self.ops(g))

    def supernet(self) -> MobileNetSupernet:
        return MobileNetSupernet(self.spec, self.slots)

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        g = self.validate(g)
        state = supernet.state_dict()
        sd = with_prefix(state, "stem", "stem") | with_prefix(state, "head", "head")
        for i, choice in enumerate(g):
            sd |= with_prefix(state, f"layers.{i}.{choice}", f"layers.{i}")
        return sd

    def describe(self, g: Genotype) -> list[LayerInfo]:
        s = stem_stride(self.spec)
        rows = [LayerInfo("stem", f"conv3x3_s{s}", self.slots[0].in_shape)]
        for i, (slot, op) in enumerate(zip(self.slots, self.ops(g), strict=True)):
            rows.append(LayerInfo(f"layer{i + 1:02d}", *self._layer_row(slot, op)))
        op = f"conv1x1_{LAST_CHANNELS}+avgpool+fc{self.spec.num_classes}"
        rows.append(LayerInfo("head", op, (self.spec.num_classes, 1, 1)))
        return rows

    @staticmethod
    def _layer_row(slot: Slot, op: LayerOp) -> tuple[str, tuple[int, int, int]]:
        if op is None:
            return SKIP, slot.in_shape
        res = "+res" if slot.skippable else ""
        return f"{op.label}_s{slot.stride}{res}", slot.out_shape

    def blocks(self, g: Genotype) -> list[Block]:
        net = self.build(g).eval()
        spec, s = self.spec, stem_stride(self.spec)
        blocks = [
            Block(f"stem_conv3x3_s{s}:{_shape(spec.shape)}->{STEM_CHANNELS}", net.stem, spec.shape)
        ]
        for slot, op, module in zip(self.slots, self.ops(g), net.layers, strict=True):
            blocks.append(Block(_layer_key(slot, op), module, slot.in_shape))
        last = self.slots[-1].out_shape
        key = f"head_conv1x1_{LAST_CHANNELS}_fc{spec.num_classes}:{_shape(last)}"
        blocks.append(Block(key, net.head, last))
        return blocks

    def manual(self) -> dict[str, Genotype]:
        return {
            "mobilenet_v2": self._from_stage_ops([(3, t, False) for t, *_ in MOBILENET_V2_STAGES]),
            # MnasNet-A1's per-stage choices (Tan et al. 2019, fig. 7) on MobileNetV2's widths;
            # A1's 5th stage has 2 layers where V2 has 3, so the third one is skipped.
            "mnasnet_a1": self._from_stage_ops(
                [  # kernel, expansion, se per stage
                    (3, 1, False),
                    (3, 6, False),
                    (5, 3, True),
                    (3, 6, False),
                    (3, 6, True),
                    (5, 6, True),
                    (3, 6, False),
                ],
                skip=(12,),
            ),
        }

    def _from_stage_ops(
        self, stage_ops: list[tuple[int, int, bool]], skip: tuple[int, ...] = ()
    ) -> Genotype:
        """A genotype from one (kernel, expansion, se) per stage; `skip` lists layer indices."""
        g = []
        for (_t, _c, n, _s), (k, e, se) in zip(MOBILENET_V2_STAGES, stage_ops, strict=True):
            g += [op_index(k, e, se)] * n
        for i in skip:
            g[i] = len(MBCONV_OPS)
        return self.validate(tuple(g))


def _shape(shape: tuple[int, int, int]) -> str:
    return "x".join(str(v) for v in shape)


def _layer_key(slot: Slot, op: LayerOp) -> str:
    """Latency-table key: op config, input shape, output width and stride."""
    if op is None:
        return f"{SKIP}:{_shape(slot.in_shape)}"
    return f"{op.label}:{_shape(slot.in_shape)}->{slot.cout}:s{slot.stride}"
