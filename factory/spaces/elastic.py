"""Channel slicing for elastic-width supernets (OFA style).

A supernet layer holds its weights at the widest setting; a narrower network uses the first
channels of every tensor. The forward functions here run a full-width module on fewer
channels, and `slice_state` cuts the same leading slices out of a state dict, so a network
built at the narrow width and loaded with them computes exactly what the supernet path does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of `divisor`, never more than 10 % down.

    The rule MobileNets use for width multipliers (torchvision's `_make_divisible`), so that
    our widths are exactly theirs."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def sliced_bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """`bn` on the first C channels of its statistics and affine parameters (C = x's).

    Running statistics are updated in place through the slice, with `nn.BatchNorm2d`'s own
    rule (cumulative average when momentum is None), so BN recalibration works per path."""
    c = x.shape[1]
    factor = 0.0
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    return F.batch_norm(
        x,
        bn.running_mean[:c] if bn.running_mean is not None else None,
        bn.running_var[:c] if bn.running_var is not None else None,
        bn.weight[:c] if bn.weight is not None else None,
        bn.bias[:c] if bn.bias is not None else None,
        use_batch,
        factor,
        bn.eps,
    )


def center(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The central kernel x kernel window of a conv weight (OFA's elastic kernel)."""
    full = weight.shape[-1]
    if kernel == full:
        return weight
    lo = (full - kernel) // 2
    return weight[..., lo : lo + kernel, lo : lo + kernel]


def sliced_conv(
    conv: nn.Conv2d, x: torch.Tensor, cout: int, kernel: int | None = None
) -> torch.Tensor:
    """`conv` from x's channels to `cout` channels, using the leading weight slice and, if
    `kernel` is given, the central kernel x kernel window ('same' padding kept).

    A depthwise conv (groups == in_channels) stays depthwise: groups = x's channels, and
    cout must equal them. Other convs keep their group count."""
    cin = x.shape[1]
    depthwise = conv.groups == conv.in_channels and conv.groups > 1
    groups = cin if depthwise else conv.groups
    weight = conv.weight[:cout] if depthwise else conv.weight[:cout, : cin // groups]
    padding = conv.padding
    if kernel is not None and kernel != conv.kernel_size[0]:
        weight = center(weight, kernel)
        padding = conv.dilation[0] * (kernel - 1) // 2
    bias = conv.bias[:cout] if conv.bias is not None else None
    return F.conv2d(x, weight, bias, conv.stride, padding, conv.dilation, groups)


def sliced_conv_bn(
    block: nn.Sequential, x: torch.Tensor, cout: int, kernel: int | None = None
) -> torch.Tensor:
    """A `ops.conv_bn` block (conv, BatchNorm, optional activation) at a narrower width."""
    y = sliced_bn(block[1], sliced_conv(block[0], x, cout, kernel))
    return block[2](y) if len(block) > 2 else y


def slice_state(
    full: dict[str, torch.Tensor], shapes: dict[str, torch.Size], keys: dict[str, str]
) -> dict[str, torch.Tensor]:
    """A state dict of the given shapes cut from `full`: leading slices of the channel
    dimensions, the central window of conv kernels (dimensions 2 and 3).

    `keys` maps each target key to its key in `full`; 0-d tensors (BN's batch counters)
    are copied as they are."""
    out = {}
    for key, shape in shapes.items():
        src = full[keys[key]]
        index = tuple(
            slice(0, n) if d < 2 else slice((src.shape[d] - n) // 2, (src.shape[d] + n) // 2)
            for d, n in enumerate(shape)
        )
        out[key] = src[index].detach().clone() if index else src.detach().clone()
    return out


def sliced_se(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`ops.SqueezeExcite` on x's channels: its hidden width follows them (C // 4, >= 8)."""
    c = x.shape[1]
    hidden = max(8, c // se.reduction)
    s = sliced_conv(se.fc1, x.mean((2, 3), keepdim=True), hidden)
    s = sliced_conv(se.fc2, torch.relu(s), c)
    return x * F.hardsigmoid(s)


def sliced_linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`linear` on x's features (the leading input columns of its weight), all outputs."""
    return F.linear(x, linear.weight[:, : x.shape[-1]], linear.bias)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle of however many channels x has (eager use only:
    `ops.ChannelShuffle` keeps its channel count constant so ONNX export stays static)."""
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
