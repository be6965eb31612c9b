"""Each rule's conda env provides every package its script imports, through ouroboros, at any depth.

A rule runs in its own env (``--software-deployment-method conda``), so a package missing there
fails only on a user's cluster, hours into a run, while CI's venv, which has everything, passes.
This test reads the source instead of running it: script → ouroboros modules → third-party names.

Imports inside functions count (they run when the function does), but only for the functions a
rule can reach: ``from ouroboros.features import pixels`` needs what ``pixels`` and the module's
top level import, not torch, which only ``features.dinov2`` imports. An import inside
``try: … except ImportError`` is optional by construction and needs nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ouroboros"

# Import name → the package (pip and conda-forge name) that provides it. Every third-party name
# the workflow imports must be here: a new one fails the test until someone says where it comes from.
PROVIDER = {
    "diffusers": "diffusers",
    "faiss": "faiss-cpu",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "pandas": "pandas",
    "PIL": "pillow",
    "safetensors": "safetensors",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "torch_fidelity": "torch-fidelity",
    "torchvision": "torchvision",
    "tqdm": "tqdm",
    "transformers": "transformers",
    "yaml": "pyyaml",
}

# Packages an env gets through one it lists, because that one requires them (checked against the
# installed metadata below). pillow stays unlisted on purpose: only data.py's image-folder reader
# imports PIL, torchvision and matplotlib both require it, and pyproject.toml (CI's venv) does not
# pin it either, so a pin in an env file would be a version CI never chose.
REQUIRED_BY = {
    "matplotlib": {"numpy", "pillow"},
    "torchvision": {"numpy", "pillow", "torch"},
    "torch-fidelity": {"numpy", "pillow", "torch", "torchvision", "tqdm"},
    "transformers": {"numpy", "pyyaml", "safetensors", "tqdm"},
    "diffusers": {"numpy", "pillow", "safetensors"},
    "scikit-learn": {"numpy", "scipy"},
    "pandas": {"numpy"},
    "faiss-cpu": {"numpy"},
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


# --- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    smk: Path
    script: Path | None
    conda: Path | None


_RULE = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:", re.M)


def _directive(block: str, key: str) -> str | None:
    """The quoted path of ``key:``, on its own line or the next one."""
    found = re.search(rf"^\s+{key}:\s*(?:#.*)?\n?\s*[rf]?([\"'])(.+?)\1", block, re.M)
    return found.group(2) if found else None


def parse_rules(smk: Path) -> list[Rule]:
    """Rules of one .smk file with their script and conda paths, resolved as Snakemake resolves
    them: relative to the file that holds the rule."""
    text = smk.read_text()
    starts = list(_RULE.finditer(text))
    rules = []
    ends = [m.start() for m in starts[1:]] + [len(text)] if starts else []
    for here, end in zip(starts, ends, strict=True):
        block = text[here.end() : end]
        # a rule ends at the first line back at column 0 (a def, another statement)
        block = re.split(r"\n(?=[^\s#])", block, maxsplit=1)[0]
        script, conda = _directive(block, "script"), _directive(block, "conda")
        rules.append(Rule(here.group(1), smk,
                          (smk.parent / script).resolve() if script else None,
                          (smk.parent / conda).resolve() if conda else None))
    return rules


RULES = [r for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")) for r in parse_rules(smk)]
SCRIPT_RULES = [r for r in RULES if r.script and r.conda]


# --- imports -------------------------------------------------------------------------------------


def _catches_import_error(node: ast.Try) -> bool:
    names = {"ImportError", "ModuleNotFoundError"}
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(k, ast.Name) and k.id in names for k in kinds):
            return True
    return False


def _imports(node: ast.AST, optional: bool = False):
    """(import statement, optional) under ``node``; optional when a try around it catches ImportError."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, optional
    elif isinstance(node, ast.Try) and _catches_import_error(node):
        for child in node.body:
            yield from _imports(child, True)
        for child in node.handlers + node.orelse + node.finalbody:
            yield from _imports(child, optional)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _imports(child, optional)


def _names(nodes: list[ast.stmt]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


class Module:
    """One source file: its top-level functions apart, since a function's imports run only when
    something reachable calls it; everything else (imports, classes, assignments) runs on import."""

    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        tree = ast.parse(path.read_text(), filename=str(path))
        self.functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        # `if __name__ == "__main__":` of an imported module never runs (it runs only when the module is
        # the program, `python -m ouroboros.X`): a rule's script imports the module, so it is left out
        self.eager = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and not (name != "__main__" and isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]

    def reached(self, name: str | None) -> list[ast.stmt]:
        """The statements that run when ``name`` is used: the top level, that function and the
        functions those reference by name, in turn. None: the module is used through attributes,
        so any function may run; "": only the top level (``from ouroboros.x import y`` runs it)."""
        todo = list(self.functions) if name is None else [name] if name in self.functions else []
        todo += [n for n in _names(self.eager) if n in self.functions]
        nodes, seen = list(self.eager), set()
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.add(fn)
            nodes.append(self.functions[fn])
            todo += [n for n in _names([self.functions[fn]]) if n in self.functions]
        return nodes


class ImportGraph:
    """Third-party top-level names a script needs, following the ``ouroboros`` package in ``src``."""

    def __init__(self, src: Path):
        self.src = src
        self._modules: dict[str, Module] = {}

    def module_path(self, dotted: str) -> Path | None:
        base = self.src.joinpath(*dotted.split("."))
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None

    def module(self, dotted: str) -> Module:
        if dotted not in self._modules:
            path = self.module_path(dotted)
            if path is None:
                raise AssertionError(f"{dotted} is imported but {self.src} has no such module")
            self._modules[dotted] = Module(dotted, path)
        return self._modules[dotted]

    def _targets(self, node: ast.Import | ast.ImportFrom, inside: Module):
        """What one import statement loads: ("external", top name) or ("module", dotted, name),
        with name as in Module.reached."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != PACKAGE:
                    yield "external", parts[0]
                    continue
                # the packages above run their top level; the module itself is used through attributes
                yield from (("module", ".".join(parts[:i]), "") for i in range(1, len(parts)))
                yield "module", alias.name, None
            return
        base = node.module or ""
        if node.level:  # relative: resolved against the importing module's package
            package = inside.name.split(".")
            package = package if inside.path.name == "__init__.py" else package[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
        parts = base.split(".")
        if parts[0] != PACKAGE:
            yield "external", parts[0]
            return
        yield from (("module", ".".join(parts[:i]), "") for i in range(1, len(parts) + 1))
        for alias in node.names:
            if alias.name == "*":
                yield "module", base, None
            elif self.module_path(f"{base}.{alias.name}"):
                yield "module", f"{base}.{alias.name}", None
            else:
                yield "module", base, alias.name

    def externals(self, script: Path) -> dict[str, list[str]]:
        """{third-party top name: the chain of modules through which the script imports it}."""
        found: dict[str, list[str]] = {}
        script_module = Module("__main__", script)
        todo = [(script_module, None, [str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else script.name])]
        seen: set[tuple[str, str | None]] = set()
        while todo:
            module, name, chain = todo.pop()
            key = (module.name, name)
            if key in seen:
                continue
            seen.add(key)
            for node in module.reached(name):
                for statement, optional in _imports(node):
                    if optional:
                        continue
                    for target in self._targets(statement, module):
                        if target[0] == "external":
                            top = target[1]
                            if top not in sys.stdlib_module_names and top != "__future__":
                                found.setdefault(top, chain)
                        else:
                            _, dotted, wanted = target
                            todo.append((self.module(dotted), wanted, chain + [dotted]))
        return found


# --- env files -----------------------------------------------------------------------------------


def env_packages(path: Path) -> set[str]:
    """Normalized names of the packages an env file lists, conda's and pip's."""
    listed = []
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            listed += [Requirement(spec).name for spec in dep.get("pip", [])]
        else:  # conda match spec: name, then an optional version (=, ==, >=, a space)
            listed.append(re.split(r"[\s=<>!~]", dep.split("::")[-1], maxsplit=1)[0])
    return {normalize(name) for name in listed}


def provided(listed: set[str]) -> set[str]:
    """The listed packages and, transitively, what REQUIRED_BY says they bring."""
    have, todo = set(listed), list(listed)
    while todo:
        for dep in REQUIRED_BY.get(todo.pop(), ()):
            if dep not in have:
                have.add(dep)
                todo.append(dep)
    return have


# --- tests ---------------------------------------------------------------------------------------


GRAPH = ImportGraph(ROOT / "src")


@pytest.mark.parametrize("rule", SCRIPT_RULES, ids=lambda r: r.name)
def test_rule_env_provides_every_import(rule):
    listed = env_packages(rule.conda)
    have = provided(listed)
    env = rule.conda.relative_to(ROOT)
    problems = []
    for top, chain in sorted(GRAPH.externals(rule.script).items()):
        via = " → ".join(chain)
        if top not in PROVIDER:
            problems.append(f"{via} imports {top!r}, which PROVIDER in tests/test_envs.py does not map; "
                            f"add it with the package that provides it")
        elif PROVIDER[top] not in have:
            problems.append(f"{env} lacks {PROVIDER[top]} (import {top}, via {via}); add it, pinned to the version "
                            f"pyproject.toml's venv installs")
    assert not problems, f"rule {rule.name}:\n" + "\n".join(problems)


def test_every_script_rule_names_a_conda_env():
    assert RULES, "no rule parsed from workflow/rules/*.smk"
    scripted = [r.name for r in RULES if r.script]
    # the parser must see every script: directive, or the test above would skip rules silently
    directives = sum(len(re.findall(r"^\s+script:", p.read_text(), re.M))
                     for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert len(scripted) == directives
    assert [r.name for r in RULES if r.script and not r.conda] == []
    for r in SCRIPT_RULES:
        assert r.script.is_file(), f"rule {r.name}: {r.script} does not exist"
        assert r.conda.is_file(), f"rule {r.name}: {r.conda} does not exist"


def test_rule_parser_reads_known_rules():
    by_name = {r.name: r for r in RULES}
    assert by_name["figures"].conda == ROOT / "envs" / "plot.yaml"
    assert by_name["figures"].script == ROOT / "workflow" / "scripts" / "figures.py"
    assert by_name["train"].conda == ROOT / "envs" / "torch.yaml"
    assert by_name["reference"].script == ROOT / "workflow" / "scripts" / "reference.py"  # second rule of a file


def test_figures_needs_faiss_through_neighbors_and_not_torch():
    found = GRAPH.externals(ROOT / "workflow" / "scripts" / "figures.py")
    assert found["faiss"][-1] == "ouroboros.neighbors"
    # features.pixels is numpy only, and runtime imports torch under except ImportError
    assert "torch" not in found and "transformers" not in found


def test_import_graph_follows_only_reachable_functions(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "import numpy\n"
        "def light():\n    return helper()\n"
        "def helper():\n    import scipy.stats\n"
        "def heavy():\n    import torch\n"
        "class Uses:\n    def m(self):\n        import pandas\n"
    )
    (pkg / "b.py").write_text("try:\n    import torch\nexcept ImportError:\n    torch = None\nelse:\n    import tqdm\n")
    (pkg / "c.py").write_text("from . import b\ndef f():\n    import yaml\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom ouroboros.a import light\nimport ouroboros.c\n"
                      "def main():\n    from ouroboros import b\n")
    found = ImportGraph(tmp_path).externals(script)
    # numpy: a's top level; scipy: called by light; pandas: a class body's methods count;
    # tqdm: a try's else is not guarded; yaml: c is imported whole; torch: heavy is never reached
    assert sorted(found) == ["numpy", "pandas", "scipy", "tqdm", "yaml"]
    assert found["scipy"] == ["script.py", "ouroboros.a"]


def test_env_file_parsing_and_requirements(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("dependencies:\n  - python=3.11\n  - conda-forge::faiss-cpu >=1.8\n  - pip:\n"
                   "      - Torch_Fidelity==0.4.0\n      - scikit-learn\n")
    assert env_packages(env) == {"python", "faiss-cpu", "torch-fidelity", "scikit-learn"}
    assert {"torch", "torchvision", "pillow", "numpy", "scipy"} <= provided(env_packages(env))


@pytest.mark.parametrize("package", sorted(REQUIRED_BY))
def test_required_by_matches_installed_metadata(package):
    """What REQUIRED_BY claims holds for the versions CI installs (unconditional requirements only)."""
    requires = [Requirement(r) for r in importlib.metadata.requires(package) or []]
    unconditional = {normalize(r.name) for r in requires if r.marker is None or r.marker.evaluate({"extra": ""})}
    assert REQUIRED_BY[package] <= unconditional
