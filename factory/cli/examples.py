"""The examples that end each command's `--help`, with how long the long commands take on a
small machine (2 CPU cores). Click prints a paragraph after a \\b line as written."""

from __future__ import annotations


def examples(*lines: str, duration: str | None = None) -> str:
    """An epilog: 'Examples:' and the command lines, then the expected duration."""
    body = "\n".join(f"  {line}" for line in lines)
    text = f"Examples:\n\n\b\n{body}"
    return f"{text}\n\n{duration}" if duration else text


SEARCH = examples(
    "factory search --space shufflenet --generations 2 --out runs/try",
    "factory search --resume runs/try        # after Ctrl-C, SIGTERM or a crash",
    duration="Duration: the default quick preset takes about 15-20 min on a quiet 2-core CPU "
    "with the default threads (all cores), up to 30 min with --threads 1 (which keeps a "
    "shared machine usable); --time 20m caps the generations, then the final rescoring "
    "takes a few minutes more.",
)
REPORT = examples(
    "factory report runs/try",
    "factory report runs/try --markdown    # runs/try/report.md, with plots",
)
TRAIN = examples(
    "factory train runs/try --pareto --epochs 1",
    "factory train runs/try -c shufflenet_g3 --device cuda",
    duration="Duration: about 5 min per epoch per model of Fashion-MNIST on a 2-core CPU; "
    "seconds per epoch on a GPU.",
)
EXPORT = examples(
    "factory export runs/try --pareto",
    "factory export runs/try -c shufflenet_g3 --from-supernet --format onnx",
    duration="Duration: about 1 min per model on a 2-core CPU (INT8 calibration, test "
    "accuracy and latency of each file).",
)
PUSH = examples(
    "factory push runs/try/export/fmnist-shufflenet_g3 --registry ~/models",
    "python -m http.server -d ~/models 8000  # then share http://HOST:8000",
)
MODELS = examples("factory models", "factory models --registry https://models.example.com --json")
PULL = examples(
    "factory pull fmnist-small-shufflenet-4ccbcda569cc --out models/",
    "factory pull torchvision/mobilenet_v3_small -t x86-cpu",
)
AGENT = examples(
    "factory agent                            # loopback, port 8765",
    "factory agent --host 0.0.0.0 --token-file ~/.emf-token",
)
TARGETS = examples("factory targets", "factory targets show jetson --json")
TARGETS_SHOW = examples("factory targets show x86-cpu", "factory targets show rpi4 --json")
SPACES = examples("factory spaces", "factory spaces show shufflenet --sample 2")
SPACES_SHOW = examples(
    "factory spaces show mobilenet",
    "factory spaces show vgg -g vgg11 --input-shape 3x32x32 --json",
)
PROFILE = examples(
    "factory profile mobilenet:mobilenet_v2@0.5",
    "factory profile model.onnx -t x86-cpu --json",
    "factory profile lut build --space shufflenet",
)
PROFILE_MODEL = examples(
    "factory profile mobilenet:mobilenet_v2@0.5",
    "factory profile torchvision:mobilenet_v3_small --per-op",
    "factory profile model.onnx --input-shape 1x1x28x28 -t x86-cpu --json",
    duration="Duration: a few seconds per model (export, 200 ms warm-up, >= 1 s timed).",
)
LUT = examples(
    "factory profile lut build --space shufflenet",
    "factory profile lut validate --space shufflenet --archs 20",
)
LUT_BUILD = examples(
    "factory profile lut build --space shufflenet",
    "factory profile lut build --space mobilenet -t x86-cpu --force",
    duration="Duration: about 1 min (shufflenet) to 3 min (vgg) on a 2-core CPU.",
)
LUT_VALIDATE = examples(
    "factory profile lut validate --space shufflenet",
    "factory profile lut validate --space mobilenet --archs 20 --json",
    duration="Duration: about 1-2 min for 50 architectures on a 2-core CPU.",
)
