"""The models shipped in the package: pulled from the default registry, verified, and run with
onnxruntime on the raw Fashion-MNIST test images using only what their manifests say."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from exporters.manifest import validate_manifest
from factory.registry import pull
from factory.registry.index import Index
from factory.registry.sources import SHIPPED_REGISTRY

FMNIST = Path("/usr/share/datasets/fashion-mnist")
ENTRIES = Index.loads((SHIPPED_REGISTRY / "index.json").read_bytes()).models


def _idx(name: str, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress((FMNIST / name).read_bytes()), np.uint8, offset=offset)


def test_the_package_ships_at_least_three_models() -> None:
    assert len(ENTRIES) >= 3, [e.name for e in ENTRIES]


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_shipped_model_reproduces_its_test_accuracy(entry) -> None:
    bundle = pull(f"{entry.name}:{entry.version}").bundle.path
    manifest = validate_manifest(bundle)
    images = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1).astype(np.float32)
    labels = _idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    pre = manifest.preprocessing
    x = ((images * pre.scale - np.array(pre.mean)) / np.array(pre.std)).transpose(0, 3, 1, 2)
    for name, metrics in manifest.metrics.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(bundle / name), options, ["CPUExecutionProvider"])
        logits = np.concatenate(
            [
                session.run(None, {manifest.input.name: x[i : i + 1000].astype(np.float32)})[0]
                for i in range(0, len(x), 1000)
            ]
        )
        accuracy = float((logits.argmax(1) == labels).mean())
        assert metrics.test_images == len(labels)
        assert abs(accuracy - metrics.test_accuracy) <= 0.001, (name, accuracy)
