"""NAS-Bench-201: one cell of 4 nodes and 6 edges, 5 ops per edge (Dong & Yang, ICLR 2020).

The genotype is the op index of each edge in the benchmark's own order, which is also the
order of its architecture string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`:
edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. Node j is the sum of its incoming edges; node 3 is
the cell's output. 5^6 = 15,625 genotypes, each one row of the benchmark (its index is the
table's row order, not a closed form: `factory.tabular.table` converts).

The network is the benchmark's (C = 16, N = 5): stem conv3x3(16)-BN -> 5 cells (16) ->
residual reduction (32, stride 2) -> 5 cells (32) -> residual reduction (64) -> 5 cells (64)
-> BN-ReLU -> global pool -> linear. A reduction block is ReLU-conv3x3(s2)-BN ->
ReLU-conv3x3-BN plus a shortcut avgpool2x2 -> conv1x1. Ops: `none` (zeros), `skip_connect`,
`nor_conv_1x1` and `nor_conv_3x3` (ReLU-conv-BN), `avg_pool_3x3` (stride 1, padding not
counted). The stem takes the spec's channels (3 for CIFAR-10) and the head its classes; the
shortcut's pool uses ceil_mode so odd sides work (identical at the benchmark's 32 px).

The supernet holds one conv module per (cell, edge, parametric op), as NAS-Bench-201's own
weight-sharing baselines do; a path runs the chosen op on every edge.
"""

from __future__ import annotations

from collections import OrderedDict

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
from factory.spaces.ops import dims_key
from factory.spaces.registry import SPACES
from targets.errors import UserError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_OPS = ("nor_conv_1x1", "nor_conv_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node)
NODES = 4
STEM_WIDTH = 16  # C
# the body, stem to head: (kind, input channels, output channels); N = 5 cells per stage
BODY: tuple[tuple[str, int, int], ...] = (
    *(("cell", 16, 16),) * 5,
    ("reduction", 16, 32),
    *(("cell", 32, 32),) * 5,
    ("reduction", 32, 64),
    *(("cell", 64, 64),) * 5,
)


def arch_string(g: Genotype) -> str:
    """The benchmark's architecture string of g."""
    parts, node = [], 0
    for (to, src), op in zip(EDGES, g, strict=True):
        if to != node:
            parts.append("|")
            node = to
        parts[-1] += f"{OPS[op]}~{src}|"
    return "+".join(parts)


def parse_arch_string(text: str) -> Genotype:
    """g from a benchmark architecture string; a malformed one is a `UserError`."""
    nodes = text.strip().split("+")
    out: list[int] = []
    if len(nodes) != NODES - 1:
        raise UserError(f"NAS-Bench-201 arch string needs {NODES - 1} nodes: {text!r}")
    for to, node in enumerate(nodes, start=1):
        edges = node.strip("|").split("|")
        if len(edges) != to:
            raise UserError(f"NAS-Bench-201 arch string: node {to} needs {to} edges: {text!r}")
        for src, edge in enumerate(edges):
            op, _, source = edge.partition("~")
            if op not in OPS or source != str(src):
                raise UserError(f"NAS-Bench-201 arch string: bad edge {edge!r} in {text!r}")
            out.append(OPS.index(op))
    return tuple(out)


def relu_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """The benchmark's ReLUConvBN: ReLU -> conv (no bias, 'same' padding) -> BN."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class Zero(nn.Module):
    """The `none` op: zeros of the input's shape (the benchmark's x.mul(0.))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def make_op(op: str, c: int) -> nn.Module:
    """One edge's op at c channels (stride 1)."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    k = 1 if op == "nor_conv_1x1" else 3
    return relu_conv_bn(c, c, k)


class Cell(nn.Module):
    """A standalone cell: one module per edge (`edges.e`), summed into nodes."""

    def __init__(self, ops: Genotype, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(OPS[op], c) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> same
        nodes = [x]
        for to in range(1, NODES):
            nodes.append(sum(self.edges[e](nodes[src]) for e, (t, src) in enumerate(EDGES)
                             if t == to))  # fmt: skip
        return nodes[-1]


class ReductionBlock(nn.Module):
    """The benchmark's ResNet basic block between stages: stride 2, channels doubled."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(cin, cout, 3, stride=2)
        self.conv_b = relu_conv_bn(cout, cout, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(cin, cout, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 2C, H/2, W/2)
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Head(nn.Module):
    """BN -> ReLU -> global average pool -> linear."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        return self.fc(torch.relu(self.bn(x)).mean((2, 3)))


def _stem(spec: InputSpec) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(spec.channels, STEM_WIDTH, 3, 1, 1, bias=False), nn.BatchNorm2d(STEM_WIDTH)
    )


class NB201Net(nn.Module):
    """A standalone network: stem -> cells and reduction blocks -> head."""

    def __init__(self, spec: InputSpec, g: Genotype) -> None:
        super().__init__()
        self.stem = _stem(spec)
        self.cells = nn.ModuleList(
            Cell(g, cin) if kind == "cell" else ReductionBlock(cin, cout)
            for kind, cin, cout in BODY
        )
        self.head = Head(BODY[-1][2], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.head(x)


class _SuperCell(nn.Module):
    """Every parametric op of every edge (`edges.e.<op>`); a path runs one op per edge."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(nn.ModuleDict({op: make_op(op, c) for op in OPS}) for _ in EDGES)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:
        nodes = [x]
        for to in range(1, NODES):
            nodes.append(sum(self.edges[e][OPS[g[e]]](nodes[src])
                             for e, (t, src) in enumerate(EDGES) if t == to))  # fmt: skip
        return nodes[-1]


class NB201Supernet(Supernet):
    """Single-path weight sharing: stem, reductions and head shared; one conv per op and edge."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.stem = _stem(spec)
        self.cells = nn.ModuleList(
            _SuperCell(cin) if kind == "cell" else ReductionBlock(cin, cout)
            for kind, cin, cout in BODY
        )
        self.head = Head(BODY[-1][2], spec.num_classes)

    def forward(self, x: torch.Tensor, g: Genotype) -> torch.Tensor:  # (N, C, H, W) -> (N, K)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ReductionBlock) else cell(x, g)
        return self.head(x)


@SPACES.decorator("nb201", aliases=("nas-bench-201",))
class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space; see the module docstring."""

    def __init__(self, spec: InputSpec | None = None) -> None:
        super().__init__(spec or InputSpec(3, 32, 32, 10))

    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"edge{to}<-{src}", OPS) for to, src in EDGES)

    def parse(self, text: str) -> Genotype:
        """Also accepts the benchmark's architecture string."""
        text = text.strip()
        if text.startswith("|"):
            return parse_arch_string(text)
        return super().parse(text)

    def build(self, g: Genotype) -> NB201Net:
        return NB201Net(self.spec, self.validate(g))

    def supernet(self) -> NB201Supernet:
        return NB201Supernet(self.spec)

    def extract(self, supernet: Supernet, g: Genotype) -> dict[str, torch.Tensor]:
        """Cell edge `cells.k.edges.e.X` is the supernet's `cells.k.edges.e.<op>.X`."""
        g = self.validate(g)
        source = supernet.state_dict()
        with torch.device("meta"):
            keys = list(self.build(g).state_dict())
        out = {}
        for key in keys:
            parts = key.split(".")
            if parts[0] == "cells" and parts[2] == "edges":
                parts.insert(4, OPS[g[int(parts[3])]])
            out[key] = source[".".join(parts)].detach().clone()
        return out

    def _shapes(self) -> list[tuple[int, int, int]]:
        """Input shape (C, H, W) of each body position, then the head's."""
        h, w = self.spec.height, self.spec.width
        shapes = []
        for kind, cin, _ in BODY:
            shapes.append((cin, h, w))
            if kind == "reduction":
                h, w = -(-h // 2), -(-w // 2)
        shapes.append((BODY[-1][2], h, w))
        return shapes

    def describe(self, g: Genotype) -> list[LayerInfo]:
        g = self.validate(g)
        shapes, spec = self._shapes(), self.spec
        rows = [LayerInfo("stem", "conv3x3_bn", (STEM_WIDTH, spec.height, spec.width))]
        for i, ((kind, _, _), shape) in enumerate(zip(BODY, shapes[1:], strict=True)):
            op = "resblock_s2" if kind == "reduction" else f"cell {arch_string(g)}"
            rows.append(LayerInfo(f"{kind}{i}", op, shape))
        rows.append(LayerInfo("head", "bn_relu_gap_fc", (spec.num_classes, 1, 1)))
        return rows

    def blocks(self, g: Genotype) -> list[Block]:
        model, shapes, spec = self.build(g).eval(), self._shapes(), self.spec
        out = [Block(f"nb201_stem:{dims_key(spec.shape)}", model.stem, spec.shape)]
        for (kind, _, cout), cell, shape in zip(BODY, model.cells, shapes[:-1], strict=True):
            label = "reduction" if kind == "reduction" else f"cell{arch_string(g)}"
            out.append(Block(f"nb201_{label}:{dims_key(shape)}->{cout}", cell, shape))
        head_key = f"nb201_head:{dims_key(shapes[-1])}->{spec.num_classes}"
        out.append(Block(head_key, model.head, shapes[-1]))
        return out

    def manual(self) -> dict[str, Genotype]:
        """The benchmark paper's ResNet-like cell and the all-conv cells."""
        return OrderedDict(
            resnet=parse_arch_string(
                "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
            ),
            all_conv3x3=(OPS.index("nor_conv_3x3"),) * len(EDGES),
            all_conv1x1=(OPS.index("nor_conv_1x1"),) * len(EDGES),
        )

    def extremes(self) -> tuple[Genotype, Genotype]:
        """Every edge conv3x3; every edge a skip (all-`none` computes nothing worth training)."""
        return (OPS.index("nor_conv_3x3"),) * len(EDGES), (OPS.index("skip_connect"),) * len(EDGES)
