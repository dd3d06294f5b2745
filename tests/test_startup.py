"""Start-up stays light: what `pk --help`, `pk list` and the new commands' help import, and
the fast entry-point reader `pk --help` uses (timings live in bench/cli_startup.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "optuna", "mlflow", "tensorboard", "sqlalchemy", "pandas")

PROBE = (
    "import sys\nsys.argv=['pk']+%r\nfrom pk.cli.main import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write('LOADED:'+','.join(m for m in %r if m in sys.modules))\n"
)


def loaded(args: list[str], modules: tuple[str, ...]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE % (args, modules)], capture_output=True, text=True, timeout=120)
    assert "LOADED:" in out.stderr, out.stderr
    found = out.stderr.split("LOADED:")[-1].strip()
    return found.split(",") if found else []


@pytest.mark.parametrize("args", [["--help"], ["list"], ["tune", "--help"], ["export", "--help"],
                                  ["export", "mlflow", "--help"], ["runs", "--help"]])
def test_help_and_list_import_no_heavy_library(args):
    """Catches a top-level import of torch/optuna/mlflow/tensorboard in the CLI modules."""
    assert loaded(args, HEAVY) == []


def test_help_reads_plugin_commands_without_importlib_metadata():
    """`pk --help` lists plugin commands from entry_points.txt directly: importing
    importlib.metadata (and pk.core.plugins, which imports it) was most of its time."""
    assert loaded(["--help"], ("importlib.metadata", "pk.core.plugins", "pluggy")) == []


@pytest.mark.parametrize("group", ["pk.plugins", "pk.commands", "console_scripts", "pytest11"])
def test_entry_point_reader_matches_importlib_metadata(group):
    """The fast reader finds exactly what importlib.metadata finds (first distribution of
    each name on sys.path; names from METADATA). Catches a reader that misses egg-info,
    duplicates a distribution or names it by its folder."""
    from importlib import metadata

    from pk.core.entry_points import entry_points

    want = sorted((e.name, e.value, e.dist.metadata["Name"], e.dist.version)
                  for e in metadata.entry_points(group=group))
    assert sorted((e.name, e.value, e.dist, e.version) for e in entry_points(group)) == want
