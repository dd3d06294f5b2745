"""Plugin loading in real subprocesses: isolation of broken plugins, allow/deny lists,
and the no-torch start-up guarantee."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_pk, write_fake_plugin

GOOD = """
from dataclasses import dataclass
from pk.core import hookimpl

@dataclass
class Cfg:
    width: int = 3

@hookimpl
def pk_register_models(register):
    register("fake-good-model", "pk.core.builtins.components:build_mlp", config=Cfg, summary="good",
             tasks=("classification",))
"""


@pytest.fixture
def fake_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_fake_plugin(site, "pk-fakegood", "fake_good", GOOD)
    write_fake_plugin(site, "pk-fakeimport", "fake_import", "raise ImportError('no module named heavy_dep')\n")
    write_fake_plugin(
        site,
        "pk-fakeraise",
        "fake_raise",
        "from pk.core import hookimpl\n@hookimpl\ndef pk_register_models(register):\n"
        "    register('fake-partial', 'json:loads', summary='x')\n    raise RuntimeError('boom in hook')\n",
    )
    write_fake_plugin(site, "pk-fakespell", "fake_spell",
                      "from pk.core import hookimpl\n@hookimpl\ndef pk_register_model(register):\n    pass\n")
    return site


def _env(site, **extra):
    import os

    return {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def test_broken_plugins_are_listed_and_isolated(fake_site):
    out = run_pk(["list", "--json"], env=_env(fake_site))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    failed = {f["distribution"]: f["error"] for f in data["failed"]}
    assert "ImportError" in failed["pk-fakeimport"]
    assert "boom in hook" in failed["pk-fakeraise"]
    assert "pk_register_model" in failed["pk-fakespell"]
    names = {c["name"] for c in data["components"]}
    assert "fake-good-model" in names
    assert "fake-partial" not in names, "a plugin whose hook raised must be rolled back"


def test_broken_plugin_warning_and_strict_exit(fake_site):
    out = run_pk(["list"], env=_env(fake_site))
    assert out.returncode == 0
    assert ('plugin pk-fakeimport 0.1 (entry point pk-fakeimport = fake_import) failed to load: ImportError'
            in out.stderr)
    strict = run_pk(["list", "--strict"], env=_env(fake_site))
    assert strict.returncode == 3


def test_other_commands_work_beside_a_broken_plugin(fake_site, tmp_path):
    out = run_pk(["train", "-c", "model.name=fake-good-model", "-c", "dataset.name=synthetic-classification",
                  "-c", "trainer.name=supervised", "--dry-run"], env=_env(fake_site), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'name = "fake-good-model"' in out.stdout


def test_raise_plugin_errors(fake_site):
    out = run_pk(["list"], env=_env(fake_site, PK_RAISE_PLUGIN_ERRORS="1"))
    assert out.returncode == 3
    assert 'error loading pk plugin "pk-fakeimport 0.1"' in out.stderr


def test_disable_and_allowlist_applied_before_import(fake_site):
    # the import-failing plugin is never imported when disabled or not allowed
    out = run_pk(["list", "--json"], env=_env(fake_site, PK_DISABLE_PLUGINS="pk-fakeimport,pk-fakeraise,pk-fakespell"))
    assert json.loads(out.stdout)["failed"] == []
    out = run_pk(["list", "--json"], env=_env(fake_site, PK_LOAD_PLUGINS="pk-fakegood"))
    data = json.loads(out.stdout)
    assert data["failed"] == [] and {p["distribution"] for p in data["plugins"]} == {"pk-fakegood"}
    out = run_pk(["list", "--json"], env=_env(fake_site, PK_LOAD_PLUGINS=""))
    assert json.loads(out.stdout)["plugins"] == []


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["--version"]])
def test_startup_never_imports_torch(args):
    code = (
        "import sys\nsys.argv=['pk']+%r\nfrom pk.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','numpy','torch_geometric','pandas','hypothesis','transformers')"
        " if m in sys.modules]\n"
        "sys.stderr.write('HEAVY:'+','.join(heavy))\n" % args
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY:" in out.stderr
    assert out.stderr.split("HEAVY:")[-1].strip() == "", (
        f"pk {' '.join(args)} imported {out.stderr.split('HEAVY:')[-1]}"
    )


def test_version_verbose_lists_plugins():
    out = run_pk(["--version", "-v"])
    assert out.returncode == 0
    assert out.stdout.startswith("pk-core ")
    assert "pk-core==" in out.stdout


def test_check_of_a_plugin_that_fails_to_import_exits_3(fake_site):
    """`pk check` on a plugin that fails to import is a plugin failure (3), in one line."""
    out = run_pk(["check", "pk-fakeimport"], env=_env(fake_site, PK_LOAD_PLUGINS="pk-fakeimport"))
    assert out.returncode == 3, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.strip() and not x.startswith("warning:")]
    assert len(lines) == 1 and "failed to load" in lines[0] and "Traceback" not in out.stderr


def test_install_from_a_checkout_installs_local_bases_first():
    """pk-transgnn needs pk-graph, which is not on the package index: both go to pip, base first."""
    from pk.cli.commands.manage import _install_args

    args, dist = _install_args("pk-transgnn", editable=False)
    assert dist == "pk-transgnn"
    paths = [a for a in args if a != "-e"]
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["pk-graph", "pk-transgnn"]


def test_list_cache_follows_the_installed_plugins(fake_site, tmp_path):
    """`pk list` answers from its cache only while nothing it depends on changed: the same
    output cached or not, a plugin module's edit and a newly installed plugin show at once.
    Catches a cache keyed on too little (stale components) or one that never hits."""
    cache = tmp_path / "listing-cache"
    env = _env(fake_site, PK_CACHE_DIR=str(cache))
    first = run_pk(["list", "--json", "--all"], env=env)
    assert first.returncode == 0, first.stderr
    assert len(list((cache / "listing").glob("*.json"))) == 1
    again = run_pk(["list", "--json", "--all"], env=env)
    fresh = run_pk(["list", "--json", "--all"], env={**env, "PK_LIST_CACHE": "0"})
    assert first.stdout == again.stdout == fresh.stdout

    module = fake_site / "fake_good.py"
    module.write_text(GOOD.replace("fake-good-model", "fake-renamed-model"))
    os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
    names = {c["name"] for c in json.loads(run_pk(["list", "--json"], env=env).stdout)["components"]}
    assert "fake-renamed-model" in names and "fake-good-model" not in names

    write_fake_plugin(fake_site, "pk-fakenew", "fake_new", GOOD.replace("fake-good-model", "fake-new-model"))
    names = {c["name"] for c in json.loads(run_pk(["list", "--json"], env=env).stdout)["components"]}
    assert "fake-new-model" in names
