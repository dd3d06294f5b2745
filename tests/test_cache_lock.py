"""Cache entries are built under an inter-process lock (pk.core.io.cache_lock), so parallel
runs never read a half-made copy. Catches a cache writer that does not take the lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import filelock
import pytest


def test_writable_copy_waits_for_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pk.core.datasource import writable_copy

    monkeypatch.setenv("PK_DATA_DIR", str(tmp_path / "data"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("payload")
    dest = tmp_path / "data" / "copies" / "demo"
    dest.parent.mkdir(parents=True)
    done = threading.Event()
    holder = filelock.FileLock(str(dest) + ".lock")
    holder.acquire()
    try:
        thread = threading.Thread(target=lambda: (writable_copy(src, "demo"), done.set()))
        thread.start()
        time.sleep(0.5)
        assert not done.is_set(), "writable_copy ran while another process held the cache lock"
    finally:
        holder.release()
    thread.join(timeout=30)
    assert done.is_set() and (dest / "a.txt").read_text() == "payload"


def test_cache_lock_times_out_with_the_lock_held(tmp_path: Path) -> None:
    from pk.core.io import cache_lock

    target = tmp_path / "entry"
    holder = filelock.FileLock(str(target) + ".lock")
    holder.acquire()
    try:
        with pytest.raises(filelock.Timeout), cache_lock(target, timeout=0.2):
            pass
    finally:
        holder.release()
    with cache_lock(target, timeout=1):
        pass
