"""Asking questions of run records: flattened configs, the ``--where`` / ``--since``
language of ``pk runs`` and the difference of two runs (no SQLite, no torch here).

``--where`` expressions: ``test.accuracy > 0.5 and model = mlp``, ``trainer.lr <= 1e-3 or not
(status = completed)``. A key is a column (``status model dataset trainer seed name dir hash
started seconds``), a metric of result.json (``fit.* test.* eval.*``, ``resources.*``) or a
config value (``run.* model.* dataset.* trainer.* aggregator.* calibrator.* evaluator.*``);
:func:`to_sql` turns a parsed expression into SQL over the index's tables.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pk.core.errors import UsageError

CONFIG_SECTIONS = ("run", "model", "dataset", "trainer", "aggregator", "calibrator", "evaluator")
#: where-clause key -> runs column
COLUMNS = {"status": "status", "model": "model", "dataset": "dataset", "trainer": "trainer", "seed": "seed",
           "name": "name", "dir": "dir", "run_dir": "dir", "hash": "hash", "started": "started", "seconds": "seconds"}


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"trainer": {"lr": 0.1}}`` -> ``{"trainer.lr": 0.1}`` (one level of tables)."""
    out: dict[str, Any] = {}
    for section, table in config.items():
        if isinstance(table, Mapping):
            for key, value in table.items():
                if not str(key).startswith("_"):
                    out[f"{section}.{key}"] = value
        else:
            out[str(section)] = table
    return out


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


# -- the where language ----------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|!=|==|=|<|>|~)|(?P<paren>[()])"""
                    r"""|(?P<str>"[^"]*"|'[^']*')|(?P<word>[^\s()<>=!~"']+))""")


@dataclass
class Cond:
    """One comparison ``key op value``."""

    key: str
    op: str
    value: Any


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"--where {text!r}: cannot read {text[pos:].strip()[:20]!r}; "
                             "write e.g. \"test.accuracy > 0.5\"")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_where(text: str) -> Any:
    """Parse a where expression into nested tuples: ``("and", a, b)``, ``("or", a, b)``,
    ``("not", a)`` or a :class:`Cond`. Words ``and or not`` are case-insensitive; values
    are numbers, quoted strings or bare words; ``~`` means "contains"."""
    tokens = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise UsageError(f"--where {text!r} ends too early; write e.g. \"test.accuracy > 0.5\"")
        pos += 1
        return tokens[pos - 1]

    def word_is(tok: tuple[str, str] | None, word: str) -> bool:
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def expr() -> Any:
        node = term()
        while word_is(peek(), "or"):
            take()
            node = ("or", node, term())
        return node

    def term() -> Any:
        node = factor()
        while word_is(peek(), "and"):
            take()
            node = ("and", node, factor())
        return node

    def factor() -> Any:
        tok = take()
        if tok[0] == "word" and tok[1].lower() == "not":
            return ("not", factor())
        if tok == ("paren", "("):
            node = expr()
            if take() != ("paren", ")"):
                raise UsageError(f"--where {text!r}: a '(' is not closed")
            return node
        if tok[0] != "word":
            raise UsageError(f"--where {text!r}: expected a key such as test.accuracy, got {tok[1]!r}")
        op = take()
        if op[0] != "op":
            raise UsageError(f"--where {text!r}: expected one of = != < <= > >= ~ after {tok[1]!r}, got {op[1]!r}")
        val = take()
        if val[0] == "str":
            value: Any = val[1][1:-1]
        elif val[0] == "word":
            value = _parse_value(val[1])
        else:
            raise UsageError(f"--where {text!r}: expected a value after {tok[1]} {op[1]}")
        return Cond(tok[1], "=" if op[1] == "==" else op[1], value)

    node = expr()
    if pos != len(tokens):
        raise UsageError(f"--where {text!r}: unexpected {tokens[pos][1]!r}; join conditions with and / or")
    return node


def _parse_value(word: str) -> Any:
    low = word.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        return word


def _key_kind(key: str) -> str:
    if key in COLUMNS:
        return "column"
    head = key.split(".", 1)[0]
    if "." in key and head in CONFIG_SECTIONS:
        return "param"
    if "." in key:
        return "metric"
    raise UsageError(f"--where: unknown key {key!r}; use a metric (test.accuracy), a config key (trainer.lr) or one of "
                     f"{', '.join(sorted(set(COLUMNS) - {'run_dir'}))}")


def to_sql(node: Any, params: list[Any]) -> str:
    """SQL for a parsed where expression over ``runs r`` (values bound as parameters)."""
    if isinstance(node, tuple):
        if node[0] == "not":
            return f"NOT ({to_sql(node[1], params)})"
        return f"({to_sql(node[1], params)}) {node[0].upper()} ({to_sql(node[2], params)})"
    cond: Cond = node
    kind = _key_kind(cond.key)
    op, value = cond.op, cond.value
    if op == "~":
        op, value = "LIKE", f"%{value}%"
    if isinstance(value, bool):
        value = float(value)
    if kind == "column":
        params.append(value)
        return f"r.{COLUMNS[cond.key]} {op} ?"
    if kind == "metric":
        if op == "LIKE":
            raise UsageError(f"--where: {cond.key} is a number; compare it with = != < <= > >=")
        if not isinstance(value, (int, float)):
            raise UsageError(f"--where: {cond.key} is a metric; compare it with a number, not {value!r}")
        params.extend([cond.key, value])
        return f"EXISTS (SELECT 1 FROM metrics m WHERE m.run = r.id AND m.key = ? AND m.value {op} ?)"
    column = "num" if isinstance(value, (int, float)) and op != "LIKE" else "text"
    params.extend([cond.key, value])
    return f"EXISTS (SELECT 1 FROM params p WHERE p.run = r.id AND p.key = ? AND p.{column} {op} ?)"


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``12h``, ``2d``, ``1w`` (ago) or an ISO date/time -> a UNIX time."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * scale
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: give an age such as 30m, 12h, 2d, 1w "
                         "or a date such as 2026-01-31") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


# -- the index -------------------------------------------------------------------------
def section_name(config: Mapping[str, Any], section: str) -> str:
    table = config.get(section)
    return str(table.get("name", "?")) if isinstance(table, Mapping) else "?"


def compare(a: tuple[Mapping[str, Any], Mapping[str, Any]],
            b: tuple[Mapping[str, Any], Mapping[str, Any]]) -> dict[str, Any]:
    """Config and metric differences of two runs given as (config, result).

    ``config``: ``{key: [a, b]}`` for every flattened config key whose values differ
    (``None`` where a run lacks the key); ``metrics``: ``{key: {"a", "b", "diff"}}`` for
    every metric and ``resources.*`` either run has (``diff`` = b - a where both are numbers)."""
    fa, fb = flatten(a[0]), flatten(b[0])
    config = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}
    ma, mb = (_with_resources(r[1]) for r in (a, b))
    metrics = {}
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        na, nb = as_number(va), as_number(vb)
        metrics[key] = {"a": va, "b": vb, "diff": nb - na if na is not None and nb is not None else None}
    return {"config": config, "metrics": metrics}


def _with_resources(result: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(result.get("metrics") or {})
    out.update({f"resources.{k}": v for k, v in (result.get("resources") or {}).items()})
    return out


def format_compare(names: Sequence[str], diff: Mapping[str, Any]) -> list[str]:
    """Plain lines of a :func:`compare` result."""
    lines = [f"A = {names[0]}", f"B = {names[1]}", "", "config (A -> B):"]
    if not diff["config"]:
        lines.append("  (same config)")
    for key, (va, vb) in diff["config"].items():
        lines.append(f"  {key}: {json.dumps(va, default=str)} -> {json.dumps(vb, default=str)}")
    lines += ["", "metrics (A, B, B - A):"]
    for key, m in diff["metrics"].items():
        va = "—" if m["a"] is None else f"{m['a']:.6g}"
        vb = "—" if m["b"] is None else f"{m['b']:.6g}"
        dv = "" if m["diff"] is None else f"{m['diff']:+.6g}"
        lines.append(f"  {key}: {va}  {vb}  {dv}")
    return lines
