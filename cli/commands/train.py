"""``pk train`` and ``pk eval``."""

from __future__ import annotations

import sys

import click

from pk.cli.output import print_json


def _reporter(as_json: bool, quiet: bool):  # type: ignore[no-untyped-def]
    from pk.core.console import Reporter

    return Reporter("quiet" if (as_json or quiet) else None)


@click.command("train")
@click.argument("configs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--config", "-C", "extra_configs", multiple=True, type=click.Path(dir_okay=False),
              help="TOML config file (repeatable, deep-merged in order).")
@click.option("-c", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override, value parsed as TOML (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Print the resolved config (defaults included) and exit; imports no torch.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Explicit run directory (must be new or empty).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue an interrupted run from its last checkpoint.")
@click.option("--nproc-per-node", type=int, default=1, show_default=True, help="Processes per node (torchrun, DDP).")
@click.option("--nnodes", type=int, default=1, show_default=True, help="Number of nodes for torchrun.")
@click.option("--rdzv-endpoint", default=None, help="HOST:PORT rendezvous for multi-node runs.")
@click.option("--json", "as_json", is_flag=True, help="Print result.json on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def train_cmd(configs, extra_configs, overrides, dry_run, run_dir, resume_dir,  # type: ignore[no-untyped-def]
              nproc_per_node, nnodes, rdzv_endpoint, as_json, quiet) -> None:
    """Train from CONFIGS (TOML) and -c overrides; writes a new run dir under runs/."""
    from pk.core.config import compose, dumps_toml, resolve
    from pk.core.plugins import get_registry

    registry = get_registry()
    if resume_dir:
        from pk.core.runner import prepare_resume

        resolved = prepare_resume(resume_dir, registry)
    else:
        from pk.core.config import locate_key
        from pk.core.errors import ConfigError

        raw = compose([*configs, *extra_configs], overrides)
        try:
            resolved = resolve(raw, registry)
        except ConfigError as exc:
            files = [*configs, *extra_configs]
            set_by_override = any(o.split("=", 1)[0].strip() in str(exc) for o in overrides)
            if not files or set_by_override:
                raise
            raise ConfigError(locate_key(str(exc), files)) from None
        from pk.core.runner import check_tasks

        check_tasks(resolved)
    if dry_run:
        click.echo(dumps_toml(resolved.data), nl=False)
        return
    if nproc_per_node > 1 or nnodes > 1:
        from pk.core.distributed import launch

        rc = launch(resolved, nproc_per_node, nnodes, rdzv_endpoint, resume_dir or run_dir, list(overrides),
                    resume=bool(resume_dir))
        raise click.exceptions.Exit(1 if rc else 0)
    from pk.core.runner import train

    path, result = train(
        resolved,
        run_dir=resume_dir or run_dir,
        resume=bool(resume_dir),
        argv=["pk", *sys.argv[1:]],
        overrides=list(overrides),
        reporter=_reporter(as_json, quiet),
    )
    if as_json:
        print_json(result)
    else:
        click.echo(f"completed: {path}")
        for k, v in result.get("metrics", {}).items():
            click.echo(f"  {k} = {v:.4f}")


@click.command("eval")
@click.argument("target", type=click.Path())
@click.option("--split", default="test", show_default=True)
@click.option("-c", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override, e.g. -c evaluator.name=accuracy.")
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(target: str, split: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Evaluate TARGET (a run dir or checkpoint .pt) on --split."""
    from pathlib import Path

    from pk.core.config import load_toml
    from pk.core.errors import UsageError

    path = Path(target)
    if not path.exists():
        raise UsageError(f"{target!r} does not exist; give a run dir (see `pk runs`) or a checkpoint .pt file")
    if path.is_dir():
        if not (path / "config.toml").is_file():
            raise UsageError(f"{target!r} is not a pk run dir (no config.toml); give a dir listed by `pk runs`")
        load_toml(path / "config.toml")  # a damaged run record is an error, not silently ignored
    from pk.core.plugins import get_registry
    from pk.core.runner import evaluate

    result = evaluate(target, get_registry(), split=split, overrides=list(overrides))
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['checkpoint']} [{split}]")
    for k, v in result["metrics"].items():
        click.echo(f"  {k} = {v:.4f}")
