"""The house's layout holds (README, "How it is built"): every module of app/, worker/,
glimpse/ and cli/ is at most 400 lines; glimpse/ (what every part shares) imports none of
app, worker and cli; the API never imports a model runtime or the worker; the engine
(worker/engine) imports no runtime but the contract (worker/runtime/base.py); nothing but
cli imports cli. Imports are read from the source (every `import` and `from` statement,
function-level ones included), not from what happens to be loaded."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "glimpse", "cli")
MAX_LINES = 400
RUNTIMES = ("onnxruntime", "torch", "worker")


def modules(*packages: str) -> list[Path]:
    return [
        path
        for package in packages
        for path in sorted((REPO / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


def imported(path: Path) -> set[str]:
    """Every module name an import statement of `path` names (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(REPO)))
def test_a_module_is_at_most_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines"


def test_glimpse_imports_none_of_app_worker_and_cli() -> None:
    found = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules("glimpse")
        for name in imported(path)
        if _under(name, ("app", "worker", "cli"))
    }
    assert not found


def test_the_api_imports_no_model_runtime_and_no_worker() -> None:
    found = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules("app")
        for name in imported(path)
        if _under(name, RUNTIMES + ("cli",))
    }
    assert not found


def test_the_engine_imports_only_the_runtime_contract() -> None:
    found = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules("worker/engine")
        for name in imported(path)
        if _under(name, ("worker.runtime", "onnxruntime", "torch"))
        and name != "worker.runtime.base"
    }
    assert not found


def test_only_the_cli_imports_the_cli() -> None:
    found = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules("app", "worker", "glimpse")
        for name in imported(path)
        if _under(name, ("cli",))
    }
    assert not found
