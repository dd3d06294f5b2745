"""pk.core: hook specifications, contracts, config, run records and the contract suite.

Importing this package costs only the standard library and pluggy: plugins import the
markers from here in their light entry modules (``from pk.core import hookimpl``).
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "pk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
