"""Shared fixtures for pk-core's own tests: an isolated CLI runner and fake plugins."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PK = str(Path(sys.executable).with_name("pk"))

BASE = ["-c", "model.name=mlp", "-c", "dataset.name=synthetic-classification", "-c", "trainer.name=supervised"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A CliRunner in ``tmp_path`` whose registry holds only the built-ins."""
    from pk.core import plugins

    registry = plugins.load_registry(entry_points=False)
    monkeypatch.setattr(plugins, "get_registry", lambda: registry)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    return CliRunner()


def invoke(runner: CliRunner, args: list[str]) -> Any:
    """Invoke ``pk ARGS`` through pk.cli.main.main (error handling included)."""
    from pk.cli.main import main

    def entry() -> None:
        main(args)

    import click

    cmd = click.Command("pk", callback=entry)
    return runner.invoke(cmd, [], catch_exceptions=False)


def write_fake_plugin(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    """A distribution found by importlib.metadata on PYTHONPATH=root, without installing."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pk.plugins]\n{ep_name or dist} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def run_pk(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([PK, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)
