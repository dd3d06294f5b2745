"""Checks on every registration and on the plugin as a whole."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pk.core.config import dumps_toml, load_toml
from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _registry,
)


# -- every registration ----------------------------------------------------------------
def registration_is_valid(case: Case) -> None:
    reg = case.registration
    assert reg is not None
    assert reg.summary.strip(), f"{reg.name}: summary must not be empty"
    assert reg.load() is not None
    if reg.config is not None:
        defaults = dataclasses.asdict(reg.config())
        section = reg.kind[:-1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.toml"
            path.write_text(dumps_toml({section: {"name": reg.name, **defaults}}))
            back = load_toml(path)[section]
        back.pop("name")
        expected = {k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults.items() if v is not None}
        assert back == expected, f"{reg.name}: config does not round-trip through TOML"


def entry_module_is_light(case: Case) -> None:
    info = next(p for p in _registry().plugins if p.distribution == case.plugin)
    module = info.module.split(":")[0]
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "heavy=[m for m in ('torch','numpy','torch_geometric','pandas','transformers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"importing {module} pulls in heavy modules: {out.stdout.strip() or out.stderr[-300:]}"


def recipes_are_valid(case: Case) -> None:
    """Every ``recipes/*.toml`` loads as ``pk batch --dry-run`` would (configs validate, baseline and
    method name runs), and ``quick.toml`` exists."""
    from pk.core.batch import load_batch
    from pk.core.recipe_paths import recipe_dir

    folder = recipe_dir(case.plugin, _registry())
    recipes = sorted(folder.glob("*.toml"))
    if not recipes:
        pytest.skip(f"{case.plugin} ships no recipes")
    assert (folder / "quick.toml").is_file(), (
        f"{case.plugin}: recipes/quick.toml is missing (the README's main job runs it)"
    )
    for path in recipes:
        load_batch(path, _registry())  # raises ConfigError on any invalid run or [batch] key
