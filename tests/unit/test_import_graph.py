"""The package's import graph: no cycle, the engine free of pytest, option parsing free of netlink.

Read from the source with ast, so imports inside functions (the usual way to hide a
cycle) count as much as the ones at the top.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).parents[2] / "pytest_lxcexp"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    # `from . import x` imports the submodule x; `from .m import name` imports m.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.update(_resolve(module, node, path.name == "__init__.py"))
        # Only modules of the package, and not a package's own __init__ (importing a.b runs a's, not a cycle).
        graph[module] = {name for name in found if name in paths and not module.startswith(name + ".")} - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_package_has_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_imports_the_plugin_module() -> None:
    graph = import_graph()
    assert [module for module, targets in graph.items() if "pytest_lxcexp.plugin" in targets] == []


def test_the_engine_never_imports_pytest() -> None:
    for path in (PACKAGE / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not [name for name in names if name.split(".")[0] in ("pytest", "_pytest")], path


def test_option_parsing_needs_no_kernel_access() -> None:
    # Validating an option must not pull in netlink or liblxc.
    graph = import_graph()
    pulled = reachable(graph, "pytest_lxcexp.engine.config")
    assert not pulled & {"pytest_lxcexp.engine.network", "pytest_lxcexp.engine.fleet", "pytest_lxcexp.engine.children"}
    source = "\n".join(
        (PACKAGE.parent / (name.replace(".", "/") + ".py")).read_text()
        for name in pulled | {"pytest_lxcexp.engine.config"}
    )
    assert "pyroute2" not in source and "import lxc" not in source


def test_the_engine_imports_nothing_above_it() -> None:
    # The plugin and the CLI are skins over the engine: session state, membership, fixtures
    # and reports stay out of it, however deep an import hides.
    graph = import_graph()
    engine = {module for module in graph if module.startswith("pytest_lxcexp.engine")}
    above = {module: sorted(reachable(graph, module) - engine) for module in engine}
    assert {module: found for module, found in above.items() if found} == {}
