"""``pk batch``: run a batch file or every plugin's quick recipe, then print the summary."""

from __future__ import annotations

import click

from pk.cli.output import print_json, print_table


@click.command("batch")
@click.argument("recipe", required=False)
@click.option("--quick", is_flag=True, help="Run every installed plugin's quick recipe (the README's main job).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Runs in parallel (subprocesses).")
@click.option("--resume", is_flag=True, help="Continue the latest batch dir, skipping completed runs.")
@click.option("--dry-run", is_flag=True, help="List the expanded runs and config hashes; run nothing.")
@click.option("--continue-on-error", is_flag=True, help="Keep going when a run fails.")
@click.option("--only", multiple=True, help="Run only these run names (repeatable).")
@click.option("-c", "--set", "settings", multiple=True, metavar="[RUN:]KEY=VALUE",
              help="Override a config key in every run, after the recipe (repeatable), e.g. -c trainer.max_epochs=5; "
                   "RUN:KEY=VALUE overrides only run RUN, e.g. -c dynafed:aggregator.pixel_mean=0.47.")
@click.option("--matrix", "matrix_axes", multiple=True, metavar="KEY=V1,V2",
              help="Replace (or add) a [matrix] axis, e.g. --matrix run.seed=0,1 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Batch directory (default runs/batch-<name>-<UTC>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
@click.option("--json", "as_json", is_flag=True)
def batch_cmd(recipe, quick, jobs, resume, dry_run, continue_on_error, only,  # type: ignore[no-untyped-def]
              settings, matrix_axes, out, executor, address, as_json) -> None:
    """Run RECIPE (a batch .toml file, or PLUGIN:RECIPE such as pk-seqrec:quick).

    The recipe's declared baseline and method must share dataset, evaluator and training
    budget (exit 2 otherwise) unless [batch] unequal names the key with a reason. The
    summary pairs their runs by seed and gives the mean paired difference, its 95%
    t-interval, the paired t-test p (Wilcoxon from 6 pairs) and, where runs saved
    per-example scores, a paired bootstrap per seed."""
    from pathlib import Path

    from pk.core.batch import batch_dir_for, load_batch
    from pk.core.errors import UsageError
    from pk.core.plugins import get_registry
    from pk.core.recipe_paths import quick_recipes, resolve_recipe

    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more parallel runs")
    registry = get_registry()
    if quick == bool(recipe):
        raise UsageError("give either a RECIPE (file.toml or plugin:recipe) or --quick")
    paths = quick_recipes(registry) if quick else [resolve_recipe(recipe, registry)]
    specs = [load_batch(p, registry, settings, matrix_axes) for p in paths]
    if only:  # --only applies to the listing as to the run
        known = {x for s in specs for r in s.runs for x in (r.name, r.group)}
        missing = sorted(set(only) - known)
        if missing:
            names = sorted({r.name for s in specs for r in s.runs})
            raise UsageError(f"--only {', '.join(missing)}: no such run; runs: {', '.join(names)}")
        for spec in specs:
            spec.runs = [r for r in spec.runs if r.name in only or r.group in only]
    if dry_run:
        rows = [(s.name, r.group, r.seed, r.resolved.hash(), r.stem) for s in specs for r in s.runs]
        if as_json:
            print_json([{"batch": s.name, **r.as_dict(), "config": r.resolved.data} for s in specs for r in s.runs])
        else:
            print_table(None, ["batch", "run", "seed", "hash", "dir"], rows)
        return
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    root = batch_dir_for("quick", out, resume) if quick else None
    results = []
    any_failed = False
    for spec in specs:
        bdir = (root / spec.name) if root is not None else batch_dir_for(spec.name, out, resume)
        echo(f"batch {spec.name}: {len(spec.runs)} runs -> {bdir}")
        if executor == "ray":
            from pk.core.ray_executor import run_batch_ray

            outcomes = run_batch_ray(spec, Path(bdir), address=address, resume=resume,
                                     continue_on_error=continue_on_error, only=only, echo=echo)
        else:
            from pk.core.batch import run_batch

            outcomes = run_batch(spec, Path(bdir), resume=resume, jobs=jobs, continue_on_error=continue_on_error,
                                 only=only, echo=echo)
        wanted = [r for r in spec.runs if not only or r.name in only or r.group in only]
        any_failed |= any(o.status != "completed" for o in outcomes) or len(outcomes) < len(wanted)
        results.append((spec, outcomes, bdir))
        if any_failed and not continue_on_error:
            break
    _print_summary(results, as_json, quick)
    if any_failed:
        raise click.exceptions.Exit(1)


def _print_summary(results, as_json: bool, quick: bool) -> None:  # type: ignore[no-untyped-def]
    from pk.core.comparison import comparison_rows, fmt_bootstrap, fmt_epochs, fmt_paired, fmt_stat, summarise, verdict

    if as_json:
        print_json(
            [
                {"batch": s.name, "dir": str(d), "runs": [o.as_dict() for o in outs],
                 "comparison": comparison_rows(s, outs)}
                for s, outs, d in results
            ]
        )
        return
    if not quick:
        for spec, outcomes, bdir in results:
            stats = summarise(outcomes)
            metrics = (spec.meta.get("metrics")
                       or sorted({k for g in stats.values() for k in g if k.startswith("test.")})[:5])
            rows = [(g, *(fmt_stat(stats[g].get(m)) for m in metrics)) for g in stats]
            over = " × ".join(["seeds", *spec.meta.get("pool", [])])
            print_table(f"{spec.name} (mean ± std over {over}) — {bdir}", ["run", *metrics], rows)
    rows = []
    notes: list[str] = []
    for row in [r for spec, outcomes, _ in results for r in comparison_rows(spec, outcomes)]:
        metric = row["metric"] + (" (lower better)" if row["lower_is_better"] else "")
        eb, em = (fmt_epochs(row["epochs"][row[k]]) for k in ("baseline", "method"))
        rows.append((row["paper"], metric, f"{row['baseline']}: {fmt_stat(row['baseline_stats'])}",
                     f"{row['method']}: {fmt_stat(row['method_stats'])}", fmt_paired(row), fmt_bootstrap(row),
                     f"{eb} | {em}" if (eb or em) else "",
                     f"{row['cost_ratio']:.2f}×" if row.get("cost_ratio") else "", verdict(row)))
        notes += [f"{row['paper']}: {k} differs between arms: {why}" for k, why in row["unequal"].items()]
    if rows:
        print_table("baseline vs method per paper: Δ = method − baseline paired by seed, 95% t-interval; "
                    "verdict from the paired t-test (bootstrap over examples when n = 1)",
                    ["paper", "metric", "baseline", "method", "Δ [95% CI]", "bootstrap/seed", "epochs run b | m",
                     "time m/b", "verdict"],
                    rows)
        for note in dict.fromkeys(notes):
            click.echo(f"  unequal by design — {note}")
