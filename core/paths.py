"""Where pk keeps data caches and runs; overridable with PK_DATA_DIR / PK_CACHE_DIR."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """pk's writable cache (``PK_CACHE_DIR`` or the platform's user cache dir)."""
    env = os.environ.get("PK_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("pk"))


def data_dir() -> Path:
    """Writable root handed to dataset builders (``PK_DATA_DIR`` or ``cache_dir()/data``)."""
    env = os.environ.get("PK_DATA_DIR")
    return Path(env) if env else cache_dir() / "data"


def shared_data_dir() -> Path | None:
    """The read-only real-data folder (``PK_SHARED_DATA`` or ``../shared/data`` beside the
    checkout) when it exists, else None. Tests that need real files skip without it."""
    env = os.environ.get("PK_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p.parent / "shared" / "data" for p in here.parents]
    for c in candidates:
        if c.is_dir():
            return c
    return None
