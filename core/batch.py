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
import os
import statistics
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

META_KEYS = {"name", "paper", "metric", "baseline", "method", "metrics", "description", "resources", "lower_is_better", "pool",
             "unequal"}


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
                "hash": self.resolved.hash(), "stem": self.stem}


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


def split_settings(settings: Sequence[str], run_names: Iterable[str], where: str) -> tuple[list[str], dict[str, list[str]]]:
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

    ``settings`` (``"section.key=value"``, as ``pk train -c``) apply to every run, last;
    ``"RUN:section.key=value"`` only to run ``RUN``. ``matrix_axes`` (``"key=v1,v2"``)
    replace or add a ``[matrix]`` axis. The declared baseline and method must share their
    protocol and budget fingerprint (see :mod:`pk.core.budget`) in every matrix cell,
    except the keys the recipe lists under ``[batch] unequal`` with a reason."""
    path = Path(path)
    data = load_toml(path)
    unknown = set(data) - {"batch", "defaults", "matrix", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; a batch has [batch] [defaults] [matrix] [[runs]]")
    meta = dict(data.get("batch", {}))
    bad_meta = set(meta) - META_KEYS
    if bad_meta:
        raise ConfigError(f"{path}: unknown [batch] key(s) {', '.join(sorted(bad_meta))}; valid: {', '.join(sorted(META_KEYS))}")
    unequal = meta.get("unequal", {})
    if not isinstance(unequal, dict) or any(not isinstance(v, str) or not v.strip() for v in unequal.values()):
        raise ConfigError(f"{path}: [batch] unequal maps a key to its reason, e.g. unequal = {{ \"trainer.max_epochs\" = \"why\" }}")
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
        raise ConfigError(f"{path}: [batch] pool must list [matrix] keys other than run.seed, e.g. pool = [\"dataset.fold\"]")
    for i, entry in enumerate(runs):
        if "name" not in entry:
            raise ConfigError(f"{path}: [[runs]] entry {i + 1} has no name")
    common, scoped = split_settings(settings, (e["name"] for e in runs), str(path))
    planned: list[PlannedRun] = []
    for entry in runs:
        extra = set(entry) - {"name", "overrides", "config"}
        if extra:
            raise ConfigError(f"{path}: [[runs]] {entry['name']!r} has unknown key(s) {', '.join(sorted(extra))}; use overrides = {{...}} or config = \"file.toml\"")
        raw = deep_merge({}, defaults)
        if "config" in entry:
            raw = deep_merge(raw, load_toml(path.parent / entry["config"]))
        raw = deep_merge(raw, entry.get("overrides", {}))
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            overrides = [f"{k}={json.dumps(v) if isinstance(v, str) else _toml_literal(v)}" for k, v in zip(keys, combo)]
            run_raw = apply_overrides(raw, [*overrides, *common, *scoped.get(entry["name"], [])])
            try:
                resolved = resolve(run_raw, registry)
            except PkError as exc:
                raise type(exc)(f"{path}: run {entry['name']!r}: {exc}") from None
            seed = resolved.run.seed
            labels = [f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, combo) if k != "run.seed" and k not in pooled]
            group = entry["name"] + (f"[{','.join(labels)}]" if labels else "")
            cell = [_slug(v) for k, v in zip(keys, combo) if k != "run.seed"]
            stem = f"{_slug(entry['name'])}{'-' + '-'.join(cell) if cell else ''}-s{seed}-{resolved.hash()}"
            pair = ",".join([f"s{seed}", *(f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, combo) if k in pooled)])
            planned.append(PlannedRun(entry["name"], group, seed, resolved, stem, pair))
    names = {p.name for p in planned}
    for role in ("baseline", "method"):
        if role in meta and meta[role] not in names:
            raise ConfigError(f"{path}: [batch] {role} = {meta[role]!r} is not a run name; use one of {', '.join(sorted(names))}")
    stems = [p.stem for p in planned]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"{path}: two runs expand to the same config; give them different overrides or names")
    spec = BatchSpec(name=name, meta=meta, runs=planned, source=str(path))
    check_budgets(spec)
    return spec


def check_budgets(spec: BatchSpec) -> None:
    """Refuse a baseline/method pair whose fingerprints differ outside ``[batch] unequal``."""
    from pk.core.budget import differences, fingerprint

    base, method = spec.meta.get("baseline"), spec.meta.get("method")
    if not (base and method):
        return
    unequal = spec.meta.get("unequal", {})
    arms: dict[str, dict[tuple[str, str], PlannedRun]] = {base: {}, method: {}}
    for run in spec.runs:
        if run.name in arms:
            arms[run.name][(run.group[len(run.name):], run.pair)] = run
    for key, b in arms[base].items():
        m = arms[method].get(key)
        if m is None:
            continue
        fb, fm = fingerprint(b.resolved), fingerprint(m.resolved)
        for field_name in differences(fb, fm):
            if field_name in unequal:
                continue
            raise ConfigError(
                f"{spec.source}: baseline {base!r} and method {method!r} differ in {field_name} "
                f"({fb.get(field_name, '<unset>')!r} vs {fm.get(field_name, '<unset>')!r}); give both arms one value, or declare "
                f"[batch] unequal = {{ \"{field_name}\" = \"<reason>\" }}"
            )


def _toml_literal(value: Any) -> str:
    from pk.core.config import toml_value

    return toml_value(value)


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


def write_comparison(batch_dir: Path, rows: list[dict[str, Any]], name: str = "comparison.csv") -> Path:
    """``comparison.csv``: one line per baseline/method cell with its paired figures."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["paper", "metric", "baseline", "method", "n", "mean_diff", "ci95_low", "ci95_high", "p_ttest",
                     "p_wilcoxon", "bootstrap_p", "verdict"])
    for r in rows:
        p = r.get("paired") or {}
        writer.writerow([r["paper"], r["metric"], r["baseline"], r["method"], p.get("n", 0), _num(p.get("mean")),
                         _num(p.get("low")), _num(p.get("high")), _num(p.get("p")), _num(p.get("p_wilcoxon")),
                         ";".join(_num(b["p"]) for b in r.get("bootstrap", [])), r.get("verdict", "n/a")])
    atomic_write_text(batch_dir / name, buf.getvalue())
    return batch_dir / name


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


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
            out[group][k] = (statistics.fmean(vs), statistics.stdev(vs) if len(vs) > 1 else 0.0, len(vs))
    return out


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
        _record(batch_dir, outcomes, spec)
        shown = spec.meta.get("metric")
        metric = f" {shown}={outcome.metrics[shown]:.4f}" if shown in outcome.metrics else ""
        echo(f"[{i}/{total}] {run.group} seed={run.seed}: {outcome.status} in {outcome.seconds:.1f}s{metric}{' — ' + outcome.error if outcome.error else ''}")
        return outcome.status == "completed"

    if pool is None and jobs > 1:
        pool = SubprocessPool(jobs)
    if pool is None:
        quiet = reporter or Reporter("quiet")

        def run_here(run: PlannedRun) -> Callable[[], dict[str, Any]]:
            return lambda: train(run.resolved, run_dir=batch_dir / run.stem, argv=["pk", "batch", spec.source], reporter=quiet)[1]

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
        outcomes.append(Outcome(run, d["status"], d["run_dir"], d.get("metrics", {}), d.get("seconds", 0.0), d.get("error", "")))
    spec = BatchSpec(name=head.get("name", batch_dir.name), meta=head.get("meta", {}), runs=[o.run for o in outcomes],
                     source=head.get("source", ""))
    return spec, outcomes


def pair_key(run: PlannedRun) -> str:
    """The pairing key of a run: ``run.pair``, or for old batch records (no ``pair``) its
    stem without the run name and config hash (matrix values and seed)."""
    if run.pair:
        return run.pair
    return run.stem[len(_slug(run.name)):].rsplit("-", 1)[0]


def example_scores(run_dir: str, metric: str) -> Any:
    """The per-example scores behind ``metric`` (``"test.ndcg@10"`` reads
    ``examples-test.npz["ndcg@10"]``) in a run dir, or None."""
    split, _, name = metric.partition(".")
    file = Path(run_dir) / f"examples-{split}.npz"
    if not name or not file.is_file():
        return None
    import numpy as np

    with np.load(file, allow_pickle=False) as data:
        return data[name] if name in data.files else None


def comparison_rows(spec: BatchSpec, outcomes: list[Outcome], *, bootstrap: bool = True) -> list[dict[str, Any]]:
    """Baseline-vs-method rows the recipe declares in [batch], one per matrix cell
    (groups ``name[key=value,...]`` are compared within the same cell).

    Each row pairs completed runs by seed (and pooled matrix values) and carries the
    paired statistics of ``method - baseline`` (:func:`pk.core.stats.paired_difference`),
    a per-pair bootstrap over test examples where both runs wrote example scores, the
    epochs each arm ran, and the verdict words those figures give."""
    from pk.core.stats import paired_bootstrap, paired_difference, verdict_words

    meta = spec.meta
    metric, base, method = meta.get("metric"), meta.get("baseline"), meta.get("method")
    if not (metric and base and method):
        return []
    stats = summarise(outcomes)
    lower = bool(meta.get("lower_is_better", lower_is_better(metric)))
    done = [o for o in outcomes if o.status == "completed" and metric in o.metrics]
    cells = sorted({g[len(base):] for g in stats if g == base or g.startswith(base + "[")})
    rows = []
    for cell in cells or [""]:
        arms = {arm: {pair_key(o.run): o for o in done if o.run.group == arm + cell} for arm in (base, method)}
        keys = sorted(set(arms[base]) & set(arms[method]))
        row: dict[str, Any] = {
            "paper": meta.get("paper", spec.name) + (f" {cell}" if cell else ""), "recipe": spec.name, "metric": metric,
            "baseline": base, "method": method, "lower_is_better": lower,
            "baseline_stats": stats.get(base + cell, {}).get(metric), "method_stats": stats.get(method + cell, {}).get(metric),
            "pairs": keys, "paired": None, "bootstrap": [],
            "epochs": {arm: _epochs(arms[arm][k] for k in keys) for arm in (base, method)},
            "unequal": dict(meta.get("unequal", {})), "cost_ratio": None,
        }
        if keys:
            b = [arms[base][k].metrics[metric] for k in keys]
            m = [arms[method][k].metrics[metric] for k in keys]
            row["paired"] = paired_difference(b, m).as_dict()
        if bootstrap:
            for i, k in enumerate(keys):
                sb, sm = example_scores(arms[base][k].run_dir, metric), example_scores(arms[method][k].run_dir, metric)
                if sb is not None and sm is not None and sb.shape == sm.shape and sb.size >= 2:
                    row["bootstrap"].append({"pair": k, **paired_bootstrap(sb, sm, seed=i).as_dict()})
        if keys:
            secs = {arm: sum(arms[arm][k].seconds for k in keys) for arm in (base, method)}
            row["cost_ratio"] = secs[method] / secs[base] if secs[base] > 0 else None
        row["delta"] = row["paired"]["mean"] if row["paired"] else None
        row["verdict"] = _row_verdict(row, verdict_words)
        rows.append(row)
    return rows


def _epochs(outcomes: Iterable[Outcome]) -> dict[str, list[float]]:
    """``fit.epochs_run`` and ``fit.best_epoch`` of each paired run (lists; empty if unreported)."""
    outs = list(outcomes)
    return {k: [o.metrics[f"fit.{k}"] for o in outs if f"fit.{k}" in o.metrics] for k in ("epochs_run", "best_epoch")}


def _row_verdict(row: dict[str, Any], words: Callable[..., str]) -> str:
    paired, boots = row["paired"], row["bootstrap"]
    if paired is None:
        return "n/a"
    lower = row["lower_is_better"]
    if paired["n"] >= 2:
        return words(paired["mean"], paired["p"], lower_is_better=lower, n=paired["n"])
    if boots:
        b = boots[0]
        return words(b["mean"], b["p"], lower_is_better=lower, test=f"bootstrap over {b['examples']} examples, ")
    return "n = 1, no test"


def lower_is_better(metric: str) -> bool:
    """Default direction of a metric from its name (losses, perplexity, forgetting, time)."""
    import re

    words = set(re.split(r"[^a-z0-9]+", metric.rsplit(".", 1)[-1].lower()))
    return bool(words & {"loss", "perplexity", "ppl", "forgetting", "fm", "seconds", "time", "error", "mse", "mae", "rmse"})


def verdict(row: dict[str, Any]) -> str:
    """The row's verdict words (computed by :func:`comparison_rows` from its paired figures)."""
    return str(row.get("verdict", "n/a"))


def fmt_paired(row: dict[str, Any]) -> str:
    """``+0.0123 [+0.0040, +0.0206]`` (mean paired difference and 95% t-interval)."""
    p = row.get("paired")
    if not p:
        return "n/a"
    if p["low"] is None:
        return f"{p['mean']:+.4f} (n=1)"
    return f"{p['mean']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}]"


def fmt_epochs(epochs: dict[str, list[float]]) -> str:
    """``7,7,8 (best 3,3,4)`` from a row's per-arm epochs, or ``""``."""
    run, best = epochs.get("epochs_run", []), epochs.get("best_epoch", [])
    if not run:
        return ""
    text = ",".join(f"{x:g}" for x in run)
    return text + (f" (best {','.join(f'{x:g}' for x in best)})" if best else "")


def fmt_bootstrap(row: dict[str, Any]) -> str:
    """Per-pair bootstrap p-values, e.g. ``p 0.001, 0.02, 0.3`` (or ``""``)."""
    from pk.core.stats import fmt_p

    boots = row.get("bootstrap") or []
    shown = [fmt_p(b["p"]) if b["p"] > 0 else f"<{1 / b['resamples']:.1g}" for b in boots]
    return ("p " + ", ".join(shown)) if boots else ""


def fmt_stat(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "n/a"
    mean, std, n = stat
    return f"{mean:.4f} ± {std:.4f} (n={n})"
