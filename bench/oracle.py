"""Summarise a pk-oracle ranking batch: FMR vs PGD table (mean ± std over seeds), the two
rankings and where they disagree, and the FMR transfer matrix.

Usage: python bench/oracle.py BATCH_DIR [--transfer] [--heldout]
(BATCH_DIR from `pk batch pk-oracle:digits --out BATCH_DIR` or `pk-oracle:mnist`.)

Both rankings (by FMR and by fixed-eps PGD accuracy) come with paired statistics for each
adjacent pair: the mean difference over seeds with its paired t-test p, and per seed a paired
bootstrap over the scored test images (the same images for every target of a seed: FMR = PA/SA
recomputed on each resample from ``fmr_generated.npz``; PGD accuracy from the per-image flags).

Transfer matrix: cell (A, B) = accuracy of model B on the oracle-valid images generated
against model A (same seed), averaged over seeds; the diagonal is each model's PA. It is
written to ``BATCH_DIR/transfer.json`` too.

``--heldout``: re-scores every run with the oracle zoo fitted on held-out test images
(``evaluator.oracle_data = "heldout"``: the test images after ``max_test``, never trained on,
never scored); artifacts go to ``RUN_DIR/heldout/``, the run's own files are not touched.
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


def _generated(run: dict) -> dict:
    import numpy as np

    path = Path(run.get("generated_npz") or Path(run["run_dir"]) / "artifacts" / "fmr_generated.npz")
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "x_star"}


def _fmr(gen: dict, idx: object) -> float:
    import numpy as np

    valid, fooled, clean = gen["valid"][idx], gen["fooled"][idx], gen["clean_correct"][idx]
    sa = float(clean.mean())
    pa = float((~fooled[valid]).mean()) if valid.any() else 0.0
    return pa / sa if sa > 0 else float(np.nan)


def bootstrap_pair(a: dict, b: dict, key: str, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Paired bootstrap over the test images of one seed: (b - a on all images, two-sided p;
    0 means below the 1/2000 resolution).
    ``key`` "fmr" recomputes PA/SA on each resample; "pgd" uses the per-image PGD flags."""
    import numpy as np

    if not a or not b or len(a["y"]) != len(b["y"]) or not np.array_equal(a["y"], b["y"]):
        return None
    if key == "pgd" and (len(a.get("pgd_correct", [])) != len(a["y"]) or len(b.get("pgd_correct", [])) != len(b["y"])):
        return None
    rng = np.random.default_rng(seed)
    n = len(a["y"])
    full = np.arange(n)

    def stat(g: dict, idx: object) -> float:
        return _fmr(g, idx) if key == "fmr" else float(g["pgd_correct"][idx].mean())

    observed = stat(b, full) - stat(a, full)
    dist = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        dist[r] = stat(b, idx) - stat(a, idx)
    dist = dist[~np.isnan(dist)]
    p = min(1.0, 2.0 * min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0)))) if len(dist) else float("nan")
    return observed, p


def paired_ranking(runs: list[dict], order: list[str], key: str, metric: str) -> list[str]:
    """Markdown rows: each adjacent pair of ``order`` (best first) with the paired t over seeds
    and the per-seed image bootstrap of the lower-ranked minus the higher-ranked target."""
    from pk.core.stats import fmt_p, paired_difference

    by = {(r["name"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    lines = []
    for hi, lo in zip(order, order[1:]):
        common = [s for s in seeds if (hi, s) in by and (lo, s) in by and metric in by[(hi, s)]["metrics"]
                  and metric in by[(lo, s)]["metrics"]]
        if not common:
            continue
        st = paired_difference([by[(hi, s)]["metrics"][metric] for s in common],
                               [by[(lo, s)]["metrics"][metric] for s in common])
        boots = []
        for i, s in enumerate(common):
            res = bootstrap_pair(_generated(by[(hi, s)]), _generated(by[(lo, s)]), key, seed=i)
            if res is not None:
                boots.append(f"s{s}: {res[0]:+.3f} (p {'< 0.0005' if res[1] == 0 else fmt_p(res[1])})")
        ci = f" [{st.low:+.3f}, {st.high:+.3f}]" if st.low is not None else ""
        p = fmt_p(st.p) if st.p is not None else "n/a"
        lines.append(f"| {hi} > {lo} | {st.mean:+.3f}{ci} | {p} | {'; '.join(boots) or 'n/a'} |")
    return lines


class _RescoreRun:
    """The run-handle parts the FMR evaluator uses; artifacts go to ``folder``."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.dir, self.seed, self.device, self.config = folder, seed, "cpu", {}

    def artifact_path(self, name: str) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def echo(self, message: str) -> None:
        print(f"  {message}")


def rescore_heldout(runs: list[dict]) -> list[dict]:
    """Every run re-scored with ``oracle_data = "heldout"``; returns batch-like records."""
    import dataclasses

    import torch
    from pk_oracle.evaluators.fmr import FMREvaluator

    from pk.core.config import load_toml, resolve
    from pk.core.io import load_tensors
    from pk.core.plugins import get_registry
    from pk.core.runner import Components

    torch.set_num_threads(1)
    out = []
    for r in runs:
        run_dir = Path(r["run_dir"])
        resolved = resolve(load_toml(run_dir / "config.toml"), get_registry())
        comps = Components(resolved)
        data = comps.dataset()
        model = comps.model(data.info)
        model.load_state_dict(load_tensors(run_dir / "checkpoints" / "model.pt")["model"])
        cfg = dataclasses.replace(resolved.component("evaluator"), oracle_data="heldout")
        metrics = FMREvaluator(cfg).evaluate(model.eval(), data, _RescoreRun(run_dir / "heldout", r["seed"]))
        (run_dir / "heldout" / "metrics.json").write_text(json.dumps(metrics, indent=1))
        out.append({**r, "metrics": {**{k: v for k, v in r["metrics"].items() if k.startswith("test.")},
                                      **{f"eval.{k}": v for k, v in metrics.items()}},
                    "generated_npz": str(run_dir / "heldout" / "fmr_generated.npz")})
        print(f"re-scored {r['name']} s{r['seed']}: fmr {metrics['fmr']:.3f} "
              f"(train-split zoo: {r['metrics'].get('eval.fmr', float('nan')):.3f})")
    return out


def report(runs: list[dict], title: str) -> None:
    order, by_name = table(runs)
    seeds = sorted({r["seed"] for r in runs})
    print(f"{title}: {len(runs)} completed runs, seeds {seeds} (mean ± std over seeds)\n")
    print("| target | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in order:
        print(f"| {name} | " + " | ".join(fmt(by_name[name][key]) for key, _ in COLUMNS) + " |")
    oracle_keys = sorted({k for r in runs for k in r["metrics"] if k.startswith("eval.oracle_acc.")})
    if oracle_keys:
        print("\noracle zoo, clean test accuracy: " + ", ".join(
            f"{k.rsplit('.', 1)[-1]} {fmt([r['metrics'][k] for r in runs if k in r['metrics']])}" for k in oracle_keys))
    by_fmr, by_pgd, by_acc = (ranking(order, by_name, k) for k in ("eval.fmr", "eval.pgd_accuracy", "test.accuracy"))
    print("\nranking by FMR:      " + " > ".join(by_fmr))
    print("ranking by PGD acc:  " + " > ".join(by_pgd))
    print("ranking by clean acc: " + " > ".join(by_acc))
    flips = [(a, b) for i, a in enumerate(by_fmr) for b in by_fmr[i + 1:] if by_pgd.index(b) < by_pgd.index(a)]
    print("pairs the two rankings order differently: " + (", ".join(f"{a} vs {b}" for a, b in flips) or "none"))
    for label, order_, key, metric in (("FMR", by_fmr, "fmr", "eval.fmr"),
                                       ("PGD accuracy", by_pgd, "pgd", "eval.pgd_accuracy")):
        print(f"\nranking by {label}, adjacent pairs (lower-ranked minus higher-ranked; paired over seeds, "
              "and per seed a paired bootstrap over the scored test images):\n")
        print("| pair | mean diff [95% t-interval] | paired t p | per-seed bootstrap |\n|---|---|---|---|")
        print("\n".join(paired_ranking(runs, order_, key, metric)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch", type=Path)
    ap.add_argument("--transfer", action="store_true", help="also compute the transfer matrix (loads every model)")
    ap.add_argument("--heldout", action="store_true", help="also re-score every run with a held-out oracle zoo")
    args = ap.parse_args()
    runs = load_runs(args.batch)
    report(runs, args.batch.name)
    if args.transfer:
        names, mat = transfer_matrix(runs)
        print("\ntransfer: accuracy of the column model on images generated against the row model "
              "(oracle-valid, mean over seeds)\n")
        print("| generated against ↓ / evaluated on → | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for a, row in zip(names, mat):
            print(f"| {a} | " + " | ".join(f"**{v:.3f}**" if a == b else f"{v:.3f}" for b, v in zip(names, row)) + " |")
        (args.batch / "transfer.json").write_text(
            json.dumps({"generated_against": names, "evaluated_on": names, "accuracy": mat}))
    if args.heldout:
        print("\n--- held-out oracle zoo (fitted on test images after max_test) ---\n")
        report(rescore_heldout(runs), args.batch.name + " (held-out zoo)")


if __name__ == "__main__":
    main()
