"""``pk dus SRC DST --n-remove M``: streaming depth up-scaling of a local safetensors checkpoint.

Registered through the ``pk.commands`` entry-point group. Only click is imported at module
top; safetensors and rich are imported when the command runs.
"""

from __future__ import annotations

import click


@click.command("dus")
@click.argument("src", type=click.Path(file_okay=False, path_type=str))
@click.argument("dst", type=click.Path(path_type=str))
@click.option("-m", "--n-remove", "n_remove", type=int, required=True,
              help="m: layers dropped from the end of copy A and the start of copy B (0 <= m <= n/2).")
@click.option("--max-shard-size", "max_shard_size", default="", metavar="BYTES",
              help="Output shard size cap, e.g. 500MB or 2GB (default: the largest input shard).")
@click.option("--plan", "plan_only", is_flag=True, help="Validate the input and print the layer map; write nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def dus_cmd(src: str, dst: str, n_remove: int, max_shard_size: str, plan_only: bool, quiet: bool) -> None:
    """Depth up-scale (SOLAR DUS) the checkpoint folder SRC into DST.

    New layer j copies base layer [0..n-m-1] ++ [m..n-1]; embeddings, final norm and lm_head
    are kept once. Streams shard by shard (peak memory about one shard); DST appears only
    when complete. The result loads with transformers' from_pretrained.

    \b
    Example:  pk dus ./mistral-7b ./solar-like --n-remove 8
    """
    from pk_solar.models.dus_streaming import plan_dus, write_dus

    plan = plan_dus(src, n_remove, max_shard_bytes=_parse_size(max_shard_size) if max_shard_size else None)
    mapping = _describe_map(plan.src_map)
    click.echo(f"DUS {plan.base_layers} -> {plan.layers} layers (m = {plan.n_remove}); new layers <- base {mapping}",
               err=True)
    click.echo(f"{len(plan.tensors)} input tensors, {len(plan.outputs)} output shard(s), "
               f"{plan.total_bytes / 1e6:.1f} MB", err=True)
    if plan_only:
        return
    if quiet:
        write_dus(plan, dst)
    else:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        ) as bar:
            task = bar.add_task("up-scaling", total=plan.total_bytes)
            write_dus(plan, dst, on_progress=lambda nbytes: bar.advance(task, nbytes))
    click.echo(f"wrote {dst}")


def _describe_map(src_map: list[int]) -> str:
    """``[0..23] ++ [8..31]`` style summary of a layer map."""
    runs: list[tuple[int, int]] = []
    for i in src_map:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return " ++ ".join(f"[{a}..{b}]" for a, b in runs)


def _parse_size(text: str) -> int:
    """``"500MB"`` -> 500_000_000; plain digits are bytes. Raises UsageError otherwise."""
    from pk.core.errors import UsageError

    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    stripped = text.strip().upper()
    number = stripped.rstrip("KMGIB")
    unit = stripped[len(number):]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise UsageError(f"--max-shard-size {text!r}: use a byte count like 500MB or 2GB") from None
    if value <= 0:
        raise UsageError(f"--max-shard-size {text!r} must be positive")
    return value
