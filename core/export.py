"""Exporters of run records to TensorBoard event files and to MLflow (both offline).

Both read a run dir or every run dir under a batch/tune dir (as ``pk runs`` finds them)
and import their library only when called: ``pip install 'pk-core[export]'``.

* TensorBoard: one event file per run in ``OUT/<run path>/`` (default ``TARGET/tensorboard``):
  a scalar ``<split>/<name>`` per metrics.jsonl value at its step and wall time, plus
  ``result/<metric>`` (result.json metrics and resources) at the last step. Exporting
  again replaces the run's earlier event files.
* MLflow: one MLflow run per run dir in an experiment (default: the target's name), named
  after the run dir, with the flattened config as params, metrics.jsonl as metric
  histories (``<split>.<name>``), result.json metrics, resources, status and times, tags
  ``pk.*`` and config.toml/result.json as artifacts. A run dir already exported to the
  experiment (tag ``pk.run_dir``) is skipped unless ``force``. MLflow metric names allow
  only letters, digits and ``_ - . / : space``; others become ``_`` (``@`` becomes ``_at_``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pk.core.errors import UsageError

SKIP = ("step", "split", "time")


def run_dirs(target: str | Path) -> list[Path]:
    """The run dir ``target``, or the run dirs under it (batch, tune or runs folder)."""
    from pk.core.index import scan

    path = Path(target)
    if (path / "config.toml").is_file():
        return [path]
    found = sorted(path / rel for rel, _ in scan(path))
    if not found:
        raise UsageError(f"{target} is neither a run dir (config.toml) nor a folder holding run dirs")
    return found


def _rel(run_dir: Path, target: Path) -> str:
    if run_dir == target:
        return "."
    return run_dir.relative_to(target).as_posix()


def read_lines(run_dir: Path) -> Iterator[dict[str, Any]]:
    """metrics.jsonl lines (torn or malformed lines skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("step"), int):
            yield item


def _result(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars(run_dir: Path) -> list[tuple[str, int, float, float]]:
    """``(tag, step, wall_time, value)`` of a run: ``<split>/<name>`` from metrics.jsonl,
    then ``result/<metric>`` (result.json metrics and ``resources.*``) at the last step."""
    out = []
    last_step, last_time = 0, 0.0
    for line in read_lines(run_dir):
        step, wall = line["step"], float(line.get("time") or 0.0)
        last_step, last_time = max(last_step, step), max(last_time, wall)
        for key, value in line.items():
            if key not in SKIP and _num(value):
                out.append((f"{line.get('split', 'train')}/{key}", step, wall, float(value)))
    result = _result(run_dir)
    final = {k: v for k, v in (result.get("metrics") or {}).items() if _num(v)}
    final.update({f"resources.{k}": v for k, v in (result.get("resources") or {}).items() if _num(v)})
    wall = float(result.get("ended") or last_time or 0.0)
    out += [(f"result/{k}", last_step, wall, float(v)) for k, v in final.items()]
    return out


# -- TensorBoard -----------------------------------------------------------------------
def export_tensorboard(target: str | Path, out: str | Path | None = None) -> list[dict[str, Any]]:
    """Write one event file per run; returns ``[{run_dir, logdir, file, scalars}]``."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise UsageError("pk export tensorboard needs tensorboard: pip install 'pk-core[export]'") from None
    target = Path(target)
    base = Path(out) if out else target / "tensorboard"
    written = []
    for run_dir in run_dirs(target):
        logdir = base / _rel(run_dir, target) if run_dir != target else base
        logdir.mkdir(parents=True, exist_ok=True)
        for old in logdir.glob("events.out.tfevents.*"):
            old.unlink()
        points = scalars(run_dir)
        writer = EventFileWriter(str(logdir), flush_secs=3600)
        for tag, step, wall, value in points:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
            writer.add_event(Event(wall_time=wall, step=step, summary=summary))
        writer.close()
        files = sorted(logdir.glob("events.out.tfevents.*"))
        written.append({"run_dir": str(run_dir), "logdir": str(logdir), "file": str(files[-1]) if files else "",
                        "scalars": len(points)})
    return written


# -- MLflow ----------------------------------------------------------------------------
_BAD_NAME = re.compile(r"[^\w\-./: ]")


def mlflow_name(key: str) -> str:
    """A metric/param name MLflow accepts (``ndcg@10`` -> ``ndcg_at_10``)."""
    return _BAD_NAME.sub("_", key.replace("@", "_at_"))


STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "crashed": "KILLED", "pruned": "KILLED"}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def export_mlflow(target: str | Path, tracking_uri: str | None = None, experiment: str | None = None,
                  force: bool = False) -> list[dict[str, Any]]:
    """Log each run to MLflow; returns ``[{run_dir, run_id, action}]`` (exported/skipped).

    A ``file:`` tracking URI is MLflow's file store (offline; MLflow 3 keeps it behind
    ``MLFLOW_ALLOW_FILE_STORE``, which is set here because the user asked for it);
    ``sqlite:///...`` works offline too."""
    from pk.core.index import live_status, read_run
    from pk.core.run_query import flatten

    if tracking_uri and tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("pk export mlflow needs mlflow: pip install 'pk-core[export]'") from None
    target = Path(target)
    runs = run_dirs(target)
    client = MlflowClient(tracking_uri=tracking_uri)
    name = experiment or (target.resolve().name if len(runs) > 1 or runs[0] != target else "pk")
    found = client.get_experiment_by_name(name)
    exp_id = found.experiment_id if found is not None else client.create_experiment(name)
    existing: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        for r in page:
            if "pk.run_dir" in r.data.tags:
                existing[r.data.tags["pk.run_dir"]] = r.info.run_id
        token = page.token
        if not token:
            break
    done = []
    for run_dir in runs:
        key = str(run_dir.resolve())
        if key in existing and not force:
            done.append({"run_dir": str(run_dir), "run_id": existing[key], "action": "skipped"})
            continue
        if key in existing:
            client.delete_run(existing[key])
        read = read_run(str(run_dir))
        config, result = read if read is not None else ({}, _result(run_dir))
        status = live_status(str(result.get("status", "unknown")), result.get("pid"), result.get("host"))
        started: Any = result.get("started")
        start_ms = int(float(started) * 1000) if _num(started) else None
        tags = {"pk.run_dir": key, "pk.status": status, "mlflow.source.name": "pk"}
        for section in ("model", "dataset", "trainer"):
            if isinstance(config.get(section), dict):
                tags[f"pk.{section}"] = str(config[section].get("name", "?"))
        run = client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=run_dir.name)
        rid = run.info.run_id
        params = [Param(mlflow_name(k)[:250], (v if isinstance(v, str) else json.dumps(v, default=str))[:6000])
                  for k, v in flatten(config).items()]
        metrics = []
        for line in read_lines(run_dir):
            stamp = int(float(line.get("time") or 0.0) * 1000)
            for k, v in line.items():
                if k not in SKIP and _num(v) and math.isfinite(v):
                    metrics.append(Metric(mlflow_name(f"{line.get('split', 'train')}.{k}"), float(v), stamp,
                                          line["step"]))
        ended: Any = result.get("ended")
        end_ms = int(float(ended) * 1000) if _num(ended) else None
        last = max((m.step for m in metrics), default=0)
        final = {k: v for k, v in (result.get("metrics") or {}).items() if _num(v)}
        final.update({f"resources.{k}": v for k, v in (result.get("resources") or {}).items() if _num(v)})
        metrics += [Metric(mlflow_name(k), float(v), end_ms or start_ms or 0, last) for k, v in final.items()
                    if math.isfinite(v)]
        for chunk in _chunks(params, 100):
            client.log_batch(rid, params=chunk)
        for chunk in _chunks(metrics, 1000):
            client.log_batch(rid, metrics=chunk)
        client.log_batch(rid, tags=[RunTag("pk.config_hash", _hash(config))])
        for name_ in ("config.toml", "result.json"):
            if (run_dir / name_).is_file():
                client.log_artifact(rid, str(run_dir / name_))
        if status in STATUS:
            client.set_terminated(rid, STATUS[status], end_time=end_ms)
        done.append({"run_dir": str(run_dir), "run_id": rid, "action": "exported"})
    return done


def _hash(config: dict[str, Any]) -> str:
    from pk.core.config import config_hash

    return config_hash(config) if config else ""
