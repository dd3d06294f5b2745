"""What ``pk list`` prints, cached until the installed plugins change.

Building the registry imports every plugin's ``plugin.py`` and creates its config
dataclasses: most of ``pk list``'s time. :func:`plugin_listing` keeps the result in
``<cache dir>/listing/<key>.json``, where the key covers everything the listing depends on:
pk-core's version and its registry/loader files, the selection variables, every distribution
on ``sys.path`` (so an install or uninstall changes it), and the size and mtime of the
``entry_points.txt`` and top-level modules of every ``pk.plugins`` package. Anything that
cannot be fingerprinted (a plugin module that is not a plain file) turns the cache off for
that call. ``PK_RAISE_PLUGIN_ERRORS`` and ``PK_LIST_CACHE=0`` bypass it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from pk.core import __version__
from pk.core.entry_points import distribution_folders, entry_points

ENTRY_POINT_GROUP = "pk.plugins"
CORE_FILES = ("registry.py", "plugins.py", "hookspecs.py", "listing.py", "builtins/plugin.py")


def _stat(path: str) -> str:
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _package_files(module: str) -> list[str]:
    """Size/mtime stamps of the top-level ``.py`` files of ``module``'s package (or the
    module file itself for a top-level module). Raises LookupError when not on disk."""
    parts = module.split(".")
    spec = importlib.util.find_spec(parts[0])
    if spec is None:
        raise LookupError(module)
    if spec.submodule_search_locations:
        folder = os.path.join(list(spec.submodule_search_locations)[0], *parts[1:-1])
        return sorted(_stat(e.path) for e in os.scandir(folder) if e.name.endswith(".py") and e.is_file())
    if spec.origin is None or not os.path.isfile(spec.origin):
        raise LookupError(module)
    return [_stat(spec.origin)]


def listing_key() -> str | None:
    """The cache key of the current installation (None: do not cache)."""
    core = Path(__file__).parent
    parts = [__version__, sys.version.split()[0], os.environ.get("PK_LOAD_PLUGINS", "\0"),
             os.environ.get("PK_DISABLE_PLUGINS", "\0"), *(_stat(str(core / f)) for f in CORE_FILES),
             *(f"{folder}/{entry}" for folder, entry in distribution_folders())]
    try:
        for ep in entry_points(ENTRY_POINT_GROUP):
            parts += [ep.name, ep.value, _stat(os.path.join(ep.location, "entry_points.txt")),
                      *_package_files(ep.module)]
    except (LookupError, OSError, ImportError, ValueError):
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def build_listing() -> dict[str, Any]:
    """Plugins, components (with the name ``pk list`` shows) and failures, from the registry."""
    from pk.core.plugins import get_registry

    registry = get_registry()
    components = []
    for r in registry:
        shown = r.name if len(registry.entries[r.kind][r.name]) == 1 else r.qualified_name
        components.append(r.as_dict() | {"shown_name": shown})
    return {
        "plugins": [p.as_dict() | {"traceback": None} for p in registry.plugins],
        "components": components,
        "failed": [{"distribution": p.distribution, "version": p.version, "entry_point": p.name, "module": p.module,
                    "error": p.error} for p in registry.failures],
    }


def plugin_listing() -> dict[str, Any]:
    """:func:`build_listing`, from the cache when the installation has not changed."""
    from pk.core.plugins import get_registry

    cache_info = getattr(get_registry, "cache_info", None)  # absent when a test swapped the registry in
    use_cache = (os.environ.get("PK_LIST_CACHE", "1") != "0" and not os.environ.get("PK_RAISE_PLUGIN_ERRORS")
                 and cache_info is not None and cache_info().currsize == 0)
    key = listing_key() if use_cache else None
    if key is None:
        return build_listing()
    from pk.core.paths import cache_dir

    folder = cache_dir() / "listing"
    path = folder / f"{key}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    listing = build_listing()
    try:
        from pk.core.io import atomic_write_text

        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink(missing_ok=True)
        atomic_write_text(path, json.dumps(listing))
    except OSError:
        pass
    return listing
