"""The model card (README.md) of a bundle: what the model is, its measured figures, and a
snippet that runs it with nothing but onnxruntime and numpy."""

from __future__ import annotations

from dataclasses import dataclass

from exporters import manifest as mf
from exporters.deploy_choice import deploy_choices


@dataclass(frozen=True)
class CardNotes:
    """What the card says that the manifest does not hold."""

    summary: str
    parity: float  # max |logit difference| between model.onnx and torch
    parity_batches: tuple[int, ...]
    opset: int
    calib_images: int | None  # None: no INT8 model
    int8_activations: str
    engine_device: str | None
    trt_version: str | None


SNIPPET = """\
import json, sys
import numpy as np, onnxruntime as ort
d = sys.argv[2] if len(sys.argv) > 2 else "."  # the bundle directory
meta = json.load(open(f"{d}/manifest.json"))
pre, (c, h, w) = meta["preprocessing"], meta["input"]["shape"][1:]
img = np.load(sys.argv[1]).astype(np.float32).reshape(h, w, c)  # pixels 0..255, H x W x C
x = ((img * pre["scale"] - pre["mean"]) / pre["std"]).transpose(2, 0, 1)[None]
session = ort.InferenceSession(f"{d}/model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {meta["input"]["name"]: x.astype(np.float32)})[0]
print(meta["classes"][int(logits.argmax())])
"""


def model_card(m: mf.Manifest, notes: CardNotes) -> str:
    """README.md: what the model is, its measured figures, and how to run it with nothing but
    onnxruntime and numpy."""
    a, src = m.architecture, m.source
    how = (
        "weights inherited from the search supernet (BatchNorm re-estimated, not retrained)"
        if src.from_supernet
        else f"trained for {src.trained_epochs:.3g} epoch(s)"
        if src.trained_epochs
        else "weights given"
    )
    intro = notes.summary or (
        f"An image classifier for {m.dataset} ({len(m.classes)} classes): `{a.genotype}` of "
        f"the `{a.space}` space (arch id `{a.arch_id}`), found by Edge Model Factory"
    )
    lines = [f"# {m.name} {m.version}", "", f"{intro}; {how}.", ""]
    lines += [
        f"- Input `{m.input.name}`: float32 NCHW {_dims(m.input.shape)}, "
        "x = (pixel * scale - mean) / std with the values in manifest.json",
        f"- Output `{m.output.name}`: {_dims(m.output.shape)}, class names in manifest.json",
        f"- {m.macs / 1e6:.2f} M MACs (batch 1, BatchNorm excluded), {m.params:,} parameters",
        f"- model.onnx matches PyTorch within {notes.parity:.1e} (max |logit difference| at "
        f"batch {', '.join(map(str, notes.parity_batches))}); opset {notes.opset}",
    ]
    if notes.calib_images:
        lines.append(
            "- model.int8.onnx: Q/DQ, int8 weights (symmetric, per channel"
            f"{', 7-bit range' if notes.int8_activations == 'uint8' else ''}), "
            f"{notes.int8_activations} activations calibrated on {notes.calib_images} "
            "training images"
        )
    if notes.engine_device:
        lines.append(
            f"- model.engine: TensorRT {notes.trt_version}, runs only on {notes.engine_device}"
        )
    if m.metrics:
        lines += ["", "## Test accuracy (onnxruntime)", "", "| File | Accuracy | Images |"]
        lines.append("|---|---:|---:|")
        lines += [
            f"| {n} | {100 * r.test_accuracy:.2f} % | {r.test_images} |"
            for n, r in m.metrics.items()
        ]
    if m.latency:
        lines += ["", "## Latency", "", "| File | Target | Batch | Median ms | p90 ms | How |"]
        lines.append("|---|---|---:|---:|---:|---|")
        lines += [
            f"| {e.artifact} | {e.target} | {e.batch} | {e.median_ms:.3f} | {e.p90_ms:.3f} "
            f"| {e.runtime}, {e.threads or 'default'} thread(s), {e.measured} |"
            for e in m.latency
        ]
        choices = deploy_choices(m)
        if choices:
            lines += ["", "Which file, by these measurements:", ""]
            lines += [f"- {c.sentence()}" for c in choices]
    lines += ["", "## Run it (`pip install onnxruntime numpy`, nothing else)", "", "```python"]
    lines += [SNIPPET.rstrip("\n"), "```", ""]
    c, h, w = m.input.shape[1:4]  # (batch, C, H, W), checked by the manifest
    mode = "L" if c == 1 else "RGB"
    lines.append(
        "Save it as `run.py` anywhere and run `python run.py image.npy BUNDLE_DIR` (the "
        "bundle directory; default: the current one), where image.npy holds one image as an "
        "H x W x C array of pixels 0..255. Make it from a picture with Pillow: "
        f"`python -c \"import numpy as np; from PIL import Image; np.save('image.npy', "
        f"np.asarray(Image.open('picture.png').convert('{mode}').resize(({w}, {h}))))\"`. "
        "manifest.json lists the sha256 of every file."
    )
    return "\n".join(lines) + "\n"


def _dims(shape: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"
