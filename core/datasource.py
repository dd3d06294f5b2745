"""Finding real data files: an explicit path, the shared read-only folder, a checksummed
download into the cache, or the seeded synthetic default.

Dataset configs that support real data carry ``source`` ("auto" | "file" | "download" |
"synthetic") and ``path``. "auto" takes ``path`` if set, else the shared folder
(``PK_SHARED_DATA`` or ``../shared/data``), else a previous download in the cache, else the
synthetic default; the chosen source is recorded in ``DatasetInfo.extra["source"]``.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pk.core.errors import DataError
from pk.core.io import cache_lock
from pk.core.paths import data_dir, shared_data_dir

SOURCES = ("auto", "file", "download", "synthetic")


@dataclass(frozen=True)
class Remote:
    """An official download: URL and its sha256, saved as ``filename`` in the cache."""

    url: str
    sha256: str
    filename: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(remote: Remote, dest_dir: Path, timeout: float = 60.0) -> Path:
    """Download ``remote`` into ``dest_dir`` (atomically) and verify its sha256."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.filename
    with cache_lock(dest):
        return _download_locked(remote, dest, timeout)


def _download_locked(remote: Remote, dest: Path, timeout: float) -> Path:
    if dest.exists() and sha256_file(dest) == remote.sha256:
        return dest
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as resp, open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {remote.url} ({exc}); without a network, set dataset.path to a local copy"
        ) from None
    digest = sha256_file(tmp)
    if digest != remote.sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{remote.url}: checksum mismatch (got {digest[:12]}…, want {remote.sha256[:12]}…); "
                        "retry or use dataset.path")
    tmp.replace(dest)
    return dest


def locate(
    name: str,
    *,
    source: str,
    path: str,
    shared_folder: str,
    required: tuple[str, ...] = (),
    remote: Remote | None = None,
) -> Path | None:
    """Return the folder (or file) holding ``name``'s real files, or None for synthetic.

    ``shared_folder`` is the folder name under the shared data dir; ``required`` lists
    files that must exist inside the folder. Raises DataError with the fix when the
    requested source cannot be satisfied.
    """
    if source not in SOURCES:
        raise DataError(f"dataset {name}: source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "synthetic":
        return None

    def ok(p: Path) -> bool:
        return p.exists() and all((p / r).exists() for r in required) if p.is_dir() else p.exists()

    if path:
        p = Path(path).expanduser()
        if not ok(p):
            missing = [r for r in required if not (p / r).exists()] if p.is_dir() else [str(p)]
            raise DataError(f"dataset {name}: {str(p)!r} lacks {', '.join(missing) or 'the data'}; check dataset.path")
        return p
    if source in ("auto", "file"):
        shared = shared_data_dir()
        if shared is not None and ok(shared / shared_folder):
            return shared / shared_folder
        cached = data_dir() / shared_folder
        if ok(cached):
            return cached
        if source == "file":
            raise DataError(
                f"dataset {name}: no local files found (looked in dataset.path, {shared_folder!r} under the shared "
                f"data dir and {cached}); set dataset.path=... or use source=\"download\""
            )
    if source == "download":
        if remote is None:
            raise DataError(f"dataset {name}: no official download is known; set dataset.path to local files")
        return download(remote, data_dir() / shared_folder).parent
    return None


def writable_copy(src: Path, name: str) -> Path:
    """Copy a read-only folder into the cache (once) and return the copy, e.g. for PyG's
    ``processed/`` files. Re-copies when the source's file list or sizes change; holds the
    copy's cache lock while it checks and copies."""
    dest = data_dir() / "copies" / name
    with cache_lock(dest):
        return _copy_locked(src, dest)


def _copy_locked(src: Path, dest: Path) -> Path:
    signature = sorted((str(p.relative_to(src)), p.stat().st_size) for p in src.rglob("*") if p.is_file())
    stamp = dest / ".pk-source"
    if stamp.exists() and stamp.read_text() == repr(signature):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    for p in dest.rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)
    stamp.write_text(repr(signature))
    return dest


def check_text_file(path: Path) -> str:
    """Refuse an unreadable, empty, binary or non-UTF-8 file with a DataError that names the
    file and the line of the first bad byte; return the file's sha256 (hex), which loaders
    put in their fingerprint so a run records exactly which data it read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check dataset.path") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; check dataset.path or copy the data again")
    bad = raw.find(b"\x00")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start if bad < 0 else min(bad, exc.start)
    if bad >= 0:
        line = raw.count(b"\n", 0, bad) + 1
        raise DataError(f"{path}:{line}: byte {bad} is not UTF-8 text (a binary or corrupt file?); "
                        "point dataset.path at the plain-text data file")
    return hashlib.sha256(raw).hexdigest()
