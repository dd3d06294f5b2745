"""Readers for the three file formats. Malformed input raises ``DataError`` with one line
naming the file and line and saying how to fix it. Pure Python (no torch)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from pk.core.errors import DataError


def _lines(path: Path, start: int = 1) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` of a UTF-8 text file, read as bytes so
    that a binary or mis-encoded file fails with the line it breaks on (DataError), never
    with a bare UnicodeDecodeError."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check dataset.path") from None
    with fh:
        for line_no, raw in enumerate(fh, start=start):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{line_no}: not UTF-8 text (a binary or corrupt file?); "
                                "point dataset.path at the text data file") from None
            if "\x00" in text:
                raise DataError(f"{path}:{line_no}: NUL byte in a text file (a binary or corrupt file?); "
                                "point dataset.path at the text data file")
            yield line_no, text.rstrip("\r\n")


def read_atomic_inter(path: Path) -> list[tuple[str, str, float]]:
    """RecBole atomic ``.inter``: tab separated, header of ``name:type`` fields holding at
    least ``user_id`` and ``item_id`` (``timestamp`` optional; without it file order is
    time order). Returns ``(user, item, timestamp)`` in file order; every row counts as an
    implicit interaction (ratings are ignored)."""
    path = Path(path)
    lines = _lines(path)
    header = next(lines, (1, ""))[1].split("\t")
    names = [h.split(":", 1)[0] for h in header]
    if "user_id" not in names or "item_id" not in names or any(":" not in h for h in header):
        raise DataError(
            f"{path}:1: header must be tab-separated name:type fields with user_id and item_id "
            f"(got {header[:4]!r}); fix the header row"
        )
    iu, ii = names.index("user_id"), names.index("item_id")
    it = names.index("timestamp") if "timestamp" in names else None
    rows: list[tuple[str, str, float]] = []
    for line_no, line in lines:
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != len(names):
            raise DataError(f"{path}:{line_no}: expected {len(names)} tab-separated fields, got {len(parts)}; "
                            "fix that line")
        try:
            ts = float(parts[it]) if it is not None else float(line_no)
        except ValueError:
            raise DataError(f"{path}:{line_no}: timestamp {parts[it]!r} is not a number; fix that line") from None
        if it is not None and not math.isfinite(ts):
            raise DataError(f"{path}:{line_no}: timestamp {parts[it]!r} is not finite; fix that line")
        if not parts[iu] or not parts[ii]:
            raise DataError(f"{path}:{line_no}: empty user_id or item_id; fix that line")
        rows.append((parts[iu], parts[ii], ts))
    if not rows:
        raise DataError(f"{path}: no interactions after the header; check the file")
    return rows


def read_seq_lines(path: Path) -> tuple[list[str], list[list[int]]]:
    """One user per line: ``user_id item_id item_id ...`` (space separated, oldest first,
    integer item ids >= 1). Returns user ids and their item lists in file order."""
    path = Path(path)
    users: list[str] = []
    sequences: list[list[int]] = []
    for line_no, line in _lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(f"{path}:{line_no}: a line needs a user id then at least one item id; fix that line")
        try:
            items = [int(x) for x in parts[1:]]
        except ValueError:
            raise DataError(f"{path}:{line_no}: item ids must be integers (got {' '.join(parts[1:4])!r}...); "
                            "fix that line") from None
        if min(items) < 1:
            raise DataError(f"{path}:{line_no}: item ids must be >= 1 (0 is padding); fix that line")
        users.append(parts[0])
        sequences.append(items)
    if not sequences:
        raise DataError(f"{path}: no user lines; check the file")
    return users, sequences


def read_session_period(path: Path) -> list[list[int]]:
    """ADER period file: ``session_id item_id`` per line in action-time order. Returns the
    sessions' item lists grouped by session id, in order of each session's first action."""
    path = Path(path)
    sessions: dict[str, list[int]] = {}
    for line_no, line in _lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{line_no}: expected 'session_id item_id', got {len(parts)} fields; fix that line")
        try:
            item = int(parts[1])
        except ValueError:
            raise DataError(f"{path}:{line_no}: item id {parts[1]!r} is not an integer; fix that line") from None
        if item < 1:
            raise DataError(f"{path}:{line_no}: item ids must be >= 1 (0 is padding); fix that line")
        sessions.setdefault(parts[0], []).append(item)
    if not sessions:
        raise DataError(f"{path}: no 'session_id item_id' lines; check the file")
    return list(sessions.values())


def read_periods(folder: Path, periods: list[int]) -> list[list[list[int]]]:
    """Sessions of each requested period (``period_<k>.txt`` in ``folder``)."""
    folder = Path(folder)
    out = []
    for k in periods:
        path = folder / f"period_{k}.txt"
        if not path.exists():
            raise DataError(f"{path}: missing period file; check dataset.path and dataset.test_period")
        out.append(read_session_period(path))
    return out
