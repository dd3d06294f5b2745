"""Output helpers: rich tables on a terminal, plain text or JSON otherwise."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click


def use_rich() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a TTY, else aligned plain text (stable for scripts and tests)."""
    if use_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*[str(x) for x in r])
        Console().print(table)
        return
    if title:
        click.echo(title)
    widths = [max([len(str(c))] + [len(str(r[i])) for r in rows]) for i, c in enumerate(columns)]
    click.echo("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
