"""Training cost of ECL-SR and CL4SRec relative to SASRec on real data (pk-eclsr, issue 5).

Times forward + backward + Adam on the same training batches (pk-seqrec's shuffled loader,
length buckets as in the recipes) for each model, interleaving the models round by round so
that machine load hits them alike, and extrapolates seconds per epoch from the mean step.

    PK_LOAD_PLUGINS=pk-eclsr,pk-seqrec python bench/eclsr.py --dataset amazon-beauty --batches 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from pk_eclsr.models.cl4srec import build_cl4srec
from pk_eclsr.models.eclsr import build_eclsr
from pk_eclsr.plugin import CL4SRecConfig, ECLSRConfig
from pk_seqrec.data.datasets import build_amazon_beauty, build_amazon_sports, build_synthetic_seq
from pk_seqrec.models.sasrec import build_sasrec
from pk_seqrec.plugin import SASRecConfig, SeqLinesConfig, SyntheticSeqConfig

from pk.core.paths import shared_data_dir

BUILDERS = {"amazon-beauty": build_amazon_beauty, "amazon-sports": build_amazon_sports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-beauty", choices=[*BUILDERS, "synthetic-seq"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.dataset == "synthetic-seq":
        data = build_synthetic_seq(SyntheticSeqConfig(), seed=0)
    else:
        if shared_data_dir() is None:
            raise SystemExit("no shared data dir (set PK_SHARED_DATA)")
        data = BUILDERS[args.dataset](SeqLinesConfig(source="file", max_len=50), seed=0)
    loader = data.loader("train", args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0),
                         length_buckets=16)
    batches = [b for _, b in zip(range(args.batches), loader, strict=False)]
    steps_per_epoch = -(-data.size("train") // args.batch_size)
    models = {}
    for name, build, cfg in [("sasrec", build_sasrec, SASRecConfig()), ("cl4srec", build_cl4srec, CL4SRecConfig()),
                             ("eclsr", build_eclsr, ECLSRConfig())]:
        torch.manual_seed(0)
        model = build(cfg, data.info).train()
        models[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    times: dict[str, list[float]] = {name: [] for name in models}
    for batch in batches:
        for name, (model, opt) in models.items():
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            opt.step()
            times[name].append(time.perf_counter() - start)
    base = statistics.mean(times["sasrec"])
    print(f"{args.dataset}: {data.size('train')} training rows, "
          f"{steps_per_epoch} steps/epoch at batch {args.batch_size}, "
          f"{len(batches)} timed batches, {args.threads} thread(s)")
    print(f"{'model':10s} {'ms/step':>10s} {'s/epoch (extrap.)':>18s} {'x SASRec':>9s}")
    for name, ts in times.items():
        mean = statistics.mean(ts)
        print(f"{name:10s} {1000 * mean:10.1f} {mean * steps_per_epoch:18.1f} {mean / base:9.2f}")


if __name__ == "__main__":
    main()
