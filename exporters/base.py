"""The exporter base class: one export format of a bundle, and the job its exports share.

`Exporter.export()` owns what every format does alike: the progress step, the file's path in
the bundle, the temp-file-and-rename write, its sha256 and its manifest entry. A format
declares its file name, manifest kind and needs (calibration images, a TensorRT target) as
class attributes and writes only the conversion, `_convert()`. Formats register with
`@FORMATS.decorator("name")` (`exporters.registry`); the name is the `--format` value.

No torch here: format classes import their conversions when they run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from exporters import manifest as mf
from exporters.images import LabelledImages
from exporters.settings import BundleMeta, ExportSettings
from targets.atomic import write_atomic
from targets.errors import UserError
from targets.target import Target

if TYPE_CHECKING:
    from torch import nn


@dataclass
class ExportJob:
    """One bundle's inputs (checked) and what its exports accumulate."""

    model: nn.Module
    meta: BundleMeta
    formats: tuple[str, ...]
    targets: Sequence[Target]
    calib: LabelledImages | None
    test: LabelledImages | None
    settings: ExportSettings
    step: Callable[[str], None]
    outputs: dict[str, bytes] = field(default_factory=dict)  # format name -> file contents
    files: list[mf.FileEntry] = field(default_factory=list)  # in the order they were written
    metrics: dict[str, mf.ArtifactMetrics] = field(default_factory=dict)
    latency: list[mf.LatencyEntry] = field(default_factory=list)
    parity: float = 0.0  # max |onnxruntime - torch| of model.onnx
    calib_images: int | None = None  # images the INT8 model was calibrated on
    int8_activations: str | None = None  # what the INT8 model was quantized with
    trt_version: str | None = None  # the TensorRT that built the engine
    engine_device: str | None = None  # the GPU it was built on


class Exporter(ABC):
    """One deployable format. Public `export()`; subclasses write only `_convert()`."""

    name: ClassVar[str]  # the registry key and --format value, set by its registration
    file_name: ClassVar[str]  # its file in the bundle, e.g. "model.onnx"
    kind: ClassVar[str]  # its manifest kind, e.g. "onnx"
    title: ClassVar[str]  # what messages call it, e.g. "INT8"
    label: ClassVar[str]  # what reports call it next to the others, e.g. "int8"
    order: ClassVar[int]  # build order: a format that converts another's file comes after it
    always: ClassVar[bool] = False  # part of every bundle (model.onnx)
    onnx: ClassVar[bool] = True  # an ONNX file: scored on the test split, timed on each target
    needs_calibration: ClassVar[bool] = False  # needs training images to calibrate on
    needs_tensorrt_target: ClassVar[bool] = False  # built for, and where, a TensorRT target runs

    @classmethod
    def check(cls, formats: Sequence[str], targets: Sequence[Target]) -> None:
        """Refuse, before any work is done, a request this format cannot serve."""
        if cls.needs_tensorrt_target and tensorrt_target(targets) is None:
            raise UserError(
                f"--format {cls.name} needs a TensorRT target (e.g. --target cuda-gpu, or a "
                "Jetson with an agent): an engine only runs on the GPU it was built for"
            )

    @classmethod
    def check_inputs(cls, calib: LabelledImages | None) -> None:
        """Refuse an export that lacks the data this format needs."""
        if cls.needs_calibration and calib is None:
            raise UserError(f"{cls.title} export needs calibration images (a training split)")

    def export(self, job: ExportJob, bundle_dir: Path) -> mf.FileEntry:
        """Convert, write `bundle_dir/file_name` atomically, hash it; one progress step."""
        job.step(self.describe(job))
        data = self._convert(job)
        job.outputs[self.name] = data
        write_atomic(Path(bundle_dir) / self.file_name, data)
        entry = mf.file_entry(bundle_dir, self.file_name, self.kind)
        job.files.append(entry)
        return entry

    def describe(self, job: ExportJob) -> str:
        """The progress step's text."""
        return f"{self.title} export"

    def timing_target(self, target: Target) -> Target:
        """The target as this format's file is timed on it (a Q/DQ model builds as int8)."""
        return target

    @abstractmethod
    def _convert(self, job: ExportJob) -> bytes:
        """The file's contents; may read `job.outputs` of formats built before it."""


def tensorrt_target(targets: Sequence[Target]) -> Target | None:
    """The first target that runs TensorRT: engines are built for it."""
    return next((t for t in targets if t.runtime == "tensorrt"), None)
