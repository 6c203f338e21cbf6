"""The model behind `factory profile MODEL`: a .onnx file, torchvision:NAME or SPACE:GENOTYPE,
as the ONNX to time and its costs. Library code, so the CLI only parses and prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profilers.base import parse_input_shape
from profilers.onnx_costs import onnx_params, read_onnx
from targets.errors import UserError

TORCHVISION_SHAPE = (1, 3, 224, 224)
SPACE_SHAPE = (1, 28, 28)


@dataclass
class LoadedModel:
    """What gets timed, and its costs; `macs` None where they cannot be counted."""

    onnx: bytes | Path
    input_shape: tuple[int, ...] | None  # None: the model's own, dynamic dims from the target
    macs: int | None
    params: int
    note: str | None = None


def load_model(text: str, shape_text: str | None, classes: int) -> LoadedModel:
    """The ONNX to time and its costs, from a MODEL argument."""
    shape = parse_input_shape(shape_text, batch=True) if shape_text else None
    if text.lower().endswith(".onnx") or (":" not in text and Path(text).exists()):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"ONNX model not found: {path}")
        return LoadedModel(path, shape, None, onnx_params(read_onnx(path)))
    kind, sep, name = text.partition(":")
    if not sep or not name:
        raise UserError(
            f"cannot read MODEL {text!r}: give a .onnx file, torchvision:NAME or SPACE:GENOTYPE"
        )
    if kind == "torchvision":
        return _torch_model(_torchvision(name), shape or TORCHVISION_SHAPE)
    from factory.spaces import InputSpec, get_space

    n, c, h, w = shape or (1, *SPACE_SHAPE)
    space = get_space(kind, InputSpec(channels=c, height=h, width=w, num_classes=classes))
    return _torch_model(space.build(space.parse(name)), (n, c, h, w))


def _torchvision(name: str) -> Any:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)  # classifiers
    if name not in names:
        raise UserError(f"unknown torchvision model {name!r}; valid: {', '.join(sorted(names))}")
    return torchvision.models.get_model(name, weights=None)


def _torch_model(model: Any, shape: tuple[int, ...]) -> LoadedModel:
    from exporters.onnx_export import export_onnx
    from profilers.flops import count_costs

    model.eval()
    costs = count_costs(model, shape)
    note = None if costs.complete else f"not counted: {', '.join(costs.unsupported_ops)}"
    return LoadedModel(export_onnx(model, shape).data, shape, costs.macs, costs.params, note)
