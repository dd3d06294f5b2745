"""``pk list`` and ``pk info``: read registrations only; never import torch."""

from __future__ import annotations

import dataclasses
import typing

import click

from pk.cli.output import print_json, print_table
from pk.core.registry import KINDS, Registry


@click.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include pk-core's built-ins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--available", is_flag=True, help="Plugins known to registry.toml, installed or not.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only this kind of component.")
@click.option("--strict", is_flag=True, help="Exit 3 if any plugin failed to load.")
@click.option("--catalogue", is_flag=True,
              help="Print registry.toml entries (provides, hooks) for the installed plugins.")
def list_cmd(show_all: bool, as_json: bool, available: bool, kind: str | None, strict: bool, catalogue: bool) -> None:
    """List installed plugins, their components and any that failed to load."""
    if catalogue or available:
        from pk.core.plugins import get_registry

        if catalogue:
            _print_catalogue(get_registry())
        else:
            _list_available(get_registry(), as_json)
        return
    from pk.core.listing import plugin_listing

    listing = plugin_listing()
    comps = [c for c in listing["components"]
             if (show_all or c["distribution"] != "pk-core") and (kind is None or c["kind"] == kind)]
    failures = listing["failed"]
    if as_json:
        print_json({
            "plugins": [p for p in listing["plugins"] if show_all or not p["builtin"]],
            "components": [{k: v for k, v in c.items() if k != "shown_name"} for c in comps],
            "failed": [{k: v for k, v in f.items() if k != "module"} for f in failures],
        })
    else:
        rows = [(c["kind"][:-1], c["shown_name"], c["distribution"], ",".join(c["tasks"]) or "-", c["summary"])
                for c in comps]
        if rows:
            print_table(None, ["kind", "name", "plugin", "tasks", "summary"], rows)
        else:
            click.echo("no plugin components installed (`pk list --all` shows the built-ins; "
                       "`pk list --available` what can be installed)")
        for f in failures:
            click.echo(f"warning: plugin {f['distribution']} {f['version']} (entry point {f['entry_point']} = "
                       f"{f['module']}) failed to load: {f['error']}", err=True)
    if strict and failures:
        raise click.exceptions.Exit(3)


def _print_catalogue(registry: Registry) -> None:
    """registry.toml tables for the loaded plugins, merged over the current catalogue."""
    from pk.core.catalogue import load_catalogue
    from pk.core.config import toml_value

    known = {e["distribution"]: e for e in load_catalogue()}
    for info in registry.plugins:
        if info.builtin or info.error:
            continue
        provides: dict[str, list[str]] = {}
        for reg in registry:
            if reg.distribution == info.distribution:
                provides.setdefault(reg.kind, []).append(reg.name)
        entry = dict(known.get(info.distribution, {}))
        short = entry.pop("name", info.name)
        entry.setdefault("distribution", info.distribution)
        entry.setdefault("import", info.module.split(".")[0])
        entry["hooks"] = [f"pk_register_{k}" for k in provides]
        entry["provides"] = {k: sorted(v) for k, v in provides.items()}
        click.echo(f"[plugins.{short}]")
        for k, v in entry.items():
            click.echo(f"{k} = {toml_value(v)}")
        click.echo("")


def _list_available(registry: Registry, as_json: bool) -> None:
    from pk.core.catalogue import load_catalogue

    installed = {p.distribution: p.version for p in registry.plugins if not p.error}
    entries = load_catalogue()
    if as_json:
        print_json([e | {"installed": installed.get(e["distribution"])} for e in entries])
        return
    rows = [
        ("✓ " + installed[e["distribution"]] if e["distribution"] in installed else "-", e["name"], e["distribution"],
         e.get("summary", ""))
        for e in entries
    ]
    print_table(None, ["installed", "name", "distribution", "summary"], rows)


def _field_rows(config_cls: type | None) -> list[dict[str, str]]:
    if config_cls is None:
        return []
    hints = typing.get_type_hints(config_cls)
    defaults = dataclasses.asdict(config_cls())
    out = []
    for f in dataclasses.fields(config_cls):
        tp = hints.get(f.name)
        tname = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
        out.append({"name": f.name, "type": tname, "default": repr(defaults[f.name])})
    return out


@click.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def info_cmd(name: str, as_json: bool) -> None:
    """Show what NAME is (any kind), its paper, tasks and config fields with defaults."""
    from pk.core.errors import UsageError, did_you_mean
    from pk.core.plugins import get_registry

    registry = get_registry()
    found = registry.find(name)
    if not found:
        known = sorted({r.name for r in registry})
        raise UsageError(f"no component called {name!r}{did_you_mean(name, known)}; `pk list --all` shows them")
    payload = []
    for reg in found:
        d = reg.as_dict()
        d["config"] = _field_rows(reg.config)
        d["doc"] = (reg.config.__doc__ or "").strip() if reg.config else ""
        payload.append(d)
    if as_json:
        print_json(payload)
        return
    for d in payload:
        click.echo(f"{d['kind'][:-1]} {d['name']}  ({d['distribution']} {d['version']})")
        click.echo(f"  summary: {d['summary']}")
        if d["paper"]:
            p = d["paper"]
            click.echo(f"  paper:   {p.get('title', '')} ({p.get('year', '')}) {p.get('url', '')}")
        click.echo(f"  tasks:   {', '.join(d['tasks']) or 'any'}")
        click.echo(f"  target:  {d['target']}")
        if d["doc"] and not d["doc"].startswith(d["name"]):
            click.echo(f"  about:   {d['doc'].splitlines()[0]}")
        if d["config"]:
            click.echo("  config:")
            for f in d["config"]:
                click.echo(f"    {f['name']}: {f['type']} = {f['default']}")
        click.echo("")
