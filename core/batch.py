"""``pk batch``: expand a batch file into runs, execute them, and summarise over seeds.

A batch file has ``[batch]`` (name; optional paper/metric/baseline/method/metrics; ``pool``: matrix keys summarised
together with the seeds, e.g. ``["dataset.fold"]`` for k-fold CV), ``[defaults]`` (a config), ``[matrix]`` (dotted
key -> list, Cartesian product) and ``[[runs]]`` (``name`` plus ``overrides`` table or ``config`` file). Each run
gets its own run dir ``<batch dir>/<name>[-matrix values]-s<seed>-<config hash>``; ``batch.jsonl`` and
``summary.csv`` are rewritten atomically after every run, so an interrupted batch resumes.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pk.core.comparison import check_budgets, comparison_rows, pair_key, slug, summarise, write_comparison
from pk.core.config import Resolved, apply_overrides, deep_merge, dumps_toml, load_toml, resolve
from pk.core.errors import ConfigError, PkError, RunFailed, UsageError
from pk.core.io import atomic_write_json, atomic_write_text
from pk.core.registry import Registry
from pk.core.run import read_result, utc_stamp

META_KEYS = {"name", "paper", "metric", "baseline", "method", "metrics", "description", "resources", "lower_is_better",
             "pool", "unequal"}


@dataclass
class PlannedRun:
    """One expanded run of a batch."""

    name: str
    group: str
    seed: int
    resolved: Resolved
    stem: str
    #: What pairs this run with the other arm's run of the same cell: seed and pooled values.
    pair: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "seed": self.seed, "pair": self.pair or f"s{self.seed}",
                "hash": self.stem.rsplit("-", 1)[-1], "stem": self.stem}  # the stem ends in the config hash


@dataclass
class BatchSpec:
    name: str
    meta: dict[str, Any]
    runs: list[PlannedRun]
    source: str = ""


@dataclass
class Outcome:
    run: PlannedRun
    status: str
    run_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.run.as_dict(), "status": self.status, "run_dir": self.run_dir, "seconds": round(self.seconds, 3),
                "metrics": self.metrics, "error": self.error}


def split_settings(settings: Sequence[str], run_names: Iterable[str],
                   where: str) -> tuple[list[str], dict[str, list[str]]]:
    """Split ``-c`` settings into those for every run and those scoped to one run.

    ``RUN:section.key=value`` applies only to the ``[[runs]]`` entry named ``RUN`` (e.g.
    ``-c dynafed:aggregator.pixel_mean=0.47``); ``section.key=value`` applies to all."""
    names = set(run_names)
    common: list[str] = []
    scoped: dict[str, list[str]] = {}
    for text in settings:
        key = text.split("=", 1)[0]
        if ":" not in key:
            common.append(text)
            continue
        run, _, rest = text.partition(":")
        if run not in names:
            raise ConfigError(f"{where}: -c {text!r} names run {run!r}, which the recipe does not have; "
                              f"runs: {', '.join(sorted(names))}")
        scoped.setdefault(run, []).append(rest)
    return common, scoped


def parse_matrix(axes: Sequence[str]) -> dict[str, list[Any]]:
    """``--matrix KEY=V1,V2,...`` to ``{KEY: [V1, V2, ...]}``; each value parses as ``-c`` does."""
    from pk.core.config import parse_override

    out: dict[str, list[Any]] = {}
    for text in axes:
        key, sep, values = text.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or "." not in key or not items:
            raise ConfigError(f"--matrix {text!r}: write KEY=V1,V2,... with a dotted key, e.g. --matrix run.seed=0,1,2")
        out[key.strip()] = [parse_override(f"{key.strip()}={v}")[1] for v in items]
    return out


def load_batch(path: str | Path, registry: Registry, settings: Sequence[str] = (),
               matrix_axes: Sequence[str] = ()) -> BatchSpec:
    """Read and expand a batch file; every run's config is validated before any runs.

    ``settings`` (``"section.key=value"``, as ``pk train -c``) apply to every run, last; ``"RUN:section.key=value"``
    only to run ``RUN``. ``matrix_axes`` (``"key=v1,v2"``) replace or add a ``[matrix]`` axis. The declared baseline
    and method must share their protocol and budget fingerprint (see :mod:`pk.core.budget`) in every matrix cell,
    except the keys the recipe lists under ``[batch] unequal`` with a reason."""
    path = Path(path)
    data = load_toml(path)
    unknown = set(data) - {"batch", "defaults", "matrix", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; "
                          "a batch has [batch] [defaults] [matrix] [[runs]]")
    meta = dict(data.get("batch", {}))
    bad_meta = set(meta) - META_KEYS
    if bad_meta:
        raise ConfigError(f"{path}: unknown [batch] key(s) {', '.join(sorted(bad_meta))}; "
                          f"valid: {', '.join(sorted(META_KEYS))}")
    unequal = meta.get("unequal", {})
    if not isinstance(unequal, dict) or any(not isinstance(v, str) or not v.strip() for v in unequal.values()):
        raise ConfigError(f"{path}: [batch] unequal maps a key to its reason, "
                          f"e.g. unequal = {{ \"trainer.max_epochs\" = \"why\" }}")
    name = str(meta.get("name", path.stem))
    defaults = data.get("defaults", {})
    matrix = data.get("matrix", {})
    if not isinstance(matrix, dict) or any(not isinstance(v, list) or not v for v in matrix.values()):
        raise ConfigError(f"{path}: [matrix] values must be non-empty lists, e.g. \"run.seed\" = [0, 1, 2]")
    matrix = {**matrix, **parse_matrix(matrix_axes)}
    runs = data.get("runs") or [{"name": name}]
    keys = list(matrix)
    pooled = meta.get("pool", [])
    if not isinstance(pooled, list) or any(k not in matrix or k == "run.seed" for k in pooled):
        raise ConfigError(f"{path}: [batch] pool must list [matrix] keys other than run.seed, "
                          "e.g. pool = [\"dataset.fold\"]")
    for i, entry in enumerate(runs):
        if "name" not in entry:
            raise ConfigError(f"{path}: [[runs]] entry {i + 1} has no name")
    common, scoped = split_settings(settings, (e["name"] for e in runs), str(path))
    planned: list[PlannedRun] = []
    for entry in runs:
        extra = set(entry) - {"name", "overrides", "config"}
        if extra:
            raise ConfigError(f"{path}: [[runs]] {entry['name']!r} has unknown key(s) {', '.join(sorted(extra))}; "
                              f"use overrides = {{...}} or config = \"file.toml\"")
        raw = deep_merge({}, defaults)
        if "config" in entry:
            raw = deep_merge(raw, load_toml(path.parent / entry["config"]))
        raw = deep_merge(raw, entry.get("overrides", {}))
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            overrides = [f"{k}={json.dumps(v) if isinstance(v, str) else _toml_literal(v)}"
                         for k, v in zip(keys, combo)]
            run_raw = apply_overrides(raw, [*overrides, *common, *scoped.get(entry["name"], [])])
            try:
                resolved = resolve(run_raw, registry)
            except PkError as exc:
                raise type(exc)(f"{path}: run {entry['name']!r}: {exc}") from None
            seed = resolved.run.seed
            labels = [f"{k.split('.')[-1]}={slug(v)}" for k, v in zip(keys, combo)
                      if k != "run.seed" and k not in pooled]
            group = entry["name"] + (f"[{','.join(labels)}]" if labels else "")
            cell = [slug(v) for k, v in zip(keys, combo) if k != "run.seed"]
            stem = f"{slug(entry['name'])}{'-' + '-'.join(cell) if cell else ''}-s{seed}-{resolved.hash()}"
            pair = ",".join([f"s{seed}",
                             *(f"{k.split('.')[-1]}={slug(v)}" for k, v in zip(keys, combo) if k in pooled)])
            planned.append(PlannedRun(entry["name"], group, seed, resolved, stem, pair))
    names = {p.name for p in planned}
    for role in ("baseline", "method"):
        if role in meta and meta[role] not in names:
            raise ConfigError(f"{path}: [batch] {role} = {meta[role]!r} is not a run name; "
                              f"use one of {', '.join(sorted(names))}")
    stems = [p.stem for p in planned]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"{path}: two runs expand to the same config; give them different overrides or names")
    spec = BatchSpec(name=name, meta=meta, runs=planned, source=str(path))
    check_budgets(spec)
    return spec


def _toml_literal(value: Any) -> str:
    from pk.core.config import toml_value

    return toml_value(value)


def batch_dir_for(name: str, out: str | None, resume: bool, base: str = "runs") -> Path:
    """``--out`` or ``runs/batch-<name>-<UTC>``; with ``resume``, the latest such dir."""
    if out:
        return Path(out)
    root = Path(base)
    if resume:
        previous = sorted(root.glob(f"batch-{name}-*"))
        if previous:
            return previous[-1]
    return root / f"batch-{name}-{utc_stamp()}"


def _record(batch_dir: Path, outcomes: list[Outcome], spec: BatchSpec | None = None) -> None:
    atomic_write_text(batch_dir / "batch.jsonl", "".join(json.dumps(o.as_dict()) + "\n" for o in outcomes))
    rows = summarise(outcomes)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "metric", "mean", "std", "n"])
    for group, metrics in rows.items():
        for metric, (mean, std, n) in metrics.items():
            writer.writerow([group, metric, f"{mean:.6g}", f"{std:.6g}", n])
    atomic_write_text(batch_dir / "summary.csv", buf.getvalue())
    if spec is not None:
        write_comparison(batch_dir, comparison_rows(spec, outcomes))


class SubprocessPool:
    """Runs each batch run as ``python -m pk.cli train`` in a thread pool of ``jobs``."""

    def __init__(self, jobs: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=jobs)
        self.jobs = jobs

    def submit(self, run: PlannedRun, run_dir: Path) -> Any:
        return self.executor.submit(_run_subprocess, run, run_dir, self.jobs)

    def result(self, handle: Any) -> dict[str, Any]:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _run_subprocess(run: PlannedRun, run_dir: Path, jobs: int = 1) -> dict[str, Any]:
    cfg = run_dir.parent / f".{run.stem}.toml"
    atomic_write_text(cfg, dumps_toml(run.resolved.data))
    cmd = [sys.executable, "-m", "pk.cli", "train", str(cfg), "--run-dir", str(run_dir), "--json", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PK_PARALLEL_JOBS": str(jobs)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    cfg.unlink(missing_ok=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RunFailed(lines[-1] if lines else f"exit code {proc.returncode}")
    return json.loads(proc.stdout)


def run_batch(
    spec: BatchSpec,
    batch_dir: Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    continue_on_error: bool = False,
    only: Iterable[str] = (),
    reporter: Any = None,
    echo: Callable[[str], None] = lambda s: None,
    pool: Any = None,
) -> list[Outcome]:
    """Execute the planned runs; completed runs with the same config are skipped on resume.

    Runs go in-process one by one, or to ``pool`` (``submit(run, run_dir)`` / ``result(handle)``): a subprocess pool
    when ``jobs > 1``, or a Ray pool."""
    from pk.core.console import Reporter
    from pk.core.runner import train

    only = set(only)
    runs = [r for r in spec.runs if not only or r.name in only or r.group in only]
    batch_dir.mkdir(parents=True, exist_ok=True)
    batch_dir = batch_dir.resolve()  # batch.jsonl records absolute run dirs
    kept = _earlier_outcomes(batch_dir, runs)
    atomic_write_json(batch_dir / "batch.json", {"name": spec.name, "source": spec.source, "meta": spec.meta,
                                                 "runs": [o.run.as_dict() for o in kept] + [r.as_dict() for r in runs]})
    outcomes: list[Outcome] = list(kept)
    todo: list[PlannedRun] = []
    for run in runs:
        run_dir = batch_dir / run.stem
        result = read_result(run_dir) if run_dir.exists() else None
        if result and result.get("status") == "completed":
            if resume:
                outcomes.append(Outcome(run, "completed", str(run_dir), result.get("metrics", {}),
                                        result.get("seconds", 0.0)))
                echo(f"skip {run.group} seed={run.seed}: completed in {run_dir.name}")
                continue
            raise UsageError(f"{run_dir} already holds a completed run; use --resume or a new --out")
        if run_dir.exists():
            run_dir.rename(run_dir.with_name(f"{run_dir.name}.incomplete-{utc_stamp()}"))
        todo.append(run)
    total = len(todo)

    def finish(i: int, run: PlannedRun, fn: Callable[[], dict[str, Any]]) -> bool:
        run_dir = batch_dir / run.stem
        start = time.perf_counter()
        try:
            result = fn()
            outcome = Outcome(run, "completed", str(run_dir), result.get("metrics", {}),
                              float(result.get("seconds") or time.perf_counter() - start))
        except (PkError, Exception) as exc:
            outcome = Outcome(run, "failed", str(run_dir), {}, time.perf_counter() - start,
                              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        outcomes.append(outcome)
        _record(batch_dir, outcomes, spec)
        shown = spec.meta.get("metric")
        metric = f" {shown}={outcome.metrics[shown]:.4f}" if shown in outcome.metrics else ""
        echo(f"[{i}/{total}] {run.group} seed={run.seed}: {outcome.status} in {outcome.seconds:.1f}s{metric}"
             f"{' — ' + outcome.error if outcome.error else ''}")
        return outcome.status == "completed"

    if pool is None and jobs > 1:
        pool = SubprocessPool(jobs)
    if pool is None:
        quiet = reporter or Reporter("quiet")

        def run_here(run: PlannedRun) -> Callable[[], dict[str, Any]]:
            return lambda: train(run.resolved, run_dir=batch_dir / run.stem, argv=["pk", "batch", spec.source],
                                 reporter=quiet)[1]

        for i, run in enumerate(todo, 1):
            if not finish(i, run, run_here(run)) and not continue_on_error:
                break
    else:
        handles = [(run, pool.submit(run, (batch_dir / run.stem).resolve())) for run in todo]
        def collect(handle: Any) -> Callable[[], dict[str, Any]]:
            return lambda: pool.result(handle)

        for i, (run, handle) in enumerate(handles, 1):
            finish(i, run, collect(handle))
        if hasattr(pool, "close"):
            pool.close()
    _record(batch_dir, outcomes, spec)
    return outcomes


def _earlier_outcomes(batch_dir: Path, runs: list[PlannedRun]) -> list[Outcome]:
    """Outcomes already recorded in ``batch_dir`` for (group, pairing key) cells that ``runs`` does not plan.

    A second invocation with another ``--only`` adds arms to a batch dir; the arms it does not touch stay in
    ``batch.json``/``batch.jsonl`` (and so in the summary and the paired comparison) instead of being dropped."""
    if not (batch_dir / "batch.jsonl").is_file():
        return []
    planned = {(r.group, pair_key(r)) for r in runs}
    return [o for o in read_batch(batch_dir)[1] if (o.run.group, pair_key(o.run)) not in planned]


def read_batch(batch_dir: str | Path) -> tuple[BatchSpec, list[Outcome]]:
    """A finished (or interrupted) batch dir's spec meta and outcomes, from ``batch.json``
    and ``batch.jsonl``; the planned runs carry no resolved config."""
    batch_dir = Path(batch_dir)
    head = json.loads((batch_dir / "batch.json").read_text()) if (batch_dir / "batch.json").is_file() else {}
    outcomes = []
    file = batch_dir / "batch.jsonl"
    for line in (file.read_text().splitlines() if file.is_file() else []):
        d = json.loads(line)
        run = PlannedRun(d["name"], d["group"], d["seed"], None, d["stem"], d.get("pair", ""))  # type: ignore[arg-type]
        outcomes.append(Outcome(run, d["status"], d["run_dir"], d.get("metrics", {}), d.get("seconds", 0.0),
                                d.get("error", "")))
    spec = BatchSpec(name=head.get("name", batch_dir.name), meta=head.get("meta", {}), runs=[o.run for o in outcomes],
                     source=head.get("source", ""))
    return spec, outcomes
