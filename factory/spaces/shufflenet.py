"""The CANAS search space: a ShuffleNetV1-layout chain of 16 layers, 8 unit types each.

Layout (ShuffleNetV1): stem conv3x3 to 24 channels (stride from `stem_stride`, no max-pool),
then three stages of 4, 8 and 4 units with output widths 96, 192, 384; the first unit of a
stage has stride 2 and concatenates its branch with a 3x3 average-pool shortcut (so the
branch produces cout - cin channels), the others add a residual. Bottleneck width is
cout / 4. Every width is a multiple of 24, so all group counts (1, 2, 3, 4, 8) divide them.

Each layer chooses one of 8 units, all built by `ShuffleUnit`:
- ShuffleNet units (grouped 1x1 -> shuffle -> 3x3 depthwise -> grouped 1x1), g = 1,2,3,4,8;
- multi-scale dilated grouped units (our design; the paper gives no details): the same
  unit, but the shuffled bottleneck is split into equal channel chunks, one 3x3 depthwise
  per chunk with dilations {1,2}, {1,2,3} or {1,2,4}, then concatenated (MixConv style).
  The shuffle spreads every pointwise group over all dilation branches, so multi-scale
  context costs no more MACs than a plain unit of the same group count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from factory.spaces.base import (
    Block,
    Decision,
    Genotype,
    LayerInfo,
    SearchSpace,
    Supernet,
)
from factory.spaces.ops import (
    ChannelShuffle,
    ClassifierHead,
    conv_bn,
    out_size,
    stem_stride,
    with_prefix,
    zero_init_last_bn,
)
from factory.spaces.registry import SPACES

STEM_CHANNELS = 24
STAGES: tuple[tuple[int, int], ...] = (
    # out channels, units (the first has stride 2)
    (96, 4),
    (192, 8),
    (384, 4),
)


@dataclass(frozen=True)
class UnitOp:
    """One layer option: pointwise group count and one depthwise branch per dilation."""

    label: str
    groups: int
    dilations: tuple[int, ...]


OPS: tuple[UnitOp, ...] = (
    # label, 1x1 groups, depthwise dilations
    UnitOp("shuffle_g1", 1, (1,)),
    UnitOp("shuffle_g2", 2, (1,)),
    UnitOp("shuffle_g3", 3, (1,)),
    UnitOp("shuffle_g4", 4, (1,)),
    UnitOp("shuffle_g8", 8, (1,)),
    UnitOp("msdil_d12_g2", 2, (1, 2)),
    UnitOp("msdil_d123_g3", 3, (1, 2, 3)),
    UnitOp("msdil_d124_g4", 4, (1, 2, 4)),
)


@dataclass(frozen=True)
class LayerPlan:
    """Where a searchable layer sits: channels, stride and input size (H, W)."""

    cin: int
    cout: int
    stride: int
    in_hw: tuple[int, int]
    first: bool  # the network's first unit, fed by the small stem

    @property
    def out_hw(self) -> tuple[int, int]:
        return (out_size(self.in_hw[0], self.stride), out_size(self.in_hw[1], self.stride))


def pw1_groups(cin: int, mid: int, groups: int, first: bool) -> int:
    """Groups of a unit's first 1x1 conv.

    As in ShuffleNetV1 the network's first unit keeps it ungrouped: its 24 stem channels
    are too few to split. It also falls back to 1 where `groups` does not divide the
    input or bottleneck channels (never with the widths above; guards edits to STAGES).
    """
    if first or cin % groups or mid % groups:
        return 1
    return groups


class ShuffleUnit(nn.Module):
    """ShuffleNetV1 unit with one or more dilated depthwise branches.

    Stride 1: relu(x + branch(x)). Stride 2: relu(cat(avgpool3x3(x), branch(x))).
    """

    def __init__(self, op: UnitOp, plan: LayerPlan) -> None:
        super().__init__()
        mid = plan.cout // 4
        branch_out = plan.cout - plan.cin if plan.stride == 2 else plan.cout
        g1 = pw1_groups(plan.cin, mid, op.groups, plan.first)
        self.chunk = mid // len(op.dilations)
        self.pw1 = conv_bn(plan.cin, mid, 1, groups=g1)
        self.shuffle = ChannelShuffle(mid, g1)
        self.dw = nn.ModuleList(
            conv_bn(self.chunk, self.chunk, 3, plan.stride, self.chunk, d, act=None)
            for d in op.dilations
        )
        self.pw2 = conv_bn(mid, branch_out, 1, groups=op.groups, act=None)
        self.pool = nn.AvgPool2d(3, 2, 1) if plan.stride == 2 else None
        if self.pool is None:
            zero_init_last_bn(self.pw2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, cout, H', W')
        y = self.shuffle(self.pw1(x))
        if len(self.dw) == 1:
            y = self.dw[0](y)
        else:
            parts = y.split(self.chunk, dim=1)
            y = torch.cat([dw(p) for dw, p in zip(self.dw, parts, strict=True)], dim=1)
        y = self.pw2(y)
        if self.pool is None:
            return torch.relu(x + y)
        return torch.relu(torch.cat([self.pool(x), y], dim=1))


class ShuffleNet(nn.Module):
    """A standalone network of the space: stem, 16 units, classifier head."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.Sequential(*layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.head(self.layers(self.stem(x)))


class ShuffleSupernet(Supernet):
    """One candidate unit per option per layer (SPOS): `layers[i][j]` is option j of layer i."""

    def __init__(self, stem: nn.Module, candidates: list[list[nn.Module]], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(nn.ModuleList(c) for c in candidates)
        self.head = head

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        x = self.stem(x)
        for options, choice in zip(self.layers, g, strict=True):
            x = options[choice](x)
        return self.head(x)


@SPACES.decorator("shufflenet")
class ShuffleNetSpace(SearchSpace):
    """CANAS: 16 layers x 8 ShuffleNet / multi-scale dilated units (see module docstring)."""

    name = "shufflenet"

    def decisions(self) -> tuple[Decision, ...]:
        labels = tuple(op.label for op in OPS)
        return tuple(Decision(f"layer{i}", labels) for i in range(len(self.plan())))

    def plan(self) -> list[LayerPlan]:
        """Channels, stride and input size of each searchable layer for this input spec."""
        s = stem_stride(self.spec)
        hw = (out_size(self.spec.height, s), out_size(self.spec.width, s))
        cin, layers = STEM_CHANNELS, []
        for cout, units in STAGES:
            for u in range(units):
                layer = LayerPlan(cin, cout, 2 if u == 0 else 1, hw, not layers)
                layers.append(layer)
                cin, hw = cout, layer.out_hw
        return layers

    def manual(self) -> dict[str, Genotype]:
        n = len(self.plan())
        index = {op.label: i for i, op in enumerate(OPS)}
        return {f"shufflenet_g{k}": (index[f"shuffle_g{k}"],) * n for k in (1, 3, 8)}

    # --- networks ---------------------------------------------------------------------
    def _stem(self) -> nn.Module:
        return conv_bn(self.spec.channels, STEM_CHANNELS, 3, stem_stride(self.spec))

    def _head(self) -> ClassifierHead:
        return ClassifierHead(STAGES[-1][0], self.spec.num_classes)

    def build(self, g: Genotype) -> ShuffleNet:
        g = self.validate(g)
        units = [ShuffleUnit(OPS[c], p) for p, c in zip(self.plan(), g, strict=True)]
        return ShuffleNet(self._stem(), units, self._head())

    def supernet(self) -> ShuffleSupernet:
        candidates = [[ShuffleUnit(op, p) for op in OPS] for p in self.plan()]
        return ShuffleSupernet(self._stem(), candidates, self._head())

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        g = self.validate(g)
        state = supernet.state_dict()
        sd = with_prefix(state, "stem", "stem") | with_prefix(state, "head", "head")
        for i, c in enumerate(g):
            sd |= with_prefix(state, f"layers.{i}.{c}", f"layers.{i}")
        return sd

    # --- descriptions -----------------------------------------------------------------
    def _unit_op(self, op: UnitOp, p: LayerPlan) -> str:
        """The unit's label, marking a first 1x1 whose groups differ from the option's."""
        g1 = pw1_groups(p.cin, p.cout // 4, op.groups, p.first)
        return op.label if g1 == op.groups else f"{op.label}_pw1g{g1}"

    def _stem_key(self) -> str:
        c, h, w = self.spec.shape
        return f"stem_conv3x3:{c}x{h}x{w}->{STEM_CHANNELS}:s{stem_stride(self.spec)}"

    def _head_key(self, hw: tuple[int, int]) -> str:
        c = STAGES[-1][0]
        return f"head_gap_fc:{c}x{hw[0]}x{hw[1]}->{self.spec.num_classes}"

    def describe(self, g: Genotype) -> list[LayerInfo]:
        """Stem, 16 units, head; the head's shape is (num_classes, 1, 1)."""
        g, plan = self.validate(g), self.plan()
        s = stem_stride(self.spec)
        rows = [LayerInfo("stem", f"conv3x3_bn_relu s{s}", (STEM_CHANNELS, *plan[0].in_hw))]
        for i, (p, c) in enumerate(zip(plan, g, strict=True)):
            join = "concat_avgpool" if p.stride == 2 else "add"
            op = f"{self._unit_op(OPS[c], p)} s{p.stride} {join}"
            rows.append(LayerInfo(f"layer{i}", op, (p.cout, *p.out_hw)))
        rows.append(LayerInfo("head", "gap_fc", (self.spec.num_classes, 1, 1)))
        return rows

    def blocks(self, g: Genotype) -> list[Block]:
        """Stem, each unit, head of a freshly built `build(g)` (eval mode)."""
        g, plan = self.validate(g), self.plan()
        model = self.build(g).eval()
        out = [Block(self._stem_key(), model.stem, self.spec.shape)]
        for p, c, unit in zip(plan, g, model.layers, strict=True):
            key = f"{self._unit_op(OPS[c], p)}:{p.cin}x{p.in_hw[0]}x{p.in_hw[1]}"
            out.append(Block(f"{key}->{p.cout}:s{p.stride}", unit, (p.cin, *p.in_hw)))
        last = plan[-1]
        out.append(Block(self._head_key(last.out_hw), model.head, (last.cout, *last.out_hw)))
        return out
