"""Comparisons in a batch: the budget guard, means over seeds, the paired baseline/method
rows with their verdicts, and how they are printed and written (``comparison.csv``).

Pairs are made by seed (and the recipe's pooled matrix keys) in every matrix cell; every
figure comes from :mod:`pk.core.stats`. Nothing here runs anything.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pk.core.errors import ConfigError
from pk.core.io import atomic_write_text

if TYPE_CHECKING:
    from pk.core.batch import BatchSpec, Outcome, PlannedRun


def slug(value: Any) -> str:
    """A value as a short file-name-safe label (run dir stems, pairing keys)."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in text)[:40]


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
                f"({fb.get(field_name, '<unset>')!r} vs {fm.get(field_name, '<unset>')!r}); "
                "give both arms one value, or declare "
                f"[batch] unequal = {{ \"{field_name}\" = \"<reason>\" }}"
            )


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


def pair_key(run: PlannedRun) -> str:
    """The pairing key of a run: ``run.pair``, or for old batch records (no ``pair``) its
    stem without the run name and config hash (matrix values and seed)."""
    if run.pair:
        return run.pair
    return run.stem[len(slug(run.name)):].rsplit("-", 1)[0]


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
            "baseline_stats": stats.get(base + cell, {}).get(metric),
            "method_stats": stats.get(method + cell, {}).get(metric),
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
    return bool(words & {"loss", "perplexity", "ppl", "forgetting", "fm", "seconds", "time", "error",
                         "mse", "mae", "rmse"})


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
