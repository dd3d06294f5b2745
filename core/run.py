"""Run records and the run handle the core gives trainers and evaluators.

A run directory holds ``config.toml``, ``command.json``, ``env.json``, ``metrics.jsonl``,
``checkpoints/*.pt``, ``result.json`` and, on failure, ``error.txt``. Run dirs are never
reused except by ``--resume``; every file is written atomically.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pk.core.config import Resolved, dumps_toml
from pk.core.errors import UsageError
from pk.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text, load_tensors, save_tensors
from pk.core.seed import NamedGenerators


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(resolved: Resolved, explicit: str | Path | None = None) -> Path:
    """Create and return a fresh run dir; an explicit dir must be absent or empty."""
    if explicit is not None:
        path = Path(explicit)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(
                f"run dir {str(path)!r} is not empty; pick a new --run-dir or continue it with --resume"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    run = resolved.run
    model = resolved.data.get("model", {}).get("name", "model")
    dataset = resolved.data.get("dataset", {}).get("name", "data")
    stem = f"{utc_stamp()}-{run.name + '-' if run.name else ''}{model}-{dataset}-{resolved.hash()}"
    base = Path(run.out_dir)
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = base / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UsageError(f"could not create a run dir under {base}")


@functools.lru_cache(maxsize=1)
def distribution_versions() -> dict[str, str]:
    """Versions of pk-* distributions and the big frameworks (scanned once per process)."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.startswith("pk-") or name in ("torch", "torch_geometric", "torch-geometric", "transformers", "flwr"):
            out[name] = dist.version
    return dict(sorted(out.items()))


def git_info() -> dict[str, Any]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}  # no git, or not a checkout
    return {"commit": None, "dirty": None}


def environment(device: str) -> dict[str, Any]:
    """The env.json record: python, platform, torch, devices, pk distributions, git."""
    import torch

    from pk.core.plugins import environment_lines

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "threads": torch.get_num_threads(),
        "thread_policy": "run.threads, or usable cores // PK_PARALLEL_JOBS (pk batch --jobs), at least 1",
        "distributions": dict(distribution_versions()),
        "git": git_info(),
    }
    try:
        env["plugins"] = environment_lines()
    except Exception as exc:
        env["plugins"] = {"error": str(exc)}
    return env


class Run(NamedGenerators):
    """The run handle (see :class:`pk.core.contracts.RunHandle`)."""

    def __init__(
        self,
        dir: Path,
        resolved: Resolved,
        *,
        device: str = "cpu",
        resume: bool = False,
        builder: Callable[..., Any] | None = None,
        reporter: Any = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dir = Path(dir)
        self.resolved = resolved
        self.config = resolved.data
        self.seed = resolved.run.seed
        self.device = device
        self.resume = resume
        self.rank = rank
        self.world_size = world_size
        self._builder = builder
        self._reporter = reporter
        NamedGenerators.__init__(self)
        self._metrics_path = self.dir / "metrics.jsonl"
        self._last_metrics: dict[str, dict[str, float]] = {}

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- records ------------------------------------------------------------------
    def log(self, step: int, split: str = "train", **metrics: float) -> None:
        """Append one line ``{step, split, time, **metrics}`` to metrics.jsonl (rank 0)."""
        clean = {k: float(v) for k, v in metrics.items()}
        self._last_metrics.setdefault(split, {}).update(clean)
        if not self.is_main:
            return
        line = json.dumps({"step": int(step), "split": split, "time": round(time.time(), 3), **clean})
        with open(self._metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if self._reporter is not None:
            self._reporter.metrics(step, split, clean)

    def save_checkpoint(self, state: dict[str, Any], tag: str = "last") -> Path:
        """Save ``state`` (tensors, numbers, lists, dicts) as checkpoints/<tag>.pt atomically.

        The core adds the resolved config and pk versions so the file stands alone.
        """
        path = self.dir / "checkpoints" / f"{tag}.pt"
        if self.is_main:
            payload = dict(state)
            payload["_pk"] = {"config": self.config, "versions": dict(distribution_versions()), "tag": tag}
            save_tensors(path, payload)
        return path

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The ``last`` checkpoint when resuming, else None."""
        if not self.resume:
            return None
        path = self.dir / "checkpoints" / "last.pt"
        return load_tensors(path) if path.exists() else None

    def save_example_scores(self, split: str, scores: Mapping[str, Any]) -> Path | None:
        """Write per-example scores of ``split`` to ``examples-<split>.npz`` (rank 0).

        ``scores`` maps a metric name as the split's metrics name it (``"ndcg@10"`` for
        ``test.ndcg@10``; ``split="eval"`` for evaluator metrics) to a 1-D array-like with
        one value per test example (user, node, graph, image), in an order that is the same
        for every run on the same data and seed. The metric itself must be their mean. The
        batch summary pairs these arrays across arms for a paired bootstrap. No pickles.
        """
        import numpy as np

        arrays = {}
        for name, values in scores.items():
            arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
            arrays[str(name)] = np.asarray(arr, dtype=np.float64).reshape(-1)
        lengths = {a.shape[0] for a in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"example scores of {split!r} differ in length: {sorted(lengths)}")
        if not self.is_main:
            return None
        path = self.dir / f"examples-{split}.npz"
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        atomic_write_bytes(path, buf.getvalue())
        return path

    def artifact_path(self, name: str) -> Path:
        path = self.dir / "artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def build(self, section: str, *args: Any, **kwargs: Any) -> Any:
        """Build the run's configured component of ``section`` (None if not configured),
        e.g. ``run.build("aggregator", context=ctx)`` or ``run.build("model", info)``."""
        if self._builder is None:
            raise UsageError("this run handle cannot build components")
        return self._builder(section, *args, **kwargs)

    # -- console ------------------------------------------------------------------
    def progress(self, iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterator[Any]:
        if self._reporter is None or not self.is_main:
            yield from iterable
            return
        yield from self._reporter.progress(iterable, total, description)

    def echo(self, message: str) -> None:
        if self._reporter is not None and self.is_main:
            self._reporter.echo(message)


def write_run_header(run_dir: Path, resolved: Resolved, argv: list[str], overrides: list[str], device: str) -> None:
    atomic_write_text(run_dir / "config.toml", dumps_toml(resolved.data))
    atomic_write_json(
        run_dir / "command.json",
        {"argv": argv, "cwd": os.getcwd(), "overrides": overrides, "time": utc_stamp()},
    )
    atomic_write_json(run_dir / "env.json", environment(device))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def run_status(result: Mapping[str, Any] | None) -> str:
    """The truthful state of a run from its result.json: ``running`` only while the
    recorded process (pid on this host) is alive; a run whose process is gone without
    writing an end state (``kill -9``, power loss) is ``crashed`` (resumable with
    ``pk train --resume``). Runs recorded on another host keep their recorded state."""
    if not result:
        return "unknown"
    status = str(result.get("status", "unknown"))
    if status == "running":
        pid, host = result.get("pid"), result.get("host")
        if pid is None or (host == socket.gethostname() and not process_alive(int(pid))):
            return "crashed"
    return status


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def truncate_metrics(run_dir: Path, max_step: int) -> None:
    """Keep only metric lines up to ``max_step`` (used when resuming from a checkpoint)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_text(path, "".join(x + "\n" for x in keep))
