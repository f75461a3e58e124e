"""Dependencies point one way: pipelines/ -> components/ -> components/lib/, with no import cycle among
modules, counting imports inside functions (a cycle dodged with a late import is still a cycle)."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("components", "pipelines")


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in it (`from a.b import c` counts a.b, and a.b.c if c is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for following in sorted(graph[node]):
            if state.get(following) == 1:
                return [*path[path.index(following) :], following] if following in path else [node, following]
            if following not in state and (cycle := visit(following, [*path, following])):
                return cycle
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return []


def test_no_module_imports_one_that_imports_it_back():
    assert find_cycle(import_graph()) == []


def test_components_never_import_pipelines_or_kfp_and_no_stage_imports_another():
    stages = {path.stem for path in (REPO / "components").glob("*.py")} - {"__init__"}
    for name, path in project_modules().items():
        if not name.startswith("components"):
            continue
        text = path.read_text()
        assert "import kfp" not in text and "from kfp" not in text, name
        imported = imports_of(path, project_modules())
        assert not {module for module in imported if module.startswith("pipelines")}, name
        assert not {module for module in imported if module.removeprefix("components.") in stages}, name


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def lib_package(module: str) -> str | None:
    """The package of components/lib a module belongs to (`components.lib.data.contract` -> data); a module
    directly in components/lib is its own; None outside components/lib and for components.lib itself."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["components", "lib"] and len(parts) > 2 else None


# The last imports that close a cycle between packages, each with the cut that ends it; listed here
# until it is made (test_each_import_not_yet_cut_is_still_there keeps the list honest).
NOT_YET_CUT: set[tuple[str, str]] = set()


def package_graph(skipped: set[tuple[str, str]] = frozenset()) -> dict[str, dict[str, set[str]]]:
    """package -> package it imports -> the `module imports module` lines behind that edge."""
    graph: dict[str, dict[str, set[str]]] = {}
    for module, imported in import_graph().items():
        if (source := lib_package(module)) is None:
            continue
        edges = graph.setdefault(source, {})
        for name in imported:
            if (module, name) in skipped:
                continue
            if (target := lib_package(name)) not in (None, source):
                edges.setdefault(target, set()).add(f"{module} imports {name}")
    return graph


def package_cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Every group of packages that import one another, round and round (strongly connected, more than one)."""
    reach = {package: set(edges) for package, edges in graph.items()}
    changed = True
    while changed:
        changed = False
        for package, reached in reach.items():
            more = set().union(*(reach.get(other, set()) for other in reached)) - reached
            if more:
                reached |= more
                changed = True
    groups = {
        frozenset(other for other in reach if other == package or (other in reach[package] and package in reach[other]))
        for package in reach
    }
    return sorted(sorted(group) for group in groups if len(group) > 1)


def test_no_package_of_components_lib_imports_one_that_imports_it_back():
    graph = package_graph(NOT_YET_CUT)
    problems = [
        f"{', '.join(group)} import one another:\n"
        + "\n".join(
            f"  {source} -> {target}: {'; '.join(sorted(graph[source][target]))}"
            for source in group
            for target in group
            if target in graph[source]
        )
        for group in package_cycles(graph)
    ]
    assert not problems, "import cycles between packages of components/lib:\n" + "\n".join(problems)


def test_the_package_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}, "d": {"a": {"w"}}}
    assert package_cycles(graph) == [["a", "b", "c"]]
    assert package_cycles({"a": {"b": {"x"}}, "b": {}}) == []


def test_each_import_not_yet_cut_is_still_there():
    graph = import_graph()
    assert not [edge for edge in NOT_YET_CUT if edge[1] not in graph[edge[0]]], "cut: remove it from NOT_YET_CUT"
