"""A queryable SQLite index of run dirs (the run dirs stay the truth).

The index lives in ``<root>/.pk-index.sqlite``. :meth:`RunIndex.refresh` walks ``root``
(run dirs at most three levels deep: plain runs, batch runs, quick-batch runs) and re-reads
only the runs whose ``result.json`` changed since they were indexed, in one transaction,
so a reader never sees half an update; :meth:`RunIndex.record` updates one run the same
way when it ends. A deleted index is rebuilt on the next query.

Queries (:meth:`RunIndex.query`) filter with a small expression language (:func:`pk.core.run_query.parse_where`):
``test.accuracy > 0.5 and model = mlp``, ``trainer.lr <= 1e-3 or not (status = completed)``.
A key is a column (``status model dataset trainer seed name dir hash started seconds``), a
metric of result.json (``fit.* test.* eval.*``, ``resources.*``) or a config value
(``run.* model.* dataset.* trainer.* aggregator.* calibrator.* evaluator.*``). A comparison
with a key a run does not have is false. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from pk.core.errors import UsageError
from pk.core.run_query import as_number, flatten, parse_where, section_name, to_sql

INDEX_NAME = ".pk-index.sqlite"
SCHEMA_VERSION = "1"
MAX_DEPTH = 3
#: directories never holding run dirs (inside a run dir, or pk's own output)
SKIP_DIRS = {"checkpoints", "artifacts", "report", "tensorboard", "mlruns"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, dir TEXT UNIQUE NOT NULL, name TEXT, sig TEXT, status TEXT, pid INTEGER, host TEXT,
    model TEXT, dataset TEXT, trainer TEXT, seed INTEGER, started REAL, ended REAL, seconds REAL, hash TEXT,
    config TEXT, result TEXT);
CREATE TABLE IF NOT EXISTS metrics (run INTEGER NOT NULL, key TEXT NOT NULL, value REAL, PRIMARY KEY (run, key))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_kv ON metrics (key, value);
CREATE TABLE IF NOT EXISTS params (run INTEGER NOT NULL, key TEXT NOT NULL, num REAL, text TEXT,
    PRIMARY KEY (run, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_kn ON params (key, num);
CREATE INDEX IF NOT EXISTS params_kt ON params (key, text);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_model ON runs (model);
"""


# -- scanning --------------------------------------------------------------------------
def _sig(run_dir: str) -> str:
    """What says a run changed: result.json's mtime and size (``-`` when absent)."""
    try:
        st = os.stat(os.path.join(run_dir, "result.json"))
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def scan(root: str | Path, known: Mapping[str, Any] = {}) -> Iterator[tuple[str, int]]:  # read only
    """Run dirs (holding ``config.toml``) under ``root`` as ``(path relative to root, inode)``,
    at most three levels deep; a run dir is not searched further; hidden dirs, run-internal
    dirs and set-aside ``*.incomplete-*`` dirs are skipped. Names in ``known`` are taken
    as run dirs without a look inside (the inode comes free with the listing)."""
    stack: list[tuple[str, str, int]] = [(str(root), "", 0)]
    while stack:
        folder, rel, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name[0] == "." or name in SKIP_DIRS or ".incomplete-" in name:
                continue
            sub = f"{rel}/{name}" if rel else name
            if sub in known:
                yield sub, entry.inode()
                continue
            try:
                if not entry.is_dir():
                    continue
            except OSError:
                continue
            if os.path.isfile(entry.path + "/config.toml"):
                yield sub, entry.inode()
            elif depth + 1 < MAX_DEPTH:
                stack.append((entry.path, sub, depth + 1))


def read_run(run_dir: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(config, result) of a run dir; None when its config.toml is unreadable."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(os.path.join(run_dir, "config.toml"), "rb") as fh:
            config = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    result: dict[str, Any] = {}
    try:
        with open(os.path.join(run_dir, "result.json"), encoding="utf-8") as fh:
            loaded = json.load(fh)
        result = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        result = {}
    return config, result


def live_status(status: str, pid: int | None, host: str | None) -> str:
    """:func:`pk.core.run.run_status` on the indexed fields (a dead local ``running`` run
    is ``crashed``)."""
    from pk.core.run import process_alive

    if status == "running" and (pid is None or (host == socket.gethostname() and not process_alive(int(pid)))):
        return "crashed"
    return status


class RunIndex:
    """The SQLite index of the run dirs under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path, path: str | Path | None = None) -> None:
        self.root = Path(root)
        self.path = Path(path) if path is not None else self.root / INDEX_NAME
        self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        target = str(self.path)
        try:
            if not self.root.is_dir():
                raise OSError("no root")
            conn = sqlite3.connect(target, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=DELETE")
        except (OSError, sqlite3.Error):
            conn = sqlite3.connect(":memory:", isolation_level=None)  # read-only or absent root: a throwaway index
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error:
            version = None
        if version is None or version[0] != SCHEMA_VERSION:
            conn.executescript("DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS metrics; DROP TABLE IF EXISTS params;"
                               "DROP TABLE IF EXISTS meta;")
            conn.executescript(SCHEMA)
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------
    def _abs(self, rel: str) -> str:
        return os.path.join(str(self.root), rel)

    def _write(self, rel: str, sig: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Replace the rows of the run dir ``rel`` (relative to root; inside the caller's
        transaction)."""
        cur = self.conn.execute("SELECT id FROM runs WHERE dir = ?", (rel,))
        row = cur.fetchone()
        if row is not None:
            self._delete(row[0])
        started = result.get("started")
        if not isinstance(started, (int, float)):
            try:
                started = os.stat(os.path.join(self._abs(rel), "config.toml")).st_mtime
            except OSError:
                started = None
        from pk.core.config import config_hash

        cur = self.conn.execute(
            "INSERT INTO runs (dir, name, sig, status, pid, host, model, dataset, trainer, seed, started, ended,"
            " seconds, hash, config, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rel, os.path.basename(rel), sig,
             live_status(str(result.get("status", "unknown")), result.get("pid"), result.get("host"))
             if result else "unknown",
             result.get("pid"), result.get("host"),
             section_name(config, "model"), section_name(config, "dataset"), section_name(config, "trainer"),
             (config.get("run") or {}).get("seed") if isinstance(config.get("run"), Mapping) else None,
             started, as_number(result.get("ended")), as_number(result.get("seconds")), config_hash(config),
             json.dumps(config, default=str), json.dumps(result, default=str)),
        )
        rid = cur.lastrowid
        metrics = {k: v for k, v in (result.get("metrics") or {}).items() if as_number(v) is not None}
        metrics.update({f"resources.{k}": v for k, v in (result.get("resources") or {}).items()
                        if as_number(v) is not None})
        self.conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                              [(rid, k, as_number(v)) for k, v in metrics.items()])
        rows = []
        for key, value in flatten(config).items():
            num = as_number(value)
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            rows.append((rid, key, num, text))
        self.conn.executemany("INSERT OR REPLACE INTO params VALUES (?, ?, ?, ?)", rows)

    def _delete(self, rid: int) -> None:
        for table, col in (("metrics", "run"), ("params", "run"), ("runs", "id")):
            self.conn.execute(f"DELETE FROM {table} WHERE {col} = ?", (rid,))

    def refresh(self) -> dict[str, int]:
        """Bring the index up to date with the run dirs under ``root`` in one transaction:
        new and changed runs are (re)read, vanished ones dropped, and stored ``running``
        runs whose local process is gone become ``crashed``. Returns the counts.

        A completed run never changes (pk refuses to resume or reuse it), so a known
        completed run dir is only checked to be the same dir (inode); every other run's
        result.json is checked by mtime and size."""
        known = {d: (sig, status) for d, sig, status in self.conn.execute("SELECT dir, sig, status FROM runs")}
        seen: set[str] = set()
        changed: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        base = str(self.root) + "/"
        for rel, inode in scan(self.root, known):
            old = known.get(rel)
            if old is not None and old[1] == "completed" and old[0].startswith(f"{inode}/"):
                seen.add(rel)
                continue
            full = base + rel
            sig = f"{inode}/{_sig(full)}"
            if old is not None and old[0] == sig:
                seen.add(rel)
                continue
            read = read_run(full)
            if read is not None:  # an unreadable config is not a run we can list
                seen.add(rel)
                changed.append((rel, sig, *read))
        gone = [d for d in known if d not in seen]
        running = self.conn.execute("SELECT id, pid, host FROM runs WHERE status = 'running'").fetchall()
        crashed = [rid for rid, pid, host in running if live_status("running", pid, host) == "crashed"]
        if changed or gone or crashed:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for rel, sig, config, result in changed:
                    self._write(rel, sig, config, result)
                for rel in gone:
                    row = self.conn.execute("SELECT id FROM runs WHERE dir = ?", (rel,)).fetchone()
                    if row is not None:
                        self._delete(row[0])
                # derived, not recorded: a resumed run rewrites result.json and is re-read
                self.conn.executemany("UPDATE runs SET status = 'crashed' WHERE id = ?", [(r,) for r in crashed])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return {"runs": len(seen), "read": len(changed), "dropped": len(gone), "crashed": len(crashed)}

    def record(self, run_dir: str | Path) -> None:
        """Index (or re-index) one run dir under root now, atomically: call it when a run ends."""
        full = Path(run_dir).resolve()
        rel = full.relative_to(self.root.resolve()).as_posix()
        read = read_run(str(full))
        if read is None:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._write(rel, f"{os.stat(full).st_ino}/{_sig(str(full))}", *read)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # -- reading -----------------------------------------------------------------------
    def query(self, *, where: str | None = None, model: str | None = None, status: str | None = None,
              since: float | None = None, last: int = 0) -> list[dict[str, Any]]:
        """Indexed runs matching every filter, oldest first (``last``: only the N newest)."""
        clauses: list[str] = []
        params: list[Any] = []
        if where:
            clauses.append(to_sql(parse_where(where), params))
        if model:
            clauses.append("r.model = ?")
            params.append(model)
        if status:
            clauses.append("r.status = ?")
            params.append(status)
        if since is not None:
            clauses.append("r.started >= ?")
            params.append(since)
        sql = ("SELECT r.id, r.dir, r.status, r.model, r.dataset, r.trainer, r.seed, r.seconds, r.started, r.hash"
               " FROM runs r")
        if clauses:
            sql += " WHERE " + " AND ".join(f"({c})" for c in clauses)
        sql += " ORDER BY r.started, r.name"
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise UsageError(f"--where {where!r}: {exc}") from None
        if last:
            rows = rows[-last:]
        metrics: dict[int, dict[str, float]] = {r[0]: {} for r in rows}
        ids = list(metrics)
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            for rid, key, value in self.conn.execute(
                    f"SELECT run, key, value FROM metrics WHERE run IN ({marks})"
                    " AND key NOT LIKE 'resources.%'", chunk):
                metrics[rid][key] = value
        return [{"run_dir": self._abs(d), "status": st, "model": mo, "dataset": ds, "trainer": tr, "seed": seed,
                 "seconds": secs, "started": started, "config_hash": h, "metrics": metrics[rid]}
                for rid, d, st, mo, ds, tr, seed, secs, started, h in rows]

    def find(self, ref: str) -> str:
        """A run dir from a path, or a unique run dir name (or name prefix) in the index."""
        path = Path(ref)
        if (path / "config.toml").is_file():
            return str(path)
        rows = [self._abs(r[0])
                for r in self.conn.execute("SELECT dir FROM runs WHERE name = ? OR dir = ?", (ref, ref))]
        if not rows:
            rows = [self._abs(r[0]) for r in self.conn.execute(
                "SELECT dir FROM runs WHERE name LIKE ? ESCAPE '\\'",
                (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",))]
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise UsageError(f"no run {ref!r} under {self.root}; give a run dir or a name from `pk runs`")
        raise UsageError(f"{ref!r} names {len(rows)} runs under {self.root} "
                         f"({', '.join(Path(r).name for r in rows[:3])}, ...); give more of the name or the run dir")

    def record_of(self, run_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, result) of an indexed run dir, else read from disk."""
        try:
            rel = Path(run_dir).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = None
        row = self.conn.execute("SELECT config, result FROM runs WHERE dir = ?", (rel,)).fetchone() if rel else None
        if row is not None:
            return json.loads(row[0]), json.loads(row[1])
        read = read_run(run_dir)
        if read is None:
            raise UsageError(f"{run_dir!r} has no readable config.toml")
        return read


def record_run(run_dir: str | Path) -> bool:
    """Update the index that covers ``run_dir`` (the nearest ancestor, at most three
    levels up, holding one) with this ended run, atomically. Without an index nothing is
    written (the first query builds it); a locked or unwritable index is left to the next
    query's refresh. Returns whether an index was updated."""
    run_dir = Path(run_dir).resolve()
    for parent in list(run_dir.parents)[:MAX_DEPTH]:
        if (parent / INDEX_NAME).is_file():
            try:
                with closing(RunIndex(parent)) as index:
                    index.record(run_dir)
                return True
            except (sqlite3.Error, OSError, ValueError):
                return False
    return False
