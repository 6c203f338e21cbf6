"""A deployable bundle: one directory per model with its ONNX, INT8 ONNX, TensorRT engine,
model card and manifest, every figure in it measured on the files themselves.

`export_bundle` takes any `nn.Module` and a `BundleMeta`, so a search run (`factory
export`) and a registry recipe (e.g. torchvision's mobilenet_v3_small) build bundles the same
way. The bundle is assembled in a hidden temporary directory next to the destination and
renamed into place only when complete, so a failure never leaves a partial bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from exporters import manifest as mf
from exporters.int8 import Int8Settings, onnx_accuracy, quantize_int8
from exporters.model_card import CardNotes, model_card
from exporters.onnx_export import OUTPUT_NAME, OnnxParityError, export_onnx
from factory.data import Split
from profilers.base import ProfileSettings
from profilers.measurement import Measurement
from targets.atomic import as_if_created, fsync_dir
from targets.errors import UserError
from targets.target import Target

FORMATS = ("onnx", "onnx-int8", "tensorrt")
ARTIFACTS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "tensorrt": "model.engine"}
KINDS = {"model.onnx": "onnx", "model.int8.onnx": "onnx-int8", "model.engine": "engine"}
CARD = "README.md"
PARITY_BATCHES = (1, 2, 7)  # dynamic batch: 1, an even and an odd size
LOGITS = "logits"
PIXEL_SCALE = 1 / 255


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


@dataclass(frozen=True)
class Bundle:
    """A bundle written to disk, with what its manifest has no field for."""

    path: Path
    manifest: mf.Manifest
    parity_max_abs_diff: float  # model.onnx vs torch, over PARITY_BATCHES
    calib_images: int | None  # images the INT8 model was calibrated on
    seconds: float


@dataclass
class _Job:
    """One export's inputs (checked) and what its steps accumulate."""

    model: nn.Module
    meta: BundleMeta
    formats: tuple[str, ...]
    targets: Sequence[Target]
    engine_target: Target | None
    calib: Split | None
    test: Split | None
    settings: ExportSettings
    step: Callable[[str], None]
    artifacts: dict[str, bytes] = field(default_factory=dict)  # file name -> contents
    metrics: dict[str, mf.ArtifactMetrics] = field(default_factory=dict)
    latency: list[mf.LatencyEntry] = field(default_factory=list)
    parity: float = 0.0
    calib_images: int | None = None
    trt_version: str | None = None
    engine_device: str | None = None


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """'onnx,onnx-int8' -> ('onnx', 'onnx-int8'); model.onnx is always part of a bundle."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    unknown = [n for n in names if n and n not in FORMATS]
    if unknown:
        raise UserError(f"unknown export format {unknown[0]!r}; valid: {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f == "onnx" or f in names)


def count_steps(formats: Sequence[str], targets: Sequence[Target], has_test: bool) -> int:
    """How many times `export_bundle` calls `on_step`, for a progress bar."""
    onnx_files = 1 + ("onnx-int8" in formats)
    return onnx_files + ("tensorrt" in formats) + onnx_files * (has_test + len(targets)) + 1


def export_bundle(
    model: nn.Module,
    meta: BundleMeta,
    out_dir: Path,
    formats: Sequence[str] = ("onnx", "onnx-int8"),
    targets: Sequence[Target] = (),
    calib: Split | None = None,
    test: Split | None = None,
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
    engine_target = check_request(formats, targets)
    if "onnx-int8" in formats and calib is None:
        raise UserError("INT8 export needs calibration images (a training split)")
    test = _limited(test, settings.test_images)
    if any(t.runtime == "tensorrt" for t in targets):  # the only Q/DQ TensorRT builds
        settings = replace(settings, int8=replace(settings.int8, activations="int8-symmetric"))
    step = on_step or (lambda _: None)
    job = _Job(model, meta, formats, targets, engine_target, calib, test, settings, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = as_if_created(Path(tempfile.mkdtemp(prefix=f".{meta.name}.partial-", dir=final.parent)))
    was_training = model.training
    try:
        model.eval()
        _build(job, tmp)
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


def _build(job: _Job, tmp: Path) -> None:
    job.step("ONNX export, slim, parity")
    images = _parity_images(job.meta, job.test)
    fp32, job.parity = export_fp32(job.model, job.meta.input_shape, job.settings, images)
    job.artifacts[ARTIFACTS["onnx"]] = fp32
    if "onnx-int8" in job.formats and job.calib is not None:
        job.step("INT8 calibration")
        int8, job.calib_images = quantize_int8(fp32, job.calib, job.settings.int8)
        job.artifacts[ARTIFACTS["onnx-int8"]] = int8
    onnx_files = list(job.artifacts.items())
    if job.engine_target is not None:
        job.step(f"TensorRT engine for {job.engine_target.name}")
        job.artifacts[ARTIFACTS["tensorrt"]] = _engine(job, job.engine_target)
    for name, data in job.artifacts.items():
        (tmp / name).write_bytes(data)
    for name, data in onnx_files if job.test is not None else ():
        job.step(f"test accuracy of {name}")
        acc = onnx_accuracy(data, job.test, job.settings.eval_batch)
        job.metrics[name] = mf.ArtifactMetrics(acc.accuracy, acc.images)
    for target in job.targets:
        for name, data in onnx_files:
            job.step(f"latency of {name} on {target.name}")
            chw = job.meta.input_shape
            job.latency.append(measure_latency(data, name, target, chw, job.settings))
    job.step("MACs, model card, manifest")


def export_fp32(
    model: nn.Module, chw: tuple[int, int, int], settings: ExportSettings, images: np.ndarray
) -> tuple[bytes, float]:
    """model.onnx: pinned opset, dynamic batch, output named 'logits', slimmed with onnxslim,
    then checked against torch at batch 1, 2 and 7; returns it and the worst difference."""
    import onnxslim

    exported = export_onnx(
        model, (1, *chw), opset=settings.opset, dynamic_batch=True, check_parity=False
    )
    proto = onnx.load_model_from_string(exported.data)
    _rename_tensor(proto, OUTPUT_NAME, LOGITS)
    try:
        slim = onnxslim.slim(proto)
    except Exception as exc:  # onnxslim raises what its passes raise
        raise UserError(f"onnxslim failed on the exported model: {exc}") from exc
    opsets = [o.version for o in slim.opset_import if o.domain in ("", "ai.onnx")]
    batch = slim.graph.input[0].type.tensor_type.shape.dim[0]
    if opsets != [settings.opset] or not batch.dim_param:
        raise UserError(f"onnxslim changed the opset ({opsets}) or fixed the batch dimension")
    data = slim.SerializeToString()
    return data, check_parity(model, data, images, settings.parity_atol)


def check_parity(model: nn.Module, data: bytes, images: np.ndarray, atol: float) -> float:
    """Worst |onnxruntime - torch| over the first 1, 2 and 7 images; beyond `atol` it raises."""
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    param = next(model.parameters(), None)
    worst = 0.0
    for batch in PARITY_BATCHES:
        x = images[:batch]
        with torch.no_grad():
            ref = model(torch.from_numpy(x).to(param.device if param is not None else "cpu"))
        got, expected = session.run(None, {name: x})[0], ref.detach().cpu().numpy()
        if got.shape != expected.shape:
            raise OnnxParityError(f"ONNX output {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
        if worst > atol:
            raise OnnxParityError(
                f"model.onnx differs from torch by {worst:.3g} at batch {batch} (limit {atol:g})"
            )
    return worst


def measure_latency(
    data: bytes, artifact: str, target: Target, chw: tuple[int, ...], settings: ExportSettings
) -> mf.LatencyEntry:
    """One artifact timed on one target (locally or through its agent) at the latency batch."""
    from profilers.remote import profiler_for

    if artifact == ARTIFACTS["onnx-int8"] and target.runtime == "tensorrt":
        target = replace(target, precision="int8")  # a Q/DQ model builds as int8
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


def _engine(job: _Job, target: Target) -> bytes:
    """Built where it will run: on the target's agent, or here for a local GPU target."""
    source = job.artifacts[ARTIFACTS["onnx-int8" if target.precision == "int8" else "onnx"]]
    shape = (job.settings.latency_batch, *job.meta.input_shape)
    workspace_mb = job.settings.workspace_mb
    if target.agent is not None:
        from profilers.agent_client import AgentClient
        from profilers.remote import agent_token

        with AgentClient(target.agent.url, agent_token(target.name, target.agent)) as client:
            result = client.build_engine(source, target.precision, shape, workspace_mb)
    else:
        from profilers.trt_engine import build_engine

        result = build_engine(source, target.precision, workspace_mb, input_shape=shape)
    job.trt_version, job.engine_device = result.trt_version, result.device_name
    return result.engine_bytes


def _finish(job: _Job, tmp: Path) -> mf.Manifest:
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
                int8_activations=job.settings.int8.activations,
                engine_device=job.engine_device,
                trt_version=job.trt_version,
            ),
        )
    )
    names = [*job.artifacts, CARD]
    files = tuple(mf.file_entry(tmp, n, KINDS.get(n, "card")) for n in names)
    mf.write_manifest(tmp, replace(draft, files=files))
    return mf.validate_manifest(tmp)


def _manifest(job: _Job, macs: int, params: int) -> mf.Manifest:
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
        tools=_tools(job.trt_version),
    )


def _tools(trt_version: str | None) -> mf.Tools:
    from factory import __version__

    try:
        slim = metadata.version("onnxslim")
    except metadata.PackageNotFoundError:
        slim = None
    return mf.Tools(
        __version__, torch.__version__, onnx.__version__, ort.__version__, slim, trt_version
    )


# ---- checks and the atomic swap ---------------------------------------------------------------


def check_destination(out_dir: Path, name: str, force: bool) -> Path:
    """`out_dir/name`, if a bundle may be written there (before any work is done)."""
    final = Path(out_dir).expanduser() / name
    _refuse_existing(final, force)
    return final


def check_request(formats: Sequence[str], targets: Sequence[Target]) -> Target | None:
    """The target an engine will be built for (None: no engine), or a UserError saying why
    the formats and targets cannot be exported from here; cheap, so callers check first."""
    engine_target = _engine_target(parse_formats(formats), targets)
    _check_local_targets(targets)
    return engine_target


def _refuse_existing(final: Path, force: bool) -> None:
    if not final.exists():
        return
    if not force:
        raise UserError(f"{final} already exists; pass --force to replace it")
    if not final.is_dir() or not ((final / mf.MANIFEST).is_file() or not any(final.iterdir())):
        raise UserError(f"{final} exists and is not a model bundle; refusing to replace it")


def _engine_target(formats: tuple[str, ...], targets: Sequence[Target]) -> Target | None:
    """The target the engine is built for, checked before any work is done."""
    if "tensorrt" not in formats:
        return None
    chosen = next((t for t in targets if t.runtime == "tensorrt"), None)
    if chosen is None:
        raise UserError(
            "--format tensorrt needs a TensorRT target (e.g. --target cuda-gpu, or a Jetson "
            "with an agent): an engine only runs on the GPU it was built for"
        )
    if chosen.precision == "int8" and "onnx-int8" not in formats:
        raise UserError(f"{chosen.name} runs int8: add onnx-int8 to --format for its engine")
    return chosen


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


def _limited(test: Split | None, images: int | None) -> Split | None:
    if images is not None and images < 1:
        raise UserError(f"test images must be at least 1, got {images}")
    if test is None or images is None or images >= len(test):
        return test
    return test.subset(torch.arange(images))


def _parity_images(meta: BundleMeta, test: Split | None) -> np.ndarray:
    """Real test images when there are enough, else a fixed normal draw (N, C, H, W)."""
    n = max(PARITY_BATCHES)
    if test is not None and len(test) >= n:
        return test.take(torch.arange(n))[0].numpy().astype(np.float32)
    return np.random.default_rng(0).standard_normal((n, *meta.input_shape)).astype(np.float32)


def _rename_tensor(proto: onnx.ModelProto, old: str, new: str) -> None:
    for node in proto.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for info in [*proto.graph.output, *proto.graph.value_info]:
        if info.name == old:
            info.name = new


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
