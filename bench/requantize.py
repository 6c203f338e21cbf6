"""Re-quantize the shipped models' INT8 files with today's exporter and ship them as patch
versions; the versions they replace leave the shipped registry.

Why: until 2026-12-07 the exporter quantized weights to 8 bits for ONNX Runtime's uint8 path,
whose u8s8 kernels saturate int16 on x86 CPUs without VNNI. On an AVX2-only AMD EPYC a
shipped shufflenet's INT8 file scored 78.55 % instead of the 89.81 % its manifest records
(measured on a VNNI Xeon). The FP32 files and weights are unchanged: each new version keeps
model.onnx, re-quantizes it (`exporters.int8.quantize_int8`, 500 evenly spaced training
images), re-measures both files' test accuracy and latency on x86-cpu on this machine, and
rewrites the manifest and model card. Run it alone: it times models.

    python bench/requantize.py [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "factory" / "registry" / "shipped"
INT8, FP32, CARD = "model.int8.onnx", "model.onnx", "README.md"


def patch_bump(version: str) -> str:
    major, minor, patch = (int(x) for x in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def card_notes(old_card: str):
    """What the old card said that the manifest does not hold (intro, parity, opset)."""
    from exporters.fp32 import PARITY_BATCHES
    from exporters.model_card import CardNotes

    intro = old_card.splitlines()[2].rsplit("; ", 1)[0]
    parity = float(re.search(r"matches PyTorch within ([0-9.e+-]+)", old_card).group(1))
    opset = int(re.search(r"opset (\d+)", old_card).group(1))
    return CardNotes(intro, parity, PARITY_BATCHES, opset, None, "uint8", None, None)


def requantize(bundle: Path, out: Path, data, settings) -> None:
    """`bundle` as a new patch version in `out`: new INT8 file, figures, manifest and card."""
    import onnx
    import onnxruntime as ort

    from exporters import manifest as mf
    from exporters.bundle import measure_latency
    from exporters.int8 import onnx_accuracy, quantize_int8
    from exporters.model_card import model_card
    from targets import get_target

    old = mf.read_manifest(bundle)
    shutil.copy2(bundle / FP32, out / FP32)
    int8, calib_images = quantize_int8((bundle / FP32).read_bytes(), data.train, settings.int8)
    (out / INT8).write_bytes(int8)
    metrics = {}
    for name in (FP32, INT8):
        acc = onnx_accuracy(out / name, data.test, threads=1)
        metrics[name] = mf.ArtifactMetrics(acc.accuracy, acc.images)
        print(f"  {name}: {100 * acc.accuracy:.2f} % (manifest said "
              f"{100 * old.metrics[name].test_accuracy:.2f} %)", flush=True)  # fmt: skip
    target = get_target("x86-cpu")
    chw = tuple(int(d) for d in old.input.shape[1:])
    latency = tuple(measure_latency((out / n).read_bytes(), n, target, chw, settings)
                    for n in (FP32, INT8))  # fmt: skip
    for e in latency:
        print(f"  {e.artifact}: {e.median_ms:.3f} ms median on {e.device}", flush=True)
    # model.onnx and its torch stay the old export's; the INT8 file and every figure come from
    # this onnx and onnxruntime (its quantizer, its sessions)
    tools = dataclasses.replace(old.tools, onnx=onnx.__version__, onnxruntime=ort.__version__)
    draft = dataclasses.replace(
        old, version=patch_bump(old.version), created=mf.utc_now(), metrics=metrics,
        latency=latency, files=(), tools=tools,
    )  # fmt: skip
    notes = dataclasses.replace(card_notes((bundle / CARD).read_text()), calib_images=calib_images)
    (out / CARD).write_text(model_card(draft, notes))
    files = tuple(mf.file_entry(out, n, k) for n, k in
                  ((FP32, "onnx"), (INT8, "onnx-int8"), (CARD, "card")))  # fmt: skip
    mf.write_manifest(out, dataclasses.replace(draft, files=files))
    mf.validate_manifest(out)


def drop_versions(refs: set[str]) -> None:
    """Remove `refs` from the shipped index and delete the blobs nothing references now."""
    from factory.registry.index import Index, blob_relpath
    from factory.registry.publish import read_index_file
    from targets.atomic import write_atomic

    index = read_index_file(SHIPPED)
    kept = Index(tuple(e for e in index.models if e.ref not in refs))
    write_atomic(SHIPPED / "index.json", kept.dumps())
    used = {blob_relpath(s) for e in kept.models for s in (e.manifest_sha256, *e.files.values())}
    for blob in (SHIPPED / "blobs").rglob("*"):
        if blob.is_file() and str(blob.relative_to(SHIPPED)) not in used:
            blob.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="build, measure, do not ship")
    args = parser.parse_args()
    from exporters.settings import ExportSettings
    from factory.data import load_dataset
    from factory.registry import pull
    from factory.registry.publish import push, read_index_file

    data, settings = load_dataset("fashion-mnist"), ExportSettings()
    old_refs = {e.ref for e in read_index_file(SHIPPED).models}
    with tempfile.TemporaryDirectory(prefix="emf-requantize-") as tmp:
        for ref in sorted(old_refs):
            print(ref, flush=True)
            out = Path(tmp) / ref.replace(":", "-")
            out.mkdir()
            requantize(pull(ref, SHIPPED).bundle.path, out, data, settings)
            if not args.dry_run:
                print(f"  shipped as {push(out, SHIPPED).entry.ref}", flush=True)
    if not args.dry_run:
        drop_versions(old_refs)


if __name__ == "__main__":
    sys.exit(main())
