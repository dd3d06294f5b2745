"""``pk batch --executor ray``: each run of a batch is one Ray task.

Results land in the same run dirs, batch.jsonl and summary as the local executor, and
``--resume`` skips completed runs the same way. Resources per run come from the batch
file's ``[batch] resources = { num_cpus = 1, num_gpus = 0 }``. Needs ``pk-core[ray]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pk.core.batch import BatchSpec, Outcome, PlannedRun, run_batch
from pk.core.errors import RunFailed, UsageError


def _train_task(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Body of one Ray task: resolve the config in the worker and train into ``run_dir``."""
    import os

    from pk.core.config import resolve
    from pk.core.console import Reporter
    from pk.core.errors import PkError
    from pk.core.plugins import get_registry
    from pk.core.runner import train

    try:  # threads per task: the CPUs Ray reserved for it (the thread policy in pk.core.runner)
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        os.environ["PK_PARALLEL_JOBS"] = str(max(1, (os.cpu_count() or 1) // max(1, int(cpus))))
    except Exception:  # outside a Ray worker
        pass
    try:
        return train(resolve(config, get_registry()), run_dir=run_dir, argv=["pk", "batch", "--executor", "ray"],
                     reporter=Reporter("quiet"))[1]
    except PkError as exc:  # keep the one-line message across the process boundary
        raise RuntimeError(str(exc)) from None


def ray_task(function: Callable[..., Any], address: str | None, resources: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(ray, remote function)``: Ray started (or joined at ``address``) once, ``function``
    as a task reserving ``resources`` (``num_cpus``, ``num_gpus``; default 1 CPU)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'pk-core[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    opts = {"num_cpus": float(resources.get("num_cpus", 1)), "num_gpus": float(resources.get("num_gpus", 0))}
    return ray, ray.remote(**opts)(function)  # type: ignore[call-overload]  # ray's stubs take literal kwargs


class RayPool:
    """Submits runs as Ray tasks; ``result`` turns a task error into RunFailed."""

    def __init__(self, address: str | None, resources: Mapping[str, Any]) -> None:
        self.ray, self.task = ray_task(_train_task, address, resources)

    def submit(self, run: PlannedRun, run_dir: Path) -> Any:
        return self.task.remote(run.resolved.data, str(run_dir))

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except Exception as exc:  # RayTaskError wraps the worker's exception
            cause = getattr(exc, "cause", None) or exc
            raise RunFailed(str(cause).strip().splitlines()[-1]) from None

    def close(self) -> None:
        self.ray.shutdown()


def run_batch_ray(
    spec: BatchSpec,
    batch_dir: Path,
    *,
    address: str | None = None,
    resume: bool = False,
    continue_on_error: bool = False,
    only: Iterable[str] = (),
    echo: Callable[[str], None] = lambda s: None,
) -> list[Outcome]:
    pool = RayPool(address, dict(spec.meta.get("resources", {})))
    return run_batch(spec, batch_dir.resolve(), resume=resume, continue_on_error=continue_on_error, only=only,
                     echo=echo, pool=pool)
