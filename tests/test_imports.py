"""The package's import graph: the modules that were once in a circle stay out of every circle.

Imports inside functions count: a lazy import is still a dependency, and a circle of lazy imports
is a design knot (which module owns the concept?) even when Python resolves it at run time."""

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ouroboros"


@functools.cache  # one parse of the package for every test of this file
def graph() -> dict[str, set[str]]:
    """ouroboros module → the ouroboros modules it imports anywhere in its source."""
    names = {p.stem for p in SRC.glob("*.py")}
    out: dict[str, set[str]] = {}
    for path in SRC.glob("*.py"):
        deps = set()
        tree = ast.parse(path.read_text())
        # `if __name__ == "__main__":` runs only when the module is the program (python -m ouroboros.X):
        # the command line it hands over to is no dependency of the module
        tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] != "ouroboros":
                    continue
                if len(parts) > 1:
                    deps.add(parts[1])
                else:  # from ouroboros import a, b
                    deps |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ouroboros.")}
        out[path.stem] = deps - {path.stem}
    return out


def reaches(g: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += sorted(g.get(node, ()))
    return False


def test_the_graph_sees_the_imports_it_should():
    g = graph()
    assert "runtime" in g["warm"] and "verdicts" in g["theory"] and "theory" in g["findings"]


@pytest.mark.parametrize("module", ["runtime", "warm", "findings", "theory", "verdicts", "cuda", "preflight", "costs"])
def test_module_is_in_no_import_circle(module):
    g = graph()
    back = sorted(dep for dep in g[module] if reaches(g, dep, module))
    assert not back, f"ouroboros.{module} imports {back}, which import it back"
