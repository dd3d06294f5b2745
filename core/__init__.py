"""pk.core: hook specifications, contracts, config, run records and the contract suite.

Importing this package costs only the standard library; pluggy is imported the first time
a plugin asks for the markers (``from pk.core import hookimpl``), so the CLI can read entry
points and apply plugin selection before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

PROJECT_NAME = "pk"

if TYPE_CHECKING:
    import pluggy

    hookspec: pluggy.HookspecMarker
    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    """``hookspec`` / ``hookimpl``: pluggy's markers for project ``pk``, made on first use."""
    if name not in ("hookspec", "hookimpl"):
        raise AttributeError(f"module 'pk.core' has no attribute {name!r}")
    import pluggy

    marker = (pluggy.HookspecMarker if name == "hookspec" else pluggy.HookimplMarker)(PROJECT_NAME)
    globals()[name] = marker
    return marker


__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
