"""pk-seqrec vs RecBole 1.2.1: SASRec on ml-100k, same model config, side by side.

Config (both): H=64, 2 layers, 2 heads, inner 256, dropout 0.5, L=50, CE over all items,
batch 256, Adam lr 1e-3, leave-one-out by time, full ranking, history NOT excluded
(RecBole's convention), no k-core. Measured per epoch: training throughput (training
time only, no evaluation) and valid NDCG@10.

pk's batch holds as many rows as give ~256 targets (``--batch-prefixes``), so both take
the same number of optimiser steps per epoch on the same amount of supervision. pk runs once
per ``--pk-windows`` mode: ``prefixes`` trains RecBole's own examples (one row per target, the
same 97k rows per epoch, 256 random prefixes per step); ``all`` trains whole windows (one
causal pass scores every position, so a step of ~256 targets holds only ~6 users).

pk also runs once per ``--attention`` path: ``fused`` (``F.scaled_dot_product_attention``,
the default where no calibrator is attached) and ``explicit`` (the calibrator seam's
``masked_softmax`` path); the table gives the fused/explicit ratio per mode. ``all`` uses the
dataset's ``window_stride`` (``--window-stride``, default 1: prefix-equivalent contexts).

``--max-steps N`` caps every training epoch (pk and RecBole) at N optimiser steps, so that a
throughput figure costs minutes, not RecBole's ~370 s epoch; valid NDCG@10 is then that of a
partial epoch (not comparable to full-epoch figures).

On a shared machine wall time depends on other load, so CPU seconds of the training loop
(``time.process_time``) are reported too.

Throughput is reported two ways, because the two libraries batch different things:
- ``prefixes/s``: next-item targets trained per second. RecBole trains one prefix per
  example (97,171 per epoch on ml-100k); pk trains every position of a window in one causal
  pass, so one pk row carries up to L targets. This is the like-for-like figure.
- ``rows/s``: examples (RecBole prefixes, pk windows) per second.

RecBole runs in its own virtual environment (``--recbole-python``), e.g.::

    python3 -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/recbole-venv/bin/pip install recbole==1.2.1 "numpy<2" "pandas<3" "setuptools>=77.0.3,<81"

Run::

    /work/main/.venv/bin/python bench/seqrec_vs_recbole.py --epochs 3 --recbole-python /tmp/recbole-venv/bin/python
    /work/main/.venv/bin/python bench/seqrec_vs_recbole.py --epochs 1 --max-steps 100 --threads 1 \
        --recbole-python /tmp/recbole-venv/bin/python

``--time-to-ndcg`` measures instead the training time (evaluation excluded) until pk's valid
NDCG@10 first reaches RecBole's after ``--epochs`` epochs, per ``--pk-windows`` mode over
``--seeds`` (validated every ``--eval-every`` steps), and prints RecBole's time / pk's::

    /work/main/.venv/bin/python bench/seqrec_vs_recbole.py --time-to-ndcg --epochs 2 --threads 1 \
        --length-buckets 16 --recbole-python /tmp/recbole-venv/bin/python

Last, how near the machine's limit pk runs (``matmul_profile``, on 20 untimed batches): each
pk row's matrix products per trained target are counted (``torch.utils.flop_counter``) and
replayed alone at their recorded shapes on one thread. The replay is the floor of this
arithmetic on this machine (no elementwise ops, no autograd, no optimiser); the table prints the
share of it pk reaches, and whether 10x RecBole's measured throughput lies below it at all.

Without ``--recbole-python`` only pk is measured (and the note's published RecBole
reference figures are printed beside it, marked as such).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

RECBOLE_SCRIPT = r"""
import json, sys, time
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
epochs, data_path, threads, max_steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import torch
torch.set_num_threads(threads)
cfg = {
    "model": "SASRec", "dataset": "ml-100k", "data_path": data_path, "epochs": epochs, "train_batch_size": 256,
    "eval_batch_size": 1024, "learning_rate": 1e-3, "loss_type": "CE", "train_neg_sample_args": None,
    "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    "initializer_range": 0.02, "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "seed": 2020, "reproducibility": True, "show_progress": False, "device": "cpu", "use_gpu": False,
    "checkpoint_dir": data_path + "/saved",
}
config = Config(model="SASRec", dataset="ml-100k", config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, _test = data_preparation(config, dataset)
model = SASRec(config, train_data.dataset).to("cpu")
trainer = Trainer(config, model)
rows = len(train_data.dataset)
out = []
for epoch in range(epochs):
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    if max_steps <= 0:
        trainer._train_epoch(train_data, epoch, show_progress=False)
    else:  # RecBole's _train_epoch step (no grad clipping configured), stopped after max_steps
        rows = 0
        for step, interaction in enumerate(train_data):
            if step >= max_steps:
                break
            trainer.optimizer.zero_grad()
            loss = model.calculate_loss(interaction.to("cpu"))
            loss.backward()
            trainer.optimizer.step()
            rows += len(interaction)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    _score, result = trainer._valid_epoch(valid_data, show_progress=False)
    out.append({"epoch": epoch, "seconds": seconds, "cpu_seconds": cpu, "rows": rows, "prefixes": rows,
                "ndcg@10": float(result["ndcg@10"])})
print("RESULT " + json.dumps(out))
"""

#: Published reference (paper note, RecBole 1.2.1, same config, 2-core CPU, seed 2020).
RECBOLE_REFERENCE = [
    {"epoch": 0, "seconds": 90.0, "prefixes": 97171, "rows": 97171, "ndcg@10": 0.0520},
    {"epoch": 1, "seconds": 90.0, "prefixes": 97171, "rows": 97171, "ndcg@10": 0.0535},
    {"epoch": 2, "seconds": 90.0, "prefixes": 97171, "rows": 97171, "ndcg@10": 0.0550},
]


def _pk_setup(seed: int, device: str, batch_prefixes: int, windows: str, fused: bool,
              window_stride: int) -> tuple[Any, Any, Any, Any, int]:
    """(data, model, optimiser, shuffle generator, rows per batch) for pk's SASRec on ml-100k; a
    batch holds as many rows as give ~``batch_prefixes`` targets, so an optimiser step sees as
    many next-item targets as a RecBole batch of 256 prefixes."""
    import torch
    from pk_seqrec.data.datasets import build_ml100k
    from pk_seqrec.models.sasrec import build_sasrec
    from pk_seqrec.plugin import ML100kConfig, SASRecConfig

    from pk.core.torch_helpers import make_optimizer

    stride = window_stride if windows == "all" else 1
    data = build_ml100k(ML100kConfig(source="file", kcore=0, max_len=50, train_windows=windows, window_stride=stride))
    torch.manual_seed(seed)
    model = build_sasrec(SASRecConfig(), data.info).to(device)
    model.encoder.fused = fused
    opt = make_optimizer("adam", model.parameters(), 1e-3, 0.0)
    train = data.tensors["train"]
    per_row = float((train["targets"] != 0).sum()) / train["targets"].shape[0]
    batch_rows = max(1, round(batch_prefixes / per_row))
    print(f"pk ({windows}, {'fused' if fused else 'explicit'}, seed {seed}): {train['targets'].shape[0]} rows, "
          f"{per_row:.1f} targets each -> {batch_rows} rows per batch", flush=True)
    return data, model, opt, torch.Generator().manual_seed(seed), batch_rows


def matmul_profile(model: Any, data: Any, batch_rows: int, seed: int, device: str, length_buckets: int,
                   batches: int = 20) -> dict[str, float]:
    """The step's matrix products alone, per trained target, over the first ``batches`` training
    batches of a fresh shuffle (untimed; explicit attention path, the same arithmetic as SDPA in
    ops the counters see): ``flops_per_target`` (forward + backward, ``torch.utils.flop_counter``)
    and ``matmul_s_per_target``, the time of replaying exactly those products (same shapes and
    strides, fresh operands on ``device``; one CPU thread) with nothing else: the floor any
    implementation of this arithmetic meets on this machine. The model gets gradients but no
    optimiser step."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    from pk.core.torch_helpers import to_device

    products = {torch.ops.aten.mm.default, torch.ops.aten.bmm.default, torch.ops.aten.addmm.default,
                torch.ops.aten.baddbmm.default}
    calls: list[tuple[Any, list[Any]]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func in products:
                calls.append((func, [(a.shape, a.stride()) if isinstance(a, torch.Tensor) else a for a in args]))
            return func(*args, **(kwargs or {}))

    fused, model.encoder.fused = model.encoder.fused, False
    gen = torch.Generator().manual_seed(seed)
    flops = targets = 0
    model.train()
    for step, batch in enumerate(data.loader("train", batch_rows, shuffle=True, generator=gen,
                                             length_buckets=length_buckets)):
        if step >= batches:
            break
        batch = to_device(batch, device)
        with FlopCounterMode(display=False) as counter, Record():
            model.loss(batch).backward()
        flops += counter.get_total_flops()
        targets += int((batch["targets"] != 0).sum())
    model.zero_grad(set_to_none=True)
    model.encoder.fused = fused

    def operand(shape: Any, stride: Any) -> torch.Tensor:
        size = 1 + sum((n - 1) * st for n, st in zip(shape, stride) if n > 0)
        return torch.randn(size, device=device).as_strided(shape, stride)

    replay = [(func, [operand(*a) if isinstance(a, tuple) else a for a in args]) for func, args in calls]

    def products_alone() -> None:
        for func, args in replay:
            func(*args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    products_alone()  # warm-up (and, on CUDA, drains the queue before timing)
    best = min(timeit.repeat(products_alone, repeat=3, number=1))
    torch.set_num_threads(before)
    return {"flops_per_target": flops / max(targets, 1), "matmul_s_per_target": best / max(targets, 1)}


def matmul_peak(threads: int, size: int = 1024, repeats: int = 5) -> float:
    """This machine's matmul rate, GFLOP/s, at ``threads`` threads: the best of ``repeats``
    float32 ``size``-cubed products (what the CPU's BLAS reaches on large, square shapes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(timeit.repeat(lambda: a @ b, repeat=repeats, number=1))
    torch.set_num_threads(before)
    return 2 * size ** 3 / best / 1e9


def run_pk(epochs: int, seed: int, device: str, batch_prefixes: int = 256, windows: str = "prefixes",
           length_buckets: int = 0, fused: bool = True, window_stride: int = 1,
           max_steps: int = 0) -> list[dict[str, float]]:
    """pk's SASRec, per epoch: training seconds (wall, CPU), rows, targets and valid NDCG@10.
    ``fused``: SDPA attention (else the explicit seam); ``max_steps`` > 0 caps each epoch."""
    import torch
    from pk_seqrec.evaluators import evaluate_ranking

    from pk.core.torch_helpers import to_device

    data, model, opt, gen, batch_rows = _pk_setup(seed, device, batch_prefixes, windows, fused, window_stride)
    tag = f"{windows}, {'fused' if fused else 'explicit'}"
    out = []
    for epoch in range(epochs):
        model.train()
        rows = prefixes = 0
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for step, batch in enumerate(data.loader("train", batch_rows, shuffle=True, generator=gen,
                                                 length_buckets=length_buckets)):
            if max_steps and step >= max_steps:
                break
            batch = to_device(batch, device)
            opt.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            opt.step()
            rows += int(batch["seq"].shape[0])
            prefixes += int((batch["targets"] != 0).sum())
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        valid = evaluate_ranking(model, data, "valid", ks=[10], device=device, batch_size=1024)
        out.append({"epoch": epoch, "seconds": seconds, "cpu_seconds": cpu, "rows": rows, "prefixes": prefixes,
                    "ndcg@10": valid["ndcg@10"]})
        if epoch == epochs - 1:
            out[-1].update(matmul_profile(model, data, batch_rows, seed, device, length_buckets))
        print(f"pk ({tag}) epoch {epoch}: {seconds:.1f}s wall, {cpu:.1f}s CPU, {prefixes / seconds:,.0f} prefixes/s, "
              f"{prefixes / cpu:,.0f} prefixes/CPU s, valid NDCG@10 {valid['ndcg@10']:.4f}", flush=True)
    return out


def pk_time_to(target: float, seed: int, device: str, windows: str, *, batch_prefixes: int = 256,
               length_buckets: int = 0, window_stride: int = 1, max_epochs: int = 10,
               eval_every: int = 50) -> dict[str, float]:
    """Training time until pk's valid NDCG@10 first reaches ``target`` (wall and CPU seconds of the
    training steps only; evaluation excluded, as in RecBole's epoch times), checked every
    ``eval_every`` optimiser steps and at every epoch end. ``reached`` = 0 when ``max_epochs``
    ran out first (the times are then those of all epochs: a lower bound)."""
    import torch
    from pk_seqrec.evaluators import evaluate_ranking

    from pk.core.torch_helpers import to_device

    data, model, opt, gen, batch_rows = _pk_setup(seed, device, batch_prefixes, windows, True, window_stride)
    wall = cpu = 0.0
    steps, ndcg = 0, 0.0
    for _epoch in range(max_epochs):
        batches = list(data.loader("train", batch_rows, shuffle=True, generator=gen, length_buckets=length_buckets))
        for i, batch in enumerate(batches):
            model.train()
            t0, c0 = time.perf_counter(), time.process_time()
            batch = to_device(batch, device)
            opt.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall, cpu, steps = wall + time.perf_counter() - t0, cpu + time.process_time() - c0, steps + 1
            if steps % eval_every == 0 or i == len(batches) - 1:
                ndcg = evaluate_ranking(model, data, "valid", ks=[10], device=device, batch_size=1024)["ndcg@10"]
                if ndcg >= target:
                    return {"seconds": wall, "cpu_seconds": cpu, "steps": steps, "ndcg@10": ndcg, "reached": 1.0}
    return {"seconds": wall, "cpu_seconds": cpu, "steps": steps, "ndcg@10": ndcg, "reached": 0.0}


def run_recbole(python: str, epochs: int, threads: int, max_steps: int = 0) -> list[dict[str, float]]:
    from pk.core.paths import shared_data_dir

    shared = shared_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        if shared is not None:  # RecBole reads its bundled ml-100k anyway; give it the same files
            os.makedirs(f"{tmp}/ml-100k")
            for f in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
                os.symlink(shared / "ml-100k" / f, f"{tmp}/ml-100k/{f}")
        env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        cmd = [python, "-c", RECBOLE_SCRIPT, str(epochs), tmp, str(threads), str(max_steps)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise SystemExit("RecBole failed:\n" + "\n".join(tail))
    return json.loads(line[len("RESULT "):])


def summarise(name: str, rows: list[dict[str, float]]) -> dict[str, float | str]:
    seconds = sum(r["seconds"] for r in rows)
    cpu = sum(r.get("cpu_seconds", float("nan")) for r in rows)
    prefixes = sum(r["prefixes"] for r in rows)
    return {"name": name, "epochs": len(rows), "seconds_per_epoch": seconds / len(rows),
            "cpu_seconds_per_epoch": cpu / len(rows), "prefixes_per_cpu_s": prefixes / cpu,
            "prefixes_per_s": prefixes / seconds, "rows_per_s": sum(r["rows"] for r in rows) / seconds,
            "valid_ndcg@10": rows[-1]["ndcg@10"], "flops_per_target": rows[-1].get("flops_per_target", 0.0),
            "matmul_s_per_target": rows[-1].get("matmul_s_per_target", 0.0)}


def time_to_ndcg(args: argparse.Namespace) -> None:
    """RecBole's training time to its own valid NDCG@10 after ``--epochs`` epochs, against pk's
    time to the same NDCG@10 in each ``--pk-windows`` mode, over ``--seeds``; ratios RecBole / pk."""
    import statistics

    if args.recbole_python:
        recbole = run_recbole(args.recbole_python, args.epochs, args.threads)
        source = "measured in this run"
    else:
        recbole, source = RECBOLE_REFERENCE[: args.epochs], "published reference, not measured here"
    target = recbole[-1]["ndcg@10"]
    rb_wall = sum(r["seconds"] for r in recbole)
    rb_cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in recbole)
    print(f"\nRecBole 1.2.1 ({source}): valid NDCG@10 {target:.4f} after {args.epochs} epochs, "
          f"{rb_wall:.1f} s wall, {rb_cpu:.1f} s CPU of training")
    rows = []
    modes = [(w, stride) for w in args.pk_windows for stride in (args.window_stride if w == "all" else [1])]
    for windows, stride in modes:
        runs = [pk_time_to(target, seed, args.device, windows, batch_prefixes=args.batch_prefixes,
                           length_buckets=args.length_buckets, window_stride=stride,
                           max_epochs=args.max_epochs_to_target, eval_every=args.eval_every) for seed in args.seeds]
        windows = f"all, stride {stride}" if windows == "all" else windows
        for seed, r in zip(args.seeds, runs):
            print(f"pk {windows} seed {seed}: {'reached' if r['reached'] else 'NOT reached'} "
                  f"{r['ndcg@10']:.4f} after {r['steps']} steps, {r['seconds']:.1f} s wall, "
                  f"{r['cpu_seconds']:.1f} s CPU", flush=True)
        wall = [r["seconds"] for r in runs]
        cpu = [r["cpu_seconds"] for r in runs]
        rows.append({"mode": windows, "reached": sum(r["reached"] for r in runs), "n": len(runs),
                     "wall": statistics.mean(wall), "wall_sd": statistics.stdev(wall) if len(wall) > 1 else 0.0,
                     "cpu": statistics.mean(cpu), "cpu_sd": statistics.stdev(cpu) if len(cpu) > 1 else 0.0})
    print(f"\n| pk train_windows | seeds reaching {target:.4f} | training wall s (mean ± sd) | CPU s | "
          "RecBole / pk (wall) | RecBole / pk (CPU) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['reached']:.0f}/{r['n']} | {r['wall']:.1f} ± {r['wall_sd']:.1f} | "
              f"{r['cpu']:.1f} ± {r['cpu_sd']:.1f} | {rb_wall / r['wall']:.1f}× | {rb_cpu / r['cpu']:.1f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps({"recbole": recbole, "target": target, "pk": rows}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-prefixes", type=int, default=256, help="targets per pk optimiser step")
    ap.add_argument("--pk-windows", nargs="+", default=["prefixes", "all"], choices=["prefixes", "all"],
                    help="pk training rows: RecBole's prefixes, or whole windows")
    ap.add_argument("--window-stride", type=int, nargs="+", default=[1],
                    help="pk 'all': window_stride (1: prefix contexts); several: one pk run each")
    ap.add_argument("--attention", nargs="+", default=["fused", "explicit"], choices=["fused", "explicit"],
                    help="pk attention: SDPA (fused) and/or the explicit seam")
    ap.add_argument("--length-buckets", type=int, default=0, help="pk: sort runs of k batches by length (less padding)")
    ap.add_argument("--max-steps", type=int, default=0, help="cap each epoch at this many optimiser steps (0: full)")
    ap.add_argument("--recbole-python", default="", help="python of a venv with recbole==1.2.1")
    ap.add_argument("--json", default="", help="also write the figures here")
    ap.add_argument("--time-to-ndcg", action="store_true",
                    help="instead of throughput: time until pk reaches RecBole's valid NDCG@10 after --epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pk seeds for --time-to-ndcg")
    ap.add_argument("--max-epochs-to-target", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=50, help="--time-to-ndcg: validate every N pk steps")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.time_to_ndcg:
        time_to_ndcg(args)
        return
    results, pk = [], {}
    for w in args.pk_windows:
        for attention in args.attention:
            rows = run_pk(args.epochs, args.seed, args.device, args.batch_prefixes, w, args.length_buckets,
                          attention == "fused", args.window_stride[0], args.max_steps)
            pk[w, attention] = summarise(f"pk-seqrec (train_windows={w}, {attention})", rows)
            results.append(pk[w, attention])
    if args.recbole_python:
        measured = run_recbole(args.recbole_python, args.epochs, args.threads, args.max_steps)
        results.append(summarise("recbole-1.2.1 (measured)", measured))
    else:
        results.append(summarise("recbole-1.2.1 (published reference, not measured here)",
                                 RECBOLE_REFERENCE[: args.epochs]))
    steps = f", at most {args.max_steps} steps per epoch" if args.max_steps else ""
    print(f"\nSASRec on ml-100k, {args.epochs} epochs{steps}, {args.threads} threads, device {args.device}")
    print(f"{'':52s} {'s/epoch':>8s} {'CPU s/ep':>9s} {'prefixes/s':>11s} {'pref/CPU s':>11s} {'rows/s':>9s} "
          f"{'valid NDCG@10':>14s}")
    for r in results:
        print(f"{r['name']:52s} {r['seconds_per_epoch']:8.1f} {r['cpu_seconds_per_epoch']:9.1f} "
              f"{r['prefixes_per_s']:11,.0f} {r['prefixes_per_cpu_s']:11,.0f} {r['rows_per_s']:9,.0f} "
              f"{r['valid_ndcg@10']:14.4f}")
    for w in args.pk_windows:
        if (w, "fused") in pk and (w, "explicit") in pk:
            f, e = pk[w, "fused"], pk[w, "explicit"]
            print(f"pk train_windows={w}: fused / explicit = {f['prefixes_per_s'] / e['prefixes_per_s']:.2f}x "
                  f"(prefixes/s), {f['prefixes_per_cpu_s'] / e['prefixes_per_cpu_s']:.2f}x (prefixes per CPU s)")
    ref = results[-1]
    for r in results[:-1]:
        print(f"{r['name']} / RecBole: {r['prefixes_per_s'] / ref['prefixes_per_s']:.1f}x prefixes/s, "
              f"{r['prefixes_per_cpu_s'] / ref['prefixes_per_cpu_s']:.1f}x prefixes per CPU s; valid NDCG@10 "
              f"{r['valid_ndcg@10']:.4f} vs RecBole {ref['valid_ndcg@10']:.4f}")
    peak = matmul_peak(1)
    print(f"\nthe machine's limit: one-thread matmul peak {peak:.1f} GFLOP/s (1024-cubed float32 products)")
    for r in results[:-1]:
        if not r["flops_per_target"]:
            continue
        rate = r["prefixes_per_cpu_s"] * r["flops_per_target"] / 1e9
        floor = 1 / r["matmul_s_per_target"]  # targets per CPU s if the step were its products alone
        r.update(matmul_gflop_per_cpu_s=rate, matmul_peak_gflop_s=peak, matmul_only_prefixes_per_cpu_s=floor)
        print(f"{r['name']}: {r['flops_per_target'] / 1e6:.1f} MFLOP (matmul) per target; {rate:.1f} GFLOP per "
              f"CPU s = {rate / peak:.0%} of the peak. Its products alone, replayed at their shapes: "
              f"{floor:,.0f} prefixes per CPU s ({r['prefixes_per_cpu_s'] / floor:.0%} of that reached)")
        if not math.isnan(ref["prefixes_per_cpu_s"]):  # RecBole measured, not the published reference
            need = 10 * ref["prefixes_per_cpu_s"]
            print(f"  10x RecBole = {need:,.0f} prefixes per CPU s = {need / floor:.2f}x the products-alone floor "
                  f"({'reachable in principle' if need < floor else 'beyond this arithmetic on this machine'})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
