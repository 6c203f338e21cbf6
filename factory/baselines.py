"""Hand-designed lightweight networks to judge a searched front against.

torchvision's MobileNetV2, MobileNetV3-Small and ShuffleNetV2 at several width multipliers,
adapted to small inputs the same way our search spaces adapt their stems: the first conv
reads the dataset's channels with the stride `stem_stride` picks (1 for 28x28 and 32x32,
where ImageNet's stride 2 + max-pool would leave a 1x1 map after the last stage), and the
classifier has the dataset's classes. Everything else, including each family's own
initialisation and dropout, is torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn
from torchvision.models import MobileNetV2, ShuffleNetV2
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

from factory.spaces.base import InputSpec
from factory.spaces.ops import stem_stride
from targets.errors import UserError
from targets.registry import Registry

Builder = Callable[[float, InputSpec], nn.Module]
FAMILIES: Registry[Builder] = Registry("baseline family")
WIDTHS: dict[str, tuple[float, ...]] = {}  # the widths `bench/baselines.py` trains by default


@dataclass(frozen=True)
class Baseline:
    """One family at one width multiplier, e.g. `mobilenet_v3_small@0.75`."""

    family: str
    width: float

    @property
    def name(self) -> str:
        return f"{self.family}@{self.width:g}"

    def build(self, spec: InputSpec) -> nn.Module:
        return FAMILIES.get(self.family)(self.width, spec)


def parse_baseline(text: str) -> Baseline:
    """`FAMILY@WIDTH` (or FAMILY alone, width 1) -> Baseline; a typo names the families."""
    family, _, width = text.partition("@")
    FAMILIES.get(family)  # raises with the known names
    try:
        value = float(width) if width else 1.0
    except ValueError:
        why = f"{text!r}: the width after @ must be a number, e.g. {family}@0.5"
        raise UserError(why) from None
    if not 0.1 <= value <= 4.0:
        raise UserError(f"{text!r}: width multiplier must be in [0.1, 4]")
    return Baseline(family, value)


def default_baselines() -> list[Baseline]:
    """Every family at its default widths, smallest network first within a family."""
    return [Baseline(f, w) for f in FAMILIES.names() for w in WIDTHS[f]]


def _stem(spec: InputSpec, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(spec.channels, out_channels, 3, stem_stride(spec), 1, bias=False)


def _register(family: str, widths: tuple[float, ...]) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        WIDTHS[family] = widths
        return FAMILIES.register(family, builder)

    return wrap


@_register("mobilenet_v2", (0.35, 0.5, 0.75, 1.0))
def mobilenet_v2(width: float, spec: InputSpec) -> nn.Module:
    model = MobileNetV2(num_classes=spec.num_classes, width_mult=width)
    first = model.features[0][0]
    model.features[0][0] = _stem(spec, first.out_channels)
    _init_conv(model.features[0][0])
    return model


# MobileNetV3-Small (Howard et al. 2019, table 2): kernel, expansion, out, SE, activation,
# stride; torchvision applies the width multiplier to every width.
_V3_SMALL = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)


@_register("mobilenet_v3_small", (0.5, 0.75, 1.0))
def mobilenet_v3_small(width: float, spec: InputSpec) -> nn.Module:
    conf = partial(InvertedResidualConfig, width_mult=width)
    settings, cin = [], 16
    for kernel, expand, out, se, act, stride in _V3_SMALL:
        settings.append(conf(cin, kernel, expand, out, se, act, stride, 1))
        cin = out
    last = InvertedResidualConfig.adjust_channels(1024, width)
    model = MobileNetV3(settings, last, num_classes=spec.num_classes)
    first = model.features[0][0]
    model.features[0][0] = _stem(spec, first.out_channels)
    _init_conv(model.features[0][0])
    return model


# ShuffleNetV2 (Ma et al. 2018, table 5): output channels of the stem, three stages, last
# conv. It is defined at these widths only: the branch widths are no multiple of one base.
_V2_CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


@_register("shufflenet_v2", (0.5, 1.0))
def shufflenet_v2(width: float, spec: InputSpec) -> nn.Module:
    if width not in _V2_CHANNELS:
        known = ", ".join(f"{w:g}" for w in _V2_CHANNELS)
        raise UserError(f"shufflenet_v2 exists at widths {known} only")
    channels = _V2_CHANNELS[width]
    model = ShuffleNetV2([4, 8, 4], list(channels), num_classes=spec.num_classes)
    model.conv1[0] = _stem(spec, channels[0])  # torchvision leaves this one at torch's init
    if min(spec.height, spec.width) <= 64:
        model.maxpool = nn.Identity()  # below 64 px the 3x3/2 max-pool only throws pixels away
    return model


def _init_conv(conv: nn.Conv2d) -> None:
    """The replaced stem gets torchvision's MobileNet conv initialisation back."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
