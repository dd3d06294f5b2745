"""Training-time overhead of the AC-TSR calibrators against plain SASRec (pk-actsr, issue 4).

Measures seconds per training step (and the implied seconds per epoch) on one CPU thread
for: SASRec, AC-SASRec spatial-only (separable and direct/materialised form),
adversarial-only, and full AC-TSR, all on pk-seqrec's encoder with RecBole sizes (H=64,
2 layers, 2 heads). Variants run round-robin, step by step, so machine load hits them alike;
the median over steps is reported.

    PK_LOAD_PLUGINS=pk-actsr,pk-seqrec .venv/bin/python bench/actsr.py [--dataset ml-100k] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace
from typing import Any

import torch


def _dataset(name: str) -> Any:
    from pk_seqrec.data import datasets

    if name == "synthetic-seq":
        from pk_seqrec.plugin import SyntheticSeqConfig

        return datasets.build_synthetic_seq(SyntheticSeqConfig(), root=None, seed=0)
    builder = {"ml-100k": datasets.build_ml100k, "amazon-beauty": datasets.build_amazon_beauty}[name]
    return builder(SimpleNamespace(source="file", path="", kcore=0, max_len=50, train_windows="all"), root=None, seed=0)


def _variants(info: Any) -> dict[str, Any]:
    from pk_actsr.calibrators import ACTSRCalibrator, AdversarialCalibrator, SpatialCalibrator
    from pk_actsr.models import ACSASRec
    from pk_actsr.plugin import ACTSRCalibratorConfig, AdversarialCalibratorConfig, SpatialCalibratorConfig
    from pk_seqrec.models.sasrec import SASRec

    n, L = info.num_items, info.max_len
    return {
        "sasrec": lambda: SASRec(n, L),
        "ac-spatial (separable)": lambda: ACSASRec(n, L, calibrator=SpatialCalibrator(SpatialCalibratorConfig())),
        "ac-spatial (direct)": lambda: ACSASRec(
            n, L, calibrator=SpatialCalibrator(SpatialCalibratorConfig(separable=False))),
        "ac-adversarial": lambda: ACSASRec(n, L, calibrator=AdversarialCalibrator(AdversarialCalibratorConfig())),
        "ac-tsr (both)": lambda: ACSASRec(n, L, calibrator=ACTSRCalibrator(ACTSRCalibratorConfig())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "amazon-beauty", "synthetic-seq"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from pk.core.torch_helpers import make_optimizer

    data = _dataset(args.dataset)
    batches = list(data.loader("train", args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)))
    steps_per_epoch = len(batches)
    trainer_cfg = SimpleNamespace(optimizer="adam", lr=1e-3, weight_decay=0.0, grad_clip=0.0)
    models, optimizers, times = {}, {}, {}
    for name, make in _variants(data.info).items():
        torch.manual_seed(0)
        models[name] = make().train()
        custom = hasattr(models[name], "train_step")
        optimizers[name] = (models[name].configure_optimizers(trainer_cfg) if custom
                            else [make_optimizer("adam", models[name].parameters(), 1e-3, 0.0)])
        times[name] = []
    for step in range(args.steps + 1):  # step 0 is a warm-up
        batch = batches[step % steps_per_epoch]
        for name, model in models.items():
            start = time.perf_counter()
            if hasattr(model, "train_step"):
                model.train_step(batch, optimizers[name])
            else:
                opt = optimizers[name][0]
                opt.zero_grad(set_to_none=True)
                model.loss(batch).backward()
                opt.step()
            if step:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["sasrec"])
    print(f"dataset {args.dataset}: {len(data.tensors['train']['seq'])} training windows, "
          f"{steps_per_epoch} steps/epoch "
          f"(batch {args.batch_size}), 1 thread, median of {args.steps} steps")
    print(f"{'variant':26s} {'s/step':>8s} {'s/epoch':>8s} {'x SASRec':>9s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:26s} {med:8.3f} {med * steps_per_epoch:8.1f} {med / base:9.2f}")


if __name__ == "__main__":
    main()
