"""Every plugin has one shape (docs/plugin-authors.md, "Layout"), and no module grows past
MAX_LINES.

A plugin folder holds ``README.md``, ``pyproject.toml``, ``src/``, ``tests/`` and optionally
``docs/`` (images). Its package holds ``plugin.py`` (registrations and configs only), the
places named after what they hold (``data``, ``models``, ``trainers``, ``evaluators``,
``aggregators``, ``calibrators``; each a module or a package), ``recipes/``, and optionally a
plugin command (``cli``) and a results table helper (``report``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
FOLDER_ENTRIES = {"README.md", "pyproject.toml", "src", "tests", "docs"}
PACKAGE_ENTRIES = {"__init__", "plugin", "data", "models", "trainers", "evaluators", "aggregators",
                   "calibrators", "recipes", "cli", "report"}
MAX_LINES = 400
IGNORED = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def package_dir(plugin: Path) -> Path:
    (pkg,) = [p for p in (plugin / "src").iterdir() if p.is_dir() and not p.name.endswith(".egg-info")
              and p.name not in IGNORED]
    return pkg


def layout_problems(plugin: Path) -> list[str]:
    """What in one plugin folder breaks the shared layout (empty when it follows it)."""
    problems = [f"{plugin.name}/{p.name}: not part of the layout"
                for p in plugin.iterdir() if p.name not in FOLDER_ENTRIES | IGNORED
                and not p.name.startswith(".") and not p.name.endswith(".egg-info")]
    pkg = package_dir(plugin)
    for entry in pkg.iterdir():
        name = entry.name.removesuffix(".py") if entry.is_file() else entry.name
        if entry.name in IGNORED or (entry.is_file() and entry.suffix != ".py"):
            continue
        if name not in PACKAGE_ENTRIES:
            problems.append(f"{plugin.name}: {pkg.name}/{entry.name} belongs inside one of {sorted(PACKAGE_ENTRIES)}")
    if not (pkg / "plugin.py").is_file():
        problems.append(f"{plugin.name}: no plugin.py")
    return problems


def plugin_py_problems(source: str) -> list[str]:
    """plugin.py holds registrations and configs only: imports of pk.core and other plugins'
    plugin modules, constants, dataclasses and hook implementations."""
    problems = ["has a `# type: ignore`"] if "type: ignore" in source else []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module and not (
                node.module == "__future__" or node.module.split(".")[0] in {"dataclasses", "typing", "pk"}
                or node.module.endswith(".plugin") or node.module.startswith("pk.core")):
            problems.append(f"imports {node.module}")
        elif isinstance(node, ast.Import):
            problems.append(f"imports {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith(("pk_register_", "pk_")):
            problems.append(f"defines function {node.name}")
    return problems


def long_modules(folder: Path) -> list[str]:
    return [f"{p.relative_to(folder)}: {n} lines" for p in sorted(folder.rglob("*.py"))
            if not IGNORED & set(p.parts) and (n := len(p.read_text().splitlines())) > MAX_LINES]


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_follows_the_layout(plugin: Path) -> None:
    assert layout_problems(plugin) == []


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_py_holds_registrations_and_configs_only(plugin: Path) -> None:
    assert plugin_py_problems((package_dir(plugin) / "plugin.py").read_text()) == []


@pytest.mark.parametrize("folder", [*(p / "src" for p in PLUGINS), ROOT / "core", ROOT / "cli"],
                         ids=[*(p.name for p in PLUGINS), "core", "cli"])
def test_no_module_over_the_line_limit(folder: Path) -> None:
    assert long_modules(folder) == []


def test_layout_check_catches_a_stray_module(tmp_path: Path) -> None:
    plugin = tmp_path / "pk-demo"
    pkg = plugin / "src" / "pk_demo"
    pkg.mkdir(parents=True)
    for name in ("__init__.py", "plugin.py", "models.py"):
        (pkg / name).write_text("")
    (plugin / "pyproject.toml").write_text("")
    assert layout_problems(plugin) == []
    (pkg / "helpers.py").write_text("")
    (plugin / "results").mkdir()
    assert len(layout_problems(plugin)) == 2


def test_plugin_py_check_catches_torch_and_helpers() -> None:
    good = ("from pk.core import hookimpl\nfrom pk_seqrec.plugin import SASRecConfig\n"
            "@hookimpl\ndef pk_register_models(r): ...\n")
    assert plugin_py_problems(good) == []
    assert plugin_py_problems("import torch\n") == ["imports torch"]
    assert plugin_py_problems("def pk_register_models(register) -> None:  # type: ignore[no-untyped-def]\n"
                              "    pass\n") == ["has a `# type: ignore`"]
    assert plugin_py_problems("from pk_seqrec.models import x\ndef build(): ...\n") == [
        "imports pk_seqrec.models", "defines function build"]


def test_line_limit_catches_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert len(long_modules(tmp_path)) == 1
