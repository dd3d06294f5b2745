"""Summarise a continual ``pk batch`` directory: a PM/FM table (mean ± std over seeds) and the
mean task-accuracy heat map per run group.

Usage: ``python -m pk_pignn.report BATCH_DIR [--out DIR]`` (prints Markdown; PNGs go to DIR,
default BATCH_DIR/report). Reads ``batch.jsonl`` and each run's ``artifacts/accuracy_matrix.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from pk_pignn.evaluators import FM_SIGN_NOTE, forgetting_measure, load_matrix, performance_mean, plot_matrix

COLUMNS = (("fit.pm", "PM (acc)"), ("fit.fm", "FM (acc)"), ("fit.pm_macro_f1", "PM (macro-F1)"),
           ("fit.fm_macro_f1", "FM (macro-F1)"), ("fit.final_mean_accuracy", "final model, mean acc"),
           ("fit.params", "params"))


def _cell(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summarise(batch_dir: Path, out: Path) -> str:
    """Markdown table over completed runs, one row per group; writes ``heatmap-<group>.png``."""
    outcomes = [json.loads(line) for line in (batch_dir / "batch.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for o in outcomes:
        if o.get("status") == "completed":
            groups.setdefault(o["group"], []).append(o)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| run | seeds | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for group, runs in groups.items():
        cells = []
        for key, _ in COLUMNS:
            vals = [float(r["metrics"][key]) for r in runs if key in r["metrics"]]
            cells.append(_cell(vals, 0 if key == "fit.params" else 4))
        lines.append(f"| {group} | {len(runs)} | " + " | ".join(cells) + " |")
        mats = [load_matrix(Path(r["run_dir"]) / "artifacts" / "accuracy_matrix.json") for r in runs]
        stack = torch.stack(mats)
        mean = stack.mean(0)
        std = stack.std(0) if len(mats) > 1 else torch.zeros_like(mean)
        title = (f"{group}: mean over {len(mats)} seeds, PM {performance_mean(mean):.3f}, "
                 f"FM {forgetting_measure(mean):+.3f}")
        plot_matrix(mean, out / f"heatmap-{group}.png", title, std)
    lines.append("")
    lines.append(f"FM sign: {FM_SIGN_NOTE}. Accuracy on all test nodes of each cumulative snapshot.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    print(summarise(args.batch_dir, args.out or args.batch_dir / "report"))


if __name__ == "__main__":  # pragma: no cover
    main()
