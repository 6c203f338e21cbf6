"""The CANAS search space: a ShuffleNetV1-layout chain of 16 units, 8 unit types each, with
an elastic width and elastic depth.

Layout (ShuffleNetV1): stem conv3x3 to 24 channels (stride from `stem_stride`, no max-pool),
then three stages of 4, 8 and 4 units; the first unit of a stage has stride 2 and
concatenates its branch with a 3x3 average-pool shortcut (so the branch produces cout - cin
channels), the others add a residual. The stage widths come from a table picked when the
space is made, `ShuffleNetSpace(spec, widths=...)`: "small" 96/192/384 (the default) or
"paper" 288/576/1152.

Decisions, in genotype order:
- `width`: one multiplier {0.5, 0.75, 1} for the stage widths; each scaled width is rounded
  to a multiple of 24, at least 24 (`make_divisible(c * w, 24)`). The stem stays 24 at every
  width, as ShuffleNetV1's conv1 does at every group count and scale.
- `layer0` .. `layer15`: one of the 8 unit types; a unit that is not the first of its stage
  (stride 1, cin == cout) may also be `skip`, removed from the network (elastic depth).
  Skipping the 2nd or the 3rd unit of a stage gives the same network, so `canonical` moves a
  stage's skips behind its kept units.

Bottleneck: cout / 4 rounded up to a multiple of 24 (`bottleneck`), which is exactly
ShuffleNetV1's cout / 4 at width 1 of both tables and relatively wider below (48 -> 24,
144 -> 48). Every width and bottleneck is then a multiple of 24, so each group count
(1, 2, 3, 4, 8) divides every 1x1 conv's channels and each dilation-branch count (1, 2, 3)
splits the bottleneck evenly; `pw1_groups`' fallback only ever applies to the stem-fed unit.

Each layer chooses one of 8 units, all built by `ShuffleUnit`:
- ShuffleNet units (grouped 1x1 -> shuffle -> 3x3 depthwise -> grouped 1x1), g = 1,2,3,4,8;
- multi-scale dilated grouped units (our design; the paper gives no details): the same
  unit, but the shuffled bottleneck is split into equal channel chunks, one 3x3 depthwise
  per chunk with dilations {1,2}, {1,2,3} or {1,2,4}, then concatenated (MixConv style).
  The shuffle spreads every pointwise group over all dilation branches, so multi-scale
  context costs no more MACs than a plain unit of the same group count.

The supernet holds one full-width candidate per (layer, unit type) and runs narrower networks
on the leading channels of every weight (`factory.spaces.elastic`); grouped 1x1 convs keep
their group count, each group using the leading rows and columns of its weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

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
    channel_shuffle,
    make_divisible,
    slice_state,
    sliced_conv_bn,
    sliced_linear,
)
from factory.spaces.ops import (
    ChannelShuffle,
    ClassifierHead,
    conv_bn,
    out_size,
    stem_stride,
    zero_init_last_bn,
)
from factory.spaces.registry import SPACES
from targets.errors import UserError

STEM_CHANNELS = 24
CHANNEL_STEP = 24  # every width and bottleneck is a multiple: lcm of the group counts 1..8, 3
STAGE_UNITS = (4, 8, 4)  # units per stage; the first has stride 2
STAGE_WIDTHS: dict[str, tuple[int, int, int]] = {
    # output channels of the three stages at width 1
    "small": (96, 192, 384),  # ours: sized for 28x28 inputs
    # the paper's; ShuffleNetV1's g=3 1x is 240/480/960 (table 1), whose 60-channel
    # bottleneck group 8 does not divide
    "paper": (288, 576, 1152),
}
WIDTH_MULTIPLIERS = (0.5, 0.75, 1.0)
SKIP = "skip"


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
SKIP_INDEX = len(OPS)  # the option index of `skip` where a layer has it


def bottleneck(cout: int) -> int:
    """A unit's bottleneck width: cout / 4 rounded up to a multiple of 24 (see module doc)."""
    return -(-cout // (4 * CHANNEL_STEP)) * CHANNEL_STEP


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

    @property
    def mid(self) -> int:
        return bottleneck(self.cout)

    @property
    def branch_out(self) -> int:
        """Channels of the unit's branch: the avg-pool shortcut brings cin at stride 2."""
        return self.cout - self.cin if self.stride == 2 else self.cout

    @property
    def skippable(self) -> bool:
        return self.stride == 1  # not a stage's first unit, so cin == cout


def _plan(spec: InputSpec, widths: tuple[int, ...], width: float) -> tuple[LayerPlan, ...]:
    """The 16 layers at one width multiplier, with their input sizes for `spec`."""
    s = stem_stride(spec)
    hw = (out_size(spec.height, s), out_size(spec.width, s))
    cin, layers = STEM_CHANNELS, []
    for c, units in zip(widths, STAGE_UNITS, strict=True):
        cout = make_divisible(c * width, CHANNEL_STEP)
        for u in range(units):
            layer = LayerPlan(cin, cout, 2 if u == 0 else 1, hw, not layers)
            layers.append(layer)
            cin, hw = cout, layer.out_hw
    return tuple(layers)


def pw1_groups(cin: int, mid: int, groups: int, first: bool) -> int:
    """Groups of a unit's first 1x1 conv.

    As in ShuffleNetV1 the network's first unit keeps it ungrouped: its 24 stem channels
    are too few to split. It also falls back to 1 where `groups` does not divide the
    input or bottleneck channels (never with multiples of 24; guards edits to the tables).
    """
    if first or cin % groups or mid % groups:
        return 1
    return groups


class ShuffleUnit(nn.Module):
    """ShuffleNetV1 unit with one or more dilated depthwise branches.

    Stride 1: relu(x + branch(x)). Stride 2: relu(cat(avgpool3x3(x), branch(x))).
    `forward_sliced` runs it at a narrower width (the supernet's)."""

    def __init__(self, op: UnitOp, plan: LayerPlan) -> None:
        super().__init__()
        mid = plan.mid
        g1 = pw1_groups(plan.cin, mid, op.groups, plan.first)
        self.chunk = mid // len(op.dilations)
        self.pw1 = conv_bn(plan.cin, mid, 1, groups=g1)
        self.shuffle = ChannelShuffle(mid, g1)
        self.dw = nn.ModuleList(
            conv_bn(self.chunk, self.chunk, 3, plan.stride, self.chunk, d, act=None)
            for d in op.dilations
        )
        self.pw2 = conv_bn(mid, plan.branch_out, 1, groups=op.groups, act=None)
        self.pool = nn.AvgPool2d(3, 2, 1) if plan.stride == 2 else None
        if self.pool is None:
            zero_init_last_bn(self.pw2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, cin, H, W) -> (N, cout, H', W')
        y = self.shuffle(self.pw1(x))
        y = self._depthwise(y, self.chunk, lambda dw, part: dw(part))
        return self._join(x, self.pw2(y))

    def forward_sliced(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        """The unit on x's channels (<= its cin) with `cout` (<= its cout) output channels;
        the bottleneck is `bottleneck(cout)`, every conv and BN the leading slice of its own."""
        mid = bottleneck(cout)
        chunk = mid // len(self.dw)
        branch = cout - x.shape[1] if self.pool is not None else cout
        y = channel_shuffle(sliced_conv_bn(self.pw1, x, mid), self.shuffle.groups)
        y = self._depthwise(y, chunk, lambda dw, part: sliced_conv_bn(dw, part, chunk))
        return self._join(x, sliced_conv_bn(self.pw2, y, branch))

    def _depthwise(self, y: torch.Tensor, chunk: int, run) -> torch.Tensor:
        """One depthwise branch per `chunk` channels of y, concatenated."""
        if len(self.dw) == 1:
            return run(self.dw[0], y)
        parts = y.split(chunk, dim=1)
        return torch.cat([run(dw, p) for dw, p in zip(self.dw, parts, strict=True)], dim=1)

    def _join(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return torch.relu(x + y)
        return torch.relu(torch.cat([self.pool(x), y], dim=1))


@dataclass(frozen=True)
class Arch:
    """A decoded genotype: the width multiplier and the (layer index, unit) of each unit kept."""

    width: float
    units: tuple[tuple[int, UnitOp], ...]


def _stem(spec: InputSpec) -> nn.Module:
    return conv_bn(spec.channels, STEM_CHANNELS, 3, stem_stride(spec))


class ShuffleNet(nn.Module):
    """A standalone network of the space: stem, the units kept, classifier head."""

    def __init__(self, spec: InputSpec, plan: tuple[LayerPlan, ...], arch: Arch) -> None:
        super().__init__()
        self.stem = _stem(spec)
        self.layers = nn.Sequential(*(ShuffleUnit(op, plan[i]) for i, op in arch.units))
        self.head = ClassifierHead(plan[-1].cout, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.head(self.layers(self.stem(x)))


class ShuffleSupernet(Supernet):
    """One full-width candidate per layer and unit type (`layers.i.j`, SPOS); narrower
    widths run on their leading channels, skipped units are left out."""

    def __init__(self, space: ShuffleNetSpace) -> None:
        super().__init__()
        self.space = [space]  # in a list: a plain attribute, not a submodule
        plan = space.plan()
        self.stem = _stem(space.spec)
        self.layers = nn.ModuleList(nn.ModuleList(ShuffleUnit(op, p) for op in OPS) for p in plan)
        self.head = ClassifierHead(plan[-1].cout, space.spec.num_classes)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        space = self.space[0]
        arch = space.decode(g)
        plan = space.plan(arch.width)
        x = self.stem(x)
        for i, op in arch.units:
            x = self.layers[i][OPS.index(op)].forward_sliced(x, plan[i].cout)
        return sliced_linear(self.head.fc, self.head.dropout(x.mean((2, 3))))


@SPACES.decorator("shufflenet")
class ShuffleNetSpace(SearchSpace):
    """CANAS: width x 16 layers of 8 ShuffleNet / multi-scale dilated units or skip (see
    module docstring)."""

    options: ClassVar[dict[str, tuple[str, ...]]] = {"widths": tuple(STAGE_WIDTHS)}

    def __init__(self, spec: InputSpec | None = None, widths: str = "small") -> None:
        super().__init__(spec)
        if widths not in STAGE_WIDTHS:
            valid = ", ".join(STAGE_WIDTHS)
            raise UserError(f"unknown shufflenet widths {widths!r}; valid: {valid}")
        self.widths = widths
        self._plans = {w: _plan(self.spec, STAGE_WIDTHS[widths], w) for w in WIDTH_MULTIPLIERS}

    def plan(self, width: float = 1.0) -> tuple[LayerPlan, ...]:
        """Channels, stride and input size of each searchable layer at one width multiplier."""
        return self._plans[width]

    # --- genotype layout ----------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        width = Decision("width", tuple(f"w{w:g}" for w in WIDTH_MULTIPLIERS))
        labels = tuple(op.label for op in OPS)
        layers = tuple(
            Decision(f"layer{i}", (*labels, SKIP) if p.skippable else labels)
            for i, p in enumerate(self.plan())
        )
        return (width, *layers)

    def decode(self, g: Genotype) -> Arch:
        """Width and kept units of g."""
        g = self.validate(g)
        units = tuple((i, OPS[c]) for i, c in enumerate(g[1:]) if c != SKIP_INDEX)
        return Arch(WIDTH_MULTIPLIERS[g[0]], units)

    def canonical(self, g: Genotype) -> Genotype:
        """g with each stage's skips moved behind its kept units (the same network)."""
        out, start = list(self.validate(g)), 1
        for units in STAGE_UNITS:
            rest = slice(start + 1, start + units)  # the stage's skippable layers
            kept = [c for c in out[rest] if c != SKIP_INDEX]
            out[rest] = kept + [SKIP_INDEX] * (units - 1 - len(kept))
            start += units
        return tuple(out)

    def arch_id(self, g: Genotype) -> str:
        """As `SearchSpace.arch_id`; networks of the "paper" table get ids of their own."""
        if self.widths == "small":
            return super().arch_id(g)
        text = f"{self.name}[widths={self.widths}]:{self.format(self.canonical(g))}"
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def manual(self) -> dict[str, Genotype]:
        out = {f"shufflenet_g{k}": self._uniform(k, 1.0) for k in (1, 3, 8)}
        out["shufflenet_g3@0.5"] = self._uniform(3, 0.5)
        return out

    def extremes(self) -> tuple[Genotype, Genotype]:
        """shufflenet_g1 at width 1; the narrowest width, g8 units, every unit skipped that
        can be."""
        g8 = next(i for i, op in enumerate(OPS) if op.label == "shuffle_g8")
        layers = [d.options.index("skip") if "skip" in d.options else g8
                  for d in self.decisions()[1:]]  # fmt: skip
        return self._uniform(1, 1.0), (0, *layers)

    def _uniform(self, groups: int, width: float) -> Genotype:
        """Every unit kept and a ShuffleNet unit of one group count, at one width."""
        op = next(i for i, op in enumerate(OPS) if op.label == f"shuffle_g{groups}")
        return (WIDTH_MULTIPLIERS.index(width), *(op,) * len(self.plan()))

    # --- networks -----------------------------------------------------------------------
    def build(self, g: Genotype) -> ShuffleNet:
        arch = self.decode(g)
        return ShuffleNet(self.spec, self.plan(arch.width), arch)

    def supernet(self) -> ShuffleSupernet:
        return ShuffleSupernet(self)

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        arch = self.decode(g)
        shapes = {k: v.shape for k, v in self.build(g).state_dict().items()}
        keys = {}
        for key in shapes:
            part, _, rest = key.partition(".")
            if part == "layers":
                k, _, rest = rest.partition(".")
                i, op = arch.units[int(k)]
                keys[key] = f"layers.{i}.{OPS.index(op)}.{rest}"
            else:
                keys[key] = key
        return slice_state(supernet.state_dict(), shapes, keys)

    # --- descriptions -------------------------------------------------------------------
    def _unit_op(self, op: UnitOp, p: LayerPlan) -> str:
        """The unit's label, marking a first 1x1 whose groups differ from the option's."""
        g1 = pw1_groups(p.cin, p.mid, op.groups, p.first)
        return op.label if g1 == op.groups else f"{op.label}_pw1g{g1}"

    def describe(self, g: Genotype) -> list[LayerInfo]:
        """Stem, the units kept (skipped ones have no row), head of shape (num_classes, 1, 1)."""
        arch = self.decode(g)
        plan, s = self.plan(arch.width), stem_stride(self.spec)
        rows = [LayerInfo("stem", f"conv3x3_bn_relu s{s}", (STEM_CHANNELS, *plan[0].in_hw))]
        for i, op in arch.units:
            p = plan[i]
            join = "concat_avgpool" if p.stride == 2 else "add"
            label = f"{self._unit_op(op, p)} s{p.stride} {join}"
            rows.append(LayerInfo(f"layer{i}", label, (p.cout, *p.out_hw)))
        rows.append(LayerInfo("head", "gap_fc", (self.spec.num_classes, 1, 1)))
        return rows

    def blocks(self, g: Genotype) -> list[Block]:
        """Stem, each unit kept, head of a freshly built `build(g)` (eval mode); a unit's
        key holds its type, input shape, output width and stride (the bottleneck follows)."""
        arch = self.decode(g)
        plan, spec = self.plan(arch.width), self.spec
        model = self.build(g).eval()
        c, h, w = spec.shape
        stem_key = f"stem_conv3x3:{c}x{h}x{w}->{STEM_CHANNELS}:s{stem_stride(spec)}"
        out = [Block(stem_key, model.stem, spec.shape)]
        for (i, op), unit in zip(arch.units, model.layers, strict=True):
            p = plan[i]
            key = f"{self._unit_op(op, p)}:{p.cin}x{p.in_hw[0]}x{p.in_hw[1]}->{p.cout}:s{p.stride}"
            out.append(Block(key, unit, (p.cin, *p.in_hw)))
        last = plan[-1]
        head_key = f"head_gap_fc:{last.cout}x{last.out_hw[0]}x{last.out_hw[1]}->{spec.num_classes}"
        out.append(Block(head_key, model.head, (last.cout, *last.out_hw)))
        return out
