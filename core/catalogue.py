"""``registry.toml``: the catalogue of known plugins (installed or not).

Lookup order: ``PK_REGISTRY``, the checkout's root file, the copy packaged in pk.core.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pk.core.config import load_toml


def checkout_root() -> Path | None:
    """The repository root when pk.core runs from a checkout (editable install), else None."""
    here = Path(__file__).resolve().parent  # core/
    root = here.parent
    if (root / "registry.toml").is_file() and (root / "plugins").is_dir():
        return root
    return None


def catalogue_path() -> Path:
    env = os.environ.get("PK_REGISTRY")
    if env:
        return Path(env)
    root = checkout_root()
    if root is not None:
        return root / "registry.toml"
    return Path(__file__).resolve().parent / "data" / "registry.toml"


def load_catalogue(path: Path | None = None) -> list[dict[str, Any]]:
    """Entries as dicts with ``name`` plus the table's fields, sorted by name."""
    data = load_toml(path or catalogue_path())
    plugins = data.get("plugins", {})
    return [{"name": name, **entry} for name, entry in sorted(plugins.items())]
