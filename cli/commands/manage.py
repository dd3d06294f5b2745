"""``pk install/uninstall/check/doctor/new-plugin``: managing plugins and the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from pk.cli.output import print_json


def _pip(args: list[str]) -> int:
    """Run pip through this interpreter, so plugins land where pk runs."""
    cmd = [sys.executable, "-m", "pip", *args]
    click.echo("$ " + " ".join(cmd), err=True)
    return subprocess.call(cmd)


def _local_bases(folder: Path, entries: list[dict], root: Path, seen: set[str]) -> list[str]:
    """``-e PATH`` args for the pk-* bases a checkout plugin depends on, bases first
    (they are not on the package index, so pip cannot fetch them by name)."""
    import re

    from pk.core.config import load_toml

    deps = load_toml(folder / "pyproject.toml").get("project", {}).get("dependencies", [])
    out: list[str] = []
    for dep in deps:
        dist = re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0]
        for e in entries:
            path = root / e.get("path", "")
            if e.get("distribution") == dist and dist not in seen and e.get("path") and path.is_dir():
                seen.add(dist)
                out += [*_local_bases(path, entries, root, seen), "-e", str(path)]
    return out


def _install_args(name: str, editable: bool) -> tuple[list[str], str]:
    from pk.core.catalogue import checkout_root, load_catalogue

    entries = load_catalogue()
    for entry in entries:
        if name in (entry["name"], entry.get("distribution"), entry.get("import")):
            root = checkout_root()
            if root is not None and entry.get("path") and (root / entry["path"]).is_dir():
                folder = root / entry["path"]
                return ([*_local_bases(folder, entries, root, {entry["distribution"]}), "-e", str(folder)],
                        entry["distribution"])
            return [entry["distribution"]], entry["distribution"]
    if editable or Path(name).is_dir():
        return (["-e", name] if editable else [name]), name
    return [name], name


@click.command("install")
@click.argument("names", nargs=-1, required=True)
@click.option("-U", "--upgrade", is_flag=True)
@click.option("-e", "--editable", is_flag=True, help="Install a local path in editable mode.")
@click.option("--pre", is_flag=True)
@click.option("--no-cache-dir", is_flag=True)
@click.option("--no-deps", is_flag=True)
def install_cmd(names, upgrade, editable, pre, no_cache_dir, no_deps) -> None:  # type: ignore[no-untyped-def]
    """Install plugins: a registry.toml name (editable from this checkout when run from one),
    a distribution name, a path or any pip spec."""
    from pk.core.catalogue import load_catalogue
    from pk.core.errors import UsageError

    known = {e["name"] for e in load_catalogue()} | {e.get("distribution") for e in load_catalogue()}
    args: list[str] = ["install"]
    for flag, on in (("-U", upgrade), ("--pre", pre), ("--no-cache-dir", no_cache_dir), ("--no-deps", no_deps)):
        if on:
            args.append(flag)
    for name in names:
        if name.startswith("pk-") and name not in known and not Path(name).exists():
            from pk.core.errors import did_you_mean

            hint = did_you_mean(name, sorted(k for k in known if k))
            raise UsageError(f"{name!r} is not a known pk plugin{hint}; `pk list --available` lists them "
                             "(pass a path or a pip spec for others)")
        extra, _ = _install_args(name, editable)
        args += extra
    rc = _pip(args)
    if rc != 0:
        raise click.exceptions.Exit(1)


@click.command("uninstall")
@click.argument("names", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_cmd(names: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugins (registry names or distribution names)."""
    from importlib import metadata

    from pk.core.catalogue import load_catalogue
    from pk.core.errors import UsageError

    dists = []
    for name in names:
        match = [e["distribution"] for e in load_catalogue()
                 if name in (e["name"], e.get("distribution"), e.get("import"))]
        dists.append(match[0] if match else name)
    if "pk-core" in dists:
        raise UsageError("refusing to uninstall pk-core with pk itself; use pip uninstall pk-core")
    for dist in dists:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            raise UsageError(f"{dist!r} is not installed; `pk list` shows what is") from None
    rc = _pip(["uninstall", *(["-y"] if yes else []), *dists])
    if rc != 0:
        raise click.exceptions.Exit(1)


@click.command("check")
@click.argument("names", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every installed plugin.")
@click.option("-k", "keyword", default=None, help="Only checks matching this pytest -k expression.")
def check_cmd(names: tuple[str, ...], check_all: bool, keyword: str | None) -> None:
    """Run pk's contract suite on installed plugins (NAME: distribution or entry point)."""
    from pk.core.errors import UsageError
    from pk.core.plugins import get_registry

    registry = get_registry()
    if check_all:
        names = tuple(p.distribution for p in registry.plugins if not p.error)
    if not names:
        raise UsageError("name a plugin to check (`pk list` shows them) or pass --all")
    for name in names:
        if not any(name in (p.distribution, p.name) for p in registry.plugins):
            from pk.core.errors import did_you_mean

            raise UsageError(f"plugin {name!r} is not installed"
                             f"{did_you_mean(name, [p.distribution for p in registry.plugins])}")
        broken = [p for p in registry.plugins if name in (p.distribution, p.name) and p.error]
        if broken:
            from pk.core.errors import PluginError

            raise PluginError(f"plugin {name!r} failed to load: {broken[0].error}; `pk doctor` shows details")
    import importlib.util

    lacking = [m for m in ("pytest", "hypothesis") if importlib.util.find_spec(m) is None]
    if lacking:
        raise UsageError(f"pk check needs {' and '.join(lacking)}: pip install 'pk-core[test]'")
    suite = Path(__file__).resolve().parents[2] / "core" / "testing" / "contract_suite.py"
    import pk.core.testing as testing_pkg

    suite = Path(testing_pkg.__file__).parent / "contract_suite.py"
    cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "--rootdir", str(suite.parent)]
    for name in names:
        cmd += ["--pk-plugin", name]
    if keyword:
        cmd += ["-k", keyword]
    click.echo("$ " + " ".join(cmd), err=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise click.exceptions.Exit(1)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True)
def doctor_cmd(as_json: bool) -> None:
    """Versions, devices, plugins (with load errors), data and cache dirs: paste into issues."""
    import platform
    from importlib import metadata

    from pk.core import __version__
    from pk.core.catalogue import catalogue_path, load_catalogue
    from pk.core.paths import cache_dir, data_dir, shared_data_dir
    from pk.core.plugins import environment_lines, get_registry

    registry = get_registry()
    report: dict = {"pk-core": __version__, "python": sys.version.split()[0], "executable": sys.executable,
                    "platform": platform.platform()}
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda_build"] = torch.version.cuda
        report["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        from pk.core.runner import default_threads

        report["threads"] = default_threads()
        report["thread_policy"] = "run.threads, or usable cores // parallel runs (pk batch --jobs), at least 1"
    except ImportError:
        report["torch"] = "not installed"
    for dist in ("torch_geometric", "transformers", "safetensors", "flwr", "matplotlib", "hypothesis"):
        try:
            report[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            report[dist] = None
    report["plugins"] = [{"distribution": p.distribution, "version": p.version, "module": p.module, "error": p.error}
                         for p in registry.plugins]
    report["duplicate_names"] = sorted({f"{r.kind[:-1]}:{r.name}" for r in registry
                                        if len(registry.entries[r.kind][r.name]) > 1})
    installed = {p.distribution for p in registry.plugins if not p.error}
    catalogue = load_catalogue()
    report["registry"] = str(catalogue_path())
    report["registry_not_installed"] = sorted(e["distribution"] for e in catalogue
                                              if e["distribution"] not in installed)
    report["installed_not_in_registry"] = sorted(installed - {e["distribution"] for e in catalogue} - {"pk-core"})
    import pk

    report["pk_namespace_ok"] = getattr(pk, "__file__", None) is None
    report["cache_dir"] = str(cache_dir())
    report["data_dir"] = str(data_dir())
    report["shared_data_dir"] = str(shared_data_dir()) if shared_data_dir() else None
    report["plugin_info"] = environment_lines(registry)
    if as_json:
        print_json(report)
        return
    for k, v in report.items():
        if k == "plugins":
            click.echo("plugins:")
            for p in v:
                click.echo(f"  {p['distribution']} {p['version']} ({p['module']})"
                           + (f"  FAILED: {p['error']}" if p["error"] else ""))
        else:
            click.echo(f"{k}: {v}")
    if not report["pk_namespace_ok"]:
        click.echo("warning: 'pk' resolves to a regular package (the unrelated PyPI project 'pk'?); pip uninstall pk",
                   err=True)


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "parent", default="plugins", show_default=True, type=click.Path(file_okay=False))
def new_plugin_cmd(name: str, parent: str) -> None:
    """Create plugins/pk-NAME: an installable plugin skeleton that passes `pk check`."""
    import re

    from pk.core.errors import UsageError

    short = name.removeprefix("pk-")
    if not re.fullmatch(r"[a-z][a-z0-9-]*", short):
        raise UsageError(f"plugin name {name!r} must be lowercase letters, digits and dashes, e.g. pk-myidea")
    dest = Path(parent) / f"pk-{short}"
    if dest.exists():
        raise UsageError(f"{dest} already exists; pick another name or remove it")
    import pk.core

    template = Path(pk.core.__file__).parent / "templates" / "plugin"
    values = {"{{name}}": short, "{{dist}}": f"pk-{short}", "{{import}}": f"pk_{short.replace('-', '_')}"}
    for src in sorted(template.rglob("*")):
        if src.is_dir() or src.name.endswith(".pyc") or "__pycache__" in src.parts:
            continue
        rel = str(src.relative_to(template))
        for k, v in values.items():
            rel = rel.replace(k, v)
        text = src.read_text()
        for k, v in values.items():
            text = text.replace(k, v)
        out = dest / rel.removesuffix(".tmpl")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    click.echo(f"created {dest}\nnext: pk install -e {dest} && pk check pk-{short}")
