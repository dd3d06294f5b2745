"""The run index on many synthetic run dirs: build time, then `pk runs --where` answer time.

    .venv/bin/python bench/runs_index.py [--runs 10000] [--dir /tmp/pk-index-bench] [--json]

Writes N run dirs (config.toml + result.json, as pk writes them; batch layout: 100 batch
dirs of N/100 runs) once, indexes them (the first `pk runs`), then times, as a user sees
them (one `pk` process each, median of --repeat): a --where query, the same with
--model/--since, a --compare, and a query after one run changed. Goal: < 1 s after indexing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["mlp", "sasrec", "gru4rec", "gcn", "gat"]


def make_runs(root: Path, n: int, seed: int = 0) -> None:
    """``n`` run dirs under ``root/batch-XX/`` with random metrics and configs."""
    rng = random.Random(seed)
    now = time.time()
    for i in range(n):
        d = root / f"batch-{i % 100:02d}" / f"run-{i:05d}-s{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        model = MODELS[i % len(MODELS)]
        lr = 10 ** rng.uniform(-4, -1)
        (d / "config.toml").write_text(
            f'[run]\nseed = {i % 3}\ndevice = "cpu"\n\n'
            f'[model]\nname = "{model}"\nhidden = [{rng.choice([16, 32, 64])}]\n\n'
            f'[dataset]\nname = "synthetic-classification"\nnum_samples = 800\n\n'
            f'[trainer]\nname = "supervised"\nlr = {lr!r}\nmax_epochs = {rng.choice([5, 10])}\n')
        started = now - rng.uniform(0, 10 * 86400)
        result = {"status": "completed", "run_dir": str(d), "started": started, "ended": started + 5, "seconds": 5.0,
                  "pid": 1, "host": "bench",
                  "metrics": {"test.accuracy": rng.random(), "test.ndcg@10": rng.random() / 10, "fit.epochs_run": 5.0},
                  "resources": {"wall_seconds": 5.0, "cpu_seconds": 4.0, "peak_rss_mib": 300.0}}
        (d / "result.json").write_text(json.dumps(result))


def timed(cmd: list[str], repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        out = proc.stdout
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--dir", default="/tmp/pk-index-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(args.dir) / f"runs-{args.runs}"
    pk = str(Path(sys.executable).with_name("pk"))
    res: dict[str, float] = {}
    if not (root / f"batch-{(args.runs - 1) % 100:02d}").exists():
        t = time.perf_counter()
        make_runs(root, args.runs)
        res["write run dirs (s)"] = time.perf_counter() - t
    (root / ".pk-index.sqlite").unlink(missing_ok=True)
    res["first pk runs: build index (s)"], _ = timed([pk, "runs", "--dir", str(root), "--last", "1", "--json"], 1)
    where = "test.accuracy > 0.9 and trainer.lr < 0.01"
    res["pk runs --where (s)"], out = timed([pk, "runs", "--dir", str(root), "--where", where, "--json"], args.repeat)
    matched = len(json.loads(out))
    res["pk runs --where --model --since 2d (s)"], _ = timed(
        [pk, "runs", "--dir", str(root), "--where", "test.accuracy > 0.5", "--model", "mlp", "--since", "2d", "--json"],
        args.repeat)
    res["pk runs --compare (s)"], _ = timed(
        [pk, "runs", "--dir", str(root), "--compare", "run-00001-s1", "run-00002-s2", "--json"], args.repeat)
    one = root / "batch-07" / "run-00007-s1" / "result.json"
    one.write_text(one.read_text().replace('"seconds": 5.0', '"seconds": 6.0'))
    res["pk runs --where after 1 run changed (s)"], _ = timed(
        [pk, "runs", "--dir", str(root), "--where", where, "--json"], 1)
    res["python -c pass (s)"], _ = timed([sys.executable, "-c", "pass"], args.repeat)
    if args.json:
        print(json.dumps({"runs": args.runs, "matched": matched, **{k: round(v, 3) for k, v in res.items()}}, indent=2))
        return
    print(f"{args.runs} run dirs under {root}; --where {where!r} matched {matched}")
    for k, v in res.items():
        print(f"{k:<42} {v:8.3f}")
    slow = {k: v for k, v in res.items() if k.startswith("pk runs -") and v >= 1.0}
    print("goal < 1 s after indexing: " + ("met" if not slow else f"MISSED: {', '.join(slow)}"))


if __name__ == "__main__":
    main()
