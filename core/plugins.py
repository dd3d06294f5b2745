"""Discovering, loading and registering plugins, each in isolation.

The entry-point group is ``pk.plugins``. ``PK_LOAD_PLUGINS`` (comma-separated allowlist of
distribution or entry-point names; empty means none) and ``PK_DISABLE_PLUGINS`` (blocklist)
are applied *before* any plugin module is imported. A plugin that fails to import, has a
misspelled hook, raises in a hook or registers a name twice is recorded as failed and
rolled back; every other plugin keeps working. ``PK_RAISE_PLUGIN_ERRORS=1`` re-raises.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import pluggy

from pk.core import PROJECT_NAME, __version__, hookspecs
from pk.core.entry_points import EntryPoint, entry_points, env_names, is_selected
from pk.core.errors import PluginError, UsageError
from pk.core.registry import KINDS, PluginInfo, Registration, Registry

ENTRY_POINT_GROUP = "pk.plugins"
BUILTIN_MODULE = "pk.core.builtins.plugin"


def selected(ep: EntryPoint, dist: str) -> bool:
    """Whether PK_LOAD_PLUGINS / PK_DISABLE_PLUGINS let this plugin load."""
    return is_selected(ep.name, dist)


def iter_entry_points() -> list[tuple[EntryPoint, str, str]]:
    """Installed ``pk.plugins`` entry points as ``(entry point, distribution, version)``,
    sorted by entry-point name (the same distribution found twice on sys.path counts once)."""
    out = []
    seen = set()
    for ep in entry_points(ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        out.append((ep, ep.dist, ep.version))
    return sorted(out, key=lambda t: t[0].name)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _raise_errors() -> bool:
    return os.environ.get("PK_RAISE_PLUGIN_ERRORS", "") not in ("", "0")


def register_plugin(registry: Registry, module: ModuleType | object, info: PluginInfo) -> None:
    """Validate one plugin object, run its registration hooks and commit the result.

    On any failure ``info.error`` is set and nothing the plugin registered is kept.
    """
    registry.plugins.append(info)
    staged: list[Registration] = []
    try:
        pm = _new_manager()
        pm.register(module, name=info.name)
        pm.check_pending()
        for kind in KINDS:
            hook = getattr(pm.hook, f"pk_register_{kind}")
            for impl in hook.get_hookimpls():
                offered = {"register": registry.make_register(kind, info, staged)}
                impl.function(**{name: offered[name] for name in impl.argnames})
        _check_clashes(staged, info)
    except Exception as exc:  # isolation is the point
        if _raise_errors():
            raise PluginError(
                f'error loading pk plugin "{info.distribution} {info.version}" '
                f"(entry point {info.name} = {info.module}): {exc}"
            ) from exc
        info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        info.traceback = traceback.format_exc()
        return
    registry.commit(staged)


def _check_clashes(staged: Sequence[Registration], info: PluginInfo) -> None:
    seen: set[tuple[str, str]] = set()
    for reg in staged:
        key = (reg.kind, reg.name)
        if key in seen:
            raise PluginError(f"plugin {info.distribution} registers {reg.kind[:-1]} {reg.name!r} twice")
        seen.add(key)


def load_registry(
    *, builtins: bool = True, entry_points: bool = True, extra: Iterable[tuple[object, PluginInfo]] = ()
) -> Registry:
    """Build a fresh registry: built-ins, installed plugins, then ``extra`` plugin objects."""
    registry = Registry()
    if builtins:
        from pk.core.builtins import plugin as builtin_plugin

        register_plugin(
            registry,
            builtin_plugin,
            PluginInfo("builtins", "pk-core", __version__, BUILTIN_MODULE, builtin=True),
        )
    if entry_points:
        found = iter_entry_points()
        allow = env_names("PK_LOAD_PLUGINS") or []
        known = {n for ep, dist, _ in found for n in (ep.name, dist, dist.replace("-", "_"))}
        missing = [name for name in allow if name not in known]
        if missing:
            raise UsageError(f"PK_LOAD_PLUGINS names {', '.join(missing)}, which is not installed; installed plugins: "
                             f"{', '.join(sorted({d for _, d, _ in found})) or 'none'} (unset it to load all)")
        for ep, dist, version in found:
            if not selected(ep, dist):
                continue
            info = PluginInfo(ep.name, dist, version, ep.value)
            try:
                module = ep.load()
            except Exception as exc:
                if _raise_errors():
                    raise PluginError(
                        f'error loading pk plugin "{dist} {version}" (entry point {ep.name} = {ep.value}): {exc}'
                    ) from exc
                info.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                info.traceback = traceback.format_exc()
                registry.plugins.append(info)
                continue
            register_plugin(registry, module, info)
    for obj, info in extra:
        register_plugin(registry, obj, info)
    return registry


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (built once; tests call ``get_registry.cache_clear()``)."""
    return load_registry()


def environment_lines(registry: Registry | None = None) -> dict[str, Any]:
    """Collect ``pk_environment_info`` from every loaded plugin module (errors skipped)."""
    registry = registry or get_registry()
    out: dict[str, Any] = {}
    for info in registry.plugins:
        if info.error:
            continue
        module = sys.modules.get(info.module.split(":")[0])
        fn = getattr(module, "pk_environment_info", None)
        if callable(fn):
            try:
                out.update(fn() or {})
            except Exception as exc:
                out[f"{info.distribution}.error"] = str(exc)
    return out
