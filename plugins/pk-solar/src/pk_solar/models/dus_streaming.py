"""Streaming DUS: a local (sharded) safetensors checkpoint -> a new up-scaled checkpoint.

No torch and no safetensors library (the file format: :mod:`pk_solar.models.safetensors_io`).
Planning reads and validates only the headers; writing composes each output shard's header
(byte-identical to what safetensors' own serializer writes for the same tensors) and copies
each tensor's byte range from the input shard in the kernel, so the tensor bytes never enter
this process and memory stays flat (a few MB above the interpreter, whatever the shard size).
The two copies of a duplicated layer are two copies of the same byte range. Each output shard
holds tensors of one input shard.
Output is written into a temporary sibling folder and renamed to the destination at the
very end; on any error the temporary folder is removed.

Output: ``config.json`` (layer count and per-layer fields rewritten), the safetensors
shards and ``model.safetensors.index.json`` (or one ``model.safetensors``), every other
top-level file of the source (tokenizer, generation config...) copied, and ``dus.json``
(provenance: source, n_remove, layer map).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pk.core.errors import DataError, UsageError
from pk_solar.models.dus import layer_count, layer_map, upscale_config_dict
from pk_solar.models.safetensors_io import copy_range, header_bytes, read_header

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_LAYER_KEY = re.compile(r"^(?P<prefix>(?:[^.]+\.)*?)(?P<idx>\d+)\.(?P<rest>.+)$")


@dataclass
class TensorEntry:
    """One input tensor: where it lives and how big it is (from the shard header)."""

    name: str
    shard: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass
class OutputShard:
    """One output file: ``(output name, input name)`` pairs, all read from ``source_shard``."""

    source_shard: str
    items: list[tuple[str, str]] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class DusPlan:
    """Everything needed to write the up-scaled checkpoint; built from headers only."""

    src: Path
    n_remove: int
    base_layers: int
    src_map: list[int]
    layer_prefix: str
    config: dict[str, Any]
    tensors: dict[str, TensorEntry]
    outputs: list[OutputShard]
    extra_files: list[Path]

    @property
    def total_bytes(self) -> int:
        return sum(o.nbytes for o in self.outputs)

    @property
    def layers(self) -> int:
        return len(self.src_map)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; the source must be a Hugging Face model folder "
                        "(config.json + safetensors)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg}); re-save or re-download the file") from None


def plan_dus(src: str | Path, n_remove: int, *, max_shard_bytes: int | None = None) -> DusPlan:
    """Validate ``src`` and plan the up-scaled checkpoint (reads headers, no tensor data).

    Raises DataError for a missing/corrupt/mismatched file, UsageError for a bad ``n_remove``.
    ``max_shard_bytes`` caps output shard size (default: the largest input shard's tensor bytes).
    """
    src = Path(src)
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder; give a local Hugging Face checkpoint folder "
                         "(config.json + *.safetensors)")
    config = _read_json(src / "config.json")
    if not isinstance(config, dict):
        raise DataError(f"{src / 'config.json'}: expected a JSON object; re-save the config")
    _, n = layer_count(config)
    src_map = layer_map(n, n_remove)

    if (src / INDEX_NAME).exists():
        index = _read_json(src / INDEX_NAME)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise DataError(f"{src / INDEX_NAME}: no 'weight_map'; re-save the checkpoint with save_pretrained")
    elif (src / SINGLE_NAME).exists():
        weight_map = None
    else:
        raise DataError(f"{src}: no {INDEX_NAME} or {SINGLE_NAME}; only safetensors checkpoints can be up-scaled")

    shard_names = sorted(set(weight_map.values())) if weight_map else [SINGLE_NAME]
    tensors: dict[str, TensorEntry] = {}
    for shard in shard_names:
        if Path(shard).name != shard:
            raise DataError(f"{src / INDEX_NAME}: shard name {shard!r} is not a plain file name; fix the index")
        entries = read_header(src / shard).entries
        if weight_map is not None:
            listed = {k for k, v in weight_map.items() if v == shard}
            if listed != set(entries):
                extra = sorted(set(entries) - listed)[:1] or sorted(listed - set(entries))[:1]
                raise DataError(
                    f"{src / shard}: mismatched shard: the index lists {len(listed)} tensors for it, the file holds "
                    f"{len(entries)} (first difference: {extra[0]!r}); the shard belongs to another checkpoint"
                )
        for name, (dtype, shape, begin, end) in entries.items():
            tensors[name] = TensorEntry(name, shard, dtype, shape, end - begin)

    prefix = _find_layer_prefix(src, tensors, n)
    _check_layers_consistent(src, tensors, prefix, n)

    limit = max_shard_bytes or max(sum(t.nbytes for t in tensors.values() if t.shard == s) for s in shard_names)
    targets: dict[int, list[int]] = {}
    for j, i in enumerate(src_map):
        targets.setdefault(i, []).append(j)
    outputs: list[OutputShard] = []
    for shard in shard_names:
        current = OutputShard(shard)
        for name in sorted(n for n, t in tensors.items() if t.shard == shard):
            entry = tensors[name]
            match = _LAYER_KEY.match(name)
            if match and match["prefix"] == prefix:
                out_names = [f"{prefix}{j}.{match['rest']}" for j in targets.get(int(match["idx"]), [])]
            else:
                out_names = [name]
            for out_name in out_names:
                if current.items and current.nbytes + entry.nbytes > limit:
                    outputs.append(current)
                    current = OutputShard(shard)
                current.items.append((out_name, name))
                current.nbytes += entry.nbytes
        if current.items:
            outputs.append(current)

    skip = {"config.json", INDEX_NAME, *shard_names, "dus.json"}
    extra_files = sorted(p for p in src.iterdir()
                         if p.is_file() and p.name not in skip and not p.name.endswith(".safetensors"))
    return DusPlan(src, int(n_remove), n, src_map, prefix, upscale_config_dict(config, src_map), tensors, outputs,
                   extra_files)


def _find_layer_prefix(src: Path, tensors: dict[str, TensorEntry], n: int) -> str:
    """The name prefix (e.g. ``model.layers.``) whose numeric indices are exactly 0..n-1."""
    seen: dict[str, set[int]] = {}
    for name in tensors:
        match = _LAYER_KEY.match(name)
        if match:
            seen.setdefault(match["prefix"], set()).add(int(match["idx"]))
    for prefix, indices in sorted(seen.items(), key=lambda kv: -len(kv[1])):
        if indices == set(range(n)):
            return prefix
    found = ", ".join(f"{p}0..{max(ix)} ({len(ix)} layers)" for p, ix in seen.items()) or "no numbered layers"
    raise DataError(
        f"{src}: config.json says {n} layers but the tensors hold {found}; config and weights do not belong together"
    )


def _check_layers_consistent(src: Path, tensors: dict[str, TensorEntry], prefix: str, n: int) -> None:
    """Every layer must hold the same tensor names with the same dtype and shape as layer 0."""
    per_layer: dict[int, dict[str, TensorEntry]] = {i: {} for i in range(n)}
    for name, entry in tensors.items():
        match = _LAYER_KEY.match(name)
        if match and match["prefix"] == prefix:
            per_layer[int(match["idx"])][match["rest"]] = entry
    reference = per_layer[0]
    for i in range(1, n):
        layer = per_layer[i]
        missing = sorted(set(reference) - set(layer))
        if missing:
            raise DataError(f"{src}: layer {i} lacks {prefix}{i}.{missing[0]}; the checkpoint is incomplete, "
                            "re-download it")
        for rest, entry in layer.items():
            ref = reference.get(rest)
            if ref is None or (ref.dtype, ref.shape) != (entry.dtype, entry.shape):
                want = f"{ref.dtype}{list(ref.shape)}" if ref else "absent"
                raise DataError(
                    f"{src / entry.shard}: mismatched shard: {entry.name} is {entry.dtype}{list(entry.shape)} "
                    "but layer 0 "
                    f"has {want}; the shard belongs to another model, replace it"
                )


def write_dus(plan: DusPlan, dst: str | Path, *, on_progress: Callable[[int], None] | None = None) -> Path:
    """Write the planned checkpoint to ``dst`` (must not exist, or be an empty folder).

    Writes into a temporary sibling folder and renames it at the end, so a failure leaves
    no partial output. ``on_progress(nbytes)`` is called after each tensor is written.
    """
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"{dst}: exists and is not empty; choose a new output path")
    if dst.resolve() == plan.src.resolve():
        raise UsageError(f"{dst}: output path equals the source; choose a new output path")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        _write_into(plan, tmp, on_progress)
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _write_into(plan: DusPlan, out: Path, on_progress: Callable[[int], None] | None) -> None:
    count = len(plan.outputs)
    names = [SINGLE_NAME] if count == 1 else [f"model-{k + 1:05d}-of-{count:05d}.safetensors" for k in range(count)]
    weight_map: dict[str, str] = {}
    for shard, file_name in zip(plan.outputs, names):
        path = plan.src / shard.source_shard
        source = read_header(path)  # again: the file may have changed since planning
        items = []
        for out_name, in_name in shard.items:
            entry, now = plan.tensors[in_name], source.entries.get(in_name)
            if now is None or (now[0], now[1]) != (entry.dtype, entry.shape):
                raise DataError(f"{path}: {in_name} changed while reading; is another process writing the checkpoint?")
            items.append((out_name, entry.dtype, entry.shape))
            weight_map[out_name] = file_name
        head, order = header_bytes(items, source.metadata or {"format": "pt"})
        src_fd = os.open(path, os.O_RDONLY)
        try:
            dst_fd = os.open(out / file_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(head)
                while view:
                    view = view[os.write(dst_fd, view):]
                for k in order:
                    _, _, begin, end = source.entries[shard.items[k][1]]
                    copy_range(src_fd, dst_fd, source.data_start + begin, end - begin)
                    if on_progress is not None:
                        on_progress(end - begin)
            finally:
                os.close(dst_fd)
        except (OSError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path} -> {file_name}: copy failed ({reason}); check free space on the output disk "
                            "and this shard") from None
        finally:
            os.close(src_fd)
    if count > 1:
        index = {"metadata": {"total_size": plan.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (out / "config.json").write_text(json.dumps(plan.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for extra in plan.extra_files:
        shutil.copy2(extra, out / extra.name)
    provenance = {
        "method": "SOLAR depth up-scaling (arXiv:2312.15166)",
        "source": str(plan.src),
        "base_layers": plan.base_layers,
        "n_remove": plan.n_remove,
        "layers": plan.layers,
        "layer_map": plan.src_map,
        "layer_prefix": plan.layer_prefix,
    }
    (out / "dus.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def stream_dus(
    src: str | Path, dst: str | Path, n_remove: int, *, max_shard_bytes: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DusPlan:
    """Plan and write in one call; returns the plan (for sizes and the layer map)."""
    plan = plan_dus(src, n_remove, max_shard_bytes=max_shard_bytes)
    write_dus(plan, dst, on_progress=on_progress)
    return plan
