"""Median wall time of pk's start-up commands, side by side with `python -c pass` and
`llm --help` (when llm is installed). Run with the venv's python:

    .venv/bin/python bench/cli_startup.py [--runs 9]

Budgets (2-core machine): pk --help <= 150 ms, pk list <= 300 ms with every plugin installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_ms(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    pk = str(Path(py).with_name("pk"))
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "pk --version": [pk, "--version"],
        "pk --help": [pk, "--help"],
        "pk list": [pk, "list"],
        "pk list --json": [pk, "list", "--json"],
    }
    llm = shutil.which("llm")
    if llm:
        cases["llm --help"] = [llm, "--help"]
    results = {name: round(median_ms(cmd, args.runs), 1) for name, cmd in cases.items()}
    base = results["python -c pass"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'command':<18} {'median ms':>10} {'x python':>9}")
    for name, ms in results.items():
        print(f"{name:<18} {ms:>10.1f} {ms / base:>9.2f}")
    if not llm:
        print("(llm not installed: pip install llm to add the peer)")


if __name__ == "__main__":
    main()
