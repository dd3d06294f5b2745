"""Training-step overhead of IHN + RR relative to the plain backbone.

``python -m pk_remi.trainers.overhead [--dataset remi-ml-100k] [--model comirec-sa] [--steps 60] [--repeats 5]``

Both variants train from the same initial weights on the same sampled batches and negatives;
their steps are interleaved (A, B, A, B, ...) so that load on a shared machine hits both
alike. Prints ms per step (mean ± std over ``repeats`` blocks of ``steps`` steps) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="remi-ml-100k")
    parser.add_argument("--model", default="comirec-sa", choices=["comirec-sa", "comirec-dr", "mind"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--rr-lambda", type=float, default=100.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from pk_remi import data, models
    from pk_remi.plugin import MultiInterestConfig, MultiInterestSyntheticConfig, UserSplitConfig

    if args.dataset == "remi-synthetic":
        bundle = data.build_synthetic(MultiInterestSyntheticConfig())
    else:
        builder = {"remi-ml-100k": data.build_ml100k, "remi-amazon-beauty": data.build_amazon_beauty,
                   "remi-amazon-sports": data.build_amazon_sports}[args.dataset]
        bundle = builder(UserSplitConfig(source="file"))
    build = {"comirec-sa": models.build_comirec_sa, "comirec-dr": models.build_comirec_dr,
             "mind": models.build_mind}[args.model]
    variants = {}
    for name, beta, lam in (("backbone", 0.0, 0.0), ("ihn+rr", args.beta, args.rr_lambda)):
        torch.manual_seed(0)
        model = build(MultiInterestConfig(ihn_beta=beta, rr_lambda=lam), bundle.info)
        variants[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        block = {name: 0.0 for name in variants}
        for _ in range(args.steps):
            batch = bundle.sample_train_batch(128, gen)
            batch["negatives"] = torch.randint(1, int(bundle.info.num_items) + 1, (1280,), generator=gen)
            for name, (model, opt) in variants.items():
                started = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                model.loss(batch).backward()
                opt.step()
                block[name] += time.perf_counter() - started
        for name in variants:
            times[name].append(1000 * block[name] / args.steps)
    rows = {name: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for name, v in times.items()}
    ratios = [b / a for a, b in zip(times["backbone"], times["ihn+rr"], strict=True)]
    print(f"{args.model} on {args.dataset}: ms per training step (batch 128, 1280 negatives, 1 thread), "
          f"{args.repeats} blocks of {args.steps} interleaved steps")
    for name, (mean, std) in rows.items():
        print(f"  {name:9s} {mean:7.2f} ± {std:5.2f} ms")
    print(f"  overhead  {100 * (statistics.mean(ratios) - 1):+.1f}% ± {100 * statistics.stdev(ratios):.1f}% "
          "(per-block ratio)")


if __name__ == "__main__":
    main()
