"""Where recipes live: ``FILE.toml`` or ``PLUGIN:RECIPE`` (a plugin's ``recipes/RECIPE.toml``)."""

from __future__ import annotations

from pathlib import Path

from pk.core.errors import UsageError
from pk.core.registry import Registry


def resolve_recipe(ref: str, registry: Registry) -> Path:
    """``FILE.toml`` or ``PLUGIN:RECIPE`` (a plugin's ``recipes/RECIPE.toml``) to a path."""
    p = Path(ref)
    if p.suffix == ".toml" and ":" not in ref.replace(":\\", ""):
        if not p.is_file():
            raise UsageError(f"batch file {ref!r} does not exist")
        return p
    plugin, sep, recipe = ref.partition(":")
    if not sep:
        raise UsageError(f"{ref!r} is neither a .toml file nor PLUGIN:RECIPE (e.g. pk-seqrec:quick)")
    folder = recipe_dir(plugin, registry)
    path = folder / f"{recipe}.toml"
    if not path.is_file():
        have = sorted(x.stem for x in folder.glob("*.toml"))
        raise UsageError(f"plugin {plugin} has no recipe {recipe!r}; it has: {', '.join(have) or 'none'}")
    return path


def recipe_dir(plugin: str, registry: Registry) -> Path:
    import importlib.util

    for info in registry.plugins:
        if plugin in (info.distribution, info.name) and not info.error:
            package = "pk.core" if info.builtin else info.module.split(":")[0].rsplit(".", 1)[0]
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                break
            return Path(list(spec.submodule_search_locations)[0]) / "recipes"
    loaded = ", ".join(p.distribution for p in registry.plugins if not p.error)
    raise UsageError(f"plugin {plugin!r} is not installed (installed: {loaded}); `pk install {plugin}`")


def quick_recipes(registry: Registry) -> list[Path]:
    """Every loaded plugin's ``recipes/quick.toml`` (built-ins first)."""
    out = []
    for info in registry.plugins:
        if info.error:
            continue
        try:
            path = recipe_dir(info.distribution, registry) / "quick.toml"
        except UsageError:
            continue
        if path.is_file() and path not in out:
            out.append(path)
    return out
