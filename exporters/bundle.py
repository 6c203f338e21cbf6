"""A deployable bundle: one directory per model with its ONNX, INT8 ONNX, TensorRT engine,
model card and manifest, every figure in it measured on the files themselves.

`export_bundle` takes any `nn.Module` and a `BundleMeta`, so a search run (`factory
export`) and a registry recipe (e.g. torchvision's mobilenet_v3_small) build bundles the same
way. The formats come from the registry (`exporters.registry.FORMATS`): each writes its own
file, and this module measures the ONNX ones (test accuracy, latency on every target), writes
the model card and the manifest. The bundle is assembled in a hidden temporary directory next
to the destination and renamed into place only when complete, so a failure never leaves a
partial bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

from exporters import manifest as mf
from exporters.base import Exporter, ExportJob
from exporters.fp32 import LOGITS, PARITY_BATCHES
from exporters.images import LabelledImages
from exporters.int8 import onnx_accuracy
from exporters.model_card import CardNotes, model_card
from exporters.registry import CARD_KIND, exporters_for, parse_formats
from exporters.settings import BundleMeta, ExportSettings
from profilers.measurement import Measurement
from targets.atomic import as_if_created, fsync_dir
from targets.errors import UserError
from targets.target import Target

CARD = "README.md"
PIXEL_SCALE = 1 / 255


@dataclass(frozen=True)
class Bundle:
    """A bundle written to disk, with what its manifest has no field for."""

    path: Path
    manifest: mf.Manifest
    parity_max_abs_diff: float  # model.onnx vs torch, over PARITY_BATCHES
    calib_images: int | None  # images the INT8 model was calibrated on
    seconds: float


def count_steps(formats: Sequence[str], targets: Sequence[Target], has_test: bool) -> int:
    """How many times `export_bundle` calls `on_step`, for a progress bar: one per format, one
    per ONNX file and measurement (test accuracy, latency on each target), one to finish."""
    chosen = exporters_for(parse_formats(formats))
    onnx_files = sum(e.onnx for e in chosen)
    return len(chosen) + onnx_files * (has_test + len(targets)) + 1


def export_bundle(
    model: nn.Module,
    meta: BundleMeta,
    out_dir: Path,
    formats: Sequence[str] = ("onnx", "onnx-int8"),
    targets: Sequence[Target] = (),
    calib: LabelledImages | None = None,
    test: LabelledImages | None = None,
    settings: ExportSettings | None = None,
    on_step: Callable[[str], None] | None = None,
) -> Bundle:
    """Write `out_dir/meta.name/`: model.onnx (+ model.int8.onnx, model.engine), README.md,
    manifest.json. `calib` (training images) is needed for INT8, `test` for accuracies;
    latency is measured on every target in `targets` (none: no latency)."""
    start = time.perf_counter()
    settings = settings or ExportSettings()
    formats = parse_formats(formats)
    final = check_destination(out_dir, meta.name, settings.force)
    check_request(formats, targets)
    chosen = [cls() for cls in exporters_for(formats)]
    for exporter in chosen:
        exporter.check_inputs(calib)
    test = _limited(test, settings.test_images)
    step = on_step or (lambda _: None)
    job = ExportJob(model, meta, formats, targets, calib, test, settings, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = as_if_created(Path(tempfile.mkdtemp(prefix=f".{meta.name}.partial-", dir=final.parent)))
    was_training = model.training
    try:
        model.eval()
        _build(job, chosen, tmp)
        manifest = _finish(job, tmp)
        _publish(tmp, final, settings.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.train(was_training)
    elapsed = time.perf_counter() - start
    return Bundle(final, manifest, job.parity, job.calib_images, elapsed)


# ---- the steps ------------------------------------------------------------------------------


def _build(job: ExportJob, chosen: list[Exporter], tmp: Path) -> None:
    """Every format's file, then the test accuracy and latency of each ONNX file."""
    for exporter in chosen:
        exporter.export(job, tmp)
    measured = [e for e in chosen if e.onnx]
    for exporter in measured if job.test is not None else ():
        name = exporter.file_name
        job.step(f"test accuracy of {name}")
        acc = onnx_accuracy(job.outputs[exporter.name], job.test, job.settings.eval_batch)
        job.metrics[name] = mf.ArtifactMetrics(acc.accuracy, acc.images)
    for target in job.targets:
        for exporter in measured:
            name = exporter.file_name
            job.step(f"latency of {name} on {target.name}")
            timed_on = exporter.timing_target(target)
            data, chw = job.outputs[exporter.name], job.meta.input_shape
            job.latency.append(measure_latency(data, name, timed_on, chw, job.settings))
    job.step("MACs, model card, manifest")


def measure_latency(
    data: bytes, artifact: str, target: Target, chw: tuple[int, ...], settings: ExportSettings
) -> mf.LatencyEntry:
    """One artifact timed on one target (locally or through its agent) at the latency batch."""
    from profilers.remote import profiler_for

    shape = (settings.latency_batch, *chw)
    return latency_entry(
        profiler_for(target).profile(data, target, shape, settings.profile), artifact, target
    )


def latency_entry(m: Measurement, artifact: str, target: Target) -> mf.LatencyEntry:
    s = m.latency_ms
    device = m.device.get("gpu") if m.runtime == "tensorrt" else m.device.get("cpu")
    measured = "locally" if target.agent is None else f"agent {target.agent.url}"
    return mf.LatencyEntry(
        artifact=artifact,
        target=target.name,
        batch=m.input_shape[0],
        median_ms=s.median,
        min_ms=s.min,
        p90_ms=s.p90,
        mean_ms=s.mean,
        iterations=s.n,
        runtime=f"{m.runtime} {m.runtime_version} {m.provider}",
        threads=m.threads,
        measured=measured,
        device=str(device or "unknown"),
        date=mf.utc_now(),
    )


def _finish(job: ExportJob, tmp: Path) -> mf.Manifest:
    """MACs and params, the model card, then manifest.json (last), checked like a download."""
    from profilers.flops import count_costs

    costs = count_costs(job.model, (1, *job.meta.input_shape))
    draft = _manifest(job, costs.macs, costs.params)
    (tmp / CARD).write_text(
        model_card(
            draft,
            CardNotes(
                summary=job.meta.summary,
                parity=job.parity,
                parity_batches=PARITY_BATCHES,
                opset=job.settings.opset,
                calib_images=job.calib_images,
                int8_activations=job.int8_activations or job.settings.int8.activations,
                engine_device=job.engine_device,
                trt_version=job.trt_version,
            ),
        )
    )
    files = (*job.files, mf.file_entry(tmp, CARD, CARD_KIND))
    mf.write_manifest(tmp, replace(draft, files=files))
    return mf.validate_manifest(tmp)


def _manifest(job: ExportJob, macs: int, params: int) -> mf.Manifest:
    meta = job.meta
    c, h, w = meta.input_shape
    return mf.Manifest(
        schema_version=mf.SCHEMA_VERSION,
        name=meta.name,
        version=meta.version,
        created=mf.utc_now(),
        task=mf.TASK,
        architecture=meta.architecture,
        dataset=meta.dataset,
        input=mf.InputTensor("input", ("batch", c, h, w), "float32", "NCHW"),
        output=mf.OutputTensor(LOGITS, ("batch", len(meta.class_names)), "float32"),
        preprocessing=mf.Preprocessing(PIXEL_SCALE, tuple(meta.mean), tuple(meta.std)),
        classes=tuple(meta.class_names),
        macs=macs,
        params=params,
        files=(),
        metrics=dict(job.metrics),
        latency=tuple(job.latency),
        source=meta.source,
        tools=_tools(job.meta.factory_version, job.trt_version),
    )


def _tools(factory_version: str, trt_version: str | None) -> mf.Tools:
    try:
        slim = metadata.version("onnxslim")
    except metadata.PackageNotFoundError:
        slim = None
    return mf.Tools(
        factory_version, torch.__version__, onnx.__version__, ort.__version__, slim, trt_version
    )


# ---- checks and the atomic swap ---------------------------------------------------------------


def check_destination(out_dir: Path, name: str, force: bool) -> Path:
    """`out_dir/name`, if a bundle may be written there (before any work is done)."""
    final = Path(out_dir).expanduser() / name
    _refuse_existing(final, force)
    return final


def check_request(formats: Sequence[str], targets: Sequence[Target]) -> None:
    """A UserError saying why the formats and targets cannot be exported from here, if they
    cannot; cheap, so callers check first."""
    chosen = parse_formats(formats)
    for exporter in exporters_for(chosen):
        exporter.check(chosen, targets)
    _check_local_targets(targets)


def _refuse_existing(final: Path, force: bool) -> None:
    if not final.exists():
        return
    if not force:
        raise UserError(f"{final} already exists; pass --force to replace it")
    if not final.is_dir() or not ((final / mf.MANIFEST).is_file() or not any(final.iterdir())):
        raise UserError(f"{final} exists and is not a model bundle; refusing to replace it")


def _check_local_targets(targets: Sequence[Target]) -> None:
    """A local TensorRT target needs TensorRT and a GPU here; say so before exporting."""
    from profilers.trt_engine import trt_available

    for target in targets:
        if target.runtime == "tensorrt" and target.agent is None:
            ok, reason = trt_available()
            if not ok:
                raise UserError(
                    f"target {target.name} builds and times TensorRT engines on this machine, "
                    f"but {reason}; export on the machine with the GPU, use a target with an "
                    f"agent (e.g. jetson-orin-nano), or drop tensorrt and {target.name}"
                )


def _limited(test: LabelledImages | None, images: int | None) -> LabelledImages | None:
    if images is not None and images < 1:
        raise UserError(f"test images must be at least 1, got {images}")
    if test is None or images is None or images >= len(test):
        return test
    return test.subset(torch.arange(images))


def _publish(tmp: Path, final: Path, force: bool) -> None:
    """fsync every file, then rename the directory into place (swapping out an old one)."""
    for path in tmp.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if final.exists():
        _refuse_existing(final, force)
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        final.rename(old / final.name)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    fsync_dir(final.parent)
