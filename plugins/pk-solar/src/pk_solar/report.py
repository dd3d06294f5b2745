"""Loss-vs-compute plot and tables for a ``pk batch`` directory of the DUS protocol.

    python -m pk_solar.report runs/batch-solar-protocol-<UTC> --out solar.png

Reads ``batch.jsonl`` (run name, seed, run dir, final metrics) and each run's
``metrics.jsonl`` (``valid`` lines carry ``loss`` and cumulative ``flops``). Prints markdown:
final metrics per arm (mean ± sample std over seeds), paired comparisons of every arm with
``cont`` (test loss: paired t over seeds and, per seed, a paired bootstrap over the test
windows from ``examples-eval.npz``), validation loss interpolated at matched total compute,
and the seam drop / recovery of up-scaled arms (relative to ``cont``, whose first evaluation
is the base's weights on the same batches).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any


def _mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {std:.4f}"


def load_batch(batch_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """arm name -> list of ``{seed, metrics, curve: [(flops, loss)]}`` for completed runs."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for line in (batch_dir / "batch.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("status") != "completed":
            continue
        curve = []
        for row in (Path(rec["run_dir"]) / "metrics.jsonl").read_text().splitlines():
            point = json.loads(row)
            if point.get("split") == "valid" and "flops" in point:
                curve.append((float(point["flops"]), float(point["loss"])))
        arms.setdefault(rec["name"], []).append({"seed": rec["seed"], "metrics": rec["metrics"], "curve": curve,
                                                  "run_dir": rec["run_dir"]})
    return arms


def interpolate(curve: list[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation of loss at compute ``x`` (None outside the curve)."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _window_losses(run: dict[str, Any]) -> Any:
    import numpy as np

    path = Path(run["run_dir"]) / "examples-eval.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as npz:
        return npz["loss"] if "loss" in npz.files else None


def paired_table(arms: dict[str, list[dict[str, Any]]], baseline: str = "cont", metric: str = "eval.loss") -> str:
    """Every arm vs ``baseline`` on ``metric`` (lower is better): mean paired difference with
    its 95% t-interval and paired t-test p over seeds, and per seed a paired bootstrap over
    the test windows (mean difference and p)."""
    from pk.core.stats import fmt_p, paired_bootstrap, paired_difference, verdict_words

    if baseline not in arms:
        return ""
    base = {r["seed"]: r for r in arms[baseline]}
    lines = [f"Paired against `{baseline}` ({metric}, whole test split; negative = better than {baseline}):", "",
             "| arm | seeds | mean diff [95% t-interval] | paired t p | "
             "per-seed bootstrap over test windows (diff, p) | verdict |",
             "|---|---|---|---|---|---|"]
    for arm, runs in arms.items():
        if arm in (baseline, "base"):
            continue
        pairs = [(base[r["seed"]], r) for r in sorted(runs, key=lambda r: r["seed"]) if r["seed"] in base]
        if not pairs:
            continue
        stats = paired_difference([b["metrics"][metric] for b, _ in pairs], [m["metrics"][metric] for _, m in pairs])
        boots = []
        for i, (b, m) in enumerate(pairs):
            lb, lm = _window_losses(b), _window_losses(m)
            if lb is not None and lm is not None and lb.shape == lm.shape and lb.size >= 2:
                bs = paired_bootstrap(lb, lm, seed=i)
                shown = f"< {1 / bs.resamples:.4f}" if bs.p == 0 else fmt_p(bs.p)
                boots.append(f"s{m['seed']}: {bs.mean:+.4f}, p {shown}")
        interval = f"{stats.mean:+.4f}" + (f" [{stats.low:+.4f}, {stats.high:+.4f}]" if stats.low is not None else "")
        p = fmt_p(stats.p) if stats.p is not None else "n/a"
        words = verdict_words(stats.mean, stats.p, lower_is_better=True, n=stats.n)
        words = words.replace("method", arm).replace("baseline", baseline)
        lines.append(f"| {arm} | {stats.n} | {interval} | {p} | {'; '.join(boots) or 'n/a'} | {words} |")
    return "\n".join(lines)


def tables(arms: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| arm | layers | params | seeds | total FLOPs | final valid loss (nats/char) | test ppl |",
             "|---|---|---|---|---|---|---|"]
    for arm, runs in arms.items():
        m0 = runs[0]["metrics"]
        lines.append(
            f"| {arm} | {m0.get('fit.layers', 0):.0f} | {m0.get('fit.params', 0):,.0f} | {len(runs)} | "
            f"{statistics.fmean(r['metrics']['fit.flops_total'] for r in runs):.3e} | "
            f"{_mean_std([r['metrics']['fit.valid_loss'] for r in runs])} | "
            f"{_mean_std([r['metrics']['eval.ppl'] for r in runs])} |"
        )
    paired = paired_table(arms)
    if paired:
        lines += ["", paired]
    if "base" in arms:
        base_flops = statistics.fmean(r["metrics"]["fit.flops_total"] for r in arms["base"])
    else:  # a shared base trained in another batch: every arm's first evaluation is at its compute
        starts = [r["curve"][0][0] for runs in arms.values() for r in runs if r["curve"]]
        base_flops = min(starts) if starts and min(starts) > 0 else None
    if base_flops:
        others = [statistics.fmean(r["metrics"]["fit.flops_total"] for r in runs)
                  for arm, runs in arms.items() if arm != "base"]
        top = min(others, default=base_flops) / base_flops
        points = [round(1 + (top - 1) * k / 4, 2) for k in (1, 2, 3, 4)] if top > 1.01 else [1.1, 1.2, 1.3, 1.4]
        lines += ["", "Validation loss (periodic evals, fixed batches) at matched total compute, "
                  "x = multiple of the base's compute:",
                  "", "| arm | " + " | ".join(f"{p:g}x" for p in points) + " |", "|---|" + "---|" * len(points)]
        for arm, runs in arms.items():
            if arm == "base":
                continue
            cells = []
            for p in points:
                vals = [v for r in runs if (v := interpolate(r["curve"], p * base_flops)) is not None]
                cells.append(_mean_std(vals) if len(vals) == len(runs) else "n/a")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if "cont" in arms:
        start = {r["seed"]: r["curve"][0][1] for r in arms["cont"]}
        lines += ["", "Seam: loss right after up-scaling minus the base's loss (same batches); "
                  "recovery = added FLOPs until the up-scaled model is back at the base's loss:",
                  "", "| arm | seam drop | recovery FLOPs |", "|---|---|---|"]
        for arm, runs in arms.items():
            if arm in ("base", "cont", "scratch"):
                continue
            drops, recover = [], []
            for r in runs:
                if r["seed"] not in start:
                    continue
                drops.append(r["curve"][0][1] - start[r["seed"]])
                hit = next((f for f, loss in r["curve"][1:] if loss <= start[r["seed"]]), None)
                if hit is not None:
                    recover.append(hit - r["curve"][0][0])
            rec = (f"{statistics.fmean(recover):.3e} ({len(recover)}/{len(runs)} seeds)" if recover
                   else "not within budget")
            lines.append(f"| {arm} | {_mean_std(drops)} | {rec} |")
    return "\n".join(lines)


def plot(arms: dict[str, list[dict[str, Any]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, runs in arms.items():
        lo = max(r["curve"][0][0] for r in runs)
        hi = min(r["curve"][-1][0] for r in runs)
        grid = [lo + (hi - lo) * k / 60 for k in range(61)] if hi > lo else [lo]
        means, stds = [], []
        for x in grid:
            vals = [v for r in runs if (v := interpolate(r["curve"], x)) is not None]
            means.append(statistics.fmean(vals) if vals else math.nan)
            stds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
        ax.plot(grid, means, label=f"{arm} ({len(runs)} seeds)")
        ax.fill_between(grid, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_xlabel("total training compute (FLOPs = 6·P·tokens)")
    ax.set_ylabel("validation loss (nats/char)")
    finals = [r["curve"][-1][1] for runs in arms.values() for r in runs]
    starts = [r["curve"][0][1] for runs in arms.values() for r in runs]
    ax.set_ylim(min(finals) - 0.05, min(min(finals) + 0.6, max(starts) + 0.05))
    ax.set_title("SOLAR DUS vs continued training (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("solar_protocol.png"))
    args = parser.parse_args(argv)
    arms = load_batch(args.batch_dir)
    print(tables(arms))
    print(f"\nplot: {plot(arms, args.out)}")


if __name__ == "__main__":
    main()
