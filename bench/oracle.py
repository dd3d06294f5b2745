"""Summarise a pk-oracle ranking batch: FMR vs PGD table (mean ± std over seeds), the two
rankings and where they disagree, and the FMR transfer matrix.

Usage: python bench/oracle.py BATCH_DIR [--transfer] [--markdown]
(BATCH_DIR from `pk batch pk-oracle:digits --out BATCH_DIR`.)

Transfer matrix: cell (A, B) = accuracy of model B on the oracle-valid images generated
against model A (same seed), averaged over seeds; the diagonal is each model's PA.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    ("test.accuracy", "clean acc"),
    ("eval.sa", "SA"),
    ("eval.pa", "PA"),
    ("eval.fmr", "FMR"),
    ("eval.oracle_valid", "oracle-valid"),
    ("eval.mean_steps", "steps"),
    ("eval.mean_l2", "L2(x*,x)"),
    ("eval.pgd_accuracy", "PGD acc"),
    ("eval.pgd_oracle_rejected", "PGD rejected by oracle"),
    ("eval.pgd_accuracy_accepted", "PGD acc (accepted)"),
]


def load_runs(batch: Path) -> list[dict]:
    rows = [json.loads(line) for line in (batch / "batch.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("status") == "completed"]


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(runs: list[dict]) -> tuple[list[str], dict[str, dict[str, list[float]]]]:
    by_name: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: list[str] = []
    for r in runs:
        if r["name"] not in order:
            order.append(r["name"])
        for key, _ in COLUMNS:
            if key in r["metrics"]:
                by_name[r["name"]][key].append(r["metrics"][key])
    return order, by_name


def ranking(order: list[str], by_name: dict, key: str) -> list[str]:
    return sorted(order, key=lambda n: -statistics.mean(by_name[n][key]) if by_name[n][key] else 0.0)


def load_generated(artifacts: Path) -> dict:
    """x*, y, valid of one FMR run: ``fmr_generated.npz`` (read without pickle), or the older
    ``fmr_generated.pt`` (torch ``weights_only`` loader)."""
    import numpy as np
    import torch

    if (artifacts / "fmr_generated.npz").is_file():
        with np.load(artifacts / "fmr_generated.npz", allow_pickle=False) as npz:
            return {k: torch.from_numpy(npz[k]) for k in ("x_star", "y", "valid")}
    from pk.core.io import load_tensors

    return load_tensors(artifacts / "fmr_generated.pt")


def transfer_matrix(runs: list[dict]) -> tuple[list[str], list[list[float]]]:
    import torch

    from pk.core.config import load_toml, resolve
    from pk.core.io import load_tensors
    from pk.core.plugins import get_registry
    from pk.core.runner import Components

    torch.set_num_threads(1)
    by_seed: dict[int, dict[str, dict]] = defaultdict(dict)
    for r in runs:
        by_seed[r["seed"]][r["name"]] = r
    names = sorted({r["name"] for r in runs}, key=[r["name"] for r in runs].index)
    sums = [[0.0] * len(names) for _ in names]
    counts = [[0] * len(names) for _ in names]
    for _seed, group in by_seed.items():
        models, sets = {}, {}
        for name, r in group.items():
            run_dir = Path(r["run_dir"])
            resolved = resolve(load_toml(run_dir / "config.toml"), get_registry())
            comps = Components(resolved)
            data = comps.dataset()
            model = comps.model(data.info)
            model.load_state_dict(load_tensors(run_dir / "checkpoints" / "model.pt")["model"])
            models[name] = (model.eval(), list(data.loader("test", 1))[0]["x"].shape[1:])
            sets[name] = load_generated(run_dir / "artifacts")
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if a not in sets or b not in models:
                    continue
                gen = sets[a]
                valid = gen["valid"]
                model, shape = models[b]
                with torch.no_grad():
                    x = gen["x_star"][valid].reshape(-1, *shape)
                    acc = float((model.predict({"x": x}).argmax(-1) == gen["y"][valid]).float().mean())
                sums[i][j] += acc
                counts[i][j] += 1
    return names, [[s / c if c else float("nan") for s, c in zip(rs, cs)] for rs, cs in zip(sums, counts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch", type=Path)
    ap.add_argument("--transfer", action="store_true", help="also compute the transfer matrix (loads every model)")
    args = ap.parse_args()
    runs = load_runs(args.batch)
    order, by_name = table(runs)
    seeds = sorted({r["seed"] for r in runs})
    print(f"{args.batch.name}: {len(runs)} completed runs, seeds {seeds} (mean ± std over seeds)\n")
    print("| target | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in order:
        print(f"| {name} | " + " | ".join(fmt(by_name[name][key]) for key, _ in COLUMNS) + " |")
    by_fmr, by_pgd, by_acc = (ranking(order, by_name, k) for k in ("eval.fmr", "eval.pgd_accuracy", "test.accuracy"))
    print("\nranking by FMR:      " + " > ".join(by_fmr))
    print("ranking by PGD acc:  " + " > ".join(by_pgd))
    print("ranking by clean acc: " + " > ".join(by_acc))
    flips = [(a, b) for i, a in enumerate(by_fmr) for b in by_fmr[i + 1:] if by_pgd.index(b) < by_pgd.index(a)]
    print("pairs the two rankings order differently: " + (", ".join(f"{a} vs {b}" for a, b in flips) or "none"))
    if args.transfer:
        names, mat = transfer_matrix(runs)
        print("\ntransfer: accuracy of the column model on images generated against the row model (oracle-valid, mean over seeds)\n")
        print("| generated against ↓ / evaluated on → | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for a, row in zip(names, mat):
            print(f"| {a} | " + " | ".join(f"**{v:.3f}**" if a == b else f"{v:.3f}" for b, v in zip(names, row)) + " |")


if __name__ == "__main__":
    main()
