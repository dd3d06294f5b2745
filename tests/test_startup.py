"""Start-up stays light: what `pk --help`, `pk list` and the new commands' help import, and
the fast entry-point reader `pk --help` uses (timings live in bench/cli_startup.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize("args", [["--help"], ["list"], ["tune", "--help"], ["export", "--help"], ["export", "mlflow", "--help"],
                                  ["runs", "--help"]])
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

    from pk.cli.main import entry_points

    want = sorted((e.name, e.value, e.dist.metadata["Name"]) for e in metadata.entry_points(group=group))
    assert sorted(entry_points(group)) == want


NAMES = st.sampled_from(["pk-seqrec", "pk_seqrec", "seqrec", "pk-fl", "other", " pk-seqrec ", ""])


@given(allow=st.one_of(st.none(), st.lists(NAMES, max_size=3).map(",".join)),
       deny=st.one_of(st.none(), st.lists(NAMES, max_size=3).map(",".join)),
       ep=st.sampled_from(["seqrec", "fl", "dus"]), dist=st.sampled_from(["pk-seqrec", "pk-fl", "pk-solar"]))
def test_command_selection_agrees_with_the_plugin_loader(allow, deny, ep, dist):
    """PK_LOAD_PLUGINS / PK_DISABLE_PLUGINS pick plugin commands exactly as they pick
    plugins (pk.core.plugins.selected)."""
    from types import SimpleNamespace

    from pk.cli.main import is_selected
    from pk.core.plugins import selected

    env = {k: v for k, v in (("PK_LOAD_PLUGINS", allow), ("PK_DISABLE_PLUGINS", deny)) if v is not None}
    saved = {k: os.environ.pop(k, None) for k in ("PK_LOAD_PLUGINS", "PK_DISABLE_PLUGINS")}
    os.environ.update(env)
    try:
        assert is_selected(ep, dist) == selected(SimpleNamespace(name=ep), dist)  # type: ignore[arg-type]
    finally:
        for k in ("PK_LOAD_PLUGINS", "PK_DISABLE_PLUGINS"):
            os.environ.pop(k, None)
            if saved[k] is not None:
                os.environ[k] = saved[k]  # type: ignore[assignment]
