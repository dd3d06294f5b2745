"""Atomic file writes and weights-only checkpoint I/O (loading never unpickles code)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pk.core.errors import CheckpointError


@contextmanager
def cache_lock(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold an inter-process lock on ``path`` (a file ``<path>.lock`` beside it) while a cache
    entry is checked and built, so runs of ``pk batch --jobs`` or Ray workers that want the
    same entry build it once and never read it half-made. Waits at most ``timeout`` seconds."""
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock", timeout=timeout):
        yield


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_tensors(path: Path, obj: Any) -> None:
    """``torch.save`` to a temp file and rename: a crash never leaves a half checkpoint."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_tensors(path: Path) -> Any:
    """Load a checkpoint with ``weights_only=True``; missing/corrupt is a CheckpointError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; give a run dir or a .pt file from one")
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles before refusing them
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means corrupt
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a pk checkpoint ({first[:120]}); "
            "re-run training or pick another checkpoint"
        ) from None
