"""Multi-process training through PyTorch's own elastic launcher (torch.distributed.run)
with DistributedDataParallel: gloo on CPU, NCCL on GPU.

The parent ``pk train --nproc-per-node N`` creates the run dir and writes its header, then
launches ``python -m torch.distributed.run ... -m pk.core.distributed RUN_DIR``; every worker
reads the run dir's config and trains; rank 0 alone writes metrics, checkpoints and
result.json. A trainer opts in with ``supports_distributed = True`` and uses the helpers
below (``loss_module``, ``rank_chunk``, ``reduce_mean``); the others are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pk.core.errors import UsageError


def launch(
    resolved: Any, nproc: int, nnodes: int, rdzv_endpoint: str | None, run_dir: str | None, overrides: list[str],
    resume: bool = False,
) -> int:
    """Create the run dir (or reuse it with ``resume``), then run the workers through
    torch.distributed.run; returns the launcher's exit code."""
    from pk.core.run import new_run_dir, write_run_header
    from pk.core.runner import check_tasks

    check_tasks(resolved)
    trainer = resolved.registrations["trainer"].load()
    if not getattr(trainer, "supports_distributed", False):
        raise UsageError(
            f"trainer {resolved.data['trainer']['name']!r} does not support multi-process training; "
            "drop --nproc-per-node"
        )
    if nnodes > 1 and not rdzv_endpoint:
        raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    if resume:
        path = Path(run_dir)  # type: ignore[arg-type]
    else:
        path = new_run_dir(resolved, run_dir)
        write_run_header(path, resolved, ["pk", *sys.argv[1:]], overrides, resolved.run.device)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "pk.core.distributed", str(path)]
    print(f"run dir: {path}", file=sys.stderr)
    return subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


def worker(run_dir: str) -> None:
    """One process of a distributed run (called by torch.distributed.run)."""
    import torch
    import torch.distributed as dist

    from pk.core.config import load_toml, resolve
    from pk.core.console import Reporter
    from pk.core.plugins import get_registry
    from pk.core.runner import train

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve(load_toml(Path(run_dir) / "config.toml"), get_registry())
    device = resolved.run.device
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        resolved.data["run"]["device"] = f"cuda:{local}"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        resume = (Path(run_dir) / "checkpoints" / "last.pt").exists()
        train(resolved, run_dir=run_dir, resume=resume, existing=True, rank=rank, world_size=world,
              reporter=Reporter() if rank == 0 else Reporter("quiet"))
    finally:
        dist.barrier()
        dist.destroy_process_group()


# -- helpers for trainers that opt in ---------------------------------------------------
def loss_module(model: Any, run: Any) -> Any:
    """``model`` itself on one process; else a DistributedDataParallel wrapper whose
    ``forward(batch)`` returns ``model.loss(batch)`` (gradients all-reduced on backward)."""
    if getattr(run, "world_size", 1) <= 1:
        return model.loss
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    class LossForward(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch: Any) -> Any:
            return self.inner.loss(batch)  # type: ignore[operator]  # nn.Module attribute typed as Tensor

    device_ids = [int(run.device.split(":")[1])] if run.device.startswith("cuda:") else None
    return DistributedDataParallel(LossForward(model), device_ids=device_ids)


def rank_chunk(batch: dict[str, Any], run: Any,
               terms: Callable[[dict[str, Any]], int] | None = None) -> tuple[dict[str, Any], float]:
    """This rank's contiguous share of a global batch and the loss scale ``W * n_r / N``
    that makes DDP's gradient average equal the gradient of the global mean loss.

    ``terms(batch)`` counts the loss terms a (sub-)batch averages over (default: rows),
    e.g. the non-padding targets of a sequence batch.
    """
    world = getattr(run, "world_size", 1)
    if world <= 1:
        return batch, 1.0
    import torch

    n = next(iter(v for v in batch.values() if hasattr(v, "shape"))).shape[0]
    bounds = torch.linspace(0, n, world + 1).round().long().tolist()
    lo, hi = bounds[run.rank], bounds[run.rank + 1]
    chunk = {k: (v[lo:hi] if hasattr(v, "shape") and v.shape[:1] == (n,) else v) for k, v in batch.items()}
    count = terms or (lambda b: next(iter(v for v in b.values() if hasattr(v, "shape"))).shape[0])
    return chunk, world * count(chunk) / max(count(batch), 1)


def reduce_mean(value: float, weight: float, run: Any) -> float:
    """The weight-averaged ``value`` across ranks (plain value on one process)."""
    if getattr(run, "world_size", 1) <= 1:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value * weight, weight], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp_min(1e-12))


if __name__ == "__main__":
    worker(sys.argv[1])
