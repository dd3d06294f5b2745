"""Progress and messages for runs: rich bars on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any


class Reporter:
    """Reports run progress to stderr. ``mode`` is "rich", "plain" or "quiet"."""

    def __init__(self, mode: str | None = None) -> None:
        if mode is None:
            tty = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
            mode = "rich" if tty else "plain"
        self.mode = mode
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def echo(self, message: str) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "rich":
            self.console.print(message, highlight=False, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        if self.mode == "quiet" or split == "train-step":
            return
        shown = " ".join(f"{k}={v:.4g}" for k, v in list(values.items())[:6])
        self.echo(f"  step {step} [{split}] {shown}")

    def progress(self, iterable: Iterable[Any], total: int | None, description: str) -> Iterator[Any]:
        if self.mode == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description or "working", total=total)
                for item in iterable:
                    yield item
                    bar.advance(task)
            return
        start = time.perf_counter()
        n = 0
        for item in iterable:
            yield item
            n += 1
        if self.mode == "plain" and description:
            print(f"  {description}: {n} in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
