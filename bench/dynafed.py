"""Dynafed measurements on MNIST t10k (pk-dynafed).

``server-time``: seconds of server work (aggregation) per round for FedAvg and Dynafed under
the same in-process simulator, on the configuration of ``pk-dynafed:mnist`` (20 clients, 8 per
round, Dynafed split alpha 0.1, MLP 784-200-10, Adam clients; Dynafed L = 8, ipc 5, 10
unrolled steps, 200 synthesis iterations, 20 fine-tuning epochs). Dynafed's rounds are split
into plain averaging (rounds < L), the synthesis round and fine-tuning rounds (> L).

``plot BATCH_DIR``: accuracy-vs-round curves (mean ± std over seeds) of a finished
``pk batch pk-dynafed:mnist`` (or ``:quick``) run, one panel per alpha, the synthesis round
marked; prints final accuracy and the mean of the last 5 rounds (mean ± std over seeds).

    PK_LOAD_PLUGINS=pk-dynafed,pk-fl .venv/bin/python bench/dynafed.py server-time --rounds 12
    PK_LOAD_PLUGINS=pk-dynafed,pk-fl .venv/bin/python bench/dynafed.py plot runs/batch-dynafed-mnist-* --out curves.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SYNTH = {"min_trajectory_length": 8, "ipc": 5, "syn_steps": 10, "iterations": 200}


class Timed:
    """Delegates to an aggregator and records the wall-clock seconds of every ``aggregate`` call."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind, self.seconds = inner, inner.kind, []

    def aggregate(self, global_state: Any, updates: Any, state: Any = None) -> Any:
        t0 = time.perf_counter()
        out = self.inner.aggregate(global_state, updates, state)
        self.seconds.append(time.perf_counter() - t0)
        return out


def server_time(rounds: int) -> dict[str, Any]:
    import torch
    from fl_vs_flower import BenchRun
    from pk_dynafed.aggregators import DEFAULTS, Dynafed
    from pk_fl.data.images import build_mnist
    from pk_fl.plugin import FedSimConfig, MnistConfig
    from pk_fl.trainers.simulator import FedSimTrainer

    from pk.core.builtins.components import MLP, FedAvg

    torch.set_num_threads(1)
    data = build_mnist(MnistConfig(source="file"), root=".", seed=0)
    cfg = FedSimConfig(rounds=rounds, num_clients=20, participation=0.4, optimizer="adam", lr=0.001,
                       persistent_client_optimizer=True, weighting="uniform", partition="dynafed-dirichlet", alpha=0.1,
                       checkpoint_every=0, plot=False)
    out: dict[str, Any] = {}
    for name, make in {"fedavg": lambda ctx: FedAvg(None),
                       "dynafed": lambda ctx: Dynafed(SimpleNamespace(**{**DEFAULTS, **SYNTH}), ctx)}.items():
        holder: dict[str, Timed] = {}

        def factory(ctx: Any, make: Any = make, holder: dict[str, Timed] = holder) -> Timed:
            holder["agg"] = Timed(make(ctx))
            return holder["agg"]

        torch.manual_seed(0)
        trainer = FedSimTrainer(cfg)
        trainer.fit(MLP(784, 10, [200], 0.0, "relu"), data, BenchRun(factory))
        secs = holder["agg"].seconds
        out[name] = {"server_s_per_round_all": statistics.mean(secs), "round_s": trainer.timing["seconds_per_round"]}
        if name == "dynafed":
            L = SYNTH["min_trajectory_length"]
            out[name].update({"averaging_s_per_round": statistics.mean(secs[: L - 1]), "synthesis_round_s": secs[L - 1],
                              "finetune_s_per_round": statistics.mean(secs[L:]) if len(secs) > L else float("nan")})
    base = out["fedavg"]["server_s_per_round_all"]
    for key in ("server_s_per_round_all", "averaging_s_per_round", "synthesis_round_s", "finetune_s_per_round"):
        out["dynafed"][key.replace("_s", "") + "_vs_fedavg"] = out["dynafed"][key] / base
    return out


def curves(batch_dir: Path) -> dict[str, dict[int, list[float]]]:
    """{group: {seed: [accuracy per round 0..R]}} from each run's metrics.jsonl."""
    groups: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for line in (batch_dir / "batch.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["status"] != "completed":
            continue
        rows = [json.loads(x) for x in (Path(rec["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        groups[rec["group"]][rec["seed"]] = [r["accuracy"] for r in sorted(rows, key=lambda r: r["step"])
                                             if r["split"] == "server"]
    return groups


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f} (n={len(values)})"


def plot(batch_dir: Path, out: Path, synthesis_round: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = curves(batch_dir)
    print("| run | final accuracy | mean of last 5 rounds | std over seeds, rounds after synthesis (mean) |")
    print("|---|---|---|---|")
    panels = sorted({g.split("[", 1)[1].rstrip("]") if "[" in g else "" for g in groups})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for group in sorted(g for g in groups if (g.split("[", 1)[1].rstrip("]") if "[" in g else "") == panel):
            acc = np.array([groups[group][s] for s in sorted(groups[group])])
            mean, sd = acc.mean(0), acc.std(0)
            rounds = np.arange(acc.shape[1])
            ax.plot(rounds, mean, label=group.split("[")[0])
            ax.fill_between(rounds, mean - sd, mean + sd, alpha=0.2)
            after = acc[:, synthesis_round:].std(0, ddof=1).mean() if acc.shape[0] > 1 else 0.0
            print(f"| {group} | {fmt(acc[:, -1].tolist())} | {fmt(acc[:, -5:].mean(1).tolist())} | {after:.4f} |")
        ax.axvline(synthesis_round, color="grey", linestyle="--", linewidth=1)
        ax.set_title(panel or batch_dir.name)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("server-time")
    st.add_argument("--rounds", type=int, default=12)
    pl = sub.add_parser("plot")
    pl.add_argument("batch_dir", type=Path)
    pl.add_argument("--out", type=Path, default=None)
    pl.add_argument("--synthesis-round", type=int, default=SYNTH["min_trajectory_length"])
    args = ap.parse_args()
    if args.cmd == "server-time":
        print(json.dumps(server_time(args.rounds), indent=2))
    else:
        plot(args.batch_dir, args.out or args.batch_dir / "accuracy_vs_round.png", args.synthesis_round)


if __name__ == "__main__":
    main()
