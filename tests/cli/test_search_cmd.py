"""`factory search` options checked before a run starts."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from factory.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_latency_modes_in_help_and_unknown_one_refused(tmp_path) -> None:
    help_text = runner.invoke(app, ["search", "--help"]).output
    assert "robust" in help_text and "measure" in help_text
    result = runner.invoke(app, ["search", "--latency", "fast", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown latency mode 'fast'; valid: auto, measure, robust, table" in result.output
    assert not (tmp_path / "r").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("space.widths=huge", "space option widths='huge'; valid: small, paper"),
        ("space.depth=3", "space shufflenet has no option 'depth'; its options: widths"),
    ],
)
def test_bad_space_options_are_refused_before_a_run(tmp_path, setting, message) -> None:
    out = tmp_path / "r"
    args = ["search", "--space", "shufflenet", "--set", setting, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (out / "evaluations.sqlite").exists()


def test_space_options_reach_the_space() -> None:
    from factory.cli.search_cmd import split_settings
    from factory.spaces import get_space

    parts = split_settings({"space.widths": "paper", "population": 8})
    assert parts == {"strategy_config": {"population": 8}, "space_options": {"widths": "paper"}}
    paper = get_space("shufflenet", options=parts["space_options"])
    small = get_space("shufflenet")
    g = small.manual()["shufflenet_g3"]
    assert paper.describe(g)[-2].out_shape[0] == 1152 and small.describe(g)[-2].out_shape[0] == 384
    assert paper.arch_id(g) != small.arch_id(g)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without one")
def test_cuda_without_a_gpu_is_refused_before_a_run(tmp_path) -> None:
    out = tmp_path / "r"
    result = runner.invoke(app, ["search", "--device", "cuda", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "torch sees no CUDA GPU here" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("preset", "given", "expected"),
    [("quick", None, (8000, 2500, 20000)), ("gpu", None, (None, 5000, None)),
     ("paper", None, (None, 5000, None)), ("gpu", 500, (500, 500, 500)),
     ("quick", 0, (None, None, None))],
)  # fmt: skip
def test_presets_choose_how_many_images(preset, given, expected) -> None:
    """Training, validation and rescoring images: the quick preset scores its generations
    on fewer images and its rescoring on more (docs/search.md); 0 means all / off."""
    from factory.cli.search_cmd import _by_preset
    from factory.search import config as c
    from factory.strategies import STRATEGIES

    counts = ((c.QUICK_TRAIN_SIZE, None), (c.QUICK_VAL_SIZE, c.VAL_SIZE),
              (c.QUICK_RESCORE_IMAGES, None))  # fmt: skip
    assert tuple(_by_preset(given, preset, *n) for n in counts) == expected
    for name in STRATEGIES.names():  # every strategy knows every preset
        STRATEGIES.get(name).Config.preset(preset)


def test_help_names_every_registered_strategy_and_dataset() -> None:
    """The option help is typed out (reading the registries would import torch for --help);
    this keeps it equal to them."""
    import re

    from factory.data import DATASETS
    from factory.strategies.registry import STRATEGIES

    params = {p.name: p.help or "" for p in typer.main.get_command(app).commands["search"].params}
    for option, names in (("strategy", STRATEGIES.names()), ("dataset", DATASETS.names())):
        listed = set(re.findall(r"[a-z0-9][a-z0-9-]*[a-z0-9]", params[option])) - {"or", "a"}
        assert set(names) <= listed and listed - {"baseline"} <= set(names), (option, listed)
