"""MACs and parameter counts of a model: fvcore's tracer with our own counting rules.

Rules (docs/references.md, "Counting MACs"):
- one multiply-add = 1 MAC; bias additions are not counted (as in fvcore and the papers);
- BatchNorm is excluded: it folds into the preceding conv at deployment, and counting it
  (fvcore's default) inflates MobileNetV2 from the published 300 M to 314 M. The ops are
  listed under `excluded_ops` so the exclusion is visible;
- ops in `FREE_OPS` count 0: they do no multiply-adds (activations, elementwise arithmetic,
  pooling and reductions, which are additions or comparisons, and data movement);
- any other op that no handler counts is reported in `unsupported_ops`, never silently 0.

MACs are for the whole input, so a batch of 2 counts twice the MACs of a batch of 1.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from rich.table import Table
from torch import nn

from targets.errors import UserError

with warnings.catch_warnings():  # fvcore's package import jit-scripts a loss (FutureWarning)
    warnings.simplefilter("ignore")
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as fv

MACS_HEADER = "MACs (1 multiply-add = 1, BatchNorm excluded)"

# Counted, but left out of the total on purpose (folded into the conv before deployment).
EXCLUDED_OPS: frozenset[str] = frozenset({"aten::batch_norm"})

# Ops that do no multiply-adds; they count 0 MACs and are not reported as unsupported.
# fvcore also ignores its own list of shape/indexing ops and all prim:: nodes.
FREE_OPS: frozenset[str] = frozenset(
    "aten::" + op
    for op in (
        # activations: elementwise, a compare/clamp or a transcendental, not a multiply-add
        *("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_"),
        *("sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_", "hardswish", "hardswish_"),
        *("silu", "silu_", "gelu", "tanh", "tanh_", "elu", "elu_", "softmax", "log_softmax"),
        *("clamp", "clamp_", "clamp_min", "clamp_max", "abs", "neg", "exp", "sqrt"),
        # elementwise arithmetic (residual add, SE gating multiply): one op per element
        *("add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_"),
        # pooling and reductions: additions or comparisons only
        *("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"),
        *("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"),
        *("mean", "sum", "amax", "max", "min", "argmax"),
        # data movement and shape
        *("cat", "stack", "view", "reshape", "flatten", "transpose", "permute", "contiguous"),
        *("chunk", "split", "slice", "select", "squeeze", "unsqueeze", "expand", "pad"),
        *("constant_pad_nd", "pixel_shuffle", "channel_shuffle", "upsample_nearest2d"),
        *("dropout", "dropout_", "feature_dropout", "alpha_dropout", "detach", "to"),
    )
)


def _conv_macs(out_shape: list[int], weight_shape: list[int]) -> int:
    """Direct-conv MACs: every output position does prod(weight) / cout multiply-adds per
    output channel, i.e. N * Hout * Wout * cout * cin/groups * kh * kw."""
    return math.prod(out_shape[:1] + out_shape[2:]) * math.prod(weight_shape)


def _conv_mode_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """`aten::_convolution_mode`: a conv with string padding ('same'/'valid'); fvcore has none."""
    return _conv_macs(fv.get_shape(outputs[0]), fv.get_shape(inputs[1]))


def _norm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """Layer/group/instance norm, our choice: 2 MACs per element — one for the squares of the
    variance, one for the folded scale-and-shift. Unlike BN these do not fold into a conv."""
    return 2 * math.prod(fv.get_shape(inputs[0]))


# Handlers of the ops that do multiply-adds. Matmul-like and conv counts are fvcore's.
MAC_HANDLES: dict[str, Callable[[list[Any], list[Any]], Any]] = {
    "aten::_convolution": fv.conv_flop_jit,
    "aten::_convolution_mode": _conv_mode_macs,
    "aten::linear": fv.linear_flop_jit,
    "aten::addmm": fv.addmm_flop_jit,
    "aten::mm": fv.matmul_flop_jit,
    "aten::matmul": fv.matmul_flop_jit,
    "aten::bmm": fv.bmm_flop_jit,
    "aten::einsum": fv.einsum_flop_jit,
    "aten::layer_norm": _norm_macs,
    "aten::group_norm": _norm_macs,
    "aten::instance_norm": _norm_macs,
    "aten::upsample_bilinear2d": fv.elementwise_flop_counter(0, 4),  # 4 taps per output
    "aten::grid_sampler": fv.elementwise_flop_counter(0, 4),  # assumes bilinear
}


@dataclass(frozen=True)
class LayerCost:
    """Cost of one module's own ops and parameters (its children are rows of their own)."""

    name: str  # dotted module name; "" is the model itself
    type: str  # class name, e.g. "Conv2d"
    macs: int
    params: int


@dataclass(frozen=True)
class CostReport:
    """MACs and parameters of a model at one input shape."""

    macs: int
    params: int
    per_layer: list[LayerCost]
    unsupported_ops: dict[str, int]  # op → count of ops with MACs we could not count
    excluded_ops: dict[str, int]  # op → count of ops left out on purpose (BatchNorm)

    @property
    def complete(self) -> bool:
        """True when every op was counted or known to be free or excluded."""
        return not self.unsupported_ops


def count_costs(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    """Count MACs and params of `model` on a zero input of `input_shape` (batch included).

    Runs in eval mode under no_grad; every module's training flag is restored afterwards.
    """
    _check_shape(input_shape)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        analysis = _analyse(model, _zeros_like_model(model, input_shape))
        by_module = analysis.by_module()
        uncounted = analysis.unsupported_ops("")
    finally:
        for module, training in flags:
            module.training = training
    return CostReport(
        macs=_whole(by_module[""]),
        params=sum(p.numel() for p in model.parameters()),
        per_layer=_per_layer(model, by_module),
        unsupported_ops={k: v for k, v in uncounted.items() if k not in EXCLUDED_OPS},
        excluded_ops={k: v for k, v in uncounted.items() if k in EXCLUDED_OPS},
    )


def _check_shape(input_shape: tuple[int, ...]) -> None:
    dims = tuple(input_shape)
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise UserError(f"input shape must be positive integers, batch first; got {dims}")


def _zeros_like_model(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros on the model's device and in its floating dtype (float32 if it has no tensors)."""
    ref = next(iter([*model.parameters(), *model.buffers()]), None)
    if ref is None or not ref.is_floating_point():
        return torch.zeros(input_shape)
    return torch.zeros(input_shape, device=ref.device, dtype=ref.dtype)


def _analyse(model: nn.Module, x: torch.Tensor) -> FlopCountAnalysis:
    """Trace once with our handlers; fvcore's own warnings are silenced (we report ops)."""
    analysis = FlopCountAnalysis(model, (x,)).clear_op_handles()
    analysis.set_op_handle(**MAC_HANDLES)
    analysis.set_op_handle(**dict.fromkeys(FREE_OPS))  # None handle = ignored op
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    try:
        with torch.no_grad():
            analysis.by_module()  # runs the trace; stats are cached on the analysis
    except RuntimeError as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model cannot run on input shape {tuple(x.shape)}: {msg}") from err
    return analysis


def _per_layer(model: nn.Module, by_module: Counter[str]) -> list[LayerCost]:
    """Rows for modules with own MACs or own params, in `named_modules` order.

    fvcore credits an op to its module and every ancestor, so a module's own MACs are its
    total minus its direct children's. Tied parameters count once, at their first owner.
    """
    rows, seen = [], set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = sum(by_module.get(prefix + c, 0) for c, _ in module.named_children())
        macs = _whole(by_module.get(name, 0) - children)
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        params = sum(p.numel() for p in own)
        if macs or params:
            rows.append(LayerCost(name, type(module).__name__, macs, params))
    return rows


def _whole(count: float) -> int:
    """fvcore's counts may be floats (elementwise handlers) or numpy scalars."""
    return math.floor(count + 0.5)


def format_table(report: CostReport, title: str = "Model cost") -> Table:
    """A rich table: one row per layer, then totals; uncounted ops in the caption."""
    table = Table(title=title, show_footer=True)
    table.add_column("Layer", footer="total")
    table.add_column("Type")
    table.add_column(MACS_HEADER, justify="right", footer=f"{report.macs:,}")
    table.add_column("Params", justify="right", footer=f"{report.params:,}")
    for row in report.per_layer:
        table.add_row(row.name or "(model)", row.type, f"{row.macs:,}", f"{row.params:,}")
    notes = []
    if report.excluded_ops:
        notes.append("excluded: " + _ops_text(report.excluded_ops))
    if report.unsupported_ops:
        notes.append("NOT COUNTED (unsupported): " + _ops_text(report.unsupported_ops))
    table.caption = "; ".join(notes) or None
    return table


def _ops_text(ops: dict[str, int]) -> str:
    return ", ".join(f"{op} ×{n}" for op, n in sorted(ops.items()))
