"""``pk runs`` (list past runs) and ``pk report`` (PNG charts of a run or a batch)."""

from __future__ import annotations

from pathlib import Path

import click

from pk.cli.output import print_json, print_table


def find_runs(root: Path) -> list[Path]:
    """Run dirs (holding config.toml) under ``root``, at most three levels deep, oldest first."""
    found = []
    for depth in ("*", "*/*", "*/*/*"):
        found += [p.parent for p in root.glob(f"{depth}/config.toml")]
    return sorted(set(found), key=lambda p: p.name)


@click.command("runs")
@click.option("--dir", "root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--status", type=click.Choice(["completed", "failed", "interrupted", "running", "crashed"]),
              help="Only runs in this state; crashed = its process died without recording an end (resume it).")
@click.option("--model", default=None, help="Only runs of this model.")
@click.option("--last", type=int, default=0, help="Only the N most recent.")
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(root: str, status: str | None, model: str | None, last: int, as_json: bool) -> None:
    """List past runs with status and final metrics.

    States: running (its process is alive), completed, failed, interrupted (Ctrl-C or
    SIGTERM), crashed (killed without a word; `pk train --resume DIR` continues it)."""
    from pk.core.config import load_toml
    from pk.core.errors import PkError
    from pk.core.run import read_result, run_status

    rows = []
    for path in find_runs(Path(root)):
        try:
            cfg = load_toml(path / "config.toml")
        except PkError:
            continue
        result = read_result(path) or {}
        entry = {
            "run_dir": str(path),
            "status": run_status(result) if result else "unknown",
            "model": cfg.get("model", {}).get("name", "?"),
            "dataset": cfg.get("dataset", {}).get("name", "?"),
            "seed": cfg.get("run", {}).get("seed"),
            "seconds": result.get("seconds"),
            "metrics": result.get("metrics", {}),
        }
        if (status and entry["status"] != status) or (model and entry["model"] != model):
            continue
        rows.append(entry)
    rows = rows[-last:] if last else rows
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no runs under {root}")
        return
    table = []
    for e in rows:
        test = {k: v for k, v in e["metrics"].items() if k.startswith("test.")}
        shown = ", ".join(f"{k[5:]}={v:.4f}" for k, v in list(test.items())[:3])
        table.append((e["run_dir"], e["status"], e["model"], e["dataset"], e["seed"], shown))
    print_table(None, ["run", "status", "model", "dataset", "seed", "test metrics"], table)


@click.command("report")
@click.argument("target", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Where PNGs go (default: TARGET/report).")
def report_cmd(target: str, out: str | None) -> None:
    """Write PNG learning curves for a run dir, or a comparison chart for a batch dir."""
    from pk.core.errors import UsageError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("pk report needs matplotlib: pip install 'pk-core[report]'") from None
    path = Path(target)
    out_dir = Path(out) if out else path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if (path / "metrics.jsonl").exists():
        from pk.core.runner import read_metrics

        lines = read_metrics(path)
        series: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for ln in lines:
            for k, v in ln.items():
                if k in ("step", "split", "time") or not isinstance(v, (int, float)):
                    continue
                series.setdefault((ln["split"], k), []).append((ln["step"], v))
        names = sorted({k for _, k in series})
        for name in names:
            fig, ax = plt.subplots(figsize=(5, 3.2))
            for (split, k), pts in sorted(series.items()):
                if k == name:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2, label=split)
            ax.set_xlabel("step")
            ax.set_ylabel(name)
            ax.legend()
            fig.tight_layout()
            file = out_dir / f"curve-{name.replace('/', '_').replace('@', '_at_')}.png"
            fig.savefig(file, dpi=120)
            plt.close(fig)
            written.append(file)
    elif (path / "batch.jsonl").exists() or any(path.glob("*/batch.jsonl")):
        for bfile in [path / "batch.jsonl"] if (path / "batch.jsonl").exists() else sorted(path.glob("*/batch.jsonl")):
            written += _batch_chart(bfile, out_dir, plt)
    else:
        raise UsageError(f"{target} is neither a run dir (metrics.jsonl) nor a batch dir (batch.jsonl)")
    for f in written:
        click.echo(str(f))


def _batch_chart(bfile: Path, out_dir: Path, plt) -> list[Path]:  # type: ignore[no-untyped-def]
    from pk.core.batch import comparison_rows, read_batch, summarise, write_comparison

    spec, outcomes = read_batch(bfile.parent)
    rows = comparison_rows(spec, outcomes)
    if rows:
        csv_file = write_comparison(out_dir, rows, f"{bfile.parent.name}-comparison.csv")
        for r in rows:
            p = r["paired"] or {}
            ci = f" [{p['low']:+.4f}, {p['high']:+.4f}]" if p.get("low") is not None else ""
            click.echo(f"{r['paper']}: {r['metric']} {r['method']} − {r['baseline']} = {p.get('mean', float('nan')):+.4f}{ci}"
                       f" (n={p.get('n', 0)}): {r['verdict']}")
    stats = summarise(outcomes)
    metrics = sorted({k for g in stats.values() for k in g if k.startswith("test.")})
    written = [csv_file] if rows else []
    for metric in metrics:
        groups = [g for g in stats if metric in stats[g]]
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(groups)), 3.2))
        ax.bar(range(len(groups)), [stats[g][metric][0] for g in groups], yerr=[stats[g][metric][1] for g in groups], capsize=4)
        ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
        ax.set_ylabel(metric)
        ax.set_title(bfile.parent.name)
        fig.tight_layout()
        file = out_dir / f"{bfile.parent.name}-{metric.replace('@', '_at_')}.png"
        fig.savefig(file, dpi=120)
        plt.close(fig)
        written.append(file)
    return written
