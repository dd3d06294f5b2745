"""TransGNN cost benchmarks.

**Scaling** (default): TransGNN vs GCN, seconds and peak memory per training epoch on synthetic
graphs of growing size. The TransGNN claim: beyond the one-time initial sampling (O(N^2 d),
chunked) and the positional encodings, the extra cost per epoch is linear in N (O(N k d)
attention). So at fixed average degree and sample size, time(10N) / time(N) should stay near 10.
The sample refresh (message-passing update O(|E| k d), plus the hops to the new layer-0 samples:
a table lookup up to ``dense_hops_max`` nodes, a sparse meet-in-the-middle search above it) is timed
separately. The one-time precompute (``model.prepare``: structure, PageRank, initial top-k, hops) is
printed in its own column.
Each (model, N) runs in a fresh subprocess (clean peak RSS; CUDA: max_memory_allocated), one
thread, contextual SBM graphs (pk_graph.data.synthetic.csbm) with average degree 10, 32 features,
the model's default ``max_hops`` (5) unless ``--max-hops`` says otherwise.

    python bench/transgnn_scaling.py                      # 1k, 10k, 100k nodes
    python bench/transgnn_scaling.py --sizes 1000 10000 --device cuda

**PROTEINS_full epoch time, old vs new code** (``--proteins``): a training epoch (batch 32) plus
the validation pass of fold 0, the recipe's TransGNN settings (dropout 0.1, lr 1e-3). "old" runs
pk_transgnn as of ``--old-rev`` (extracted with ``git archive`` and put first on PYTHONPATH), "new"
the working tree (also with ``update="none"``, to show the refresh's share); each in a fresh
subprocess of the same invocation, on the same machine. CPU seconds (process time) are the figure
to compare on a shared machine; wall seconds are printed too. One extra epoch per version runs
under cProfile to measure the share of the structure and sample work (old: top-k, hops and PageRank
every step plus the per-pass refinement; new: cache lookups, unseen graphs' tables and the refresh),
which bounds what caching alone can give.

    python bench/transgnn_scaling.py --proteins [--epochs 4] [--old-rev 8468109^]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(model_name: str, num_nodes: int, device: str, epochs: int, samples: int, hidden: int,
            max_hops: int) -> dict[str, float]:
    import resource

    import torch
    from pk_graph.data.synthetic import csbm
    from pk_graph.models import GNNClassifier
    from pk_transgnn.models import TransGNN

    from pk.core.contracts import DatasetInfo

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = csbm(num_nodes, 3, 32, 10.0, 0.8, 1.0, 20, 100, g)
    data.mask = data.train_mask
    info = DatasetInfo(task="node-classification", num_features=32, num_classes=3)
    torch.manual_seed(0)
    if model_name == "gcn":
        model = GNNClassifier("gcn", info.num_features, info.num_classes, info.task, hidden=hidden, layers=2)
    else:
        model = TransGNN(info.num_features, info.num_classes, info.task, hidden=hidden, heads=4, layers=2,
                         samples=samples, max_hops=max_hops, update="message-passing")
    model = model.to(device)
    data = data.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if model_name == "transgnn":
        model.train()
        model.prepare(data.x, data.edge_index, None)  # one-time: structure, initial sampling, hops
    sync()
    precompute = time.perf_counter() - t0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def epoch(refresh: bool) -> float:
        sync()
        t = time.perf_counter()
        model.train()
        if refresh and hasattr(model, "begin_epoch"):
            model.begin_epoch(0)  # (0 + 1) % refresh_every == 0: this epoch proposes new samples
        opt.zero_grad(set_to_none=True)
        model.loss(data).backward()
        opt.step()
        if refresh and hasattr(model, "end_epoch"):
            model.end_epoch(0)
        sync()
        return time.perf_counter() - t

    plain = sorted(epoch(False) for _ in range(epochs + 1))[: epochs]  # drop the slowest (warm-up)
    refreshed = sorted(epoch(True) for _ in range(epochs)) if model_name == "transgnn" else [0.0]
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"model": model_name, "nodes": num_nodes, "edges": int(data.edge_index.shape[1]),
            "epoch_s": plain[len(plain) // 2],
            "refresh_epoch_s": refreshed[len(refreshed) // 2], "precompute_s": precompute, "peak_mib": peak}


def proteins_epochs(epochs: int, update: str) -> dict[str, object]:
    """Seconds per epoch, wall and CPU (train on fold 0's training graphs + validation pass), for the
    importable pk_transgnn; ``update`` = the model's sample update ("" = the version's default)."""
    import pk_transgnn
    import torch
    from pk_graph.data import build_tu
    from pk_graph.plugin import TUConfig
    from pk_transgnn.models import TransGNN

    torch.set_num_threads(1)
    bundle = build_tu(TUConfig(dataset_name="PROTEINS_full", source="file"), seed=0)
    info = bundle.info
    torch.manual_seed(0)
    model = TransGNN(info.num_features, info.num_classes, info.task, dropout=0.1,
                     **({"update": update} if update else {}))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    times, cpu = [], []
    profiler = cProfile.Profile()
    for e in range(epochs + 1):  # the extra last epoch runs under cProfile (its time is not in the lists)
        if e == epochs:
            profiler.enable()
        t, c = time.perf_counter(), time.process_time()
        model.train()
        if hasattr(model, "begin_epoch"):
            model.begin_epoch(e)
        for batch in bundle.loader("train", 32, shuffle=True, generator=gen):
            opt.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            opt.step()
        if hasattr(model, "end_epoch"):
            model.end_epoch(e)
        model.eval()
        with torch.no_grad():
            for batch in bundle.loader("valid", 256):
                model.predict(batch)
        if e == epochs:
            profiler.disable()
            profiled = time.process_time() - c
        else:
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return {"module": str(Path(pk_transgnn.__file__).parent), "epoch_s": times, "cpu_s": cpu,
            "structure_share": structure_seconds(profiler, str(Path(pk_transgnn.__file__).parent)) / profiled}


#: pk_transgnn functions that hold the structure and sample work of a forward pass: old code
#: (``structure``: top-k, hops, PageRank every step; ``_update``: the per-pass refinement) and new
#: code (``prepare``: cache lookups, initial tables of unseen graphs; ``_updated``: the refresh)
STRUCTURE_FUNCTIONS = ("structure", "_update", "prepare", "_updated")


def structure_seconds(profiler: cProfile.Profile, package: str) -> float:
    """Cumulative seconds of :data:`STRUCTURE_FUNCTIONS` defined under ``package`` (outermost calls)."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, callers) in stats.items():
        if name in STRUCTURE_FUNCTIONS and filename.startswith(package):
            nested = any(c[2] in STRUCTURE_FUNCTIONS and c[0].startswith(package) for c in callers)
            total += 0.0 if nested else cumulative
    return total


def run_proteins(epochs: int, old_rev: str) -> None:
    """Old code, new code, and new code without sample updates, each in a fresh subprocess."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="transgnn-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", old_rev, "plugins/pk-transgnn/src/pk_transgnn"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        old_src = str(Path(tmp) / "plugins/pk-transgnn/src")
        for label, pythonpath, update in (("old", old_src, ""), ("new", "", ""), ("new, update=none", "", "none")):
            env = dict(os.environ, OMP_NUM_THREADS="1")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
            cmd = [sys.executable, __file__, "--proteins-one", str(epochs), "--update", update]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{label} failed:\n{proc.stderr[-2000:]}")
            results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[label]
            print(f"{label}: {r['module']}\n  wall s/epoch: {', '.join(f'{t:.2f}' for t in r['epoch_s'])}"
                  f"\n  CPU s/epoch:  {', '.join(f'{t:.2f}' for t in r['cpu_s'])}", flush=True)

    def later(xs: list[float]) -> float:
        return statistics.mean(xs[1:]) if len(xs) > 1 else xs[0]

    old_cpu = later(results["old"]["cpu_s"])
    print("\n| code | epoch 1 CPU s (new: fills the cache) | later epochs: CPU s | wall s "
          "| speed-up (CPU, later epochs) | structure + sample work (share of an epoch) |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        name = f"old ({old_rev})" if label == "old" else label
        print(f"| {name} | {r['cpu_s'][0]:.2f} | {later(r['cpu_s']):.2f} | {later(r['epoch_s']):.2f} "
              f"| {old_cpu / later(r['cpu_s']):.1f}x | {r['structure_share']:.0%} |")
    rest = old_cpu * (1 - results["old"]["structure_share"])
    print(f"\nThe old code spends {results['old']['structure_share']:.0%} of an epoch on structure and samples "
          f"(one extra epoch under cProfile): with all of it free, the old model alone would take {rest:.2f} "
          f"CPU s, a {old_cpu / rest:.1f}x speed-up; anything beyond that needs cheaper model arithmetic.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--models", nargs="+", default=["gcn", "transgnn"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--max-hops", type=int, default=5, help="default: the model's default (5)")
    ap.add_argument("--proteins", action="store_true", help="PROTEINS_full s/epoch, old code vs new code")
    ap.add_argument("--old-rev", default="8468109^",
                    help="git revision of the old pk_transgnn (default: before the structure cache)")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--proteins-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--update", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.proteins_one:
        print(json.dumps(proteins_epochs(args.proteins_one, args.update)))
        return
    if args.proteins:
        run_proteins(args.epochs, args.old_rev)
        return
    if args.one:
        out = measure(args.one[0], int(args.one[1]), args.device, args.epochs, args.samples, args.hidden, args.max_hops)
        print(json.dumps(out))
        return
    rows = []
    for n in args.sizes:
        for m in args.models:
            cmd = [sys.executable, __file__, "--one", m, str(n), "--device", args.device, "--epochs", str(args.epochs),
                   "--samples", str(args.samples), "--hidden", str(args.hidden), "--max-hops", str(args.max_hops)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
                print(f"{m} N={n} failed: {why}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{m:9s} N={n:>7d}  epoch {r['epoch_s']:.4f}s  with refresh {r['refresh_epoch_s']:.4f}s  "
                  f"precompute {r['precompute_s']:.2f}s  peak +{r['peak_mib']:.0f} MiB", flush=True)
    print(f"\nmax_hops = {args.max_hops}, k = {args.samples}, hidden = {args.hidden}")
    print("| model | N | edges | s/epoch | ratio to previous N | s/epoch with sample refresh | one-time precompute s "
          f"| peak MiB ({args.device}) |")
    print("|---|---|---|---|---|---|---|---|")
    prev: dict[str, float] = {}
    for r in rows:
        ratio = f"{r['epoch_s'] / prev[r['model']]:.1f}" if r["model"] in prev else "-"
        prev[r["model"]] = r["epoch_s"]
        refresh = f"{r['refresh_epoch_s']:.4f}" if r["model"] == "transgnn" else "-"
        print(f"| {r['model']} | {r['nodes']} | {r['edges']} | {r['epoch_s']:.4f} | {ratio} | {refresh} "
              f"| {r['precompute_s']:.2f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
