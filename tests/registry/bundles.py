"""Small real bundles (a tiny ONNX classifier + README + manifest.json with real hashes) and
real HTTP servers on 127.0.0.1 for the registry tests: a static one, and ones that cut a
download short. Shared by tests/registry and tests/cli."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from exporters.onnx_export import export_onnx

if TYPE_CHECKING:
    from exporters.settings import BundleMeta
    from factory.data import DatasetInfo

INPUT_SHAPE = (1, 1, 28, 28)  # (N, C, H, W), Fashion-MNIST-like
CLASSES = [f"class{i}" for i in range(10)]


@functools.cache
def tiny_onnx(seed: int = 0) -> bytes:
    """A conv -> pool -> linear classifier exported with a dynamic batch (checked vs torch)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )
    return export_onnx(model, INPUT_SHAPE, dynamic_batch=True).data


def bundle_meta(info: DatasetInfo, name: str = "tiny-cnn", arch: str = "tiny-cnn") -> BundleMeta:
    """The export metadata of a test network trained on `info`'s dataset (one epoch)."""
    from exporters import manifest as mf
    from exporters.settings import BundleMeta

    return BundleMeta(
        name,
        "1.0.0",
        info.input_shape,
        info.class_names,
        info.mean,
        info.std,
        info.name,
        mf.Architecture("test", arch, "0123456789ab"),
        mf.Source(None, 1.0, False),
    )


def write_bundle(
    parent: Path,
    name: str = "tiny",
    version: str = "1.0.0",
    *,
    seed: int = 0,
    accuracy: float = 0.5,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A bundle directory `parent/<name>-<version>` with a manifest in the exporter's format."""
    bundle = parent / f"{name}-{version}"
    bundle.mkdir(parents=True)
    files = {"model.onnx": tiny_onnx(seed), "README.md": f"# {name} {version}\n".encode()}
    files |= extra or {}
    for path, data in files.items():
        (bundle / path).write_bytes(data)
    manifest = _manifest(name, version, files, accuracy)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bundle


def rewrite_manifest(bundle: Path, **changes: object) -> None:
    """Change top-level manifest keys (e.g. a bad `files` list) and save it."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest, indent=2))


def _manifest(name: str, version: str, files: dict[str, bytes], accuracy: float) -> dict:
    kinds = {"model.onnx": "onnx", "model.int8.onnx": "onnx-int8", "README.md": "card"}
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "created": "2026-11-22T13:00:00Z",
        "task": "image-classification",
        "architecture": {"space": "tiny", "genotype": "0", "arch_id": "000000000000"},
        "dataset": "fashion-mnist",
        "input": {
            "name": "input",
            "shape": ["batch", 1, 28, 28],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "output": {"name": "output", "shape": ["batch", 10], "dtype": "float32"},
        "preprocessing": {"scale": 1 / 255, "mean": [0.286], "std": [0.353]},
        "classes": CLASSES,
        "macs": 28_264,  # conv 4*9*28*28 + linear 4*10
        "params": 90,
        "files": [
            {
                "path": p,
                "kind": kinds.get(p, "other"),
                "sha256": hashlib.sha256(d).hexdigest(),
                "bytes": len(d),
            }
            for p, d in files.items()
        ],
        "metrics": {"model.onnx": {"test_accuracy": accuracy, "test_images": 10000}},
        "latency": [
            {
                "artifact": "model.onnx",
                "target": "x86-cpu",
                "batch": 1,
                "median_ms": 0.05,
                "min_ms": 0.04,
                "p90_ms": 0.06,
                "mean_ms": 0.05,
                "iterations": 100,
                "runtime": "onnxruntime",
                "threads": 1,
                "measured": "locally",
                "device": "cpu",
                "date": "2026-11-22T13:00:00Z",
            }
        ],
        "source": {"run": "runs/tiny", "trained_epochs": 1, "from_supernet": False},
        "tools": {
            "factory": "0.1.0",
            "torch": torch.__version__,
            "onnx": "x",
            "onnxruntime": "x",
            "onnxslim": None,
            "tensorrt": None,
        },
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


class _CutShort(_Quiet):
    """Serves index.json and JSON blobs (manifests) whole, but cuts every other blob in half:
    with the full Content-Length announced (`announce`), or close-delimited."""

    announce = True
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        data = path.read_bytes() if path.is_file() else None
        if data is None or "/blobs/" not in self.path or data.startswith(b"{"):
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.announce:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@contextlib.contextmanager
def serve(root: Path, mode: str = "static") -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (free port) serving `root`, in a thread; yields its URL.
    `mode`: "static", "cut" (Content-Length then half the body), "cut-nolength"."""
    handler: type[http.server.SimpleHTTPRequestHandler] = _Quiet
    if mode != "static":
        handler = type("Cut", (_CutShort,), {"announce": mode == "cut"})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def files_under(root: Path) -> list[str]:
    """Every file (not directory) below `root`, relative, sorted: what a failure left behind."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
