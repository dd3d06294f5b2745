"""The ``[tune]`` table: search spaces, arms, the trial plan and the tune dir (no Optuna here)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pk.core.batch import BatchSpec, PlannedRun
from pk.core.comparison import lower_is_better
from pk.core.config import apply_overrides, dumps_toml, load_toml, resolve
from pk.core.errors import ConfigError, PkError, UsageError
from pk.core.io import atomic_write_text
from pk.core.registry import Registry
from pk.core.run import utc_stamp

TUNE_KEYS = {"trials", "metric", "direction", "sampler", "pruner", "seed", "startup_trials", "warmup_epochs", "arms",
             "space", "runs"}
KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "asha", "none")
STUDY_FILE = "study.sqlite"
TRIALS_DIR = "trials"
FINAL_DIR = "final"


@dataclass
class Param:
    """One search-space dimension of a config key."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def extremes(self) -> list[Any]:
        """Values that must all resolve: the bounds, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "log_int"):
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def suggest(self, trial: Any) -> Any:
        """Draw this dimension from an Optuna trial (non-scalar choices go by their JSON)."""
        if self.kind == "uniform":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.kind == "log_uniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1))
        if self.kind == "log_int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=True)
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
            return trial.suggest_categorical(self.key, self.choices)
        encoded = [json.dumps(c) for c in self.choices]
        return json.loads(trial.suggest_categorical(self.key, encoded))

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choice": self.choices}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass
class TuneSpec:
    """The ``[tune]`` table, checked."""

    metric: str
    direction: str
    trials: dict[str, int]
    space: dict[str, list[Param]]
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    startup_trials: int = 2
    warmup_epochs: int = 1

    @property
    def arms(self) -> list[str]:
        return list(self.trials)

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "trials": self.trials, "sampler": self.sampler,
                "pruner": self.pruner, "seed": self.seed, "startup_trials": self.startup_trials,
                "warmup_epochs": self.warmup_epochs,
                "space": {arm: {p.key: p.as_dict() for p in params} for arm, params in self.space.items()}}


@dataclass
class TunePlan:
    """A loaded tune recipe: the [tune] spec, the batch it tunes, and each arm's base run."""

    spec: TuneSpec
    batch: BatchSpec
    base: dict[str, PlannedRun]
    recipe: dict[str, Any]
    source: str
    settings: list[str] = field(default_factory=list)
    matrix_axes: list[str] = field(default_factory=list)


# -- loading ---------------------------------------------------------------------------
def parse_space(table: Any, where: str) -> dict[str, Param]:
    """``{"trainer.lr": {"log_uniform": [1e-4, 1e-2]}, ...}`` to Params (ConfigError if malformed)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: space must be a table of key = {{ kind = [...] }}, e.g. "
                          "space = { \"trainer.lr\" = { log_uniform = [1e-4, 1e-2] } }")
    out: dict[str, Param] = {}
    for key, entry in table.items():
        if not isinstance(key, str) or key.count(".") != 1 or not all(key.split(".")):
            raise ConfigError(f"{where}: space key {key!r} must be section.key, e.g. \"trainer.lr\"")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: space {key!r} must be a table such as {{ uniform = [0.0, 0.5] }}")
        kinds = [k for k in entry if k in KINDS]
        extra = set(entry) - set(KINDS) - {"step"}
        if len(kinds) != 1 or extra:
            raise ConfigError(f"{where}: space {key!r} needs exactly one of {', '.join(KINDS)} (and optional step), "
                              f"got {', '.join(map(str, entry)) or 'nothing'}")
        kind = kinds[0]
        value = entry[kind]
        if kind == "choice":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}: space {key!r} choice must be a non-empty list")
            out[key] = Param(key, kind, choices=list(value))
            continue
        if (not isinstance(value, list) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)):
            raise ConfigError(f"{where}: space {key!r} {kind} must be [low, high] (two finite numbers)")
        low, high = value
        if not low < high:
            raise ConfigError(f"{where}: space {key!r} {kind} needs low < high, got [{low}, {high}]")
        if kind.startswith("log") and low <= 0:
            raise ConfigError(f"{where}: space {key!r} {kind} needs low > 0, got {low}")
        if kind in ("int", "log_int") and (low != int(low) or high != int(high)):
            raise ConfigError(f"{where}: space {key!r} {kind} bounds must be integers, got [{low}, {high}]")
        step = entry.get("step")
        if step is not None and (kind != "int" or isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise ConfigError(f"{where}: space {key!r}: step is a whole number >= 1 and only for int")
        if step is not None and (high - low) % step:
            raise ConfigError(f"{where}: space {key!r}: high - low ({high - low:g}) "
                              f"must be a multiple of step ({step})")
        out[key] = Param(key, kind, float(low), float(high), step)
    return out


def _int(table: Mapping[str, Any], key: str, default: int, low: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: [tune] {key} must be a whole number >= {low}, got {value!r}")
    return value


def parse_tune(table: Any, run_names: Sequence[str], meta: Mapping[str, Any], where: str,
               trials_override: int | None = None) -> TuneSpec:
    """Check a ``[tune]`` table against the recipe's runs (ConfigError, exit 2, if wrong)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [tune] must be a table")
    unknown = set(table) - TUNE_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown [tune] key(s) {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(sorted(TUNE_KEYS))}")
    metric = table.get("metric")
    if not isinstance(metric, str) or "." not in metric:
        raise ConfigError(f"{where}: [tune] metric names the validation metric to optimise, "
                          "e.g. metric = \"valid.accuracy\"")
    if not metric.startswith(("valid.", "fit.")):
        raise ConfigError(f"{where}: [tune] metric = {metric!r}: tune on a validation metric "
                          "(valid.* as the trainer logs it each epoch, or fit.*), never on test or eval metrics")
    direction = table.get("direction", "minimize" if lower_is_better(metric) else "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"{where}: [tune] direction must be \"maximize\" or \"minimize\", got {direction!r}")
    sampler, pruner = table.get("sampler", "tpe"), table.get("pruner", "median")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{where}: [tune] sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if pruner not in PRUNERS:
        raise ConfigError(f"{where}: [tune] pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    names = list(dict.fromkeys(run_names))
    default_arms = [meta[r] for r in ("baseline", "method") if r in meta] or names
    arms = table.get("arms", default_arms)
    if not isinstance(arms, list) or not arms or any(a not in names for a in arms) or len(set(arms)) != len(arms):
        raise ConfigError(f"{where}: [tune] arms must list run names of the recipe ({', '.join(names)}), got {arms!r}")
    per_run = table.get("runs", {})
    if not isinstance(per_run, Mapping) or any(r not in names for r in per_run):
        bad = [str(r) for r in per_run if r not in names] if isinstance(per_run, Mapping) else []
        raise ConfigError(f"{where}: [tune.runs.NAME] must name runs of the recipe ({', '.join(names)}), "
                          f"got {', '.join(bad) or repr(per_run)}")
    shared = parse_space(table.get("space", {}), f"{where} [tune] space")
    trials: dict[str, int] = {}
    space: dict[str, list[Param]] = {}
    for arm in arms:
        own = per_run.get(arm, {})
        if not isinstance(own, Mapping) or set(own) - {"space", "trials"}:
            raise ConfigError(f"{where}: [tune.runs.{arm}] takes space and trials only")
        merged = {**shared, **parse_space(own.get("space", {}), f"{where} [tune.runs.{arm}] space")}
        if not merged:
            raise ConfigError(f"{where}: arm {arm!r} has an empty search space; "
                              f"add [tune] space or [tune.runs.{arm}] space")
        space[arm] = list(merged.values())
        trials[arm] = _int(own, "trials", _int(table, "trials", 10, 1, where), 1, f"{where} [tune.runs.{arm}]")
        if trials_override is not None:
            trials[arm] = trials_override
    if len(set(trials.values())) > 1 and "tune.trials" not in meta.get("unequal", {}):
        shown = ", ".join(f"{a} {n}" for a, n in trials.items())
        raise ConfigError(f"{where}: unequal tuning budgets ({shown} trials); "
                          "give every arm the same [tune] trials, or "
                          "declare [batch] unequal = { \"tune.trials\" = \"<reason>\" }")
    return TuneSpec(metric=metric, direction=direction, trials=trials, space=space, sampler=sampler, pruner=pruner,
                    seed=_int(table, "seed", 0, 0, where), startup_trials=_int(table, "startup_trials", 2, 0, where),
                    warmup_epochs=_int(table, "warmup_epochs", 1, 0, where))


def literal(value: Any) -> str:
    """``value`` as a TOML literal for a ``-c key=value`` setting."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {literal(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} as a config value")


def with_params(base: PlannedRun, params: Mapping[str, Any], registry: Registry) -> Any:
    """The base run's resolved config with ``params`` (key -> value) set."""
    return resolve(apply_overrides(base.resolved.data, [f"{k}={literal(v)}" for k, v in params.items()]), registry)


def load_tune(path: str | Path, registry: Registry, settings: Sequence[str] = (), matrix_axes: Sequence[str] = (),
              trials: int | None = None) -> TunePlan:
    """Read a recipe with a ``[tune]`` table; check it, its batch and every space bound
    (each bound and choice must resolve in each arm) before anything runs."""
    from pk.core.batch import load_batch
    from pk.core.budget import fingerprint

    path = Path(path)
    data = load_toml(path)
    if "tune" not in data:
        raise ConfigError(f"{path}: no [tune] table; add one (see `pk tune --help`) or use `pk batch`")
    recipe = batch_part(data, path)
    with tempfile.TemporaryDirectory(prefix="pk-tune-") as folder:
        tmp = Path(folder) / path.name
        atomic_write_text(tmp, dumps_toml(recipe))
        try:
            batch = load_batch(tmp, registry, settings, matrix_axes)
        except PkError as exc:
            raise type(exc)(str(exc).replace(str(tmp), str(path))) from None
    batch.source = str(path)
    spec = parse_tune(data["tune"], [r.name for r in batch.runs], batch.meta, str(path), trials)
    base = {arm: next(r for r in batch.runs if r.name == arm) for arm in spec.arms}
    unequal = batch.meta.get("unequal", {})
    for arm, params in spec.space.items():
        guarded = set(fingerprint(base[arm].resolved))
        for p in params:
            if p.key.startswith("run."):
                raise ConfigError(f"{path}: [tune] space {p.key!r}: run settings (seed, device, ...) are not tunable")
            if (p.key in guarded or p.key.split(".")[0] in ("dataset", "evaluator")) and p.key not in unequal:
                raise ConfigError(f"{path}: [tune] space {p.key!r} is part of the comparison's protocol or budget (the "
                                  "runs' fingerprint), so tuning it would compare arms on unequal terms; tune model or "
                                  f"optimiser settings, or declare [batch] unequal = {{ \"{p.key}\" = \"<reason>\" }}")
            for value in p.extremes():
                try:
                    with_params(base[arm], {p.key: value}, registry)
                except PkError as exc:
                    raise ConfigError(f"{path}: [tune] space {p.key!r} value {value!r} "
                                      f"does not fit arm {arm!r}: {exc}") from None
    return TunePlan(spec, batch, base, recipe, str(path), list(settings), list(matrix_axes))


def batch_part(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The recipe without ``[tune]``, named, with ``[[runs]] config`` paths made absolute."""
    out = {k: v for k, v in data.items() if k != "tune"}
    out["batch"] = {"name": path.stem, **dict(data.get("batch", {}))}
    runs = []
    for entry in data.get("runs", []) or []:
        entry = dict(entry)
        if "config" in entry and isinstance(entry["config"], str):
            entry["config"] = str((path.parent / entry["config"]).resolve())
        runs.append(entry)
    if runs:
        out["runs"] = runs
    return out


def tune_dir_for(name: str, out: str | None, resume: bool, base: str = "runs") -> Path:
    """``--out`` or ``runs/tune-<name>-<UTC>``; with ``resume``, the latest such dir."""
    if out:
        return Path(out)
    if resume:
        previous = sorted(Path(base).glob(f"tune-{name}-*"))
        if previous:
            return previous[-1]
        raise UsageError(f"--resume: no earlier tune of {name!r} under {base}/; give --out DIR")
    return Path(base) / f"tune-{name}-{utc_stamp()}"


# -- running ---------------------------------------------------------------------------
