"""What an export is told: the bundle's metadata (`BundleMeta`) and how to export and measure
(`ExportSettings`, `Int8Settings`). Plain frozen data, resolved once by the caller; no torch,
so the CLI can build them before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporters import manifest as mf
from profilers.base import ProfileSettings
from targets.errors import UserError

DEFAULT_CALIB_IMAGES = 500
ACTIVATIONS = ("uint8", "int8-symmetric")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Int8Settings:
    """How to calibrate; the defaults are the documented recipe."""

    calib_images: int = DEFAULT_CALIB_IMAGES  # real training images, spread over the split
    calib_batch: int = 50
    method: str = "minmax"  # one of CALIBRATION_METHODS
    activations: str = "uint8"  # one of ACTIVATIONS; int8-symmetric for TensorRT

    def __post_init__(self) -> None:
        if self.calib_images < 1 or self.calib_batch < 1:
            raise UserError("calibration needs at least 1 image and a batch of at least 1")
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"unknown calibration method {self.method!r}; "
                f"valid: {', '.join(CALIBRATION_METHODS)}"
            )


@dataclass(frozen=True)
class BundleMeta:
    """What the weights alone do not say: names, data, preprocessing, provenance."""

    name: str  # bundle directory name: [a-z0-9][a-z0-9._-]{0,63}
    version: str
    input_shape: tuple[int, int, int]  # (C, H, W); the batch is dynamic
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of pixels scaled to [0, 1]
    std: tuple[float, ...]
    dataset: str
    architecture: mf.Architecture
    source: mf.Source
    summary: str = ""  # the model card's first sentence; a default is written when empty
    # the factory that writes the bundle (`factory.__version__`, which callers pass in:
    # `exporters` does not import `factory`); recorded in the manifest's tools
    factory_version: str = "unknown"

    def __post_init__(self) -> None:
        mf.check_name(self.name)
        mf.check_name(self.version, "version")
        c = self.input_shape[0]
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise UserError(f"input shape must be (C, H, W), got {self.input_shape}")
        if len(self.mean) != c or len(self.std) != c or min(self.std) <= 0:
            raise UserError(f"need one mean and one positive std per input channel ({c})")
        if len(self.class_names) < 2:
            raise UserError("a classifier bundle needs at least two class names")


@dataclass(frozen=True)
class ExportSettings:
    """How to export and measure; the CLI resolves these once."""

    opset: int = 17
    int8: Int8Settings = field(default_factory=Int8Settings)
    test_images: int | None = None  # None: the whole test split
    eval_batch: int = 256
    parity_atol: float = 1e-4  # max |onnxruntime - torch| on the logits
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    latency_batch: int = 1
    workspace_mb: int = 1024  # TensorRT builder workspace
    force: bool = False  # replace an existing bundle
