"""The type stubs of the compiled kernels state their real signatures.

``mypy.stubtest`` (in ci/lint.sh) checks the stubs against the installed modules. Cython's
dispatcher of a fused-type function reports its keyword-only defaults as positional ones, so
stubtest cannot check those functions; this test compares every function of every stub with
the runtime signature (of each specialisation for a fused function), and the names a stub
declares with the names the module defines.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import pathlib
import pkgutil
from typing import Any

import pytest

import mfkit
from mfkit.io import _lines, _tokenize
from mfkit.models import _sgd


def _kernel_modules() -> list[str]:
    """Every compiled module of the installed package, so a new kernel is checked too."""
    ext = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = [m.name for m in pkgutil.walk_packages(mfkit.__path__, "mfkit.")]
    return [n for n in names if (importlib.util.find_spec(n).origin or "").endswith(ext)]


KERNELS = _kernel_modules()


class _NoDefault:
    def __repr__(self) -> str:
        return "<no default>"


_NO_DEFAULT = _NoDefault()


def _stub_path(modname: str) -> pathlib.Path:
    pkg, _, name = modname.rpartition(".")
    return pathlib.Path(importlib.import_module(pkg).__file__).parent / f"{name}.pyi"


def _stub(modname: str) -> ast.Module:
    return ast.parse(_stub_path(modname).read_text(encoding="utf-8"))


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, str, Any]]:
    """(name, kind, default) of each parameter, as inspect names the kinds."""
    a = fn.args
    out: list[tuple[str, str, Any]] = []
    positional = a.posonlyargs + a.args
    pos_defaults = [_NO_DEFAULT] * (len(positional) - len(a.defaults)) + a.defaults
    for k, (arg, d) in enumerate(zip(positional, pos_defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if k < len(a.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, _NO_DEFAULT if d is _NO_DEFAULT else ast.literal_eval(d)))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((arg.arg, "KEYWORD_ONLY", _NO_DEFAULT if d is None else ast.literal_eval(d)))
    assert a.vararg is None and a.kwarg is None, "kernels take no *args / **kwargs"
    return out


def _runtime_params(f: Any) -> list[tuple[str, str, Any]]:
    return [
        (p.name, p.kind.name, _NO_DEFAULT if p.default is p.empty else p.default)
        for p in inspect.signature(f).parameters.values()
    ]


def _specialisations(f: Any) -> list[Any]:
    """A fused function's float/double/... versions (their signatures are right), or f."""
    sigs = getattr(f, "__signatures__", None)
    return [f[key] for key in sigs] if sigs else [f]


def _module_names(mod: Any) -> set[str]:
    """The functions the compiled module defines (private ones too) and its public
    constants; not Cython's own helpers or imported modules."""
    names = set()
    for name, v in vars(mod).items():
        if name.startswith("__") or inspect.ismodule(v):
            continue
        if callable(v):
            if getattr(v, "__module__", None) == mod.__name__:
                names.add(name)
        elif not name.startswith("_"):
            names.add(name)
    return names


def _stub_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # private type aliases and type variables of the stub itself
    return {n for n in names if not (n.startswith("_") and n[1:2].isupper())}


def test_every_kernel_is_found() -> None:
    for name in ("mfkit.io._tokenize", "mfkit.io._lines", "mfkit.models._sgd"):
        assert name in KERNELS


@pytest.mark.parametrize("modname", KERNELS)
def test_stub_functions_match_the_runtime_signatures(modname: str) -> None:
    mod = importlib.import_module(modname)
    fns = [n for n in _stub(modname).body if isinstance(n, ast.FunctionDef)]
    assert fns, f"{modname} stub declares no function"
    for fn in fns:
        assert fn.name != "__getattr__", f"{modname} stub hides its names behind __getattr__"
        want = _stub_params(fn)
        for f in _specialisations(getattr(mod, fn.name)):
            assert _runtime_params(f) == want, f"{modname}.{fn.name}"


@pytest.mark.parametrize("modname", KERNELS)
def test_stub_declares_every_name_of_the_module(modname: str) -> None:
    mod = importlib.import_module(modname)
    names = _module_names(mod)
    assert _stub_names(_stub(modname)) == names


def test_stub_constants_match_the_runtime() -> None:
    tree = _stub("mfkit.io._tokenize")
    (reason,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Reason"]
    members = {
        t.id: ast.literal_eval(node.value)
        for node in reason.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert members == {r.name: r.value for r in _tokenize.Reason}
    assert _tokenize.N_CODES == max(_tokenize.Reason) + 1
    # every reason a loader can report has a message (WIDE_ID only restarts the parse)
    no_message = {_tokenize.Reason.OK, _tokenize.Reason.WIDE_ID}
    assert set(_tokenize.REASONS) == set(_tokenize.Reason) - no_message
    assert all(isinstance(v, str) and v for v in _tokenize.REASONS.values())
    assert isinstance(_tokenize.MAX_BAD, int) and _tokenize.MAX_BAD > 0
    assert isinstance(_lines.PARALLEL_MIN, int) and _lines.PARALLEL_MIN > 0
    assert (_sgd.LOSS_SQUARED, _sgd.LOSS_HUBER, _sgd.LOSS_ABSOLUTE) == (0, 1, 2)
