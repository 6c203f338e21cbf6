"""The MBConv block and MobileNetV2's layer frame: what the `mobilenet` space's networks and
its supernet are built from.

`InvertedResidual` is MobileNetV2's block with MnasNet's options (kernel, expansion,
squeeze-excite); `forward_sliced` runs any smaller option and width on the weights of the
largest, as Once-for-All's elastic kernel, expansion and width do."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from factory.spaces.base import InputSpec
from factory.spaces.elastic import make_divisible, sliced_conv_bn, sliced_se
from factory.spaces.ops import SqueezeExcite, conv_bn, out_size, stem_stride, zero_init_last_bn

STEM_CHANNELS = 32
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


def layer_slots(spec: InputSpec, width: float = 1.0) -> tuple[Slot, ...]:
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
