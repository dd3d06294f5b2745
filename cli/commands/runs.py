"""``pk runs`` (list past runs) and ``pk report`` (PNG charts of a run or a batch)."""

from __future__ import annotations

from pathlib import Path

import click

from pk.cli.output import print_json, print_table


def find_runs(root: Path) -> list[Path]:
    """Run dirs (holding config.toml) under ``root``, at most three levels deep, by name."""
    from pk.core.index import scan

    return sorted((root / rel for rel, _ in scan(root)), key=lambda p: p.name)


STATES = ["completed", "failed", "interrupted", "running", "crashed", "pruned"]


@click.command("runs")
@click.option("--dir", "root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--status", type=click.Choice(STATES),
              help="Only runs in this state; crashed = its process died without recording an end (resume it); "
                   "pruned = a tuning trial the pruner stopped.")
@click.option("--model", default=None, help="Only runs of this model.")
@click.option("--where", default=None, metavar="EXPR",
              help='Filter, e.g. "test.accuracy > 0.5 and trainer.lr <= 1e-3": metrics (fit./test./eval./resources.), '
                   "config keys (trainer.lr), status/model/dataset/trainer/seed/name; and, or, not, ( ); ~ = contains.")
@click.option("--since", default=None, metavar="AGE|DATE",
              help="Only runs started within AGE (30m, 12h, 2d, 1w) or since DATE.")
@click.option("--last", type=int, default=0, help="Only the N most recent.")
@click.option("--compare", nargs=2, default=None, metavar="A B",
              help="Config diff and metric diff of two runs (run dirs or names from pk runs).")
@click.option("--reindex", is_flag=True, help="Rebuild the index from the run dirs first.")
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(root: str, status: str | None, model: str | None, where: str | None, since: str | None, last: int,
             compare: tuple[str, str] | None, reindex: bool, as_json: bool) -> None:
    """List past runs with status and final metrics, from an SQLite index of the run dirs
    (DIR/.pk-index.sqlite, brought up to date on every call; the run dirs stay the truth).

    States: running (its process is alive), completed, failed, interrupted (Ctrl-C or
    SIGTERM), crashed (killed without a word; `pk train --resume DIR` continues it),
    pruned (a `pk tune` trial stopped early)."""
    from pk.core.errors import UsageError
    from pk.core.index import INDEX_NAME, RunIndex
    from pk.core.run_query import compare as compare_runs
    from pk.core.run_query import format_compare, parse_since, parse_where

    if last < 0:
        raise UsageError(f"--last {last}: give a number of runs >= 0")
    if where:
        parse_where(where)  # a malformed expression fails before the index is touched
    since_t = parse_since(since) if since else None
    if reindex:
        Path(root, INDEX_NAME).unlink(missing_ok=True)
    with RunIndex(root) as index:
        index.refresh()
        if compare:
            a, b = (index.find(ref) for ref in compare)
            diff = compare_runs(index.record_of(a), index.record_of(b))
            if as_json:
                print_json({"a": a, "b": b, **diff})
            else:
                for line in format_compare([a, b], diff):
                    click.echo(line)
            return
        rows = index.query(where=where, model=model, status=status, since=since_t, last=last)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no runs under {root}" + (" match" if (where or model or status or since) else ""))
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
    from pk.core.batch import read_batch
    from pk.core.comparison import comparison_rows, summarise, write_comparison

    spec, outcomes = read_batch(bfile.parent)
    rows = comparison_rows(spec, outcomes)
    if rows:
        csv_file = write_comparison(out_dir, rows, f"{bfile.parent.name}-comparison.csv")
        for r in rows:
            p = r["paired"] or {}
            ci = f" [{p['low']:+.4f}, {p['high']:+.4f}]" if p.get("low") is not None else ""
            click.echo(f"{r['paper']}: {r['metric']} {r['method']} − {r['baseline']} = "
                       f"{p.get('mean', float('nan')):+.4f}{ci} (n={p.get('n', 0)}): {r['verdict']}")
    stats = summarise(outcomes)
    metrics = sorted({k for g in stats.values() for k in g if k.startswith("test.")})
    written = [csv_file] if rows else []
    for metric in metrics:
        groups = [g for g in stats if metric in stats[g]]
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(groups)), 3.2))
        ax.bar(range(len(groups)), [stats[g][metric][0] for g in groups], yerr=[stats[g][metric][1] for g in groups],
               capsize=4)
        ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
        ax.set_ylabel(metric)
        ax.set_title(bfile.parent.name)
        fig.tight_layout()
        file = out_dir / f"{bfile.parent.name}-{metric.replace('@', '_at_')}.png"
        fig.savefig(file, dpi=120)
        plt.close(fig)
        written.append(file)
    return written
