"""Every arm of a federated batch against one baseline, with pk's paired statistics.

``pk batch`` compares the recipe's declared baseline/method pair; robust and ablation tables
hold many arms. ``python -m pk_fl.report BATCH_DIR [--baseline fedavg] [--metric test.accuracy]
[--extra fit.malicious_weight_mean]`` prints, per matrix cell, one Markdown row per arm: mean ±
std over seeds, the paired difference to the baseline (same seeds) with its 95% t-interval and
t-test p (:func:`pk.core.stats.paired_difference`), how many seeds' paired bootstrap over test
images (:func:`pk.core.stats.paired_bootstrap`) gives p < 0.05 in the difference's direction,
and the mean of each ``--extra`` metric. ``--plot OUT.png [--cell CELL]`` draws, per arm
(mean over seeds), server accuracy and the total weight the aggregator gave malicious clients
per round (from each run's ``metrics.jsonl``), one figure row per cell.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def split_group(group: str) -> tuple[str, str]:
    """``"krum[attack=lie,malicious_fraction=0.2]"`` -> ``("krum", "attack=lie,malicious_fraction=0.2")``."""
    m = re.fullmatch(r"(.*?)(?:\[(.*)\])?", group)
    assert m is not None
    return m.group(1), m.group(2) or ""


def _fmt(x: float | None, digits: int = 4, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def arm_rows(batch_dir: str, baseline: str, metric: str, extras: Sequence[str] = (), bootstrap: bool = True
             ) -> dict[str, list[dict[str, Any]]]:
    """``{cell: [row per arm]}`` with the figures described in the module docstring."""
    from pk.core.batch import read_batch
    from pk.core.comparison import example_scores, pair_key
    from pk.core.stats import paired_bootstrap, paired_difference

    _spec, outcomes = read_batch(batch_dir)
    by_cell: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for o in outcomes:
        if o.status == "completed" and metric in o.metrics:
            arm, cell = split_group(o.run.group)
            by_cell[cell][arm][pair_key(o.run)] = o
    out: dict[str, list[dict[str, Any]]] = {}
    for cell, arms in sorted(by_cell.items()):
        base = arms.get(baseline, {})
        rows = []
        for arm, runs in arms.items():
            vals = [r.metrics[metric] for r in runs.values()]
            row: dict[str, Any] = {"arm": arm, "n": len(vals), "mean": statistics.fmean(vals),
                                   "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
            for extra in extras:
                xs = [r.metrics[extra] for r in runs.values() if extra in r.metrics]
                row[extra] = statistics.fmean(xs) if xs else None
            keys = sorted(set(runs) & set(base))
            if arm != baseline and keys:
                row["paired"] = paired_difference([base[k].metrics[metric] for k in keys],
                                                  [runs[k].metrics[metric] for k in keys]).as_dict()
                wins = losses = tested = 0
                for i, k in enumerate(keys if bootstrap else []):
                    sb, sm = example_scores(base[k].run_dir, metric), example_scores(runs[k].run_dir, metric)
                    if sb is None or sm is None or sb.shape != sm.shape:
                        continue
                    b = paired_bootstrap(sb, sm, seed=i)
                    tested += 1
                    wins += int(b.p < 0.05 and b.mean > 0)
                    losses += int(b.p < 0.05 and b.mean < 0)
                row["bootstrap"] = (wins, losses, tested)
            rows.append(row)
        rows.sort(key=lambda r: (r["arm"] != baseline, r["arm"]))
        out[cell] = rows
    return out


def markdown(
    rows_by_cell: dict[str, list[dict[str, Any]]], baseline: str, metric: str, extras: Sequence[str] = ()
) -> str:
    """The tables as Markdown, one per cell."""
    lines = []
    for cell, rows in rows_by_cell.items():
        if cell:
            lines.append(f"\n**{cell}**\n")
        head = ["arm", f"{metric} (mean ± std)", f"Δ vs {baseline} [95% CI]", "p (t)", "bootstrap +/−/seeds",
                *[e for e in extras]]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            p = r.get("paired")
            delta = (
                f"{_fmt(p['mean'], sign=True)} [{_fmt(p['low'], sign=True)}, {_fmt(p['high'], sign=True)}]"
                if p
                else "—"
            )
            boot = "{}/{}/{}".format(*r["bootstrap"]) if r.get("bootstrap") else "—"
            cols = [
                r["arm"],
                f"{_fmt(r['mean'])} ± {_fmt(r['std'])} (n={r['n']})",
                delta,
                _fmt_p(p["p"]) if p else "—",
                boot,
                *[_fmt(r.get(e), 3) for e in extras],
            ]
            lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def round_curves(batch_dir: str) -> dict[str, dict[str, dict[str, list[tuple[int, float]]]]]:
    """``{cell: {arm: {"accuracy" | "malicious_weight": [(round, mean over seeds)]}}}``."""
    import json
    from pathlib import Path

    from pk.core.batch import read_batch

    _spec, outcomes = read_batch(batch_dir)
    acc: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        file = Path(o.run_dir) / "metrics.jsonl"
        if o.status != "completed" or not file.is_file():
            continue
        arm, cell = split_group(o.run.group)
        for line in file.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("split") == "server" and "accuracy" in rec:
                acc[(cell, arm, "accuracy")][int(rec["step"])].append(float(rec["accuracy"]))
            if rec.get("split") == "train" and "malicious_weight" in rec:
                acc[(cell, arm, "malicious_weight")][int(rec["step"])].append(float(rec["malicious_weight"]))
    out: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = defaultdict(lambda: defaultdict(dict))
    for (cell, arm, name), by_round in acc.items():
        out[cell][arm][name] = [(r, statistics.fmean(v)) for r, v in sorted(by_round.items())]
    return out


def plot(batch_dir: str, path: str, cells: Sequence[str] = ()) -> None:
    """Accuracy and weight on malicious clients per round, per arm, for ``cells`` (all if empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = round_curves(batch_dir)
    chosen = [c for c in sorted(curves) if not cells or c in cells]
    if not chosen:
        raise SystemExit(f"no cell among {sorted(curves)} matches {list(cells)}")
    names = ["accuracy"]
    if any("malicious_weight" in series for c in chosen for series in curves[c].values()):
        names.append("malicious_weight")
    fig, axes = plt.subplots(len(chosen), len(names), figsize=(5.5 * len(names), 3.2 * len(chosen)), squeeze=False)
    for row, cell in enumerate(chosen):
        for arm, series in sorted(curves[cell].items()):
            for col, name in enumerate(names):
                if name in series:
                    xs, ys = zip(*series[name])
                    axes[row][col].plot(xs, ys, marker=".", label=arm)
        axes[row][0].set_title(cell or "all", fontsize=9)
        axes[row][0].set_ylabel("server accuracy")
        if len(names) > 1:
            axes[row][1].set_ylabel("weight on malicious clients")
        for ax in axes[row]:
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch_dir")
    ap.add_argument("--baseline", default="fedavg")
    ap.add_argument("--metric", default="test.accuracy")
    ap.add_argument("--extra", action="append", default=[], help="another metric to average per arm (repeatable)")
    ap.add_argument("--no-bootstrap", action="store_true")
    ap.add_argument("--plot", default="", help="write the per-round accuracy / malicious-weight PNG here")
    ap.add_argument("--cell", action="append", default=[], help="cells to plot (repeatable; default all)")
    args = ap.parse_args(argv)
    if args.plot:
        plot(args.batch_dir, args.plot, args.cell)
    rows = arm_rows(args.batch_dir, args.baseline, args.metric, args.extra, bootstrap=not args.no_bootstrap)
    print(markdown(rows, args.baseline, args.metric, args.extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
