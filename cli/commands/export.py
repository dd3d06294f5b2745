"""``pk export``: run records to TensorBoard event files or to MLflow (offline; optional extras)."""

from __future__ import annotations

import click

from pk.cli.output import print_json, print_table


@click.group("export")
def export_cmd() -> None:
    """Export a run dir, or every run under a batch/tune dir, to TensorBoard or MLflow.

    Needs the export extra: pip install 'pk-core[export]' (tensorboard, mlflow-skinny)."""


@export_cmd.command("tensorboard")
@click.argument("target", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Log dir (default TARGET/tensorboard).")
@click.option("--json", "as_json", is_flag=True)
def tensorboard_cmd(target: str, out: str | None, as_json: bool) -> None:
    """Write TensorBoard event files from metrics.jsonl and result.json (one log dir per run);
    view with `tensorboard --logdir OUT`."""
    from pk.core.export import export_tensorboard

    written = export_tensorboard(target, out)
    if as_json:
        print_json(written)
        return
    print_table(None, ["run", "scalars", "event file"], [(w["run_dir"], w["scalars"], w["file"]) for w in written])


@export_cmd.command("mlflow")
@click.argument("target", type=click.Path(exists=True, file_okay=False))
@click.option("--tracking-uri", default=None, metavar="URI",
              help="e.g. file:./mlruns or sqlite:///mlflow.db (default: MLFLOW_TRACKING_URI, else MLflow's default).")
@click.option("--experiment", default=None, help="Experiment name (default: the batch dir's name, or 'pk').")
@click.option("--force", is_flag=True, help="Re-export runs already in the experiment (replacing them).")
@click.option("--json", "as_json", is_flag=True)
def mlflow_cmd(target: str, tracking_uri: str | None, experiment: str | None, force: bool, as_json: bool) -> None:
    """Log runs to MLflow: config as params, metric histories, result metrics, resources,
    status and times; runs already exported (same run dir) are skipped."""
    from pk.core.export import export_mlflow

    done = export_mlflow(target, tracking_uri, experiment, force)
    if as_json:
        print_json(done)
        return
    print_table(None, ["run", "mlflow run id", "action"], [(d["run_dir"], d["run_id"], d["action"]) for d in done])
