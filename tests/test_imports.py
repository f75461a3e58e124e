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
