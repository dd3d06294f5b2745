"""Every arm of a federated batch against one baseline, with pk's paired statistics.

``pk batch`` compares the recipe's declared baseline/method pair; robust and ablation tables
hold many arms. ``python -m pk_fl.report BATCH_DIR [--baseline fedavg] [--metric test.accuracy]
[--extra fit.malicious_weight_mean]`` prints, per matrix cell, one Markdown row per arm: mean ±
std over seeds, the paired difference to the baseline (same seeds) with its 95% t-interval and
t-test p (:func:`pk.core.stats.paired_difference`), how many seeds' paired bootstrap over test
images (:func:`pk.core.stats.paired_bootstrap`) gives p < 0.05 in the difference's direction,
and the mean of each ``--extra`` metric.
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
    from pk.core.batch import example_scores, pair_key, read_batch
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


def markdown(rows_by_cell: dict[str, list[dict[str, Any]]], baseline: str, metric: str, extras: Sequence[str] = ()) -> str:
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
            delta = f"{_fmt(p['mean'], sign=True)} [{_fmt(p['low'], sign=True)}, {_fmt(p['high'], sign=True)}]" if p else "—"
            boot = "{}/{}/{}".format(*r["bootstrap"]) if r.get("bootstrap") else "—"
            cols = [r["arm"], f"{_fmt(r['mean'])} ± {_fmt(r['std'])} (n={r['n']})", delta, _fmt_p(p["p"]) if p else "—", boot,
                    *[_fmt(r.get(e), 3) for e in extras]]
            lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch_dir")
    ap.add_argument("--baseline", default="fedavg")
    ap.add_argument("--metric", default="test.accuracy")
    ap.add_argument("--extra", action="append", default=[], help="another metric to average per arm (repeatable)")
    ap.add_argument("--no-bootstrap", action="store_true")
    args = ap.parse_args(argv)
    rows = arm_rows(args.batch_dir, args.baseline, args.metric, args.extra, bootstrap=not args.no_bootstrap)
    print(markdown(rows, args.baseline, args.metric, args.extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
