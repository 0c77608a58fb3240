"""The package's shape: no import cycles, no imports hidden in functions, ``__all__`` everywhere.

The check reads the installed package's source with :mod:`ast`, so it sees every import,
at module level or inside a function (imports under ``if TYPE_CHECKING:`` aside, as they never
run). CI also runs import-linter's layer contract (``pyproject.toml``); this test adds what a
layer contract cannot see: cycles inside one layer and imports done late to dodge a cycle.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mfkit

PACKAGE = Path(mfkit.__file__).resolve().parent


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of mfkit (Python source or a kernel)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is not a package: ``name`` is an attribute
        return False


def _type_checking_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str) -> tuple[set[str], list[str]]:
    """(mfkit modules the file imports, imports found inside functions or classes)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    targets: set[str] = set()
    hidden: list[str] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            inner = nested or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            found: list[str] = []
            if isinstance(child, ast.Import):
                found = [a.name for a in child.names if a.name.split(".")[0] == "mfkit"]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.split(".")[0] == "mfkit":
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        found.append(sub if is_module(sub) else base)
            for target in found:
                targets.add(target)
                if nested:
                    hidden.append(f"{name} line {child.lineno}: {target}")
            visit(child, inner)

    visit(tree, False)
    targets.discard(name)
    return targets, hidden


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes (first == last), or None."""
    color: dict[str, int] = {}
    stack: list[str] = []

    def dfs(v: str) -> list[str] | None:
        color[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if color.get(w, 0) == 1:
                return stack[stack.index(w) :] + [w]
            if color.get(w, 0) == 0:
                found = dfs(w)
                if found:
                    return found
        stack.pop()
        color[v] = 2
        return None

    for v in sorted(graph):
        if color.get(v, 0) == 0:
            found = dfs(v)
            if found:
                return found
    return None


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    graph: dict[str, set[str]] = {}
    hidden: list[str] = []
    for name, path in source_modules().items():
        targets, late = imports_of(path, name)
        graph[name] = targets
        hidden += late
    return graph, hidden


def test_the_cycle_finder_finds_a_cycle() -> None:
    # the check must be able to fail: a cycle through three modules, and one that is not
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_the_import_reader_sees_late_and_type_checking_imports(tmp_path: Path) -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "from mfkit.data import Ratings\n"
        "if TYPE_CHECKING:\n    from mfkit.models import FactorModel\n"
        "def f():\n    from mfkit.io import load_ratings\n    return load_ratings\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(src)
    targets, hidden = imports_of(path, "mfkit.probe")
    assert targets == {"mfkit.data", "mfkit.io"}
    assert hidden == ["mfkit.probe line 6: mfkit.io"]


def test_no_import_cycle_and_no_hidden_imports() -> None:
    graph, hidden = import_graph()
    assert len(graph) > 30  # the whole package was read
    assert hidden == [], "mfkit imports inside functions (move them to the top of the file)"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_no_module_imports_the_top_level_package() -> None:
    # mfkit/__init__.py only re-exports; a module that imports it depends on everything
    graph, _ = import_graph()
    users = sorted(n for n, t in graph.items() if "mfkit" in t and n not in ("mfkit",))
    assert users == [], f"modules importing the mfkit package itself: {users}"


@pytest.mark.parametrize("name", sorted(n for n in source_modules() if "._" not in f".{n}"))
def test_every_public_module_has_all(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list | tuple), name
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.__all__ names a missing {public!r}"


def test_public_api_of_mfkit_0_1_still_imports() -> None:
    from mfkit import io, metrics, model_selection
    from mfkit.als import half_step
    from mfkit.ratings import IdMap

    for name in (
        "SGD", "ALS", "Ratings", "as_ratings", "load", "load_ratings", "FoldedUsers",
        "DivergenceError", "NotFittedError", "openmp_enabled", "datasets", "io", "metrics",
        "model_selection",
    ):  # fmt: skip
        assert hasattr(mfkit, name), name
    assert callable(half_step) and IdMap is mfkit.data.IdMap
    assert {"load_movielens_100k", "load_netflix", "load_ratings", "save_cache"} <= set(io.__all__)
    assert {"rmse", "evaluate", "ndcg_at_k"} <= set(metrics.__all__)
    assert {"cross_validate", "KFold", "train_test_split"} <= set(model_selection.__all__)
    # nothing private leaks from the loaders any more
    assert not {"assemble_csr", "resolve_n_threads", "Scale"} & set(dir(io))


def test_import_leaves_the_environment_as_it_was() -> None:
    # the short OpenMP spin is set only while the runtime loads (see mfkit._core)
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, mfkit; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    env["GOMP_SPINCOUNT"] = "123"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "123"  # the user's own value is kept
