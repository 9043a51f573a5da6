"""The layering rules of DESIGN.md, made executable: read every module's imports (with ``ast``, no
import is executed) and fail when a rule is broken.

* Only ``stepstone/browser/`` imports ``js``, ``pyodide`` or ``pyodide_js`` — anywhere in a module.
* The core (the top-level ``stepstone/_*.py`` modules) imports only the standard library and other
  core modules at module level, plus the store *contract* (``stepstone.stores`` itself, whose
  ``open_store`` imports a backend only when called): never a store backend, the server, the
  client, the hooks, the streams client, the HTTP seam or the browser.
* A third-party package is imported only where its extra says: starlette/uvicorn in ``server/``,
  httpx in ``_http/_httpx.py`` — and never by a module the browser path loads.
* No import cycle between modules (``TYPE_CHECKING`` imports count: a cycle hidden behind them is
  still a cycle in the design). Imports inside functions are how optional parts stay lazy and are
  not edges.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "stepstone"
JS_MODULES = {"js", "pyodide", "pyodide_js"}
#: third-party top-level names → the modules allowed to import them (prefixes of dotted names)
THIRD_PARTY_HOMES: dict[str, tuple[str, ...]] = {
    "starlette": ("stepstone.server",),
    "uvicorn": ("stepstone.server",),
    "uvloop": ("stepstone.server", "stepstone.cli"),  # the CLI runs on it when installed (lazily)
    "httptools": ("stepstone.server",),
    "cryptography": ("stepstone.server",),
    "httpx": ("stepstone._http._httpx",),
    "psycopg": ("stepstone.stores.postgres",),
    "pytest": ("stepstone.pytest_plugin",),
    "opentelemetry": ("stepstone.otel",),
    "pytest_asyncio": ("stepstone.pytest_plugin",),
    "psycopg_pool": ("stepstone.stores.postgres",),
}
CORE_MAY_IMPORT = {"stepstone.stores", "stepstone.stores._contract", "stepstone.stores._urls"}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    top_level: set[str] = field(default_factory=set)  # stepstone modules imported at module level
    lazy: set[str] = field(default_factory=set)  # stepstone modules imported inside functions
    external_top: set[str] = field(default_factory=set)  # other top-level packages, module level
    external_any: set[str] = field(default_factory=set)  # other top-level packages, anywhere


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _load() -> dict[str, Module]:
    modules = {
        _module_name(p): Module(_module_name(p), p, p.name == "__init__.py") for p in sorted(PACKAGE.rglob("*.py"))
    }
    for module in modules.values():
        _read_imports(module, modules)
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _read_imports(module: Module, modules: dict[str, Module]) -> None:
    tree = ast.parse(module.path.read_text(), str(module.path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.append(child if child in modules else base)
        else:
            continue
        lazy = id(node) in in_function
        for target in targets:
            top = target.split(".")[0]
            if top == "stepstone":
                (module.lazy if lazy else module.top_level).add(target)
            else:
                module.external_any.add(top)
                if not lazy:
                    module.external_top.add(top)


MODULES = _load()


def _is_core(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 2 and parts[1].startswith("_") and not (PACKAGE / parts[1]).is_dir()


def test_the_tree_was_read() -> None:
    assert {"stepstone._engine", "stepstone.browser._idb", "stepstone.stores.sqlite._store"} <= set(MODULES)
    assert any(_is_core(name) for name in MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_browser_folder_imports_javascript(name: str) -> None:
    module = MODULES[name]
    if name == "stepstone.browser" or name.startswith("stepstone.browser."):
        return
    assert not module.external_any & JS_MODULES, (
        f"{name} imports {sorted(module.external_any & JS_MODULES)}: only stepstone/browser/ may talk to JavaScript"
    )


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _is_core(n)))
def test_the_core_imports_only_the_stdlib_and_the_core(name: str) -> None:
    module = MODULES[name]
    outside = sorted(module.external_top - set(sys.stdlib_module_names))
    assert not outside, f"the core module {name} imports {outside} at module level: the core is stdlib-only"
    for target in module.top_level:
        assert _is_core(target) or target in CORE_MAY_IMPORT or target == "stepstone", (
            f"the core module {name} imports {target} at module level; the core may import the store "
            "contract, never a store backend, the server, the client, the hooks, streams, _http or browser"
        )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_third_party_packages_stay_in_their_homes(name: str) -> None:
    module = MODULES[name]
    for top in module.external_any - set(sys.stdlib_module_names) - JS_MODULES:
        homes = THIRD_PARTY_HOMES.get(top)
        assert homes is not None, f"{name} imports {top}, a package stepstone does not depend on"
        assert any(name == home or name.startswith(home + ".") for home in homes), (
            f"{name} imports {top}; only {', '.join(homes)} may (an optional extra)"
        )


def test_nothing_outside_the_server_imports_it_at_module_level() -> None:
    offenders = [
        f"{name} -> {target}"
        for name, module in MODULES.items()
        if not name.startswith("stepstone.server")
        for target in module.top_level
        if target.startswith("stepstone.server")
    ]
    assert not offenders, offenders


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    edges = {name: {t for t in module.top_level if t in MODULES and t != name} for name, module in MODULES.items()}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
