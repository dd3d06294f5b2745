"""TransGNN vs GCN: seconds and peak memory per training epoch on synthetic graphs of growing size.

The TransGNN claim: beyond the one-time initial sampling (O(N^2 d), chunked) and positional
encodings, the extra cost per epoch is linear in N (O(N k d) attention, O(|E| k d) message-passing
sample update). So at fixed average degree and sample size, time(10N) / time(N) should stay near 10.

Each (model, N) runs in a fresh subprocess (clean peak RSS; CUDA: max_memory_allocated), one
thread, contextual SBM graphs (pk_graph.data.synthetic.csbm) with average degree 10, 32 features.

    python bench/transgnn_scaling.py                      # 1k, 10k, 100k nodes
    python bench/transgnn_scaling.py --sizes 1000 10000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(model_name: str, num_nodes: int, device: str, epochs: int, samples: int, hidden: int, max_hops: int) -> dict[str, float]:
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
        model._structure_cached(data)  # one-time: initial sampling + positional encodings
    sync()
    precompute = time.perf_counter() - t0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(epochs + 1):  # first epoch is a warm-up
        sync()
        t = time.perf_counter()
        model.train()
        opt.zero_grad(set_to_none=True)
        model.loss(data).backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    peak = (torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"model": model_name, "nodes": num_nodes, "edges": int(data.edge_index.shape[1]), "epoch_s": times[len(times) // 2],
            "precompute_s": precompute, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--models", nargs="+", default=["gcn", "transgnn"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--max-hops", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
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
                print(f"{m} N={n} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{m:9s} N={n:>7d}  epoch {r['epoch_s']:.4f}s  precompute {r['precompute_s']:.2f}s  peak +{r['peak_mib']:.0f} MiB", flush=True)
    print(f"\n| model | N | edges | s/epoch | ratio to previous N | one-time precompute s | peak MiB ({args.device}) |")
    print("|---|---|---|---|---|---|---|")
    prev: dict[str, float] = {}
    for r in rows:
        ratio = f"{r['epoch_s'] / prev[r['model']]:.1f}" if r["model"] in prev else "-"
        prev[r["model"]] = r["epoch_s"]
        print(f"| {r['model']} | {r['nodes']} | {r['edges']} | {r['epoch_s']:.4f} | {ratio} | {r['precompute_s']:.2f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
