"""`factory report RUN --markdown`: one Markdown page a person can open to see what a run
found, what was trained and what was exported, with the commands that come next.

Reads only what `factory search`, `factory train` and `factory export` wrote; every file
(the plots first, the page last) is written atomically, so the page never links a plot
that is not there and a crash never leaves half a page.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from exporters.registry import kind_labels
from targets.atomic import check_writable_file, write_atomic
from targets.errors import UserError

REPORT = "report.md"
FORMATS: dict[str, Callable[[float], str]] = {
    "accuracy": lambda v: f"{100 * v:.2f} %",
    "latency_ms": lambda v: f"{v:.3f} ms",
    "macs": lambda v: f"{v / 1e6:.2f} M",
    "params": lambda v: f"{v / 1e6:.3f} M",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # one per export format, in build order


def load_pareto(run_dir: Path) -> dict[str, Any]:
    """pareto.json of a run; a missing or broken one is the user's mistake, not a crash."""
    path = Path(run_dir) / "pareto.json"
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no pareto.json (is it a run directory of `factory search`?)"
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    problem = pareto_problem(doc)
    if problem is not None:
        raise UserError(
            f"{path} is not a front written by `factory search` ({problem}); delete it and "
            f"run `factory search --resume {run_dir}` to write it again"
        )
    return doc


def pareto_problem(doc: Any) -> str | None:
    """What makes `doc` unusable as pareto.json, or None: the fields readers index."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    objectives = doc.get("objectives")
    if not isinstance(objectives, list) or not objectives or not set(objectives) <= set(FORMATS):
        return f"'objectives' must list some of {', '.join(FORMATS)}"
    rows = doc.get("front")
    refs = doc.get("references", {})
    if not isinstance(rows, list) or not isinstance(refs, dict):
        return "'front' must be a list and 'references' an object"
    for field in ("evaluations", "architectures"):
        if not isinstance(doc.get(field), int):
            return f"{field!r} must be a count"
    needed = {"arch_id", "genotype", "phase", "step", *objectives}
    for row in [*rows, *refs.values()]:
        if not isinstance(row, dict) or not needed <= set(row):
            return f"every front row needs {', '.join(sorted(needed))}"
        if not all(isinstance(row[o], (int, float)) for o in objectives):
            return "objective values must be numbers"
    return None


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write RUN/report.md (or `out`) and its plots next to it; return the page's path."""
    run_dir = Path(run_dir)
    doc = load_pareto(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / REPORT}")
    check_writable_file(out, "--out")
    config = _read_json(run_dir / "config.json") or {}
    trained = _read_all(run_dir / "trained", "train.json")
    bundles = _read_all(run_dir / "export", "manifest.json")
    sections = [
        _header(run_dir, doc, config),
        _front(run_dir, out, doc, _status(trained, bundles)),
        _trained(run_dir, out, doc, trained),
        _exported(run_dir, out, bundles, trained),
        _next_steps(run_dir, trained, bundles),
    ]
    write_atomic(out, ("\n\n".join(sections) + "\n").encode())
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _read_all(folder: Path, name: str) -> list[dict[str, Any]]:
    """Every readable `folder/*/name`, sorted by folder; temp folders (dot names) skipped."""
    found = []
    if folder.is_dir():
        for sub in sorted(folder.iterdir()):
            data = None if sub.name.startswith(".") else _read_json(sub / name)
            if data is not None:
                found.append({**data, "_folder": sub})
    return found


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: int = 0) -> str:
    """A Markdown table; the last `right` columns are numbers, aligned right."""
    cells = [[str(c).replace("|", "\\|") for c in row] for row in [header, *rows]]
    align = ["---"] * (len(header) - right) + ["---:"] * right
    lines = [cells[0], align, *cells[1:]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _link(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target, page.parent)).as_posix()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _header(run_dir: Path, doc: dict[str, Any], config: dict[str, Any]) -> str:
    done = doc.get("units_done"), doc.get("total_units")
    facts = [
        ("run", f"`{run_dir}`"),
        ("space", doc.get("space", "?")),
        ("strategy", doc.get("strategy", "?")),
        ("target", doc.get("target", "?")),
        ("dataset", config.get("dataset", "?")),
        ("objectives", ", ".join(doc["objectives"])),
        ("evaluations", doc.get("evaluations", "?")),
        ("architectures", doc.get("architectures", "?")),
        ("search units", f"{done[0]} / {done[1]}" if None not in done else "?"),
        ("front written", doc.get("written_at", "?")),
        ("report written", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]
    if doc.get("stopped"):
        facts.insert(-2, ("stopped", doc["stopped"]))
    lines = "\n".join(f"- **{k}**: {v}" for k, v in facts)
    return f"# Search run `{run_dir.name}`\n\n{lines}"


def _status(trained: list[dict], bundles: list[dict]) -> dict[str, str]:
    """arch_id -> "trained", "exported" or "trained, exported"."""
    done = {t["arch_id"]: "trained" for t in trained}
    for b in bundles:
        arch_id = b.get("architecture", {}).get("arch_id")
        done[arch_id] = ", ".join(filter(None, [done.get(arch_id), "exported"]))
    return done


def _front(run_dir: Path, out: Path, doc: dict[str, Any], done: dict[str, str]) -> str:
    objectives = doc["objectives"]

    def cells(row: dict[str, Any]) -> list[str]:
        return [f"`{row['arch_id']}`", *(FORMATS[o](row[o]) for o in objectives)]

    parts = [
        f"## Search front\n\n{len(doc['front'])} of {doc.get('architectures', '?')} "
        f"architectures are on the front. {_scored_how(doc)}"
    ]
    if (run_dir / "pareto.png").is_file():
        parts.append(f"![Pareto front]({_link(run_dir / 'pareto.png', out)})")
    rows = [
        [*cells(r), _found(r), done.get(r["arch_id"], "—"), f"`{r['genotype']}`"]
        for r in doc["front"]
    ]
    parts.append(_table(["arch_id", *objectives, "found", "status", "genotype"], rows))
    refs = doc.get("references", {})
    if refs:
        rows = [[name, *cells(r), f"`{r['genotype']}`"] for name, r in refs.items()]
        parts.append("Manual reference architectures, measured the same way:")
        parts.append(_table(["name", "arch_id", *objectives, "genotype"], rows))
    return "\n\n".join(parts)


def _scored_how(doc: dict[str, Any]) -> str:
    """Where the front's accuracies come from, so nobody reads them as trained accuracies."""
    from factory.search.pareto import ScoreError  # here: a report needs no torch otherwise

    if "tabular" in doc:
        return f"Accuracies and costs are looked up in the {doc['tabular']['benchmark']} table."
    if not any(r.get("phase") == "rescore" for r in doc["front"]):  # pareto.RESCORE
        return "Validation accuracy with the shared supernet weights, not yet trained alone."
    steps = (doc.get("rescore") or {}).get("steps", "?")
    images = (doc.get("rescore") or {}).get("images")
    val = (doc.get("floor") or {}).get("val_images") or images
    on = f" on {images:,} {ScoreError.of(images, val).kind} images" if images else ""
    near = sum(1 for r in doc["front"] if r.get("within_error_of"))
    return (
        f"Accuracy{on} after each was fine-tuned on its own for {steps} steps from the "
        "supernet's weights (the final rescoring), not yet trained alone"
        + (
            f"; {near} of them stay because their score is within its error of a model that "
            "dominates them (see the found column)."
            if near
            else "."
        )
    )


def _found(row: dict[str, Any]) -> str:
    """Where the search found a front row, and whether only the score's error kept it."""
    near = row.get("within_error_of")
    return f"{row['phase']} {row['step']}" + (f", within error of `{near}`" if near else "")


def _trained(run_dir: Path, out: Path, doc: dict[str, Any], trained: list[dict]) -> str:
    if not trained:
        return f"## Trained models\n\nNo trained models yet: `factory train {run_dir} --pareto`"
    names = {r["arch_id"]: name for name, r in doc.get("references", {}).items()}
    rows = [
        [
            f"`{t['arch_id']}`" + (f" ({names[t['arch_id']]})" if t["arch_id"] in names else ""),
            "supernet" if t.get("from_supernet") else "scratch",
            t.get("recipe", {}).get("device", "—"),
            f"{t['epochs']:g}",
            f"{FORMATS['accuracy'](t['test_accuracy'])} of {t['test_images']}",
            _duration(t["train_seconds"]),
        ]
        for t in trained
    ]
    head = ["arch_id", "from", "device", "epochs", "test accuracy", "train time"]
    parts = ["## Trained models", _table(head, rows, right=3)]
    plot = _plot_training(out, trained)
    if plot:
        parts.append(f"![Validation accuracy per epoch]({_link(plot, out)})")
    return "\n\n".join(parts)


class _Artifact(NamedTuple):
    """One artifact of a bundle on one latency target (None: not measured / not scored)."""

    bundle: str
    kind: str  # the manifest kind of an export format
    path: str
    kib: float
    accuracy: float | None
    test_images: int | None
    median_ms: float | None
    target: str | None


def _artifacts(bundle: dict[str, Any]) -> list[_Artifact]:
    rows = []
    for f in (f for f in bundle.get("files", []) if f.get("kind") in kind_labels()):
        metric = bundle.get("metrics", {}).get(f["path"], {})
        lat = [e for e in bundle.get("latency", []) if e.get("artifact") == f["path"]]
        for e in lat or [{}]:
            scored = metric.get("test_accuracy"), metric.get("test_images")
            timed = e.get("median_ms"), e.get("target")
            kib = f.get("bytes", 0) / 1024
            rows.append(_Artifact(bundle["name"], f["kind"], f["path"], kib, *scored, *timed))
    return rows


def _stale(run_dir: Path, bundles: list[dict], trained: list[dict]) -> list[str]:
    """Bundles exported from trained weights that `factory train` has since replaced."""
    retrained = {t["arch_id"]: t.get("created", "") for t in trained}
    notes = []
    for b in bundles:
        arch_id = b.get("architecture", {}).get("arch_id")
        from_supernet = b.get("source", {}).get("from_supernet", False)
        if not from_supernet and retrained.get(arch_id, "") > b.get("created", "~"):
            notes.append(
                f"- `{b['name']}` was exported before `{arch_id}` was trained again: "
                f"`factory export {run_dir} -c {arch_id} --force`"
            )
    return notes


def _exported(run_dir: Path, out: Path, bundles: list[dict], trained: list[dict]) -> str:
    if not bundles:
        return (
            f"## Exported bundles\n\nNo exported bundles yet: `factory export {run_dir} --pareto`"
        )
    rows = [r for b in bundles for r in _artifacts(b)]
    table = [
        [
            f"`{r.bundle}`",
            r.path,
            f"{r.kib:,.1f}",
            "—" if r.accuracy is None else f"{FORMATS['accuracy'](r.accuracy)} of {r.test_images}",
            "—" if r.median_ms is None else f"{r.median_ms:.3f} ms",
            r.target or "not measured",
        ]
        for r in rows
    ]
    head = ["bundle", "artifact", "size KiB", "test accuracy", "median latency", "target"]
    intro = (
        f"{len(bundles)} bundle(s) under `{run_dir / 'export'}`; latency is the median "
        "of timed batch-1 runs (each bundle's README.md says how it was measured)."
    )
    parts = ["## Exported bundles", intro, _table(head, table)]
    stale = _stale(run_dir, bundles, trained)
    if stale:
        parts.append("Out of date:\n\n" + "\n".join(stale))
    plot = _plot_export(out, rows)
    if plot:
        parts.append(f"![Test accuracy vs measured latency]({_link(plot, out)})")
    return "\n\n".join(parts)


def _next_steps(run_dir: Path, trained: list[dict], bundles: list[dict]) -> str:
    if not trained and not bundles:
        steps = [f"factory train {run_dir} --pareto", f"factory export {run_dir} --pareto"]
    elif not bundles:
        steps = [f"factory export {run_dir} --pareto"]
    else:
        b = bundles[0]
        steps = [
            f"factory push {b['_folder']} --registry DIR",
            "factory models --registry DIR",
            f"factory pull {b['name']}:{b.get('version', '1.0.0')} --registry DIR",
        ]
    block = "\n".join(steps)
    return f"## Next steps\n\n```sh\n{block}\n```"


def _figure() -> tuple[Any, Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    return plt, fig, ax


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> Path:
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return write_atomic(path, buf.getvalue())


def _plot_training(out: Path, trained: list[dict[str, Any]]) -> Path | None:
    """Validation accuracy per epoch of each trained model; None when no history has any."""
    curves = [
        (t["arch_id"], [h for h in t.get("history", []) if "val_accuracy" in h]) for t in trained
    ]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    plt, fig, ax = _figure()
    for name, hist in curves:
        epochs = [h["epoch"] for h in hist]
        ax.plot(epochs, [100 * h["val_accuracy"] for h in hist], "o-", ms=4, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, ax, out.with_name(f"{out.stem}_training.png"))


def _plot_export(out: Path, rows: list[_Artifact]) -> Path | None:
    """Test accuracy vs median latency: colour per bundle, marker per artifact kind, a thin
    line joining a bundle's artifacts on one target (what quantisation costs and saves)."""
    points = [r for r in rows if r.accuracy is not None and r.median_ms is not None]
    if not points:
        return None
    plt, fig, ax = _figure()
    labels = kind_labels()
    markers = {k: _MARKERS[i % len(_MARKERS)] for i, k in enumerate(labels)}
    bundles = list(dict.fromkeys(r.bundle for r in points))
    colours = {b: f"C{i % 10}" for i, b in enumerate(bundles)}
    for b, target in dict.fromkeys((r.bundle, r.target) for r in points):
        mine = [r for r in points if (r.bundle, r.target) == (b, target)]
        xs, ys = [r.median_ms for r in mine], [100 * r.accuracy for r in mine]
        ax.plot(xs, ys, c=colours[b], lw=0.8, alpha=0.5)
        for r, x, y in zip(mine, xs, ys, strict=True):
            ax.scatter(x, y, c=colours[b], marker=markers[r.kind], s=50, zorder=3)
    handles = [plt.Line2D([], [], ls="", marker="o", c=colours[b], label=b) for b in bundles]
    handles += [
        plt.Line2D([], [], ls="", marker=markers[k], c="0.4", label=labels[k])
        for k in dict.fromkeys(r.kind for r in points)
    ]
    targets = ", ".join(dict.fromkeys(str(r.target) for r in points))
    ax.set_xlabel(f"median latency, batch 1 (ms, {targets})")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _save(plt, fig, ax, out.with_name(f"{out.stem}_export.png"))
