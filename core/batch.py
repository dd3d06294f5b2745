"""``pk batch``: expand a batch file into runs, execute them, and summarise over seeds.

A batch file has ``[batch]`` (name; optional paper/metric/baseline/method/metrics; ``pool``:
matrix keys summarised together with the seeds, e.g. ``["dataset.fold"]`` for k-fold CV),
``[defaults]`` (a config), ``[matrix]`` (dotted key -> list, Cartesian product) and
``[[runs]]`` (``name`` plus ``overrides`` table or ``config`` file). Each run gets its own
run dir ``<batch dir>/<name>[-matrix values]-s<seed>-<config hash>``; ``batch.jsonl`` and
``summary.csv`` are rewritten atomically after every run, so an interrupted batch resumes.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pk.core.config import Resolved, apply_overrides, deep_merge, dumps_toml, load_toml, resolve
from pk.core.errors import ConfigError, PkError, RunFailed, UsageError
from pk.core.io import atomic_write_json, atomic_write_text
from pk.core.registry import Registry
from pk.core.run import read_result, utc_stamp

META_KEYS = {"name", "paper", "metric", "baseline", "method", "metrics", "description", "resources", "lower_is_better", "pool"}


@dataclass
class PlannedRun:
    """One expanded run of a batch."""

    name: str
    group: str
    seed: int
    resolved: Resolved
    stem: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "seed": self.seed, "hash": self.resolved.hash(), "stem": self.stem}


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
        return {**self.run.as_dict(), "status": self.status, "run_dir": self.run_dir, "seconds": round(self.seconds, 3), "metrics": self.metrics, "error": self.error}


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in text)[:40]


def load_batch(path: str | Path, registry: Registry, settings: Sequence[str] = ()) -> BatchSpec:
    """Read and expand a batch file; every run's config is validated before any runs.
    ``settings`` (``"section.key=value"``, as ``pk train -c``) apply to every run, last."""
    path = Path(path)
    data = load_toml(path)
    unknown = set(data) - {"batch", "defaults", "matrix", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; a batch has [batch] [defaults] [matrix] [[runs]]")
    meta = dict(data.get("batch", {}))
    bad_meta = set(meta) - META_KEYS
    if bad_meta:
        raise ConfigError(f"{path}: unknown [batch] key(s) {', '.join(sorted(bad_meta))}; valid: {', '.join(sorted(META_KEYS))}")
    name = str(meta.get("name", path.stem))
    defaults = data.get("defaults", {})
    matrix = data.get("matrix", {})
    if not isinstance(matrix, dict) or any(not isinstance(v, list) or not v for v in matrix.values()):
        raise ConfigError(f"{path}: [matrix] values must be non-empty lists, e.g. \"run.seed\" = [0, 1, 2]")
    runs = data.get("runs") or [{"name": name}]
    keys = list(matrix)
    pooled = meta.get("pool", [])
    if not isinstance(pooled, list) or any(k not in matrix or k == "run.seed" for k in pooled):
        raise ConfigError(f"{path}: [batch] pool must list [matrix] keys other than run.seed, e.g. pool = [\"dataset.fold\"]")
    planned: list[PlannedRun] = []
    for i, entry in enumerate(runs):
        if "name" not in entry:
            raise ConfigError(f"{path}: [[runs]] entry {i + 1} has no name")
        extra = set(entry) - {"name", "overrides", "config"}
        if extra:
            raise ConfigError(f"{path}: [[runs]] {entry['name']!r} has unknown key(s) {', '.join(sorted(extra))}; use overrides = {{...}} or config = \"file.toml\"")
        raw = deep_merge({}, defaults)
        if "config" in entry:
            raw = deep_merge(raw, load_toml(path.parent / entry["config"]))
        raw = deep_merge(raw, entry.get("overrides", {}))
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            overrides = [f"{k}={json.dumps(v) if isinstance(v, str) else _toml_literal(v)}" for k, v in zip(keys, combo)]
            run_raw = apply_overrides(raw, [*overrides, *settings])
            try:
                resolved = resolve(run_raw, registry)
            except PkError as exc:
                raise type(exc)(f"{path}: run {entry['name']!r}: {exc}") from None
            seed = resolved.run.seed
            labels = [f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, combo) if k != "run.seed" and k not in pooled]
            group = entry["name"] + (f"[{','.join(labels)}]" if labels else "")
            cell = [_slug(v) for k, v in zip(keys, combo) if k != "run.seed"]
            stem = f"{_slug(entry['name'])}{'-' + '-'.join(cell) if cell else ''}-s{seed}-{resolved.hash()}"
            planned.append(PlannedRun(entry["name"], group, seed, resolved, stem))
    names = {p.name for p in planned}
    for role in ("baseline", "method"):
        if role in meta and meta[role] not in names:
            raise ConfigError(f"{path}: [batch] {role} = {meta[role]!r} is not a run name; use one of {', '.join(sorted(names))}")
    stems = [p.stem for p in planned]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"{path}: two runs expand to the same config; give them different overrides or names")
    return BatchSpec(name=name, meta=meta, runs=planned, source=str(path))


def _toml_literal(value: Any) -> str:
    from pk.core.config import _toml_value

    return _toml_value(value)


def resolve_recipe(ref: str, registry: Registry) -> Path:
    """``FILE.toml`` or ``PLUGIN:RECIPE`` (a plugin's ``recipes/RECIPE.toml``) to a path."""
    p = Path(ref)
    if p.suffix == ".toml" and ":" not in ref.replace(":\\", ""):
        if not p.is_file():
            raise UsageError(f"batch file {ref!r} does not exist")
        return p
    plugin, sep, recipe = ref.partition(":")
    if not sep:
        raise UsageError(f"{ref!r} is neither a .toml file nor PLUGIN:RECIPE (e.g. pk-seqrec:quick)")
    folder = recipe_dir(plugin, registry)
    path = folder / f"{recipe}.toml"
    if not path.is_file():
        have = sorted(x.stem for x in folder.glob("*.toml"))
        raise UsageError(f"plugin {plugin} has no recipe {recipe!r}; it has: {', '.join(have) or 'none'}")
    return path


def recipe_dir(plugin: str, registry: Registry) -> Path:
    import importlib.util

    for info in registry.plugins:
        if plugin in (info.distribution, info.name) and not info.error:
            package = "pk.core" if info.builtin else info.module.split(":")[0].rsplit(".", 1)[0]
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                break
            return Path(list(spec.submodule_search_locations)[0]) / "recipes"
    loaded = ", ".join(p.distribution for p in registry.plugins if not p.error)
    raise UsageError(f"plugin {plugin!r} is not installed (installed: {loaded}); `pk install {plugin}`")


def quick_recipes(registry: Registry) -> list[Path]:
    """Every loaded plugin's ``recipes/quick.toml`` (built-ins first)."""
    out = []
    for info in registry.plugins:
        if info.error:
            continue
        try:
            path = recipe_dir(info.distribution, registry) / "quick.toml"
        except UsageError:
            continue
        if path.is_file() and path not in out:
            out.append(path)
    return out


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


def _record(batch_dir: Path, outcomes: list[Outcome]) -> None:
    atomic_write_text(batch_dir / "batch.jsonl", "".join(json.dumps(o.as_dict()) + "\n" for o in outcomes))
    rows = summarise(outcomes)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "metric", "mean", "std", "n"])
    for group, metrics in rows.items():
        for metric, (mean, std, n) in metrics.items():
            writer.writerow([group, metric, f"{mean:.6g}", f"{std:.6g}", n])
    atomic_write_text(batch_dir / "summary.csv", buf.getvalue())


def summarise(outcomes: Iterable[Outcome]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """group -> metric -> (mean, sample std, n) over completed runs."""
    values: dict[str, dict[str, list[float]]] = {}
    for o in outcomes:
        if o.status != "completed":
            continue
        for k, v in o.metrics.items():
            values.setdefault(o.run.group, {}).setdefault(k, []).append(float(v))
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for group, metrics in values.items():
        out[group] = {}
        for k, vs in metrics.items():
            mean = sum(vs) / len(vs)
            std = math.sqrt(sum((x - mean) ** 2 for x in vs) / (len(vs) - 1)) if len(vs) > 1 else 0.0
            out[group][k] = (mean, std, len(vs))
    return out


class SubprocessPool:
    """Runs each batch run as ``python -m pk.cli train`` in a thread pool of ``jobs``."""

    def __init__(self, jobs: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(max_workers=jobs)

    def submit(self, run: PlannedRun, run_dir: Path) -> Any:
        return self.executor.submit(_run_subprocess, run, run_dir)

    def result(self, handle: Any) -> dict[str, Any]:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def _run_subprocess(run: PlannedRun, run_dir: Path) -> dict[str, Any]:
    cfg = run_dir.parent / f".{run.stem}.toml"
    atomic_write_text(cfg, dumps_toml(run.resolved.data))
    cmd = [sys.executable, "-m", "pk.cli", "train", str(cfg), "--run-dir", str(run_dir), "--json", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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

    Runs go in-process one by one, or to ``pool`` (``submit(run, run_dir)`` /
    ``result(handle)``): a subprocess pool when ``jobs > 1``, or a Ray pool.
    """
    from pk.core.console import Reporter
    from pk.core.runner import train

    only = set(only)
    runs = [r for r in spec.runs if not only or r.name in only or r.group in only]
    batch_dir.mkdir(parents=True, exist_ok=True)
    batch_dir = batch_dir.resolve()  # batch.jsonl records absolute run dirs
    atomic_write_json(batch_dir / "batch.json", {"name": spec.name, "source": spec.source, "meta": spec.meta, "runs": [r.as_dict() for r in runs]})
    outcomes: list[Outcome] = []
    todo: list[PlannedRun] = []
    for run in runs:
        run_dir = batch_dir / run.stem
        result = read_result(run_dir) if run_dir.exists() else None
        if result and result.get("status") == "completed":
            if resume:
                outcomes.append(Outcome(run, "completed", str(run_dir), result.get("metrics", {}), result.get("seconds", 0.0)))
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
            outcome = Outcome(run, "completed", str(run_dir), result.get("metrics", {}), float(result.get("seconds") or time.perf_counter() - start))
        except (PkError, Exception) as exc:  # noqa: BLE001
            outcome = Outcome(run, "failed", str(run_dir), {}, time.perf_counter() - start, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        outcomes.append(outcome)
        _record(batch_dir, outcomes)
        shown = spec.meta.get("metric")
        metric = f" {shown}={outcome.metrics[shown]:.4f}" if shown in outcome.metrics else ""
        echo(f"[{i}/{total}] {run.group} seed={run.seed}: {outcome.status} in {outcome.seconds:.1f}s{metric}{' — ' + outcome.error if outcome.error else ''}")
        return outcome.status == "completed"

    if pool is None and jobs > 1:
        pool = SubprocessPool(jobs)
    if pool is None:
        for i, run in enumerate(todo, 1):
            ok = finish(i, run, lambda run=run: train(run.resolved, run_dir=batch_dir / run.stem, argv=["pk", "batch", spec.source], reporter=reporter or Reporter("quiet"))[1])
            if not ok and not continue_on_error:
                break
    else:
        handles = [(run, pool.submit(run, (batch_dir / run.stem).resolve())) for run in todo]
        for i, (run, handle) in enumerate(handles, 1):
            finish(i, run, lambda handle=handle: pool.result(handle))
        if hasattr(pool, "close"):
            pool.close()
    _record(batch_dir, outcomes)
    return outcomes


def comparison_rows(spec: BatchSpec, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Baseline-vs-method rows the recipe declares in [batch], one per matrix cell
    (groups ``name[key=value,...]`` are compared within the same cell)."""
    meta = spec.meta
    metric, base, method = meta.get("metric"), meta.get("baseline"), meta.get("method")
    if not (metric and base and method):
        return []
    stats = summarise(outcomes)
    cells = sorted({g[len(base):] for g in stats if g == base or g.startswith(base + "[")})
    rows = []
    for cell in cells or [""]:
        b = stats.get(base + cell, {}).get(metric)
        m = stats.get(method + cell, {}).get(metric)
        lower = bool(meta.get("lower_is_better", lower_is_better(metric)))
        row = {"paper": meta.get("paper", spec.name) + (f" {cell}" if cell else ""), "recipe": spec.name, "metric": metric,
               "baseline": base, "method": method, "baseline_stats": b, "method_stats": m, "lower_is_better": lower}
        row["delta"] = (m[0] - b[0]) if (b and m) else None
        rows.append(row)
    return rows


def lower_is_better(metric: str) -> bool:
    """Default direction of a metric from its name (losses, perplexity, forgetting, time)."""
    import re

    words = set(re.split(r"[^a-z0-9]+", metric.rsplit(".", 1)[-1].lower()))
    return bool(words & {"loss", "perplexity", "ppl", "forgetting", "fm", "seconds", "time", "error", "mse", "mae", "rmse"})


def verdict(row: dict[str, Any]) -> str:
    d = row.get("delta")
    if d is None:
        return "n/a"
    b, m = row.get("baseline_stats"), row.get("method_stats")
    spread = max(b[1], m[1]) if b and m else 0.0
    better = d < 0 if row.get("lower_is_better") else d > 0
    side = "method" if better else "baseline"
    if d == 0 or (b and m and min(b[2], m[2]) > 1 and abs(d) <= spread):
        return f"{side} ahead within 1 std" if d else "tie"
    return f"{side} better"


def fmt_stat(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "n/a"
    mean, std, n = stat
    return f"{mean:.4f} ± {std:.4f} (n={n})"
