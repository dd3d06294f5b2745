"""Building components from a resolved config, and running ``train`` and ``eval``."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from pk.core.config import Resolved, load_toml, resolve
from pk.core.errors import CheckpointError, ConfigError, DataError, PkError, RunFailed, UsageError
from pk.core.io import atomic_write_json, atomic_write_text, load_tensors, save_tensors
from pk.core.paths import data_dir
from pk.core.registry import Registry
from pk.core.run import Run, new_run_dir, read_result, truncate_metrics, write_run_header
from pk.core.seed import derive_seed, seed_everything
from pk.core.tasks import common_tasks

MODEL_FILE = "model.pt"


class _PipeSafe:
    """A stdout that drops writes once its reader has gone (BrokenPipeError)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._closed = False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed = True
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _TermAsInterrupt:
    """While alive, SIGTERM raises KeyboardInterrupt (the run is recorded "interrupted",
    like Ctrl-C); only in the main thread, where Python can install handlers."""

    def __init__(self) -> None:
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    @staticmethod
    def _handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def default_threads() -> int:
    """Thread policy for ``run.threads = 0``: usable cores divided by the runs going on in
    parallel (``PK_PARALLEL_JOBS``, set by ``pk batch --jobs``), at least 1, so parallel
    runs never oversubscribe the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    try:
        jobs = max(1, int(os.environ.get("PK_PARALLEL_JOBS", "1")))
    except ValueError:
        jobs = 1
    return max(1, cores // jobs)


def resources(started_wall: float, started_cpu: float, epochs: float | None, device: str) -> dict[str, float]:
    """Wall and CPU seconds since the given marks, peak RSS (MiB) of this process, seconds
    per epoch when the trainer reported ``epochs_run``, and peak GPU memory on CUDA."""
    import resource

    wall = time.time() - started_wall
    out = {"wall_seconds": round(wall, 3), "cpu_seconds": round(time.process_time() - started_cpu, 3),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if epochs:
        out["seconds_per_epoch"] = round(wall / epochs, 4)
    if device.startswith("cuda"):
        import torch

        out["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def check_tasks(resolved: Resolved) -> set[str]:
    """Refuse components that share no task (before anything heavy is imported)."""
    parts = {
        section: (reg.name, reg.tasks)
        for section, reg in resolved.registrations.items()
        if section in ("model", "dataset", "trainer", "evaluator")
    }
    return common_tasks(parts)


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"run.device = {requested!r} but no CUDA device is visible; use run.device = \"cpu\"")
    return requested


AMBIENT = ("seed", "device", "root", "context")


def _call_builder(builder: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``builder`` with the keyword arguments it takes.

    Ambient keywords (seed, device, root, context) are passed where the signature takes
    them; any other keyword (a configured component, declared with ``accepts=``) must be
    taken, or this raises ConfigError rather than dropping it silently.
    """
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return builder(*args, **kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return builder(*args, **kwargs)
    dropped = sorted(k for k in kwargs if k not in params and k not in AMBIENT)
    if dropped:
        name = getattr(builder, "__qualname__", repr(builder))
        raise ConfigError(f"builder {name} does not take {', '.join(dropped)}, which its registration declares; "
                          "fix the registration's accepts= or the builder's signature")
    return builder(*args, **{k: v for k, v in kwargs.items() if k in params})


class Components:
    """Builds the components a resolved config names, seeding each from its own name."""

    def __init__(self, resolved: Resolved, device: str = "cpu") -> None:
        self.resolved = resolved
        self.device = device
        self.seed = resolved.run.seed
        self._cache: dict[str, Any] = {}

    def build(self, section: str, *args: Any, **kwargs: Any) -> Any:
        """Build the configured ``section`` (None if absent): ``builder(config, *args, **kwargs)``
        with only the keywords the builder accepts."""
        if section not in self.resolved.registrations:
            return None
        reg = self.resolved.registrations[section]
        cfg = self.resolved.component(section)
        builder = reg.load()
        if section == "dataset":
            return _call_builder(builder, cfg, *args, root=data_dir(), seed=self.seed, **kwargs)
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, section, reg.name))
            return _call_builder(builder, cfg, *args, seed=self.seed, **kwargs)

    def dataset(self) -> Any:
        """The configured dataset; a file that is not text where text is expected becomes a
        DataError (exit 2), whichever loader read it."""
        if "dataset" not in self._cache:
            try:
                self._cache["dataset"] = self.build("dataset")
            except UnicodeDecodeError as exc:
                path = self.resolved.data.get("dataset", {}).get("path") or "the dataset file"
                raise DataError(f"{path} is not a text file in the dataset's format (byte {exc.start}: {exc.reason}); "
                                "check dataset.path") from None
        return self._cache["dataset"]

    def model(self, info: Any) -> Any:
        reg = self.resolved.registrations["model"]
        extra = {"calibrator": self.build("calibrator")} if "calibrator" in reg.accepts else {}
        model = self.build("model", info, device=self.device, **extra)
        return model.to(self.device) if hasattr(model, "to") else model


def train(
    resolved: Resolved,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    argv: list[str] | None = None,
    overrides: list[str] | None = None,
    reporter: Any = None,
    existing: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[Path, dict[str, Any]]:
    """Train the configured model; return the run dir and result.json's content.

    Raises RunFailed (exit 1) when the trainer raises; the run dir then holds
    ``result.json`` with status ``failed`` and ``error.txt`` with the traceback.
    ``existing``: the run dir and its header were made by a launcher (distributed runs);
    only rank 0 writes records.
    """
    import torch

    check_tasks(resolved)
    run_cfg = resolved.run
    device = pick_device(run_cfg.device)
    torch.set_num_threads(run_cfg.threads or default_threads())
    if resume or existing:
        path = Path(run_dir)  # type: ignore[arg-type]
    else:
        path = new_run_dir(resolved, run_dir)
        write_run_header(path, resolved, argv or sys.argv, overrides or [], device)
    seed_everything(run_cfg.seed, deterministic=run_cfg.deterministic)
    components = Components(resolved, device)
    run = Run(path, resolved, device=device, resume=resume, builder=components.build, reporter=reporter, rank=rank,
              world_size=world_size)
    main = rank == 0
    started = time.time()
    started_cpu = time.process_time()
    from pk.core.budget import fingerprint

    result: dict[str, Any] = {"status": "running", "run_dir": str(path), "started": started, "world_size": world_size,
                              "pid": os.getpid(), "host": socket.gethostname(), "fingerprint": fingerprint(resolved)}
    fresh = not (resume or existing)

    def record(**fields: Any) -> None:
        result.update(fields)
        if main:
            atomic_write_json(path / "result.json", result)

    record()
    stop = _TermAsInterrupt()
    stdout = sys.stdout
    sys.stdout = _PipeSafe(stdout)  # a reader that goes away (`pk train | head`) must not fail the run
    try:
        data = components.dataset()
        data_fp = getattr(data, "fingerprint", None)
        if callable(data_fp):
            record(fingerprint={**result["fingerprint"], "data": str(data_fp())})
        model = components.model(data.info)
        trainer = components.build("trainer")
        if world_size > 1 and not getattr(trainer, "supports_distributed", False):
            raise UsageError(f"trainer {resolved.data['trainer']['name']!r} does not support multi-process training")
        if resume and not getattr(trainer, "resumable", False):
            raise UsageError(f"trainer {resolved.data['trainer']['name']!r} cannot resume; start a new run")
        if reporter is not None:
            reporter.echo(f"run dir: {path}")
        fit_metrics = trainer.fit(model, data, run) or {}
        test_metrics = trainer.evaluate(model, data, "test", run) if "test" in data.splits else {}
        evaluator = components.build("evaluator")
        eval_metrics = evaluator.evaluate(model, data, run) if evaluator is not None else {}
        if main:
            save_tensors(path / "checkpoints" / MODEL_FILE,
                         {"model": model.state_dict(), "_pk": {"config": resolved.data}})
    except KeyboardInterrupt:
        record(status="interrupted", ended=time.time())
        raise
    except PkError as exc:
        if fresh and main and isinstance(exc, UsageError) and not any((path / "checkpoints").glob("*")):
            shutil.rmtree(path, ignore_errors=True)  # bad data or config: leave no "failed" run behind
            raise
        record(status="failed", ended=time.time(), error=str(exc))
        if main:
            atomic_write_text(path / "error.txt", traceback.format_exc())
        raise
    except Exception as exc:
        record(status="failed", ended=time.time(), error=f"{type(exc).__name__}: {exc}")
        if main:
            atomic_write_text(path / "error.txt", traceback.format_exc())
        raise RunFailed(f"run failed: {type(exc).__name__}: {exc} (traceback in {path / 'error.txt'})") from exc
    finally:
        sys.stdout = stdout
        stop.restore()
    metrics = {f"fit.{k}": float(v) for k, v in fit_metrics.items()}
    metrics.update({f"test.{k}": float(v) for k, v in test_metrics.items()})
    metrics.update({f"eval.{k}": float(v) for k, v in eval_metrics.items()})
    record(status="completed", ended=time.time(), seconds=round(time.time() - started, 3), metrics=metrics,
           resources=resources(started, started_cpu, metrics.get("fit.epochs_run"), device))
    if main:
        from pk.core.index import record_run

        record_run(path)  # keeps an existing `pk runs` index current; never raises
    return path, result


def prepare_resume(run_dir: str | Path, registry: Registry) -> Resolved:
    """Read a run dir's config and cut metrics back to its last checkpoint."""
    path = Path(run_dir)
    if not (path / "config.toml").is_file():
        raise UsageError(f"{str(path)!r} is not a pk run dir (no config.toml); give a dir under runs/")
    status = (read_result(path) or {}).get("status")
    if status == "completed":
        raise UsageError(f"run {str(path)!r} already completed; nothing to resume")
    resolved = resolve(load_toml(path / "config.toml"), registry)
    ckpt = path / "checkpoints" / "last.pt"
    step = int(load_tensors(ckpt).get("step", -1)) if ckpt.exists() else -1
    truncate_metrics(path, step)
    return resolved


def evaluate(
    target: str | Path, registry: Registry, *, split: str = "test", overrides: list[str] | None = None
) -> dict[str, Any]:
    """Evaluate a run dir or checkpoint file on ``split``; writes eval-<split>.json beside it."""
    from pk.core.config import apply_overrides

    target = Path(target)
    if target.is_dir():
        ckpt = target / "checkpoints" / MODEL_FILE
        if not ckpt.exists():
            ckpt = target / "checkpoints" / "last.pt"
        if not ckpt.exists():
            raise CheckpointError(f"no checkpoint in {str(target)!r}; did the run finish? (`pk runs`)")
    else:
        ckpt = target
    payload = load_tensors(ckpt)
    if not isinstance(payload, dict) or "model" not in payload or "_pk" not in payload:
        raise CheckpointError(f"{str(ckpt)!r} is not a pk checkpoint (no model state and config)")
    raw = apply_overrides(payload["_pk"]["config"], overrides or [])
    resolved = resolve(raw, registry)
    device = pick_device(resolved.run.device)
    seed_everything(resolved.run.seed, deterministic=resolved.run.deterministic)
    components = Components(resolved, device)
    data = components.dataset()
    if split not in data.splits:
        raise UsageError(f"split {split!r} is not in this dataset; choose one of {', '.join(data.splits)}")
    model = components.model(data.info)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{str(ckpt)!r} does not fit the configured model: {str(exc).splitlines()[0]}") from None
    out_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    run = Run(out_dir, resolved, device=device, builder=components.build)
    run._metrics_path = out_dir / f"eval-{split}.metrics.jsonl"
    trainer = components.build("trainer")
    model.eval()
    metrics = dict(trainer.evaluate(model, data, split, run))
    evaluator = components.build("evaluator")
    if evaluator is not None:
        metrics.update({f"eval.{k}": v for k, v in evaluator.evaluate(model, data, run).items()})
    result = {"checkpoint": str(ckpt), "split": split, "metrics": {k: float(v) for k, v in metrics.items()}}
    atomic_write_json(out_dir / f"eval-{split}.json", result)
    return result


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
