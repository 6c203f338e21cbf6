"""A tabular benchmark: every architecture of the nb201 space with its accuracy and latencies.

The shipped table (`--benchmark nb201`) is NAS-Bench-201's CIFAR-10 test accuracy with the
device latencies of HW-NAS-Bench and HELP (`data/NOTICE.md`: MIT, keep the notices). Any CSV
with the same columns works (`--benchmark PATH`, plain or gzipped), so a user can plug in
another dataset's accuracy:

    index, arch, test_accuracy, latency_ms_<device>, ...

`index` is the benchmark's architecture index, `arch` its architecture string, accuracy in
percent (0-100), latencies in ms (> 0). Every one of the 15,625 architectures must appear
exactly once, since a search may ask for any of them. A bad file is a `UserError` naming the
line and column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from factory.spaces.base import Genotype
from factory.spaces.nb201 import EDGES, OPS, arch_string, parse_arch_string
from targets.errors import UserError

SHIPPED = {"nb201": "nb201_cifar10.csv.gz"}
REQUIRED = ("index", "arch", "test_accuracy")
LATENCY_PREFIX = "latency_ms_"
N_ARCHS = len(OPS) ** len(EDGES)  # 15,625
# device names a user may know, by the column suffix they mean (targets/ has raspberry-pi-4)
DEVICE_ALIASES = {
    "raspi4": ("raspberry-pi-4", "rpi4"),
    "pixel3": ("pixel-3",),
    "eyeriss": (),
    "fpga": (),
    "xeon_gold_6226": ("xeon", "xeon-cpu"),
    "titan_rtx_b1": ("titan-rtx", "titan-rtx-gpu", "gpu"),
}


def code(g: Genotype) -> int:
    """g as a base-5 number (edge 0 most significant): a dense key 0..15624."""
    out = 0
    for op in g:
        out = out * len(OPS) + int(op)
    return out


@dataclass(frozen=True)
class BenchmarkTable:
    """Rows in file order; `row_of[code(g)]` is g's row."""

    name: str
    index: np.ndarray  # (R,) int, the benchmark's architecture index
    genotypes: np.ndarray  # (R, 6) int, op index per edge
    accuracy: np.ndarray  # (R,) float, fraction in [0, 1]
    latency_ms: dict[str, np.ndarray]  # device (column suffix) -> (R,) float
    row_of: np.ndarray  # (15625,) int

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.latency_ms)

    def row(self, g: Genotype) -> int:
        return int(self.row_of[code(g)])

    def index_of(self, g: Genotype) -> int:
        """The benchmark's index of g."""
        return int(self.index[self.row(g)])

    def genotype_at(self, index: int) -> Genotype:
        """g of the benchmark's index; an unknown index is a `UserError`."""
        hits = np.flatnonzero(self.index == index)
        if len(hits) != 1:
            raise UserError(f"benchmark {self.name} has no architecture index {index}")
        return tuple(int(x) for x in self.genotypes[hits[0]])

    def device(self, name: str) -> str:
        """The device column a user's name means (a column suffix or a known alias)."""
        want = name.strip().lower().removeprefix(LATENCY_PREFIX).replace("-", "_")
        for device in self.devices:
            aliases = {a.replace("-", "_") for a in DEVICE_ALIASES.get(device, ())}
            if want == device.lower() or want in aliases:
                return device
        raise UserError(
            f"benchmark {self.name} has no latency column for device {name!r}; device "
            f"columns: {', '.join(_with_aliases(d) for d in self.devices)}"
        )


def _with_aliases(device: str) -> str:
    aliases = DEVICE_ALIASES.get(device, ())
    return f"{device} ({', '.join(aliases)})" if aliases else device


def load_table(source: str) -> BenchmarkTable:
    """The shipped table by name (`nb201`) or a CSV file (plain or .gz) by path."""
    if source in SHIPPED:
        data = resources.files("factory.tabular").joinpath("data", SHIPPED[source]).read_bytes()
        return parse_table(gzip.decompress(data).decode(), source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(
            f"benchmark {source!r} is neither a shipped table ({', '.join(SHIPPED)}) nor a file"
        )
    raw = path.read_bytes()
    try:
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read as UTF-8 CSV ({exc})") from None
    return parse_table(text, str(path))


def parse_table(text: str, name: str) -> BenchmarkTable:
    """Check and convert the CSV text; the first problem found is a one-line `UserError`."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        need = ", ".join(REQUIRED)
        raise UserError(f"{name}: line 1: missing column {missing[0]!r}; need {need}")
    devices = [h for h in header if h.startswith(LATENCY_PREFIX)]
    if not devices:
        raise UserError(f"{name}: line 1: no {LATENCY_PREFIX}<device> column")
    col = {h: i for i, h in enumerate(header)}
    index, genos, acc = [], [], []
    lat: list[list[float]] = [[] for _ in devices]
    row_of = np.full(N_ARCHS, -1, dtype=np.int64)
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        where = f"{name}: line {line}"
        if len(cells) != len(header):
            raise UserError(f"{where}: {len(cells)} cells, the header has {len(header)}")
        index.append(int(_number(cells[col["index"]], f"{where}, column index", integer=True)))
        g = _genotype(cells[col["arch"]], f"{where}, column arch")
        if row_of[code(g)] >= 0:
            raise UserError(f"{where}, column arch: {cells[col['arch']]!r} appears twice")
        row_of[code(g)] = len(genos)
        genos.append(g)
        a = _number(cells[col["test_accuracy"]], f"{where}, column test_accuracy")
        if not 0 <= a <= 100:
            raise UserError(f"{where}, column test_accuracy: {a} is not a percentage (0-100)")
        acc.append(a / 100)
        for values, device in zip(lat, devices, strict=True):
            ms = _number(cells[col[device]], f"{where}, column {device}")
            if ms <= 0:
                raise UserError(f"{where}, column {device}: latency {ms} ms must be > 0")
            values.append(ms)
    _check_complete(row_of, name)
    columns = zip(devices, lat, strict=True)
    return BenchmarkTable(
        name=name,
        index=np.asarray(index, dtype=np.int64),
        genotypes=np.asarray(genos, dtype=np.int64),
        accuracy=np.asarray(acc, dtype=float),
        latency_ms={d.removeprefix(LATENCY_PREFIX): np.asarray(v) for d, v in columns},
        row_of=row_of,
    )


def _number(cell: str, where: str, integer: bool = False) -> float:
    try:
        value = int(cell) if integer else float(cell)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise UserError(f"{where}: {cell!r} is not {kind}") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {cell!r} is not finite")
    return value


def _genotype(cell: str, where: str) -> Genotype:
    try:
        return parse_arch_string(cell)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _check_complete(row_of: np.ndarray, name: str) -> None:
    absent = np.flatnonzero(row_of < 0)
    if len(absent):
        first = arch_string(_decode(int(absent[0])))
        raise UserError(
            f"{name}: covers {N_ARCHS - len(absent)} of the {N_ARCHS} nb201 architectures; "
            f"missing e.g. {first}"
        )


def _decode(key: int) -> Genotype:
    """Inverse of `code`."""
    out = []
    for _ in EDGES:
        key, op = divmod(key, len(OPS))
        out.append(op)
    return tuple(reversed(out))
