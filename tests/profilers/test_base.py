"""The one input-shape parser the CLI commands share (`profilers.base.parse_input_shape`),
and every built-in runtime of the profiler registry."""

from __future__ import annotations

import pytest

from profilers.base import parse_input_shape
from profilers.registry import _BUILTINS, PROFILERS, profiler_class
from targets.errors import UserError
from targets.target import RUNTIMES


def test_chw_only_without_batch() -> None:
    assert parse_input_shape("1x28x28") == (1, 28, 28)
    assert parse_input_shape("3X32x32") == (3, 32, 32)
    with pytest.raises(UserError, match=r"must look like CxHxW, e\.g\. 1x28x28, not '1x1x28x28'"):
        parse_input_shape("1x1x28x28")


def test_with_batch_the_batch_defaults_to_one() -> None:
    assert parse_input_shape("1x28x28", batch=True) == (1, 1, 28, 28)
    assert parse_input_shape("8x3x224x224", batch=True) == (8, 3, 224, 224)


@pytest.mark.parametrize("text", ["28x28", "1x0x28", "ax28x28", "", "1x2x3x4x5"])
def test_malformed_shapes_are_user_errors(text: str) -> None:
    with pytest.raises(UserError, match="CxHxW or NxCxHxW"):
        parse_input_shape(text, batch=True)


@pytest.mark.parametrize("runtime", sorted(_BUILTINS))
def test_every_builtin_runtime_registers_under_its_name_or_names_its_package(
    runtime: str,
) -> None:
    """A runtime whose package is installed registers a profiler that knows its key; one
    whose package is missing is a UserError naming the package to install."""
    try:
        cls = profiler_class(runtime)
    except UserError as exc:
        assert _BUILTINS[runtime][1] in str(exc)
        return
    assert PROFILERS.get(runtime) is cls and cls.runtime == runtime
    assert runtime in RUNTIMES  # a target can name it
