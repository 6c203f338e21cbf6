"""push -> registry (directory or a real HTTP server on 127.0.0.1) -> pull into the cache,
and every way that must be refused: tampered blobs, cut downloads, paths out of the cache,
conflicting pushes. The pulled ONNX is run in ONNX Runtime."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from factory.registry import ChecksumError, Index, pull, push
from factory.registry.cache import bundle_cache_path, models_dir
from factory.registry.engine import engine_precision, input_shape_of
from factory.registry.fetch import copy_bundle
from factory.registry.index import blob_relpath
from factory.registry.publish import read_bundle
from targets.errors import UnknownNameError, UserError
from tests.agent_process import running_agent
from tests.registry.bundles import (
    bundle_meta,
    files_under,
    rewrite_manifest,
    serve,
    tiny_onnx,
    write_bundle,
)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A directory registry holding tiny:1.0.0."""
    root = tmp_path / "registry"
    push(write_bundle(tmp_path / "bundles"), root)
    return root


def cache_root() -> Path:
    return Path(os.environ["EMF_CACHE_DIR"])


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def tamper(registry: Path, sha: str) -> None:
    blob = registry / blob_relpath(sha)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped
    blob.write_bytes(bytes(data))


def onnx_sha(registry: Path, ref: str = "tiny") -> str:
    entry = Index.loads((registry / "index.json").read_bytes()).get(ref)
    return entry.files["model.onnx"]


def test_push_writes_blobs_and_index(registry: Path) -> None:
    index = Index.loads((registry / "index.json").read_bytes())
    (entry,) = index.models
    assert entry.ref == "tiny:1.0.0"
    assert entry.summary.test_accuracy == 0.5 and entry.summary.targets == ("x86-cpu",)
    assert entry.summary.params == 90 and entry.summary.latency_ms == 0.05
    for name, sha in entry.files.items():
        assert (registry / blob_relpath(sha)).is_file(), name
    assert (registry / blob_relpath(entry.files["model.onnx"])).read_bytes() == tiny_onnx()
    blobs = {blob_relpath(sha) for sha in entry.files.values()}
    assert set(files_under(registry)) == {"index.json", *blobs}  # no lock or temp file left


def test_pull_from_directory_runs_in_onnxruntime(registry: Path, tmp_path: Path) -> None:
    pulled = pull("tiny", registry)
    path = pulled.bundle.path
    assert path == models_dir() / "tiny" / "1.0.0" and pulled.bundle.downloaded
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "manifest.json", "model.onnx"]
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    original = tmp_path / "original.onnx"
    original.write_bytes(tiny_onnx())
    np.testing.assert_array_equal(run_onnx(path / "model.onnx", x), run_onnx(original, x))
    again = pull("tiny:1.0.0", registry)  # cached: re-verified, not downloaded
    assert again.bundle.path == path and not again.bundle.downloaded


def test_pull_over_http(registry: Path) -> None:
    with serve(registry) as url:
        pulled = pull("tiny", url)
    assert pulled.bundle.downloaded
    assert (pulled.bundle.path / "model.onnx").read_bytes() == tiny_onnx()
    assert read_bundle(pulled.bundle.path).manifest.name == "tiny"  # a complete, valid bundle


def test_latest_version_in_semantic_order(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    for version, seed in (("1.2.0", 1), ("1.10.0", 2), ("1.11.0-rc1", 3)):
        push(write_bundle(tmp_path / "b", version=version, seed=seed), root)
    pulled = pull("tiny", root)
    assert pulled.bundle.entry.version == "1.11.0-rc1"
    assert (pulled.bundle.path / "model.onnx").read_bytes() == tiny_onnx(3)
    assert pull("tiny:1.2.0", root).bundle.path.name == "1.2.0"


@pytest.mark.parametrize("over_http", [False, True])
def test_tampered_blob_refused_and_deleted(registry: Path, over_http: bool) -> None:
    tamper(registry, onnx_sha(registry))
    with pytest.raises(ChecksumError, match=r"checksum mismatch for model\.onnx of tiny:1\.0\.0"):
        if over_http:
            with serve(registry) as url:
                pull("tiny", url)
        else:
            pull("tiny", registry)
    assert files_under(cache_root()) == []


def test_tampered_cache_is_fetched_again(registry: Path) -> None:
    path = pull("tiny", registry).bundle.path
    (path / "model.onnx").write_bytes(b"not a model")
    pulled = pull("tiny", registry)
    assert pulled.bundle.downloaded and (path / "model.onnx").read_bytes() == tiny_onnx()


@pytest.mark.parametrize(
    ("mode", "message"),
    [("cut", "was interrupted"), ("cut-nolength", r"received \d+ of \d+ bytes")],
)
def test_interrupted_download_leaves_nothing(registry: Path, mode: str, message: str) -> None:
    with serve(registry, mode) as url, pytest.raises(UserError, match=message):
        pull("tiny", url)
    assert files_under(cache_root()) == []
    assert not bundle_cache_path("tiny", "1.0.0").exists()


def test_unknown_model_lists_names(registry: Path) -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'nope'; available: tiny"):
        pull("nope", registry)
    with serve(registry) as url, pytest.raises(UnknownNameError, match=r"available: 1\.0\.0"):
        pull("tiny:2.0.0", url)


def test_unreachable_and_missing_registries(tmp_path: Path, registry: Path) -> None:
    with pytest.raises(UserError, match=r"no index\.json"):
        pull("tiny", tmp_path / "empty")
    with serve(tmp_path) as url, pytest.raises(UserError, match="HTTP 404"):
        pull("tiny", url)
    with pytest.raises(UserError, match="only directories and http"):
        pull("tiny", "ftp://example.org/registry")


@pytest.mark.parametrize("bad", ["../../escape", "/abs", "sub/x", "a\\b"])
def test_refuses_names_leaving_the_cache(registry: Path, bad: str) -> None:
    index = json.loads((registry / "index.json").read_text())
    index["models"][0]["name"] = bad
    (registry / "index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="invalid model name"):
        pull("tiny", registry)
    with pytest.raises(UserError, match="invalid model name"):
        pull(bad, registry)
    assert files_under(cache_root()) == []


def test_refuses_manifest_paths_leaving_the_bundle(tmp_path: Path) -> None:
    """A registry whose index and manifest agree on a file called '../evil' (a hostile
    registry): refused before any file is written outside the staging directory."""
    root = tmp_path / "registry"
    push(write_bundle(tmp_path / "b"), root)
    data = json.loads((root / "index.json").read_text())
    entry = data["models"][0]
    manifest = json.loads((root / blob_relpath(entry["manifest_sha256"])).read_text())
    manifest["files"][0]["path"] = "../evil"
    raw = json.dumps(manifest).encode()
    sha = hashlib.sha256(raw).hexdigest()
    (root / blob_relpath(sha)).write_bytes(raw)
    entry["manifest_sha256"] = sha
    entry["files"] = {"manifest.json": sha, "README.md": entry["files"]["README.md"]}
    (root / "index.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="plain names only"):
        pull("tiny", root)
    entry["files"]["../evil"] = "0" * 64
    (root / "index.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="plain names only"):
        pull("tiny", root)
    assert files_under(cache_root()) == [] and not (cache_root().parent / "evil").exists()


def test_refuses_symlink_in_cache(registry: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    models_dir().mkdir(parents=True)
    (models_dir() / "tiny").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match="symbolic link inside the model cache"):
        pull("tiny", registry)
    assert list(outside.iterdir()) == []


def test_concurrent_pushes_all_land(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    bundles = [write_bundle(tmp_path / "b", f"m{i}", seed=i) for i in range(8)]
    barrier = threading.Barrier(len(bundles))
    errors: list[BaseException] = []

    def one(bundle: Path) -> None:
        barrier.wait()
        try:
            push(bundle, root)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Index.loads((root / "index.json").read_bytes()).names() == [f"m{i}" for i in range(8)]


def test_conflicting_push_refused_unless_forced(registry: Path, tmp_path: Path) -> None:
    same = write_bundle(tmp_path / "same")
    assert push(same, registry).status == "unchanged"
    other = write_bundle(tmp_path / "other", seed=7)
    with pytest.raises(UserError, match=r"already in .* with different content; bump the version"):
        push(other, registry)
    assert push(other, registry, force=True).status == "replaced"
    assert (pull("tiny", registry).bundle.path / "model.onnx").read_bytes() == tiny_onnx(7)


def test_push_verifies_the_bundle(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    bundle = write_bundle(tmp_path / "b")
    (bundle / "notes.txt").write_text("not listed")
    with pytest.raises(UserError, match=r"notes\.txt not listed in manifest\.json"):
        push(bundle, root)
    (bundle / "notes.txt").unlink()
    (bundle / "README.md").write_text("changed after export")
    with pytest.raises(ChecksumError, match=r"README\.md does not match manifest\.json"):
        push(bundle, root)
    rewrite_manifest(bundle, name="../up")
    with pytest.raises(UserError, match="invalid model name"):
        push(bundle, root)
    with pytest.raises(UserError, match=r"no manifest\.json"):
        push(tmp_path, root)
    assert not (root / "index.json").exists()


def test_out_copies_the_verified_bundle(registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    pulled = pull("tiny", registry, out=out)
    assert pulled.copy == out / "tiny"
    read_bundle(out / "tiny")  # verifies every hash of the copy
    pull("tiny", registry, out=out)  # a second copy replaces the first
    (out / "tiny" / "model.onnx").unlink()
    (out / "taken").mkdir()
    (out / "taken" / "mine.txt").write_text("user data")
    taken = dataclasses.replace(pulled.bundle.manifest, name="taken")
    with pytest.raises(UserError, match="not a model bundle"):
        copy_bundle(pulled.bundle.path, taken, out)
    assert (out / "taken" / "mine.txt").read_text() == "user data"


def test_cpu_target_needs_no_engine(registry: Path) -> None:
    assert pull("tiny", registry, target="x86-cpu").engine is None
    with pytest.raises(UnknownNameError, match="unknown target 'pdp-11'"):
        pull("tiny", registry, target="pdp-11")


def test_tensorrt_target_without_gpu_or_agent_says_how(registry: Path) -> None:
    from profilers.trt_engine import trt_available

    if trt_available()[0]:
        pytest.skip("TensorRT and a GPU are here: the engine would really be built")
    with pytest.raises(UserError, match=r"on the device run `factory agent --host") as info:
        pull("tiny", registry, target="cuda-gpu")
    assert "\n" not in str(info.value)
    assert (bundle_cache_path("tiny", "1.0.0") / "model.onnx").is_file()  # the ONNX is kept


def test_tensorrt_target_with_agent_builds_there(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TensorRT target reached through an agent: the engine request goes to that agent (a
    real one on 127.0.0.1; without a GPU it answers 501, and that answer is what we see)."""
    token = "registry-t0ken"
    with running_agent(tmp_path, token) as url:
        targets_dir = tmp_path / "targets"
        targets_dir.mkdir()
        (targets_dir / "lab-gpu.yaml").write_text(
            "name: lab-gpu\ndescription: a GPU box with an agent\nruntime: tensorrt\n"
            "execution_provider: TensorrtExecutionProvider\nprecision: fp16\nneeds_gpu: true\n"
            f"agent:\n  url: {url}\n  token_env: EMF_LAB_TOKEN\n"
        )
        monkeypatch.setenv("EMF_TARGETS_DIR", str(targets_dir))
        monkeypatch.setenv("EMF_LAB_TOKEN", token)
        from profilers.trt_engine import trt_available

        try:
            pulled = pull("tiny", registry, target="lab-gpu")
        except UserError as exc:
            assert not trt_available()[0]
            assert re.search(re.escape(url) + r"/engine: .*(TensorRT|GPU)", str(exc)), str(exc)
        else:
            assert pulled.engine is not None and pulled.engine.path.stat().st_size > 0
            assert pulled.engine.built_by == f"agent {url}"


def test_removed_cache_files_do_not_break_the_registry(registry: Path) -> None:
    pulled = pull("tiny", registry)
    shutil.rmtree(pulled.bundle.path)
    assert pull("tiny", registry).bundle.downloaded


FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
def test_export_push_pull_reproduces_test_accuracy(tmp_path: Path) -> None:
    """The whole path: a trained net exported by `export_bundle` (accuracy measured on the
    10 000 test images), pushed, pulled over HTTP, then run by ONNX Runtime on the raw test
    pixels preprocessed only from the pulled manifest: same accuracy within 0.1 point."""
    import torch
    from torch import nn

    from exporters.bundle import export_bundle
    from factory.data import iterate_batches, load_dataset
    from factory.data.fashion_mnist import read_idx

    data = load_dataset("fashion-mnist", root=FMNIST, limit_train=2048)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for x, y in iterate_batches(data.train, 128, True, torch.Generator().manual_seed(0)):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    meta = bundle_meta(data.info, "fmnist-tiny", "tiny")
    bundle = export_bundle(net.eval(), meta, tmp_path / "export", ("onnx",), test=data.test)
    push(bundle.path, tmp_path / "registry")
    with serve(tmp_path / "registry") as url:
        pulled = pull("fmnist-tiny", url)
    manifest = json.loads((pulled.bundle.path / "manifest.json").read_text())
    pixels = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz", 3).astype(np.float32)[:, None]
    labels = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz", 1)
    pre = manifest["preprocessing"]
    mean, std = (np.array(pre[k], np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    x = ((pixels * np.float32(pre["scale"]) - mean) / std).astype(np.float32)
    logits = run_onnx(pulled.bundle.path / "model.onnx", x)
    accuracy = float((logits.argmax(1) == labels).mean())
    recorded = manifest["metrics"]["model.onnx"]["test_accuracy"]
    assert manifest["metrics"]["model.onnx"]["test_images"] == len(labels) == 10_000
    assert accuracy > 0.5  # it learned something, so agreement is not by chance
    assert abs(accuracy - recorded) <= 0.001, (accuracy, recorded)


def test_stale_staging_dirs_are_swept(registry: Path) -> None:
    parent = models_dir() / "tiny"
    old, young = parent / ".1.0.0.killed.part", parent / ".1.0.0.running.part"
    for leftover in (old, young):
        leftover.mkdir(parents=True)
        (leftover / "model.onnx").write_bytes(b"half")
    os.utime(old, (0, 0))
    pull("tiny", registry)
    assert not old.exists() and young.exists()


@pytest.mark.parametrize(
    ("target_precision", "onnx_name", "trt_version", "asked"),
    [
        ("fp16", "model.onnx", "10.3.0", "fp16"),
        ("fp32", "model.onnx", None, "fp32"),
        ("int8", "model.int8.onnx", "10.3.0", "int8"),
        ("int8", "model.onnx", "10.3.0", "fp16"),  # no Q/DQ model in the bundle
        ("fp16", "model.onnx", "11.0.1", "auto"),  # strongly typed: the ONNX decides
        ("fp16", "model.onnx", "unknown version", "fp16"),
    ],
)
def test_engine_precision(target_precision: str, onnx_name: str, trt_version, asked: str) -> None:
    assert engine_precision(target_precision, onnx_name, trt_version) == asked


def test_engine_input_shape_from_manifest(registry: Path) -> None:
    view = pull("tiny", registry).bundle.manifest
    assert input_shape_of(view) == (1, 1, 28, 28)
