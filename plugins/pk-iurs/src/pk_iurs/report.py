"""Strategy table and quality-over-blocks plot from one or more ``pk batch`` dirs.

``python -m pk_iurs.report BATCH_DIR [BATCH_DIR...] [--plot FILE] [--metric hr@20]`` prints a
markdown table (mean ± std over seeds per run group: the metric per test block, its mean over
blocks, MRR@20, total update seconds and update examples) and draws one line per group
(mean over seeds, ± std band). Reads each run's ``artifacts/stream.json``.
``--versus fine-tune`` adds one paired comparison per strategy against that run group (pk
batch's own statistics: mean paired difference over seeds with its 95% t-interval, paired
t-test p, and the per-seed bootstrap p over test examples from ``examples-eval.npz``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def load_groups(batch_dirs: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """group -> list of stream.json records (one per completed run)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in batch_dirs:
        for line in (d / "batch.jsonl").read_text().splitlines():
            entry = json.loads(line)
            stream = Path(entry["run_dir"]) / "artifacts" / "stream.json"
            if entry["status"] == "completed" and stream.exists():
                groups.setdefault(entry["group"], []).append(json.loads(stream.read_text()))
    return groups


def _ms(values: list[float], digits: int = 4) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def table(groups: dict[str, list[dict[str, Any]]], metric: str = "hr@20") -> str:
    first = next(iter(groups.values()))[0]
    blocks = [int(r["block"]) for r in first["records"]]
    head = ["strategy", *[f"B{b}" for b in blocks], f"mean {metric}", "mean mrr@20", "update s (total)",
            "update examples", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, runs in groups.items():
        per_block = [[float(r["records"][i][metric]) for r in runs] for i in range(len(blocks))]
        means = [statistics.fmean(float(x[metric]) for x in r["records"]) for r in runs]
        mrr = [statistics.fmean(float(x["mrr@20"]) for x in r["records"]) for r in runs]
        secs = [sum(float(x["seconds"]) for x in r["records"] if not x["pretrain"]) for r in runs]
        examples = [sum(float(x["examples"]) for x in r["records"] if not x["pretrain"]) for r in runs]
        row = [group, *[_ms(v, 3) for v in per_block], _ms(means), _ms(mrr), _ms(secs, 1),
               f"{statistics.fmean(examples):.0f}", str(len(runs))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def versus(batch_dirs: list[Path], baseline: str, metric: str = "eval.mean_hr@20") -> str:
    """Markdown rows: each run group against ``baseline`` (see the module docstring)."""
    from dataclasses import replace

    from pk.core.batch import read_batch
    from pk.core.comparison import comparison_rows, fmt_bootstrap, fmt_paired
    from pk.core.stats import fmt_p

    lines = ["| strategy vs " + baseline + " | Δ " + metric + " [95% CI] | paired t p | bootstrap p per seed |",
             "|---|---|---|---|"]
    for d in batch_dirs:
        spec, outcomes = read_batch(d)
        for group in sorted({o.run.group for o in outcomes} - {baseline}):
            meta = {**spec.meta, "baseline": baseline, "method": group, "metric": metric}
            for row in comparison_rows(replace(spec, meta=meta), outcomes):
                paired = row["paired"] or {}
                p = fmt_p(paired["p"]) if paired.get("p") is not None else "n/a"
                boot = fmt_bootstrap(row).removeprefix("p ") or "n/a"
                lines.append(f"| {group} | {fmt_paired(row)} | {p} | {boot} |")
    return "\n".join(lines)


def plot(groups: dict[str, list[dict[str, Any]]], path: Path, metric: str = "hr@20", title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for group, runs in groups.items():
        blocks = [int(r["block"]) for r in runs[0]["records"]]
        values = [[float(r["records"][i][metric]) for r in runs] for i in range(len(blocks))]
        mean = [statistics.fmean(v) for v in values]
        sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.plot(blocks, mean, marker="o", label=group)
        ax.fill_between(blocks, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)], alpha=0.15)
    ax.set_xlabel("test block (model updated on the block before)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch_dirs", nargs="+", type=Path)
    parser.add_argument("--metric", default="hr@20")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--title", default="")
    parser.add_argument("--versus", metavar="GROUP", help="paired comparison of every group against GROUP")
    args = parser.parse_args(argv)
    groups = load_groups(args.batch_dirs)
    if not groups:
        raise SystemExit("no completed runs with artifacts/stream.json in the given batch dirs")
    print(table(groups, args.metric))
    if args.versus:
        print()
        print(versus(args.batch_dirs, args.versus, f"eval.mean_{args.metric}"))
    if args.plot:
        plot(groups, args.plot, args.metric, args.title)


if __name__ == "__main__":
    main()
