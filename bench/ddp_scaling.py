"""DDP scaling of SASRec on ml-100k: training throughput with 1 and 2 processes, side by
side (same global batch). Reads each run's logged ``seq_per_s`` and epoch seconds.

    PK_LOAD_PLUGINS=pk-seqrec .venv/bin/python bench/ddp_scaling.py [--epochs 2] [--device cpu|cuda]

Every process runs one intra-op thread (run.threads = 1), so N processes use N cores.

Scaling efficiency = throughput(N) / (N * throughput(1)).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(nproc: int, epochs: int, device: str, out: Path) -> dict[str, float]:
    pk = str(Path(sys.executable).with_name("pk"))
    cmd = [pk, "train", "-q", "--run-dir", str(out),
           "-c", "model.name=sasrec", "-c", "dataset.name=ml-100k", "-c", "dataset.source=file",
           "-c", "trainer.name=next-item", "-c", f"trainer.max_epochs={epochs}", "-c", "trainer.batch_targets=256",
           "-c", "trainer.patience=100", "-c", "run.threads=1", "-c", f"run.device=\"{device}\""]
    if nproc > 1:
        cmd += ["--nproc-per-node", str(nproc)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    seconds = sum(x["seconds"] for x in train[1:]) or train[0]["seconds"]  # skip the warm-up epoch when possible
    seqs = sum(x["seq_per_s"] * x["seconds"] for x in train[1:]) or train[0]["seq_per_s"] * train[0]["seconds"]
    result = json.loads((out / "result.json").read_text())["metrics"]
    return {"seq_per_s": seqs / seconds, "epoch_s": seconds / max(len(train) - 1, 1),
            "valid_ndcg@10": result.get("fit.best_valid_ndcg@10", float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--procs", default="1,2")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.procs.split(",")]:
            rows[n] = run(n, args.epochs, args.device, Path(tmp) / f"p{n}")
    base = rows[min(rows)]["seq_per_s"]
    print(f"{'procs':>5} {'seq/s':>10} {'epoch s':>9} {'speed-up':>9} {'efficiency':>10} {'valid NDCG@10':>14}")
    for n, r in rows.items():
        print(f"{n:>5} {r['seq_per_s']:>10.1f} {r['epoch_s']:>9.2f} {r['seq_per_s'] / base:>9.2f} "
              f"{r['seq_per_s'] / (n * base):>10.2f} {r['valid_ndcg@10']:>14.4f}")


if __name__ == "__main__":
    main()
