"""Packaging guards: the virtual pk namespace, explicit subpackages, registry consistency."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_every_subpackage_is_listed():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    for folder, prefix in (("core", "pk.core"), ("cli", "pk.cli")):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = prefix + ("" if str(rel) == "." else "." + ".".join(rel.parts))
            if "templates" in rel.parts:
                continue
            assert name in listed, f"{name} missing from [tool.setuptools] packages"


def test_pk_is_a_namespace_and_core_lives_in_core_folder():
    import pk
    import pk.core

    assert getattr(pk, "__file__", None) is None
    assert Path(pk.core.__file__).resolve().parent == (ROOT / "core").resolve()
    out = subprocess.run([sys.executable, "-c", "import core"], capture_output=True, cwd="/", text=True)
    assert out.returncode != 0


def test_no_toplevel_core_or_cli_imports():
    pattern = re.compile(r"^\s*(from|import)\s+(core|cli)(\.|\s|$)", re.M)
    offenders = [str(p) for p in list((ROOT / "core").rglob("*.py")) + list((ROOT / "cli").rglob("*.py"))
                 + list((ROOT / "plugins").rglob("*.py")) if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_packaged_registry_copy_matches_root():
    root = (ROOT / "registry.toml").read_text()
    copy = (ROOT / "core" / "data" / "registry.toml").read_text()
    assert root == copy, "core/data/registry.toml differs: cp registry.toml core/data/registry.toml"


def test_registry_lists_every_plugin_folder_consistently():
    from pk.core.plugins import load_registry

    catalogue = tomllib.loads((ROOT / "registry.toml").read_text())["plugins"]
    folders = {p.name for p in (ROOT / "plugins").iterdir() if p.is_dir() and (p / "pyproject.toml").exists()}
    paths = {Path(e["path"]).name for e in catalogue.values() if "path" in e}
    assert folders == paths, f"plugin folders and registry.toml differ: {folders ^ paths}"
    registry = load_registry()
    loaded = {p.distribution: p for p in registry.plugins}
    for short, entry in catalogue.items():
        pyproject = tomllib.loads((ROOT / entry["path"] / "pyproject.toml").read_text())
        assert pyproject["project"]["name"] == entry["distribution"], short
        eps = pyproject["project"]["entry-points"]["pk.plugins"]
        assert any(v.split(":")[0].split(".")[0] == entry["import"] for v in eps.values()), short
        if entry["distribution"] not in loaded:
            continue  # not installed in this environment (or filtered by PK_LOAD_PLUGINS)
        provides = {}
        for reg in registry:
            if reg.distribution == entry["distribution"]:
                provides.setdefault(reg.kind, []).append(reg.name)
        assert ({k: sorted(v) for k, v in provides.items()}
                == {k: sorted(v) for k, v in entry.get("provides", {}).items()}), (
            f"{short}: registry.toml 'provides' differs from what the plugin registers"
        )
