"""Start-up time of pk's commands against bare `python -c pass` (and `llm --help` when
installed). Run with the venv's python:

    .venv/bin/python bench/cli_startup.py [--runs 15] [--json]

Each command runs --runs times; the table gives the median wall time, the fastest wall time
and the median CPU time (user + system of the child: steadier than wall time on a shared
machine), each with its ratio to bare python. Goals (issue 25): `pk --help` <= 3x bare
python and `pk list` <= 5x, with every plugin installed; the script says whether each is met
by CPU time and by fastest wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOALS = {"pk --help": 3.0, "pk list": 5.0}


def measure(cmd: list[str], runs: int) -> dict[str, float]:
    """Median and minimum wall ms and median CPU ms (user + sys) of ``runs`` runs."""
    subprocess.run(cmd, capture_output=True)  # warm the file cache
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        walls.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return {"wall_ms": round(statistics.median(walls), 1), "min_wall_ms": round(min(walls), 1),
            "cpu_ms": round(statistics.median(cpus), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
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
        "pk runs --help": [pk, "runs", "--help"],
        "pk tune --help": [pk, "tune", "--help"],
    }
    llm = shutil.which("llm")
    if llm:
        cases["llm --help"] = [llm, "--help"]
    results = {name: measure(cmd, args.runs) for name, cmd in cases.items()}
    base = results["python -c pass"]
    for r in results.values():
        r["x_python_cpu"] = round(r["cpu_ms"] / base["cpu_ms"], 2)
        r["x_python_min_wall"] = round(r["min_wall_ms"] / base["min_wall_ms"], 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'command':<16} {'wall ms':>8} {'min wall':>9} {'x py':>6} {'cpu ms':>8} {'x py':>6}")
    for name, r in results.items():
        print(f"{name:<16} {r['wall_ms']:>8.1f} {r['min_wall_ms']:>9.1f} {r['x_python_min_wall']:>6.2f} "
              f"{r['cpu_ms']:>8.1f} {r['x_python_cpu']:>6.2f}")
    for name, goal in GOALS.items():
        r = results[name]
        ok = "met" if max(r["x_python_cpu"], r["x_python_min_wall"]) <= goal else "NOT met"
        print(f"goal {name} <= {goal:g}x python: {ok} "
              f"(cpu {r['x_python_cpu']:.2f}x, fastest wall {r['x_python_min_wall']:.2f}x)")
    if not llm:
        print("(llm not installed: pip install llm to add the peer)")


if __name__ == "__main__":
    main()
