"""Every registered export format, driven by the registry: a new format is covered here
without editing this file. Each is exported into a real bundle from a tiny network on random
images, and the bundle is validated like a download; formats that need a TensorRT target run
only where there is a GPU with TensorRT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import targets
from exporters import manifest as mf
from exporters.bundle import count_steps, export_bundle
from exporters.registry import FORMATS, build_order, file_kinds, kind_labels, parse_formats
from exporters.settings import BundleMeta, ExportSettings, Int8Settings
from factory.data import TensorSplit
from profilers.trt_engine import trt_available
from targets.errors import UserError

CHW = (1, 12, 12)
FORMAT_NAMES = FORMATS.names()


def _images(n: int, seed: int) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randn(n, *CHW, generator=g), torch.randint(0, 3, (n,), generator=g))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3))


def _meta(name: str) -> BundleMeta:
    return BundleMeta(
        name=name,
        version="1.0.0",
        input_shape=CHW,
        class_names=("a", "b", "c"),
        mean=(0.5,),
        std=(0.25,),
        dataset="random",
        architecture=mf.Architecture("test", "tiny", "0123456789ab"),
        source=mf.Source(None, None, False),
        factory_version="9.9.9",
    )


def test_formats_declare_distinct_files_and_kinds() -> None:
    classes = [FORMATS.get(n) for n in FORMAT_NAMES]
    assert len({c.file_name for c in classes}) == len(classes)
    assert len({c.kind for c in classes}) == len(classes)
    assert set(file_kinds()) == {c.kind for c in classes} | {"card"}
    assert set(kind_labels()) == {c.kind for c in classes}
    assert [c for c in classes if c.always] and all(c.name in FORMATS for c in classes)
    # what every bundle holds is built first: other formats convert its file
    order = build_order()
    assert set(order) == set(FORMAT_NAMES) and FORMATS.get(order[0]).always


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_format_exports_a_valid_bundle(name: str, tmp_path: Path) -> None:
    exporter = FORMATS.get(name)
    chosen_targets = []
    if exporter.needs_tensorrt_target:
        ok, why = trt_available()
        if not ok:
            pytest.skip(why)
        chosen_targets = [targets.get_target("cuda-gpu")]
    formats = parse_formats([name])
    steps: list[str] = []
    bundle = export_bundle(
        _model(),
        _meta(f"b-{name}"),
        tmp_path,
        formats,
        chosen_targets,
        calib=_images(40, 1) if exporter.needs_calibration else None,
        test=_images(20, 2),
        settings=ExportSettings(int8=Int8Settings(calib_images=20, calib_batch=10)),
        on_step=steps.append,
    )
    m = mf.validate_manifest(bundle.path)
    entry = m.file(exporter.kind)
    assert entry is not None and entry.path == exporter.file_name
    assert (bundle.path / exporter.file_name).stat().st_size == entry.bytes > 0
    assert (exporter.file_name in m.metrics) == exporter.onnx
    assert len(steps) == count_steps(formats, chosen_targets, has_test=True)
    assert m.tools.factory == "9.9.9"


@pytest.mark.parametrize("name", [n for n in FORMAT_NAMES if FORMATS.get(n).needs_calibration])
def test_a_format_that_calibrates_refuses_to_start_without_images(
    name: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="needs calibration images"):
        export_bundle(_model(), _meta("x"), tmp_path, parse_formats([name]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [n for n in FORMAT_NAMES if FORMATS.get(n).needs_tensorrt_target])
def test_a_format_for_tensorrt_refuses_a_cpu_target(name: str, tmp_path: Path) -> None:
    cpu = [targets.get_target("x86-cpu")]
    with pytest.raises(UserError, match=f"--format {name} needs a TensorRT target"):
        export_bundle(_model(), _meta("x"), tmp_path, parse_formats([name]), cpu)
    assert list(tmp_path.iterdir()) == []
