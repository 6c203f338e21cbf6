"""The `mobilenet` space: MBConv layers (MnasNet/ProxylessNAS style) on MobileNetV2's layout,
with an elastic width and elastic depth (Once-for-All style).

The frame is MobileNetV2's: a conv3x3 stem, seven stages (t, c, n, s below), a conv1x1 to
1280 channels and the classifier. Decisions, in genotype order:
- `width`: one multiplier for the whole network, {0.35, 0.5, 0.75, 1} (from `min_width`, a
  space option; a search defaults to 0.5); every width (stem, stages) is scaled and rounded
  as torchvision's MobileNetV2 does (`make_divisible`), the last conv keeps 1280 as there;
- `stageN_depth` for each stage of more than one layer: keep its first d layers (1..n);
- `layerNN` for each of the 17 layers: an inverted-residual block, kernel {3,5,7} x
  expansion {1,3,6} x squeeze-excite {off,on}. Choices of layers past a stage's depth do not
  change the network (`canonical` sets them to 0).

So MobileNetV2 at widths 0.35/0.5/0.75/1 are exact points of the space (same parameters and
MACs as `factory.baselines`' networks), and the space reaches well below MobileNetV3-Small@0.5
in cost. Squeeze-excite is MobileNetV3's (`ops.SqueezeExcite` on the expanded channels,
hard-sigmoid), where MnasNet uses a sigmoid and a quarter of the block's input width.

The supernet holds one block per layer at the largest option and width 1: every option and
width runs on slices of it (`factory.spaces.elastic`), as Once-for-All does. The block and
the layer frame are in `factory.spaces.mbconv`.
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
from factory.spaces.elastic import slice_state, sliced_conv_bn
from factory.spaces.mbconv import (
    ACT,
    LARGEST_OP,
    MBCONV_OPS,
    MOBILENET_V2_STAGES,
    ROLES,
    InvertedResidual,
    MBConvOp,
    Slot,
    layer_slots,
    roles,
    stem_channels,
)
from factory.spaces.ops import ClassifierHead, conv_bn, dims_key, stem_stride
from factory.spaces.registry import SPACES
from targets.errors import UserError

LAST_CHANNELS = 1280  # as MobileNetV2 (it keeps 1280 at every width below 1)
WIDTHS = (0.35, 0.5, 0.75, 1.0)

ELASTIC_STAGES = tuple(i for i, (_t, _c, n, _s) in enumerate(MOBILENET_V2_STAGES) if n > 1)


@dataclass(frozen=True)
class Arch:
    """A decoded genotype: the width, and the (slot index, op) of every layer kept."""

    width: float
    layers: tuple[tuple[int, MBConvOp], ...]


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
        spec, slots = space.spec, layer_slots(space.spec)
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
    """MobileNetV2's frame with elastic width, elastic stage depth and 18 MBConv options.

    `min_width` drops the widths below it from the width decision (the genotype's first
    index then counts from it); architecture ids stay those of the full space."""

    options: ClassVar[dict[str, tuple[str, ...]]] = {"min_width": tuple(f"{w:g}" for w in WIDTHS)}
    # a search's default: the quick supernet scores width 0.35 as high as 0.5, while trained
    # alone 0.35 loses 0.5-0.9 points, so 0.35 took the front on noise (docs/search.md)
    search_defaults: ClassVar[dict[str, str]] = {"min_width": "0.5"}
    yardstick: ClassVar[str | None] = "mobilenet_v2@0.5"  # issue #7's comparison

    def __init__(self, spec: InputSpec | None = None, min_width: str = "0.35") -> None:
        super().__init__(spec)
        if min_width not in self.options["min_width"]:
            valid = ", ".join(self.options["min_width"])
            raise UserError(f"unknown mobilenet min_width {min_width!r}; valid: {valid}")
        self.widths = tuple(w for w in WIDTHS if w >= float(min_width))
        self.slots = layer_slots(self.spec)
        self._by_width = {w: layer_slots(self.spec, w) for w in self.widths}

    def slots_at(self, width: float) -> tuple[Slot, ...]:
        """The 17 layer frames at one width multiplier."""
        return self._by_width[width]

    # --- genotype layout ----------------------------------------------------------------
    def decisions(self) -> tuple[Decision, ...]:
        width = Decision("width", tuple(f"w{w:g}" for w in self.widths))
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
        return Arch(self.widths[g[0]], kept)

    def encode(self, width: float, depths: dict[int, int], ops: list[MBConvOp]) -> Genotype:
        """A genotype from a width, {stage index: depth} (others full) and 17 layer ops."""
        if width not in self.widths:
            raise UserError(f"width {width:g} is below this space's min_width {self.widths[0]:g}")
        stage_depth = [depths.get(i, MOBILENET_V2_STAGES[i][2]) - 1 for i in ELASTIC_STAGES]
        layer = [MBCONV_OPS.index(op) for op in ops]
        return self.canonical((self.widths.index(width), *stage_depth, *layer))

    def canonical(self, g: Genotype) -> Genotype:
        """Layers past their stage's depth set to option 0 (they are not in the network)."""
        g = self.validate(g)
        kept = {i for i, _ in self.decode(g).layers}
        head = 1 + len(ELASTIC_STAGES)
        return tuple(gi if k < head or (k - head) in kept else 0 for k, gi in enumerate(g))

    def arch_id(self, g: Genotype) -> str:
        """As `SearchSpace.arch_id`, on the full space's width index: one network, one id."""
        g = self.canonical(g)
        full = (WIDTHS.index(self.widths[g[0]]), *g[1:])
        return hashlib.sha1(f"{self.name}:{'-'.join(map(str, full))}".encode()).hexdigest()[:12]

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
            self.encode(max(self.widths), full, [LARGEST_OP] * n),
            self.encode(min(self.widths), one, [MBConvOp(3, 1, False)] * n),
        )

    def manual(self) -> dict[str, Genotype]:
        v2 = [(3, t, False) for t, *_ in MOBILENET_V2_STAGES]
        out = {f"mobilenet_v2@{w:g}": self._from_stage_ops(w, v2) for w in self.widths}
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
