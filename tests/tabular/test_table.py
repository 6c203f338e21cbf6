"""The benchmark table loader: the shipped table, index <-> genotype, and bad files."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import pytest

from factory.spaces.nb201 import parse_arch_string
from factory.tabular.table import load_table
from targets.errors import UserError


@pytest.fixture(scope="module")
def shipped_text() -> str:
    data = resources.files("factory.tabular").joinpath("data", "nb201_cifar10.csv.gz")
    return gzip.decompress(data.read_bytes()).decode()


def test_shipped_table_and_its_notice() -> None:
    table = load_table("nb201")
    assert len(table.accuracy) == 15_625
    assert table.devices == ("raspi4", "pixel3", "eyeriss", "fpga", "xeon_gold_6226",
                             "titan_rtx_b1")  # fmt: skip
    # the first two rows of the CSV, as SOURCES.md shows them
    g = parse_arch_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|"
                          "nor_conv_3x3~1|skip_connect~2|")  # fmt: skip
    assert table.index_of(g) == 1 and table.genotype_at(1) == g
    assert table.accuracy[table.row(g)] == pytest.approx(0.9366)
    assert table.latency_ms["raspi4"][table.row(g)] == pytest.approx(54.777)
    for index in (0, 777, 15_624):
        assert table.index_of(table.genotype_at(index)) == index
    with pytest.raises(UserError, match="no architecture index 15625"):
        table.genotype_at(15_625)
    notice = resources.files("factory.tabular").joinpath("data", "NOTICE.md").read_text()
    assert "MIT" in notice and "HW-NAS-Bench" in notice and "NATS-Bench" in notice


def test_device_names_and_unknown_device() -> None:
    table = load_table("nb201")
    for name, column in [("raspberry-pi-4", "raspi4"), ("rpi4", "raspi4"), ("pixel-3", "pixel3"),
                         ("latency_ms_fpga", "fpga"), ("xeon", "xeon_gold_6226"),
                         ("titan-rtx", "titan_rtx_b1"), ("Eyeriss", "eyeriss")]:  # fmt: skip
        assert table.device(name) == column
    with pytest.raises(UserError) as err:
        table.device("x86-cpu")
    assert "no latency column for device 'x86-cpu'" in str(err.value)
    assert "raspi4 (raspberry-pi-4, rpi4), pixel3 (pixel-3), eyeriss, fpga" in str(err.value)


def _write(tmp_path: Path, text: str, name: str = "bench.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _replace_cell(text: str, line: int, column: int, value: str) -> str:
    lines = text.splitlines()
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_another_dataset_in_the_same_columns_loads(tmp_path: Path, shipped_text: str) -> None:
    """A user's own accuracies (here: the table with one column fewer, gzipped) load."""
    lines = [",".join(line.split(",")[:5]) for line in shipped_text.splitlines()]
    path = tmp_path / "mine.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    table = load_table(str(path))
    assert table.devices == ("raspi4", "pixel3")


def _columns(text: str, n: int) -> str:
    return "\n".join(",".join(x.split(",")[:n]) for x in text.splitlines())


BAD_ARCH = "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"
BAD_FILES = {
    # id: (edit of the shipped CSV text, what the one-line error must say)
    "not-a-number": (lambda t: _replace_cell(t, 8, 2, "abc"),
                     "line 8, column test_accuracy: 'abc' is not a number"),
    "not-a-percentage": (lambda t: _replace_cell(t, 9, 2, "101"),
                         "line 9, column test_accuracy: 101.0 is not a percentage"),
    "zero-latency": (lambda t: _replace_cell(t, 10, 5, "0"),
                     "line 10, column latency_ms_eyeriss: latency 0.0 ms must be > 0"),
    "bad-index": (lambda t: _replace_cell(t, 11, 0, "1.5"),
                  "line 11, column index: '1.5' is not an integer"),
    "nan": (lambda t: _replace_cell(t, 12, 3, "nan"),
            "line 12, column latency_ms_raspi4: 'nan' is not finite"),
    "bad-arch": (lambda t: _replace_cell(t, 13, 1, BAD_ARCH),
                 "line 13, column arch: NAS-Bench-201 arch string: bad edge 'conv~0'"),
    "missing-column": (lambda t: t.replace("test_accuracy", "acc", 1),
                       "line 1: missing column 'test_accuracy'"),
    "no-device": (lambda t: _columns(t, 3), "line 1: no latency_ms_<device> column"),
    "missing-row": (lambda t: "\n".join(t.splitlines()[:-1]) + "\n",
                    "covers 15624 of the 15625 nb201 architectures"),
    "duplicate": (lambda t: t + t.splitlines()[1] + "\n", "line 15627, column arch: "),
    "extra-cell": (lambda t: _replace_cell(t, 20, 8, "1,2"), "line 20: 10 cells, the header has 9"),
}  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_malformed_files_name_line_and_column(tmp_path, shipped_text, edit, message) -> None:
    path = _write(tmp_path, edit(shipped_text))
    with pytest.raises(UserError) as err:
        load_table(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither a shipped table"):
        load_table(str(tmp_path / "absent.csv"))
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="cannot read as UTF-8 CSV"):
        load_table(str(path))
