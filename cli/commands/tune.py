"""``pk tune``: equal-effort tuning of a recipe's arms on Optuna, then (optionally) the comparison."""

from __future__ import annotations

import click

from pk.cli.output import print_json, print_table


@click.command("tune")
@click.argument("recipe", required=False)
@click.option("--trials", type=int, default=None, help="Trials per arm (overrides [tune] trials for every arm).")
@click.option("--resume", is_flag=True, help="Continue the latest (or --out) tune: only missing trials run.")
@click.option("--then-batch", is_flag=True,
              help="Then rerun each arm's best config over the recipe's seeds and compare.")
@click.option("-c", "--set", "settings", multiple=True, metavar="[RUN:]KEY=VALUE",
              help="Override a config key in every run (RUN:KEY=VALUE: only run RUN), as in pk batch.")
@click.option("--matrix", "matrix_axes", multiple=True, metavar="KEY=V1,V2", help="Replace (or add) a [matrix] axis.")
@click.option("--out", type=click.Path(file_okay=False), help="Tune directory (default runs/tune-<name>-<UTC>).")
@click.option("--jobs", "-j", type=int, default=1, show_default=True, help="Parallel runs of the --then-batch.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: each trial (and each --then-batch run) is a Ray task against the same study storage.")
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
@click.option("--parallel", type=int, default=1, show_default=True,
              help="Trials under way at once with --executor ray (1 keeps proposals reproducible).")
@click.option("--dry-run", is_flag=True, help="Check the recipe and show the arms, spaces and trials; run nothing.")
@click.option("--json", "as_json", is_flag=True)
def tune_cmd(recipe, trials, resume, then_batch, settings, matrix_axes, out,  # type: ignore[no-untyped-def]
             jobs, executor, address, parallel, dry_run, as_json) -> None:
    """Tune RECIPE's arms with the same number of trials each, on Optuna.

    RECIPE is a batch recipe (file or PLUGIN:RECIPE) with a [tune] table: trials (per arm),
    metric (a validation metric: valid.* or fit.*), space (for every arm, or per arm in
    [tune.runs.NAME]), sampler (tpe, random), pruner (median, asha, none). Every trial is a
    run dir under TUNE_DIR/trials; the study is TUNE_DIR/study.sqlite, so a killed tune
    continues with --resume (RECIPE may then be left out with --out); --executor ray runs
    trials as Ray tasks against the same storage. Unequal trial budgets,
    and spaces over dataset/evaluator/budget keys, are refused (exit 2) unless [batch]
    unequal names them. --then-batch reruns each arm's best config over the recipe's matrix in
    TUNE_DIR/final and prints the paired comparison with each arm's trials and pruned count.

    \b
    [tune]
    trials = 4
    metric = "valid.accuracy"
    space = { "trainer.lr" = { log_uniform = [1e-3, 1e-1] }, "model.dropout" = { choice = [0.0, 0.3] } }
    """
    import json
    from pathlib import Path

    from pk.core.errors import UsageError
    from pk.core.plugins import get_registry
    from pk.core.recipe_paths import resolve_recipe

    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give 1 or more trials per arm")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more parallel runs")
    if parallel < 1 or (parallel > 1 and executor != "ray"):
        raise UsageError(f"--parallel {parallel}: give 1 or more, and more than 1 only with --executor ray")
    registry = get_registry()
    if recipe is None:
        if not (resume and out):
            raise UsageError("give a RECIPE (file.toml or plugin:recipe), or --resume --out TUNE_DIR")
        from pk.core.tune import load_summary

        record = load_summary(Path(out))
        recipe = record["source"]
        settings = settings or tuple(record.get("settings", []))
        matrix_axes = matrix_axes or tuple(record.get("matrix", []))
    from pk.core.tune import load_tune, run_tune, tune_dir_for

    plan = load_tune(resolve_recipe(recipe, registry), registry, settings, matrix_axes, trials)
    spec = plan.spec
    if dry_run:
        if as_json:
            print_json({"tune": spec.as_dict(),
                        "arms": {a: {"hash": r.resolved.hash(), "seed": r.seed} for a, r in plan.base.items()}})
            return
        rows = [(arm, spec.trials[arm], plan.base[arm].resolved.hash(),
                 "; ".join(f"{p.key} {json.dumps(p.as_dict())}" for p in spec.space[arm])) for arm in spec.arms]
        print_table(f"tune {plan.batch.name}: {spec.metric} ({spec.direction}), "
                    f"sampler {spec.sampler}, pruner {spec.pruner}",
                    ["arm", "trials", "base config", "space"], rows)
        return
    tune_dir = tune_dir_for(plan.batch.name, out, resume)
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    echo(f"tune {plan.batch.name}: {len(spec.arms)} arms × {max(spec.trials.values())} trials -> {tune_dir}")
    pool = None
    if executor == "ray":
        from pk.core.tune import RayTrialPool

        pool = RayTrialPool(address, dict(plan.batch.meta.get("resources", {})), parallel)
    state = run_tune(plan, tune_dir, registry, resume=resume, echo=echo, pool=pool)
    if not then_batch:
        if as_json:
            print_json({"dir": str(tune_dir), "arms": state})
        else:
            _print_arms(plan, state, tune_dir)
        return
    from pk.core.batch import run_batch
    from pk.core.tune import FINAL_DIR, effort_lines, final_spec

    batch = final_spec(plan, state, registry, tune_dir)
    bdir = Path(tune_dir) / FINAL_DIR
    echo(f"batch {batch.name} with the tuned configs: {len(batch.runs)} runs -> {bdir}")
    if executor == "ray":
        from pk.core.ray_executor import run_batch_ray

        outcomes = run_batch_ray(batch, bdir, address=address, resume=resume or bdir.exists(), echo=echo)
    else:
        outcomes = run_batch(batch, bdir, resume=resume or bdir.exists(), jobs=jobs, echo=echo)
    from pk.core.index import record_run

    for o in outcomes:
        record_run(o.run_dir)
    failed = any(o.status != "completed" for o in outcomes) or len(outcomes) < len(batch.runs)
    from pk.cli.commands.batch import _print_summary
    from pk.core.comparison import comparison_rows

    if as_json:
        print_json({"dir": str(tune_dir), "arms": state, "tune": batch.meta["tune"], "batch": str(bdir),
                    "runs": [o.as_dict() for o in outcomes], "comparison": comparison_rows(batch, outcomes)})
    else:
        _print_arms(plan, state, tune_dir)
        _print_summary([(batch, outcomes, bdir)], False, False)
        for line in effort_lines(batch.meta["tune"]):
            click.echo(line)
    if failed:
        raise click.exceptions.Exit(1)


def _print_arms(plan, state, tune_dir) -> None:  # type: ignore[no-untyped-def]
    import json

    rows = []
    for arm in plan.spec.arms:
        s = state[arm]
        best = s["best"] or {}
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in best.get("params", {}).items())
        value = f"{best['value']:.4f}" if best else "n/a"
        rows.append((arm, f"{s['finished']}/{s['trials']}", s["pruned"], s["failed"], value, params,
                     best.get("run_dir", "")))
    print_table(f"tune {plan.batch.name}: best {plan.spec.metric} per arm — {tune_dir}",
                ["arm", "trials", "pruned", "failed", "best", "params", "run"], rows)
