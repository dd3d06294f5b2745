"""The plugin guide cannot rot: its code blocks, assembled into a package, install as a plugin
that passes `pk check`, alone and beside every other installed plugin, with the same results."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_pk

GUIDE = ROOT / "docs" / "plugin-authors.md"
BLOCK = re.compile(r"^```(?:python|toml) (pk_example/\S+)\n(.*?)^```", re.S | re.M)


def guide_files() -> dict[str, str]:
    return {path: body for path, body in BLOCK.findall(GUIDE.read_text())}


def test_guide_has_one_block_per_file_and_every_hook_kind():
    files = guide_files()
    places = ("data", "models", "trainers", "aggregators", "calibrators", "evaluators")
    assert set(files) == {"pk_example/plugin.py", "pk_example/recipes/quick.toml",
                          *(f"pk_example/{place}.py" for place in places)}
    for hook in ("datasets", "models", "trainers", "aggregators", "calibrators", "evaluators"):
        assert f"def pk_register_{hook}(register: Register) -> None:" in files["pk_example/plugin.py"], hook


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    for rel, body in guide_files().items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    (site / "pk_example" / "__init__.py").write_text("")
    info = site / "pk_example-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pk-example\nVersion: 0.1.0\nRequires-Dist: pk-core\n")
    (info / "entry_points.txt").write_text("[pk.plugins]\nexample = pk_example.plugin\n")
    return site


def _check(site: Path, **env: str):
    full = {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    out = run_pk(["check", "pk-example"], env=full, cwd=site)
    summary = re.findall(r"(\d+) (passed|failed|skipped|errors?)", out.stdout)
    return out, sorted(summary, key=lambda t: t[1])


def test_guide_plugin_passes_pk_check_alone_and_among_others(example_site):
    alone, alone_summary = _check(example_site, PK_LOAD_PLUGINS="pk-example")
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-2000:]
    assert ("0", "failed") not in alone_summary and any(kind == "passed" for _, kind in alone_summary)
    among, among_summary = _check(example_site)
    assert among.returncode == 0, among.stdout[-3000:] + among.stderr[-2000:]
    assert among_summary == alone_summary, "pk check's result depends on which other plugins are installed"
