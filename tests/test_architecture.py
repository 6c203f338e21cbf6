"""The dependency map of docs/architecture.md, checked on the source: every import of every
module (top level, inside functions and under TYPE_CHECKING alike) is parsed with `ast`, and a
violation fails with the file and line that breaks the rule.

Layers, lowest first: targets <- profilers <- exporters <- factory. A package may import its
own modules and those of lower layers, never a higher one (imports for type checking
included). No module may reach itself through the imports that run (no cycle, lazy imports
included). The on-device agent's import closure holds no torch: it must run where only a
runtime (onnxruntime, tensorrt) is installed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("targets", "profilers", "exporters", "factory")  # lowest first
# what a device that runs only the agent has installed: no training stack
AGENT_ROOTS = ("profilers.agent_app", "profilers.agent_server")
TRAINING_STACK = ("torch", "torchvision", "fvcore", "onnxslim", "pymoo", "safetensors")
# `factory agent` starts through the CLI: its module-level imports must be light too
CLI_ROOTS = ("factory.cli.main",)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (a `from X import name` counts as X and X.name)
    line: int
    top_level: bool  # executed on import: not inside a function nor under TYPE_CHECKING
    type_only: bool = False  # under `if TYPE_CHECKING:`, never executed

    @property
    def where(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.line}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    files = (p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


MODULES = _sources()


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
        "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, top: bool, typing: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            guarded = typing or _is_type_checking(child)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, top, typing)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(module, is_package, child.level, child.module)
                yield Import(module, base, child.lineno, top, typing)
                for alias in child.names:
                    if f"{base}.{alias.name}" in MODULES:
                        yield Import(module, f"{base}.{alias.name}", child.lineno, top, typing)
            yield from walk(child, inner and not guarded, guarded)

    yield from walk(tree, True, False)


IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def _ours(name: str) -> str | None:
    """The module of this repository that `name` resolves to (a package's __init__ too)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph(top_level_only: bool) -> dict[str, list[Import]]:
    """Module -> the imports of it that run: on import only, or at any time."""
    graph: dict[str, list[Import]] = {name: [] for name in MODULES}
    for imp in IMPORTS:
        if imp.top_level or not (top_level_only or imp.type_only):
            graph[imp.module].append(imp)
    return graph


def _closure(roots: tuple[str, ...], top_level_only: bool) -> dict[str, list[Import]]:
    """Every module reachable from `roots` -> the import chain that reaches it."""
    graph = _graph(top_level_only)
    chains: dict[str, list[Import]] = {r: [] for r in roots}
    todo = list(roots)
    while todo:
        name = todo.pop()
        for imp in graph[name]:
            ours = _ours(imp.target)
            key = ours or imp.target
            if key in chains:
                continue
            chains[key] = [*chains[name], imp]
            if ours is not None:
                # importing a.b.c runs a/__init__ and a/b/__init__ first
                parents = [".".join(ours.split(".")[:i]) for i in range(1, ours.count(".") + 1)]
                todo.extend(p for p in parents if p in MODULES and p not in chains)
                chains.update({p: chains[key] for p in parents if p not in chains})
                todo.append(ours)
    return chains


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def test_every_package_is_parsed() -> None:
    assert {m.split(".")[0] for m in MODULES} == set(LAYERS)
    assert len(MODULES) > 50 and len(IMPORTS) > 300


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_down_the_layers(layer: str) -> None:
    mine = LAYERS.index(layer)
    bad = [
        f"{imp.where} imports {imp.target}"
        for imp in IMPORTS
        if _layer(imp.module) == mine and (_layer(imp.target) or -1) > mine
    ]
    assert not bad, f"{layer} may import only {', '.join(LAYERS[: mine + 1])}:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = {
        name: sorted({o for imp in imps if (o := _ours(imp.target)) and o != name})
        for name, imps in _graph(top_level_only=False).items()
    }
    # a package's __init__ re-exporting its own modules is no cycle of the code
    graph = {n: [o for o in out if not n.startswith(f"{o}.")] for n, out in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _agent_roots() -> tuple[str, ...]:
    """The agent and the runtime backends `profilers.registry` imports by name."""
    from profilers.registry import _BUILTINS

    return (*AGENT_ROOTS, *(module for module, _ in _BUILTINS.values()))


def _violations(chains: dict[str, list[Import]], banned: tuple[str, ...]) -> list[str]:
    out = []
    for name, chain in sorted(chains.items()):
        if name.split(".")[0] in banned:
            out.append(f"{name} via " + " -> ".join(f"{i.where} ({i.target})" for i in chain))
    return out


def test_no_torch_in_the_agent_import_closure() -> None:
    banned = (*TRAINING_STACK, "factory", "exporters")
    bad = _violations(_closure(_agent_roots(), top_level_only=False), banned)
    assert not bad, "the agent must run with a runtime only:\n" + "\n".join(bad)


def test_the_cli_starts_without_torch() -> None:
    bad = _violations(_closure(CLI_ROOTS, top_level_only=True), TRAINING_STACK)
    assert not bad, "`factory agent` must start without torch:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    import numpy\n"
        "def f():\n"
        "    import torch\n"
        "    from ..up import thing\n"
    )
    found = [(i.target, i.top_level, i.type_only) for i in _imports("pkg.sub.mod", source)]
    assert found == [
        ("pkg.sub", True, False),
        ("numpy", False, True),
        ("torch", False, False),
        ("pkg.up", False, False),
    ]


def test_cited_docs_exist() -> None:
    """Every `docs/<page>.md` a module cites is in the repository (citations resolve)."""
    cited = {
        (path, match)
        for path in MODULES.values()
        for match in re.findall(r"docs/[A-Za-z0-9_./-]+\.md", path.read_text())
    }
    missing = sorted(
        f"{p.relative_to(ROOT)} cites {m}" for p, m in cited if not (ROOT / m).is_file()
    )
    assert not missing, "\n".join(missing)
    assert not [p for p in MODULES.values() if "RESEARCH.md" in p.read_text()]
