"""The built-in export formats: each declares its file, manifest kind and needs, and converts.

Conversions import their heavy modules (torch, onnxruntime's quantizer, TensorRT) when they
run, so listing formats stays cheap. A new format is one class like these, registered with
`@FORMATS.decorator("name")` in a module that `exporters/__init__.py` imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from exporters.base import Exporter, ExportJob, tensorrt_target
from exporters.registry import FORMATS
from targets.errors import UserError
from targets.target import Target


@FORMATS.decorator("onnx")
class OnnxFp32(Exporter):
    """model.onnx: opset pinned, dynamic batch, slimmed, checked against torch (`fp32`)."""

    file_name = "model.onnx"
    kind = "onnx"
    title = "ONNX"
    label = "fp32"
    order = 0
    always = True

    def describe(self, job: ExportJob) -> str:
        return "ONNX export, slim, parity"

    def _convert(self, job: ExportJob) -> bytes:
        from exporters.fp32 import export_fp32, parity_images

        chw = job.meta.input_shape
        images = parity_images(chw, job.test)
        data, job.parity = export_fp32(job.model, chw, job.settings, images)
        return data


@FORMATS.decorator("onnx-int8")
class OnnxInt8(Exporter):
    """model.int8.onnx: static Q/DQ INT8, calibrated on real training images (`int8`)."""

    file_name = "model.int8.onnx"
    kind = "onnx-int8"
    title = "INT8"
    label = "int8"
    order = 10
    needs_calibration = True

    def describe(self, job: ExportJob) -> str:
        return "INT8 calibration"

    def timing_target(self, target: Target) -> Target:
        if target.runtime == "tensorrt":
            return replace(target, precision="int8")  # a Q/DQ model builds as int8
        return target

    def _convert(self, job: ExportJob) -> bytes:
        from exporters.int8 import quantize_int8

        assert job.calib is not None  # checked by `check_inputs` before any work
        settings = job.settings.int8
        if any(t.runtime == "tensorrt" for t in job.targets):  # the only Q/DQ TensorRT builds
            settings = replace(settings, activations="int8-symmetric")
        data, job.calib_images = quantize_int8(job.outputs["onnx"], job.calib, settings)
        job.int8_activations = settings.activations
        return data


@FORMATS.decorator("tensorrt")
class TensorRTEngine(Exporter):
    """model.engine: built where it will run, on the first TensorRT target's device."""

    file_name = "model.engine"
    kind = "engine"
    title = "TensorRT"
    label = "TensorRT"
    order = 20
    onnx = False
    needs_tensorrt_target = True

    @classmethod
    def check(cls, formats: Sequence[str], targets: Sequence[Target]) -> None:
        super().check(formats, targets)
        chosen = tensorrt_target(targets)
        if chosen is not None and chosen.precision == "int8" and "onnx-int8" not in formats:
            raise UserError(f"{chosen.name} runs int8: add onnx-int8 to --format for its engine")

    def describe(self, job: ExportJob) -> str:
        return f"TensorRT engine for {self._target(job).name}"

    def _convert(self, job: ExportJob) -> bytes:
        """On the target's agent, or here for a local GPU target."""
        target = self._target(job)
        source = job.outputs["onnx-int8" if target.precision == "int8" else "onnx"]
        shape = (job.settings.latency_batch, *job.meta.input_shape)
        workspace_mb = job.settings.workspace_mb
        if target.agent is not None:
            from profilers.remote import agent_client_for

            with agent_client_for(target) as client:
                result = client.build_engine(source, target.precision, shape, workspace_mb)
        else:
            from profilers.trt_engine import build_engine

            result = build_engine(source, target.precision, workspace_mb, input_shape=shape)
        job.trt_version, job.engine_device = result.trt_version, result.device_name
        return result.engine_bytes

    @staticmethod
    def _target(job: ExportJob) -> Target:
        target = tensorrt_target(job.targets)
        assert target is not None  # checked by `check` before any work
        return target
