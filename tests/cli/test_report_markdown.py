"""`factory report RUN --markdown` on a tiny real run that was really trained and exported
(real Fashion-MNIST, a few hundred images), and on one that was only searched."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.cli.main import app
from tests.tiny_run import tiny_random_run

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="needs dataset-fashion-mnist")
# enough warm-up that the candidates beat chance clearly (the front's floor keeps them off)
SMALLER = dict(strategy_config={"samples_per_unit": 2, "warmup_epochs": 8})
FAST = ("--warmup-ms", "5", "--min-duration-ms", "30", "--min-iters", "5")
SECTIONS = ("Search front", "Trained models", "Exported bundles", "Next steps")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a run trained for its whole front with the first member exported, a copy searched
    only). Export is the slow part (~7 s a model), so one model is exported."""
    root = tmp_path_factory.mktemp("runs")
    run = tiny_random_run(root / "run", data_root=str(FMNIST), **SMALLER)
    bare = root / "bare"
    bare.mkdir()
    for name in ("config.json", "pareto.json", "pareto.png"):
        shutil.copy(run / name, bare / name)
    trained = invoke(
        "train", run, "--pareto", "--epochs", "0.05", "--limit-images", "128", "--quiet"
    )
    assert trained.exit_code == 0, trained.output
    first = json.loads((run / "pareto.json").read_text())["front"][0]["arch_id"]
    exported = invoke(
        "export", run, "-c", first, "--format", "onnx,onnx-int8", "--calib-images", "16",
        "--test-images", "100", *FAST, "--quiet",
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    return run, bare


def section(text: str, title: str) -> str:
    """The body of `## title`, up to the next section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in:\n{text}"
    return match.group(1)


def table_rows(body: str) -> list[list[str]]:
    """Data rows of the first Markdown table in `body`, as stripped cells."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    table = []
    for line in lines[2:]:
        table.append([c.strip() for c in line.strip("|").split("|")])
    return table[: next((i for i, r in enumerate(table) if r[0] == "name"), len(table))]


def linked_pngs(text: str, page: Path) -> list[Path]:
    return [(page.parent / link).resolve() for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_report_of_a_trained_and_exported_run(runs: tuple[Path, Path]) -> None:
    run, _ = runs
    result = invoke("report", run, "--markdown")
    assert result.exit_code == 0, result.output
    page = run / "report.md"
    assert result.output.strip() == str(page)
    text = page.read_text()
    assert text.startswith(f"# Search run `{run.name}`")
    doc = json.loads((run / "pareto.json").read_text())
    header = text.split("\n## ")[0]
    for fact in ("shufflenet", "random", doc["target"], "fashion-mnist", doc["written_at"]):
        assert fact in header, fact

    front = table_rows(section(text, "Search front").split("Manual reference")[0])
    assert [r[0] for r in front] == [f"`{row['arch_id']}`" for row in doc["front"]]
    assert [r[-2] for r in front] == ["trained, exported"] + ["trained"] * (len(front) - 1)
    for name in doc["references"]:
        assert f"| {name} |" in section(text, "Search front")

    trained = {r[0].strip("`"): r for r in table_rows(section(text, "Trained models"))}
    assert set(trained) == {row["arch_id"] for row in doc["front"]}
    for arch_id, cells in trained.items():
        info = json.loads((run / "trained" / arch_id / "train.json").read_text())
        assert f"{100 * info['test_accuracy']:.2f} % of {info['test_images']}" in cells

    exported = table_rows(section(text, "Exported bundles"))
    manifests = [json.loads(p.read_text()) for p in sorted(run.glob("export/*/manifest.json"))]
    assert [m["architecture"]["arch_id"] for m in manifests] == [doc["front"][0]["arch_id"]]
    assert len(exported) == 2  # fp32 and int8, one target
    for m in manifests:
        for lat in m["latency"]:
            (row,) = [r for r in exported if r[:2] == [f"`{m['name']}`", lat["artifact"]]]
            assert row[-2:] == [f"{lat['median_ms']:.3f} ms", lat["target"]]
    bundle = sorted(run.glob("export/*"))[0]
    assert f"factory push {bundle} --registry DIR" in section(text, "Next steps")
    assert "factory pull " in section(text, "Next steps")

    pngs = linked_pngs(text, page)
    names = {p.name for p in pngs}
    assert names == {"pareto.png", "report_training.png", "report_export.png"}
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC, png
    assert not leftovers(run)


def test_out_writes_page_and_plots_elsewhere(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = runs
    out = tmp_path / "pages" / "s1.md"
    result = invoke("report", run, "--markdown", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    pngs = linked_pngs(out.read_text(), out)
    assert {p.name for p in pngs} == {"pareto.png", "s1_training.png", "s1_export.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "s1.md",
        "s1_export.png",
        "s1_training.png",
    ]


def test_a_searched_only_run_says_what_produces_the_rest(runs: tuple[Path, Path]) -> None:
    _, bare = runs
    result = invoke("report", bare, "--markdown")
    assert result.exit_code == 0, result.output
    text = (bare / "report.md").read_text()
    assert all(f"## {title}" in text for title in SECTIONS)
    assert section(text, "Trained models").strip() == (
        f"No trained models yet: `factory train {bare} --pareto`"
    )
    assert section(text, "Exported bundles").strip() == (
        f"No exported bundles yet: `factory export {bare} --pareto`"
    )
    assert [p.name for p in linked_pngs(text, bare / "report.md")] == ["pareto.png"]
    assert not list(bare.glob("report_*.png")) and not leftovers(bare)


def test_table_and_json_are_unchanged(runs: tuple[Path, Path]) -> None:
    run, _ = runs
    as_json = invoke("report", run, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == json.loads((run / "pareto.json").read_text())
    table = invoke("report", run)
    assert table.exit_code == 0 and "shufflenet_g1" in table.output


@pytest.mark.parametrize(
    ("pareto", "args", "message"),
    [
        (None, ("--markdown",), "has no pareto.json (is it a run directory"),
        ("{ not json", ("--markdown",), "pareto.json is not valid JSON"),
        (None, ("--out", "page.md"), "--out is where --markdown writes its page"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(
    tmp_path: Path, pareto: str | None, args: tuple[str, ...], message: str
) -> None:
    if pareto is not None:
        (tmp_path / "pareto.json").write_text(pareto)
    result = invoke("report", tmp_path, *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "report.md").exists() and not leftovers(tmp_path)
